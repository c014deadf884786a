"""The compile use case, planned once: what a run would publish, for `compile` and `diff`.

`chainops compile` is plan_run() then publish_run(); `chainops diff` is plan_run() and
printing its items. Both read the same base commit, run the same guards (published names,
rewinds, chainId/namespace claims, genesis lock, validator plan) with the same operator
decisions and build the same review summary, so what `diff` shows is what `compile`
commits (apart from the keys a compile generates, which `diff` labels; see dry_run.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pipelines.lib import pipeline, publish
from pipelines.lib.config import EnvironmentConfig
from pipelines.lib.errors import UsageError
from pipelines.lib.fingerprint import Fingerprinted, FingerprintStore, environment_fingerprint, source_digest
from pipelines.lib.forges import Forge
from pipelines.lib.gitops import GitopsRepository, git_blob_id, group_by_prefix
from pipelines.lib.identity_guard import check_published
from pipelines.lib.layout import owned_paths
from pipelines.lib.model import CompileContext, CompiledEnvironment, Decisions, ExistingEnvironment
from pipelines.lib.sealed_secrets import CertificateError, resolve_cert_path
from pipelines.lib.sealing import AgeIdentity
from pipelines.lib.settings import Settings
from pipelines.lib.stages.keys import moved_environment


@dataclass(frozen=True)
class Selection:
    """The environments a run compiles or retires, and the operator's decisions for each."""

    compile: list[EnvironmentConfig]
    decommission: list[str]
    reviews: dict[str, str] = field(default_factory=dict)  # gitops.review by environment
    requested: tuple[str, ...] = ()  # names given with --decommission (checked against the repository)
    renames: dict[str, str] = field(default_factory=dict)  # new name -> old name (--rename)
    files: frozenset[str] = frozenset()  # every environment that has a file
    decisions: Mapping[str, Decisions] = field(default_factory=dict)

    def decided(self, name: str) -> Decisions:
        return self.decisions.get(name, Decisions())

    @property
    def resets(self) -> set[str]:
        return {name for name, d in self.decisions.items() if d.allow_genesis_change}


def check_selection(repo: GitopsRepository, base: str | None, selection: Selection) -> set[str]:
    """Before any key is planned: --decommission and --rename name environments that exist
    in the repository, a rewind accepted with --accept-remote-rewind drops no lock
    unnoticed, and chainId and namespace are unique across the environments already
    published. Returns the published environments."""
    entries = repo.tree_entries(base, ("rendered",))
    published = {path.split("/")[1] for path in entries}
    listing = ", ".join(sorted(published)) or "(none)"
    for name in selection.requested:
        if name not in published:
            raise UsageError(
                f"--decommission {name}: no environment {name} in {repo.shown_url} (branch {repo.branch}); "
                f"published environments: {listing}"
            )
    for new, old in selection.renames.items():
        if old not in published:
            raise UsageError(f"--rename {old}={new}: no environment {old} in {repo.shown_url}; published environments: {listing}")
        if new in published:
            raise UsageError(f"--rename {old}={new}: {new} is already published in {repo.shown_url}; decommission it first")
    check_published(
        repo,
        base,
        selection.compile,
        reset=selection.resets | set(selection.renames),
        retiring=set(selection.decommission),
        files_present=selection.files,
        entries=entries,
    )
    return published


@dataclass
class FastPath:
    """Environments whose inputs are unchanged since chainops published them (see fingerprint.py)."""

    store: FingerprintStore
    sources: str
    recipient: str
    target: str
    trees: dict[str, dict[str, str]]

    @classmethod
    def load(cls, repo: GitopsRepository, base: str | None, settings: Settings, recipient: str, names: list[str]) -> FastPath:
        owned = {name: owned_paths(name) for name in names}
        entries = repo.tree_entries(base, tuple(p for paths in owned.values() for p in paths)) if names else {}
        grouped = group_by_prefix(entries, tuple(p for paths in owned.values() for p in paths))
        trees = {name: {p: sha for prefix in paths for p, sha in grouped[prefix].items()} for name, paths in owned.items()}
        return cls(
            FingerprintStore(repo.cache_path.with_suffix(".fingerprints.json")),
            source_digest(settings.charts_dir),
            recipient,
            f"{settings.target.url_for_cluster}#{settings.branch}",
            trees,
        )

    def fingerprint(self, config: EnvironmentConfig, tree: dict[str, str]) -> str:
        """Every input file counts: the environment file and, for sealed-secrets, the
        controller certificate it names (a new certificate must re-seal everything)."""
        inputs = Path(config.source_path).read_bytes()
        cert = config.spec.gitops.secrets.sealedSecretsCert
        if config.spec.gitops.secrets.provider == "sealed-secrets" and cert:
            try:
                inputs += b"\0" + resolve_cert_path(Path(config.source_path).parent, cert, config.source_path).read_bytes()
            except (CertificateError, OSError):
                inputs += b"\0unreadable certificate"  # the compile itself reports the problem
        return environment_fingerprint(inputs, self.sources, self.recipient, self.target, tree)

    def hit(self, config: EnvironmentConfig) -> Fingerprinted | None:
        return self.store.matches(config.name, self.fingerprint(config, self.trees.get(config.name, {})))

    def remember(self, config: EnvironmentConfig, compiled: CompiledEnvironment) -> None:
        tree = {path: git_blob_id(data) for path, data in compiled.files.items()}
        entry = Fingerprinted(self.fingerprint(config, tree), compiled.genesis_hash, compiled.object_count)
        self.store.record(config.name, entry)


