"""`chainops` command line: the same lib/ functions the Dagster assets call.

Exit codes: 0 ok, 1 validation or guard failure (or `diff` found changes), 2 usage or
environment error.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pipelines.lib import compiler, publish, review
from pipelines.lib.config import EnvironmentConfig, load_all
from pipelines.lib.fingerprint import Fingerprinted, FingerprintStore, environment_fingerprint, source_digest
from pipelines.lib.forges import Forge, ForgeError, ForgeSettings, forge_for
from pipelines.lib.genesis import GenesisError, genesis_block_hash
from pipelines.lib.gitops import GitopsError, GitopsRepository, git_blob_id, group_by_prefix
from pipelines.lib.identity_guard import check_published
from pipelines.lib.layout import ENV_NAME_RE
from pipelines.lib.manifests import ManifestError
from pipelines.lib.sealed_secrets import CertificateError, resolve_cert_path
from pipelines.lib.sealing import AgeIdentity, SealingError
from pipelines.lib.settings import Settings, resolve_settings

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
VALIDATION_ERRORS = compiler.ENVIRONMENT_PROBLEMS
ENVIRONMENT_ERRORS = (GitopsError, ForgeError, SealingError, ManifestError, OSError)


class UsageError(Exception):
    pass


def _add_location_flags(parser: argparse.ArgumentParser, with_repo: bool = True) -> None:
    parser.add_argument("--environments", help="directory of environment files (env CHAINOPS_ENVIRONMENTS)")
    parser.add_argument("--home", help="chainops home (env CHAINOPS_HOME, default .chainops/)")
    if with_repo:
        parser.add_argument("--repo", help="GitOps repository URL or path (env CHAINOPS_REPO)")
        parser.add_argument("--branch", help="GitOps branch (env CHAINOPS_BRANCH, default main)")


def _add_guard_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--allow-genesis-change",
        action="append",
        default=[],
        metavar="ENV",
        help="accept a reset of ENV's chain: a changed genesis, or new keys where its lock is missing or damaged "
        "(repeatable; one environment per flag)",
    )
    parser.add_argument(
        "--accept-remote-rewind",
        action="store_true",
        help="accept a GitOps branch that no longer contains the tip chainops last published from this home",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chainops", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    compile_p = sub.add_parser("compile", help="compile environments and publish them to the GitOps repository")
    compile_p.add_argument("envs", nargs="*", metavar="ENV", help="environments to compile (default: all)")
    _add_location_flags(compile_p)
    _add_guard_flags(compile_p)
    compile_p.add_argument(
        "--decommission",
        action="append",
        default=[],
        metavar="ENV",
        help="remove the published output of ENV, an environment that exists in the GitOps repository (repeatable)",
    )
    compile_p.add_argument(
        "--rename",
        action="append",
        default=[],
        metavar="OLD=NEW",
        help="publish environment OLD under the new name NEW (environments/NEW.yaml) with its keys and genesis, "
        "and remove rendered/OLD in the same push",
    )
    compile_p.add_argument("--jobs", type=int, default=0, metavar="N", help="worker processes (default: CPU count)")
    compile_p.add_argument(
        "--no-cache", action="store_true", help="compile every environment even when its inputs are unchanged"
    )
    compile_p.add_argument("--summary", action="store_true", help="also print the review summary of each change")
    diff_p = sub.add_parser("diff", help="show what compile would change (exit 0 none, 1 changes, 2 error)")
    diff_p.add_argument("env", metavar="ENV")
    _add_location_flags(diff_p)
    validate_p = sub.add_parser(
        "validate",
        help="validate all environment files and cross-file rules, then dry-compile them (nothing is written)",
    )
    validate_p.add_argument("envs", nargs="*", metavar="ENV", help="dry-compile only these (default: all)")
    _add_location_flags(validate_p, with_repo=False)
    validate_p.add_argument("--jobs", type=int, default=0, metavar="N", help="worker processes (default: CPU count)")
    validate_p.add_argument(
        "--no-render", action="store_true", help="check the files and cross-file rules only; skip the dry compile"
    )
    hash_p = sub.add_parser("genesis-hash", help="print the block hash of a genesis.json")
    hash_p.add_argument("file", type=Path)
    keys_p = sub.add_parser("keys", help="key lifecycle")
    keys_sub = keys_p.add_subparsers(dest="keys_command", required=True)
    rotate_p = keys_sub.add_parser(
        "rotate", help="new p2p key for a non-validator node; re-renders the peer lists and commits"
    )
    rotate_p.add_argument("env", metavar="ENV")
    rotate_p.add_argument("node", metavar="NODE", help="e.g. rpc-0 or bootnode-0 (validators are refused)")
    _add_location_flags(rotate_p)
    rotate_p.add_argument(
        "--accept-remote-rewind",
        action="store_true",
        help="accept a GitOps branch that no longer contains the tip chainops last published from this home",
    )
    return parser


@dataclass(frozen=True)
class Selection:
    compile: list[EnvironmentConfig]
    decommission: list[str]
    reviews: dict[str, str] = dataclasses.field(default_factory=dict)  # gitops.review by environment
    requested: tuple[str, ...] = ()  # names given with --decommission (checked against the repository)
    renames: dict[str, str] = dataclasses.field(default_factory=dict)  # new name -> old name (--rename)
    files: frozenset[str] = frozenset()  # every environment that has a file


def _select(
    settings: Settings,
    names: Sequence[str],
    decommission: Sequence[str],
    allow_reset: Sequence[str] = (),
    renames: Sequence[str] = (),
) -> Selection:
    configs = {c.name: c for c in load_all(settings.environments_dir)}
    unknown = [n for n in names if n not in configs]
    if unknown:
        raise UsageError(f"no environment file for {', '.join(unknown)} in {settings.environments_dir}")
    moved = _parse_renames(renames, configs, names)
    for name in decommission:
        if not ENV_NAME_RE.match(name):
            raise UsageError(f"--decommission {name!r}: not an environment name (a DNS label matching {ENV_NAME_RE.pattern})")
    for name in allow_reset:  # may name an environment without a file (one a rewind dropped)
        if not ENV_NAME_RE.match(name):
            raise UsageError(f"--allow-genesis-change {name!r}: not an environment name (a DNS label matching {ENV_NAME_RE.pattern})")
    chosen = [configs[n] for n in (names or sorted(configs))]
    retire = sorted({c.name for c in chosen if c.spec.decommission} | set(decommission) | set(moved.values()))
    reviews = {name: config.spec.gitops.review for name, config in configs.items()}
    return Selection(
        [c for c in chosen if c.name not in retire], retire, reviews, tuple(decommission), moved, frozenset(configs)
    )


def _parse_renames(renames: Sequence[str], configs: dict[str, EnvironmentConfig], names: Sequence[str]) -> dict[str, str]:
    moved: dict[str, str] = {}
    for item in renames:
        old, sep, new = item.partition("=")
        if not sep or not ENV_NAME_RE.match(old) or not ENV_NAME_RE.match(new) or old == new:
            raise UsageError(f"--rename {item!r}: expected OLD=NEW, two different environment names")
        if new not in configs:
            raise UsageError(f"--rename {item}: there is no environment file {new}.yaml to publish the network under")
        if old in configs and not configs[old].spec.decommission:
            raise UsageError(f"--rename {item}: environments/{old}.yaml still exists; remove or rename the file first")
        if names and new not in names:
            raise UsageError(f"--rename {item}: {new} is not among the environments to compile")
        if new in moved or old in moved.values():
            raise UsageError(f"--rename {item}: each environment can be renamed once per run")
        moved[new] = old
    return moved


def _check_published(repo: GitopsRepository, base: str | None, selection: Selection, reset: Sequence[str]) -> set[str]:
    """The run-level guards, after the fetch and before any compile: --decommission and
    --rename name environments that exist in the repository, a rewind accepted with
    --accept-remote-rewind drops no lock unnoticed, and chainId and namespace are unique
    across the environments already published. Returns the published environments."""
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
        reset=set(reset) | set(selection.renames),
        retiring=set(selection.decommission),
        files_present=selection.files,
        entries=entries,
    )
    return published


def _compile_one(
    config: EnvironmentConfig, repo: GitopsRepository, base: str | None, ctx: compiler.CompileContext, allow_genesis_change: bool
) -> compiler.CompiledEnvironment:
    existing = compiler.ExistingEnvironment(config.name, repo.read_files(base, compiler.owned_paths(config.name)), base)
    return compiler.compile_environment(config, existing, ctx, allow_genesis_change)


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
        owned = {name: compiler.owned_paths(name) for name in names}
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

    def remember(self, config: EnvironmentConfig, compiled: compiler.CompiledEnvironment) -> None:
        tree = {path: git_blob_id(data) for path, data in compiled.files.items()}
        entry = Fingerprinted(self.fingerprint(config, tree), compiled.genesis_hash, compiled.object_count)
        self.store.record(config.name, entry)



def _forge(settings: Settings, selection: Selection) -> Forge | None:
    """The forge client when a selected environment is reviewed by pull request (checked
    before anything is written: a missing token is an error, not a half-published run)."""
    wanted = [c.name for c in selection.compile if c.spec.gitops.review == "pull-request"]
    wanted += [n for n in selection.decommission if selection.reviews.get(n) == "pull-request"]
    if not wanted:
        return None
    forge_settings = ForgeSettings.from_env(os.environ, settings.repo)
    if forge_settings is None:
        raise UsageError(
            f"{', '.join(wanted)}: gitops.review: pull-request needs a forge; set CHAINOPS_FORGE (github|gitlab), "
            "CHAINOPS_FORGE_URL, CHAINOPS_FORGE_REPO and CHAINOPS_FORGE_TOKEN"
        )
    return forge_for(forge_settings)


def _print_summary(summary: review.ReviewSummary) -> None:
    text = review.render_summary(summary)
    print(review.for_terminal(text) if sys.stdout.isatty() else text)


def _prepare(
    settings: Settings, selection: Selection
) -> tuple[Forge | None, AgeIdentity, compiler.CompileContext, str | None]:
    """What every publishing command needs, checked before anything is written: the forge
    (when a selected environment is reviewed by pull request), then the home directory,
    the pipeline identity, the compile context and the environments' source commit."""
    forge = _forge(settings, selection)
    settings.prepare()
    identity = AgeIdentity.load_or_create(settings.home)
    ctx = compiler.CompileContext(settings.charts_dir, identity, settings.target)
    return forge, identity, ctx, compiler.source_commit(settings.environments_dir)


