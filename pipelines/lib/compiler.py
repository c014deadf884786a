"""One environment from file to GitOps files: the stages the CLI and Dagster share.

Stages: existing state (from the GitOps repository) -> keys -> genesis (+ lock guard)
-> rendered, sealed, validated files -> publish. Each stage is a plain function so the
Dagster assets can wrap them one by one.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import hashlib
import json
import multiprocessing
import re
import sys
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import git

from pipelines.lib import genesis as genesis_lib
from pipelines.lib import policy
from pipelines.lib.chart_values import pod_host, render_objects
from pipelines.lib.config import ConfigError, EnvironmentConfig, parse_balance
from pipelines.lib.errors import GuardError, InputProblem
from pipelines.lib.gitops import EnvironmentChange, GitopsRepository, SharedEdit, git_blob_id
from pipelines.lib.identity_guard import check_committed_state
from pipelines.lib.keys import (
    Escrow,
    KeyDeriver,
    KeyPolicyError,
    KeySet,
    PrivateKeyMaterial,
    SealedFileRecord,
    address_of_public_key,
    check_rotation,
    derive_shared_secret,
    mnemonic_deriver,
    open_escrow,
    open_private_bundle,
    plan_keys,
    public_key_of,
    seal_escrow,
)
from pipelines.lib.layout import (
    GENESIS_FILE,
    LOCK_FILE,
    SOPS_CONFIG_FILE,
    bootstrap_path,
    env_dir,
    environment_paths,
    escrow_path,
    lock_path,
    owned_paths,
    sops_path_regex,
)
from pipelines.lib.leak_scan import files_holding_private_material
from pipelines.lib.lock import NetworkLock, parse_lock
from pipelines.lib.manifests import (
    dump_yaml,
    kustomization,
    load_yaml,
    object_filename,
    validator_for,
)
from pipelines.lib.processes import die_with_parent
from pipelines.lib.render import RenderError
from pipelines.lib.review import (
    README_FILE,
    ReviewSummary,
    build_summary,
    commit_lines,
    network_readme,
)
from pipelines.lib.sealed_secrets import CertificateError, SealedSecretsSealer, load_certificate, resolve_cert_path
from pipelines.lib.sealing import (
    AgeIdentity,
    PlaintextSealer,
    Sealer,
    SealingError,
    SealRequest,
    SopsSealer,
    is_plaintext_secret,
    is_sops_encrypted,
    merge_sops_rule,
    sops_rule_yaml,
)
from pipelines.lib.validator_plan import Validator, ValidatorPlan, VoteStep, plan_change

VERSION = "0.1.0"
MAX_OBJECT_BYTES = 1 << 20  # a ConfigMap's data limit (etcd refuses larger objects)



class ManifestValidationError(InputProblem):
    """Rendered objects do not validate against the Kubernetes schemas."""


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
    def checked_lock(self) -> NetworkLock | None:
        """The lock, checked (a GuardError names a missing or invalid field); None when absent."""
        data = self.files.get(lock_path(self.name))
        return parse_lock(data, self.name) if data else None

    @functools.cached_property
    def lock(self) -> dict[str, Any] | None:
        """The lock as committed (a plain dict), only after :attr:`checked_lock` accepted it."""
        return json.loads(self.files[lock_path(self.name)]) if self.checked_lock is not None else None

    def without_lock_if_damaged(self) -> ExistingEnvironment:
        """For an explicit reset: a lock that cannot be read counts as no lock at all."""
        try:
            self.checked_lock  # noqa: B018 - parse it
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


# -- keys ------------------------------------------------------------------------------
def fingerprint_key(config: EnvironmentConfig, identity: AgeIdentity) -> bytes:
    """Key of the sealed-content HMACs: derived from the pipeline identity, never stored."""
    return bytes.fromhex(derive_shared_secret(str(identity.secret()), config.name, "sealed-content-hmac"))


def sealer_for(config: EnvironmentConfig, identity: AgeIdentity) -> Sealer:
    """The environment's sealing provider (`gitops.secrets.provider`)."""
    spec = config.spec.gitops.secrets
    key = fingerprint_key(config, identity)
    if spec.provider == "sealed-secrets":
        try:
            path = resolve_cert_path(Path(config.source_path).parent, spec.sealedSecretsCert or "", config.source_path)
            certificate = load_certificate(path, config.source_path)
        except CertificateError as exc:
            raise ConfigError([str(exc)]) from None
        return SealedSecretsSealer(certificate, key)
    if spec.provider == "plaintext":
        return PlaintextSealer(key)
    return SopsSealer(identity, extra_recipients=spec.ageRecipients, fingerprint_key=key)


def _secret_files(existing: ExistingEnvironment) -> dict[str, str]:
    """Secret name -> repo path of its committed Secret file (SOPS or plaintext)."""
    found = {}
    for path in existing.files:
        if path.startswith(env_dir(existing.name)) and path.rsplit("/", 1)[-1].startswith("secret-"):
            found[path.rsplit("/", 1)[-1][len("secret-") : -len(".yaml")]] = path
    return found


