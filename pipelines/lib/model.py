"""The data types that flow between the compile stages of one environment, and the
operator's per-environment decisions.

ExistingEnvironment (what the GitOps repository holds) -> KeySet (keys.py) ->
GenesisResult -> CompiledEnvironment (every file to write, public or sealed) ->
publish.PublishItem. Frozen dataclasses: a stage returns a new value, never edits one.
"""


from __future__ import annotations

import dataclasses
import functools
import hashlib
import re
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pipelines.lib.errors import GuardError
from pipelines.lib.gitops import git_blob_id
from pipelines.lib.layout import (
    lock_path,
)
from pipelines.lib.lock import NetworkLock, parse_lock
from pipelines.lib.review import (
    ReviewSummary,
)
from pipelines.lib.sealing import (
    AgeIdentity,
)
from pipelines.lib.validator_plan import ValidatorPlan

VERSION = "0.1.0"


@dataclass(frozen=True)
class PublishTarget:
    """Where the environment is published; the bootstrap objects point the cluster at it."""

    url: str
    branch: str
    cluster_url: str | None = None  # what the cluster's controller fetches, when it differs from `url`

    @property
    def url_for_cluster(self) -> str:
        """Flux and Argo CD fetch over http(s) or ssh; a local path gets a placeholder host
        (set CHAINOPS_CLUSTER_REPO_URL to the real one)."""
        if self.cluster_url:
            return without_credentials(self.cluster_url)
        if self.url.startswith(("http://", "https://", "ssh://")):
            return without_credentials(self.url)
        match = re.match(r"^([^@/:]+)@([^:/]+):(.+)$", self.url)
        if match:
            return f"ssh://{match.group(1)}@{match.group(2)}/{match.group(3)}"
        return f"ssh://git@gitops.invalid/{Path(self.url.removeprefix('file://')).name}"


def without_credentials(url: str) -> str:
    """`url` as it may be committed (bootstrap objects): no password or token, ever.

    http(s) user-info is dropped entirely (the cluster authenticates with a Flux
    `secretRef` or an Argo CD repository credential, not with the pipeline's token); an
    ssh user name is kept (`git@`), since it names an account, not a secret."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    userinfo, host = parts.netloc.rsplit("@", 1)
    if parts.scheme == "ssh" and ":" not in userinfo:
        return url
    if parts.scheme == "ssh":
        host = f"{userinfo.split(':', 1)[0]}@{host}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


@dataclass(frozen=True)
class CompileContext:
    charts_dir: Path
    identity: AgeIdentity
    target: PublishTarget


@dataclass
class StageTimes:
    """Seconds spent per compile stage of one environment (for benchmarks and profiling)."""

    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


@dataclass(frozen=True)
class ExistingEnvironment:
    """What the GitOps repository holds for one environment (all public or sealed)."""

    name: str
    files: dict[str, bytes] = field(default_factory=dict, repr=False)  # repo path -> bytes
    commit: str | None = None  # the commit the files were read at (None: no commit yet)

    @functools.cached_property
    def lock(self) -> NetworkLock | None:
        """The committed lock, parsed and checked once (a GuardError names a missing or
        invalid field); None when there is none."""
        data = self.files.get(lock_path(self.name))
        return parse_lock(data, self.name) if data else None

    def without_lock_if_damaged(self) -> ExistingEnvironment:
        """For an explicit reset: a lock that cannot be read counts as no lock at all."""
        try:
            self.lock  # noqa: B018 - parse it
        except GuardError:
            return dataclasses.replace(self, files={p: b for p, b in self.files.items() if p != lock_path(self.name)})
        return self


@dataclass(frozen=True)
class GenesisResult:
    document: dict[str, Any]
    json_bytes: bytes
    block_hash: str
    validators: tuple[str, ...]  # the genesis validator set, canonical order (as in extraData)
    validator_plan: ValidatorPlan | None = None  # the votes a live chain needs for its validator nodes
    previous_hash: str | None = None  # the locked block hash, when the committed genesis differs
    differences: tuple[str, ...] = ()  # what differs from the committed genesis.json
    transitions: tuple[dict[str, Any], ...] = ()  # the consensus transitions, as the lock records them
    # Blocks of transitions added, changed or removed against the lock while the chain goes
    # on (same block hash): each must still be ahead of the chain head (check_transitions).
    unconfirmed_transitions: tuple[int, ...] = ()

    @property
    def changed(self) -> bool:
        """True when a committed genesis would change: its block hash or its chain config
        (chainId and forks are not part of the block hash, but nodes still disagree on them)."""
        return self.previous_hash is not None

    @property
    def file_sha256(self) -> str:
        return hashlib.sha256(self.json_bytes).hexdigest()


@dataclass(frozen=True)
class CompiledEnvironment:
    """Everything to write for one environment: public or sealed bytes only."""

    name: str
    files: dict[str, bytes] = field(repr=False)  # repo path -> bytes
    prefixes: tuple[str, ...]
    genesis_hash: str
    object_count: int
    validators: tuple[str, ...]  # the genesis validator set (locked once published)
    generated_keys: tuple[str, ...]
    validator_plan: ValidatorPlan | None = None
    validator_nodes: int = 0  # validator nodes the network runs (the set once the votes have passed)
    genesis_changed_from: str | None = None  # the previously locked genesis hash (an allowed reset)
    genesis_differences: tuple[str, ...] = ()
    compiled_from: dict[str, str] = field(default_factory=dict)  # blob ids of the committed files it was built on
    secrets_provider: str = "sops"  # gitops.secrets.provider
    plaintext_secrets: tuple[str, ...] = ()  # paths of Secrets committed unsealed (provider plaintext): flag them
    sops_rule: bytes | None = None  # its creation rule in the shared .sops.yaml (None: provider is not sops)
    policy_warnings: tuple[str, ...] = ()  # production-policy findings (refused when production: true)
    # The review summary against the files it was compiled from, computed where it was
    # compiled (in parallel); valid for another base only if that base holds the same files.
    summary: ReviewSummary | None = None
    stage_seconds: dict[str, float] = field(default_factory=dict, compare=False, repr=False)

    def built_on(self, files: Mapping[str, bytes]) -> bool:
        """Whether ``files`` are exactly the committed files this environment was compiled from."""
        return {path: git_blob_id(data) for path, data in files.items()} == self.compiled_from


@dataclass(frozen=True)
class Decisions:
    """What the operator decided for one environment in this run (CLI flags, Dagster run
    tags): each is a per-environment, explicit choice that a guard would otherwise refuse."""

    allow_genesis_change: bool = False  # --allow-genesis-change ENV
    validators_voted: bool = False  # --validators-voted ENV: the removal votes have passed
    allow_unsafe_validator_change: bool = False  # --allow-unsafe-validator-change ENV
    transition_confirmed: bool = False  # --confirm-transitions ENV: new transitions' blocks are still ahead

    @classmethod
    def of(cls, value: Decisions | bool) -> Decisions:
        return value if isinstance(value, Decisions) else cls(allow_genesis_change=bool(value))
