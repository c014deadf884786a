"""The genesis lock: a committed genesis changes only when the operator says so, and
validator changes on a live chain keep the genesis and ask for votes instead."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import rlp
from eth_utils import keccak

from pipelines.lib.config import load_environment
from pipelines.lib.genesis import genesis_block_hash
from tests.conftest import REPO_ROOT, commit_count, git


def committed(home: Path, path: str) -> str:
    return git(home / "gitops.git", "show", f"main:{path}")


def lock(home: Path, env: str) -> dict:
    return json.loads(committed(home, f"rendered/{env}/network.lock.json"))


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_chain_id_change_is_refused_with_both_hashes_then_allowed(run_cli, envs_dir, tmp_path):
    """chainId is not part of the block hash, but nodes that disagree on it split the chain:
    the lock also pins the sha256 of genesis.json."""
    home = tmp_path / "home"
    assert run_cli("compile", "staging", "--home", home, "--environments", envs_dir).code == 0
    before = lock(home, "staging")
    assert before["genesisFileSha256"] == hashlib.sha256(committed(home, "rendered/staging/genesis.json").encode()).hexdigest()
    head = git(home / "gitops.git", "rev-parse", "main")
    edit(envs_dir / "staging.yaml", "chainId: 48720", "chainId: 48721")
    refused = run_cli("compile", "staging", "--home", home, "--environments", envs_dir)
    assert refused.code == 1
    assert before["genesisHash"] in refused.err and before["genesisFileSha256"] in refused.err
    assert "config.chainId: 48720 -> 48721" in refused.err
    assert git(home / "gitops.git", "rev-parse", "main") == head, "a refused run commits nothing"

    allowed = run_cli("compile", "staging", "--home", home, "--environments", envs_dir, "--allow-genesis-change", "staging")
    assert allowed.code == 0, allowed.err
    after = lock(home, "staging")
    assert after["chainId"] == 48721 and after["genesisFileSha256"] != before["genesisFileSha256"]
    assert f"GENESIS CHANGED from {before['genesisHash']}" in allowed.out
    message = git(home / "gitops.git", "log", "-1", "--format=%B")
    assert f"GENESIS CHANGED: block hash {before['genesisHash']} -> {after['genesisHash']}" in message
    assert "config.chainId: 48720 -> 48721" in message
    again = run_cli("compile", "staging", "--home", home, "--environments", envs_dir)
    assert again.code == 0 and "unchanged" in again.out, "the new genesis is the new lock"


def test_alloc_change_changes_the_block_hash_and_is_refused(run_cli, envs_dir, tmp_path):
    home = tmp_path / "home"
    assert run_cli("compile", "staging", "--home", home, "--environments", envs_dir).code == 0
    before = lock(home, "staging")
    edit(envs_dir / "staging.yaml", "balance: 500 ether", "balance: 501 ether")
    refused = run_cli("compile", "staging", "--home", home, "--environments", envs_dir)
    assert refused.code == 1
    assert "alloc: 0x8ba1f109551bd432803012645ac136ddd64dba72 changed" in refused.err
    new_hash = refused.err.split(f"block hash {before['genesisHash']} -> ")[1][:66]
    assert new_hash.startswith("0x") and new_hash != before["genesisHash"]
    assert commit_count(home / "gitops.git") == 1


def test_adding_a_validator_keeps_genesis_and_asks_for_votes(run_cli, envs_dir, tmp_path):
    home = tmp_path / "home"
    assert run_cli("compile", "staging", "--home", home, "--environments", envs_dir).code == 0
    before = lock(home, "staging")
    genesis_before = committed(home, "rendered/staging/genesis.json")
    edit(envs_dir / "staging.yaml", "validators: 4", "validators: 5")
    result = run_cli("compile", "staging", "--home", home, "--environments", envs_dir)
    assert result.code == 0, result.err
    after = lock(home, "staging")
    assert after["genesisHash"] == before["genesisHash"]
    assert committed(home, "rendered/staging/genesis.json") == genesis_before
    assert after["validators"] == before["validators"], "the lock's validators are the genesis set"
    new = next(n for n in after["nodes"] if n["name"] == "validator-4")
    assert new["address"] not in before["validators"]
    assert f'qbft_proposeValidatorVote("{new["address"]}", true)' in result.out
    message = git(home / "gitops.git", "log", "-1", "--format=%B")
    assert f'Validator vote, once the new pods have synced: qbft_proposeValidatorVote("{new["address"]}", true) on 3 of the 4' in message
    again = run_cli("compile", "staging", "--home", home, "--environments", envs_dir)
    assert again.code == 0 and "unchanged" in again.out and "vote" not in again.out, "asked once, when the node appears"


def test_removing_a_clique_signer_keeps_genesis_and_asks_for_a_remove_vote(run_cli, envs_dir, tmp_path):
    home = tmp_path / "home"
    assert run_cli("compile", "seed", "--home", home, "--environments", envs_dir).code == 0
    before = lock(home, "seed")
    if before["consensus"] != "clique":  # seed moves to ethash: use dev (clique) with two signers instead
        edit(envs_dir / "dev.yaml", "validators: 1", "validators: 2")
        assert run_cli("compile", "dev", "--home", home, "--environments", envs_dir).code == 0
        env, count = "dev", ("validators: 2", "validators: 1")
    else:
        env, count = "seed", ("validators: 3", "validators: 2")
    before = lock(home, env)
    removed = next(n for n in before["nodes"] if n["name"] == f"validator-{int(count[0][-1]) - 1}")
    edit(envs_dir / f"{env}.yaml", *count)
    refused = run_cli("compile", env, "--home", home, "--environments", envs_dir)
    assert refused.code == 1 and f'clique_propose("{removed["address"]}", false)' in refused.err
    assert f"--validators-voted {env}" in refused.err, "review: direct publishes a removal only after its votes"
    result = run_cli("compile", env, "--home", home, "--environments", envs_dir, "--validators-voted", env)
    assert result.code == 0, result.err
    after = lock(home, env)
    assert after["genesisHash"] == before["genesisHash"]
    assert removed["name"] not in {n["name"] for n in after["nodes"]}
    assert f'clique_propose("{removed["address"]}", false)' in result.out


def test_genesis_is_byte_identical_when_rerendered_elsewhere(run_cli, envs_dir, tmp_path):
    """Same environment file + same committed lock -> same genesis.json, in a fresh process."""
    home = tmp_path / "home"
    assert run_cli("compile", "staging", "--home", home, "--environments", envs_dir).code == 0
    lock_text = committed(home, "rendered/staging/network.lock.json")
    (tmp_path / "lock.json").write_text(lock_text)
    script = f"""
