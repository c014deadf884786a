"""Where chainops reads and writes: shared by the CLI and the Dagster resources.

Flags override environment variables (CHAINOPS_ENVIRONMENTS, CHAINOPS_REPO,
CHAINOPS_BRANCH, CHAINOPS_HOME, CHAINOPS_CHARTS), which override the embedded defaults.
"""

from __future__ import annotations

import functools
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from pipelines.lib.errors import UsageError
from pipelines.lib.gitops import ensure_embedded_repository, repo_url
from pipelines.lib.model import PublishTarget

DEFAULT_BRANCH = "main"
PACKAGE_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Settings:
    environments_dir: Path
    home: Path
    repo: str
    branch: str
    charts_dir: Path
    cluster_repo_url: str | None = None

    @property
    def target(self) -> PublishTarget:
        return PublishTarget(self.repo, self.branch, self.cluster_repo_url)

    @property
    def embedded_repo(self) -> Path:
        return self.home / "gitops.git"

    @property
    def uses_embedded_repo(self) -> bool:
        return repo_url(self.repo) == str(self.embedded_repo.resolve())

    def prepare(self) -> None:
        """Create the home directory (0700) and, when used, the embedded bare repository."""
        self.home.mkdir(parents=True, exist_ok=True)
        os.chmod(self.home, 0o700)
        if self.uses_embedded_repo:
            ensure_embedded_repository(self.embedded_repo, self.branch)


def resolve_settings(
    environments: str | None = None,
    home: str | None = None,
    repo: str | None = None,
    branch: str | None = None,
    charts: str | None = None,
) -> Settings:
    home_path = Path(home or os.environ.get("CHAINOPS_HOME") or ".chainops").expanduser().resolve()
    default_charts = Path.cwd() / "chart_sources"
    if not default_charts.is_dir():
        default_charts = PACKAGE_ROOT / "chart_sources"
    settings = Settings(
        environments_dir=Path(environments or os.environ.get("CHAINOPS_ENVIRONMENTS") or "environments").resolve(),
        home=home_path,
        repo=repo or os.environ.get("CHAINOPS_REPO") or str(home_path / "gitops.git"),
        branch=branch or os.environ.get("CHAINOPS_BRANCH") or DEFAULT_BRANCH,
        charts_dir=Path(charts or os.environ.get("CHAINOPS_CHARTS") or default_charts).resolve(),
        cluster_repo_url=os.environ.get("CHAINOPS_CLUSTER_REPO_URL") or None,
    )
    check_location(settings.repo, settings.branch)
    return settings


@functools.lru_cache(maxsize=16)
def _git_accepts_branch(branch: str) -> bool:
    """`git check-ref-format --branch`, once per name and process (settings are resolved
    in every Dagster step)."""
    return subprocess.run(["git", "check-ref-format", "--branch", branch], capture_output=True, check=False).returncode == 0


def check_location(repo: str, branch: str) -> None:
    """Refuse a repository or branch git would read as an option or a path outside refs/heads
    (`--upload-pack=…`, `../x`) before git ever sees it."""
    for label, value in (("repository", repo), ("cluster repository URL", os.environ.get("CHAINOPS_CLUSTER_REPO_URL") or "")):
        if value.startswith("-") or any(c in value for c in "\n\r\0"):
            raise UsageError(f"{label} {value[:80]!r}: not a Git URL or path (it would be read as an option)")
    if branch.startswith("-") or not _git_accepts_branch(branch) or branch.startswith("chainops/"):
        raise UsageError(f"branch {branch[:80]!r}: not a branch name git accepts (git check-ref-format --branch; chainops/* is chainops' own)")
