"""The charts in chart_sources/: snapshots, Kubernetes schema, kustomize, client flags, drift,
cross-references between objects and bad values.

Golden snapshots live in tests/golden/<env>/<chart>/<kind>-<name>.yaml, one file per object
of the example environments plus one besu-ibft2 environment defined here (every profile).
They are rendered from fixed test keys (sha256 of a label; never used anywhere else), so the
output is deterministic; Secret values are redacted (keystores are random per run). After a
deliberate chart change, regenerate them and review the diff like any other change:

    CHAINOPS_UPDATE_GOLDEN=1 .venv/bin/pytest tests/render/test_charts.py -k golden

Everything else here checks the rendered objects by a second route: the Kubernetes OpenAPI
schemas, `kubectl kustomize`, flag lists taken from the clients' own sources (kept in the
charts, see chart_sources/*/flags/), public keys re-derived with eth-keys' pure-Python
backend, and checks written against the Kubernetes and client rules themselves.
"""

from __future__ import annotations

import base64
import difflib
import hashlib
import json
import os
import re
import shutil
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from eth_keys import KeyAPI
from eth_keys.backends import NativeECCBackend

from pipelines.lib.chart_values import chart_plan, output_problems, render_objects
from pipelines.lib.config import ConfigError, EnvironmentConfig, load_environment, parse_environment
from pipelines.lib.keys import (
    AccountIdentity,
    KeySet,
    NodeIdentity,
    PrivateKeyMaterial,
    desired_nodes,
    make_keystore,
    needs_keystore,
)
from pipelines.lib.kustomize import kustomization, kustomize_build
from pipelines.lib.manifests import object_filename, validator_for
from pipelines.lib.profiles import PROFILES
from pipelines.lib.render import RenderedObject, RenderError, load_chart, render_chart
from pipelines.lib.stages.genesis import compute_genesis
from pipelines.lib.yaml_io import dump_yaml, load_yaml_all
from tests.conftest import EXAMPLES, REPO_ROOT, commit_count, git
from tests.yaml_reader import read_yaml

CHARTS = REPO_ROOT / "chart_sources"
GOLDEN = Path(__file__).parents[1] / "golden"
UPDATE_GOLDEN = os.environ.get("CHAINOPS_UPDATE_GOLDEN") == "1"
NATIVE = KeyAPI(NativeECCBackend)
EXAMPLE_ENVS = ("dev", "seed", "staging")
REDACTED = "<redacted>"

# besu-ibft2 has no example environment; this one covers it and the optional features.
IBFT_ENV = """apiVersion: chainops/v1
network: {chainId: 48721, client: besu, consensus: ibft2, blockPeriodSeconds: 2}
nodes: {validators: 4, rpc: 1}
accounts:
  - {name: faucet, balance: 10 ether}
kubernetes:
  namespace: chain-ibft
  storage: {size: 5Gi, storageClassName: fast-ssd}
  rpcIngress: {host: rpc.ibft.example.com}
values:
  besu-node:
    serviceMonitor: {enabled: true, labels: {release: prometheus}}
    rpc:
      corsOrigins: ["https://wallet.example.com"]
      ingress: {className: nginx, tlsSecretName: rpc-ibft-tls, annotations: {cert-manager.io/cluster-issuer: letsencrypt}}
  network:
    networkPolicy: {rpcClientNamespaces: [dapps]}
"""
# geth without a bootnode: the validators become static peers in config.toml.
STATIC_ENV = """apiVersion: chainops/v1
network: {chainId: 1337002, client: geth, consensus: clique, blockPeriodSeconds: 5}
nodes: {validators: 3, rpc: 2, bootnodes: 0}
ethstats: {enabled: true}
kubernetes:
  namespace: chain-static
  rpcIngress: {host: rpc.static.example.com}
values:
  geth-node:
    serviceMonitor: {enabled: true}
    rpc: {corsDomains: ["https://app.example.com"], wsOrigins: ["https://app.example.com"], extraVhosts: [rpc.internal.example.com]}
"""
# Day-2 peering (tests/test_peers.py has the end-to-end side): external peers, per-pod p2p
# Services with the advertised address in the NAT flags, Besu's node allowlist.
EXTERNAL_PEERS = [
    "enode://" + NATIVE.PrivateKey(b"\x07" * 32).public_key.to_bytes().hex() + "@203.0.113.9:30303?discport=30301",
    "enode://" + NATIVE.PrivateKey(b"\x08" * 32).public_key.to_bytes().hex() + "@peer.example.com:30304",
]
PEERS_ENV = f"""apiVersion: chainops/v1
network: {{chainId: 48722, client: besu, consensus: qbft, externalPeers: {json.dumps(EXTERNAL_PEERS)}, permissioning: {{nodes: true}}}}
nodes: {{validators: 4, rpc: 1}}
kubernetes:
  namespace: chain-peers
  p2pExposure: loadBalancer
  p2pAdvertisedHosts: {{validator-0: 198.51.100.10, validator-1: 198.51.100.11, validator-2: 198.51.100.12, validator-3: 198.51.100.13, rpc-0: 198.51.100.20}}
values:
  besu-node: {{p2pService: {{annotations: {{service.beta.kubernetes.io/aws-load-balancer-type: nlb}}}}}}
"""
GETH_PEERS_ENV = f"""apiVersion: chainops/v1
network: {{chainId: 48723, client: geth, consensus: clique, externalPeers: {json.dumps(EXTERNAL_PEERS)}}}
nodes: {{validators: 2, rpc: 1, bootnodes: 1}}
kubernetes: {{namespace: chain-gethpeers, p2pExposure: nodePort, p2pAdvertisedHost: 198.51.100.30, p2pNodePortBase: 31000}}
"""
EXTRA_ENVS = {"ibft": IBFT_ENV, "static": STATIC_ENV, "peers": PEERS_ENV, "gethpeers": GETH_PEERS_ENV}
ALL_ENVS = (*EXAMPLE_ENVS, *EXTRA_ENVS)
GOLDEN_ENVS = (*EXAMPLE_ENVS, "ibft")