def _locked_secrets(lock: dict[str, Any]) -> list[tuple[str, str]]:
    """(key name, Secret name) of every locked node and generated account."""
    wanted = [(node["name"], node["secret"]) for node in lock.get("nodes", [])]
    wanted += [(f"account/{a['name']}", a.get("secret", "")) for a in lock.get("accounts", []) if a.get("name")]
    return wanted


def read_escrow(existing: ExistingEnvironment, identity: AgeIdentity) -> Escrow | None:
    data = existing.files.get(escrow_path(existing.name))
    return open_escrow(data, identity.secret(), existing.name) if data else None


def recover_private_keys(
    config: EnvironmentConfig,
    existing: ExistingEnvironment,
    identity: AgeIdentity,
    escrow: Escrow | None = None,
    derive: KeyDeriver | None = None,
) -> dict[str, PrivateKeyMaterial]:
    """Private material of every locked node/account.

    From the escrow first (one in-process age decryption, no sops). Keys it lacks, as in
    repositories written before the escrow existed, are decrypted from their committed
    SOPS (or plaintext) Secrets; in development mode a mnemonic-derived key that matches
    the lock also counts. SealedSecrets cannot be read back: for them the escrow is the
    only source.
    """
    lock = existing.lock
    if not lock:
        return {}
    wanted = _locked_secrets(lock)
    held = escrow.keys if escrow else {}
    recovered = {name: held[name] for name, _ in wanted if name in held}
    missing = [(name, secret) for name, secret in wanted if name not in recovered]
    if missing:
        recovered.update(_recover_from_secrets(existing, identity, missing))
    if derive:
        addresses = {n["name"]: n["address"] for n in lock.get("nodes", [])}
        addresses |= {f"account/{a['name']}": a["address"] for a in lock.get("accounts", []) if a.get("name")}
        for name, _ in wanted:
            key = derive(name) if name not in recovered else None
            if key is not None and address_of_public_key(public_key_of(key)).lower() == addresses[name].lower():
                recovered[name] = PrivateKeyMaterial(key.hex())
    return recovered


def _recover_from_secrets(
    existing: ExistingEnvironment, identity: AgeIdentity, missing: list[tuple[str, str]]
) -> dict[str, PrivateKeyMaterial]:
    """Keys read back from committed Secrets: SOPS ones with sops, plaintext ones directly."""
    paths = _secret_files(existing)
    sops_wanted: list[tuple[str, str, bytes]] = []
    documents: dict[str, dict] = {}
    for name, secret in missing:
        data = existing.files.get(paths.get(secret, ""))
        if data is None:
            continue
        if is_sops_encrypted(data):
            sops_wanted.append((name, paths[secret], data))
        elif is_plaintext_secret(data):
            documents[name] = load_yaml(data)
    if sops_wanted:
        with SopsSealer(identity) as sealer:
            try:
                documents.update(zip([n for n, _, _ in sops_wanted], sealer.unseal_many([d for _, _, d in sops_wanted])))
            except SealingError as exc:
                raise naming_the_file(exc, [p for _, p, _ in sops_wanted], existing.name) from None
    recovered = {}
    for name, doc in documents.items():
        data = {k: base64.b64decode(v).decode() for k, v in (doc.get("data") or {}).items()}
        recovered[name] = material_from_secret_data(name, data)
    return recovered


def moved_environment(old: ExistingEnvironment, new_name: str, identity: AgeIdentity) -> ExistingEnvironment:
    """The committed state of environment `old` as if it had always been called `new_name`
    (an explicit rename): the same lock, keys, sealed Secrets and genesis under
    `rendered/<new_name>/`, so the renamed environment keeps its network's identity."""
    lock = old.checked_lock
    if lock is None:
        raise GuardError(f"{old.name}: has no network.lock.json to rename; nothing was written")
    files: dict[str, bytes] = {}
    for path, data in old.files.items():
        if path.startswith(env_dir(old.name)):
            files[env_dir(new_name) + path[len(env_dir(old.name)) :]] = data
    files[lock_path(new_name)] = canonical_json({**(old.lock or {}), "environment": new_name})
    escrow = read_escrow(old, identity)
    if escrow is not None:
        sealed = {env_dir(new_name) + p[len(env_dir(old.name)) :]: r for p, r in escrow.sealed.items() if p.startswith(env_dir(old.name))}
        files[escrow_path(new_name)] = seal_escrow(new_name, Escrow(escrow.keys, sealed), identity.recipient)
    return ExistingEnvironment(new_name, files, old.commit)


def material_from_secret_data(name: str, data: dict[str, str]) -> PrivateKeyMaterial:
    """Node Secrets carry `nodekey`; account Secrets only a keystore and its password."""
    if "nodekey" in data:
        return PrivateKeyMaterial(data["nodekey"], data.get("keystore.json"), data.get("password"))
    if "keystore.json" in data and "password" in data:
        from eth_keyfile import decode_keyfile_json  # lazy: it loads py_ecc's BLS (~0.4 s at start-up)

        private_key = decode_keyfile_json(json.loads(data["keystore.json"]), data["password"].encode())
        return PrivateKeyMaterial(private_key.hex(), data["keystore.json"], data["password"])
    raise KeyPolicyError(f"{name}: its committed Secret has neither a nodekey nor a keystore with password")


