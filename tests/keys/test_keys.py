"""Keys: CSPRNG generation, identities derived by a second library, reuse of locked keys."""

from __future__ import annotations

import json

import pyrage
import pytest
from eth_account import Account
from eth_keys import KeyAPI
from eth_keys.backends import NativeECCBackend

from pipelines.lib.config import parse_environment
from pipelines.lib.keys import (
    Escrow,
    KeyPolicyError,
    PrivateKeyMaterial,
    SealedFileRecord,
    address_of_public_key,
    derivation_paths,
    generate_private_key,
    mnemonic_deriver,
    open_escrow,
    open_private_bundle,
    plan_keys,
    public_key_of,
    seal_escrow,
)
from pipelines.lib.lock import LockedAccount, LockedNode, NetworkLock

NATIVE = KeyAPI(NativeECCBackend)
GETH = """apiVersion: chainops/v1
network: {chainId: 7, client: geth, consensus: clique}
nodes: {validators: 2, rpc: 1, bootnodes: 1}
accounts: [{name: faucet, balance: 1 ether}]
kubernetes: {namespace: chain-x}
"""


def partial_lock(nodes: list[dict], accounts: list[dict] | tuple = ()) -> NetworkLock:
    """A lock holding only the fields plan_keys reads (unvalidated: no enodes, Secrets or genesis)."""
    return NetworkLock.model_construct(
        nodes=[LockedNode.model_construct(**n) for n in nodes], accounts=[LockedAccount.model_construct(**a) for a in accounts]
    )


@pytest.fixture
def identity():
    return pyrage.x25519.Identity.generate()


def test_generated_keys_are_distinct_and_match_a_second_implementation():
    keys = {generate_private_key() for _ in range(50)}
    assert len(keys) == 50
    for key in list(keys)[:10]:
        native = NATIVE.PrivateKey(key)
        assert public_key_of(key) == native.public_key.to_bytes()
        assert address_of_public_key(public_key_of(key)) == Account.from_key(key).address


def test_private_material_never_shows_in_repr():
    material = PrivateKeyMaterial("ab" * 32, "{}", "hunter2")
    assert "ab" * 32 not in repr(material) and "hunter2" not in repr(material)


def test_plan_generates_then_reuses_locked_keys(identity):
    config = parse_environment("x", GETH, "environments/x.yaml")
    recipient = str(identity.to_public())
    first = plan_keys(config, None, {}, recipient)
    assert [n.name for n in first.nodes] == ["validator-0", "validator-1", "rpc-0", "bootnode-0"]
    assert set(first.generated) == {"validator-0", "validator-1", "rpc-0", "bootnode-0", "account/faucet"}
    privates = open_private_bundle(first.sealed_private, identity)
    assert b"nodekey" not in first.sealed_private and privates["rpc-0"].private_key.encode() not in first.sealed_private
    for name in ("validator-0", "validator-1"):  # geth signers get a V3 keystore that unlocks to the node key
        keystore = json.loads(privates[name].keystore_json)
        assert keystore["crypto"]["kdf"] == "scrypt"
        assert Account.decrypt(keystore, privates[name].password).hex() == privates[name].private_key
    lock = partial_lock(
        nodes=[{"name": n.name, "role": n.role, "address": n.address} for n in first.nodes],
        accounts=[{"name": a.name, "address": a.address} for a in first.accounts],
    )
    second = plan_keys(config, lock, privates, recipient)
    assert second.generated == ()
    assert second.nodes == first.nodes and second.accounts == first.accounts


def test_locked_node_without_key_or_with_wrong_key_is_refused(identity):
    config = parse_environment("x", GETH, "environments/x.yaml")
    recipient = str(identity.to_public())
    first = plan_keys(config, None, {}, recipient)
    privates = open_private_bundle(first.sealed_private, identity)
    lock = partial_lock(nodes=[{"name": n.name, "role": n.role, "address": n.address} for n in first.nodes])
    missing = {k: v for k, v in privates.items() if k != "rpc-0"}
    with pytest.raises(KeyPolicyError, match="rpc-0: .*refusing to generate a new key"):
        plan_keys(config, lock, missing, recipient)
    swapped = {**privates, "rpc-0": privates["bootnode-0"]}
    with pytest.raises(KeyPolicyError, match="rpc-0: the key chainops holds for it .* does not match"):
        plan_keys(config, lock, swapped, recipient)