# -- rendering with fixed keys -----------------------------------------------------------
def fixed_private_key(environment: str, name: str) -> bytes:
    return hashlib.sha256(f"chainops-test-only/{environment}/{name}".encode()).digest()


def public_key_hex(private_key: bytes) -> str:
    """Derived with eth-keys' pure-Python backend, not chainops' coincurve."""
    return NATIVE.PrivateKey(private_key).public_key.to_bytes().hex()


def fixed_keys(config: EnvironmentConfig) -> tuple[KeySet, dict[str, PrivateKeyMaterial]]:
    """The environment's nodes and accounts with fixed private keys (a fixed lock)."""
    privates: dict[str, PrivateKeyMaterial] = {}
    nodes = []
    for name, role in desired_nodes(config):
        key = fixed_private_key(config.name, name)
        keystore, password = make_keystore(key) if needs_keystore(config, role) else (None, None)
        privates[name] = PrivateKeyMaterial(key.hex(), keystore, password)
        public = NATIVE.PrivateKey(key).public_key
        nodes.append(NodeIdentity(name, role, public.to_checksum_address(), public.to_bytes().hex()))
    accounts = []
    for spec in config.spec.accounts:
        if spec.name:
            key = fixed_private_key(config.name, f"account/{spec.name}")
            keystore, password = make_keystore(key)
            privates[f"account/{spec.name}"] = PrivateKeyMaterial(key.hex(), keystore, password)
            accounts.append(AccountIdentity(spec.name, NATIVE.PrivateKey(key).public_key.to_checksum_address()))
    if config.spec.ethstats.enabled:
        privates["shared/ethstats"] = PrivateKeyMaterial(fixed_private_key(config.name, "ethstats").hex())
    return KeySet(tuple(nodes), tuple(accounts), b""), privates


@dataclass
class Rendered:
    config: EnvironmentConfig
    keys: KeySet
    privates: dict[str, PrivateKeyMaterial]
    genesis_hash: str
    objects: list[RenderedObject]

    def path(self, rendered: RenderedObject) -> str:
        return f"{rendered.chart}/{object_filename(rendered.obj)}"

    def files(self, redact: bool = False) -> dict[str, str]:
        return {self.path(r): dump_yaml(redacted(r.obj) if redact else r.obj) for r in self.objects}

    def all(self, kind: str) -> list[dict]:
        return [r.obj for r in self.objects if r.obj["kind"] == kind]

    def get(self, kind: str, name: str) -> dict:
        [obj] = [o for o in self.all(kind) if o["metadata"]["name"] == name]
        return obj


def redacted(obj: dict) -> dict:
    if obj["kind"] != "Secret":
        return obj
    return {**obj, "data": {key: REDACTED for key in obj["data"]}}


def environment(name: str, extra: str = "", replace: tuple[str, str] | None = None) -> EnvironmentConfig:
    """An example environment or one defined here, optionally edited or with YAML appended."""
    text = EXTRA_ENVS[name] if name in EXTRA_ENVS else (EXAMPLES / f"{name}.yaml").read_text()
    if replace:
        assert replace[0] in text
        text = text.replace(*replace)
    return parse_environment(name, text + extra, f"environments/{name}.yaml")


def render(config: EnvironmentConfig, keys: tuple[KeySet, dict] | None = None) -> Rendered:
    keyset, privates = keys or fixed_keys(config)
    genesis = compute_genesis(config, keyset)
    objects = render_objects(config, keyset, genesis.block_hash, genesis.json_bytes, privates, CHARTS)
    return Rendered(config, keyset, privates, genesis.block_hash, objects)


def render_like(base: Rendered, config: EnvironmentConfig) -> Rendered:
    """Render a changed environment with the base's key material wherever a node is kept
    (fixed keys are the same by name; this also keeps the random keystores equal)."""
    keys, privates = fixed_keys(config)
    privates.update({name: m for name, m in base.privates.items() if name in privates})
    return render(config, (keys, privates))


@pytest.fixture(scope="module")
def rendered() -> dict[str, Rendered]:
    return {name: render(environment(name)) for name in ALL_ENVS}


def pod_templates(r: Rendered) -> Iterator[tuple[dict, dict]]:
    for obj in r.objects:
        if obj.obj["kind"] in ("StatefulSet", "Deployment"):
            yield obj.obj, obj.obj["spec"]["template"]


def containers(template: dict) -> list[dict]:
    return template["spec"].get("initContainers", []) + template["spec"]["containers"]


def selects(selector: dict, labels: dict) -> bool:
    """Kubernetes label selector semantics (matchLabels and In/NotIn/Exists/DoesNotExist)."""
    match = selector.get("matchLabels", {}) if "matchLabels" in selector or "matchExpressions" in selector else selector
    if any(labels.get(k) != v for k, v in match.items()):
        return False
    for expr in selector.get("matchExpressions", []):
        value = labels.get(expr["key"])
        ok = {
            "In": value in expr.get("values", []),
            "NotIn": value not in expr.get("values", []),
            "Exists": expr["key"] in labels,
            "DoesNotExist": expr["key"] not in labels,
        }[expr["operator"]]
        if not ok:
            return False
    return True


