"""The library chart (chart_sources/_common): shared helpers and object templates, no copies."""

from __future__ import annotations

import hashlib
from collections import defaultdict

import pytest

from pipelines.lib.render import COMMON_CHART, RenderError, load_chart
from tests.conftest import REPO_ROOT

CHARTS = REPO_ROOT / "chart_sources"


def test_no_two_chart_templates_are_the_same_file():
    by_digest: dict[str, list[str]] = defaultdict(list)
    for path in sorted(CHARTS.glob("*/templates/*")):
        by_digest[hashlib.sha256(path.read_bytes()).hexdigest()].append(str(path.relative_to(CHARTS)))
    copies = [paths for paths in by_digest.values() if len(paths) > 1]
    assert copies == [], f"byte-identical templates: fold them into {COMMON_CHART}: {copies}"


def test_every_chart_imports_the_library_helpers_and_renders_its_shared_templates():
    charts = [p.parent for p in sorted(CHARTS.glob("*/Chart.yaml")) if p.parent.name != COMMON_CHART]
    assert not list(CHARTS.glob("*/templates/_helpers.j2")) or [p.parent.parent.name for p in CHARTS.glob("*/templates/_helpers.j2")] == [COMMON_CHART]
    shared = {}
    for path in charts:
        chart = load_chart(path)
        shared[chart.name] = sorted(t for t in chart.templates if t.startswith(f"{COMMON_CHART}/"))
    assert shared["besu-node"] == shared["geth-node"] == [
        f"{COMMON_CHART}/{name}"
        for name in ("configmap-p2p.yaml", "ingress.yaml", "poddisruptionbudget.yaml", "secret.yaml", "service-p2p.yaml")
    ]
    assert shared["bootnode"] == [f"{COMMON_CHART}/secret.yaml"]


def test_a_chart_cannot_have_a_template_of_its_own_and_the_library_of_the_same_name(tmp_path):
    import shutil

    shutil.copytree(CHARTS, tmp_path / "charts")
    (tmp_path / "charts" / "besu-node" / "templates" / "secret.yaml").write_text("{# a copy #}\n")
    load_chart.cache_clear()
    with pytest.raises(RenderError, match="secret.yaml is also taken from _common"):
        load_chart(tmp_path / "charts" / "besu-node")
    load_chart.cache_clear()