def compute_keys(
    config: EnvironmentConfig,
    existing: ExistingEnvironment,
    identity: AgeIdentity,
    *,
    rotate: Collection[str] = (),
    mnemonic: str | None = None,
    reset: bool = False,
) -> KeySet:
    """Locked keys recovered, new ones generated (or derived in development mode), `rotate`d
    p2p keys replaced. `mnemonic` defaults to CHAINOPS_MNEMONIC when the environment asks for it.

    Before any key is planned, the committed state is checked against the lock
    (identity_guard): a deleted or hand-edited lock is refused, unless `reset` (the
    operator's explicit --allow-genesis-change for this environment) accepts a new chain."""
    if reset:
        existing = existing.without_lock_if_damaged()
    derive = mnemonic_deriver(config, mnemonic)
    escrow = read_escrow(existing, identity)
    check_committed_state(config.name, existing.files, existing.checked_lock, escrow.keys if escrow else None, reset)
    check_rotation(config, existing.lock, rotate)
    recovered = recover_private_keys(config, existing, identity, escrow, derive)
    shared = shared_secrets(config, identity)
    keys = plan_keys(config, existing.lock, recovered, identity.recipient, shared, rotate=rotate, derive=derive)
    return dataclasses.replace(keys, based_on=existing.commit)


def shared_secrets(config: EnvironmentConfig, identity: AgeIdentity) -> dict[str, PrivateKeyMaterial]:
    """Secrets every node of the network shares (ethstats' WS secret), keyed `shared/<purpose>`."""
    if not config.spec.ethstats.enabled:
        return {}
    secret = str(identity.secret())
    return {"shared/ethstats": PrivateKeyMaterial(derive_shared_secret(secret, config.name, "ethstats"))}


def naming_the_file(exc: SealingError, paths: Sequence[str], environment: str) -> SealingError:
    """A sealer error about "item 3" (or the only item) as one about the committed file it is."""
    text = str(exc)
    found = re.match(r"item (\d+): (.*)", text, re.S)
    if found and int(found[1]) < len(paths):
        return SealingError(f"{paths[int(found[1])]}: {found[2]}")
    if len(paths) == 1:
        return SealingError(f"{paths[0]}: {text}")
    return SealingError(f"a Secret of {environment}: {text}")


def seal_secrets(
    config: EnvironmentConfig,
    to_seal: list[tuple[str, dict, bytes | None]],
    privates: dict[str, PrivateKeyMaterial],
    existing: ExistingEnvironment,
    identity: AgeIdentity,
    sealer: Sealer,
) -> dict[str, bytes]:
    """Sealed bytes for every (path, Secret, committed bytes), plus the updated key escrow.

    A committed file that the escrow's index records for exactly the wanted plaintext is
    kept without decrypting it; the escrow keeps its own bytes when its content is equal.
    """
    escrow = read_escrow(existing, identity)
    index = escrow.sealed if escrow else {}
    requests = []
    for path, obj, prior in to_seal:
        record = index.get(path)
        known = record.fingerprint if record and prior is not None and git_blob_id(prior) == record.blob else None
        requests.append(SealRequest(obj, prior, known))
    try:
        sealed_files = dict(zip([path for path, _, _ in to_seal], sealer.seal_requests(requests)))
    except SealingError as exc:
        raise naming_the_file(exc, [path for path, _, _ in to_seal], config.name) from None
    records = {
        path: SealedFileRecord(git_blob_id(sealed_files[path]), sealer.fingerprint(obj)) for path, obj, _ in to_seal
    }
    keys = {name: m for name, m in privates.items() if not name.startswith("shared/")}
    path = escrow_path(config.name)
    sealed_files[path] = seal_escrow(
        config.name, Escrow(keys, records), identity.recipient, existing.files.get(path), identity.secret()
    )
    return sealed_files


# -- genesis ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Decisions:
    """What the operator decided for one environment in this run (CLI flags, Dagster run
    tags): each is a per-environment, explicit choice that a guard would otherwise refuse."""

    allow_genesis_change: bool = False  # --allow-genesis-change ENV
    validators_voted: bool = False  # --validators-voted ENV: the removal votes have passed
    allow_unsafe_validator_change: bool = False  # --allow-unsafe-validator-change ENV

    @classmethod
    def of(cls, value: Decisions | bool) -> Decisions:
        return value if isinstance(value, Decisions) else cls(allow_genesis_change=bool(value))


def genesis_validators(config: EnvironmentConfig, keys: KeySet, lock: dict | None, reset: bool) -> tuple[str, ...]:
    """The genesis validator set: locked once committed, so validator changes never touch genesis."""
    if config.spec.network.consensus == "ethash":
        return ()
    if lock and not reset and lock.get("genesisHash"):
        return tuple(lock.get("validators", ()))
    return tuple(n.address for n in keys.validators)


