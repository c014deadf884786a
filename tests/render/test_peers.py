"""Day-2 peering through the CLI: external peers, per-pod p2p exposure, Besu node permissioning.

Everything runs `chainops compile` into a bare remote and reads what was committed. Second
routes: node keys decrypted from the committed Secrets with the sops binary and their public
keys derived with eth-keys' pure-Python backend (chainops uses coincurve); `kubectl
kustomize` builds the directory; the rendered Besu wrapper runs in a sandbox with a stand-in
binary that prints its arguments; geth itself (when built) boots the rendered validator and
connects to an external node started here.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
import tomllib
from pathlib import Path

import dagster as dg
import pytest
import yaml
from eth_keys import KeyAPI
from eth_keys.backends import NativeECCBackend

from pipelines.defs.resources import ChainopsResource
from pipelines.lib.kustomize import kustomize_build
from pipelines.lib.manifests import validator_for
from pipelines.lib.processes import prepare_child
from pipelines.lib.smoke import SYSTEM_DIRS, Pod, container_env, expand, ipc, materialise
from pipelines.lib.yaml_io import load_yaml_all
from tests.conftest import REPO_ROOT, checkout, commit_count, git
from tests.key_helpers import committed_secrets
from tests.process_helpers import stop
from tests.yaml_reader import read_yaml

NATIVE = KeyAPI(NativeECCBackend)


def public_key(seed: bytes) -> str:
    return NATIVE.PrivateKey(hashlib.sha256(seed).digest()).public_key.to_bytes().hex()


EXT_IP = f"enode://{public_key(b'ext-ip')}@203.0.113.9:30303?discport=30301"
EXT_DNS = f"enode://{public_key(b'ext-dns')}@peer.other-cluster.example.com:30304"
HOSTS = {"validator-0": "198.51.100.10", "validator-1": "198.51.100.11", "validator-2": "198.51.100.12",
         "validator-3": "198.51.100.13", "rpc-0": "198.51.100.20", "rpc-1": "198.51.100.21"}


def besu(chain_id: int, *, validators: int = 4, rpc: int = 1, exposure: str = "loadBalancer", peers=(EXT_IP, EXT_DNS),
         permissioning: bool = True, **kubernetes_fields) -> str:
    """A besu-qbft environment; with exposure, each node advertises its HOSTS address unless
    kubernetes_fields say otherwise."""
    kubernetes = {"namespace": f"chain-{chain_id}", "p2pExposure": exposure}
    if exposure != "none" and not kubernetes_fields:
        kubernetes["p2pAdvertisedHosts"] = {
            n: h for n, h in HOSTS.items() if int(n[-1]) < (validators if n.startswith("validator") else rpc)}
    kubernetes.update(kubernetes_fields)
    return yaml.safe_dump({
        "apiVersion": "chainops/v1",
        "network": {"chainId": chain_id, "client": "besu", "consensus": "qbft", "externalPeers": list(peers),
                    "permissioning": {"nodes": permissioning}},
        "nodes": {"validators": validators, "rpc": rpc},
        "kubernetes": kubernetes,
    }, sort_keys=False)


GETH = """\
apiVersion: chainops/v1
network: {{chainId: {chain_id}, client: geth, consensus: clique, blockPeriodSeconds: 2, externalPeers: [{peers}]}}
nodes: {{validators: 1, rpc: 0, bootnodes: 0}}
kubernetes: {{namespace: chain-{chain_id}{kubernetes}}}
"""


@pytest.fixture
def site(workspace_dirs, run_cli):
    ws = workspace_dirs

    def compile_(name: str, text: str | None = None, *flags):
        if text is not None:
            (ws.envs / f"{name}.yaml").write_text(text)
        return run_cli("compile", name, *ws.where, *flags)

    def work(tag: str = "work") -> Path:
        target = ws.tmp / f"{tag}-{len(list(ws.tmp.glob(tag + '-*')))}"
        return checkout(ws.remote, target)

    def show(path: str, rev: str = "main") -> str:
        return git(ws.remote, "show", f"{rev}:{path}")

    return {"ws": ws, "compile": compile_, "work": work, "show": show, "run": run_cli}


def objects_in(directory: Path) -> dict[tuple[str, str], dict]:
    found = {}
    for path in sorted(directory.glob("*/*.yaml")):
        obj = read_yaml(path.read_text())
        found[(obj["kind"], obj["metadata"]["name"])] = obj
    return found


def node_public_keys(work: Path, env: str, identity: Path) -> dict[str, str]:
    """Node name -> public key, from the private key in its committed Secret (sops, eth-keys)."""
    secrets = committed_secrets(work, env, identity)
    return {name.removesuffix("-keys"): NATIVE.PrivateKey(bytes.fromhex(data["nodekey"])).public_key.to_bytes().hex()
            for name, data in secrets.items() if "nodekey" in data}


def enode_id(url: str) -> str:
    return url.removeprefix("enode://").split("@", 1)[0]


def allowlist_of(objects: dict) -> list[str]:
    return tomllib.loads(objects[("ConfigMap", "besu-permissions")]["data"]["permissions_config.toml"])["nodes-allowlist"]


def sandbox_root() -> list[str]:
    """bubblewrap arguments for an empty root with the host's system directories read-only
    (as smoke builds a pod's), so the pod's mount paths can be created in it."""
    args: list[str] = []
    for system in SYSTEM_DIRS:
        if Path(system).is_symlink():
            args += ["--symlink", os.readlink(system), system]
        elif Path(system).is_dir():
            args += ["--ro-bind", system, system]
    return [*args, "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]


def selects(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


# -- besu: external peers, load balancers, the allowlist -----------------------------------------
def test_besu_external_peers_exposure_and_allowlist(site):
    result = site["compile"]("multi", besu(7301))
    assert result.code == 0, result.err
    work = site["work"]()
    base = work / "rendered" / "multi"
    objects = objects_in(base)
    validator = validator_for()
    assert [str(p) for obj in objects.values() for p in validator.validate(obj, "test")] == []
    built = load_yaml_all(kustomize_build(base))
    assert sorted((o["kind"], o["metadata"]["name"]) for o in built) == sorted(objects)

    lock = json.loads((base / "network.lock.json").read_text())
    keys = node_public_keys(work, "multi", site["ws"].home / "age" / "identity.txt")
    nodes = {n["name"]: n for n in lock["nodes"]}
    assert set(keys) == set(nodes) == {"validator-0", "validator-1", "validator-2", "validator-3", "rpc-0"}
    # The lock's enodes: the key of the node's own Secret at the address it advertises.
    for name, node in nodes.items():
        assert node["enode"] == f"enode://{keys[name]}@{HOSTS[name]}:30303"
    internal = {name: f"enode://{keys[name]}@{name}.{nodes[name]['role']}.chain-7301.svc.cluster.local:30303" for name in nodes}

    # Static peers and bootnodes: the validators by pod DNS name, then the external peers as given.
    config = objects[("ConfigMap", "besu-config")]["data"]
    static = json.loads(config["static-nodes.json"])
    assert static == [internal[f"validator-{i}"] for i in range(4)] + [EXT_IP, EXT_DNS]
    assert tomllib.loads(config["config.toml"])["bootnodes"] == static
    assert tomllib.loads(config["config.toml"])["nat-method"] == "NONE"

    # The allowlist: exactly every lock enode, the pod DNS enode of each (exposed) node, the external peers.
    allowlist = allowlist_of(objects)
    assert allowlist == sorted(allowlist)
    assert set(allowlist) == {n["enode"] for n in lock["nodes"]} | set(internal.values()) | {EXT_IP, EXT_DNS}
    assert {enode_id(e) for e in allowlist} == set(keys.values()) | {enode_id(EXT_IP), enode_id(EXT_DNS)}

    statefulsets = {name: obj for (kind, name), obj in objects.items() if kind == "StatefulSet"}
    assert set(statefulsets) == {"validator", "rpc"}
    for group, sts in statefulsets.items():
        template = sts["spec"]["template"]
        [container] = template["spec"]["containers"]
        args = container["args"]
        assert "--permissions-nodes-config-file-enabled=true" in args
        assert "--permissions-nodes-config-file=/permissions/permissions_config.toml" in args
        assert not any(a.startswith("--p2p-host") for a in args), "the advertised host comes from the wrapper"
        assert container["command"][:2] == ["/bin/sh", "-ec"] and "--p2p-host=" in container["command"][2]
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in template["spec"]["volumes"]}
        assert mounts["permissions"] == "/permissions" and volumes["permissions"]["configMap"]["name"] == "besu-permissions"
        assert mounts["p2p"] == "/p2p" and volumes["p2p"]["configMap"]["name"] == "p2p-advertised"
        assert not any("subPath" in m for m in container["volumeMounts"]), "a ConfigMap update reaches the running pod"
        # One Service per pod: it selects exactly that pod of the StatefulSet (the controller adds pod-name).
        for index in range(sts["spec"]["replicas"]):
            pod = f"{group}-{index}"
            pod_labels = {**template["metadata"]["labels"], "statefulset.kubernetes.io/pod-name": pod}
            service = objects[("Service", f"{pod}-p2p")]["spec"]
            assert service["type"] == "LoadBalancer" and service["loadBalancerIP"] == HOSTS[pod]
            assert service["selector"]["statefulset.kubernetes.io/pod-name"] == pod and selects(service["selector"], pod_labels)
            others = [f"{g}-{i}" for g, s in statefulsets.items() for i in range(s["spec"]["replicas"]) if f"{g}-{i}" != pod]
            assert not any(selects(service["selector"], {**statefulsets[o.rsplit("-", 1)[0]]["spec"]["template"]["metadata"]["labels"],
                                                          "statefulset.kubernetes.io/pod-name": o}) for o in others)
            assert sorted((p["protocol"], p["port"], p["targetPort"]) for p in service["ports"]) == [
                ("TCP", 30303, "p2p-tcp"), ("UDP", 30303, "p2p-udp")]
    assert objects[("ConfigMap", "p2p-advertised")]["data"] == {n: HOSTS[n] for n in nodes}

    policies = {name: obj["spec"] for (kind, name), obj in objects.items() if kind == "NetworkPolicy"}
    assert policies["allow-p2p-external"]["ingress"] == [{"ports": [{"port": "p2p-tcp", "protocol": "TCP"}, {"port": "p2p-udp", "protocol": "UDP"}]}]
    egress = policies["allow-egress-external-peers"]["egress"]
    assert {"to": [{"ipBlock": {"cidr": "203.0.113.9/32"}}], "ports": [{"port": 30303, "protocol": "TCP"}, {"port": 30301, "protocol": "UDP"}]} in egress
    assert {"ports": [{"port": 30304, "protocol": "TCP"}, {"port": 30304, "protocol": "UDP"}]} in egress


@pytest.mark.skipif(shutil.which("bwrap") is None or os.geteuid() != 0, reason="needs bwrap as root")
def test_the_rendered_besu_wrapper_passes_each_pod_its_advertised_host(site, tmp_path):
    """The exact command line of the pod template, $(VAR) expanded as the kubelet does, run by
    /bin/sh with the p2p-advertised ConfigMap mounted at /p2p; a stand-in prints what Besu gets."""
    assert site["compile"]("multi", besu(7302)).code == 0
    objects = objects_in(site["work"]() / "rendered" / "multi")
    fake = tmp_path / "besu"
    fake.write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    fake.chmod(0o755)
    for group in ("validator", "rpc"):
        sts = objects[("StatefulSet", group)]
        [container] = sts["spec"]["template"]["spec"]["containers"]
        for index in range(sts["spec"]["replicas"]):
            pod = Pod(f"{group}-{index}", sts, index, address="10.1.2.3", root=tmp_path / f"{group}-{index}")
            p2p = tmp_path / "p2p"  # the p2p-advertised ConfigMap as the kubelet projects it: one file per key
            p2p.mkdir(exist_ok=True)
            for key, value in objects[("ConfigMap", "p2p-advertised")]["data"].items():
                (p2p / key).write_text(value)
            env = container_env(container, pod, {}, {})
            argv = [expand(a, env) for a in container["command"] + container["args"]]
            out = subprocess.run(
                ["bwrap", *sandbox_root(), "--ro-bind", str(fake), "/opt/besu/bin/besu",
                 "--ro-bind", str(p2p), "/p2p", "--clearenv", *[x for k, v in env.items() for x in ("--setenv", k, v)],
                 "--", *argv], capture_output=True, text=True, check=True).stdout.splitlines()
            assert out[-1] == f"--p2p-host={HOSTS[pod.name]}" and out.count(f"--p2p-host={HOSTS[pod.name]}") == 1
            assert out[:-1] == [expand(a, env) for a in container["args"]], "the rendered flags reach Besu unchanged"


def test_nodeport_ports_are_fixed_per_node(site):
    def text(validators: int) -> str:
        return besu(7303, exposure="nodePort", validators=validators, rpc=2, permissioning=False,
                    p2pAdvertisedHost="198.51.100.99", p2pNodePortBase=31000)

    assert site["compile"]("np", text(4)).code == 0
    work = site["work"]()
    objects = objects_in(work / "rendered" / "np")
    lock = json.loads((work / "rendered" / "np" / "network.lock.json").read_text())
    expected = {"validator-0": 31000, "validator-1": 31001, "validator-2": 31002, "validator-3": 31003, "rpc-0": 31064, "rpc-1": 31065}
    for node in lock["nodes"]:
        port = expected[node["name"]]
        assert node["enode"].endswith(f"@198.51.100.99:{port}")
        service = objects[("Service", f"{node['name']}-p2p")]["spec"]
        assert service["type"] == "NodePort" and "loadBalancerIP" not in service
        assert {(p["protocol"], p["nodePort"], p["port"]) for p in service["ports"]} == {("TCP", port, 30303), ("UDP", port, 30303)}
        assert 30000 <= port <= 32767
    assert ("ConfigMap", "besu-permissions") not in objects
    # One more validator: a new port for it, none moves.
    assert site["compile"]("np", text(5)).code == 0
    after = {n["name"]: n["enode"] for n in json.loads(site["show"]("rendered/np/network.lock.json"))["nodes"]}
    assert after.pop("validator-4").endswith(":31004")
    assert after == {n["name"]: n["enode"] for n in lock["nodes"]}


def test_changing_exposure_changes_the_lock_enodes_not_keys_or_genesis(site):
    assert site["compile"]("flip", besu(7304, exposure="none", permissioning=True)).code == 0
    before = json.loads(site["show"]("rendered/flip/network.lock.json"))
    genesis = site["show"]("rendered/flip/genesis.json")
    assert all(".svc.cluster.local:30303" in n["enode"] for n in before["nodes"])
    result = site["compile"]("flip", besu(7304))  # loadBalancer: no --allow-genesis-change needed
    assert result.code == 0, result.err
    after = json.loads(site["show"]("rendered/flip/network.lock.json"))
    assert after["genesisHash"] == before["genesisHash"] and site["show"]("rendered/flip/genesis.json") == genesis
    assert [(n["name"], n["address"], enode_id(n["enode"])) for n in after["nodes"]] == [
        (n["name"], n["address"], enode_id(n["enode"])) for n in before["nodes"]]
    assert [n["enode"].split("@")[1] for n in after["nodes"]] == [f"{HOSTS[n['name']]}:30303" for n in after["nodes"]]
    assert {k: v for k, v in after.items() if k != "nodes"} == {k: v for k, v in before.items() if k != "nodes"}
    changed = git(site["ws"].remote, "diff", "--name-only", "main~1", "main").split()
    assert "rendered/flip/network.lock.json" in changed
    assert not [p for p in changed if p.endswith(("genesis.json", ".age")) or "/secret-" in p], changed
    # The allowlist now lists every node by both of its addresses.
    allowlist = allowlist_of(objects_in(site["work"]() / "rendered" / "flip"))
    assert {n["enode"] for n in before["nodes"] + after["nodes"]} | {EXT_IP, EXT_DNS} == set(allowlist)


def test_adding_a_node_changes_every_nodes_allowlist_in_one_commit(site):
    assert site["compile"]("grow", besu(7305, exposure="none")).code == 0
    remote = site["ws"].remote
    first = set(allowlist_of(objects_in(site["work"]() / "rendered" / "grow")))
    commits = commit_count(remote)

    result = site["compile"]("grow", besu(7305, exposure="none", rpc=2))
    assert result.code == 0, result.err
    assert commit_count(remote) == commits + 1, "one commit"
    work = site["work"]()
    objects = objects_in(work / "rendered" / "grow")
    lock = json.loads((work / "rendered" / "grow" / "network.lock.json").read_text())
    keys = node_public_keys(work, "grow", site["ws"].home / "age" / "identity.txt")
    added = f"enode://{keys['rpc-1']}@rpc-1.rpc.chain-7305.svc.cluster.local:30303"
    assert set(allowlist_of(objects)) == first | {added} == {n["enode"] for n in lock["nodes"]} | {EXT_IP, EXT_DNS}
    # Every node reads the one ConfigMap this commit changed.
    assert "rendered/grow/besu-node/configmap-besu-permissions.yaml" in git(remote, "diff", "--name-only", "main~1", "main").split()
    for group in ("validator", "rpc"):
        volumes = objects[("StatefulSet", group)]["spec"]["template"]["spec"]["volumes"]
        assert {"name": "permissions", "configMap": {"name": "besu-permissions"}} in volumes
    message = git(remote, "log", "-1", "--format=%B", "main")
    assert ("Node allowlist changed: +rpc-1; reload on validator-0..3 (perm_reloadPermissionsFromFile or restart); "
            "rpc-0 restart with this change and load it") in message, message

    # A new validator changes the static peers too: every pod restarts with the new file.
    assert site["compile"]("grow", besu(7305, exposure="none", rpc=2, validators=5)).code == 0
    message = git(remote, "log", "-1", "--format=%B", "main")
    assert "Node allowlist changed: +validator-4; validator-0..3, rpc-0..1 restart with this change and load it" in message, message
    summary = site["run"]("diff", "grow", *site["ws"].where)
    assert summary.code == 0, summary.err  # nothing left to change


# -- refusals: one line naming file, field and rule; nothing written -----------------------------
def snapshot(path: Path) -> dict[str, str]:
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.rglob("*")) if p.is_file()}


def state(site) -> tuple:
    ws = site["ws"]
    return git(ws.remote, "for-each-ref", "--format=%(refname) %(objectname)"), snapshot(ws.home)


REFUSED = [
    ("duplicate-external", besu(7311, peers=(EXT_IP, EXT_IP.replace("203.0.113.9", "203.0.113.10"))),
     "network.externalPeers[1]", "is already listed as network.externalPeers[0]"),
    ("short-node-id", besu(7312, peers=(EXT_IP.replace(enode_id(EXT_IP), enode_id(EXT_IP)[:-2]),)),
     "network.externalPeers[0]", "128 hex digits"),
    ("not-on-curve", besu(7313, peers=(EXT_IP.replace(enode_id(EXT_IP), "00" * 64),)),
     "network.externalPeers[0]", "not a secp256k1 public key"),
    ("port-zero", besu(7314, peers=(EXT_DNS.replace(":30304", ":0"),)), "network.externalPeers[0]", "out of range"),
    ("bad-host", besu(7315, peers=(EXT_DNS.replace("peer.other-cluster", "peer_other"),)), "network.externalPeers[0]", "neither an IP address nor a DNS name"),
    ("not-an-enode", besu(7316, peers=("http://203.0.113.9:30303",)), "network.externalPeers[0]", "is not an enode URL"),
    ("permissioning-on-geth", GETH.format(chain_id=7317, peers="", kubernetes="").replace(
        "externalPeers: []}", "externalPeers: [], permissioning: {nodes: true}}"), "network.permissioning.nodes", "geth has no node allowlist"),
    ("dns-host-on-geth", GETH.format(chain_id=7318, peers="", kubernetes=", p2pExposure: loadBalancer, p2pAdvertisedHosts: {validator-0: p2p.example.com}"),
     "kubernetes.p2pAdvertisedHosts.validator-0", "geth advertises an IP only (--nat=extip:<IP>"),
    ("dns-host-on-besu", besu(7319).replace("validator-0: 198.51.100.10", "validator-0: p2p.example.com"),
     "kubernetes.p2pAdvertisedHosts.validator-0", "valid advertisement host required"),
    ("missing-host", besu(7320).replace("  rpc-0: 198.51.100.20\n", ""), "kubernetes.p2pAdvertisedHosts", "no advertised address for rpc-0"),
    ("shared-lb-address", besu(7321).replace("198.51.100.11", "198.51.100.10"), "kubernetes.p2pAdvertisedHosts", "a load balancer address of its own"),
    ("hosts-without-exposure", besu(7322).replace("p2pExposure: loadBalancer", "p2pExposure: none"), "kubernetes.p2pAdvertisedHosts", "only used with"),
]


@pytest.mark.parametrize(("text", "field", "fragment"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_bad_peering_input_is_one_line_and_writes_nothing(site, text, field, fragment):
    assert site["compile"]("published", besu(7330, exposure="none")).code == 0
    before = state(site)
    bad = site["ws"].envs / "bad.yaml"
    bad.write_text(text)
    result = site["run"]("compile", *site["ws"].where)
    assert result.code == 1, (result.out, result.err)
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.err, result.err
    assert lines[0].startswith(f"error: {bad}: {field}: ") and fragment in lines[0], lines[0]
    assert state(site) == before, "the remote and the home are untouched"


def test_an_external_peer_that_is_a_node_of_this_network_is_refused(site):
    assert site["compile"]("own", besu(7331, exposure="none")).code == 0
    before = state(site)
    own = json.loads(site["show"]("rendered/own/network.lock.json"))["nodes"][1]
    result = site["compile"]("own", besu(7331, exposure="none", peers=(EXT_DNS, own["enode"].replace("svc.cluster.local", "svc"))))
    assert result.code == 1 and len(result.err.strip().splitlines()) == 1, result.err
    line = result.err.strip()
    assert line.startswith(f"error: {site['ws'].envs / 'own.yaml'}: network.externalPeers[1]: "), line
    assert f"is {own['name']} of this network (in network.lock.json)" in line
    assert state(site) == before


def test_enode_urls_are_written_in_canonical_form(site):
    node_id = enode_id(EXT_IP)
    text = besu(7332, exposure="none", peers=(f"enode://{node_id.upper()}@[2001:DB8::0:1]:30303", f"enode://{public_key(b'x')}@Peer.Example.COM:1"))
    assert site["compile"]("canon", text).code == 0
    static = json.loads(objects_in(site["work"]() / "rendered" / "canon")[("ConfigMap", "besu-config")]["data"]["static-nodes.json"])
    assert static[-2:] == [f"enode://{node_id}@[2001:db8::1]:30303", f"enode://{public_key(b'x')}@peer.example.com:1"]


# -- geth: the rendered node runs and dials its external peer -------------------------------------
GETH_BIN = Path(os.environ.get("CHAINOPS_GETH_DIR") or Path.home() / ".cache" / "chainops" / "geth-v1.13.15" / "bin") / "geth"
EXT_KEY = hashlib.sha256(b"chainops-test-only/external-geth").hexdigest()


@pytest.mark.slow  # boots two geth nodes
@pytest.mark.skipif(not GETH_BIN.is_file() or shutil.which("bwrap") is None or os.geteuid() != 0,
                    reason="needs geth v1.13.15 (make smoke-bins), bwrap and root")
def test_geth_runs_the_rendered_validator_and_peers_with_its_external_peer(site, tmp_path):
    """One network namespace (bubblewrap): an external geth on 127.0.0.1:30399 with the committed
    genesis, and the rendered validator pod: its init container, then its exact command line
    ($(VAR) expanded as the kubelet does) with its volumes at their mount paths. The validator
    reads the external peer from the rendered config.toml, connects to it, and advertises the
    address of its NodePort (--nat=extip from the p2p-advertised ConfigMap)."""
    ext_id = NATIVE.PrivateKey(bytes.fromhex(EXT_KEY)).public_key.to_bytes().hex()
    text = GETH.format(chain_id=7340, peers=f"'enode://{ext_id}@127.0.0.1:30399'",
                       kubernetes=", p2pExposure: nodePort, p2pAdvertisedHost: 198.51.100.77")
    assert site["compile"]("gext", text).code == 0
    work = site["work"]()
    base = work / "rendered" / "gext"
    objects = list(objects_in(base).values())
    sts = next(o for o in objects if o["kind"] == "StatefulSet" and o["metadata"]["name"] == "validator")
    secrets = {name: {k: v.encode() for k, v in data.items()}
               for name, data in committed_secrets(work, "gext", site["ws"].home / "age" / "identity.txt").items()}
    pod = Pod("validator-0", sts, 0, address="127.0.0.1", root=tmp_path / "pod")
    volumes = materialise(pod, objects, secrets)
    config_maps = {o["metadata"]["name"]: o.get("data") or {} for o in objects if o["kind"] == "ConfigMap"}
    [init] = pod.spec["initContainers"]
    [main] = pod.spec["containers"]
    env = container_env(main, pod, config_maps, secrets)
    init_argv = ["geth", *[expand(a, env) for a in init["args"]]]
    main_argv = [expand(a, env) for a in main["command"] + main["args"]]
    assert "--config=/config/config.toml" in main_argv
    ext = tmp_path / "ext"
    ext.mkdir()
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost validator-0.validator.chain-7340.svc.cluster.local\n")
    binds: list[str] = []
    for mount in {(m["name"], m["mountPath"]) for c in (init, main) for m in c["volumeMounts"]}:
        binds += ["--bind", str(volumes[mount[0]]), mount[1]]
    network = json.loads((base / "genesis.json").read_text())["config"]["chainId"]
    runner = (
        "geth --datadir /ext init /genesis/genesis.json >/ext/init.log 2>&1 && "
        f"(geth --datadir /ext --networkid {network} --port 30399 --authrpc.port 8552 --nodekeyhex {EXT_KEY} "
        "--nat none --nodiscover "
        "--ipcpath /ext/geth.ipc >/ext/geth.log 2>&1 &) && "
        f'{" ".join(init_argv)} >/tmp/init.log 2>&1 && exec "$@"'
    )
    command = ["bwrap", "--die-with-parent", "--unshare-net", "--unshare-pid", *sandbox_root(),
               "--ro-bind", str(GETH_BIN), "/chainops/bin/geth",
               "--ro-bind", str(hosts), "/etc/hosts", "--bind", str(ext), "/ext", *binds,
               "--clearenv", *[x for k, v in env.items() for x in ("--setenv", k, v)],
               "--", "/bin/sh", "-ec", runner, "runner", *main_argv]
    log = tmp_path / "validator.log"
    with log.open("w") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, preexec_fn=prepare_child)
    try:
        ipc_path = volumes["data"] / "geth.ipc"
        peers, info, deadline = [], None, time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                info = ipc(ipc_path, "admin_nodeInfo")
                peers = [p["enode"] for p in ipc(ipc_path, "admin_peers")]
            except Exception:  # not up yet
                peers = []
            if any(enode_id(p) == ext_id for p in peers):
                break
            time.sleep(0.5)
        assert proc.poll() is None, log.read_text()[-3000:]
        assert any(enode_id(p) == ext_id for p in peers), (peers, log.read_text()[-3000:], (ext / "geth.log").read_text()[-2000:])
        lock = json.loads((base / "network.lock.json").read_text())
        assert info["enode"].split("@")[1].startswith("198.51.100.77:"), info["enode"]
        assert enode_id(info["enode"]) == enode_id(lock["nodes"][0]["enode"])
        assert lock["nodes"][0]["enode"].endswith("@198.51.100.77:30303")  # nodePort base 30303 + 0
    finally:
        stop(proc)


# -- Dagster ---------------------------------------------------------------------------------
def test_dagster_materializes_a_peered_permissioned_network(tmp_path):
    from tests.dagster_helpers import ASSETS, CHECK_NAMES, CHECKS, checks_of

    envs = tmp_path / "environments"
    envs.mkdir()
    (envs / "peered.yaml").write_text(besu(7350))
    resource = ChainopsResource(environments_dir=str(envs), home=str(tmp_path / "home"), charts_dir=str(REPO_ROOT / "chart_sources"))
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("environments", ["peered"])
        result = dg.materialize([*ASSETS, *CHECKS], partition_key="peered", instance=instance,
                                resources={"chainops": resource}, raise_on_error=False)
    assert result.success
    assert checks_of(result) == dict.fromkeys(CHECK_NAMES, (True, "ERROR"))
    git_dir = tmp_path / "home" / "gitops.git"
    lock = json.loads(git(git_dir, "show", "main:rendered/peered/network.lock.json"))
    assert [n["enode"].split("@")[1] for n in lock["nodes"]] == [f"{HOSTS[n['name']]}:30303" for n in lock["nodes"]]
    permissions = read_yaml(git(git_dir, "show", "main:rendered/peered/besu-node/configmap-besu-permissions.yaml"))
    allowlist = tomllib.loads(permissions["data"]["permissions_config.toml"])["nodes-allowlist"]
    assert {n["enode"] for n in lock["nodes"]} | {EXT_IP, EXT_DNS} <= set(allowlist)
    metadata = result.asset_materializations_for_node("gitops_commit")[0].metadata
    assert metadata["commit"].value == git(git_dir, "rev-parse", "main").strip()


def test_the_documented_multicluster_example_compiles(site):
    text = (REPO_ROOT / "docs" / "examples" / "besu-multicluster.yaml").read_text()
    result = site["compile"]("besu-multi-a", text)
    assert result.code == 0, result.err
    lock = json.loads(site["show"]("rendered/besu-multi-a/network.lock.json"))
    assert lock["nodes"][0]["enode"].endswith("@198.51.100.10:30303")
    permissions = read_yaml(site["show"]("rendered/besu-multi-a/besu-node/configmap-besu-permissions.yaml"))
    assert "203.0.113.51:31001?discport=31001" in permissions["data"]["permissions_config.toml"]
