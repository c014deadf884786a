"""`chainops smoke`: boot the committed manifests as local pods, no cluster.

Every StatefulSet/Deployment replica of `rendered/<env>/` runs as a local "pod": its init
containers, then its containers, with exactly the command, args and env of the pod
template. Only what a kubelet provides is substituted: `$(VAR)` references (Kubernetes'
expansion rules: `$$` escapes), `fieldRef` (metadata.name, status.podIP), `secretKeyRef`
and `configMapKeyRef`, the volumes (ConfigMap and Secret items with their paths and
modes, projected Secret sources, emptyDir, one data directory per PersistentVolumeClaim
template) mounted at their `mountPath`, and the image's entrypoint.

Each pod is a bubblewrap sandbox (the host's root read-only, its volumes bound at their
mount paths, the client binary bound where the image has it) inside a network namespace
of its own with its own address on a bridge in a hub namespace, all created by this
command and deleted at exit, also on Ctrl-C or SIGTERM. The pod DNS names
(`<pod>.<service>.<ns>.svc.cluster.local`, the Services' names) resolve through an
/etc/hosts bound into every sandbox. Readiness follows the pod's own probes (tcpSocket,
httpGet, exec).

An image runs only on a local binary of the same version (`geth version` must report the
image's tag), or smoke refuses and says which binary it needs. Images no registry ships
here (Besu, the ethstats dashboard) are refused by name: smoke never pretends.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipelines.lib.config import parse_image
from pipelines.lib.errors import OperationalFailure
from pipelines.lib.layout import lock_path
from pipelines.lib.lock import NetworkLock, parse_lock
from pipelines.lib.processes import prepare_child
from pipelines.lib.sealing import AgeIdentity, SopsSealer, is_plaintext_secret, is_sops_encrypted

SUBNET = "10.233.{}.{}"
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/etc")
BIN_DIR = "/chainops/bin"  # where the client binary is bound (first on PATH), as the image's is
NAMESPACE_PREFIX = "chainops-smoke-"
_VAR_RE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")
# Where an image keeps its entrypoint: argv[0] when the pod template gives no command.
IMAGE_ENTRYPOINTS = {"ethereum/client-go": ["geth"]}
# The binary each image repository runs, bound into the sandbox on PATH.
IMAGE_BINARIES = {"ethereum/client-go": "geth"}
ALLTOOLS = ("bootnode",)  # the tools of ethereum/client-go:alltools-* smoke can run
UNAVAILABLE_IMAGES = {
    "hyperledger/besu": "Besu ships only as a container image or a JVM distribution that no registry here serves",
}
# Images of pods the chain does not depend on, which no registry here ships: not booted, and
# named in the report as not run (the nodes' reporting to them fails, as it would in a cluster
# where the dashboard is down).
NOT_RUN_IMAGES = {"ethereumex/eth-stats-dashboard": "the ethstats dashboard ships only as a container image"}


class SmokeError(OperationalFailure):
    """The network did not come up, or this machine cannot run it."""


class SmokeRefused(OperationalFailure):
    """What the environment runs cannot be booted honestly here (a missing or wrong binary)."""


@dataclass
class Pod:
    name: str
    workload: dict[str, Any]
    ordinal: int
    address: str = ""
    netns: str = ""
    root: Path = Path()
    processes: list[subprocess.Popen] = field(default_factory=list)

    @property
    def spec(self) -> dict[str, Any]:
        return self.workload["spec"]["template"]["spec"]

    @property
    def service(self) -> str:
        return self.workload["spec"].get("serviceName", self.workload["metadata"]["name"])


def expand(value: str, env: Mapping[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion: defined variables are replaced, `$$` is a literal `$`,
    anything else stays as written."""
    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env.get(name, match.group(0))

    return _VAR_RE.sub(replace, value)


def objects_of(files: Mapping[str, bytes], environment: str) -> list[dict[str, Any]]:
    prefix = f"rendered/{environment}/"
    found = []
    for path, data in sorted(files.items()):
        if path.startswith(prefix) and path.endswith(".yaml") and path.count("/") == 3:
            found += [d for d in yaml.safe_load_all(data) if isinstance(d, dict) and d.get("kind")]
    return found