def genesis_spec(config: EnvironmentConfig, keys: KeySet, validators: tuple[str, ...]) -> genesis_lib.GenesisSpec:
    network = config.spec.network
    generated = {a.name: a.address for a in keys.accounts}
    alloc = tuple(
        (account.address or generated[account.name or ""], account.balance_wei) for account in config.spec.accounts
    )
    selector = (network.validatorContractAddress or "").lower()
    contracts = []
    for contract in config.spec.contracts:
        storage = dict(contract.storage_words())
        if contract.address.lower() == selector:
            # The validator contract's first state variable is `address[] validators`.
            ordered = genesis_lib.canonical_validator_order(validators)
            for slot, value in genesis_lib.address_array_storage(ordered).items():
                if storage.get(slot, value) != value:
                    raise GuardError(
                        f"{config.source_path}: contracts: storage slot {slot} of the validator contract is "
                        "computed by chainops (validators array at slot 0); remove it from the file"
                    )
                storage[slot] = value
        contracts.append(
            genesis_lib.ContractAlloc(contract.address, contract.code, tuple(sorted(storage.items())), parse_balance(contract.balance))
        )
    return genesis_lib.GenesisSpec(
        client=network.client,
        consensus=network.consensus,
        chain_id=network.chainId,
        block_period_seconds=network.blockPeriodSeconds,
        gas_limit=network.gasLimit,
        timestamp=network.genesisTimestamp,
        validators=validators,
        alloc=alloc,
        contracts=tuple(contracts),
        zero_base_fee=network.zeroBaseFee,
        contract_size_limit=network.contractSizeLimit,
        validator_contract=network.validatorContractAddress,
    )


def validator_plan_for(config: EnvironmentConfig, keys: KeySet, lock: dict | None, reset: bool) -> ValidatorPlan | None:
    """The votes that take the live validator set (the lock's validator nodes) to the
    validator nodes of this compile. A first compile or a genesis reset puts the set into
    genesis instead: no plan."""
    if not lock or reset:
        return None
    before = [Validator(n["name"], n["address"]) for n in lock.get("nodes", []) if n.get("role") == "validator"]
    after = [Validator(n.name, n.address) for n in keys.validators]
    network = config.spec.network
    return plan_change(network.consensus, before, after, by_contract=network.validatorSelection == "contract")


def check_validator_plan(config: EnvironmentConfig, plan: ValidatorPlan | None, decisions: Decisions) -> None:
    """Refuse validator changes the network cannot carry out as published: one that lowers
    the fault tolerance by more than a step, or (review: direct, which applies the commit
    at once) removals whose votes have not been confirmed as passed."""
    if plan is None:
        return
    where = f"{config.source_path}: nodes.validators"
    if plan.problems and not decisions.allow_unsafe_validator_change:
        route = " -> ".join(str(n) for n in (len(plan.before), *plan.route))
        raise GuardError(
            f"{where}: {'; '.join(plan.problems)}. Change it in steps ({route} validators), one change per step, "
            f"each after the previous one's votes have passed; or re-run with --allow-unsafe-validator-change {config.name}"
        )
    if plan.removals and config.spec.gitops.review == "direct" and not decisions.validators_voted:
        steps = "; ".join(f"{i}. {describe_step(plan, step)}" for i, step in enumerate(plan.removals, 1))
        raise GuardError(
            f"{where}: removing {', '.join(s.target.name for s in plan.removals)} from the live chain: review: direct "
            f"publishes at once and stops their pods, so vote them out first, one at a time, checking "
            f"{plan.set_method}(\"latest\") after each: {steps}. Nothing was written. Then re-run with "
            f"--validators-voted {config.name}"
        )


def describe_step(plan: ValidatorPlan, step: VoteStep) -> str:
    """One vote step in plain text (commit messages, refusals)."""
    verb = "add" if step.add else "remove"
    if plan.by_contract:
        return f"{verb} {step.target.name} ({step.target.address}) with a transaction to the validator contract"
    return (
        f"{step.call(plan.method)} on {step.needed} of the {len(step.before)} validators "
        f"({', '.join(v.name for v in step.voters)}); then {step.quorum} of {len(step.after)} must stay online"
    )


def compute_genesis(
    config: EnvironmentConfig, keys: KeySet, existing: ExistingEnvironment | None = None, allow_change: bool = False
) -> GenesisResult:
    """The genesis for the environment; for a locked environment, the locked validator set."""
    lock = existing.lock if existing else None
    validators = genesis_validators(config, keys, lock, reset=allow_change)
    spec = genesis_spec(config, keys, validators)
    document = genesis_lib.build_genesis(spec)
    block_hash = genesis_lib.genesis_block_hash(document)
    json_bytes = genesis_lib.genesis_json_bytes(document)
    ordered = tuple(genesis_lib.canonical_validator_order(validators)) if validators else ()
    locked_hash = lock.get("genesisHash") if lock else None
    previous_doc = _previous_genesis(existing)
    file_sha256 = hashlib.sha256(json_bytes).hexdigest()
    chain_changes = _locked_chain_changes(config, lock)
    changed = lock is not None and (
        locked_hash != block_hash
        or lock.get("genesisFileSha256", file_sha256) != file_sha256
        or (previous_doc is not None and previous_doc != document)
        or bool(chain_changes)
    )
    return GenesisResult(
        document=document,
        json_bytes=json_bytes,
        block_hash=block_hash,
        validators=ordered,
        validator_plan=validator_plan_for(config, keys, lock, reset=allow_change),
        previous_hash=locked_hash if changed else None,
        differences=tuple(dict.fromkeys(chain_changes + genesis_differences(previous_doc, document))) if changed else (),
    )