def cmd_compile(args: argparse.Namespace) -> int:
    settings = resolve_settings(args.environments, args.home, args.repo, args.branch)
    selection = _select(settings, args.envs, args.decommission, args.allow_genesis_change, args.rename)
    forge, identity, ctx, source = _prepare(settings, selection)
    with GitopsRepository(settings.repo, settings.branch, settings.home, args.accept_remote_rewind) as repo:
        base = repo.fetch()
        published = _check_published(repo, base, selection, args.allow_genesis_change)
        fast = FastPath.load(repo, base, settings, identity.recipient, [c.name for c in selection.compile])
        skipped = {
            c.name: hit
            for c in selection.compile
            if c.spec.gitops.review == "direct"
            and c.name not in args.allow_genesis_change
            and not args.no_cache
            and c.name not in selection.renames
            and (hit := fast.hit(c)) is not None
        }
        todo = [c for c in selection.compile if c.name not in skipped]
        # Compile everything before writing anything: one bad environment publishes nothing.
        tasks = []
        on_base: dict[str, dict[str, bytes]] = {}  # environments compiled on the target's own files
        for c in todo:
            at = publish.compile_base(repo, base, c.name, c.spec.gitops.review)
            if c.name in selection.renames:  # the old environment's state, under the new name
                old = selection.renames[c.name]
                old_state = compiler.ExistingEnvironment(old, repo.read_files(base, compiler.owned_paths(old)), base)
                existing = compiler.moved_environment(old_state, c.name, identity)
                on_base[c.name] = existing.files  # review it as a change of the moved network, not a new one
            elif at == base:  # the fast path already listed every environment's files at base
                existing = compiler.ExistingEnvironment(c.name, repo.read_blobs(fast.trees[c.name]), at)
                on_base[c.name] = existing.files
            else:
                existing = compiler.ExistingEnvironment(c.name, repo.read_files(at, compiler.owned_paths(c.name)), at)
            tasks.append((c, existing, ctx, c.name in args.allow_genesis_change))
        compiled = compiler.compile_many(tasks, args.jobs or os.cpu_count() or 1)
        items = [
            publish.plan_compiled(repo, base, c, cfg.profile.name, cfg.spec.gitops.review, source, on_base.get(c.name))
            for c, cfg in zip(compiled, todo)
        ]
        items += [
            publish.plan_decommission(repo, base, name, "pull-request" if selection.reviews.get(name) == "pull-request" else "direct")
            for name in selection.decommission
            if name in published
        ]
        outcomes = publish.publish_environments(repo, base, items, forge)
        repo.adopt_rewind()
        for config, item in zip(todo, compiled):
            if config.spec.gitops.review == "direct":
                fast.remember(config, item)
        for name in selection.decommission:
            fast.store.forget(name)
        fast.store.save()
        orphans = published - {c.name for c in selection.compile} - set(selection.decommission)
    by_name = {item.name: item for item in compiled}
    for config in selection.compile:
        if config.name in skipped:
            hit = skipped[config.name]
            print(f"{config.name}: genesis {hit.genesis_hash}  objects {hit.object_count}  unchanged")
            continue
        item = by_name[config.name]
        print(f"{item.name}: genesis {item.genesis_hash}  objects {item.object_count}  {outcomes[item.name].describe()}")
        if item.genesis_changed_from:
            print(f"{item.name}: GENESIS CHANGED from {item.genesis_changed_from} (the chain was reset)")
        for change in item.validator_changes:
            print(f"{item.name}: validator vote needed to {change.action} {change.address}: {change.instruction}")
    for name in selection.decommission:
        if name not in published:
            print(f"{name}: decommission: true, and nothing of it is published  unchanged")
            continue
        renamed = [new for new, old in selection.renames.items() if old == name]
        what = f"renamed to {renamed[0]}" if renamed else "decommissioned"
        print(f"{name}: {what}  {outcomes[name].describe()}")
    if args.summary:
        for outcome in outcomes.values():
            if outcome.summary.changed:
                _print_summary(outcome.summary)
    if not args.envs:
        for name in sorted(orphans):
            print(f"{name}: environment file is gone but rendered/{name} remains; "
                  f"set decommission: true or run with --decommission {name}", file=sys.stderr)
    return EXIT_OK