def _not_run(pod: Pod) -> str | None:
    """Why the pod is not booted (an image no registry here ships that the chain does not need)."""
    for container in pod.spec.get("containers", []):
        repository = image_repository(container["image"])
        if repository in NOT_RUN_IMAGES:
            return NOT_RUN_IMAGES[repository]
    return None


def pods_of(objects: list[dict[str, Any]]) -> list[Pod]:
    pods = []
    for obj in objects:
        if obj["kind"] == "StatefulSet":
            pods += [Pod(f"{obj['metadata']['name']}-{i}", obj, i) for i in range(int(obj["spec"].get("replicas", 1)))]
        elif obj["kind"] == "Deployment":
            pods += [Pod(f"{obj['metadata']['name']}-{i}", obj, i) for i in range(int(obj["spec"].get("replicas", 1)))]
    return pods


def image_repository(reference: str) -> str:
    return parse_image(reference)[0]


def image_tag(reference: str) -> str:
    return parse_image(reference)[1]


@functools.lru_cache(maxsize=32)
def binary_version(binary: Path) -> str | None:
    """'1.13.15' from `geth version`, or from the Go build info of the go-ethereum module
    (`go version -m`, for tools such as bootnode that print no version); None if neither says."""
    try:
        out = subprocess.run([str(binary), "version"], capture_output=True, text=True, timeout=30, check=False).stdout
    except OSError:
        return None
    match = re.search(r"^Version: ([0-9]+\.[0-9]+\.[0-9]+)", out, re.M)
    if match:
        return match.group(1)
    if shutil.which("go") is None:
        return None
    info = subprocess.run(["go", "version", "-m", str(binary)], capture_output=True, text=True, timeout=30, check=False).stdout
    match = re.search(r"^\s*mod\s+github\.com/ethereum/go-ethereum\s+v([0-9]+\.[0-9]+\.[0-9]+)", info, re.M)
    return match.group(1) if match else None


def binary_name(container: Mapping[str, Any]) -> str | None:
    """The client binary a container runs: the alltools image's tool named by the command
    (bootnode), otherwise the image's own client."""
    repository, tag = image_repository(container["image"]), image_tag(container["image"])
    if repository == "ethereum/client-go" and tag.startswith("alltools-"):
        command = container.get("command") or []
        return command[0] if command and command[0] in ALLTOOLS else None
    return IMAGE_BINARIES.get(repository)


def _default_binary(name: str, version: str) -> Path | None:
    """Where `make smoke-bins` puts the binaries (CHAINOPS_GETH_DIR, else ~/.cache/chainops/
    geth-v<version>/bin), then PATH."""
    candidates = [Path(d) / name for d in (os.environ.get("CHAINOPS_GETH_DIR"), Path.home() / ".cache" / "chainops" / f"geth-v{version}" / "bin") if d]
    candidates += [Path(found)] if (found := shutil.which(name)) else []
    existing = [c for c in candidates if c.is_file()]
    matching = [c for c in existing if binary_version(c) == version]
    return (matching or existing or [None])[0]


def check_binaries(pods: list[Pod], binaries: Mapping[str, Path]) -> dict[str, Path]:
    """image reference -> the local binary that runs it; refuses what cannot be matched."""
    chosen: dict[str, Path] = {}
    for pod in pods:
        for container in pod.spec.get("initContainers", []) + pod.spec.get("containers", []):
            reference = container["image"]
            repository = image_repository(reference)
            if reference in chosen:
                continue
            if repository in UNAVAILABLE_IMAGES:
                raise SmokeRefused(f"{pod.workload['kind']}/{pod.workload['metadata']['name']}: {reference}: {UNAVAILABLE_IMAGES[repository]}; smoke boots geth profiles only")
            name = binary_name(container)
            if name is None:
                raise SmokeRefused(f"{reference}: smoke has no local binary for this image")
            wanted = re.sub(r"^(alltools-)?v", "", image_tag(reference))
            binary = binaries.get(name) or _default_binary(name, wanted)
            if binary is None:
                raise SmokeRefused(f"{reference}: needs a local {name} {wanted} (--bin {name}=PATH, e.g. go install github.com/ethereum/go-ethereum/cmd/{name}@v{wanted})")
            version = binary_version(binary)
            if version != wanted:
                raise SmokeRefused(f"{reference}: {binary} is {name} {version or '(unknown version)'}, the image runs {wanted}; give --bin {name}=PATH of {name} {wanted}")
            chosen[reference] = binary
    return chosen