# -- golden snapshots ----------------------------------------------------------------------
@pytest.mark.parametrize("env", GOLDEN_ENVS)
def test_golden_snapshot(rendered, env):
    files = rendered[env].files(redact=True)
    directory = GOLDEN / env
    if UPDATE_GOLDEN:
        shutil.rmtree(directory, ignore_errors=True)
        for path, text in files.items():
            (directory / path).parent.mkdir(parents=True, exist_ok=True)
            (directory / path).write_text(text)
    on_disk = {str(p.relative_to(directory)): p.read_text() for p in sorted(directory.glob("*/*.yaml"))}
    assert on_disk, f"no golden files in {directory}; run with CHAINOPS_UPDATE_GOLDEN=1 and review them"
    assert sorted(files) == sorted(on_disk), "objects added or removed; regenerate (see module docstring)"
    diffs = [
        "".join(difflib.unified_diff(on_disk[p].splitlines(True), files[p].splitlines(True), f"golden/{env}/{p}", "rendered"))
        for p in sorted(files)
        if files[p] != on_disk[p]
    ]
    assert not diffs, "rendered output differs from the golden files:\n" + "\n".join(diffs)[:20000]


def test_goldens_hold_no_key_material(rendered):
    for env in GOLDEN_ENVS:
        r = rendered[env]
        texts = "".join(p.read_text() for p in (GOLDEN / env).glob("*/*.yaml"))
        for material in r.privates.values():
            for value in (material.private_key, material.password):
                if value:
                    assert value not in texts and base64.b64encode(value.encode()).decode() not in texts


# -- schema, kustomize, layout ---------------------------------------------------------------
@pytest.mark.parametrize("env", ALL_ENVS)
def test_every_object_validates_strictly(rendered, env):
    validator = validator_for()
    problems = [str(p) for r in rendered[env].objects for p in validator.validate(r.obj, r.chart)]
    assert problems == []


def test_every_profile_is_covered():
    assert {environment(e).profile.name for e in ALL_ENVS} == set(PROFILES)


@pytest.mark.parametrize("env", ALL_ENVS)
def test_kustomize_builds_the_rendered_directory(rendered, env, tmp_path):
    files = rendered[env].files()
    for path, text in files.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    (tmp_path / "kustomization.yaml").write_text(dump_yaml(kustomization(list(files))))
    built = load_yaml_all(kustomize_build(tmp_path))
    expected = sorted((r.obj["kind"], r.obj["metadata"]["name"]) for r in rendered[env].objects)
    assert sorted((o["kind"], o["metadata"]["name"]) for o in built) == expected


@pytest.mark.parametrize("chart", ["network", "besu-node", "geth-node", "bootnode", "ethstats", "monitoring"])
def test_chart_layout_and_documented_values(chart):
    meta = read_yaml((CHARTS / chart / "Chart.yaml").read_text())
    assert meta["apiVersion"] == "v2" and meta["name"] == chart and meta["version"] and meta["appVersion"]
    schema = json.loads((CHARTS / chart / "values.schema.json").read_text())
    loaded = load_chart(CHARTS / chart)
    assert schema["additionalProperties"] is False
    assert set(loaded.defaults) == set(schema["properties"]) == set(schema["required"])
    text = (CHARTS / chart / "values.yaml").read_text()
    undocumented = [key for key in loaded.defaults if not re.search(rf"# --[^\n]*\n(#[^\n]*\n)*{key}:", text)]
    nested_doc = [key for key in undocumented if re.search(rf"^{key}:\n(  [^\n]*\n)*  # --", text, re.M)]
    assert sorted(set(undocumented) - set(nested_doc)) == []


# -- client flags ------------------------------------------------------------------------------
def flag_spec(chart: str, tag: str) -> dict[str, Any]:
    path = CHARTS / chart / "flags" / f"{tag}.yaml"
    assert path.is_file(), f"no flag list for {chart} image tag {tag}: add {path.relative_to(REPO_ROOT)} from the client's sources"
    return read_yaml(path.read_text())


def unknown_flags(tokens: list[str], spec: dict[str, Any]) -> list[str]:
    """Tokens the client would reject: flags not in its list, or an unknown subcommand."""
    bad, command_seen = [], False
    for token in tokens:
        if token.startswith("-"):
            if token.lstrip("-").split("=", 1)[0] not in spec["flags"]:
                bad.append(token)
        elif not command_seen:
            command_seen = True
            if token not in spec["commands"]:
                bad.append(token)
    return bad


def command_tokens(container: dict) -> tuple[str, list[str]]:
    """(binary, flags and arguments) of a container, including flags added by a shell wrapper."""
    command = container.get("command", [])
    args = list(container.get("args", []))
    if command[:1] in (["/bin/sh"], ["sh"]):
        script = command[2]
        binary = re.search(r"\bexec (\S+)", script).group(1).rsplit("/", 1)[-1]
        return binary, args + re.findall(r"(?<![\w/])--?[A-Za-z][\w.-]*(?==|\s|$)", script.replace('"$@"', ""))
    binary = command[0].rsplit("/", 1)[-1] if command else {"geth": "geth", "init-genesis": "geth"}[container["name"]]
    return binary, args


CHART_OF_BINARY = {"geth": "geth-node", "besu": "besu-node", "bootnode": "bootnode"}


@pytest.mark.parametrize("env", ALL_ENVS)
def test_command_lines_use_only_flags_of_the_pinned_client(rendered, env):
    checked = 0
    for _, template in pod_templates(rendered[env]):
        for container in containers(template):
            if container["name"] == "ethstats":
                assert "args" not in container and "command" not in container
                continue
            binary, tokens = command_tokens(container)
            tag = container["image"].rsplit(":", 1)[1]
            assert unknown_flags(tokens, flag_spec(CHART_OF_BINARY[binary], tag)) == [], container["name"]
            checked += len(tokens)
    assert checked >= 10


