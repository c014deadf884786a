"""`chainops` command line: the same lib/ functions the Dagster assets call.

Exit codes: 0 ok, 1 validation or guard failure (or `diff` found changes), 2 usage or
environment error.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import difflib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from git.exc import GitError

from pipelines.lib import cluster_keys, pipeline, publish, review, smoke
from pipelines.lib.actions import Selection, check_selection, plan_run, publish_run
from pipelines.lib.config import EnvironmentConfig, load_all
from pipelines.lib.dry_run import Labeller, dry_run_home, key_labels
from pipelines.lib.errors import ChainopsError, UsageError
from pipelines.lib.forges import Forge, ForgeSettings, forge_for
from pipelines.lib.genesis import GenesisError, genesis_block_hash
from pipelines.lib.gitops import GitopsRepository, git_blob_id
from pipelines.lib.layout import ENV_NAME_RE, lock_path, owned_paths
from pipelines.lib.model import VERSION, CompileContext, Decisions, ExistingEnvironment
from pipelines.lib.pipeline import dry_compile_many
from pipelines.lib.publish import source_commit
from pipelines.lib.sealing import AgeIdentity
from pipelines.lib.settings import Settings, resolve_settings
from pipelines.lib.validator_plan import describe_step

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


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
        "--validators-voted",
        action="append",
        default=[],
        metavar="ENV",
        help="confirm that the votes removing ENV's validators have passed (review: direct publishes at once)",
    )
    parser.add_argument(
        "--allow-unsafe-validator-change",
        action="append",
        default=[],
        metavar="ENV",
        help="publish a validator change of ENV that lowers its fault tolerance by more than one step",
    )
    parser.add_argument(
        "--confirm-transitions",
        dest="transition_confirmed",
        action="append",
        default=[],
        metavar="ENV",
        help="confirm that the blocks of ENV's new or changed consensus transitions are still ahead of its chain head "
        "(with network.rpcUrl set, the node's head is checked as well)",
    )
    parser.add_argument(
        "--accept-remote-rewind",
        action="store_true",
        help="accept a GitOps branch that no longer contains the tip chainops last published from this home",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chainops", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"chainops {VERSION}")
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
    diff_p = sub.add_parser(
        "diff", help="dry run of compile: what it would commit for ENV (exit 0 none, 1 changes, 2 error); writes nothing"
    )
    diff_p.add_argument("env", metavar="ENV")
    _add_location_flags(diff_p)
    _add_guard_flags(diff_p)
    diff_p.add_argument(
        "--format",
        choices=("text", "markdown"),
        default="text",
        help="text: summary and unified diff; markdown: the review summary alone (a pull request comment)",
    )
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
    smoke_p = sub.add_parser(
        "smoke",
        help="boot the committed rendered/ENV as local sandboxed pods (no cluster) and wait for blocks; writes nothing",
    )
    smoke_p.add_argument("env", metavar="ENV")
    _add_location_flags(smoke_p)
    smoke_p.add_argument("--seconds", type=float, default=180, metavar="N", help="how long the network may take (default 180)")
    smoke_p.add_argument(
        "--bin", action="append", default=[], metavar="NAME=PATH", help="the local binary for an image's client, e.g. geth=/usr/local/bin/geth"
    )
    cluster_p = sub.add_parser("cluster", help="the cluster's own keys (never the pipeline's)")
    cluster_sub = cluster_p.add_subparsers(dest="cluster_command", required=True)
    init_p = cluster_sub.add_parser(
        "init",
        help="create the age key pair a cluster decrypts ENV's Secrets with: prints the recipient for "
        "gitops.secrets.ageRecipients, writes the private key once as a sops-age Secret manifest outside the repository",
    )
    init_p.add_argument("env", metavar="ENV")
    init_p.add_argument("--home", help="chainops home (env CHAINOPS_HOME, default .chainops/)")
    init_p.add_argument("--out", type=Path, help="where to write the Secret manifest (default HOME/cluster-keys/ENV.sops-age.yaml)")
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


def _select(
    settings: Settings,
    names: Sequence[str],
    decommission: Sequence[str],
    args: argparse.Namespace | None = None,
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
    decisions = _decisions(args, configs)
    chosen = [configs[n] for n in (names or sorted(configs))]
    retire = sorted({c.name for c in chosen if c.spec.decommission} | set(decommission) | set(moved.values()))
    reviews = {name: config.spec.gitops.review for name, config in configs.items()}
    return Selection(
        [c for c in chosen if c.name not in retire], retire, reviews, tuple(decommission), moved, frozenset(configs), decisions
    )


def _decisions(args: argparse.Namespace | None, configs: dict[str, EnvironmentConfig]) -> dict[str, Decisions]:
    """The per-environment decision flags, each naming one environment."""
    flags = {
        "allow_genesis_change": "--allow-genesis-change",
        "validators_voted": "--validators-voted",
        "allow_unsafe_validator_change": "--allow-unsafe-validator-change",
        "transition_confirmed": "--confirm-transitions",
    }
    decisions: dict[str, Decisions] = {}
    for attribute, flag in flags.items():
        for name in getattr(args, attribute, None) or ():
            if not ENV_NAME_RE.match(name):
                raise UsageError(f"{flag} {name!r}: not an environment name (a DNS label matching {ENV_NAME_RE.pattern})")
            if attribute != "allow_genesis_change" and name not in configs:  # a reset may name a dropped environment
                raise UsageError(f"{flag} {name}: no environment file {name}.yaml; environments: {', '.join(sorted(configs))}")
            decisions[name] = dataclasses.replace(decisions.get(name, Decisions()), **{attribute: True})
    return decisions


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
) -> tuple[Forge | None, AgeIdentity, CompileContext, str | None]:
    """What every publishing command needs, checked before anything is written: the forge
    (when a selected environment is reviewed by pull request), then the home directory,
    the pipeline identity, the compile context and the environments' source commit."""
    forge = _forge(settings, selection)
    new_repository = settings.uses_embedded_repo and not (settings.embedded_repo / "HEAD").exists()
    identity_file = settings.home / "age" / "identity.txt"
    new_identity = not identity_file.exists()
    settings.prepare()
    identity = AgeIdentity.load_or_create(settings.home)
    if new_identity:  # on stderr: a run from the wrong directory must not go unnoticed
        print(f"chainops: created a new pipeline identity {identity_file} ({identity.recipient}); back it up: "
              "without it the keys it seals cannot be read again", file=sys.stderr)
    if new_repository:
        print(f"chainops: created a new embedded GitOps repository {settings.embedded_repo} (no --repo / CHAINOPS_REPO given)",
              file=sys.stderr)
    ctx = CompileContext(settings.charts_dir, identity, settings.target)
    return forge, identity, ctx, source_commit(settings.environments_dir)


