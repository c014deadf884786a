"""Chart rendering with Helm's layout and semantics on sandboxed Jinja2.

A chart is a directory with Chart.yaml, values.yaml, values.schema.json and
templates/*.yaml (`_`-prefixed files hold macros). Values precedence follows Helm:
chart defaults < profile defaults < environment overrides < computed values.
Templates emit values through quoting filters (`tojson`/`toyaml`), never by pasting.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
import jsonschema
import yaml
from jinja2.sandbox import ImmutableSandboxedEnvironment

from pipelines.lib.errors import InputProblem

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
MANAGED_BY = "chainops"


class RenderError(InputProblem):
    """A chart, its values or a template is wrong; the message names chart, file and line or value path."""


def _defined(value: Any) -> Any:
    """Filters receive Undefined objects as they are; make them fail as StrictUndefined should."""
    if isinstance(value, jinja2.Undefined):
        value._fail_with_undefined_error()
    return value


# Characters YAML treats as line breaks or that terminals interpret: always escaped in
# output (a second line of defence; config.py already refuses them in environment files).
_ESCAPE = {ord(c): f"\\u{ord(c):04x}" for c in ["\x7f", *map(chr, range(0x80, 0xA0)), "\u2028", "\u2029"]}


def to_json(value: Any) -> str:
    return json.dumps(_defined(value), sort_keys=True, ensure_ascii=False).translate(_ESCAPE)


def b64enc(value: str | bytes) -> str:
    value = _defined(value)
    return base64.b64encode(value.encode() if isinstance(value, str) else value).decode()


def sha256sum(value: str | bytes) -> str:
    value = _defined(value)
    return hashlib.sha256(value.encode() if isinstance(value, str) else value).hexdigest()


@dataclass(frozen=True)
class Chart:
    name: str
    version: str
    app_version: str
    path: Path
    defaults: dict[str, Any]
    validator: jsonschema.protocols.Validator
    env: jinja2.Environment
    templates: tuple[str, ...]

    @property
    def label(self) -> str:
        """The `helm.sh/chart` label value."""
        return f"{self.name}-{self.version}".replace("+", "_")


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Helm's values merge: maps merge recursively, everything else is replaced."""
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


COMMON_CHART = "_common"  # the library chart: shared helpers and object templates
COMMON_TEMPLATES_ANNOTATION = "chainops.io/common-templates"


def _environment(templates_dir: Path) -> jinja2.Environment:
    """A chart's own templates, and the library chart's under `_common/`."""
    common = templates_dir.parent.parent / COMMON_CHART / "templates"
    env = ImmutableSandboxedEnvironment(
        loader=jinja2.ChoiceLoader(
            [jinja2.FileSystemLoader(str(templates_dir)), jinja2.PrefixLoader({COMMON_CHART: jinja2.FileSystemLoader(str(common))})]
        ),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update({"tojson": to_json, "toyaml": to_json, "b64enc": b64enc, "sha256sum": sha256sum})
    return env


@lru_cache(maxsize=32)
def load_chart(path: Path) -> Chart:
    """Load and compile a chart once per process; compiled templates are reused across environments."""
    try:
        meta = yaml.load((path / "Chart.yaml").read_text(), Loader=_Loader)
        defaults = yaml.load((path / "values.yaml").read_text(), Loader=_Loader) or {}
        schema = json.loads((path / "values.schema.json").read_text())
    except (OSError, yaml.YAMLError, json.JSONDecodeError) as exc:
        raise RenderError(f"chart {path.name}: cannot load: {exc}") from None
    for field in ("apiVersion", "name", "version", "appVersion"):
        if field not in meta:
            raise RenderError(f"chart {path.name}: Chart.yaml: missing {field}")
    jsonschema.Draft202012Validator.check_schema(schema)
    env = _environment(path / "templates")
    own = [p.name for p in (path / "templates").iterdir() if p.suffix == ".yaml" and not p.name.startswith("_")]
    shared = [n.strip() for n in str((meta.get("annotations") or {}).get(COMMON_TEMPLATES_ANNOTATION, "")).split(",") if n.strip()]
    clash = sorted(set(own) & set(shared))
    if clash:
        raise RenderError(f"chart {path.name}: templates/{clash[0]} is also taken from {COMMON_CHART}; keep one")
    # Sorted by file name wherever a template lives, so moving one into the library
    # changes nothing in the output.
    templates = tuple(sorted([*own, *(f"{COMMON_CHART}/{n}" for n in shared)], key=lambda n: n.rsplit("/", 1)[-1]))
    for name in templates:
        try:
            env.get_template(name)
        except jinja2.TemplateSyntaxError as exc:
            raise RenderError(f"chart {meta['name']}: templates/{name}:{exc.lineno}: {exc.message}") from None
    return Chart(
        name=meta["name"],
        version=str(meta["version"]),
        app_version=str(meta["appVersion"]),
        path=path,
        defaults=defaults,
        validator=jsonschema.Draft202012Validator(schema),
        env=env,
        templates=templates,
    )


# Values under these keys hold private material: their errors never echo the value.
SENSITIVE_VALUE_KEYS = frozenset({"secret", "secrets"})


def value_path(parts: Any) -> str:
    """`values.groups[0].replicas`: the value path an error names."""
    path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts)
    return "values" + path if path else "values.(root)"