@pytest.mark.parametrize("env", ALL_ENVS)
def test_config_files_use_only_settings_of_the_pinned_client(rendered, env):
    r = rendered[env]
    client = r.config.spec.network.client
    tag = r.config.images[client].rsplit(":", 1)[1]
    spec = flag_spec(f"{client}-node", tag)
    for configmap in r.all("ConfigMap"):
        if "config.toml" not in configmap["data"]:
            continue
        settings = tomllib.loads(configmap["data"]["config.toml"])
        if client == "besu":  # Besu's config file keys are its option names
            assert [k for k in settings if k not in spec["flags"]] == []
        else:
            paths = [f"{table}.{sub}.{key}" for table, t in settings.items() for sub, s in t.items() for key in s]
            assert paths and [p for p in paths if p not in spec["configKeys"]] == []


def test_flag_lists_tell_client_versions_apart():
    new, old = flag_spec("geth-node", "v1.13.15"), flag_spec("geth-node", "v1.11.6")
    assert unknown_flags(["--miner.threads=1", "--ethash.dagdir=/d"], new) == ["--miner.threads=1", "--ethash.dagdir=/d"]
    assert unknown_flags(["--miner.threads=1", "--ethash.dagdir=/d"], old) == []
    assert unknown_flags(["--rpcaddr=0.0.0.0", "--datadir=/d", "import"], old) == ["--rpcaddr=0.0.0.0", "import"]
    besu = flag_spec("besu-node", "26.8.0")
    assert unknown_flags(["--miner-enabled", "--rpc-http-api=ETH"], besu) == ["--miner-enabled"]  # removed in 25.12


def test_every_pinned_image_has_a_flag_list():
    for profile in PROFILES.values():
        for image, chart in (("geth", "geth-node"), ("besu", "besu-node"), ("bootnode", "bootnode")):
            if image in profile.images:
                spec = flag_spec(chart, profile.pinned_tag(image))
                assert spec["version"] == profile.pinned_tag(image)


def test_shell_wrapper_flags_are_checked_too():
    container = {"name": "geth", "command": ["/bin/sh", "-ec", 'exec geth "$@" --miner.etherbase="$$(cat /k)" --bogus', "geth"]}
    binary, tokens = command_tokens({**container, "args": ["--mine"]})
    assert binary == "geth" and tokens == ["--mine", "--miner.etherbase", "--bogus"]
    assert unknown_flags(tokens, flag_spec("geth-node", "v1.13.15")) == ["--bogus"]


# -- what the clients require (facts from their sources) ---------------------------------------
def flags_of(r: Rendered, group: str) -> list[str]:
    template = r.get("StatefulSet", group)["spec"]["template"]
    return command_tokens(template["spec"]["containers"][0])[1]


def test_clique_signers_unlock_and_seal_without_http(rendered):
    for env in ("dev", "static"):
        flags = flags_of(rendered[env], "validator")
        # geth refuses to unlock an account while HTTP or WebSocket is enabled (cmd/geth/main.go).
        assert not any(f.split("=")[0] in ("--http", "--ws", "--allow-insecure-unlock") for f in flags)
        assert {"--mine", "--unlock", "--miner.etherbase"} <= {f.split("=")[0] for f in flags}
        keys = rendered[env].get("StatefulSet", "validator")["spec"]["template"]["spec"]["volumes"][-1]
        paths = {i["path"] for s in keys["projected"]["sources"] for i in s["secret"]["items"]}
        assert "validator-0/keystore/keystore.json" in paths and "validator-0/password" in paths


def test_ethash_miners_mine_into_the_data_volume(rendered):
    flags = flags_of(rendered["seed"], "validator")
    assert "--mine" in flags and "--miner.threads=1" in flags and "--ethash.dagdir=/data/.ethash" in flags
    assert not any(f.startswith(("--unlock", "--keystore", "--http")) for f in flags)
    image = rendered["seed"].get("StatefulSet", "validator")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "ethereum/client-go:v1.11.6"


def test_rpc_nodes_listen_on_the_pod_address_with_their_service_names_as_vhosts(rendered):
    for env, ingress in (("dev", None), ("static", "rpc.static.example.com")):
        flags = dict(f.split("=", 1) if "=" in f else (f, "") for f in flags_of(rendered[env], "rpc"))
        namespace = rendered[env].config.spec.kubernetes.namespace
        assert flags["--http.addr"] == "0.0.0.0" and flags["--ws.addr"] == "0.0.0.0"
        vhosts = flags["--http.vhosts"].split(",")
        assert "*" not in vhosts and f"rpc-jsonrpc.{namespace}.svc.cluster.local" in vhosts
        assert (ingress in vhosts) if ingress else len(vhosts) == 5
        assert "--mine" not in flags


def test_every_node_reports_to_ethstats_when_enabled(rendered):
    for env in ALL_ENVS:
        r = rendered[env]
        enabled = r.config.spec.ethstats.enabled
        assert bool(r.all("Deployment")) == enabled
        for _, template in pod_templates(r):
            for container in template["spec"]["containers"]:
                if container["name"] in ("geth", "besu"):
                    ethstats = [f for f in command_tokens(container)[1] if f.startswith("--ethstats=")]
                    assert len(ethstats) == int(enabled), (env, container["name"])
                    if enabled:
                        # nodename:secret@host:port; the secret only as a reference to the Secret.
                        assert ethstats[0].startswith("--ethstats=$(POD_NAME):$(ETHSTATS_SECRET)@")