def _items(source: Mapping[str, Any], data: Mapping[str, bytes]) -> list[tuple[str, bytes, int | None]]:
    items = source.get("items")
    if not items:
        return [(key, value, None) for key, value in sorted(data.items())]
    return [(item["path"], data[item["key"]], item.get("mode")) for item in items]


def materialise(pod: Pod, objects: list[dict[str, Any]], secrets_data: Mapping[str, Mapping[str, bytes]]) -> dict[str, Path]:
    """Volume name -> host directory with its files, as the kubelet would project them."""
    config_maps = {o["metadata"]["name"]: {k: v.encode() for k, v in (o.get("data") or {}).items()} for o in objects if o["kind"] == "ConfigMap"}
    volumes: dict[str, Path] = {}
    for volume in pod.spec.get("volumes", []):
        target = pod.root / "volumes" / volume["name"]
        target.mkdir(parents=True, exist_ok=True)
        sources: list[tuple[str, bytes, int | None]] = []
        if "configMap" in volume:
            sources = _items(volume["configMap"], config_maps[volume["configMap"]["name"]])
        elif "secret" in volume:
            sources = _items(volume["secret"], secrets_data[volume["secret"]["secretName"]])
        elif "projected" in volume:
            for source in volume["projected"]["sources"]:
                if "secret" in source:
                    sources += _items(source["secret"], secrets_data[source["secret"]["name"]])
                elif "configMap" in source:
                    sources += _items(source["configMap"], config_maps[source["configMap"]["name"]])
        for rel, data, mode in sources:
            path = target / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            path.chmod(mode if mode is not None else 0o644)
        volumes[volume["name"]] = target
    for claim in pod.workload["spec"].get("volumeClaimTemplates", []):
        target = pod.root / "claims" / claim["metadata"]["name"]
        target.mkdir(parents=True, exist_ok=True)
        volumes[claim["metadata"]["name"]] = target
    return volumes


def container_env(container: Mapping[str, Any], pod: Pod, config_maps: Mapping[str, Mapping[str, str]], secrets_data: Mapping[str, Mapping[str, bytes]]) -> dict[str, str]:
    env: dict[str, str] = {"PATH": f"{BIN_DIR}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOSTNAME": pod.name, "HOME": "/tmp"}
    fields = {"metadata.name": pod.name, "status.podIP": pod.address, "metadata.namespace": pod.workload["metadata"].get("namespace", "")}
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = expand(str(item["value"]), env)
        elif "valueFrom" in item:
            source = item["valueFrom"]
            if "fieldRef" in source:
                env[item["name"]] = fields[source["fieldRef"]["fieldPath"]]
            elif "secretKeyRef" in source:
                ref = source["secretKeyRef"]
                env[item["name"]] = secrets_data[ref["name"]][ref["key"]].decode()
            elif "configMapKeyRef" in source:
                ref = source["configMapKeyRef"]
                env[item["name"]] = config_maps[ref["name"]][ref["key"]]
    return env


