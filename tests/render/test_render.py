"""The chart renderer: Helm semantics on sandboxed Jinja2 with StrictUndefined."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.lib.render import RenderError, deep_merge, load_chart, render_chart

CHARTS = Path(__file__).resolve().parents[2] / "chart_sources"
RELEASE = {"Name": "t", "Namespace": "ns", "Service": "chainops"}


def make_chart(tmp_path: Path, template: str, schema: dict | None = None, values: str = "greeting: hello\n") -> Path:
    chart = tmp_path / "demo"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: demo\nversion: 1.2.3\nappVersion: '9'\n")
    (chart / "values.yaml").write_text(values)
    (chart / "values.schema.json").write_text(json.dumps(schema or {"type": "object"}))
    (chart / "templates" / "cm.yaml").write_text(template)
    load_chart.cache_clear()
    return chart


CONFIGMAP = """apiVersion: v1
kind: ConfigMap
metadata:
  name: demo
data:
  greeting: {{ Values.greeting | tojson }}
"""


def test_values_precedence_and_quoting(tmp_path):
    chart = load_chart(make_chart(tmp_path, CONFIGMAP))
    [obj] = render_chart(chart, RELEASE)
    assert obj.obj["data"]["greeting"] == "hello"
    hostile = "x\nkind: Secret\n{{ 7*7 }}: ': '"
    [obj] = render_chart(chart, RELEASE, {"greeting": "profile"}, {"greeting": hostile})
    assert obj.obj["kind"] == "ConfigMap"
    assert obj.obj["data"]["greeting"] == hostile, "values are data, never YAML or template code"


def test_deep_merge_like_helm():
    assert deep_merge({"a": {"b": 1, "c": 2}, "l": [1, 2]}, {"a": {"c": 3}, "l": [9]}) == {"a": {"b": 1, "c": 3}, "l": [9]}


def test_undefined_value_names_template_and_line(tmp_path):
    chart = load_chart(make_chart(tmp_path, CONFIGMAP.replace("Values.greeting", "Values.missing")))
    with pytest.raises(RenderError, match=r"chart demo: templates/cm.yaml:6: undefined value"):
        render_chart(chart, RELEASE)


def test_sandbox_blocks_python_internals(tmp_path):
    chart = load_chart(make_chart(tmp_path, CONFIGMAP.replace("Values.greeting | tojson", "''.__class__.__mro__[1].__subclasses__() | string | tojson")))
    with pytest.raises(RenderError, match="templates/cm.yaml"):
        render_chart(chart, RELEASE)


def test_values_schema_errors_name_chart_and_path(tmp_path):
    schema = {"type": "object", "properties": {"greeting": {"type": "string", "maxLength": 3}}}
    chart = load_chart(make_chart(tmp_path, CONFIGMAP, schema))
    with pytest.raises(RenderError, match=r"chart demo: values.greeting: 'hello' is too long"):
        render_chart(chart, RELEASE)


def test_syntax_error_reported_at_load_with_line(tmp_path):
    with pytest.raises(RenderError, match=r"chart demo: templates/cm.yaml:3:"):
        load_chart(make_chart(tmp_path, "a: 1\nb: 2\nc: {{ x \n"))


@pytest.mark.parametrize("chart", ["network", "besu-node", "geth-node"])
def test_charts_follow_helm_layout_and_document_their_values(chart):
    path = CHARTS / chart
    meta = (path / "Chart.yaml").read_text()
    assert "apiVersion: v2" in meta and "appVersion:" in meta
    loaded = load_chart(path)
    schema = json.loads((path / "values.schema.json").read_text())
    assert schema["additionalProperties"] is False
    assert set(loaded.defaults) == set(schema["properties"]), "every value is documented in values.yaml and constrained by the schema"


def test_chart_values_schema_rejects_unknown_value():
    chart = load_chart(CHARTS / "network")
    with pytest.raises(RenderError, match=r"chart network: values.\(root\): Additional properties are not allowed \('extra' was unexpected\)"):
        render_chart(chart, RELEASE, {"extra": 1})
