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
    KeyPolicyError,
    PrivateKeyMaterial,
    address_of_public_key,
    generate_private_key,
    open_private_bundle,
    plan_keys,
    public_key_of,
)

NATIVE = KeyAPI(NativeECCBackend)
GETH = """apiVersion: chainops/v1
network: {chainId: 7, client: geth, consensus: clique}
nodes: {validators: 2, rpc: 1, bootnodes: 1}
accounts: [{name: faucet, balance: 1 ether}]
kubernetes: {namespace: chain-x}
"""


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
    lock = {
        "nodes": [{"name": n.name, "role": n.role, "address": n.address} for n in first.nodes],
        "accounts": [{"name": a.name, "address": a.address} for a in first.accounts],
    }
    second = plan_keys(config, lock, privates, recipient)
    assert second.generated == ()
    assert second.nodes == first.nodes and second.accounts == first.accounts


def test_locked_node_without_key_or_with_wrong_key_is_refused(identity):
    config = parse_environment("x", GETH, "environments/x.yaml")
    recipient = str(identity.to_public())
    first = plan_keys(config, None, {}, recipient)
    privates = open_private_bundle(first.sealed_private, identity)
    lock = {"nodes": [{"name": n.name, "role": n.role, "address": n.address} for n in first.nodes]}
    missing = {k: v for k, v in privates.items() if k != "rpc-0"}
    with pytest.raises(KeyPolicyError, match="rpc-0: .*refusing to generate a new key"):
        plan_keys(config, lock, missing, recipient)
    swapped = {**privates, "rpc-0": privates["bootnode-0"]}
    with pytest.raises(KeyPolicyError, match="rpc-0: the key in its committed Secret does not match"):
        plan_keys(config, lock, swapped, recipient)


def test_private_bundle_opens_only_with_the_pipeline_identity(identity):
    config = parse_environment("x", GETH, "environments/x.yaml")
    keys = plan_keys(config, None, {}, str(identity.to_public()))
    with pytest.raises(pyrage.DecryptError):
        open_private_bundle(keys.sealed_private, pyrage.x25519.Identity.generate())
