"""`chainops smoke`: the committed manifests boot on the real geth binaries, pods as sandboxes.

Real clients: geth and bootnode v1.13.15 built from their Go module (`.ci/run` builds them
into .cache/go/bin; CHAINOPS_GETH_DIR points elsewhere). Real isolation: each pod is a
bubblewrap sandbox in a network namespace of its own. Second routes: block 0 as the
running node serves it must be the lock's genesis hash (read here with git), and the
network must have produced blocks and connected its peers. In CI (CHAINOPS_REQUIRE_SMOKE=1)
a missing binary, bwrap or root fails the suite instead of skipping it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, git, venv_tool

BIN_DIR = Path(os.environ.get("CHAINOPS_GETH_DIR") or REPO_ROOT / ".cache" / "go" / "bin")
REQUIRED = os.environ.get("CHAINOPS_REQUIRE_SMOKE") == "1"
MISSING = [what for what, ok in (
    ("geth", (BIN_DIR / "geth").is_file()),
    ("bootnode", (BIN_DIR / "bootnode").is_file()),
    ("bwrap", subprocess.run(["sh", "-c", "command -v bwrap"], capture_output=True).returncode == 0),
    ("root", os.geteuid() == 0),
) if not ok]
if MISSING and REQUIRED:
    raise RuntimeError(f"smoke tests required but missing: {', '.join(MISSING)}")
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


@pytest.fixture
def site(tmp_path: Path, run_cli, monkeypatch):
    monkeypatch.delenv("CHAINOPS_CLUSTER_REPO_URL", raising=False)
    envs = tmp_path / "environments"
    envs.mkdir()
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", "--initial-branch=main", str(remote)], check=True)
    where = ("--home", tmp_path / "home", "--environments", envs, "--repo", remote)

    def publish(name: str, text: str) -> None:
        (envs / f"{name}.yaml").write_text(text)
        assert run_cli("compile", name, *where).code == 0

    def smoke(name: str, *extra):
        return run_cli("smoke", name, *where, "--seconds", "120", *extra)

    return {"envs": envs, "remote": remote, "publish": publish, "smoke": smoke, "tmp": tmp_path, "where": where}


@pytest.mark.parametrize(
    ("validators", "bootnodes", "peering"),
    [(2, 0, "static peers"), (1, 1, "bootnode discovery")],
    ids=["two-signers-static-peers", "bootnode-discovery"],
)
def test_a_clique_network_boots_makes_blocks_and_serves_the_locked_genesis(site, validators, bootnodes, peering):
    site["publish"]("net", CLIQUE.format(chain_id=4500 + bootnodes, validators=validators, bootnodes=bootnodes))
    before = git(site["remote"], "for-each-ref")
    result = site["smoke"]("net", *BINS)
    assert result.code == 0, (result.out, result.err)
    lock = json.loads(git(site["remote"], "show", "main:rendered/net/network.lock.json"))
    assert f"net: genesis {lock['genesisHash']} (locked {lock['genesisHash']})" in result.out
    pods = dict(re.findall(r"^net: pod (\S+): (\w+)", result.out, re.M))
    expected = {f"validator-{i}" for i in range(validators)} | {"rpc-0"} | {f"bootnode-{i}" for i in range(bootnodes)}
    assert set(pods) == expected and set(pods.values()) == {"ready"}
    assert int(re.search(r"^net: block (\d+)", result.out, re.M)[1]) >= 1, "the signers sealed blocks"
    assert int(re.search(r"pod rpc-0: ready\s+peers (\d+)", result.out)[1]) >= validators, f"{peering} connected the RPC node"
    assert git(site["remote"], "for-each-ref") == before, "smoke writes nothing"
    assert smoke_namespaces() == []


def test_a_flag_the_client_rejects_fails_the_smoke_with_its_log(site):
    site["publish"]("net", CLIQUE.format(chain_id=4510, validators=1, bootnodes=0))
    work = site["tmp"] / "op"
    subprocess.run(["git", "clone", "-q", "-b", "main", str(site["remote"]), str(work)], check=True)
    path = work / "rendered/net/geth-node/statefulset-rpc.yaml"
    path.write_text(path.read_text().replace("- --syncmode=full", "- --syncmode=full\n        - --no-such-flag", 1))
    subprocess.run(["git", "-C", str(work), "-c", "user.name=op", "-c", "user.email=op@x", "commit", "-qam", "bad flag"], check=True)
    subprocess.run(["git", "-C", str(work), "push", "-q", "origin", "main"], check=True)
    result = site["smoke"]("net", *BINS)
    assert result.code == 1 and "FAILED" in result.out
    assert re.search(r"^net: pod rpc-0: exited", result.out, re.M), result.out
    assert "flag provided but not defined: -no-such-flag" in result.err
    assert smoke_namespaces() == []


def test_a_binary_of_another_version_is_refused_and_says_which_one_is_needed(site):
    site["publish"]("net", CLIQUE.format(chain_id=4520, validators=1, bootnodes=0))
    fake = site["tmp"] / "geth"
    fake.write_text("#!/bin/sh\necho 'Geth'\necho 'Version: 1.14.0-stable'\n")
    fake.chmod(0o755)
    result = site["smoke"]("net", "--bin", f"geth={fake}")
    assert result.code == 2 and f"{fake} is geth 1.14.0, the image runs 1.13.15" in result.err
    assert "Traceback" not in result.err and smoke_namespaces() == []


def test_besu_is_refused_by_name_not_pretended(site):
    site["publish"]("qbft", "apiVersion: chainops/v1\nnetwork: {chainId: 4530, client: besu, consensus: qbft}\n"
                    "nodes: {validators: 1, rpc: 1}\nkubernetes: {namespace: chain-4530}\n")
    result = site["smoke"]("qbft", *BINS)
    assert result.code == 2 and "hyperledger/besu" in result.err and "no registry here serves" in result.err


def test_sigterm_mid_smoke_tears_down_every_namespace_and_process(site):
    site["publish"]("net", CLIQUE.format(chain_id=4540, validators=1, bootnodes=0))
    command = [venv_tool("chainops"), "smoke", "net", *map(str, site["where"]), "--seconds", "120", *BINS]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(smoke_namespaces()) < 2:
        time.sleep(0.2)
    assert len(smoke_namespaces()) >= 2, "the pods' namespaces exist while smoke runs"
    time.sleep(2)  # the pods are running now
    geths = subprocess.run(["pgrep", "-f", str(BIN_DIR / "geth")], capture_output=True, text=True).stdout.split()
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert smoke_namespaces() == []
    time.sleep(1)
    alive = [pid for pid in geths if running(pid)]
    assert alive == [], f"processes outlived smoke: {alive}"


def running(pid: str) -> bool:
    """Alive and not a zombie (an exited child the container's init has not reaped yet)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