class Network:
    """A hub namespace with a bridge, and one namespace per pod wired to it."""

    def __init__(self) -> None:
        # The owner's pid is in every name: a later run removes what a SIGKILLed one left.
        self.id = f"{os.getpid()}-{secrets.token_hex(2)}"
        self.hub = f"{NAMESPACE_PREFIX}{self.id}-hub"
        self.spaces: list[str] = []
        self.index = 0

    def _ip(self, *args: str, netns: str | None = None) -> None:
        command = (["ip", "netns", "exec", netns] if netns else []) + ["ip", *args]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise SmokeError(f"ip {' '.join(args)}: {result.stderr.strip()}")

    def __enter__(self) -> Network:
        self._ip("netns", "add", self.hub)
        self.spaces.append(self.hub)
        self._ip("link", "add", "br0", "type", "bridge", netns=self.hub)
        self._ip("addr", "add", SUBNET.format(0, 1) + "/16", "dev", "br0", netns=self.hub)
        self._ip("link", "set", "br0", "up", netns=self.hub)
        self._ip("link", "set", "lo", "up", netns=self.hub)
        return self

    def attach(self, pod: Pod) -> None:
        self.index += 1
        pod.netns = f"{NAMESPACE_PREFIX}{self.id}-{self.index}"
        pod.address = SUBNET.format(1, self.index)
        self._ip("netns", "add", pod.netns)
        self.spaces.append(pod.netns)
        host_end = f"h{self.index}"
        self._ip("link", "add", "eth0", "netns", pod.netns, "type", "veth", "peer", "name", host_end, "netns", self.hub)
        self._ip("link", "set", host_end, "master", "br0", netns=self.hub)
        self._ip("link", "set", host_end, "up", netns=self.hub)
        self._ip("addr", "add", pod.address + "/16", "dev", "eth0", netns=pod.netns)
        self._ip("link", "set", "eth0", "up", netns=pod.netns)
        self._ip("link", "set", "lo", "up", netns=pod.netns)

    def __exit__(self, *exc: object) -> None:
        for space in reversed(self.spaces):
            subprocess.run(["ip", "netns", "del", space], capture_output=True, check=False)


