"""Canonical YAML: same object, same bytes, read back the same by Go tools (kustomize, the
API machinery) and by Python; safe loaders only (no arbitrary tags).
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from pipelines.lib.errors import ManifestError

# Plain scalars that Go YAML (kustomize's yaml.v3, the API machinery's YAML 1.1 reader) reads
# as numbers, booleans or null although PyYAML's YAML 1.1 resolver reads them as strings:
# "1e3", "1.5e3", "0o17", "6e9_", "y", "n". Written plain, `kubectl kustomize` would turn the
# ConfigMap value "1e3" into the number 1000. Such strings are always quoted. yaml.v3
# drops every "_" before parsing a number, so numbers are matched with "_" removed.
_GO_NUMBER = re.compile(
    r"""^[-+]?(?:
        (?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?     # 12, 1.5, .5, 1e3
      | 0[xX][0-9a-fA-F]+ | 0[oO][0-7]+ | 0[bB][01]+              # 0x1F, 0o17, 0b101
      | \.(?:inf|Inf|INF) | \.(?:nan|NaN|NAN)
    )$""",
    re.VERBOSE,
)
_GO_WORDS = frozenset(
    "y Y n N ~ yes Yes YES no No NO on On ON off Off OFF "
    "true True TRUE false False FALSE null Null NULL".split()
)


def _go_reads_as_non_string(text: str) -> bool:
    """Whether a Go YAML reader would take this plain scalar for a number, bool or null."""
    return text in _GO_WORDS or bool(_GO_NUMBER.match(text.replace("_", "")))


class _CanonicalDumper(yaml.CSafeDumper):
    """CSafeDumper that never emits anchors/aliases.

    PyYAML anchors any dict/list object that appears twice (e.g. one labels dict reused as
    selector.matchLabels); ``&id001``/``*id001`` would make the output depend on Python
    object identity and make PR diffs unreadable.
    """

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    """Multi-line strings as literal blocks so ConfigMap files diff line by line.

    The emitter falls back to a quoted scalar by itself when a literal block cannot hold
    the value exactly (trailing spaces, special characters), so this never loses data.
    Strings with \\r or Unicode line separators stay quoted: YAML would normalise them.
    """
    style = None
    if "\n" in data and not any(c in data for c in "\r\x85\u2028\u2029"):
        style = "|"
    elif _go_reads_as_non_string(data):
        style = "'"
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


def _represent_dict(dumper: yaml.SafeDumper, data: dict) -> yaml.MappingNode:
    """Mappings with string keys only: PyYAML silently skips sorting mixed keys (1 vs "a")."""
    odd = [k for k in data if not isinstance(k, str)]
    if odd:
        raise ManifestError(f"mapping keys must be strings, got {odd[0]!r} ({type(odd[0]).__name__})")
    return dumper.represent_mapping("tag:yaml.org,2002:map", data)


_CanonicalDumper.add_representer(str, _represent_str)
_CanonicalDumper.add_representer(dict, _represent_dict)


def dump_yaml(obj: Any) -> str:
    """Canonical YAML for one object: same input, same bytes (sorted keys, no folding)."""
    try:
        return yaml.dump(
            obj,
            Dumper=_CanonicalDumper,
            sort_keys=True,
            default_flow_style=False,
            allow_unicode=True,
            width=2**31 - 1,
        )
    except (yaml.YAMLError, TypeError) as exc:
        raise ManifestError(f"cannot serialise object as YAML: {exc}") from exc


class _Loader(yaml.CSafeLoader):
    """CSafeLoader that reads plain ``=`` and ``<<`` values as strings.

    PyYAML resolves them to the YAML 1.1 "value"/"merge" tags and then has no constructor
    for a value in that position, but Go tools (kustomize) write such values plain.
    ``<<`` as a mapping key still merges, as in any YAML 1.1 loader.
    """


for _tag in ("tag:yaml.org,2002:value", "tag:yaml.org,2002:merge"):
    _Loader.add_constructor(_tag, yaml.constructor.SafeConstructor.construct_yaml_str)


def load_yaml(text: str | bytes) -> Any:
    """Parse one YAML document with the safe C loader (no arbitrary tags)."""
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        raise ManifestError(f"invalid YAML: {exc}") from exc


def load_yaml_all(text: str | bytes) -> list[Any]:
    """Parse a multi-document stream (e.g. ``kubectl kustomize`` output); empty docs dropped."""
    try:
        return [doc for doc in yaml.load_all(text, Loader=_Loader) if doc is not None]
    except yaml.YAMLError as exc:
        raise ManifestError(f"invalid YAML: {exc}") from exc