def _value_message(error: jsonschema.ValidationError) -> str:
    if SENSITIVE_VALUE_KEYS & {p for p in error.absolute_path if isinstance(p, str)}:
        return f"invalid value ({error.validator} {error.validator_value!r} not satisfied; value not shown)"
    return error.message


def validate_values(chart: Chart, values: Mapping[str, Any]) -> None:
    errors = sorted(chart.validator.iter_errors(values), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        lines = [f"chart {chart.name}: {value_path(e.absolute_path)}: {_value_message(e)}" for e in errors]
        raise RenderError("\n".join(lines))


def _template_line(exc: BaseException, chart: Chart, template: str) -> str:
    """The template file and line of a Jinja2 runtime error, from its traceback."""
    tb = exc.__traceback__
    line = "?"
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.endswith(template):
            line = str(tb.tb_lineno)
        tb = tb.tb_next
    return f"chart {chart.name}: templates/{template}:{line}"


@dataclass(frozen=True)
class RenderedObject:
    chart: str
    template: str
    obj: dict[str, Any]


def render_chart(
    chart: Chart,
    release: Mapping[str, Any],
    *value_layers: Mapping[str, Any],
) -> list[RenderedObject]:
    """Render every template of a chart; each YAML document becomes one object."""
    values: dict[str, Any] = chart.defaults
    for layer in value_layers:
        values = deep_merge(values, layer)
    validate_values(chart, values)
    context: dict[str, Any] = {
        "Values": values,
        "Release": dict(release),
        "Chart": {"Name": chart.name, "Version": chart.version, "AppVersion": chart.app_version, "Label": chart.label},
    }
    context["include"] = _include(chart, context)
    objects: list[RenderedObject] = []
    for template in chart.templates:
        text = _render_template(chart, template, context)
        try:
            documents = list(yaml.load_all(text, Loader=_Loader))
        except yaml.YAMLError as exc:
            raise RenderError(f"chart {chart.name}: templates/{template}: output is not YAML: {exc}") from None
        for doc in documents:
            if doc is None:
                continue
            if not isinstance(doc, dict) or "kind" not in doc:
                raise RenderError(f"chart {chart.name}: templates/{template}: a document is not a Kubernetes object")
            objects.append(RenderedObject(chart.name, template, doc))
    return objects


def _render_template(chart: Chart, template: str, context: Mapping[str, Any]) -> str:
    try:
        return chart.env.get_template(template).render(context)
    except jinja2.UndefinedError as exc:
        raise RenderError(f"{_template_line(exc, chart, template)}: undefined value: {exc.message}") from None
    except jinja2.exceptions.SecurityError as exc:
        raise RenderError(f"{_template_line(exc, chart, template)}: not allowed in a template: {exc}") from None
    except jinja2.TemplateError as exc:
        raise RenderError(f"{_template_line(exc, chart, template)}: {exc}") from None
    except RenderError:
        raise
    except (TypeError, ValueError, AttributeError, KeyError, IndexError) as exc:
        raise RenderError(f"{_template_line(exc, chart, template)}: {type(exc).__name__}: {exc}") from None


def _include(chart: Chart, context: dict[str, Any]) -> Callable[[str], str]:
    """Helm's `include`: render another template of the chart to text (used for checksums)."""

    def include(template: str) -> str:
        return _render_template(chart, template, context)

    return include