@dataclass
class RunPlan:
    """Everything a run would publish, compiled in memory on one base commit."""

    base: str | None
    published: set[str]
    selection: Selection
    fast: FastPath
    skipped: dict[str, Fingerprinted]  # unchanged since the last publish (fast path)
    todo: list[EnvironmentConfig]
    compiled: list[CompiledEnvironment]
    items: list[publish.PublishItem]
    existing: dict[str, ExistingEnvironment] = field(default_factory=dict)  # what each compile started from

    @property
    def orphans(self) -> set[str]:
        return self.published - {c.name for c in self.selection.compile} - set(self.selection.decommission)


def plan_run(
    repo: GitopsRepository,
    settings: Settings,
    selection: Selection,
    identity: AgeIdentity,
    ctx: CompileContext,
    source: str | None,
    *,
    jobs: int,
    use_fast_path: bool = True,
    fetched: RunPlan | None = None,
) -> RunPlan:
    """Fetch, check, compile every selected environment and plan its commit. Nothing is
    written to the repository; one bad environment stops the whole run. `fetched`: a plan
    made just before on this repository, whose base is reused instead of fetching again."""
    base = fetched.base if fetched is not None else repo.fetch()
    published = check_selection(repo, base, selection)
    fast = FastPath.load(repo, base, settings, identity.recipient, [c.name for c in selection.compile])
    skipped = {
        c.name: hit
        for c in selection.compile
        if use_fast_path
        and c.spec.gitops.review == "direct"
        and not selection.decided(c.name).allow_genesis_change
        and c.name not in selection.renames
        and (hit := fast.hit(c)) is not None
    }
    todo = [c for c in selection.compile if c.name not in skipped]
    tasks = []
    on_base: dict[str, dict[str, bytes]] = {}  # environments compiled on the target's own files
    existing_by_name = {}
    for c in todo:
        at = publish.compile_base(repo, base, c.name, c.spec.gitops.review)
        if c.name in selection.renames:  # the old environment's state, under the new name
            old = selection.renames[c.name]
            old_state = ExistingEnvironment(old, repo.read_files(base, owned_paths(old)), base)
            existing = moved_environment(old_state, c.name, identity)
            on_base[c.name] = existing.files  # review it as a change of the moved network, not a new one
        elif at == base:  # the fast path already listed every environment's files at base
            existing = ExistingEnvironment(c.name, repo.read_blobs(fast.trees[c.name]), at)
            on_base[c.name] = existing.files
        else:
            existing = ExistingEnvironment(c.name, repo.read_files(at, owned_paths(c.name)), at)
        existing_by_name[c.name] = existing
        tasks.append((c, existing, ctx, selection.decided(c.name)))
    compiled = pipeline.compile_many(tasks, jobs)
    items = [
        publish.plan_compiled(repo, base, c, cfg.profile.name, cfg.spec.gitops.review, source, on_base.get(c.name))
        for c, cfg in zip(compiled, todo)
    ]
    items += [
        publish.plan_decommission(repo, base, name, "pull-request" if selection.reviews.get(name) == "pull-request" else "direct")
        for name in selection.decommission
        if name in published
    ]
    return RunPlan(base, published, selection, fast, skipped, todo, compiled, items, existing_by_name)


def publish_run(repo: GitopsRepository, plan: RunPlan, forge: Forge | None) -> dict[str, publish.PublishOutcome]:
    """Publish a planned run, then remember what it published (fast path, accepted rewind)."""
    outcomes = publish.publish_environments(repo, plan.base, plan.items, forge)
    repo.adopt_rewind()
    for config, item in zip(plan.todo, plan.compiled):
        if config.spec.gitops.review == "direct":
            plan.fast.remember(config, item)
    for name in plan.selection.decommission:
        plan.fast.store.forget(name)
    plan.fast.store.save()
    return outcomes