def cmd_diff(args: argparse.Namespace) -> int:
    settings = resolve_settings(args.environments, args.home, args.repo, args.branch)
    selection = _select(settings, [args.env], [])
    settings.prepare()
    identity = AgeIdentity.load_or_create(settings.home)
    ctx = compiler.CompileContext(settings.charts_dir, identity, settings.target)
    with GitopsRepository(settings.repo, settings.branch, settings.home) as repo:
        base = repo.fetch()
        current = repo.read_files(base, compiler.owned_paths(args.env))
        if selection.decommission:
            wanted: dict[str, bytes] = {p: b for p, b in current.items() if p == ".sops.yaml"}
        else:
            config = selection.compile[0]
            state = publish.compile_base(repo, base, config.name, config.spec.gitops.review)
            wanted = _compile_one(config, repo, state, ctx, allow_genesis_change=True).files
    summary = review.build_summary(args.env, current, wanted)
    if summary.changed:
        _print_summary(summary)
    changed = False
    for path in sorted(set(current) | set(wanted)):
        old, new = current.get(path), wanted.get(path)
        if old is not None and new is not None and git_blob_id(old) == git_blob_id(new):
            continue
        changed = True
        if review.is_sealed_path(path):
            print(f"~ {path} (sealed, {'added' if old is None else 'removed' if new is None else 'changed'}; content not shown)")
            continue
        sys.stdout.writelines(
            difflib.unified_diff(
                (old or b"").decode().splitlines(keepends=True),
                (new or b"").decode().splitlines(keepends=True),
                fromfile=f"a/{path}" if old is not None else "/dev/null",
                tofile=f"b/{path}" if new is not None else "/dev/null",
            )
        )
    return EXIT_FAIL if changed else EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    """Every check `compile` makes before writing, without the GitOps repository: the files
    and cross-file rules, then (unless --no-render) each environment compiled with
    throwaway keys: chart values against their schemas, render rules, object schemas."""
    settings = resolve_settings(args.environments, args.home)
    configs = {c.name: c for c in load_all(settings.environments_dir)}
    unknown = [n for n in args.envs if n not in configs]
    if unknown:
        raise UsageError(f"no environment file for {', '.join(unknown)} in {settings.environments_dir}")
    chosen = [configs[n] for n in (args.envs or sorted(configs))]
    to_render = [] if args.no_render else [c for c in chosen if not c.spec.decommission]
    with tempfile.TemporaryDirectory(prefix="chainops-validate-") as scratch:  # a throwaway identity
        ctx = compiler.CompileContext(settings.charts_dir, AgeIdentity.load_or_create(Path(scratch)), settings.target)
        problems = dict(zip([c.name for c in to_render], compiler.dry_compile_many(to_render, ctx, args.jobs or os.cpu_count() or 1)))
    for config in chosen:
        if problems.get(config.name):
            print(problems[config.name], file=sys.stderr)
            continue
        checked = "files only" if args.no_render else ("decommission" if config.spec.decommission else "compiles")
        print(f"{config.name}: ok ({config.profile.name}{', legacy' if config.profile.legacy else ''}; {checked})")
    return EXIT_FAIL if any(problems.values()) else EXIT_OK


