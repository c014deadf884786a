"""The network page `rendered/<env>/README.md`: a page for people about one network.

Identity, versions, endpoints, validators, accounts, wallet setup and a Mermaid topology,
all from the files being committed (parsed objects and the lock), deterministic.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from eth_utils import to_checksum_address

from pipelines.lib.config import EnvironmentConfig
from pipelines.lib.layout import env_dir
from pipelines.lib.lock import NetworkLock
from pipelines.lib.markdown import ether, mermaid_label, template_env
from pipelines.lib.profiles import MONITORING_CHART
from pipelines.lib.review import ObjectKey, namespace_of, parse_objects, read_genesis
from pipelines.lib.validator_plan import VOTE_METHODS

MAX_PODS_IN_DIAGRAM = 6


@dataclass(frozen=True)
class Endpoint:
    name: str
    url: str
    note: str


@dataclass(frozen=True)
class Account:
    label: str
    address: str
    balance_ether: str


def network_readme(config: EnvironmentConfig, lock: NetworkLock, files: Mapping[str, bytes]) -> bytes:
    """The environment's page for people: identity, versions, endpoints, validators,
    accounts, wallet setup and a Mermaid topology, all from the files being committed."""
    objects = parse_objects({p: b for p, b in files.items() if p.startswith(env_dir(config.name))})
    genesis = read_genesis(files, config.name) or {}
    topology = Topology.of(objects, lock)
    rpc, ws, dashboards, forward = _endpoints(topology, config.spec.kubernetes.namespace)
    context = {
        "c": config,
        "lock": lock,
        "profile": config.profile,
        "images": sorted(config.images.items()),
        "validators": lock.validator_nodes(),
        "others": [n for n in lock.nodes if n.role != "validator"],
        "genesis_validators": list(lock.validators),
        "accounts": _accounts(genesis, lock),
        "rpc": rpc,
        "ws": ws,
        "dashboards": dashboards,
        "forward": forward,
        "chain_id_hex": hex(config.spec.network.chainId),
        "wallet_json": json.dumps(_wallet_params(config, rpc), indent=2, sort_keys=True),
        "diagram": topology_diagram(config, topology),
        "vote_method": VOTE_METHODS.get(config.spec.network.consensus, ""),
        "alert_rules": _alert_rules(objects),
        "grafana_dashboards": _grafana_dashboards(objects),
    }
    return template_env().get_template("network_readme.md.j2").render(**context).encode()


@dataclass(frozen=True)
class Topology:
    """Workloads, the Services in front of them and the Ingresses in front of those."""

    namespace: str
    roles: dict[str, tuple[str, ...]]  # node role -> node names (from the lock)
    workloads: dict[str, dict[str, Any]]  # name -> StatefulSet/Deployment
    services: dict[str, dict[str, Any]]  # name -> client-facing (not headless) Service
    targets: dict[str, tuple[str, ...]]  # Service name -> workloads it selects
    ingresses: dict[str, dict[str, Any]]
    static_peers: bool = False  # a rendered config lists static peers (besu static-nodes.json, geth StaticNodes)

    @classmethod
    def of(cls, objects: Mapping[ObjectKey, tuple[str, dict]], lock: NetworkLock) -> Topology:
        roles: dict[str, list[str]] = {}
        for node in lock.nodes:
            roles.setdefault(node.role, []).append(node.name)
        items = sorted(objects.items())
        workloads = {name: obj for (kind, _, name), (_, obj) in items if kind in ("StatefulSet", "Deployment")}
        services = {
            name: obj
            for (kind, _, name), (_, obj) in items
            if kind == "Service" and (obj.get("spec") or {}).get("clusterIP") != "None"
        }
        targets = {}
        for name, svc in services.items():
            selector = (svc.get("spec") or {}).get("selector") or {}
            targets[name] = tuple(
                w for w, obj in workloads.items()
                if selector and all(_pod_labels(obj).get(k) == v for k, v in selector.items())
            )
        return cls(
            namespace=namespace_of(objects),
            roles={k: tuple(v) for k, v in roles.items()},
            workloads=workloads,
            services=services,
            targets=targets,
            ingresses={name: obj for (kind, _, name), (_, obj) in items if kind == "Ingress"},
            static_peers=any(
                key == "static-nodes.json" or "StaticNodes" in str(value)
                for (kind, _, _), (_, obj) in items
                if kind == "ConfigMap"
                for key, value in (obj.get("data") or {}).items()
            ),
        )

    def serves_nodes(self, service: str) -> bool:
        return any(w in self.roles for w in self.targets.get(service, ()))


def _pod_labels(workload: Mapping[str, Any]) -> dict[str, Any]:
    return ((((workload.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("labels")) or {}


def _ingress_backends(ingress: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(host, backend Service) pairs of an Ingress."""
    found = []
    for rule in (ingress.get("spec") or {}).get("rules") or []:
        for path in (rule.get("http") or {}).get("paths") or []:
            backend = ((path.get("backend") or {}).get("service") or {}).get("name")
            if backend:
                found.append((str(rule.get("host") or "*"), str(backend)))
    return found