def _locked_chain_changes(config: EnvironmentConfig, lock: dict | None) -> list[str]:
    """What the environment file changes in the chain the lock records. chainId, networkId
    and the consensus are not all in the block hash, and genesis.json may be gone, so the
    lock's own fields are compared too."""
    if lock is None:
        return []
    network = config.spec.network
    wanted = {
        "chainId": network.chainId,
        "networkId": network.effective_network_id,
        "client": network.client,
        "consensus": network.consensus,
    }
    return [f"{key}: {lock.get(key)!r} -> {value!r}" for key, value in wanted.items() if lock.get(key) != value]


def _previous_genesis(existing: ExistingEnvironment | None) -> dict | None:
    data = existing.files.get(env_dir(existing.name) + GENESIS_FILE) if existing else None
    return json.loads(data) if data else None


def genesis_differences(old: dict | None, new: dict) -> list[str]:
    """What changed between two genesis documents, in words a reviewer can check."""
    if old is None:
        return []
    found: list[str] = []
    for key in sorted(set(old) | set(new)):
        before, after = old.get(key), new.get(key)
        if before == after:
            continue
        if key == "config" and isinstance(before, dict) and isinstance(after, dict):
            found += [
                f"config.{k}: {before.get(k)!r} -> {after.get(k)!r}"
                for k in sorted(set(before) | set(after))
                if before.get(k) != after.get(k)
            ]
        elif key == "alloc" and isinstance(before, dict) and isinstance(after, dict):
            for address in sorted(set(before) | set(after)):
                if address not in before:
                    found.append(f"alloc: {address} added")
                elif address not in after:
                    found.append(f"alloc: {address} removed")
                elif before[address] != after[address]:
                    found.append(f"alloc: {address} changed")
        elif key == "extraData":
            found.append("extraData: the genesis validator set changed")
        else:
            found.append(f"{key}: {before!r} -> {after!r}")
    return found


def check_genesis_lock(
    config: EnvironmentConfig, lock: dict | None, genesis: GenesisResult, allow_change: bool
) -> None:
    """A committed genesis never changes by accident: that would fork or reset a live chain."""
    if not lock or not genesis.changed or allow_change:
        return
    what = "; ".join(genesis.differences) or "see genesis.json"
    if lock["genesisHash"] == genesis.block_hash:
        hashes = f"block hash unchanged ({genesis.block_hash}) but the chain it describes is not"
    else:
        hashes = f"block hash {lock['genesisHash']} -> {genesis.block_hash}"
    raise GuardError(
        f"{config.source_path}: the committed genesis would change ({what}): {hashes}; genesis.json sha256 "
        f"{lock.get('genesisFileSha256', '(not locked)')} -> {genesis.file_sha256}. This resets the chain: nodes "
        f"with the old genesis will not follow the new one. Re-run with --allow-genesis-change {config.name} "
        "if that is intended"
    )


# -- render ----------------------------------------------------------------------------
def build_lock(config: EnvironmentConfig, keys: KeySet, genesis: GenesisResult) -> dict[str, Any]:
    namespace = config.spec.kubernetes.namespace
    return {
        "environment": config.name,
        "chainId": config.spec.network.chainId,
        "networkId": config.spec.network.effective_network_id,
        "client": config.spec.network.client,
        "consensus": config.spec.network.consensus,
        "genesisHash": genesis.block_hash,
        "genesisFileSha256": genesis.file_sha256,
        "validators": list(genesis.validators),
        "nodes": [
            {
                "name": n.name,
                "role": n.role,
                "address": n.address,
                "enode": n.enode(pod_host(n, namespace), 30301 if n.role == "bootnode" else 30303),
                "secret": n.secret_name,
            }
            for n in keys.nodes
        ],
        "accounts": [{"name": a.name, "address": a.address, "secret": a.secret_name} for a in keys.accounts],
    }


