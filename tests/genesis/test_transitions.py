"""Consensus transitions (`network.transitions`, besu-qbft / besu-ibft2): a genesis-config
change that keeps the block hash, published only when its block is still ahead of the chain.

The hash is checked by a route that shares nothing with chainops' header code (py-evm's
header classes, tests/test_genesis.py); the chain head comes from a real local JSON-RPC
node: `geth --dev` when the pinned geth binary is built (tests/test_smoke.py finds it the
same way), otherwise a small http.server that answers the documented eth_* responses.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import pytest

from pipelines.lib import genesis as genesis_lib
from pipelines.lib.config import load_environment
from pipelines.lib.lock import parse_lock
from pipelines.lib.processes import prepare_child
from tests.conftest import REPO_ROOT, commit_count, git
from tests.genesis_helpers import make_spec, pyevm_genesis_hash
from tests.process_helpers import stop
from tests.yaml_reader import read_yaml

GETH = Path(os.environ.get("CHAINOPS_GETH_DIR") or Path.home() / ".cache" / "chainops" / "geth-v1.13.15" / "bin") / "geth"
DEV_CHAIN_ID = 1337  # geth --dev
EXAMPLE = REPO_ROOT / "docs" / "examples" / "besu-transitions.yaml"


# -- helpers -----------------------------------------------------------------------------------
def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def add_transitions(path: Path, *entries: str, rpc_url: str | None = None) -> None:
    """Set network.transitions (and rpcUrl) of an environment file, replacing earlier ones."""
    text = path.read_text()
    head, sep, rest = text.partition("  genesisTimestamp: 0\n")
    assert sep
    lines = [line for line in rest.split("\n")]
    while lines and (lines[0].startswith("    - ") or lines[0].startswith("  transitions:") or lines[0].startswith("  rpcUrl:")):
        lines.pop(0)
    block = "".join(["  transitions:\n", *(f"    - {e}\n" for e in entries)]) if entries else ""
    block += f"  rpcUrl: {json.dumps(rpc_url)}\n" if rpc_url else ""
    path.write_text(head + sep + block + "\n".join(lines))


def committed(home: Path, path: str) -> str:
    return git(home / "gitops.git", "show", f"main:{path}")


def lock(home: Path, env: str = "staging") -> dict:
    return json.loads(committed(home, f"rendered/{env}/network.lock.json"))


def refs(home: Path) -> str:
    return git(home / "gitops.git", "for-each-ref", "--format=%(refname) %(objectname)")


def compile_env(run_cli, home: Path, envs: Path, *flags: str, env: str = "staging"):
    return run_cli("compile", env, "--home", home, "--environments", envs, *flags)


# -- the genesis: Besu's format, the block hash ------------------------------------------------
def test_transitions_keep_the_block_hash_by_an_independent_route():
    plain = genesis_lib.build_genesis(make_spec())
    spec = dataclasses.replace(make_spec(), transitions=(
        genesis_lib.Transition(1_200_000, block_period_seconds=5),
        genesis_lib.Transition(1_300_000, validator_contract="0x0000000000000000000000000000000000007777"),
    ))
    with_transitions = genesis_lib.build_genesis(spec)
    # Besu's layout (TransitionsConfigOptions "qbft", BftFork "block"/"blockperiodseconds",
    # QbftFork "validatorselectionmode"/"validatorcontractaddress"), lower-case keys.
    assert with_transitions["config"]["transitions"] == {"qbft": [
        {"block": 1_200_000, "blockperiodseconds": 5},
        {"block": 1_300_000, "validatorselectionmode": "contract",
         "validatorcontractaddress": "0x0000000000000000000000000000000000007777"},
    ]}
    assert genesis_lib.genesis_json_bytes(plain) != genesis_lib.genesis_json_bytes(with_transitions)
    assert genesis_lib.genesis_header_rlp(plain) == genesis_lib.genesis_header_rlp(with_transitions)
    ours = genesis_lib.genesis_block_hash(with_transitions)
    assert ours == genesis_lib.genesis_block_hash(plain)
    assert ours == pyevm_genesis_hash(with_transitions) == pyevm_genesis_hash(plain), "py-evm's header agrees"
    ibft = genesis_lib.build_genesis(dataclasses.replace(make_spec(consensus="ibft2"), transitions=(
        genesis_lib.Transition(10, block_period_seconds=4),)))
    assert ibft["config"]["transitions"] == {"ibft2": [{"block": 10, "blockperiodseconds": 4}]}
    for bad in ((genesis_lib.Transition(0, 5),), (genesis_lib.Transition(5, 5), genesis_lib.Transition(5, 6)),
                (genesis_lib.Transition(9, 5), genesis_lib.Transition(8, 6)), (genesis_lib.Transition(9),)):
        with pytest.raises(genesis_lib.GenesisError):
            genesis_lib.build_genesis(dataclasses.replace(make_spec(), transitions=bad))
    with pytest.raises(genesis_lib.GenesisError, match="QBFT only"):
        genesis_lib.build_genesis(dataclasses.replace(make_spec(consensus="ibft2"), transitions=(
            genesis_lib.Transition(9, validator_contract="0x0000000000000000000000000000000000007777"),)))
    with pytest.raises(genesis_lib.GenesisError, match="no consensus transitions"):
        genesis_lib.build_genesis(dataclasses.replace(make_spec("geth", "clique"), transitions=(genesis_lib.Transition(9, 5),)))


# -- refusals: one line naming file, field and rule -----------------------------------------------
REFUSALS = [
    ("dev.yaml", ["{block: 1000, blockPeriodSeconds: 10}"],
     "network.transitions: geth/clique has no consensus transitions; allowed only for the besu-qbft and besu-ibft2"),
    ("seed.yaml", ["{block: 1000, blockPeriodSeconds: 10}"], "network.transitions: geth/ethash has no consensus transitions"),
    ("staging.yaml", ["{block: 1000, blockPeriodSeconds: 5}", "{block: 1000, blockPeriodSeconds: 6}"],
     "network.transitions[1].block: 1000 is listed twice; one transition per block"),
    ("staging.yaml", ["{block: 2000, blockPeriodSeconds: 5}", "{block: 1000, blockPeriodSeconds: 6}"],
     "network.transitions[1].block: 1000 is not after block 2000 of network.transitions[0]"),
    ("staging.yaml", ["{block: 0, blockPeriodSeconds: 5}"], "network.transitions[0].block: 0 is the genesis block"),
    ("staging.yaml", ["{block: 1000, validatorSelection: contract}"],
     "network.transitions[0]: validatorSelection 'contract' needs validatorContractAddress"),
    ("staging.yaml", ["{block: 1000, blockPeriodSeconds: 5, period: 3}"],
     "network.transitions[0].period: unknown key; allowed: block, blockPeriodSeconds, requestTimeoutSeconds, "
     "validatorContractAddress, validatorSelection"),
    ("staging.yaml", ["{block: 1000}"], "network.transitions[0]: a transition changes nothing"),
    ("staging.yaml", ["{block: 1000, requestTimeoutSeconds: 20}"],
     "network.transitions[0].requestTimeoutSeconds: Besu does not change the round timeout at a transition"),
    ("staging.yaml", ["{block: 1000, validatorSelection: blockHeader}"],
     "network.transitions[0].validatorSelection: 'blockHeader' is not allowed; allowed: 'contract'"),
]


@pytest.mark.parametrize(("file", "entries", "expected"), REFUSALS, ids=[r[2][:48] for r in REFUSALS])
def test_bad_transitions_are_refused_in_one_line(run_cli, envs_dir, file, entries, expected):
    add_transitions(envs_dir / file, *entries)
    result = run_cli("validate", "--no-render", "--environments", envs_dir)
    assert result.code == 1
    lines = [line for line in result.err.splitlines() if f"{envs_dir / file}: " in line]
    assert len(lines) == 1 and expected in lines[0], result.err


def test_ibft2_transitions_change_the_block_period_only_and_rpc_url_must_be_http(run_cli, envs_dir):
    path = envs_dir / "staging.yaml"
    edit(path, "consensus: qbft", "consensus: ibft2")
    add_transitions(path, '{block: 1000, validatorSelection: contract, validatorContractAddress: "0x0000000000000000000000000000000000007777"}')
    result = run_cli("validate", "--no-render", "--environments", envs_dir)
    assert result.code == 1 and "network.transitions[0].validatorSelection: validator selection by contract is QBFT only" in result.err
    add_transitions(path, "{block: 1000, blockPeriodSeconds: 4}", rpc_url="ftp://operator:hunter2@node.example/")
    result = run_cli("validate", "--no-render", "--environments", envs_dir)
    assert result.code == 1 and f"{path}: network.rpcUrl: ftp://node.example is not an http(s) URL" in result.err
    assert "hunter2" not in result.err and "operator" not in result.err


# -- through the CLI -----------------------------------------------------------------------------
def test_an_added_transition_keeps_the_genesis_lock_and_needs_confirmation(run_cli, envs_dir, tmp_path):
    home = tmp_path / "home"
    assert compile_env(run_cli, home, envs_dir).code == 0
    before = lock(home)
    assert "transitions" not in before and parse_lock(committed(home, "rendered/staging/network.lock.json").encode(),
                                                      "staging").transitions == [], "an older lock reads as none"
    sets_before = {name: read_yaml(committed(home, f"rendered/staging/besu-node/statefulset-{name}.yaml"))
                   for name in ("validator", "rpc")}
    add_transitions(envs_dir / "staging.yaml", "{block: 1200000, blockPeriodSeconds: 5}")
    head = refs(home)

    refused = compile_env(run_cli, home, envs_dir)
    assert refused.code == 1
    assert "network.transitions: the transition at block 1200000 takes effect on the live chain only if" in refused.err
    assert "--confirm-transitions staging" in refused.err and "Nothing was written" in refused.err
    assert refs(home) == head and commit_count(home / "gitops.git") == 1, "a refused run writes nothing"
    diff = run_cli("diff", "staging", "--home", home, "--environments", envs_dir)
    assert diff.code == 2 and "--confirm-transitions staging" in diff.err, "diff refuses what compile refuses"

    result = compile_env(run_cli, home, envs_dir, "--confirm-transitions", "staging", "--summary")
    assert result.code == 0, result.err
    after = lock(home)
    assert after["genesisHash"] == before["genesisHash"] and after["validators"] == before["validators"]
    assert after["transitions"] == [{"block": 1200000, "blockPeriodSeconds": 5}]
    assert parse_lock(committed(home, "rendered/staging/network.lock.json").encode(), "staging").transitions[0].block == 1200000
    genesis = json.loads(committed(home, "rendered/staging/genesis.json"))
    assert genesis["config"]["transitions"] == {"qbft": [{"block": 1200000, "blockperiodseconds": 5}]}
    assert genesis["config"]["qbft"]["blockperiodseconds"] == 2, "the genesis settings stay; the transition applies later"
    assert genesis_lib.genesis_block_hash(genesis) == pyevm_genesis_hash(genesis) == before["genesisHash"]
    assert commit_count(home / "gitops.git") == 2
    message = git(home / "gitops.git", "log", "-1", "--format=%B")
    assert "consensus transition at block 1200000" in message.splitlines()[0] and "GENESIS CHANGED" not in message
    assert "Consensus transition at block 1200000 (added): block period 2 s -> 5 s" in message
    # The review summary: the section, what changes, the restart and the confirmation asked for.
    summary = result.out
    assert "### Consensus transitions" in summary and "GENESIS CHANGED" not in summary
    assert "| 1200000 | added | block period 2 s -> 5 s |" in summary
    assert "Every node must run the new `genesis.json` before that block" in summary
    assert "one at a time" in summary and "BFT quorum" in summary and "PodDisruptionBudgets" in summary
    assert "Confirm that block 1200000 is still in the future" in summary
    assert "staging: consensus transition at block 1200000 (block period 2 s -> 5 s): every node must restart" in result.out

    # Every node's config changes together: one shared genesis ConfigMap, and each pod
    # template's checksum annotation changes, so the StatefulSets roll.
    for name, old in sets_before.items():
        new = read_yaml(committed(home, f"rendered/staging/besu-node/statefulset-{name}.yaml"))
        volumes = {v["name"]: v for v in new["spec"]["template"]["spec"]["volumes"]}
        assert volumes["genesis"] == {"name": "genesis", "configMap": {"name": "genesis"}}
        mounts = new["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
        assert {"name": "genesis", "mountPath": "/genesis", "readOnly": True} in mounts
        annotations, old_annotations = (s["spec"]["template"]["metadata"]["annotations"] for s in (new, old))
        assert "checksum/transitions" not in old_annotations and annotations["checksum/transitions"]
        assert annotations["checksum/genesis"] == old_annotations["checksum/genesis"] == before["genesisHash"]
    configmap = read_yaml(committed(home, "rendered/staging/network/configmap-genesis.yaml"))
    assert json.loads(configmap["data"]["genesis.json"]) == genesis

    again = compile_env(run_cli, home, envs_dir)
    assert again.code == 0 and "unchanged" in again.out, "a locked transition needs no confirmation again"
    assert commit_count(home / "gitops.git") == 2


def test_changing_or_removing_a_locked_transition_is_a_genesis_change(run_cli, envs_dir, tmp_path):
    home = tmp_path / "home"
    add_transitions(envs_dir / "staging.yaml", "{block: 1200000, blockPeriodSeconds: 5}")
    assert compile_env(run_cli, home, envs_dir).code == 0, "a new network has no chain to confirm against"
    first = lock(home)
    assert first["transitions"] == [{"block": 1200000, "blockPeriodSeconds": 5}]
    head = refs(home)
    for entries, what in ((["{block: 1200000, blockPeriodSeconds: 6}"], "config.transitions: block 1200000 changed "
                           "(blockperiodseconds 5 -> 6; a node past it would fork)"),
                          ([], "config.transitions: block 1200000 removed (a node past it would fork)")):
        add_transitions(envs_dir / "staging.yaml", *entries)
        refused = compile_env(run_cli, home, envs_dir, "--confirm-transitions", "staging")
        assert refused.code == 1 and what in refused.err and "--allow-genesis-change staging" in refused.err
        assert refs(home) == head
    # An added transition beside a changed one does not hide the change.
    add_transitions(envs_dir / "staging.yaml", "{block: 1200000, blockPeriodSeconds: 6}", "{block: 1300000, blockPeriodSeconds: 7}")
    refused = compile_env(run_cli, home, envs_dir, "--confirm-transitions", "staging")
    assert refused.code == 1 and "block 1200000 changed" in refused.err and "block 1300000 added" in refused.err
    # The operator's explicit decision: the chain goes on (same block hash), so the changed
    # and the new block still need their confirmation.
    unconfirmed = compile_env(run_cli, home, envs_dir, "--allow-genesis-change", "staging")
    assert unconfirmed.code == 1 and "the transitions at blocks 1200000, 1300000 take effect" in unconfirmed.err
    allowed = compile_env(run_cli, home, envs_dir, "--allow-genesis-change", "staging", "--confirm-transitions", "staging")
    assert allowed.code == 0, allowed.err
    after = lock(home)
    assert after["genesisHash"] == first["genesisHash"]
    assert [t["block"] for t in after["transitions"]] == [1200000, 1300000]
    assert "GENESIS CHANGED" in git(home / "gitops.git", "log", "-1", "--format=%B")


def test_ibft2_transition_is_written_under_ibft2(run_cli, envs_dir, tmp_path):
    home = tmp_path / "home"
    edit(envs_dir / "staging.yaml", "consensus: qbft", "consensus: ibft2")
    assert compile_env(run_cli, home, envs_dir).code == 0
    add_transitions(envs_dir / "staging.yaml", "{block: 500000, blockPeriodSeconds: 4}")
    result = compile_env(run_cli, home, envs_dir, "--confirm-transitions", "staging")
    assert result.code == 0, result.err
    genesis = json.loads(committed(home, "rendered/staging/genesis.json"))
    assert genesis["config"]["transitions"] == {"ibft2": [{"block": 500000, "blockperiodseconds": 4}]}
    assert lock(home)["genesisHash"] == genesis_lib.genesis_block_hash(genesis)


# -- the chain head from a JSON-RPC node -----------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rpc(url: str, method: str, params: list | None = None):
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        answer = json.loads(response.read())
    return answer.get("result")  # None also for an error ("transaction indexing is in progress")


class StubNode(ThreadingHTTPServer):
    """Answers eth_chainId, eth_blockNumber, eth_getCode and eth_sendTransaction the way the
    Ethereum JSON-RPC spec documents them (only when no geth binary is built)."""

    def __init__(self):
        self.head, self.code = 0, {}

        class Handler(BaseHTTPRequestHandler):
            def do_POST(handler):  # noqa: N802
                request = json.loads(handler.rfile.read(int(handler.headers["Content-Length"])))
                method, params = request["method"], request.get("params") or []
                if method == "eth_chainId":
                    result = hex(DEV_CHAIN_ID)
                elif method == "eth_blockNumber":
                    result = hex(self.head)
                elif method == "eth_getCode":
                    result = self.code.get(params[0].lower(), "0x")
                else:
                    self.head += 1
                    result = "0x" + "00" * 32
                body = json.dumps({"jsonrpc": "2.0", "id": request["id"], "result": result}).encode()
                handler.send_response(200)
                handler.send_header("Content-Type", "application/json")
                handler.send_header("Content-Length", str(len(body)))
                handler.end_headers()
                handler.wfile.write(body)

            def log_message(handler, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)


@dataclasses.dataclass
class Node:
    url: str
    kind: str
    stub: StubNode | None = None

    def head(self) -> int:
        return int(_rpc(self.url, "eth_blockNumber"), 16)

    def mine(self, blocks: int) -> None:
        """geth --dev with --dev.period 0 seals a block per transaction: the head moves only here."""
        for _ in range(blocks):
            self.deploy()

    def deploy(self) -> str:
        """A contract whose runtime code is one STOP byte; its address."""
        if self.stub is not None:
            address = "0x" + f"{0x7700 + self.stub.head:040x}"
            self.stub.code[address] = "0x00"
            self.stub.head += 1
            return address
        sender = _rpc(self.url, "eth_accounts")[0]
        start = self.head()
        tx = _rpc(self.url, "eth_sendTransaction", [{"from": sender, "data": "0x6001600c60003960016000f300", "gas": "0x30000"}])
        deadline = time.monotonic() + 20
        while (receipt := _rpc(self.url, "eth_getTransactionReceipt", [tx])) is None:
            assert time.monotonic() < deadline, "geth --dev sealed no block"
            time.sleep(0.1)
        assert self.head() > start
        return receipt["contractAddress"]


@pytest.fixture(scope="module")
def node(tmp_path_factory) -> Iterator[Node]:
    if GETH.is_file():
        port = _free_port()
        datadir = tmp_path_factory.mktemp("geth-dev")
        log = open(datadir / "geth.log", "wb")  # noqa: SIM115 - closed below
        process = subprocess.Popen(
            [str(GETH), "--dev", "--datadir", str(datadir), "--http", "--http.addr", "127.0.0.1", "--http.port", str(port),
             "--http.api", "eth", "--port", "0", "--nodiscover", "--maxpeers", "0", "--ipcdisable", "--authrpc.port", "0"],
            stdout=log, stderr=subprocess.STDOUT, preexec_fn=prepare_child,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    _rpc(url, "eth_blockNumber")
                    break
                except OSError:
                    assert process.poll() is None and time.monotonic() < deadline, (datadir / "geth.log").read_text()[-2000:]
                    time.sleep(0.2)
            yield Node(url, "geth")
        finally:
            stop(process, grace=10)
            log.close()
            shutil.rmtree(datadir, ignore_errors=True)
    else:
        stub = StubNode()
        thread = threading.Thread(target=stub.serve_forever, daemon=True)
        thread.start()
        try:
            yield Node(f"http://127.0.0.1:{stub.server_address[1]}", "stub", stub)
        finally:
            stub.shutdown()
            stub.server_close()


@pytest.mark.slow  # boots geth --dev
def test_the_head_of_a_live_node_decides_without_a_flag(run_cli, envs_dir, tmp_path, node):
    """At or below head + 10 is refused, saying the head; above it is published without
    --confirm-transitions. Credentials in the URL are used, never printed."""
    home = tmp_path / "home"
    path = envs_dir / "staging.yaml"
    edit(path, "chainId: 48720", f"chainId: {DEV_CHAIN_ID}")
    assert compile_env(run_cli, home, envs_dir).code == 0
    node.mine(2)
    head = node.head()
    assert head >= 2
    port = node.url.rsplit(":", 1)[1]
    secret_url = f"http://operator:s3cr3t-pw@127.0.0.1:{port}/?apikey=api-key-123"
    add_transitions(path, f"{{block: {head + 10}, blockPeriodSeconds: 5}}", rpc_url=secret_url)
    before = refs(home)
    refused = compile_env(run_cli, home, envs_dir)
    assert refused.code == 1, refused.err
    assert (f"network.transitions: block {head + 10} is at or below the chain head {head} of http://127.0.0.1:{port} "
            "+ 10 blocks (safety margin)") in refused.err
    assert f"Pick a block above {head + 10}" in refused.err
    confirmed = compile_env(run_cli, home, envs_dir, "--confirm-transitions", "staging")
    assert confirmed.code == 1 and "at or below the chain head" in confirmed.err, "the node's head outranks the flag"
    assert refs(home) == before
    for output in (refused.out + refused.err, confirmed.out + confirmed.err):
        assert "s3cr3t-pw" not in output and "operator" not in output and "api-key-123" not in output

    add_transitions(path, f"{{block: {head + 11}, blockPeriodSeconds: 5}}", rpc_url=secret_url)
    result = compile_env(run_cli, home, envs_dir)
    assert result.code == 0, result.err
    assert lock(home)["transitions"] == [{"block": head + 11, "blockPeriodSeconds": 5}]
    assert "s3cr3t-pw" not in result.out + result.err
    assert "s3cr3t-pw" not in committed(home, "rendered/staging/genesis.json") + committed(home, "rendered/staging/network.lock.json")


@pytest.mark.slow  # boots geth --dev
def test_a_node_of_another_chain_an_unreachable_node_and_a_missing_contract(run_cli, envs_dir, tmp_path, node):
    home = tmp_path / "home"
    path = envs_dir / "staging.yaml"
    assert compile_env(run_cli, home, envs_dir).code == 0
    add_transitions(path, "{block: 900000000, blockPeriodSeconds: 5}", rpc_url=node.url)
    other = compile_env(run_cli, home, envs_dir, "--confirm-transitions", "staging")
    assert other.code == 1 and f"network.rpcUrl: {node.url} follows chain {DEV_CHAIN_ID}, not 48720" in other.err

    closed = f"http://127.0.0.1:{_free_port()}"
    add_transitions(path, "{block: 900000000, blockPeriodSeconds: 5}", rpc_url=closed)
    unreachable = compile_env(run_cli, home, envs_dir)
    assert unreachable.code == 2, unreachable.err
    assert f"network.rpcUrl: {closed} did not answer eth_chainId" in unreachable.err
    assert "--confirm-transitions staging" in unreachable.err
    assert commit_count(home / "gitops.git") == 1
    assert compile_env(run_cli, home, envs_dir, "--confirm-transitions", "staging").code == 0, "the operator confirmed"

    edit(path, "chainId: 48720", f"chainId: {DEV_CHAIN_ID}")
    fresh = tmp_path / "fresh"
    add_transitions(path)
    assert compile_env(run_cli, fresh, envs_dir).code == 0
    empty = "0x000000000000000000000000000000000000dEaD"
    add_transitions(path, f'{{block: 900000000, validatorSelection: contract, validatorContractAddress: "{empty}"}}', rpc_url=node.url)
    missing = compile_env(run_cli, fresh, envs_dir)
    assert missing.code == 1 and f"has no contract at {empty} (eth_getCode is empty)" in missing.err
    deployed = node.deploy()
    add_transitions(path, f'{{block: 900000000, validatorSelection: contract, validatorContractAddress: "{deployed}"}}', rpc_url=node.url)
    result = compile_env(run_cli, fresh, envs_dir)
    assert result.code == 0, result.err
    genesis = json.loads(committed(fresh, "rendered/staging/genesis.json"))
    assert genesis["config"]["transitions"]["qbft"] == [
        {"block": 900000000, "validatorselectionmode": "contract", "validatorcontractaddress": deployed.lower()}
    ]
    assert "validator selection block header votes -> contract" in git(fresh / "gitops.git", "log", "-1", "--format=%B")


# -- through Dagster -------------------------------------------------------------------------------
def test_dagster_publishes_a_transition_with_the_run_tag(envs_dir, tmp_path):
    from pipelines.defs.resources import ChainopsResource
    from tests.dagster_helpers import ASSETS, CHECKS

    home = tmp_path / "home"
    resource = ChainopsResource(environments_dir=str(envs_dir), home=str(home), charts_dir=str(REPO_ROOT / "chart_sources"))
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("environments", ["staging"])

        def materialize(tags=None):
            return dg.materialize([*ASSETS, *CHECKS], partition_key="staging", instance=instance,
                                  resources={"chainops": resource}, tags=tags, raise_on_error=False)

        assert materialize().success
        before = lock(home)
        add_transitions(envs_dir / "staging.yaml", "{block: 1200000, blockPeriodSeconds: 5}")
        refused = materialize()
        assert not refused.success
        failure = next(e for e in refused.all_events if e.event_type_value == "STEP_FAILURE")
        text = failure.event_specific_data.error.message
        assert "the run tag chainops/confirm-transitions=true" in text and "--confirm-transitions" not in text
        assert refused.asset_materializations_for_node("gitops_commit") == []
        assert commit_count(home / "gitops.git") == 1
        result = materialize({"chainops/confirm-transitions": "true"})
        assert result.success
        assert commit_count(home / "gitops.git") == 2
        after = lock(home)
        assert after["genesisHash"] == before["genesisHash"] and after["transitions"][0]["block"] == 1200000
        checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
        assert checks["genesis_lock"] is True
        metadata = result.asset_materializations_for_node("gitops_commit")[0].metadata
        assert metadata["genesis_changed"].value is False
        assert "### Consensus transitions" in metadata["summary"].value
        assert "consensus transition at block 1200000" in metadata["headline"].value


# -- the worked example ------------------------------------------------------------------------------
def test_the_documented_example_is_a_valid_environment(run_cli):
    config = load_environment(EXAMPLE)
    assert config.profile.name == "besu-qbft"
    assert [t.block for t in config.spec.network.transitions] == [1_200_000, 2_400_000]
    readme = (REPO_ROOT / "README.md").read_text()
    assert "## Consensus transitions" in readme and "docs/examples/besu-transitions.yaml" in readme
    result = run_cli("validate", "--environments", EXAMPLE.parent)  # a dry compile too; nothing is written
    assert result.code == 0, result.err
    assert "besu-transitions: ok (besu-qbft; compiles)" in result.out