# -- cross-references between objects ----------------------------------------------------------
def enode_parts(enode: str) -> tuple[str, str, int]:
    match = re.fullmatch(r"enode://([0-9a-f]{128})@([a-z0-9.-]+):([0-9]+)", enode)
    assert match, enode
    return match.group(1), match.group(2), int(match.group(3))


def check_enode(r: Rendered, enode: str, port_name: str) -> None:
    """The enode's key is the pod's fixed key and its host a pod of a rendered StatefulSet."""
    public_key, host, port = enode_parts(enode)
    namespace = r.config.spec.kubernetes.namespace
    pod, service, rest = host.split(".", 2)
    assert rest == f"{namespace}.svc.cluster.local"
    assert public_key == public_key_hex(fixed_private_key(r.config.name, pod))
    statefulset = next(s for s in r.all("StatefulSet") if s["spec"]["serviceName"] == service)
    assert int(pod.rsplit("-", 1)[1]) < statefulset["spec"]["replicas"] and pod.startswith(statefulset["metadata"]["name"])
    headless = r.get("Service", service)
    assert headless["spec"]["clusterIP"] == "None" and headless["spec"]["publishNotReadyAddresses"] is True
    ports = {p["name"]: p["port"] for p in headless["spec"]["ports"]}
    assert ports[port_name] == port


@pytest.mark.parametrize("env", ALL_ENVS)
def test_peer_lists_name_real_pods_with_their_keys(rendered, env):
    r = rendered[env]
    bootnodes: list[str] = []
    for _, template in pod_templates(r):
        for container in template["spec"]["containers"]:
            if container["name"] in ("geth", "besu"):
                flags = [f for f in command_tokens(container)[1] if f.startswith("--bootnodes=")]
                for flag in flags:
                    listed = flag.split("=", 1)[1].split(",")
                    external = list(r.config.spec.network.externalPeers)
                    assert not external or listed[-len(external):] == external  # geth: external peers bootstrap discovery too
                    bootnodes += listed
    static: list[str] = []
    for configmap in r.all("ConfigMap"):
        if "static-nodes.json" in configmap["data"]:
            static += json.loads(configmap["data"]["static-nodes.json"])
            assert tomllib.loads(configmap["data"]["config.toml"])["bootnodes"] == static
        elif configmap["metadata"]["name"] == "geth-config":
            static += tomllib.loads(configmap["data"]["config.toml"])["Node"]["P2P"]["StaticNodes"]
    # network.externalPeers come last, as the environment file gives them, in both lists.
    external = list(r.config.spec.network.externalPeers)
    if external:
        assert static[-len(external):] == external
        static = static[: -len(external)]
        bootnodes = [b for b in bootnodes if b not in external]
    for enode in bootnodes:
        check_enode(r, enode, "discovery")
    for enode in static:
        check_enode(r, enode, "p2p-tcp")
    # Static peers are exactly the validators (RPC nodes come and go without restarting
    # anyone); geth with bootnodes discovers its peers instead.
    validators = [n.name for n in r.keys.validators]
    pods = [enode_parts(e)[1].split(".")[0] for e in static]
    uses_bootnodes = r.config.spec.network.client == "geth" and r.config.bootnode_count > 0
    assert pods == ([] if uses_bootnodes else validators)
    assert len(set(bootnodes)) == (r.config.bootnode_count if uses_bootnodes else 0)


@pytest.mark.parametrize("env", ALL_ENVS)
def test_references_resolve(rendered, env):
    r = rendered[env]
    secrets = {s["metadata"]["name"]: s["data"] for s in r.all("Secret")}
    configmaps = {c["metadata"]["name"] for c in r.all("ConfigMap")}
    pods = [(workload, template) for workload, template in pod_templates(r)]
    for workload, template in pods:
        spec = template["spec"]
        assert selects(workload["spec"]["selector"], template["metadata"]["labels"])
        volumes = {v["name"]: v for v in spec["volumes"]}
        claims = {c["metadata"]["name"] for c in workload["spec"].get("volumeClaimTemplates", [])}
        for container in containers(template):
            assert {m["name"] for m in container.get("volumeMounts", [])} <= set(volumes) | claims
            for env_var in container.get("env", []):
                ref = env_var.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] in secrets[ref["name"]]
        for volume in volumes.values():
            if "configMap" in volume:
                assert volume["configMap"]["name"] in configmaps
            for source in volume.get("projected", {}).get("sources", []):
                assert {i["key"] for i in source["secret"]["items"]} <= set(secrets[source["secret"]["name"]])
        if workload["kind"] == "StatefulSet":
            service = r.get("Service", workload["spec"]["serviceName"])
            assert selects(service["spec"]["selector"], template["metadata"]["labels"])
            assert claims <= {m["name"] for c in containers(template) for m in c["volumeMounts"]}
    # The labels of each pod as the controller creates it (a StatefulSet adds the pod's name).
    instances = [
        (t, {**t["metadata"]["labels"], **({"statefulset.kubernetes.io/pod-name": f"{w['metadata']['name']}-{i}"} if w["kind"] == "StatefulSet" else {})})
        for w, t in pods for i in range(w["spec"].get("replicas", 1))
    ]
    for service in r.all("Service"):
        matched = [t for t, labels in instances if selects(service["spec"]["selector"], labels)]
        assert matched, service["metadata"]["name"]
        for port in service["spec"]["ports"]:
            names = {(p["name"], p["protocol"]) for t in matched for c in t["spec"]["containers"] for p in c["ports"]}
            assert (port["targetPort"], port["protocol"]) in names
    for pdb in r.all("PodDisruptionBudget"):
        assert any(w["spec"]["selector"] == pdb["spec"]["selector"] for w, _ in pods)
    for ingress in r.all("Ingress"):
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                assert backend["port"]["name"] in {p["name"] for p in r.get("Service", backend["name"])["spec"]["ports"]}
    for monitor in r.all("ServiceMonitor"):
        ports = {p["name"] for s in r.all("Service") if selects(monitor["spec"]["selector"], s["metadata"]["labels"])
                 for p in s["spec"]["ports"]}
        assert {e["port"] for e in monitor["spec"]["endpoints"]} <= ports


