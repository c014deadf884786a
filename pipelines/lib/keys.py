"""Node and account keys: generated once with a CSPRNG, public identities locked.

Private material only lives in memory. Between Dagster assets it travels as an age
ciphertext for the pipeline's own identity (`PrivateBundle`), never as plaintext.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass, field

import coincurve
import pyrage
from eth_hash.auto import keccak
from eth_keyfile import create_keyfile_json
from eth_utils import to_checksum_address

from pipelines.lib.config import EnvironmentConfig

P2P_PORT = 30303
# Keystores sit in the same sealed Secret as their password, so the KDF protects little;
# geth's "light" scrypt N keeps pod start-up and compile time low.
KEYSTORE_SCRYPT_N = 4096


class KeyPolicyError(RuntimeError):
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


def _fresh_material(with_keystore: bool) -> PrivateKeyMaterial:
    private_key = generate_private_key()
    if not with_keystore:
        return PrivateKeyMaterial(private_key.hex())
    keystore, password = make_keystore(private_key)
    return PrivateKeyMaterial(private_key.hex(), keystore, password)


def _check_matches(name: str, material: PrivateKeyMaterial, locked_address: str) -> bytes:
    public = public_key_of(bytes.fromhex(material.private_key))
    if address_of_public_key(public).lower() != locked_address.lower():
        raise KeyPolicyError(
            f"{name}: the key in its committed Secret does not match address {locked_address} in network.lock.json; "
            "refusing to continue (restore the Secret or reset the environment explicitly)"
        )
    return public


def plan_keys(
    config: EnvironmentConfig,
    lock: dict | None,
    existing: dict[str, PrivateKeyMaterial],
    recipient: str,
    shared: dict[str, PrivateKeyMaterial] | None = None,
) -> KeySet:
    """Reuse every locked identity, generate keys only for new nodes and accounts.

    `existing` maps node/account names to private material recovered from the committed
    sealed Secrets. A locked identity without its key is an error, never a regeneration.
    """
    locked_nodes = {n["name"]: n for n in (lock or {}).get("nodes", [])}
    locked_accounts = {a["name"]: a for a in (lock or {}).get("accounts", []) if a.get("name")}
    privates: dict[str, PrivateKeyMaterial] = dict(shared or {})
    generated: list[str] = []
    nodes: list[NodeIdentity] = []
    for name, role in desired_nodes(config):
        locked = locked_nodes.get(name)
        if locked and locked.get("role") == role:
            if name not in existing:
                raise KeyPolicyError(
                    f"{name}: network.lock.json locks {locked['address']} but its Secret is missing from the "
                    "GitOps repository; refusing to generate a new key"
                )
            material = existing[name]
            public = _check_matches(name, material, locked["address"])
            if needs_keystore(config, role) and material.keystore_json is None:
                keystore, password = make_keystore(bytes.fromhex(material.private_key))
                material = PrivateKeyMaterial(material.private_key, keystore, password)
        else:
            material = _fresh_material(needs_keystore(config, role))
            public = public_key_of(bytes.fromhex(material.private_key))
            generated.append(name)
        privates[name] = material
        nodes.append(NodeIdentity(name, role, address_of_public_key(public), public.hex()))
    accounts: list[AccountIdentity] = []
    for spec in config.spec.accounts:
        if spec.name is None:
            continue
        key = f"account/{spec.name}"
        locked = locked_accounts.get(spec.name)
        if locked:
            if key not in existing:
                raise KeyPolicyError(
                    f"account {spec.name}: network.lock.json locks {locked['address']} but its Secret is missing; "
                    "refusing to generate a new key"
                )
            material = existing[key]
            public = _check_matches(f"account {spec.name}", material, locked["address"])
        else:
            material = _fresh_material(True)
            public = public_key_of(bytes.fromhex(material.private_key))
            generated.append(key)
        privates[key] = material
        accounts.append(AccountIdentity(spec.name, address_of_public_key(public)))
    return KeySet(tuple(nodes), tuple(accounts), seal_private_bundle(privates, recipient), tuple(generated))


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