def cmd_genesis_hash(args: argparse.Namespace) -> int:
    try:
        document = json.loads(args.file.read_bytes())
    except (OSError, ValueError) as exc:
        raise UsageError(f"{args.file}: cannot read a JSON genesis: {exc}") from None
    try:
        print(genesis_block_hash(document))
    except GenesisError as exc:
        print(f"{args.file}: {exc}", file=sys.stderr)
        return EXIT_FAIL
    return EXIT_OK


def cmd_keys(args: argparse.Namespace) -> int:
    """`chainops keys rotate ENV NODE`: the environment compiled as it is, with NODE's new p2p key,
    published like a compile (a commit, or a review branch for `review: pull-request`)."""
    settings = resolve_settings(args.environments, args.home, args.repo, args.branch)
    selection = _select(settings, [args.env], [])
    if not selection.compile:
        raise UsageError(f"{args.env} is marked for decommissioning; nothing to rotate")
    config = selection.compile[0]
    forge, identity, ctx, source = _prepare(settings, selection)
    with GitopsRepository(settings.repo, settings.branch, settings.home, args.accept_remote_rewind) as repo:
        base = repo.fetch()
        _check_published(repo, base, selection, ())
        read_base = publish.compile_base(repo, base, config.name, config.spec.gitops.review)
        existing = compiler.ExistingEnvironment(
            config.name, repo.read_files(read_base, compiler.owned_paths(config.name)), read_base
        )
        keys = compiler.compute_keys(config, existing, identity, rotate={args.node})
        genesis = compiler.compute_genesis(config, keys, existing, False)
        compiler.check_genesis_lock(config, existing.lock, genesis, False)
        compiled = compiler.render_environment(config, keys, genesis, existing, ctx)
        item = publish.plan_compiled(repo, base, compiled, config.profile.name, config.spec.gitops.review, source)
        title = f"chainops: rotate p2p key of {args.node} in {config.name}\n"
        change = dataclasses.replace(item.change, message=title + item.change.message.split("\n", 1)[1])
        outcomes = publish.publish_environments(repo, base, [dataclasses.replace(item, change=change)], forge)
        repo.adopt_rewind()
    before = {n["name"]: n["address"] for n in (existing.lock or {}).get("nodes", [])}
    after = {n.name: n.address for n in keys.nodes}
    print(
        f"{config.name}: rotated p2p key of {args.node}: {before[args.node]} -> {after[args.node]}  "
        f"{outcomes[config.name].describe()}"
    )
    return EXIT_OK


COMMANDS = {
    "compile": cmd_compile,
    "diff": cmd_diff,
    "validate": cmd_validate,
    "genesis-hash": cmd_genesis_hash,
    "keys": cmd_keys,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except VALIDATION_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAIL
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ENVIRONMENT_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
