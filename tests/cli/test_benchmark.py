"""The compile benchmark runs end to end and refuses results it must not report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

BENCH = REPO_ROOT / "benchmarks" / "compile_bench.py"


def test_benchmark_reports_every_run_with_stages_and_commit_counts(tmp_path):
    out = tmp_path / "result.json"
    proc = subprocess.run([sys.executable, str(BENCH), "--n", "4", "--jobs", "2", "--json", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    runs = {r["run"]: r for r in report["results"]}
    assert [runs[k]["commits"] for k in ("full compile", "no-change re-run", "no-change re-run, cold cache",
                                         "one environment changed")] == [4, 0, 0, 1]
    full = runs["full compile"]["stages"]
    assert full["render"] > 0 and full["keys"] > 0 and full["validate"] > 0  # worker stages are collected
    assert "| full compile |" in proc.stdout


def test_benchmark_stops_when_a_no_change_run_commits(tmp_path, monkeypatch):
    sys.path.insert(0, str(BENCH.parent))
    try:
        import compile_bench
    finally:
        sys.path.remove(str(BENCH.parent))
    envs = tmp_path / "environments"
    envs.mkdir()
    (envs / "env-00000.yaml").write_text(compile_bench.environment_file(0, 1, 0))
    home = tmp_path / "home"
    argv = ["compile", "--environments", str(envs), "--home", str(home), "--jobs", "1"]
    compile_bench.run("first", argv, home / "gitops.git", 1)
    with pytest.raises(SystemExit, match="1 commits, expected 0"):
        (envs / "env-00000.yaml").write_text(compile_bench.environment_file(0, 2, 0))
        compile_bench.run("no-change re-run", argv, home / "gitops.git", 0)
    with pytest.raises(SystemExit, match="chainops exited"):
        (envs / "env-00000.yaml").write_text("apiVersion: nope\n")
        compile_bench.run("broken", argv, home / "gitops.git", 0)
    assert Path(home / "gitops.git").is_dir()
