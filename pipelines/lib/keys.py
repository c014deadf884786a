"""Node and account keys: generated once with a CSPRNG, public identities locked.

Private material only lives in memory. Between Dagster assets it travels as an age
ciphertext for the pipeline's own identity (`PrivateBundle`), never as plaintext.
In the GitOps repository it is kept twice, both sealed: in the cluster's Secrets
(for the nodes) and in the key escrow `rendered/<env>/keys.escrow.age` (for chainops
itself: an age file for the pipeline identity only, so keys can be recovered even
when the cluster's sealing is one-way, as with SealedSecrets).

Optional development mode: with `keys: {source: mnemonic}` and `CHAINOPS_MNEMONIC`,
new keys derive from a BIP-39 mnemonic along the BIP-32/44 paths of
:func:`derivation_paths`, so a dev network can be recreated from nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field

import coincurve
import pyrage
from eth_hash.auto import keccak
from eth_utils import to_checksum_address

from pipelines.lib.config import EnvironmentConfig
from pipelines.lib.errors import InputProblem
from pipelines.lib.layout import ESCROW_FILE
from pipelines.lib.lock import NetworkLock

P2P_PORT = 30303
ESCROW_VERSION = 1
MNEMONIC_ENV = "CHAINOPS_MNEMONIC"
ROTATABLE_ROLES = ("rpc", "bootnode")
# BIP-44 "account" level per kind of key (m/44'/60'/<account>'/0/<index>). Generated accounts
# use account 0', so wallets that import the mnemonic (MetaMask and friends) list them first.
HD_ACCOUNT_BY_ROLE = {"account": 0, "validator": 1, "rpc": 2, "bootnode": 3}
# Keystores sit in the same sealed Secret as their password, so the KDF protects little;
# geth's "light" scrypt N keeps pod start-up and compile time low.
KEYSTORE_SCRYPT_N = 4096


class KeyPolicyError(InputProblem):
    """A key problem that must stop the run (lost key, mismatched identity)."""


@dataclass(frozen=True)
class NodeIdentity:
    """Public identity of one node: safe for logs, Git and asset metadata."""

    name: str
    role: str
    address: str
    public_key: str  # 128 hex chars, uncompressed secp256k1 point without the 04 prefix

    @property
    def secret_name(self) -> str:
        return f"{self.name}-keys"

    def enode(self, host: str, port: int = P2P_PORT) -> str:
        return f"enode://{self.public_key}@{host}:{port}"


@dataclass(frozen=True)
class AccountIdentity:
    name: str
    address: str

    @property
    def secret_name(self) -> str:
        return f"account-{self.name}"


@dataclass(frozen=True)
class PrivateKeyMaterial:
    """The private part of one node or account. Never logged, pickled or committed."""

    private_key: str  # 64 hex chars, no 0x (the format geth's and besu's key files read)
    keystore_json: str | None = None
    password: str | None = None

    def __repr__(self) -> str:  # keep secrets out of tracebacks and logs
        return "PrivateKeyMaterial(<redacted>)"


@dataclass(frozen=True)
class KeySet:
    """Public identities plus the age-sealed private bundle (safe for an IO manager)."""

    nodes: tuple[NodeIdentity, ...]
    accounts: tuple[AccountIdentity, ...]
    sealed_private: bytes = field(repr=False)
    generated: tuple[str, ...] = ()
    rotated: tuple[str, ...] = ()
    # The GitOps commit whose committed state these keys were planned on (None: no commit).
    # Rendering them against another state could replace keys another writer published.
    based_on: str | None = None

    @property
    def validators(self) -> tuple[NodeIdentity, ...]:
        return tuple(n for n in self.nodes if n.role == "validator")

    def by_role(self, role: str) -> tuple[NodeIdentity, ...]:
        return tuple(n for n in self.nodes if n.role == role)


def generate_private_key() -> bytes:
    """32 bytes from the OS CSPRNG, via coincurve (rejects out-of-range scalars)."""
    return coincurve.PrivateKey().secret


def public_key_of(private_key: bytes) -> bytes:
    return coincurve.PublicKey.from_secret(private_key).format(compressed=False)[1:]


def address_of_public_key(public_key: bytes) -> str:
    return to_checksum_address(keccak(public_key)[-20:])


def make_keystore(private_key: bytes) -> tuple[str, str]:
    """A V3 keystore (scrypt) and its random password."""
    password = secrets.token_urlsafe(32)
    from eth_keyfile import create_keyfile_json  # lazy: it loads py_ecc's BLS (~0.4 s at start-up)

    keystore = create_keyfile_json(private_key, password.encode(), kdf="scrypt", iterations=KEYSTORE_SCRYPT_N)
    return json.dumps(keystore, sort_keys=True, separators=(",", ":")), password


def desired_nodes(config: EnvironmentConfig) -> list[tuple[str, str]]:
    """(name, role) of every node the environment asks for, in a stable order."""
    nodes = config.spec.nodes
    return (
        [(f"validator-{i}", "validator") for i in range(nodes.validators)]
        + [(f"rpc-{i}", "rpc") for i in range(nodes.rpc)]
        + [(f"bootnode-{i}", "bootnode") for i in range(config.bootnode_count)]
    )


def needs_keystore(config: EnvironmentConfig, role: str) -> bool:
    return config.spec.network.client == "geth" and role == "validator"


KeyDeriver = Callable[[str], bytes | None]  # name -> private key, None when not derivable


def _material(private_key: bytes, with_keystore: bool) -> PrivateKeyMaterial:
    if not with_keystore:
        return PrivateKeyMaterial(private_key.hex())
    keystore, password = make_keystore(private_key)
    return PrivateKeyMaterial(private_key.hex(), keystore, password)


def _new_material(name: str, with_keystore: bool, derive: KeyDeriver | None) -> PrivateKeyMaterial:
    """A key for a new node/account: from the mnemonic in development mode, else the CSPRNG."""
    derived = derive(name) if derive else None
    return _material(derived if derived is not None else generate_private_key(), with_keystore)


def _check_matches(name: str, material: PrivateKeyMaterial, locked_address: str) -> bytes:
    public = public_key_of(bytes.fromhex(material.private_key))
    if address_of_public_key(public).lower() != locked_address.lower():
        raise KeyPolicyError(
            f"{name}: the key chainops holds for it (escrow or committed Secret) does not match address "
            f"{locked_address} in network.lock.json; refusing to continue (restore the escrow or the Secret, "
            "or reset the environment explicitly)"
        )
    return public


def check_rotation(config: EnvironmentConfig, lock: NetworkLock | None, rotate: Collection[str]) -> None:
    """Only p2p keys of non-validators rotate; a validator's key is its consensus identity."""
    if not rotate:
        return
    locked = {n.name: n for n in lock.nodes} if lock is not None else {}
    if not locked:
        raise KeyPolicyError(f"{config.name}: nothing to rotate; the environment has not been compiled yet")
    for name in sorted(rotate):
        node = locked.get(name)
        if node is None:
            raise KeyPolicyError(
                f"{config.name}: no node {name!r} in network.lock.json; nodes: {', '.join(sorted(locked))}"
            )
        if node.role == "validator":
            raise KeyPolicyError(
                f"{config.name}: {name} is a validator; its node key is also its consensus signing key "
                f"({node.address}), part of the validator set every node checks blocks against. "
                "Replacing it is a validator change that needs consensus votes: add a new validator node, vote it "
                "in on more than half of the current validators, then vote the old one out and remove it. "
                f"`chainops keys rotate` only rotates p2p keys of {' and '.join(ROTATABLE_ROLES)} nodes"
            )
        if node.role not in ROTATABLE_ROLES:
            raise KeyPolicyError(f"{config.name}: {name} has role {node.role!r}; only {', '.join(ROTATABLE_ROLES)} rotate")
        if name not in {n for n, _ in desired_nodes(config)}:
            raise KeyPolicyError(f"{config.name}: {name} is no longer in {config.source_path}; compile to remove it instead")