@pytest.mark.parametrize("env", ALL_ENVS)
def test_network_policies_name_ports_the_selected_pods_have(rendered, env):
    r = rendered[env]
    namespace = r.get("Namespace", r.config.spec.kubernetes.namespace)
    policies = {p["metadata"]["name"]: p for p in r.all("NetworkPolicy")}
    assert policies["default-deny"]["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    templates = [t for _, t in pod_templates(r)]
    for policy in policies.values():
        selected = [t for t in templates if selects(policy["spec"]["podSelector"], t["metadata"]["labels"])]
        assert selected, policy["metadata"]["name"]
        ports = {(p["name"], p["protocol"]) for t in selected for c in t["spec"]["containers"] for p in c["ports"]}
        for rule in policy["spec"].get("ingress", []):
            named = {(p["port"], p["protocol"]) for p in rule["ports"]}
            assert named & ports, policy["metadata"]["name"]  # every rule admits something real
            for peer in rule.get("from", []):  # no `from`: any source (p2pExposure)
                if "podSelector" in peer and peer["podSelector"]:
                    assert any(selects(peer["podSelector"], t["metadata"]["labels"]) for t in templates)
    # Every container port a peer needs is admitted by some policy.
    p2p = policies["allow-p2p"]["spec"]["ingress"][0]["ports"]
    for template in templates:
        component = template["metadata"]["labels"]["app.kubernetes.io/component"]
        if component in ("validator", "rpc", "bootnode"):
            names = {p["name"] for c in template["spec"]["containers"] for p in c["ports"]}
            assert names & {p["port"] for p in p2p}
    if r.config.spec.kubernetes.rpcIngress:
        sources = policies["allow-rpc"]["spec"]["ingress"][0]["from"]
        assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}} in sources


@pytest.mark.parametrize("env", ALL_ENVS)
def test_pods_meet_pod_security_restricted_and_have_resources_and_probes(rendered, env):
    for _, template in pod_templates(rendered[env]):
        spec = template["spec"]
        context = spec["securityContext"]
        assert context["runAsNonRoot"] is True and context["runAsUser"] > 0
        assert context["seccompProfile"]["type"] == "RuntimeDefault"
        assert spec["automountServiceAccountToken"] is False
        assert not any(k in spec for k in ("hostNetwork", "hostPID", "hostIPC"))
        allowed = {"configMap", "secret", "projected", "emptyDir", "persistentVolumeClaim", "downwardAPI", "name"}
        assert all(set(v) <= allowed for v in spec["volumes"])
        for container in containers(template):
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"]
            assert sc["readOnlyRootFilesystem"] is True
            assert {"cpu", "memory"} <= set(container["resources"]["requests"]) and "memory" in container["resources"]["limits"]
            ports = {p["name"] for p in container.get("ports", [])}
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                if probe in container:
                    handler = container[probe].get("tcpSocket") or container[probe].get("httpGet")
                    assert handler["port"] in ports
            long_running = container in spec["containers"] and container["name"] != "bootnode"
            assert not long_running or {"livenessProbe", "readinessProbe"} <= set(container)


# -- drift-free output ---------------------------------------------------------------------------
def empties(value: Any, path: str = "$") -> list[str]:
    if value is None or value == {} or value == []:
        return [path]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in empties(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in empties(v, f"{path}[{i}]")]
    return []


def unsorted_mappings(node: yaml.Node, path: str = "$") -> list[str]:
    """Mappings whose keys are not in sorted order, in the file as written."""
    found = []
    if isinstance(node, yaml.MappingNode):
        keys = [k.value for k, _ in node.value]
        if keys != sorted(keys):
            found.append(path)
        for key, value in node.value:
            found += unsorted_mappings(value, f"{path}.{key.value}")
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            found += unsorted_mappings(item, f"{path}[{i}]")
    return found


@pytest.mark.parametrize("env", ALL_ENVS)
def test_output_is_drift_free(rendered, env):
    r = rendered[env]
    files = r.files()
    assert len(files) == len(r.objects), "one object per file"
    for path, text in files.items():
        obj = read_yaml(text)
        # Only selectors may be empty: {} there means "all pods / namespaces" and is kept by the API server.
        allowed = {p for p in empties(obj) if p.endswith(("podSelector", "namespaceSelector"))}
        assert set(empties(obj)) - allowed == set(), path
        assert unsorted_mappings(yaml.compose(text)) == [], path
        assert len(obj["metadata"]["name"]) <= (63 if obj["kind"] in ("Service", "Namespace", "StatefulSet") else 253)
        for claim in obj.get("spec", {}).get("volumeClaimTemplates", []):
            assert claim["apiVersion"] == "v1" and claim["kind"] == "PersistentVolumeClaim"
        labels = [obj["metadata"].get("labels", {}), obj.get("spec", {}).get("template", {}).get("metadata", {}).get("labels", {})]
        assert all(len(v) <= 63 for group in labels for v in group.values())
        assert "helm.sh/chart" in labels[0] and "app.kubernetes.io/managed-by" in labels[0]