def remove_stale_namespaces() -> list[str]:
    """Delete the namespaces of smoke runs whose process is gone (killed with SIGKILL, which
    no handler sees); returns their names."""
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    removed = []
    for line in listing.splitlines():
        name = line.split()[0] if line.split() else ""
        found = re.match(rf"^{NAMESPACE_PREFIX}(\d+)-", name)
        if not found:
            continue
        try:
            state = Path(f"/proc/{found[1]}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            state = "gone"
        if state in ("gone", "Z"):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
            removed.append(name)
    return removed


def hosts_file(pods: list[Pod], namespace: str, objects: list[dict[str, Any]]) -> str:
    lines = ["127.0.0.1 localhost"]
    services = [o for o in objects if o["kind"] == "Service"]
    for pod in pods:
        names = [pod.name, f"{pod.name}.{pod.service}", f"{pod.name}.{pod.service}.{namespace}.svc.cluster.local"]
        labels = pod.workload["spec"]["template"]["metadata"].get("labels", {})
        for service in services:
            selector = service["spec"].get("selector") or {}
            if selector and all(labels.get(k) == v for k, v in selector.items()) and pod.ordinal == 0:
                name = service["metadata"]["name"]
                names += [name, f"{name}.{namespace}", f"{name}.{namespace}.svc", f"{name}.{namespace}.svc.cluster.local"]
        lines.append(f"{pod.address} {' '.join(dict.fromkeys(names))}")
    return "\n".join(lines) + "\n"


def _port(container: Mapping[str, Any], port: Any) -> int:
    if isinstance(port, int):
        return port
    for item in container.get("ports", []):
        if item.get("name") == port:
            return int(item["containerPort"])
    raise SmokeError(f"container {container['name']}: no port named {port}")


def _in_netns(pod: Pod, kind: str, host: str, port: int, path: str, body: str) -> str:
    """A TCP connect or an HTTP request from inside the pod's network namespace (a short
    child process: a socket belongs to the namespace it was created in)."""
    code = (
        "import json,sys,socket,http.client\n"
        "kind,host,port,path=sys.argv[1],sys.argv[2],int(sys.argv[3]),sys.argv[4]\n"
        "try:\n"
        " if kind=='tcp':\n  socket.create_connection((host,port),timeout=2).close(); print('ok')\n"
        " else:\n  c=http.client.HTTPConnection(host,port,timeout=3); body=sys.stdin.read()\n"
        "  c.request('POST' if body else 'GET',path,body=body or None,headers={'Host':'localhost','Content-Type':'application/json'})\n"
        "  r=c.getresponse(); print(json.dumps({'status':r.status,'body':r.read().decode()}))\n"
        "except Exception as e:\n print('fail')\n"
    )
    result = subprocess.run(
        ["ip", "netns", "exec", pod.netns, "python3", "-c", code, kind, host, str(port), path],
        input=body, capture_output=True, text=True, timeout=15, check=False, preexec_fn=prepare_child,
    )
    return result.stdout.strip()


def probe_ok(pod: Pod, container: Mapping[str, Any], probe: Mapping[str, Any] | None) -> bool:
    if not probe:
        return True
    if "tcpSocket" in probe:
        return _in_netns(pod, "tcp", pod.address, _port(container, probe["tcpSocket"]["port"]), "", "") == "ok"
    if "httpGet" in probe:
        out = _in_netns(pod, "http", pod.address, _port(container, probe["httpGet"]["port"]), probe["httpGet"].get("path", "/"), "")
        return out.startswith("{") and 200 <= json.loads(out)["status"] < 400
    if "exec" in probe:
        return subprocess.run(["ip", "netns", "exec", pod.netns, *probe["exec"]["command"]], capture_output=True, check=False).returncode == 0
    return True


MIN_BLOCKS = 3


@dataclass
class SmokeReport:
    environment: str
    pods: dict[str, str]  # pod -> "ready" or what failed
    log_tails: dict[str, str]
    locked_genesis: str  # network.lock.json's genesisHash
    genesis_hash: str | None = None  # block 0 as the running nodes serve it
    heads: dict[str, int] = field(default_factory=dict)  # client pod -> its head block
    peering: dict[str, str] = field(default_factory=dict)  # client pod -> "ok" or what is missing
    peers: dict[str, int] = field(default_factory=dict)
    signers_expected: tuple[str, ...] = ()  # clique: the locked signers (lower-case)
    signers_seen: set[str] = field(default_factory=set)
    transaction: str = "no generated account"  # "tx mined", "tx not mined", or why none was sent
    consensus: str = ""
    not_run: dict[str, str] = field(default_factory=dict)  # pod -> why it was not booted

    @property
    def mining_required(self) -> bool:
        """ethash miners build a 1 GiB DAG before their first block: within a smoke run on a
        small machine they may not get there, so for ethash blocks and the transfer are
        reported, not required (boot, genesis, peering and the bootnode are)."""
        return self.consensus != "ethash"

    @property
    def block(self) -> int:
        return max(self.heads.values(), default=0)

    @property
    def ok(self) -> bool:
        mined = (
            self.block >= MIN_BLOCKS
            and all(h >= MIN_BLOCKS for h in self.heads.values())
            and self.transaction in ("tx mined", "no generated account")
        )
        return (
            all(v == "ready" for v in self.pods.values())
            and self.genesis_hash == self.locked_genesis
            and (mined or not self.mining_required)
            and bool(self.peering) and all(v == "ok" for v in self.peering.values())
            and set(self.signers_expected) <= self.signers_seen
        )

    def summary(self) -> str:
        ready = sum(1 for v in self.pods.values() if v == "ready")
        peered = sum(1 for v in self.peering.values() if v == "ok")
        signers = f", signers {len(self.signers_seen & set(self.signers_expected))}/{len(self.signers_expected)}" if self.signers_expected else ""
        line = (
            f"smoke: {self.environment}  {ready}/{len(self.pods)} pods ready, {peered}/{len(self.peering) or len(self.heads)} peered, "
            f"{self.block} blocks{signers}, {self.transaction}"
        )
        if not self.mining_required and self.block < MIN_BLOCKS:
            line += " (ethash: mining not reached in time, not required)"
        if self.not_run:
            line += f"; not run: {', '.join(sorted(self.not_run))}"
        return line


def ipc(path: Path, method: str, params: list | None = None, timeout: float = 5) -> Any:
    """One JSON-RPC call over a node's IPC socket (every API, where HTTP serves a few)."""
    request = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}).encode()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout)
        conn.connect(str(path))
        conn.sendall(request)
        buffer = b""
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                break
            buffer += chunk
            try:
                answer = json.loads(buffer)
                break
            except ValueError:
                continue
    if "error" in answer:
        raise SmokeError(f"{method}: {answer['error'].get('message')}")
    return answer.get("result")


