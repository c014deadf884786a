"""Evidence checks: the published repository as witness against an accidental chain reset.

The lock is the memory of a network's identity, but not the only evidence of it: the
key escrow, the sealed Secrets, `genesis.json` and the directories of other
environments also say what was published. Before any key is planned, these checks
compare the two and refuse (a GuardError: exit 1, nothing written) when they disagree,
so a deleted or hand-edited lock, or a renamed environment file, can never make
chainops generate a second identity for a live network. Every refusal names the
environment, what is inconsistent and the one explicit, per-environment flag that
accepts a reset instead of a repair.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

from pipelines.lib.config import EnvironmentConfig
from pipelines.lib.errors import GuardError
from pipelines.lib.gitops import GitopsRepository
from pipelines.lib.layout import (
    ESCROW_FILE,
    GENESIS_FILE,
    LOCK_FILE,
    NAMESPACE_FILE_RE,
    RENDERED_DIR,
    env_dir,
    lock_path,
)
from pipelines.lib.lock import NetworkLock

RESET_FLAG = "--allow-genesis-change"


def _reset_hint(environment: str) -> str:
    return (
        f"to start a new chain for {environment} instead (new keys and genesis: every node is replaced), "
        f"re-run with {RESET_FLAG} {environment}"
    )


def _key_secret_names(files: Collection[str], environment: str) -> dict[str, str]:
    """Key name ("validator-0", "account/faucet") -> path of each committed key Secret."""
    found: dict[str, str] = {}
    base = env_dir(environment)
    for path in files:
        if not path.startswith(base):
            continue
        filename = path.rsplit("/", 1)[-1]
        for prefix in ("secret-", "sealedsecret-"):
            if not filename.startswith(prefix) or not filename.endswith(".yaml"):
                continue
            secret = filename[len(prefix) : -len(".yaml")]
            if secret.endswith("-keys"):
                found[secret[: -len("-keys")]] = path
            elif secret.startswith("account-"):
                found["account/" + secret[len("account-") :]] = path
    return found


def check_committed_state(
    environment: str,
    files: Mapping[str, bytes],
    lock: NetworkLock | None,
    escrow_keys: Collection[str] | None,
    reset: bool,
) -> None:
    """Refuse when the environment's committed files disagree with its lock.

    - files of the environment but no lock: the lock was deleted (or never committed
      with them); planning keys now would generate a second identity;
    - keys in the escrow, or key Secrets, of nodes/accounts the lock does not list: an
      entry was removed from the lock by hand; its replacement key would replace a
      node (perhaps a genesis validator) that is still part of the network.

    `reset` (the operator's explicit per-environment flag) accepts either as a reset.
    """
    if reset:
        return
    base = env_dir(environment)
    own = sorted(p for p in files if p.startswith(base))
    if lock is None:
        if not own:
            return  # nothing published: a new environment
        evidence = [p[len(base) :] for p in own if p.endswith((ESCROW_FILE, GENESIS_FILE))]
        secrets = _key_secret_names(own, environment)
        what = ", ".join(evidence + ([f"{len(secrets)} key Secrets"] if secrets else [])) or f"{len(own)} files"
        raise GuardError(
            f"{environment}: {lock_path(environment)} is missing, but the repository still holds {what} of this "
            f"environment: its network was published and the lock was deleted. Nothing was written. Restore the "
            f"lock from Git history (`git log --diff-filter=D -1 -- {lock_path(environment)}` names the commit that "
            f"deleted it; `git checkout <that commit>~1 -- {lock_path(environment)}`, commit, push); "
            + _reset_hint(environment)
        )
    listed = lock.node_names | {f"account/{name}" for name in lock.account_names}
    unlisted = set(_key_secret_names(own, environment)) - listed
    if escrow_keys is not None:
        unlisted |= {name for name in escrow_keys if not name.startswith("shared/")} - listed
    if unlisted:
        names = ", ".join(sorted(unlisted))
        raise GuardError(
            f"{environment}: {lock_path(environment)} does not list {names}, but the key escrow or a committed "
            f"Secret still holds a published key for it (an entry removed from the lock by hand?). A new key would "
            f"replace a node that is still part of the network. Nothing was written. Restore the lock from Git "
            f"history (`git log -p -- {lock_path(environment)}`); to remove the node, restore the lock and lower "
            f"its count in the environment file instead; " + _reset_hint(environment)
        )


@dataclass(frozen=True)
class Claim:
    """What a published environment occupies: its chain id and its namespace."""

    environment: str
    chain_id: int | None
    namespace: str | None


def published_claims(entries: Mapping[str, str], read_blobs: Callable[[Mapping[str, str]], Mapping[str, bytes]] | None) -> dict[str, Claim]:
    """Every environment directory in the tree listing `entries` (path -> blob id under
    `rendered/`), with the namespace its Namespace object is written for (from the
    listing alone) and, when `read_blobs` is given, the chainId of its lock."""
    namespaces: dict[str, str] = {}
    locks: dict[str, str] = {}
    environments: set[str] = set()
    for path, sha in entries.items():
        parts = path.split("/")
        if len(parts) < 3 or parts[0] != RENDERED_DIR:
            continue
        environments.add(parts[1])
        if len(parts) == 3 and parts[2] == LOCK_FILE:
            locks[parts[1]] = sha
        elif match := NAMESPACE_FILE_RE.match(path):
            namespaces[match["env"]] = match["namespace"]
    blobs = read_blobs(locks) if read_blobs is not None else {}
    claims = {}
    for env in sorted(environments):
        chain_id = None
        try:  # not parse_lock: a lock damaged elsewhere still claims its chainId
            value = json.loads(blobs[env]).get("chainId") if env in blobs else None
            chain_id = value if isinstance(value, int) else None
        except (ValueError, AttributeError):
            pass
        claims[env] = Claim(env, chain_id, namespaces.get(env))
    return claims


def needs_chain_ids(claims: Mapping[str, Claim], environment: str, namespace: str, reset: bool) -> bool:
    """Whether checking `environment` needs the chainIds of the other published environments:
    only a new environment, a reset one or one that moves namespace can take another's."""
    own = claims.get(environment)
    return reset or own is None or own.namespace != namespace


def check_claims(
    environment: str,
    source_path: str,
    chain_id: int,
    namespace: str,
    claims: Mapping[str, Claim],
    retiring: Collection[str] = (),
    files_present: Collection[str] = (),
) -> None:
    """chainId and namespace are unique across the published environments too: a renamed
    environment file (same chainId, same namespace) must not start a second network
    with new keys beside the first one."""
    own = claims.get(environment)
    if own is not None and own.namespace == namespace and own.chain_id in (chain_id, None):
        return  # what it already holds (its chainId is the genesis guard's business)
    for other in sorted(claims.values(), key=lambda c: c.environment):
        if other.environment == environment or other.environment in retiring:
            continue
        clashes = []
        if other.chain_id == chain_id:
            clashes.append(f"network.chainId {chain_id}")
        if other.namespace == namespace:
            clashes.append(f"kubernetes.namespace {namespace}")
        if not clashes:
            continue
        gone = "" if other.environment in files_present else f" (there is no environment file {other.environment}.yaml)"
        raise GuardError(
            f"{source_path}: {' and '.join(clashes)} already belong to environment {other.environment}, published in "
            f"{env_dir(other.environment)}{gone}. Compiling {environment} would start a second network with new keys "
            f"beside it. Nothing was written. If the file was renamed by mistake, rename it back to "
            f"{other.environment}.yaml. To move the network to the name {environment} with its keys and genesis, run "
            f"`chainops compile {environment} --rename {other.environment}={environment}`; to retire "
            f"{other.environment} and start a new chain, run with --decommission {other.environment}"
        )


def check_rewound_locks(repo: GitopsRepository, base: str | None, reset: Collection[str]) -> None:
    """After an accepted rewind (--accept-remote-rewind), every environment whose lock the
    rewind changed or removed still needs its own decision, whether this run compiles it or
    not: compiling it on the rewound history, now or in any later run, would replace
    identities that were published after the tip it went back to."""
    known = repo.rewound_from
    if known is None:
        return
    before = {p: sha for p, sha in repo.tree_entries(known, (RENDERED_DIR,)).items() if p.endswith("/" + LOCK_FILE)}
    after = repo.tree_entries(base, tuple(before)) if before and base else {}
    affected = sorted(p.split("/")[1] for p, sha in before.items() if after.get(p) != sha and p.split("/")[1] not in reset)
    if affected:
        raise GuardError(
            f"{', '.join(affected)}: the accepted rewind of {repo.branch} drops the published lock of "
            f"{'these environments' if len(affected) > 1 else 'this environment'} (as of {known[:12]}, which the "
            f"cache keeps as refs/chainops/before-rewind). Compiling on the rewound history would give their nodes new "
            f"keys. Nothing was written. To restore them, push the old tip to a branch "
            f"(`git --git-dir {repo.cache_path} push {repo.shown_url} {known}:refs/heads/chainops-rescue`) and bring "
            f"rendered/<env>/ back from it; or reset each one explicitly with {RESET_FLAG} ENV"
        )


def check_published(
    repo: GitopsRepository,
    base: str | None,
    configs: Sequence[EnvironmentConfig],
    reset: Collection[str] = (),
    retiring: Collection[str] = (),
    files_present: Collection[str] = (),
    entries: Mapping[str, str] | None = None,
) -> None:
    """The run-level guards of `chainops compile` and of a Dagster run, after the fetch and
    before any key is planned: a rewind accepted with --accept-remote-rewind drops no lock
    unnoticed, and chainId and namespace stay unique across the published environments.
    `entries`: the tree listing of `rendered/` at `base`, when the caller has it."""
    check_rewound_locks(repo, base, reset)
    if entries is None:
        entries = repo.tree_entries(base, (RENDERED_DIR,))
    claims = published_claims(entries, None)
    if any(needs_chain_ids(claims, c.name, c.spec.kubernetes.namespace, c.name in reset) for c in configs):
        claims = published_claims(entries, repo.read_blobs)
    for config in configs:
        check_claims(
            config.name,
            config.source_path,
            config.spec.network.chainId,
            config.spec.kubernetes.namespace,
            claims,
            retiring=retiring,
            files_present=files_present,
        )


def check_published_environment(
    repo: GitopsRepository, base: str | None, config: EnvironmentConfig, reset: bool, files_present: Collection[str] = ()
) -> None:
    """:func:`check_published` for one environment (a Dagster run compiles one partition)."""
    check_published(repo, base, [config], {config.name} if reset else (), files_present=files_present)