@contextlib.contextmanager
def _new_home_rollback(settings: Settings) -> Iterator[list[bool]]:
    """A run that fails before it publishes anything leaves no home it created: no identity,
    no cache. (Once publishing started, the identity may have sealed published keys: kept.)
    Yields a one-item list the command sets to True when publishing starts."""
    fresh = not settings.home.exists()
    publishing = [False]
    try:
        yield publishing
    except BaseException:
        if fresh and not publishing[0]:
            shutil.rmtree(settings.home, ignore_errors=True)
        raise


def cmd_compile(args: argparse.Namespace) -> int:
    settings = resolve_settings(args.environments, args.home, args.repo, args.branch)
    selection = _select(settings, args.envs, args.decommission, args, args.rename)
    with _new_home_rollback(settings) as publishing:
        forge, identity, ctx, source = _prepare(settings, selection)
        with GitopsRepository(settings.repo, settings.branch, settings.home, args.accept_remote_rewind) as repo:
            plan = plan_run(
                repo, settings, selection, identity, ctx, source, jobs=args.jobs or os.cpu_count() or 1,
                use_fast_path=not args.no_cache,
            )
            publishing[0] = True
            outcomes = publish_run(repo, plan, forge)
    published, skipped, compiled = plan.published, plan.skipped, plan.compiled
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
        for transition in outcomes[item.name].summary.transitions_added:
            print(f"{item.name}: consensus transition at block {transition.block} ({'; '.join(transition.changes)}): "
                  "every node must restart with the new genesis before that block (applying this commit rolls the pods)")
        if item.validator_plan is not None:
            for step in item.validator_plan.removals:
                print(f"{item.name}: validator vote (passed, --validators-voted): {describe_step(item.validator_plan, step)}")
            for step in item.validator_plan.additions:
                print(f"{item.name}: validator vote needed once the new pods have synced: "
                      f"{describe_step(item.validator_plan, step)}")
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
        for name in sorted(plan.orphans):
            print(f"{name}: environment file is gone but rendered/{name} remains; "
                  f"set decommission: true or run with --decommission {name}", file=sys.stderr)
    return EXIT_OK