def _ipc_path(pod: Pod, volumes: Mapping[str, Path]) -> Path | None:
    for container in pod.spec["containers"]:
        datadir = next((a.split("=", 1)[1] for a in container.get("args", []) if a.startswith("--datadir=")), None)
        for mount in container.get("volumeMounts", []):
            if datadir and mount["mountPath"] == datadir:
                return volumes[mount["name"]] / "geth.ipc"
    return None


def _enode_key(url: str) -> str:
    return url.removeprefix("enode://").split("@", 1)[0].lower()


def _static_peers(pod: Pod, config_maps: Mapping[str, Mapping[str, str]]) -> set[str]:
    """The enode keys the pod's own config names as static peers (geth's config.toml)."""
    keys: set[str] = set()
    for volume in pod.spec.get("volumes", []):
        name = (volume.get("configMap") or {}).get("name")
        for text in (config_maps.get(name) or {}).values():
            keys |= {m.lower() for m in re.findall(r"enode://([0-9a-fA-F]{128})@", text)}
    return keys


def _check_network(report: SmokeReport, pods: list[Pod], paths: Mapping[str, Path], lock: NetworkLock,
                   config_maps: Mapping[str, Mapping[str, str]]) -> None:
    """One round of checks on every client pod over IPC: heads, peers, genesis, signers."""
    known = {_enode_key(n.enode): n.name for n in lock.nodes}
    own = {n.name: _enode_key(n.enode) for n in lock.nodes}
    for pod in pods:
        path = paths.get(pod.name)
        if path is None or not path.exists():
            continue
        try:
            report.heads[pod.name] = int(ipc(path, "eth_blockNumber"), 16)
            if report.genesis_hash is None:
                report.genesis_hash = ipc(path, "eth_getBlockByNumber", ["0x0", False])["hash"]
            peer_keys = {_enode_key(p["enode"]) for p in ipc(path, "admin_peers")}
        except (OSError, SmokeError, ValueError, KeyError, TypeError):
            continue
        report.peers[pod.name] = len(peer_keys)
        strangers = sorted(k[:12] for k in peer_keys if k not in known)
        wanted = _static_peers(pod, config_maps) - {own.get(pod.name, "")}
        missing = sorted(known.get(k, k[:12]) for k in wanted - peer_keys)
        if strangers:
            report.peering[pod.name] = f"peers not in the lock: {', '.join(strangers)}"
        elif missing:
            report.peering[pod.name] = f"not peered with {', '.join(missing)}"
        elif not peer_keys:
            report.peering[pod.name] = "no peers"
        else:
            report.peering[pod.name] = "ok"
    if report.signers_expected and report.heads:
        source = paths[max(report.heads, key=report.heads.get)]
        for number in range(1, max(report.heads.values()) + 1):
            try:
                report.signers_seen.add(str(ipc(source, "clique_getSigner", [hex(number)])).lower())
            except (OSError, SmokeError):
                break


def _send_transaction(report: SmokeReport, paths: Mapping[str, Path], pods: list[Pod], secrets_data: Mapping[str, Mapping[str, bytes]],
                      lock: NetworkLock) -> str | None:
    """A transfer signed with a generated account's key (from its Secret), sent to an RPC
    node; returns its hash (None when the environment generates no account)."""
    from eth_account import Account  # lazy: only smoke signs

    account = next((a for a in lock.accounts if a.secret and a.secret in secrets_data), None)
    if account is None or account.secret is None:
        return None
    data = secrets_data[account.secret]
    key = Account.decrypt(data["keystore.json"].decode(), data["password"].decode())
    sender = next((paths[p.name] for p in pods if p.name.startswith("rpc-") and p.name in paths), next(iter(paths.values())))
    nonce = int(ipc(sender, "eth_getTransactionCount", [account.address, "pending"]), 16)
    tx = {"nonce": nonce, "to": account.address, "value": 1, "gas": 21000,
          "gasPrice": int(ipc(sender, "eth_gasPrice"), 16) * 2, "chainId": lock.chainId}
    signed = Account.sign_transaction(tx, key)
    raw = getattr(signed, "raw_transaction", None) or signed.rawTransaction
    return ipc(sender, "eth_sendRawTransaction", ["0x" + bytes(raw).hex()])