def canonical_json(data: Any) -> bytes:
    return (json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()


def bootstrap_objects(config: EnvironmentConfig, target: PublishTarget) -> list[dict[str, Any]]:
    """What points the cluster's GitOps controller at `rendered/<env>`."""
    name = f"chainops-{config.name}"
    labels = {"app.kubernetes.io/part-of": "chainops", "app.kubernetes.io/instance": config.name}
    path = f"rendered/{config.name}"
    url = target.url_for_cluster
    if config.spec.gitops.controller == "argocd":
        return [
            {
                "apiVersion": "argoproj.io/v1alpha1",
                "kind": "Application",
                # Deleting the Application (a decommission) deletes the network's objects too.
                "metadata": {"name": name, "namespace": "argocd", "labels": labels,
                             "finalizers": ["resources-finalizer.argocd.argoproj.io"]},
                "spec": {
                    "project": "default",
                    "source": {"repoURL": url, "targetRevision": target.branch, "path": path},
                    "destination": {"server": "https://kubernetes.default.svc", "namespace": config.spec.kubernetes.namespace},
                    "syncPolicy": {
                        "automated": {"prune": True, "selfHeal": True},
                        "syncOptions": ["CreateNamespace=true"],
                    },
                },
            }
        ]
    kustomization_spec: dict[str, Any] = {
        "interval": "10m",
        "path": f"./{path}",
        "prune": True,
        "wait": True,
        "timeout": "5m",
        "sourceRef": {"kind": "GitRepository", "name": name},
    }
    if config.spec.gitops.secrets.provider == "sops":
        kustomization_spec["decryption"] = {"provider": "sops", "secretRef": {"name": "sops-age"}}
    return [
        {
            "apiVersion": "source.toolkit.fluxcd.io/v1",
            "kind": "GitRepository",
            "metadata": {"name": name, "namespace": "flux-system", "labels": labels},
            "spec": {"interval": "1m", "url": url, "ref": {"branch": target.branch}},
        },
        {
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
            "kind": "Kustomization",
            "metadata": {"name": name, "namespace": "flux-system", "labels": labels},
            "spec": kustomization_spec,
        },
    ]


def render_environment(
    config: EnvironmentConfig,
    keys: KeySet,
    genesis: GenesisResult,
    existing: ExistingEnvironment,
    ctx: CompileContext,
    times: StageTimes | None = None,
) -> CompiledEnvironment:
    """Render, seal and validate every file of the environment (nothing touches disk)."""
    times = times or StageTimes()
    if keys.based_on != existing.commit:
        raise GuardError(
            f"{config.name}: its keys were planned on GitOps commit {_short(keys.based_on)} but the committed state "
            f"to render on is {_short(existing.commit)}: another writer published in between; run again"
        )
    privates = open_private_bundle(keys.sealed_private, ctx.identity.secret())
    with times.stage("render"):
        objects = render_objects(config, keys, genesis.block_hash, genesis.json_bytes, privates, ctx.charts_dir)
    findings = policy.evaluate(config, (rendered.obj for rendered in objects))
    refused = policy.refusals(config, findings)
    if refused:
        raise ConfigError(refused)
    base = env_dir(config.name)
    files: dict[str, bytes] = {}
    to_seal: list[tuple[str, dict, bytes | None]] = []
    validator = validator_for()
    problems = []
    sealer = sealer_for(config, ctx.identity)
    for rendered in objects:
        # A Secret is committed as the provider's kind (a SealedSecret file for sealed-secrets).
        kind = sealer.output_kind if rendered.obj["kind"] == "Secret" else rendered.obj["kind"]
        path = f"{base}{rendered.chart}/{object_filename({**rendered.obj, 'kind': kind})}"
        if path in files or any(path == p for p, _, _ in to_seal):
            raise ManifestValidationError(f"{path}: two objects render to the same file")
        with times.stage("validate"):
            problems.extend(validator.validate(rendered.obj, path))
        if rendered.obj["kind"] == "Secret":
            to_seal.append((path, rendered.obj, existing.files.get(path)))
        else:
            with times.stage("render"):
                files[path] = dump_yaml(rendered.obj).encode()
            if rendered.obj["kind"] == "ConfigMap" and len(files[path]) > MAX_OBJECT_BYTES:
                what = "accounts, contracts" if rendered.obj["metadata"]["name"] == "genesis" else f"values.{rendered.chart}"
                raise ManifestValidationError(
                    f"{config.source_path}: {what}: ConfigMap/{rendered.obj['metadata']['name']} would be {len(files[path])} "
                    f"bytes; Kubernetes stores at most {MAX_OBJECT_BYTES} bytes (1 MiB) per ConfigMap"
                )
    if problems:
        raise ManifestValidationError("\n".join(f"{p.path}: {p.kind}/{p.name}: {p.message}" for p in problems))
    try:
        with times.stage("seal"):
            sealed_files = seal_secrets(config, to_seal, privates, existing, ctx.identity, sealer)
    finally:
        sealer.close()
    if sealer.provider != "sops":  # our own YAML: check it like every other object
        for path, _, _ in to_seal:
            problems.extend(validator.validate(load_yaml(sealed_files[path]), path))
    files.update(sealed_files)
    lock = build_lock(config, keys, genesis)
    files[base + LOCK_FILE] = canonical_json(lock)
    files[base + GENESIS_FILE] = genesis.json_bytes
    resources = sorted(p[len(base) :] for p in files if p.endswith(".yaml"))
    files[base + "kustomization.yaml"] = dump_yaml(kustomization(resources)).encode()
    with times.stage("review"):
        files[base + README_FILE] = network_readme(config, lock, files)  # for people; not in the kustomization
    bootstrap = bootstrap_objects(config, ctx.target)
    for obj in bootstrap:
        problems.extend(validator.validate(obj, bootstrap_path(config.name)))
    if problems:
        raise ManifestValidationError("\n".join(f"{p.path}: {p.kind}/{p.name}: {p.message}" for p in problems))
    files[bootstrap_path(config.name)] = "---\n".join(dump_yaml(o) for o in bootstrap).encode()
    sops_rule = None
    if sealer.provider == "sops":  # the environment's own creation rule in the shared .sops.yaml
        sops_rule = sops_rule_yaml(sops_path_regex(config.name), [ctx.identity.recipient, *config.spec.gitops.secrets.ageRecipients])
    unsealed = [p for p, _, _ in to_seal] if sealer.provider == "plaintext" else []
    leaking = files_holding_private_material(files, privates, skip=unsealed)
    if leaking:  # a chart or an override wrote key material outside a sealed Secret
        raise GuardError(
            f"{config.source_path}: {', '.join(leaking)} would commit a private key, keystore or password in readable "
            "form; nothing was written (check the chart templates and values overrides)"
        )
    with times.stage("review"):
        warnings = tuple(f.warning() for f in findings)
        summary = build_summary(config.name, existing.files, files, warnings)
    return CompiledEnvironment(
        name=config.name,
        files=files,
        prefixes=owned_paths(config.name),
        genesis_hash=genesis.block_hash,
        object_count=len(objects) + len(bootstrap),  # every object the commit writes, as the summary counts them
        validators=genesis.validators,
        generated_keys=keys.generated,
        validator_plan=genesis.validator_plan,
        validator_nodes=len(keys.validators),
        genesis_changed_from=genesis.previous_hash,
        genesis_differences=genesis.differences,
        compiled_from={path: git_blob_id(data) for path, data in existing.files.items()},
        secrets_provider=sealer.provider,
        plaintext_secrets=tuple(sorted(p for p, _, _ in to_seal)) if sealer.provider == "plaintext" else (),
        sops_rule=sops_rule,
        policy_warnings=warnings,
        summary=summary,
        stage_seconds=times.seconds,
    )


def _short(commit: str | None) -> str:
    return commit[:12] if commit else "(none)"


def sealed_secret_paths(compiled: CompiledEnvironment) -> list[str]:
    """Committed Secret and SealedSecret files (the key escrow is not among them)."""
    return sorted(p for p in compiled.files if p.rsplit("/", 1)[-1].startswith(("secret-", "sealedsecret-")))


def parse_files(compiled: CompiledEnvironment) -> dict[str, Any]:
    """Every YAML object written, by path (for checks and tests)."""
    return {p: load_yaml(b) for p, b in compiled.files.items() if p.startswith(env_dir(compiled.name)) and p.endswith(".yaml")}


# -- publish ---------------------------------------------------------------------------
def commit_message(
    compiled: CompiledEnvironment, profile: str, source_commit: str | None, summary: ReviewSummary | None = None
) -> str:
    """Structured message; provenance goes into trailers, never into files. With the
    review summary, the subject names what changed and the body lists it."""
    headline = f" ({summary.headline()})" if summary is not None and summary.kind != "none" else ""
    lines = [
        f"chainops: compile {compiled.name}{headline}",
        "",
        f"Environment: {compiled.name}",
        f"Profile: {profile}",
        f"Genesis: {compiled.genesis_hash}",
        f"Objects: {compiled.object_count}",
    ]
    if compiled.genesis_changed_from:
        lines.insert(2, f"GENESIS CHANGED: block hash {compiled.genesis_changed_from} -> {compiled.genesis_hash}")
        lines += [f"  {d}" for d in compiled.genesis_differences]
    if compiled.generated_keys:
        lines.append(f"New keys: {', '.join(compiled.generated_keys)}")
    plan = compiled.validator_plan
    if plan is not None:
        lines += [f"Validator vote, before this change is applied: {describe_step(plan, step)}" for step in plan.removals]
        lines += [f"Validator vote, once the new pods have synced: {describe_step(plan, step)}" for step in plan.additions]
    if summary is not None:
        lines += commit_lines(summary)
    lines += ["", f"Chainops-Environment: {compiled.name}", f"Chainops-Version: {VERSION}"]
    if source_commit:
        lines.append(f"Chainops-Source: {source_commit}")
    return "\n".join(lines) + "\n"


def to_change(
    compiled: CompiledEnvironment, profile: str, source_commit: str | None, summary: ReviewSummary | None = None
) -> EnvironmentChange:
    return EnvironmentChange(
        environment=compiled.name,
        files=compiled.files,
        prefixes=compiled.prefixes,
        message=commit_message(compiled, profile, source_commit, summary),
        shared=(SharedEdit(SOPS_CONFIG_FILE, compiled.sops_rule, merge_sops_rule),),
    )


def decommission_change(name: str, summary: ReviewSummary | None = None) -> EnvironmentChange:
    """Remove an environment's rendered output, bootstrap and creation rule in `.sops.yaml`
    (and nothing of any other environment: `environment_paths` refuses a name that is not one)."""
    body = "".join(f"{line}\n" for line in commit_lines(summary)) + "\n" if summary is not None and summary.changed else ""
    return EnvironmentChange(
        environment=name,
        files={},
        prefixes=environment_paths(name),
        shared=(SharedEdit(SOPS_CONFIG_FILE, None, merge_sops_rule),),
        message=f"chainops: decommission {name}\n\n{body}Chainops-Environment: {name}\nChainops-Version: {VERSION}\n",
    )


def source_commit(environments_dir: Path) -> str | None:
    """The commit of the environments repository, when it is a clean git checkout."""
    try:
        with git.Repo(environments_dir, search_parent_directories=True) as repo:
            if repo.is_dirty(untracked_files=True, path=str(environments_dir)):
                return None
            return repo.head.commit.hexsha
    except (git.InvalidGitRepositoryError, git.NoSuchPathError, ValueError):
        return None


def rendered_environments(repo: GitopsRepository, base: str | None) -> set[str]:
    """Environments that have output in the GitOps repository."""
    return {path.split("/")[1] for path in repo.tree_entries(base, ("rendered",))}


# -- whole environments ----------------------------------------------------------------
def compile_environment(
    config: EnvironmentConfig,
    existing: ExistingEnvironment,
    ctx: CompileContext,
    decisions: Decisions | bool = False,
    mnemonic: str | None = None,
) -> CompiledEnvironment:
    """Keys, genesis (with the lock and validator-plan guards) and rendered, sealed,
    validated files: all in memory. `decisions`: the operator's explicit choices (a bool
    is --allow-genesis-change alone)."""
    times = StageTimes()
    decisions = Decisions.of(decisions)
    allow_genesis_change = decisions.allow_genesis_change
    if allow_genesis_change:
        existing = existing.without_lock_if_damaged()
    with times.stage("keys"):
        keys = compute_keys(config, existing, ctx.identity, mnemonic=mnemonic, reset=allow_genesis_change)
    with times.stage("genesis"):
        genesis = compute_genesis(config, keys, existing, allow_genesis_change)
        check_genesis_lock(config, existing.lock, genesis, allow_genesis_change)
        check_validator_plan(config, genesis.validator_plan, decisions)
    return render_environment(config, keys, genesis, existing, ctx, times)


# Problems that are the environment file's (or its charts' values'), reported per environment.
ENVIRONMENT_PROBLEMS = (ConfigError, GuardError, ManifestValidationError, KeyPolicyError, RenderError)
# What else a dry compile of one file can raise without any repository involved.
_DRY_COMPILE_PROBLEMS = (*ENVIRONMENT_PROBLEMS, SealingError, genesis_lib.GenesisError)


def dry_compile_problem(config: EnvironmentConfig, ctx: CompileContext) -> str | None:
    """Compile ``config`` as a new environment with throwaway keys and keep nothing: every
    check a compile makes on the file, its values and the rendered objects, without the
    GitOps repository. The problem in one message, or None. (``chainops validate``)"""
    throwaway_words = None
    if config.spec.keys.source == "mnemonic" and not config.spec.production:
        from eth_account.hdaccount import Language, generate_mnemonic  # lazy: only for development-mode files

        throwaway_words = generate_mnemonic(12, Language.ENGLISH)
    try:
        compile_environment(config, ExistingEnvironment(config.name), ctx, mnemonic=throwaway_words)
    except _DRY_COMPILE_PROBLEMS as exc:
        message = str(exc)
        return message if message.startswith(config.source_path) else f"{config.source_path}: {message}"
    return None


def _compile_task(task: tuple[EnvironmentConfig, ExistingEnvironment, CompileContext, bool]) -> CompiledEnvironment:
    return compile_environment(*task)


def _dry_compile_task(task: tuple[EnvironmentConfig, CompileContext]) -> str | None:
    return dry_compile_problem(*task)


def _in_processes(function: Callable[[Any], Any], tasks: Sequence[Any], jobs: int) -> list[Any]:
    """``function`` over ``tasks`` in `jobs` worker processes, results in input order."""
    if jobs <= 1 or len(tasks) < 2:
        return [function(task) for task in tasks]
    context = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
    with ProcessPoolExecutor(max_workers=min(jobs, len(tasks)), mp_context=context, initializer=die_with_parent) as pool:
        return list(pool.map(function, tasks, chunksize=max(1, len(tasks) // (jobs * 8))))


def compile_many(
    tasks: Sequence[tuple[EnvironmentConfig, ExistingEnvironment, CompileContext, Decisions | bool]], jobs: int
) -> list[CompiledEnvironment]:
    """Compile environments in `jobs` worker processes (CPU-bound rendering scales with
    cores). Results keep the input order; the first error stops everything, before
    anything is published. Workers return public or sealed bytes only."""
    return _in_processes(_compile_task, tasks, jobs)


def dry_compile_many(configs: Sequence[EnvironmentConfig], ctx: CompileContext, jobs: int) -> list[str | None]:
    """:func:`dry_compile_problem` for every environment, in worker processes."""
    return _in_processes(_dry_compile_task, [(config, ctx) for config in configs], jobs)
