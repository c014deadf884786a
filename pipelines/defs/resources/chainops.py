"""Where the pipeline reads environments and publishes manifests.

Unset fields fall back to the same environment variables and embedded defaults as the
CLI (CHAINOPS_ENVIRONMENTS, CHAINOPS_REPO, CHAINOPS_BRANCH, CHAINOPS_HOME,
CHAINOPS_CHARTS), so a CLI run and a Dagster run agree.
"""



import dagster as dg

from pipelines.lib import compiler
from pipelines.lib.gitops import GitopsRepository
from pipelines.lib.sealing import AgeIdentity
from pipelines.lib.settings import Settings, resolve_settings


class ChainopsResource(dg.ConfigurableResource):
    environments_dir: str | None = None
    repo: str | None = None
    branch: str | None = None
    home: str | None = None
    charts_dir: str | None = None

    def settings(self) -> Settings:
        settings = resolve_settings(self.environments_dir, self.home, self.repo, self.branch, self.charts_dir)
        settings.prepare()
        return settings

    def repository(self) -> GitopsRepository:
        settings = self.settings()
        return GitopsRepository(settings.repo, settings.branch, settings.home)

    def identity(self) -> AgeIdentity:
        return AgeIdentity.load_or_create(self.settings().home)

    def compile_context(self) -> compiler.CompileContext:
        settings = self.settings()
        return compiler.CompileContext(
            settings.charts_dir, self.identity(), settings.target
        )

    def existing(self, environment: str) -> compiler.ExistingEnvironment:
        """The environment's committed files (public or sealed), read in the run worker."""
        with self.repository() as repo:
            base = repo.fetch()
            return compiler.ExistingEnvironment(environment, repo.read_files(base, compiler.owned_paths(environment)))
