"""Same inputs, same bytes: the determinism check is a lib function that `chainops validate`
runs for every environment and Dagster's render_deterministic check runs per partition."""

from __future__ import annotations

import itertools

from pipelines.lib.stages import render as render_stage
from tests.conftest import EXAMPLE_NAMES


def test_validate_passes_a_deterministic_render(run_cli, envs_dir, tmp_path):
    result = run_cli("validate", "--environments", envs_dir, "--jobs", "1")
    assert result.code == 0, result.err
    assert "different bytes" not in result.err


def test_validate_refuses_a_render_whose_bytes_change_between_two_runs(run_cli, envs_dir, monkeypatch):
    """A chart that writes something that changes per render (a counter standing in for a
    timestamp or an unordered set) is caught by rendering twice, and the file is named."""
    counter = itertools.count()
    real = render_stage.render_objects

    def drifting(*args, **kwargs):
        objects = real(*args, **kwargs)
        for rendered in objects:
            if rendered.obj["kind"] == "ConfigMap":
                rendered.obj.setdefault("metadata", {}).setdefault("annotations", {})["drift"] = str(next(counter))
                break
        return objects

    monkeypatch.setattr(render_stage, "render_objects", drifting)
    result = run_cli("validate", "--environments", envs_dir, "--jobs", "1")
    assert result.code == 1
    lines = [line for line in result.err.splitlines() if "rendering the same inputs twice gave different bytes" in line]
    assert len(lines) == len(EXAMPLE_NAMES), result.err
    for name in EXAMPLE_NAMES:
        line = next(line for line in lines if f"/{name}.yaml:" in line)
        assert f"rendered/{name}/" in line and "configmap-" in line