def test_private_bundle_opens_only_with_the_pipeline_identity(identity):
    config = parse_environment("x", GETH, "environments/x.yaml")
    keys = plan_keys(config, None, {}, str(identity.to_public()))
    with pytest.raises(pyrage.DecryptError):
        open_private_bundle(keys.sealed_private, pyrage.x25519.Identity.generate())


def test_escrow_round_trip_keeps_bytes_only_while_content_is_unchanged(identity):
    config = parse_environment("x", GETH, "environments/x.yaml")
    recipient = str(identity.to_public())
    privates = open_private_bundle(plan_keys(config, None, {}, recipient).sealed_private, identity)
    escrow = Escrow(privates, {"rendered/x/geth-node/secret-rpc-0-keys.yaml": SealedFileRecord("ab" * 20, "hmac-sha256:00")})
    sealed = seal_escrow("x", escrow, recipient)
    assert sealed.startswith(b"-----BEGIN AGE ENCRYPTED FILE-----")
    assert all(m.private_key.encode() not in sealed for m in privates.values())
    assert privates["rpc-0"].private_key not in repr(escrow)
    opened = open_escrow(sealed, identity, "x")
    assert opened.keys == privates and opened.sealed == escrow.sealed
    assert seal_escrow("x", opened, recipient, sealed, identity) == sealed, "same content: same bytes"
    fewer = Escrow({k: v for k, v in privates.items() if k != "rpc-0"}, escrow.sealed)
    assert seal_escrow("x", fewer, recipient, sealed, identity) != sealed
    with pytest.raises(KeyPolicyError, match="keys.escrow.age of y: not a chainops v1 escrow for this environment"):
        open_escrow(sealed, identity, "y")  # an escrow copied from another environment
    stranger = pyrage.x25519.Identity.generate()
    with pytest.raises(KeyPolicyError, match="cannot be decrypted with the pipeline identity") as info:
        open_escrow(sealed, stranger, "x")
    assert "AGE-SECRET-KEY" not in str(info.value).upper()


def test_rotation_replaces_only_the_named_p2p_key(identity):
    config = parse_environment("x", GETH, "environments/x.yaml")
    recipient = str(identity.to_public())
    first = plan_keys(config, None, {}, recipient)
    privates = open_private_bundle(first.sealed_private, identity)
    lock = partial_lock(
        nodes=[{"name": n.name, "role": n.role, "address": n.address} for n in first.nodes],
        accounts=[{"name": a.name, "address": a.address} for a in first.accounts],
    )
    rotated = plan_keys(config, lock, privates, recipient, rotate={"rpc-0"})
    assert rotated.generated == ("rpc-0",) and rotated.rotated == ("rpc-0",)
    changed = {a.name for a, b in zip(first.nodes, rotated.nodes) if a != b}
    assert changed == {"rpc-0"} and rotated.accounts == first.accounts
    with pytest.raises(KeyPolicyError, match="validator-0 is a validator.*needs consensus votes"):
        plan_keys(config, lock, privates, recipient, rotate={"validator-0"})
    with pytest.raises(KeyPolicyError, match="no node 'rpc-7'"):
        plan_keys(config, lock, privates, recipient, rotate={"rpc-7"})


def test_derivation_paths_and_mnemonic_source():
    config = parse_environment("x", GETH + "keys: {source: mnemonic}\n", "environments/x.yaml")
    assert derivation_paths(config) == {
        "validator-0": "m/44'/60'/1'/0/0", "validator-1": "m/44'/60'/1'/0/1", "rpc-0": "m/44'/60'/2'/0/0",
        "bootnode-0": "m/44'/60'/3'/0/0", "account/faucet": "m/44'/60'/0'/0/0",
    }
    assert mnemonic_deriver(parse_environment("x", GETH, "environments/x.yaml"), "irrelevant") is None
    words = "test test test test test test test test test test test junk"
    derive = mnemonic_deriver(config, words)
    Account.enable_unaudited_hdwallet_features()
    assert Account.from_key(derive("validator-1")).address == Account.from_mnemonic(words, account_path="m/44'/60'/1'/0/1").address
    keys = plan_keys(config, None, {}, str(pyrage.x25519.Identity.generate().to_public()), derive=derive)
    assert keys.accounts[0].address == "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
    with pytest.raises(KeyPolicyError, match="not a valid BIP-39 mnemonic") as info:
        mnemonic_deriver(config, "junk " * 12)
    assert "junk" not in str(info.value)
