"""Where the pipeline reads environments and publishes manifests.

Unset fields fall back to the same environment variables and embedded defaults as the
CLI (CHAINOPS_ENVIRONMENTS, CHAINOPS_REPO, CHAINOPS_BRANCH, CHAINOPS_HOME,
CHAINOPS_CHARTS), so a CLI run and a Dagster run agree. The Git token is only ever
given as `dg.EnvVar("CHAINOPS_GIT_TOKEN")`, so the UI shows the variable's name and
never its value.
"""

import os

import dagster as dg
from pydantic import Field, field_validator

from pipelines.lib import publish
from pipelines.lib.config import EnvironmentConfig, environment_files
from pipelines.lib.forges import FALLBACK_TOKEN_ENV, Forge, ForgeError, ForgeSettings, forge_for
from pipelines.lib.gitops import TOKEN_ENV, GitopsError, GitopsRepository
from pipelines.lib.identity_guard import check_published_environment
from pipelines.lib.layout import owned_paths
from pipelines.lib.model import CompileContext, ExistingEnvironment
from pipelines.lib.sealing import AgeIdentity
from pipelines.lib.settings import Settings, resolve_settings

REVIEW_MODES = ("direct", "pull-request")


class ChainopsResource(dg.ConfigurableResource):
    """Configuration of a chainops run; every field is optional (embedded defaults)."""

    environments_dir: str | None = Field(default=None, description="Directory of environment files (CHAINOPS_ENVIRONMENTS, default environments/).")
    repo: str | None = Field(default=None, description="GitOps repository URL or path (CHAINOPS_REPO, default <home>/gitops.git).")
    branch: str | None = Field(default=None, description="Branch the cluster syncs (CHAINOPS_BRANCH, default main).")
    review_mode: str | None = Field(default=None, description="direct | pull-request: overrides every environment's gitops.review; unset = each file decides.")
    git_token: str | None = Field(default=None, description=f"Token for https remotes; set it only as dg.EnvVar('{TOKEN_ENV}').")
    charts_dir: str | None = Field(default=None, description="Chart sources (CHAINOPS_CHARTS, default chart_sources/).")
    home: str | None = Field(default=None, description="chainops home: age identity, caches, embedded repository (CHAINOPS_HOME, default .chainops/).")

    @field_validator("review_mode")
    @classmethod
    def _known_review_mode(cls, value: str | None) -> str | None:
        if value is not None and value not in REVIEW_MODES:
            raise ValueError(f"review_mode: {value!r} is not allowed; allowed: {', '.join(REVIEW_MODES)}")
        return value

    def paths(self) -> Settings:
        """Resolved settings without touching disk or git (what a sensor may use)."""
        return resolve_settings(self.environments_dir, self.home, self.repo, self.branch, self.charts_dir)

    def settings(self) -> Settings:
        """Resolved settings, with the home directory and embedded repository created (run workers only)."""
        settings = self.paths()
        settings.prepare()
        return settings

    def repository(self, accept_rewind: bool = False) -> GitopsRepository:
        """The GitOps repository. git reads CHAINOPS_GIT_TOKEN from the run worker's
        environment, so `git_token` must be that variable (a literal would be ignored).
        `accept_rewind`: the run is tagged chainops/accept-remote-rewind=true."""
        if self.git_token and os.environ.get(TOKEN_ENV) != self.git_token:
            raise GitopsError(f"git_token must be dg.EnvVar('{TOKEN_ENV}'): git reads the token from that variable")
        settings = self.settings()
        return GitopsRepository(settings.repo, settings.branch, settings.home, accept_rewind)

    def forge(self) -> Forge:
        """The GitHub/GitLab client for pull-request review (CHAINOPS_FORGE*; the token falls
        back to `git_token`). A missing forge is an error before anything is pushed."""
        environ = dict(os.environ)
        if self.git_token:
            environ.setdefault(FALLBACK_TOKEN_ENV, self.git_token)
        settings = ForgeSettings.from_env(environ, self.paths().repo)
        if settings is None:
            raise ForgeError(
                "gitops.review: pull-request needs a forge; set CHAINOPS_FORGE (github|gitlab), "
                "CHAINOPS_FORGE_REPO and CHAINOPS_FORGE_TOKEN"
            )
        return forge_for(settings)

    def identity(self) -> AgeIdentity:
        return AgeIdentity.load_or_create(self.settings().home)

    def compile_context(self) -> CompileContext:
        settings = self.settings()
        return CompileContext(settings.charts_dir, self.identity(), settings.target)

    def review(self, config: EnvironmentConfig) -> str:
        """The review mode for one environment: the resource's override, else the file's own."""
        return self.review_mode or config.spec.gitops.review

    def existing(self, environment: str, review_mode: str = "direct", accept_rewind: bool = False) -> ExistingEnvironment:
        """The environment's committed files (public or sealed), read in the run worker. In
        pull-request mode that is the open review branch, so a pending change keeps its keys."""
        with self.repository(accept_rewind) as repo:
            base = publish.compile_base(repo, repo.fetch(), environment, review_mode)
            return ExistingEnvironment(environment, repo.read_files(base, owned_paths(environment)), base)

    def guarded_existing(
        self, config: EnvironmentConfig, reset: bool = False, accept_rewind: bool = False
    ) -> ExistingEnvironment:
        """:meth:`existing`, after the same run-level identity guards as `chainops compile`:
        a rewound remote (unless accepted, and then not for a lock the rewind changed), and
        chainId and namespace not already held by another published environment."""
        with self.repository(accept_rewind) as repo:
            base = repo.fetch()
            check_published_environment(repo, base, config, reset, files_present={p.stem for p in environment_files(self.paths().environments_dir)})
            at = publish.compile_base(repo, base, config.name, self.review(config))
            return ExistingEnvironment(config.name, repo.read_files(at, owned_paths(config.name)), at)

    def existing_at(self, environment: str, commit: str | None, review_mode: str = "direct") -> ExistingEnvironment:
        """The files at the commit an earlier step of this run read (``KeySet.based_on``), so
        every step compiles on one snapshot. Fetches only when the cache lacks that commit
        (a step in another pod); a commit the remote no longer has is an error: run again."""
        if commit is None:
            return ExistingEnvironment(environment)
        with self.repository(accept_rewind=True) as repo:  # node_keys already guarded this run's snapshot
            if not repo.has_commit(commit):
                publish.compile_base(repo, repo.fetch(), environment, review_mode)
                if not repo.has_commit(commit):
                    raise GitopsError(
                        f"{environment}: GitOps commit {commit[:12]} that node_keys was computed on is gone from "
                        "the repository (a rewritten or deleted branch); materialize node_keys again"
                    )
            return ExistingEnvironment(environment, repo.read_files(commit, owned_paths(environment)), commit)


def default_resource() -> ChainopsResource:
    """The code location's resource: environment variables and embedded defaults, plus the
    token as an EnvVar when it is set (an unset EnvVar would fail every run)."""
    return ChainopsResource(git_token=dg.EnvVar(TOKEN_ENV) if os.environ.get(TOKEN_ENV) else None)
