"""Keys stage: the environment's node and account keys.

Locked keys are recovered (escrow first, then the committed Secrets, then a matching
development mnemonic) and never regenerated; new nodes get new keys. Before any key is
planned the committed state is checked against its lock (identity_guard). The pure key
algorithms (derivation, keystores, the escrow format) are in pipelines.lib.keys.
"""


from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Collection

from pipelines.lib.config import EnvironmentConfig
from pipelines.lib.errors import GuardError
from pipelines.lib.identity_guard import check_committed_state
from pipelines.lib.keys import (
    Escrow,
    KeyDeriver,
    KeyPolicyError,
    KeySet,
    PrivateKeyMaterial,
    address_of_public_key,
    check_rotation,
    derive_shared_secret,
    mnemonic_deriver,
    plan_keys,
    public_key_of,
    seal_escrow,
)
from pipelines.lib.layout import (
    env_dir,
    escrow_path,
    lock_path,
)
from pipelines.lib.lock import NetworkLock, canonical_json
from pipelines.lib.model import ExistingEnvironment
from pipelines.lib.sealing import (
    AgeIdentity,
    SealingError,
    SopsSealer,
    is_plaintext_secret,
    is_sops_encrypted,
)
from pipelines.lib.stages.seal import naming_the_file, read_escrow
from pipelines.lib.yaml_io import load_yaml


def _secret_files(existing: ExistingEnvironment) -> dict[str, str]:
    """Secret name -> repo path of its committed Secret file (SOPS or plaintext)."""
    found = {}
    for path in existing.files:
        if path.startswith(env_dir(existing.name)) and path.rsplit("/", 1)[-1].startswith("secret-"):
            found[path.rsplit("/", 1)[-1][len("secret-") : -len(".yaml")]] = path
    return found


def _locked_secrets(lock: NetworkLock) -> list[tuple[str, str]]:
    """(key name, Secret name) of every locked node and generated account."""
    wanted = [(node.name, node.secret) for node in lock.nodes]
    wanted += [(f"account/{a.name}", a.secret or "") for a in lock.accounts if a.name]
    return wanted


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
    if lock is None:
        return {}
    wanted = _locked_secrets(lock)
    held = escrow.keys if escrow else {}
    recovered = {name: held[name] for name, _ in wanted if name in held}
    missing = [(name, secret) for name, secret in wanted if name not in recovered]
    if missing:
        recovered.update(_recover_from_secrets(existing, identity, missing))
    if derive:
        addresses = lock.addresses_by_name()
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
    lock = old.lock
    if lock is None:
        raise GuardError(f"{old.name}: has no network.lock.json to rename; nothing was written")
    files: dict[str, bytes] = {}
    for path, data in old.files.items():
        if path.startswith(env_dir(old.name)):
            files[env_dir(new_name) + path[len(env_dir(old.name)) :]] = data
    files[lock_path(new_name)] = canonical_json(lock.model_copy(update={"environment": new_name}).document())
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
    check_committed_state(config.name, existing.files, existing.lock, escrow.keys if escrow else None, reset)
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