import json, sys
from pathlib import Path
from pipelines.lib.config import load_environment
from pipelines.lib.keys import AccountIdentity, KeySet, NodeIdentity
from pipelines.lib.model import ExistingEnvironment
from pipelines.lib.stages.genesis import compute_genesis
lock = json.loads(Path({str(tmp_path / 'lock.json')!r}).read_text())
config = load_environment(Path({str(envs_dir / 'staging.yaml')!r}))
keys = KeySet(tuple(NodeIdentity(n["name"], n["role"], n["address"], n["enode"][8:136]) for n in lock["nodes"]),
              tuple(AccountIdentity(a["name"], a["address"]) for a in lock["accounts"]), b"")
existing = ExistingEnvironment("staging", {{"rendered/staging/network.lock.json": json.dumps(lock).encode()}})
sys.stdout.buffer.write(compute_genesis(config, keys, existing).json_bytes)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, cwd=tmp_path, check=True,
                         env={"PYTHONPATH": str(REPO_ROOT), "PYTHONHASHSEED": "12345", "PATH": "/usr/bin:/bin"}).stdout
    assert out.decode() == committed(home, "rendered/staging/genesis.json")


def test_besu_options_and_contract_validator_selection(run_cli, envs_dir, tmp_path):
    code = "0x6080604052348015600f57600080fd5b50"
    (envs_dir / "contracts.yaml").write_text(f"""apiVersion: chainops/v1
network:
  chainId: 99001
  client: besu
  consensus: qbft
  zeroBaseFee: true
  contractSizeLimit: 49152
  validatorSelection: contract
  validatorContractAddress: "0x0000000000000000000000000000000000008888"
nodes: {{validators: 4, rpc: 1}}
contracts:
  - address: "0x0000000000000000000000000000000000008888"
    code: "{code}"
  - address: "0x0000000000000000000000000000000000009999"
    code: "0x00"
    storage: {{"0x1": "0xff"}}
    balance: 1 ether
kubernetes: {{namespace: chain-contracts}}
""")
    home = tmp_path / "home"
    result = run_cli("compile", "contracts", "--home", home, "--environments", envs_dir)
    assert result.code == 0, result.err
    genesis = json.loads(committed(home, "rendered/contracts/genesis.json"))
    assert genesis["config"]["zeroBaseFee"] is True and genesis["baseFeePerGas"] == "0x0"
    assert genesis["config"]["contractSizeLimit"] == 49152
    assert genesis["config"]["qbft"]["validatorcontractaddress"] == "0x0000000000000000000000000000000000008888"
    vanity, validators, vote, round_, seals = rlp.decode(bytes.fromhex(genesis["extraData"][2:]))
    assert validators == [], "contract selection: no validators in extraData"
    # Solidity layout of `address[] validators` at slot 0, recomputed here.
    locked = lock(home, "contracts")["validators"]
    assert len(locked) == 4 and locked == sorted(locked, key=lambda a: bytes.fromhex(a[2:]))
    storage = genesis["alloc"]["0x0000000000000000000000000000000000008888"]["storage"]
    base = int.from_bytes(keccak(b"\x00" * 32), "big")
    expected = {"0x" + "00" * 32: "0x" + (4).to_bytes(32, "big").hex()}
    for i, address in enumerate(locked):
        expected["0x" + (base + i).to_bytes(32, "big").hex()] = "0x" + "00" * 12 + address[2:].lower()
    assert storage == expected
    other = genesis["alloc"]["0x0000000000000000000000000000000000009999"]
    assert other["balance"] == hex(10**18) and other["storage"] == {"0x" + "00" * 31 + "01": "0x" + "00" * 31 + "ff"}
    assert lock(home, "contracts")["genesisHash"] == genesis_block_hash(genesis)


def test_contract_options_are_validated(run_cli, envs_dir):
    path = envs_dir / "dev.yaml"
    edit(path, "blockPeriodSeconds: 5", "blockPeriodSeconds: 5\n  zeroBaseFee: true")
    result = run_cli("validate", "--environments", envs_dir)
    assert result.code == 1 and "dev.yaml: network: zeroBaseFee and contractSizeLimit are Besu options" in result.err
    config_text = (envs_dir / "staging.yaml").read_text().replace("consensus: qbft", "consensus: qbft\n  validatorSelection: contract")
    (envs_dir / "staging.yaml").write_text(config_text)
    edit(path, "\n  zeroBaseFee: true", "")
    result = run_cli("validate", "--environments", envs_dir)
    assert result.code == 1 and "staging.yaml: network: validatorSelection 'contract' needs validatorContractAddress" in result.err
    assert load_environment(envs_dir / "dev.yaml").spec.network.zeroBaseFee is False