def _sandbox_command(pod: Pod, container: Mapping[str, Any], volumes: Mapping[str, Path], binaries: Mapping[str, Path], hosts: Path, env: Mapping[str, str]) -> list[str]:
    image = container["image"]
    binary = binaries[image]
    argv = list(container.get("command") or IMAGE_ENTRYPOINTS[image_repository(image)]) + list(container.get("args") or [])
    argv = [expand(str(a), env) for a in argv]
    # An empty root (bubblewrap's tmpfs) with the host's system directories read-only: the
    # pod's mount paths (/data, /keys, ...) are created in it, as in a container image.
    command = ["ip", "netns", "exec", pod.netns, "bwrap", "--die-with-parent", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
               "--hostname", pod.name]
    for system in SYSTEM_DIRS:
        if Path(system).is_symlink():
            command += ["--symlink", os.readlink(system), system]
        elif Path(system).is_dir():
            command += ["--ro-bind", system, system]
    command += ["--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp", "--ro-bind", str(hosts), "/etc/hosts",
                "--ro-bind", str(binary), f"{BIN_DIR}/{binary_name(container)}", "--clearenv"]
    for key, value in env.items():
        command += ["--setenv", key, value]
    for mount in container.get("volumeMounts", []):
        source = volumes[mount["name"]]
        if mount.get("subPath"):
            source = source / mount["subPath"]
        command += ["--ro-bind" if mount.get("readOnly") else "--bind", str(source), mount["mountPath"]]
    return [*command, "--chdir", "/", "--", *argv]