def _endpoints(topology: Topology, namespace: str) -> tuple[list[Endpoint], list[Endpoint], list[Endpoint], str]:
    """JSON-RPC, WebSocket and dashboard endpoints, and a port-forward command for JSON-RPC."""
    rpc: list[Endpoint] = []
    ws: list[Endpoint] = []
    dashboards: list[Endpoint] = []
    forward = ""
    for name, ingress in topology.ingresses.items():
        tls = {h for t in (ingress.get("spec") or {}).get("tls") or [] for h in t.get("hosts") or []}
        for host, backend in _ingress_backends(ingress):
            if topology.serves_nodes(backend) and host != "*":
                scheme = "https" if host in tls else "http"
                rpc.append(Endpoint(f"Ingress {name}", f"{scheme}://{host}", "JSON-RPC from outside the cluster"))
    for name, svc in topology.services.items():
        host = f"{name}.{svc.get('metadata', {}).get('namespace') or namespace}.svc.cluster.local"
        for port in (svc.get("spec") or {}).get("ports") or []:
            number, pname = port.get("port"), str(port.get("name", ""))
            if not topology.serves_nodes(name):
                if pname.startswith("http") and topology.targets.get(name):
                    dashboards.append(Endpoint(f"Service {name}", f"http://{host}:{number}", f"{', '.join(topology.targets[name])} web UI"))
            elif pname in ("http", "rpc", "http-rpc", "jsonrpc") or number == 8545:
                rpc.append(Endpoint(f"Service {name}", f"http://{host}:{number}", "JSON-RPC inside the cluster"))
                forward = forward or f"kubectl -n {namespace} port-forward svc/{name} 8545:{number}"
            elif pname in ("ws", "websocket") or number == 8546:
                ws.append(Endpoint(f"Service {name}", f"ws://{host}:{number}", "WebSocket inside the cluster"))
    return rpc, ws, dashboards, forward


@dataclass(frozen=True)
class AlertRule:
    alert: str
    severity: str
    rule: str  # the PrometheusRule's name


@dataclass(frozen=True)
class Dashboard:
    title: str
    uid: str
    configmap: str


def _alert_rules(objects: Mapping[ObjectKey, tuple[str, dict]]) -> list[AlertRule]:
    """The alerts of the network's PrometheusRules (the monitoring chart), as committed."""
    found = []
    for (kind, _, name), (_, obj) in sorted(objects.items()):
        if kind != "PrometheusRule":
            continue
        for group in (obj.get("spec") or {}).get("groups") or []:
            for rule in group.get("rules") or []:
                if rule.get("alert"):
                    found.append(AlertRule(str(rule["alert"]), str((rule.get("labels") or {}).get("severity", "")), name))
    return found


def _grafana_dashboards(objects: Mapping[ObjectKey, tuple[str, dict]]) -> list[Dashboard]:
    """The monitoring chart's Grafana dashboards (ConfigMaps of JSON with a title and a uid)."""
    found = []
    for (kind, _, name), (_, obj) in sorted(objects.items()):
        labels = (obj.get("metadata") or {}).get("labels") or {}
        if kind != "ConfigMap" or labels.get("app.kubernetes.io/name") != MONITORING_CHART:
            continue
        for key, value in sorted((obj.get("data") or {}).items()):
            try:
                dashboard = json.loads(value) if key.endswith(".json") else None
            except ValueError:
                dashboard = None
            if isinstance(dashboard, dict) and "uid" in dashboard:
                found.append(Dashboard(str(dashboard.get("title", "")), str(dashboard["uid"]), name))
    return found