def plan_keys(
    config: EnvironmentConfig,
    lock: NetworkLock | None,
    existing: dict[str, PrivateKeyMaterial],
    recipient: str,
    shared: dict[str, PrivateKeyMaterial] | None = None,
    *,
    rotate: Collection[str] = (),
    derive: KeyDeriver | None = None,
) -> KeySet:
    """Reuse every locked identity, generate keys only for new nodes and accounts.

    `existing` maps node/account names to private material recovered from the key
    escrow or the committed sealed Secrets. A locked identity without its key is an
    error, never a regeneration. Nodes named in `rotate` (non-validators only) get a
    new CSPRNG key; `derive` (development mode) supplies keys for new names.
    """
    check_rotation(config, lock, rotate)
    locked_nodes = {n.name: n for n in lock.nodes} if lock is not None else {}
    locked_accounts = {a.name: a for a in lock.accounts if a.name} if lock is not None else {}
    privates: dict[str, PrivateKeyMaterial] = dict(shared or {})
    generated: list[str] = []
    nodes: list[NodeIdentity] = []
    for name, role in desired_nodes(config):
        locked = locked_nodes.get(name)
        if name in rotate:
            material = _material(generate_private_key(), needs_keystore(config, role))
            public = public_key_of(bytes.fromhex(material.private_key))
            generated.append(name)
        elif locked is not None and locked.role == role:
            material = _locked_material(name, locked.address, existing)
            public = _check_matches(name, material, locked.address)
            if needs_keystore(config, role) and material.keystore_json is None:
                material = _material(bytes.fromhex(material.private_key), True)
        else:
            material = _new_material(name, needs_keystore(config, role), derive)
            public = public_key_of(bytes.fromhex(material.private_key))
            generated.append(name)
        privates[name] = material
        nodes.append(NodeIdentity(name, role, address_of_public_key(public), public.hex()))
    accounts: list[AccountIdentity] = []
    for spec in config.spec.accounts:
        if spec.name is None:
            continue
        key = f"account/{spec.name}"
        account = locked_accounts.get(spec.name)
        if account is not None:
            material = _locked_material(f"account {spec.name}", account.address, existing, key)
            public = _check_matches(f"account {spec.name}", material, account.address)
            if material.keystore_json is None:
                material = _material(bytes.fromhex(material.private_key), True)
        else:
            material = _new_material(key, True, derive)
            public = public_key_of(bytes.fromhex(material.private_key))
            generated.append(key)
        privates[key] = material
        accounts.append(AccountIdentity(spec.name, address_of_public_key(public)))
    return KeySet(
        tuple(nodes),
        tuple(accounts),
        seal_private_bundle(privates, recipient),
        tuple(generated),
        tuple(sorted(rotate)),
    )