def cmd_diff(args: argparse.Namespace) -> int:
    """A dry run of `compile ENV`: the same plan (actions.plan_run), printed instead of
    published. Exit 0 no change, 1 changes, 2 any error (including a refusal compile
    would make); nothing is written."""
    try:
        return _diff(args)
    except (ChainopsError, OSError, GitError) as exc:
        print(f"error: {_one_line(exc) if not isinstance(exc, ChainopsError) else exc}", file=sys.stderr)
        return EXIT_USAGE


def _diff(args: argparse.Namespace) -> int:
    settings = resolve_settings(args.environments, args.home, args.repo, args.branch)
    selection = _select(settings, [args.env], [], args)
    source = source_commit(settings.environments_dir)
    with dry_run_home(settings, args.accept_remote_rewind) as (identity, repo):
        ctx = CompileContext(settings.charts_dir, identity, settings.target)
        first_plan = plan_run(repo, settings, selection, identity, ctx, source, jobs=1, use_fast_path=False)
        plans = [first_plan, plan_run(repo, settings, selection, identity, ctx, source, jobs=1, use_fast_path=False, fetched=first_plan)]
        if not plans[0].items:
            print(f"{args.env}: decommission: true, and nothing of it is published  unchanged", file=sys.stderr)
            return EXIT_OK
        first, second = (plan.items[0] for plan in plans)
        existing = plans[0].existing.get(args.env)
        before_lock = existing.lock if existing is not None else None
        new_locks = [review.read_lock(item.change.files, args.env) for item in (first, second)]
        label = Labeller(
            key_labels(before_lock, new_locks[0]),
            key_labels(before_lock, new_locks[1]),
            new_locks[0].genesisHash if new_locks[0] is not None else None,
        )
        now, after = repo.preview(plans[0].base, first.change)
        _, after_second = repo.preview(plans[1].base, second.change)
    if not first.summary.changed:
        if args.format == "markdown":
            print(review.render_summary(first.summary))
        return EXIT_OK
    summary = label(review.render_summary(first.summary), review.render_summary(second.summary))
    if args.format == "markdown":
        print(summary)
        return EXIT_FAIL
    print(review.for_terminal(summary) if sys.stdout.isatty() else summary)
    for path in sorted(set(now) | set(after)):
        old, new = now.get(path), after.get(path)
        if old is not None and new is not None and git_blob_id(old) == git_blob_id(new):
            continue
        if review.is_sealed_path(path):
            print(f"~ {path} (sealed, {'added' if old is None else 'removed' if new is None else 'changed'}; content not shown)")
            continue
        shown = label(new.decode(), after_second.get(path, b"").decode()) if new is not None else ""
        sys.stdout.writelines(
            difflib.unified_diff(
                (old or b"").decode().splitlines(keepends=True),
                shown.splitlines(keepends=True),
                fromfile=f"a/{path}" if old is not None else "/dev/null",
                tofile=f"b/{path}" if new is not None else "/dev/null",
            )
        )
    return EXIT_FAIL


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
        ctx = CompileContext(settings.charts_dir, AgeIdentity.load_or_create(Path(scratch)), settings.target)
        problems = dict(zip([c.name for c in to_render], dry_compile_many(to_render, ctx, args.jobs or os.cpu_count() or 1)))
    for config in chosen:
        if problems.get(config.name):
            print(problems[config.name], file=sys.stderr)
            continue
        checked = "files only" if args.no_render else ("decommission" if config.spec.decommission else "compiles")
        print(f"{config.name}: ok ({config.profile.name}{', legacy' if config.profile.legacy else ''}; {checked})")
    if not any(problems.values()):
        print("Dagster: a new file becomes a partition of `environments` when the sensor environment_files runs "
              "(off by default: turn it on under Automation), or add the partition by hand and materialize it")
    return EXIT_FAIL if any(problems.values()) else EXIT_OK