def _accounts(genesis: Mapping[str, Any], lock: NetworkLock) -> list[Account]:
    labels: dict[str, str] = {}
    for node in lock.nodes:
        labels[node.address.lower()] = f"node {node.name}"
    for account in lock.accounts:
        labels[account.address.lower()] = f"{account.name} (key in Secret {account.secret})"
    found = []
    for address, entry in sorted((genesis.get("alloc") or {}).items()):
        normal = address.lower() if address.lower().startswith("0x") else "0x" + address.lower()
        label = labels.get(normal) or ("contract" if isinstance(entry, dict) and entry.get("code") else "external")
        balance = str((entry or {}).get("balance", "0"))
        wei = int(balance, 16) if balance.lower().startswith("0x") else int(balance or "0")
        found.append(Account(label, to_checksum_address(normal), ether(wei)))
    return sorted(found, key=lambda a: (a.label.startswith(("external", "contract")), a.label, a.address))


def _wallet_params(config: EnvironmentConfig, rpc: list[Endpoint]) -> dict[str, Any]:
    """EIP-3085 `wallet_addEthereumChain` parameters."""
    external = [e.url for e in rpc if e.name.startswith("Ingress")]
    return {
        "chainId": hex(config.spec.network.chainId),
        "chainName": f"chainops {config.name}",
        "nativeCurrency": {"name": "Ether", "symbol": "ETH", "decimals": 18},
        "rpcUrls": external or ["http://127.0.0.1:8545"],
    }


def _mid(*parts: str) -> str:
    return "_".join(re.sub(r"[^A-Za-z0-9]", "_", p) for p in parts)


def topology_diagram(config: EnvironmentConfig, topology: Topology) -> str:
    """A Mermaid flowchart: node groups with their pods, client Services, Ingresses,
    static peering, bootnode discovery and ethstats reporting."""
    namespace = config.spec.kubernetes.namespace
    lines = ["flowchart LR", f'  subgraph {_mid("ns", namespace)}["namespace {mermaid_label(namespace)}"]']
    group_ids = {name: _mid("grp", name) for name in topology.workloads}
    for name, obj in topology.workloads.items():
        replicas = (obj.get("spec") or {}).get("replicas", 1)
        lines.append(f'    subgraph {group_ids[name]}["{obj["kind"]} {mermaid_label(name)} ×{replicas}"]')
        if obj["kind"] == "StatefulSet":  # stable pod names
            pods = list(topology.roles.get(name) or [f"{name}-{i}" for i in range(int(replicas))])
            for pod in pods[:MAX_PODS_IN_DIAGRAM]:
                lines.append(f'      {_mid("pod", pod)}["{mermaid_label(pod)}"]')
            if len(pods) > MAX_PODS_IN_DIAGRAM:
                lines.append(f'      {_mid("more", name)}["… {len(pods) - MAX_PODS_IN_DIAGRAM} more"]')
        else:
            lines.append(f'      {_mid("pods", name)}["{replicas} pod(s)"]')
        lines.append("    end")
    edges = []
    for name, svc in topology.services.items():
        ports = ", ".join(f"{p.get('name', '')} {p.get('port')}".strip() for p in (svc.get("spec") or {}).get("ports") or [])
        lines.append(f'    {_mid("svc", name)}(["Service {mermaid_label(name)}<br/>{mermaid_label(ports)}"])')
        edges += [f"  {_mid('svc', name)} --> {group_ids[w]}" for w in topology.targets[name]]
    ethstats = config.spec.ethstats.enabled
    if ethstats and "ethstats" not in group_ids:
        lines.append('    ethstats[("ethstats")]')
    lines.append("  end")
    for name, ingress in topology.ingresses.items():
        backends = _ingress_backends(ingress)
        hosts = ", ".join(sorted({h for h, _ in backends}))
        lines.append(f'  {_mid("ing", name)}[/"Ingress {mermaid_label(hosts)}"/]')
        edges += [f"  {_mid('ing', name)} --> {_mid('svc', b)}" for b in sorted({b for _, b in backends}) if b in topology.services]
    peers = [group_ids[r] for r in ("validator", "rpc") if r in group_ids]
    if len(peers) == 2 and topology.static_peers:  # geth with bootnodes discovers its peers instead
        edges.append(f'  {peers[0]} <-->|"static peers"| {peers[1]}')
    if "bootnode" in group_ids:
        edges += [f'  {group_ids["bootnode"]} -.->|"discovery"| {gid}' for gid in peers]
    if ethstats:
        target = group_ids.get("ethstats", "ethstats")
        edges += [f'  {gid} -.->|"stats"| {target}' for gid in peers]
    return "\n".join(lines + edges)