def _locked_material(
    label: str, locked_address: str, existing: Mapping[str, PrivateKeyMaterial], key: str | None = None
) -> PrivateKeyMaterial:
    material = existing.get(key or label)
    if material is None:
        raise KeyPolicyError(
            f"{label}: network.lock.json locks {locked_address} but chainops holds no private key for it "
            f"(neither in {ESCROW_FILE} nor in a committed Secret it can read); refusing to generate a new key. "
            "Restore the file from Git history or reset the environment explicitly"
        )
    return material


def derive_shared_secret(identity_secret: str, environment: str, purpose: str) -> str:
    """A shared secret (e.g. the ethstats WS secret) derived from the pipeline identity.

    Derived, not stored: it never changes while the identity is kept, and it is only ever
    written sealed. HMAC-SHA256 keeps purposes and environments independent.
    """
    digest = hmac.new(identity_secret.encode(), f"chainops/{environment}/{purpose}".encode(), hashlib.sha256)
    return digest.hexdigest()


def seal_private_bundle(privates: dict[str, PrivateKeyMaterial], recipient: str) -> bytes:
    payload = json.dumps(
        {name: [m.private_key, m.keystore_json, m.password] for name, m in sorted(privates.items())},
        sort_keys=True,
    ).encode()
    return pyrage.encrypt(payload, [pyrage.x25519.Recipient.from_str(recipient)])


def open_private_bundle(sealed: bytes, identity: pyrage.x25519.Identity) -> dict[str, PrivateKeyMaterial]:
    payload = json.loads(pyrage.decrypt(sealed, [identity]))
    return {name: PrivateKeyMaterial(*fields) for name, fields in payload.items()}


# -- key escrow ---------------------------------------------------------------------------
@dataclass(frozen=True)
class SealedFileRecord:
    """What chainops sealed into one committed file: its git blob id and plaintext fingerprint."""

    blob: str
    fingerprint: str


@dataclass(frozen=True)
class Escrow:
    """The decrypted escrow: private material by name, and the index of sealed files."""

    keys: dict[str, PrivateKeyMaterial] = field(repr=False)
    sealed: dict[str, SealedFileRecord] = field(default_factory=dict)


