"""`chainops smoke`: the committed manifests boot on the real geth binaries, pods as sandboxes.

Real clients: geth and bootnode v1.13.15 built from their Go module (`make test` builds them
once into ~/.cache/chainops, target smoke-bins; CHAINOPS_GETH_DIR points elsewhere). Real isolation: each pod is a
bubblewrap sandbox in a network namespace of its own. Second routes: block 0 as the
running node serves it must be the lock's genesis hash (read here with git), and the
network must have produced blocks and connected its peers. In CI (CHAINOPS_REQUIRE_SMOKE=1)
a missing binary, bwrap or root fails the suite instead of skipping it.
"""

from __future__ import annotations

import fcntl
import json
import re
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES, git, venv_tool
from tests.process_helpers import alive, descendants
from tests.smoke_helpers import BIN_DIR, ETHASH_BIN_DIR, MISSING

pytestmark = [
    pytest.mark.skipif(bool(MISSING), reason=f"smoke needs {', '.join(MISSING)}"),
    pytest.mark.xdist_group("smoke"),  # one worker: the namespace checks see only their own runs
]

CLIQUE = """\
apiVersion: chainops/v1
network: {{chainId: {chain_id}, client: geth, consensus: clique, blockPeriodSeconds: 2}}
nodes: {{validators: {validators}, rpc: 1, bootnodes: {bootnodes}}}
kubernetes: {{namespace: chain-{chain_id}}}
"""
BINS = ("--bin", f"geth={BIN_DIR / 'geth'}", "--bin", f"bootnode={BIN_DIR / 'bootnode'}")


def smoke_namespaces() -> list[str]:
    return [line.split()[0] for line in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.splitlines()
            if line.startswith("chainops-smoke-")]


