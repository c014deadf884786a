"""Shared fixtures: real git repositories, the real sops binary and age keys in temp dirs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipelines.cli import main as cli_main

REPO_ROOT = Path(__file__).resolve().parents[1]
# The tests' own copy of the example environments (with certs/): a team edits
# environments/*.yaml for its networks, and no test may depend on what it writes there.
# tests/config/test_examples.py checks the shipped examples by what they are, not by their content.
EXAMPLES = REPO_ROOT / "tests" / "fixtures" / "environments"
SHIPPED_EXAMPLES = REPO_ROOT / "environments"
EXAMPLE_NAMES = tuple(sorted(p.stem for p in EXAMPLES.glob("*.yaml")))


# Modules whose tests start servers or many processes; `make test-fast` skips them.
SLOW_MODULES = frozenset({
    "test_concurrency", "test_faults", "test_property", "test_identity_property", "test_leaks", "test_benchmark",
    "test_publish_e2e",
})
# Whole directories that boot Dagster runs, servers or client pods; elsewhere, tests named
# test_dagster_* materialize Dagster runs too.
SLOW_DIRECTORIES = frozenset({"dagster", "smoke"})


# The tests create and delete about 100,000 small files per run (git repositories, homes,
# sops and kustomize scratch files). On this VM's ext4 root, inode allocation for them (the
# kernel's scan for a free inode that was not recently deleted, perf: find_inode_bit /
# recently_deleted) cost a third of `make test-fast`'s CPU time. pytest's temp dirs (a run
# peaks at ~115 MB fast, ~450 MB full; only failed tests keep theirs, see pyproject.toml) go
# on a memory filesystem when one with room and exec is mounted; CHAINOPS_TEST_TMPDIR names
# another root, or "" keeps the default.
MEMORY_TEMP_ROOT = Path("/dev/shm")
MEMORY_TEMP_MIN_FREE = 2 << 30


def _test_temp_root() -> str | None:
    chosen = os.environ.get("CHAINOPS_TEST_TMPDIR")
    if chosen is not None:
        return chosen or None
    try:
        stats = os.statvfs(MEMORY_TEMP_ROOT)
    except OSError:
        return None
    if stats.f_bavail * stats.f_frsize < MEMORY_TEMP_MIN_FREE or not os.access(MEMORY_TEMP_ROOT, os.W_OK):
        return None
    if stats.f_flag & os.ST_NOEXEC:  # tests run git hooks and scripts from their temp dirs
        return None
    return str(MEMORY_TEMP_ROOT)


def pytest_configure(config):
    # In the controller only: xdist hands each worker its own directory below the controller's.
    if hasattr(config, "workerinput") or config.option.basetemp or "PYTEST_DEBUG_TEMPROOT" in os.environ:
        return
    root = _test_temp_root()
    if root:
        os.environ["PYTEST_DEBUG_TEMPROOT"] = root  # read by pytest's tmp_path factory when it first makes its base dir


def pytest_collection_modifyitems(items):
    for item in items:
        module = item.module.__name__.split(".")
        in_slow_directory = len(module) > 2 and module[1] in SLOW_DIRECTORIES
        if module[-1] in SLOW_MODULES or in_slow_directory or item.name.startswith("test_dagster_"):
            item.add_marker(pytest.mark.slow)


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session):
    """Under `--dist loadgroup` every xdist_group test must carry its group in its node id
    (pytest-xdist writes it there); when a pytest release moves that field, the smoke tests
    silently spread over both workers and wait on each other's lock."""
    if not getattr(session.config.option, "loadgroup", False):  # set in xdist workers only
        return
    ungrouped = [item.nodeid for item in session.items if item.get_closest_marker("xdist_group") and "@" not in item.nodeid]
    if ungrouped:
        raise pytest.UsageError(f"pytest-xdist did not group {ungrouped[0]} (and {len(ungrouped) - 1} more): check the pytest pin")


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def run_cli(capsys, monkeypatch):
    """Run the `chainops` CLI in-process (same entry point as the console script)."""
    for var in ("CHAINOPS_HOME", "CHAINOPS_REPO", "CHAINOPS_ENVIRONMENTS", "CHAINOPS_BRANCH"):
        monkeypatch.delenv(var, raising=False)

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        code = cli_main([str(a) for a in args])
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


@pytest.fixture
def envs_dir(tmp_path: Path) -> Path:
    """A private copy of the example environments that a test may edit."""
    target = tmp_path / "environments"
    shutil.copytree(EXAMPLES, target)
    return target


def git(git_dir: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "--git-dir", str(git_dir), *args], check=True, capture_output=True, text=True
    ).stdout


def commit_count(git_dir: Path, branch: str = "main") -> int:
    try:
        return int(git(git_dir, "rev-list", "--count", branch).strip())
    except subprocess.CalledProcessError:
        return 0


def checkout(git_dir: Path, dest: Path, branch: str = "main") -> Path:
    subprocess.run(["git", "clone", "-q", "--branch", branch, str(git_dir), str(dest)], check=True)
    return dest


def venv_tool(name: str) -> str:
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


@dataclass(frozen=True)
class Workspace:
    """An empty environments directory, a bare GitOps remote (HEAD on main) and a home path
    (not created): what a test that drives the CLI end to end starts from."""

    envs: Path
    remote: Path
    home: Path
    tmp: Path

    @property
    def where(self) -> tuple:
        return ("--home", self.home, "--environments", self.envs, "--repo", self.remote)


@pytest.fixture
def workspace_dirs(tmp_path: Path, monkeypatch) -> Workspace:
    monkeypatch.delenv("CHAINOPS_CLUSTER_REPO_URL", raising=False)
    envs = tmp_path / "environments"
    envs.mkdir()
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", "--initial-branch=main", str(remote)], check=True)
    return Workspace(envs, remote, tmp_path / "home", tmp_path)


# Session fixtures for every module that asks for them: the PostgreSQL server, and
# published sites compiled once per session and copied per test.
from tests.postgres_server import postgres  # noqa: E402,F401
from tests.site_snapshots import published_sites  # noqa: E402,F401