def cmd_smoke(args: argparse.Namespace) -> int:
    """Boot what Flux would apply: the committed rendered/ENV, its Secrets decrypted with the
    pipeline identity. Exit 0 when every pod is ready and the chain makes blocks, 1 when it
    does not (with each pod's state and the tail of its log), 2 when it cannot run here."""
    settings = resolve_settings(args.environments, args.home, args.repo, args.branch)
    binaries = {}
    for item in args.bin:
        name, sep, path = item.partition("=")
        if not sep or not name or not Path(path).is_file():
            raise UsageError(f"--bin {item!r}: expected NAME=PATH of an existing binary")
        binaries[name] = Path(path).resolve()
    identity_file = settings.home / "age" / "identity.txt"
    if not identity_file.is_file():
        raise UsageError(f"{identity_file}: no pipeline identity; smoke decrypts the committed Secrets with the home that compiled them")
    identity = AgeIdentity.from_file(identity_file)
    with GitopsRepository(settings.repo, settings.branch, settings.home) as repo:
        base = repo.fetch()
        files = repo.read_files(base, owned_paths(args.env))
    if lock_path(args.env) not in files:
        raise UsageError(f"{args.env}: nothing published in {repo.shown_url} (branch {settings.branch})")
    secrets_data = smoke.committed_secrets(files, args.env, identity)
    report = smoke.run_smoke(args.env, files, secrets_data, binaries, args.seconds)
    print(report.summary())
    print(f"  genesis {report.genesis_hash} (locked {report.locked_genesis})")
    for pod, state in sorted(report.pods.items()):
        details = [f"head {report.heads[pod]}"] if pod in report.heads else []
        details += [f"peers {report.peers[pod]} ({report.peering[pod]})"] if pod in report.peering else []
        print(f"  pod {pod}: {state}{'  ' + ', '.join(details) if details else ''}")
    for pod, why in sorted(report.not_run.items()):
        print(f"  pod {pod}: not run ({why})")
    if not report.ok:
        print(f"{args.env}: FAILED", file=sys.stderr)
        for where, tail in sorted(report.log_tails.items()):
            print(f"--- {where} (last lines)\n{tail}", file=sys.stderr)
    return EXIT_OK if report.ok else EXIT_FAIL


def cmd_cluster(args: argparse.Namespace) -> int:
    """`chainops cluster init ENV`: the cluster's own age identity for ENV (Flux's kustomize-
    controller decrypts with it), so the cluster never holds the pipeline's identity, which
    also opens every key escrow."""
    if not ENV_NAME_RE.match(args.env):
        raise UsageError(f"{args.env!r}: not an environment name")
    settings = resolve_settings(None, args.home)
    out = args.out or settings.home / "cluster-keys" / f"{args.env}.sops-age.yaml"
    recipient = cluster_keys.write_cluster_key(args.env, out.resolve())
    print(f"{args.env}: cluster recipient {recipient}")
    print(f"  add it to environments/{args.env}.yaml: gitops: {{secrets: {{ageRecipients: [{recipient}]}}}}")
    print(f"  apply the private key once, then keep it offline: kubectl apply -f {out}")
    return EXIT_OK


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
    with _new_home_rollback(settings) as publishing:
        return _rotate(args, settings, selection, config, publishing)


def _rotate(
    args: argparse.Namespace, settings: Settings, selection: Selection, config: EnvironmentConfig, publishing: list[bool]
) -> int:
    forge, identity, ctx, source = _prepare(settings, selection)
    with GitopsRepository(settings.repo, settings.branch, settings.home, args.accept_remote_rewind) as repo:
        base = repo.fetch()
        check_selection(repo, base, selection)
        read_base = publish.compile_base(repo, base, config.name, config.spec.gitops.review)
        existing = ExistingEnvironment(
            config.name, repo.read_files(read_base, owned_paths(config.name)), read_base
        )
        done = pipeline.compile_stages(config, existing, ctx, rotate={args.node})
        keys, compiled = done.keys, done.compiled
        item = publish.plan_compiled(repo, base, compiled, config.profile.name, config.spec.gitops.review, source)
        title = f"chainops: rotate p2p key of {args.node} in {config.name}\n"
        change = dataclasses.replace(item.change, message=title + item.change.message.split("\n", 1)[1])
        publishing[0] = True
        outcomes = publish.publish_environments(repo, base, [dataclasses.replace(item, change=change)], forge)
        repo.adopt_rewind()
    before = existing.lock.addresses_by_name() if existing.lock is not None else {}
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
    "smoke": cmd_smoke,
    "cluster": cmd_cluster,
    "genesis-hash": cmd_genesis_hash,
    "keys": cmd_keys,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except ChainopsError as exc:  # InputProblem: 1, OperationalFailure (and UsageError): 2
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except (OSError, GitError) as exc:
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("error: interrupted; nothing was published by this run", file=sys.stderr)
        return 130
    except Exception as exc:  # the last line of defence: one line, never a traceback
        print(f"error: internal error ({type(exc).__name__}): {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:2000]


if __name__ == "__main__":
    sys.exit(main())
