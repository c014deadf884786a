"""The typed lock: read once, written back byte for byte, and its helpers."""

from __future__ import annotations

from pipelines.lib.lock import canonical_json, parse_lock
from pipelines.lib.review import read_lock

ADDRESS = [f"0x{i:040x}" for i in range(1, 5)]


def lock_document(**changes) -> dict:
    """A lock as an older chainops wrote it (no transitions, no genesisFileSha256), with fields
    this version does not know, at the top and inside a node."""
    node = lambda name, role, i: {  # noqa: E731
        "name": name, "role": role, "address": ADDRESS[i], "secret": f"{name}-keys",
        "enode": f"enode://{'ab' * 64}@{name}.chain-x.svc.cluster.local:30303",
    }
    document = {
        "environment": "x", "chainId": 7, "networkId": 7, "client": "besu", "consensus": "qbft",
        "genesisHash": "0x" + "cd" * 32, "validators": ADDRESS[:2],
        "nodes": [node("validator-0", "validator", 0), {**node("rpc-0", "rpc", 2), "zone": "b"}, node("validator-1", "validator", 1)],
        "accounts": [{"name": "faucet", "address": ADDRESS[3], "secret": "account-faucet-keys"},
                     {"name": None, "address": ADDRESS[0]}],
        "futureField": {"kept": [1, 2.5, None]},
    }
    return document | changes


def test_a_lock_read_and_written_back_keeps_its_bytes():
    for document in (lock_document(), lock_document(transitions=[{"block": 10, "blockPeriodSeconds": 5}])):
        data = canonical_json(document)
        lock = parse_lock(data, "x")
        assert canonical_json(lock.document()) == data
        moved = lock.model_copy(update={"environment": "y"})
        assert canonical_json(moved.document()) == canonical_json({**document, "environment": "y"})


def test_helpers_name_the_validators_and_every_key():
    lock = parse_lock(canonical_json(lock_document()), "x")
    assert [n.name for n in lock.validator_nodes()] == ["validator-0", "validator-1"]
    assert lock.addresses_by_name() == {
        "validator-0": ADDRESS[0], "rpc-0": ADDRESS[2], "validator-1": ADDRESS[1], "account/faucet": ADDRESS[3],
    }


def test_the_review_reads_a_damaged_lock_as_far_as_it_goes():
    damaged = lock_document()
    del damaged["genesisHash"], damaged["nodes"][0]["enode"]
    lock = read_lock({"rendered/x/network.lock.json": canonical_json(damaged)}, "x")
    assert lock is not None and lock.genesisHash is None and lock.consensus == "qbft"
    assert [(n.name, n.enode) for n in lock.nodes][:1] == [("validator-0", "")]
    assert read_lock({"rendered/x/network.lock.json": b"null"}, "x") is None