def test_output_checks_catch_drift_and_oversized_names():
    obj = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "x" * 53, "annotations": {}, "labels": {"v": "y" * 64}},
        "spec": {"template": {"metadata": {"labels": {"a": "b"}}, "spec": {"volumes": [{"name": "t", "emptyDir": {}}], "nodeSelector": None}},
                 "volumeClaimTemplates": [{"metadata": {"name": "data"}}], "selector": {"matchLabels": {}}},
    }
    problems = "\n".join(output_problems(RenderedObject("demo", "sts.yaml", obj)))
    assert "$.metadata.annotations: empty value" in problems
    assert "$.spec.template.spec.nodeSelector: empty value" in problems
    assert "$.spec.selector.matchLabels: empty value" in problems
    assert "emptyDir" not in problems  # meaningful: a default emptyDir
    assert "at most 52 characters" in problems and "is not a label value" in problems
    assert "volumeClaimTemplates[0]: set apiVersion v1 and kind PersistentVolumeClaim" in problems


def test_secrets_values_appear_only_in_secrets(rendered):
    for env in ALL_ENVS:
        r = rendered[env]
        public = "".join(dump_yaml(o.obj) for o in r.objects if o.obj["kind"] != "Secret")
        for material in r.privates.values():
            for value in (material.private_key, material.password):
                if value:
                    assert value not in public and base64.b64encode(value.encode()).decode() not in public


# -- checksums: pods roll when what they read changes, and only then ------------------------------
def pod_annotations(r: Rendered, kind: str, name: str) -> dict[str, str]:
    return r.get(kind, name)["spec"]["template"]["metadata"]["annotations"]


def test_checksums_follow_genesis_keys_and_the_ethstats_secret(rendered):
    r = rendered["staging"]
    ws_secret = base64.b64decode(r.get("Secret", "ethstats")["data"]["WS_SECRET"]).decode()
    assert pod_annotations(r, "Deployment", "ethstats")["checksum/secret"] == hashlib.sha256(ws_secret.encode()).hexdigest()
    for group in ("validator", "rpc"):
        annotations = pod_annotations(r, "StatefulSet", group)
        assert annotations["checksum/ethstats"] == hashlib.sha256(ws_secret.encode()).hexdigest()
        assert annotations["checksum/genesis"] == r.get("ConfigMap", "genesis")["metadata"]["annotations"]["chainops.io/genesis-hash"]


def test_adding_a_validator_rolls_every_besu_pod_adding_an_rpc_node_rolls_no_validator(rendered):
    base = rendered["staging"]
    more_validators = render_like(base, environment("staging", replace=("validators: 4", "validators: 5")))
    for group in ("validator", "rpc"):
        before = pod_annotations(base, "StatefulSet", group)["checksum/config"]
        assert pod_annotations(more_validators, "StatefulSet", group)["checksum/config"] != before
    more_rpc = render_like(base, environment("staging", replace=("rpc: 2", "rpc: 3")))
    before, after = base.files(), more_rpc.files()
    assert {p for p in before if before[p] != after.get(p)} == {"besu-node/statefulset-rpc.yaml"}
    assert set(after) - set(before) == {"besu-node/secret-rpc-2-keys.yaml"}


# -- image tags ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("env", "image", "reference", "expected"),
    [
        ("seed", "geth", "ethereum/client-go:v1.11.5", {"geth-node/statefulset-validator.yaml", "geth-node/statefulset-rpc.yaml"}),
        ("seed", "bootnode", "ethereum/client-go:alltools-v1.11.5", {"bootnode/statefulset-bootnode.yaml"}),
        ("staging", "besu", "hyperledger/besu:26.7.1", {"besu-node/statefulset-validator.yaml", "besu-node/statefulset-rpc.yaml"}),
        ("staging", "ethstats", "ethereumex/eth-stats-dashboard:latest", {"ethstats/deployment-ethstats.yaml"}),
    ],
)
def test_changing_an_image_tag_changes_only_its_workloads(rendered, env, image, reference, expected):
    base = rendered[env]
    changed_config = environment(env, f"images: {{{image}: {reference}}}\n")
    after = render(changed_config, (base.keys, base.privates)).files()
    before = base.files()
    assert set(after) == set(before)
    assert {p for p in before if before[p] != after[p]} == expected
    tag = reference.rsplit(":", 1)[1]
    for path in expected:
        assert reference in after[path]
        workload = read_yaml(after[path])
        labels = (workload["metadata"]["labels"], workload["spec"]["template"]["metadata"]["labels"])
        assert all(lab["app.kubernetes.io/version"] == tag for lab in labels), "the version label names what runs"


def test_changing_the_geth_image_in_an_environment_commits_only_its_statefulsets(run_cli, envs_dir, tmp_path):
    home = tmp_path / "home"
    git_dir = home / "gitops.git"
    assert run_cli("compile", "seed", "--home", home, "--environments", envs_dir).code == 0

    def tree() -> dict[str, str]:
        lines = git(git_dir, "ls-tree", "-r", "main", "rendered/seed").splitlines()
        return {line.split("\t")[1]: line.split()[2] for line in lines}

    before = tree()
    path = envs_dir / "seed.yaml"
    path.write_text(path.read_text() + "images: {geth: ethereum/client-go:v1.11.5}\n")
    result = run_cli("compile", "seed", "--home", home, "--environments", envs_dir)
    assert result.code == 0, result.err
    after = tree()
    assert set(after) == set(before)
    changed = {p for p in before if before[p] != after[p]}
    manifests = {p for p in changed if p.count("/") == 3}  # rendered/seed/<chart>/<kind>-<name>.yaml
    assert manifests == {"rendered/seed/geth-node/statefulset-validator.yaml", "rendered/seed/geth-node/statefulset-rpc.yaml"}
    assert changed - manifests <= {"rendered/seed/README.md"}  # the page for people lists the images