def escrow_payload(environment: str, escrow: Escrow) -> bytes:
    """Canonical JSON, so an unchanged escrow compares equal byte for byte."""
    document = {
        "version": ESCROW_VERSION,
        "environment": environment,
        "keys": {
            name: {k: v for k, v in (("privateKey", m.private_key), ("keystore", m.keystore_json), ("password", m.password)) if v is not None}
            for name, m in sorted(escrow.keys.items())
        },
        "sealed": {path: {"blob": r.blob, "fingerprint": r.fingerprint} for path, r in sorted(escrow.sealed.items())},
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def parse_escrow_payload(payload: bytes, environment: str) -> Escrow:
    try:
        document = json.loads(payload)
        if document.get("version") != ESCROW_VERSION or document.get("environment") != environment:
            raise ValueError("version or environment")
        keys = {
            name: PrivateKeyMaterial(entry["privateKey"], entry.get("keystore"), entry.get("password"))
            for name, entry in document["keys"].items()
        }
        for material in keys.values():
            if len(bytes.fromhex(material.private_key)) != 32:
                raise ValueError("key length")
        sealed = {path: SealedFileRecord(r["blob"], r["fingerprint"]) for path, r in document.get("sealed", {}).items()}
    except (ValueError, KeyError, TypeError, AttributeError):
        # Never echo the payload: it is the plaintext of every key.
        raise KeyPolicyError(f"{ESCROW_FILE} of {environment}: not a chainops v{ESCROW_VERSION} escrow for this environment") from None
    return Escrow(keys, sealed)


def seal_escrow(environment: str, escrow: Escrow, recipient: str, previous: bytes | None = None,
                identity: pyrage.x25519.Identity | None = None) -> bytes:
    """Armored age ciphertext for the pipeline identity only.

    age output is random, so the committed bytes are kept when they already decrypt to
    the same payload: re-runs with nothing changed stay byte-identical.
    """
    payload = escrow_payload(environment, escrow)
    if previous is not None and identity is not None:
        try:
            if pyrage.decrypt(previous, [identity]) == payload:
                return previous
        except Exception:  # pyrage.DecryptError and friends: write a fresh one
            pass
    return pyrage.encrypt(payload, [pyrage.x25519.Recipient.from_str(recipient)], armored=True)


def open_escrow(data: bytes, identity: pyrage.x25519.Identity, environment: str) -> Escrow:
    try:
        payload = pyrage.decrypt(data, [identity])
    except Exception:
        raise KeyPolicyError(
            f"{ESCROW_FILE} of {environment} cannot be decrypted with the pipeline identity "
            f"{identity.to_public()}; restore the identity that wrote it (CHAINOPS_HOME/age/identity.txt)"
        ) from None
    return parse_escrow_payload(payload, environment)


# -- development mode: keys from a mnemonic --------------------------------------------------
def derivation_paths(config: EnvironmentConfig) -> dict[str, str]:
    """BIP-32/44 path of every key chainops would derive for the environment.

    m/44'/60'/0'/0/k   k-th named account in `accounts:` (wallets show it as account k+1)
    m/44'/60'/1'/0/i   validator-i
    m/44'/60'/2'/0/i   rpc-i
    m/44'/60'/3'/0/i   bootnode-i
    """
    paths: dict[str, str] = {}
    for name, role in desired_nodes(config):
        index = int(name.rsplit("-", 1)[1])
        paths[name] = f"m/44'/60'/{HD_ACCOUNT_BY_ROLE[role]}'/0/{index}"
    named = [a.name for a in config.spec.accounts if a.name is not None]
    for index, account in enumerate(named):
        paths[f"account/{account}"] = f"m/44'/60'/{HD_ACCOUNT_BY_ROLE['account']}'/0/{index}"
    return paths


def mnemonic_deriver(config: EnvironmentConfig, mnemonic: str | None = None) -> KeyDeriver | None:
    """The key source for `keys: {source: mnemonic}`; None for generated keys.

    The mnemonic comes from the argument or the CHAINOPS_MNEMONIC variable. It is never
    echoed: a bad one gets an error that names the variable, not the words.
    """
    if config.spec.keys.source != "mnemonic":
        return None
    if config.spec.production:
        raise KeyPolicyError(f"{config.source_path}: keys.source: mnemonic is refused for production: true environments")
    words = mnemonic if mnemonic is not None else os.environ.get(MNEMONIC_ENV)
    if not words or not words.strip():
        raise KeyPolicyError(
            f"{config.source_path}: keys.source: mnemonic needs the {MNEMONIC_ENV} environment variable "
            "(a BIP-39 mnemonic); it is not set"
        )
    from eth_account.hdaccount import key_from_seed, seed_from_mnemonic  # lazy, like eth_keyfile above

    try:
        seed = seed_from_mnemonic(" ".join(words.split()), "")
    except Exception:
        raise KeyPolicyError(f"{MNEMONIC_ENV} is not a valid BIP-39 mnemonic (its words are not shown)") from None
    paths = derivation_paths(config)

    def derive(name: str) -> bytes | None:
        path = paths.get(name)
        return key_from_seed(seed, path) if path else None

    return derive