@pytest.fixture(autouse=True)
def no_namespace_left_behind():
    """One smoke test at a time on this machine, whichever worker runs it (an exclusive file
    lock), so each test sees only its own namespaces and processes; and every test leaves
    the namespaces as it found them."""
    with open(Path(tempfile.gettempdir()) / "chainops-smoke-tests.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        before = set(smoke_namespaces())
        yield
        assert set(smoke_namespaces()) - before == set(), "smoke left network namespaces behind"


@pytest.fixture
def site(workspace_dirs, run_cli):
    envs, remote, tmp_path, where = workspace_dirs.envs, workspace_dirs.remote, workspace_dirs.tmp, workspace_dirs.where

    def publish(name: str, text: str) -> None:
        (envs / f"{name}.yaml").write_text(text)
        assert run_cli("compile", name, *where).code == 0

    def smoke(name: str, *extra):
        return run_cli("smoke", name, *where, "--seconds", "120", *extra)

    return {"envs": envs, "remote": remote, "publish": publish, "smoke": smoke, "tmp": tmp_path, "where": where}


def summary_of(output: str) -> dict[str, str]:
    line = next(ln for ln in output.splitlines() if ln.startswith("smoke: "))
    found = re.match(r"smoke: (\S+)  (\d+)/(\d+) pods ready, (\d+)/(\d+) peered, (\d+) blocks(?:, signers (\d+)/(\d+))?, (.+)$", line)
    assert found, line
    keys = ("env", "ready", "pods", "peered", "clients", "blocks", "signed", "signers", "tx")
    return dict(zip(keys, found.groups()))


NETWORKS = {
    "three-signers-bootnode-account": CLIQUE.format(chain_id=4501, validators=3, bootnodes=1) + "accounts: [{name: faucet, balance: 10 ether}]\n",
    "two-signers-static-peers": CLIQUE.format(chain_id=4502, validators=2, bootnodes=0),
}


@pytest.mark.parametrize("network", [*NETWORKS, "dev-example"])
def test_a_clique_network_boots_peers_seals_and_mines_a_transaction(site, network):
    text = (EXAMPLES / "dev.yaml").read_text() if network == "dev-example" else NETWORKS[network]
    site["publish"]("net", text)
    before = git(site["remote"], "for-each-ref")
    result = site["smoke"]("net", *BINS)
    assert result.code == 0, (result.out, result.err[-3000:])
    lock = json.loads(git(site["remote"], "show", "main:rendered/net/network.lock.json"))
    summary = summary_of(result.out)
    nodes = {n["name"] for n in lock["nodes"]}
    assert summary["ready"] == summary["pods"] == str(len(nodes)), "every locked node ran as a pod"
    assert summary["peered"] == summary["clients"] == str(len([n for n in nodes if not n.startswith("bootnode-")]))
    assert int(summary["blocks"]) >= 3
    assert summary["signed"] == summary["signers"] == str(len(lock["validators"])), "each signer sealed a block"
    assert summary["tx"] == ("tx mined" if lock["accounts"] and any(a.get("secret") for a in lock["accounts"]) else "no generated account")
    assert f"genesis {lock['genesisHash']} (locked {lock['genesisHash']})" in result.out
    assert git(site["remote"], "for-each-ref") == before, "smoke writes nothing"


def test_the_seed_example_boots_and_peers_through_its_bootnode_on_geth_1_11(site):
    """geth-ethash: boot, the locked genesis, peering through the bootnode; mining needs a
    1 GiB DAG per miner first, so blocks are reported, not required; the ethstats dashboard
    (a container image only) is named as not run."""
    site["publish"]("net", (EXAMPLES / "seed.yaml").read_text())
    bins = ("--bin", f"geth={ETHASH_BIN_DIR / 'geth'}", "--bin", f"bootnode={ETHASH_BIN_DIR / 'bootnode'}")
    result = site["smoke"]("net", *bins)
    assert result.code == 0, (result.out, result.err[-3000:])
    lock = json.loads(git(site["remote"], "show", "main:rendered/net/network.lock.json"))
    summary = summary_of(result.out)
    clients = [n["name"] for n in lock["nodes"] if not n["name"].startswith("bootnode-")]
    assert summary["ready"] == summary["pods"] == str(len(lock["nodes"]))
    assert summary["peered"] == summary["clients"] == str(len(clients)), "every node found peers through the bootnode"
    assert f"genesis {lock['genesisHash']} (locked {lock['genesisHash']})" in result.out
    assert re.search(r"^  pod ethstats-0: not run \(the ethstats dashboard ships only as a container image\)", result.out, re.M)


def hand_edit(site: dict, path: str, old: str, new: str) -> None:
    """An operator changes a committed manifest (what a bad chart change would render)."""
    work = site["tmp"] / f"op-{len(list(site['tmp'].glob('op-*')))}"
    subprocess.run(["git", "clone", "-q", "-b", "main", str(site["remote"]), str(work)], check=True)
    target = work / path
    text = target.read_text()
    assert old in text, (old, text[:2000])
    target.write_text(text.replace(old, new, 1))
    subprocess.run(["git", "-C", str(work), "-c", "user.name=op", "-c", "user.email=op@x", "commit", "-qam", "hand edit"], check=True)
    subprocess.run(["git", "-C", str(work), "push", "-q", "origin", "main"], check=True)


def test_a_flag_the_client_rejects_fails_the_smoke_with_its_log(site):
    site["publish"]("net", CLIQUE.format(chain_id=4510, validators=1, bootnodes=0))
    hand_edit(site, "rendered/net/geth-node/statefulset-rpc.yaml", "- --syncmode=full", "- --syncmode=full\n        - --no-such-flag")
    result = site["smoke"]("net", *BINS)
    assert result.code == 1 and "net: FAILED" in result.err
    assert re.search(r"^  pod rpc-0: exited", result.out, re.M), result.out
    assert "flag provided but not defined: -no-such-flag" in result.err


def test_a_key_path_that_does_not_match_the_projected_volume_fails(site):
    site["publish"]("net", CLIQUE.format(chain_id=4511, validators=1, bootnodes=0))
    hand_edit(site, "rendered/net/geth-node/statefulset-rpc.yaml", "--nodekey=/keys/$(POD_NAME)/nodekey", "--nodekey=/keys/$(POD_NAME)/node.key")
    result = site["smoke"]("net", *BINS)
    assert result.code == 1 and re.search(r"^  pod rpc-0: exited", result.out, re.M), result.out
    assert "node.key" in result.err and "no such file or directory" in result.err.lower()


def test_a_static_peer_that_never_connects_fails(site):
    site["publish"]("net", CLIQUE.format(chain_id=4512, validators=2, bootnodes=0))
    from eth_keys import keys

    ghost = keys.PrivateKey(b"\x07" * 32).public_key.to_hex()[2:]  # a valid node key no pod holds
    hand_edit(site, "rendered/net/geth-node/configmap-geth-config.yaml", 'StaticNodes = ["', f'StaticNodes = ["enode://{ghost}@10.233.9.9:30303", "')
    result = site["smoke"]("net", *BINS, "--seconds", "25")
    assert result.code == 1, result.out
    summary = summary_of(result.out)
    assert summary["peered"] == "0" and f"not peered with {ghost[:12]}" in result.out


def test_a_binary_of_another_version_is_refused_and_says_which_one_is_needed(site):
    site["publish"]("net", CLIQUE.format(chain_id=4520, validators=1, bootnodes=0))
    fake = site["tmp"] / "geth"
    fake.write_text("#!/bin/sh\necho 'Geth'\necho 'Version: 1.14.0-stable'\n")
    fake.chmod(0o755)
    result = site["smoke"]("net", "--bin", f"geth={fake}")
    assert result.code == 2 and f"{fake} is geth 1.14.0, the image runs 1.13.15" in result.err
    assert "Traceback" not in result.err


def test_besu_is_refused_by_name_not_pretended(site):
    site["publish"]("qbft", "apiVersion: chainops/v1\nnetwork: {chainId: 4530, client: besu, consensus: qbft}\n"
                    "nodes: {validators: 1, rpc: 1}\nkubernetes: {namespace: chain-4530}\n")
    result = site["smoke"]("qbft", *BINS)
    assert result.code == 2 and "hyperledger/besu" in result.err and "no registry here serves" in result.err


def test_sigterm_mid_smoke_tears_down_every_namespace_and_process(site):
    site["publish"]("net", CLIQUE.format(chain_id=4540, validators=1, bootnodes=0))
    command = [venv_tool("chainops"), "smoke", "net", *map(str, site["where"]), "--seconds", "120", *BINS]
    started = set(smoke_namespaces())
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(set(smoke_namespaces()) - started) < 2:
        time.sleep(0.2)
    assert len(set(smoke_namespaces()) - started) >= 2, "the pods' namespaces exist while smoke runs"
    time.sleep(2)  # the pods are running now
    pod_processes = descendants(proc.pid)
    assert pod_processes, "smoke runs its pods as child processes"
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert not [n for n in smoke_namespaces() if n not in started], "SIGTERM removed the namespaces"
    time.sleep(1)
    outlived = [pid for pid in pod_processes if alive(pid)]
    assert outlived == [], f"processes outlived smoke: {outlived}"


def test_a_sigkilled_smoke_leaves_no_process_and_the_next_run_removes_its_namespaces(site):
    """SIGKILL reaches no handler: the pods die with their parent (parent-death signal,
    bwrap --die-with-parent), and the next smoke deletes the namespaces of runs whose
    process is gone."""
    site["publish"]("net", CLIQUE.format(chain_id=4550, validators=1, bootnodes=0))
    command = [venv_tool("chainops"), "smoke", "net", *map(str, site["where"]), "--seconds", "120", *BINS]
    started = set(smoke_namespaces())
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(set(smoke_namespaces()) - started) < 3:
        time.sleep(0.2)
    time.sleep(2)
    pod_processes = descendants(proc.pid)
    assert pod_processes, "smoke runs its pods as child processes"
    proc.kill()
    proc.wait()
    left = set(smoke_namespaces()) - started
    assert left and all(name.startswith(f"chainops-smoke-{proc.pid}-") for name in left), "the killed run's namespaces stay"
    time.sleep(2)
    assert [pid for pid in pod_processes if alive(pid)] == [], "its pods died with it"
    again = site["smoke"]("net", *BINS)
    assert again.code == 0, again.out
    assert not left & set(smoke_namespaces()), "the next run removed them"