# -- values: precedence and bad values --------------------------------------------------------------
def test_precedence_chart_then_profile_then_environment(rendered):
    seed = rendered["seed"]

    def memory(r: Rendered, group: str) -> str:
        return r.get("StatefulSet", group)["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"]

    defaults = load_chart(CHARTS / "geth-node").defaults["resources"]
    assert memory(seed, "rpc") == defaults["rpc"]["limits"]["memory"]  # chart default
    assert memory(seed, "validator") == PROFILES["geth-ethash"].values["geth-node"]["resources"]["validator"]["limits"]["memory"]
    assert memory(rendered["dev"], "validator") == defaults["validator"]["limits"]["memory"]  # clique: no profile layer
    override = environment("seed", "values: {geth-node: {resources: {validator: {limits: {memory: 8Gi}}}}}\n")
    assert memory(render(override, (seed.keys, seed.privates)), "validator") == "8Gi"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ("{geth-node: {resources: {validator: {limits: {memory: 4}}}}}",
         "chart geth-node: values.resources.validator.limits.memory: 4 is not of type 'string'"),
        ("{geth-node: {rpc: {apiz: [eth]}}}",
         "chart geth-node: values.rpc: Additional properties are not allowed ('apiz' was unexpected)"),
        ("{geth-node: {rpc: {apis: [eth, personal]}}}", "chart geth-node: values.rpc.apis[1]: 'personal' is not one of"),
        ("{network: {networkPolicy: {rpcClientNamespaces: [Not_A_Label]}}}",
         "chart network: values.networkPolicy.rpcClientNamespaces[0]: 'Not_A_Label' does not match"),
        ("{geth-node: {mining: {threads: 0}}}", "chart geth-node: values.mining.threads: 0 is less than the minimum of 1"),
        ("{geth-node: {groups: []}}", "values.geth-node.groups: computed by chainops"),
        ("{bootnode: {image: {tag: v2}}}", "values.bootnode.image.tag: computed by chainops"),
        ("{geth-node: {rpc: {ingress: {host: rpc.example.com}}}}", "values.geth-node.rpc.ingress.host: computed by chainops"),
        ("{geth-node: {storage: {storageClassName: fast}}}", "values.geth-node.storage.storageClassName: computed by chainops"),
    ],
)
def test_bad_values_name_file_chart_and_value_path(values, message):
    config = environment("seed", f"values: {values}\n")
    with pytest.raises(RenderError) as error:
        render(config)
    assert "environments/seed.yaml: " in str(error.value) and message in str(error.value)


def test_out_of_range_replicas_name_chart_and_value_path(rendered):
    seed = rendered["seed"]
    plan = dict(chart_plan(seed.config, seed.keys, seed.genesis_hash, b"{}", seed.privates))
    computed = plan["geth-node"]
    computed["groups"][0]["replicas"] = 65
    with pytest.raises(RenderError, match=r"chart geth-node: values\.groups\[0\]\.replicas: 65 is greater than the maximum of 64"):
        render_chart(load_chart(CHARTS / "geth-node"), {"Name": "seed", "Namespace": "chain-seed", "Service": "chainops"}, computed)
    with pytest.raises(ConfigError, match=r"nodes.validators: 65 is out of range"):  # the file caps it first
        environment("seed", replace=("validators: 3", "validators: 65"))


def test_secret_values_are_never_echoed_in_errors(rendered):
    seed = rendered["seed"]
    computed = dict(chart_plan(seed.config, seed.keys, seed.genesis_hash, b"{}", seed.privates))["ethstats"]
    computed["secret"] = "short secret"
    with pytest.raises(RenderError) as error:
        render_chart(load_chart(CHARTS / "ethstats"), {"Name": "seed", "Namespace": "chain-seed", "Service": "chainops"}, computed)
    assert "values.secret: invalid value" in str(error.value) and "short secret" not in str(error.value)


def test_values_for_a_chart_the_profile_does_not_use_are_refused():
    with pytest.raises(ConfigError, match=r"values: unknown chart\(s\) besu-node; allowed for profile geth-ethash: network, geth-node, bootnode, ethstats, monitoring"):
        environment("seed", "values: {besu-node: {}}\n")


def test_an_rpc_ingress_without_rpc_nodes_is_refused():
    config = environment("static", replace=("rpc: 2", "rpc: 0"))
    with pytest.raises(RenderError, match=r"kubernetes.rpcIngress: an RPC Ingress needs RPC nodes"):
        render(config)


def test_bad_values_stop_compile_before_anything_is_written(run_cli, envs_dir, tmp_path):
    home = tmp_path / "home"
    path = envs_dir / "seed.yaml"
    path.write_text(path.read_text() + "values: {geth-node: {serviceMonitor: {interval: often}}}\n")
    result = run_cli("compile", "--home", home, "--environments", envs_dir)
    assert result.code == 1
    assert "seed.yaml: chart geth-node: values.serviceMonitor.interval: 'often' does not match" in result.err
    assert commit_count(home / "gitops.git") == 0


def test_example_environments_load(tmp_path):
    for env in EXAMPLE_ENVS:
        assert load_environment(EXAMPLES / f"{env}.yaml").name == env
    seed = load_environment(EXAMPLES / "seed.yaml")
    assert seed.profile.name == "geth-ethash"
    assert (seed.spec.nodes.validators, seed.spec.nodes.rpc, seed.bootnode_count, seed.spec.ethstats.enabled) == (3, 2, 1, True)
    assert [a.address for a in seed.spec.accounts] == ["0x8ba1f109551bD432803012645Ac136ddd64DBA72"]


def test_rendering_is_deterministic(rendered):
    seed = rendered["seed"]
    again = render(seed.config, (seed.keys, seed.privates))
    assert again.files() == seed.files()