@contextlib.contextmanager
def _signals_raise() -> Iterator[None]:
    """SIGTERM and SIGHUP unwind like Ctrl-C, so the namespaces are deleted."""
    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def run_smoke(
    environment: str, files: Mapping[str, bytes], secrets_data: Mapping[str, Mapping[str, bytes]], binaries: Mapping[str, Path], seconds: float
) -> SmokeReport:
    """Boot every pod, wait for readiness and for a block on the chain; tear everything down."""
    if os.geteuid() != 0:
        raise SmokeError("smoke creates network namespaces: run it as root (or in a CI job with CAP_SYS_ADMIN and CAP_NET_ADMIN)")
    if shutil.which("bwrap") is None:
        raise SmokeError("bubblewrap (bwrap) is not installed: apt-get install bubblewrap")
    remove_stale_namespaces()
    objects = objects_of(files, environment)
    namespace = next((o["metadata"]["name"] for o in objects if o["kind"] == "Namespace"), environment)
    every_pod = pods_of(objects)
    pods = [p for p in every_pod if not _not_run(p)]
    chosen = check_binaries(pods, binaries)
    config_maps = {o["metadata"]["name"]: dict(o.get("data") or {}) for o in objects if o["kind"] == "ConfigMap"}
    lock = parse_lock(files[lock_path(environment)], environment)
    report = SmokeReport(environment, {p.name: "not started" for p in pods}, {}, lock.genesisHash)
    report.not_run = {p.name: _not_run(p) or "" for p in every_pod if _not_run(p)}
    report.consensus = lock.consensus
    if report.consensus == "clique":
        report.signers_expected = tuple(v.lower() for v in lock.validators)
    with tempfile.TemporaryDirectory(prefix="chainops-smoke-") as scratch, _signals_raise(), Network() as network:
        root = Path(scratch)
        for pod in pods:
            network.attach(pod)
            pod.root = root / pod.name
        hosts = root / "hosts"
        hosts.write_text(hosts_file(pods, namespace, objects))
        mounted = {pod.name: materialise(pod, objects, secrets_data) for pod in pods}
        try:
            for pod in pods:
                for init in pod.spec.get("initContainers", []):
                    env = container_env(init, pod, config_maps, secrets_data)
                    done = subprocess.run(_sandbox_command(pod, init, mounted[pod.name], chosen, hosts, env),
                                          capture_output=True, text=True, timeout=120, check=False, preexec_fn=prepare_child)
                    if done.returncode != 0:
                        report.pods[pod.name] = f"init container {init['name']} exited {done.returncode}: {done.stderr.strip()[-400:]}"
                        raise SmokeError(f"{pod.name}: {report.pods[pod.name]}")
                for container in pod.spec["containers"]:
                    env = container_env(container, pod, config_maps, secrets_data)
                    log = (pod.root / f"{container['name']}.log").open("wb")
                    pod.processes.append(subprocess.Popen(
                        _sandbox_command(pod, container, mounted[pod.name], chosen, hosts, env),
                        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, preexec_fn=prepare_child,
                    ))
                report.pods[pod.name] = "starting"
            deadline = time.monotonic() + seconds
            paths = {p.name: path for p in pods if (path := _ipc_path(p, mounted[p.name])) is not None}
            tx_hash: str | None = None
            tx_tried = False
            while time.monotonic() < deadline:
                for pod in pods:
                    if any(proc.poll() is not None for proc in pod.processes):
                        report.pods[pod.name] = f"exited {[proc.poll() for proc in pod.processes]}"
                    elif all(probe_ok(pod, c, c.get("readinessProbe")) for c in pod.spec["containers"]):
                        report.pods[pod.name] = "ready"
                if any(s.startswith("exited") for s in report.pods.values()):
                    break
                _check_network(report, pods, paths, lock, config_maps)
                if not tx_tried and report.block >= 1 and all(v == "ready" for v in report.pods.values()):
                    tx_tried = True
                    try:
                        tx_hash = _send_transaction(report, paths, pods, secrets_data, lock)
                        report.transaction = "tx not mined" if tx_hash else "no generated account"
                    except (OSError, SmokeError, ValueError) as exc:
                        report.transaction = f"tx not sent: {exc}"
                if tx_hash and report.transaction == "tx not mined":
                    with contextlib.suppress(OSError, SmokeError):
                        receipt = ipc(next(iter(paths.values())), "eth_getTransactionReceipt", [tx_hash])
                        if receipt and receipt.get("status") == "0x1":
                            report.transaction = "tx mined"
                if report.ok:
                    break
                time.sleep(1)
        finally:
            for pod in pods:
                for proc in pod.processes:
                    with contextlib.suppress(ProcessLookupError):
                        proc.terminate()
                for proc in pod.processes:
                    try:
                        proc.wait(timeout=10)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
                for log in sorted(pod.root.glob("*.log")):
                    report.log_tails[f"{pod.name}/{log.stem}"] = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
    return report


def decode_secret(document: Mapping[str, Any]) -> dict[str, bytes]:
    data = {k: base64.b64decode(v) for k, v in (document.get("data") or {}).items()}
    data.update({k: v.encode() for k, v in (document.get("stringData") or {}).items()})
    return data


def committed_secrets(files: Mapping[str, bytes], environment: str, identity: AgeIdentity) -> dict[str, dict[str, bytes]]:
    """Secret name -> its data, decrypted as the cluster's controller would (SOPS with the
    pipeline identity, plaintext as it is). SealedSecrets need the controller's key: refused."""
    found: dict[str, dict[str, bytes]] = {}
    sops_files = []
    for path, data in sorted(files.items()):
        base = path.rsplit("/", 1)[-1]
        if not path.startswith(f"rendered/{environment}/") or not base.endswith(".yaml"):
            continue
        if base.startswith("sealedsecret-"):
            raise SmokeRefused(f"{path}: a SealedSecret opens only with the cluster controller's key; smoke boots sops and plaintext environments")
        if not base.startswith("secret-"):
            continue
        if is_sops_encrypted(data):
            sops_files.append(data)
        elif is_plaintext_secret(data):
            document = yaml.safe_load(data)
            found[document["metadata"]["name"]] = decode_secret(document)
    if sops_files:
        with SopsSealer(identity) as sealer:
            for document in sealer.unseal_many(sops_files):
                found[document["metadata"]["name"]] = decode_secret(document)
    return found

