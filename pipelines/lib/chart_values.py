"""Computed chart values: what the environment, its keys and its genesis mean for each chart.

This module decides which charts an environment renders and builds the last two layers
of the Helm-style precedence: chart defaults < profile defaults < environment overrides
(`values.<chart>` in the environment file) < computed values. An environment may not set
a computed value (its file has a field for it, e.g. `nodes.validators`), so an override
that touches one is an error rather than something silently ignored.

After rendering, every object is checked for what makes GitOps controllers report drift
or the API server reject an object: empty maps, empty lists and nulls (the API server
drops them, so Argo CD shows them as a diff forever) and names and labels outside
Kubernetes' limits.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pipelines.lib import peers
from pipelines.lib.config import P2P_EXPOSED_ROLES, EnvironmentConfig, parse_image
from pipelines.lib.enode import parse_enode
from pipelines.lib.keys import P2P_PORT, KeySet, NodeIdentity, PrivateKeyMaterial, needs_keystore
from pipelines.lib.monitoring import monitoring_chart_values
from pipelines.lib.peers import DISCOVERY_PORT
from pipelines.lib.profiles import BOOTNODE_CHART, ETHSTATS_CHART, MONITORING_CHART, NETWORK_CHART
from pipelines.lib.render import RenderedObject, RenderError, load_chart, render_chart

ETHSTATS_SERVICE = "ethstats"
ETHSTATS_PORT = 3000
ETHSTATS_SECRET_NAME = "ethstats"
ETHSTATS_SECRET_KEY = "WS_SECRET"
NODE_PORTS = {
    "geth": {"p2p": P2P_PORT, "http": 8545, "ws": 8546, "metrics": 6060},
    "besu": {"p2p": P2P_PORT, "http": 8545, "ws": 8546, "metrics": 9545},
}

# Keys whose empty map means something to the API server (select everything; a default
# emptyDir) and is kept as is, so it never shows up as drift.
MEANINGFUL_EMPTY = frozenset({"podSelector", "namespaceSelector", "emptyDir"})
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
# Kinds whose name must be a DNS label (<= 63). A StatefulSet's pods carry the label
# controller-revision-hash=<name>-<10 character hash>, a label value of at most 63.
LABEL_NAMED_KINDS = frozenset({"Namespace", "Service"})
MAX_STATEFULSET_NAME = 52


def _image(reference: str) -> dict[str, str]:
    """Chart values of an image reference; a digest pin adds `digest` (the tag may then be empty)."""
    repository, tag, digest = parse_image(reference)
    image = {"repository": repository, "tag": tag, "pullPolicy": "IfNotPresent"}
    return image | ({"digest": digest} if digest else {})


def _checksum(parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def max_unavailable(consensus: str, role: str, replicas: int) -> int:
    """Pods of a group a node drain may take down at once without stopping the chain.

    BFT (QBFT, IBFT 2.0) tolerates f = (n-1)//3 faulty validators, Clique needs more than
    half of the signers; any one ethash miner keeps blocks coming and RPC nodes are
    interchangeable (half of them keep serving). Never below 1, so a drain is always
    possible (a small network pauses instead of blocking maintenance).
    """
    if role == "validator" and consensus in ("qbft", "ibft2"):
        return max(1, (replicas - 1) // 3)
    if role == "validator" and consensus == "clique":
        return max(1, (replicas - 1) // 2)
    return max(1, replicas // 2)


# -- secrets ---------------------------------------------------------------------------
def _node_secret(config: EnvironmentConfig, node: NodeIdentity, material: PrivateKeyMaterial) -> dict[str, Any]:
    data = {"nodekey": material.private_key}
    if config.spec.network.client == "geth" and node.role == "validator":
        data["address"] = node.address
    if needs_keystore(config, node.role):
        data["keystore.json"] = material.keystore_json or ""
        data["password"] = material.password or ""
    return {"name": node.secret_name, "component": node.role, "data": data}


def _account_secrets(keys: KeySet, privates: Mapping[str, PrivateKeyMaterial]) -> list[dict[str, Any]]:
    secrets = []
    for account in keys.accounts:
        material = privates[f"account/{account.name}"]
        secrets.append(
            {
                "name": account.secret_name,
                "component": "account",
                "data": {
                    "address": account.address,
                    "keystore.json": material.keystore_json or "",
                    "password": material.password or "",
                },
            }
        )
    return secrets


# -- computed values per chart ---------------------------------------------------------
def external_peer_rules(config: EnvironmentConfig) -> list[dict[str, Any]]:
    """Where the nodes may dial outside the namespace: each external peer's TCP port and UDP
    discovery port, to its address (`cidr`) when it is an IP, to any address when it is a DNS name
    (a NetworkPolicy cannot name a host)."""
    rules = []
    for url in peers.external_peers(config):
        enode = parse_enode(url)
        cidr = f"{enode.host}/{128 if ':' in enode.host else 32}" if enode.is_ip else ""
        rules.append({"host": enode.host, "cidr": cidr, "tcpPort": enode.port, "udpPort": enode.udp_port})
    return sorted(rules, key=lambda r: (r["host"], r["tcpPort"], r["udpPort"]))


def exposure_values(config: EnvironmentConfig, keys: KeySet, roles: tuple[str, ...]) -> dict[str, Any]:
    """The per-pod p2p Services and advertised addresses of the nodes in `roles`."""
    advertised = config.advertised_endpoints()
    nodes = [
        {"name": n.name, "group": n.role, "host": advertised[n.name][0], "port": advertised[n.name][1]}
        for n in keys.nodes
        if n.role in roles and n.name in advertised
    ]
    return {"type": config.spec.kubernetes.p2pExposure, "nodes": nodes}


def network_chart_values(
    config: EnvironmentConfig, keys: KeySet, genesis_hash: str, genesis_json: bytes
) -> dict[str, Any]:
    roles = [role for role in ("validator", "rpc", "bootnode") if keys.by_role(role)]
    exposed = [role for role in roles if role in P2P_EXPOSED_ROLES] if config.spec.kubernetes.p2pExposure != "none" else []
    return {
        "namespace": config.spec.kubernetes.namespace,
        "appVersion": config.profile.pinned_tag(config.spec.network.client),
        "network": {
            "profile": config.profile.name,
            "chainId": config.spec.network.chainId,
            "networkId": config.spec.network.effective_network_id,
            "genesisHash": genesis_hash,
            "legacyNote": config.profile.note if config.profile.legacy else "",
        },
        "genesisJson": genesis_json.decode(),
        "components": {
            "peers": roles,
            "bootnode": "bootnode" in roles,
            "rpc": "rpc" in roles,
            "rpcIngress": config.spec.kubernetes.rpcIngress is not None,
            "ethstats": config.spec.ethstats.enabled,
            "p2pExposed": exposed,
        },
        "externalPeers": external_peer_rules(config),
    }


def ethstats_reference(config: EnvironmentConfig, privates: Mapping[str, PrivateKeyMaterial]) -> dict[str, Any]:
    """How nodes reach the dashboard; the WS secret itself stays in the ethstats Secret."""
    if not config.spec.ethstats.enabled:
        return {"enabled": False, "host": "", "secretName": "", "secretKey": "", "secretChecksum": ""}
    return {
        "enabled": True,
        "host": f"{ETHSTATS_SERVICE}.{config.spec.kubernetes.namespace}.svc:{ETHSTATS_PORT}",
        "secretName": ETHSTATS_SECRET_NAME,
        "secretKey": ETHSTATS_SECRET_KEY,
        "secretChecksum": hashlib.sha256(_ethstats_secret(privates).encode()).hexdigest(),
    }


def _ethstats_secret(privates: Mapping[str, PrivateKeyMaterial]) -> str:
    try:
        return privates["shared/ethstats"].private_key
    except KeyError:
        raise RenderError("ethstats is enabled but the key bundle has no shared/ethstats secret") from None


def transitions_checksum(genesis_json: bytes) -> str:
    """sha256 of the genesis' consensus transitions ("" without any): Besu reads them at start
    only, and they leave the block hash (checksum/genesis) as it is, so the pods carry this
    as checksum/transitions and roll when a transition is added."""
    transitions = (json.loads(genesis_json).get("config") or {}).get("transitions")
    return _checksum(transitions) if transitions else ""


def node_chart_values(
    config: EnvironmentConfig,
    keys: KeySet,
    genesis_hash: str,
    privates: Mapping[str, PrivateKeyMaterial],
    genesis_json: bytes,
) -> dict[str, Any]:
    """Values of the client chart (besu-node or geth-node): validators and RPC nodes."""
    client = config.spec.network.client
    consensus = config.spec.network.consensus
    namespace = config.spec.kubernetes.namespace
    ingress = config.spec.kubernetes.rpcIngress
    groups = []
    for role in ("validator", "rpc"):
        members = keys.by_role(role)
        if members:
            groups.append(
                {
                    "name": role,
                    "replicas": len(members),
                    "rpc": role == "rpc",
                    "maxUnavailable": max_unavailable(consensus, role, len(members)),
                    "keysChecksum": _checksum([[n.name, n.public_key] for n in members]),
                }
            )
    nodes = [n for n in keys.nodes if n.role in ("validator", "rpc")]
    bootnodes = [peers.internal_enode(config, n) for n in keys.by_role("bootnode")]
    # Static peers are the validators (a stable set): adding an RPC node changes no config
    # and restarts nothing, plus the external peers. geth with bootnodes discovers the
    # network's own nodes instead (see the chart); external peers are static there too, and
    # bootnodes (their discovery finds the other side's nodes).
    static = peers.static_peers(config, keys)
    if client == "geth" and bootnodes:
        static = peers.external_peers(config)
        bootnodes = bootnodes + peers.external_peers(config)
    values: dict[str, Any] = {
        "namespace": namespace,
        "appVersion": config.profile.pinned_tag(client),
        "image": _image(config.images[client]),
        "network": {"chainId": config.spec.network.chainId, "networkId": config.spec.network.effective_network_id,
                    "consensus": consensus},
        "genesisHash": genesis_hash,
        "groups": groups,
        "nodes": [{"name": n.name, "group": n.role, "address": n.address, "secretName": n.secret_name} for n in nodes],
        "staticNodes": static,
        "secrets": [_node_secret(config, n, privates[n.name]) for n in nodes] + _account_secrets(keys, privates),
        "ethstats": ethstats_reference(config, privates),
        "ports": NODE_PORTS[client],
        "storage": {
            "size": config.spec.kubernetes.storage.size,
            "storageClassName": config.spec.kubernetes.storage.storageClassName or "",
        },
        # The network chart's policies admit the ingress controller exactly when this is set.
        "rpc": {"ingress": {"host": ingress.host if ingress else "",
                            **({"tlsSecretName": ingress.tlsSecretName} if ingress and ingress.tlsSecretName else {})}},
        "p2pExposure": exposure_values(config, keys, ("validator", "rpc")),
    }
    if client == "geth":
        values["bootnodes"] = bootnodes
        values["externalPeers"] = peers.external_peers(config)
    else:
        values["transitionsChecksum"] = transitions_checksum(genesis_json)
        permissioned = config.spec.network.permissioning.nodes
        values["permissioning"] = {"nodes": permissioned, "allowlist": peers.allowlist(config, keys) if permissioned else []}
    monitoring = config.spec.monitoring
    if monitoring.enabled:  # the alerts and dashboards read what these ServiceMonitors scrape
        values["serviceMonitor"] = {"enabled": True, "interval": monitoring.scrapeInterval}
        if monitoring.serviceMonitorLabels:
            values["serviceMonitor"]["labels"] = dict(monitoring.serviceMonitorLabels)
    if ingress is not None and not keys.by_role("rpc"):
        raise RenderError(f"{config.source_path}: kubernetes.rpcIngress: an RPC Ingress needs RPC nodes; set nodes.rpc >= 1")
    return values


def bootnode_chart_values(config: EnvironmentConfig, keys: KeySet, privates: Mapping[str, PrivateKeyMaterial]) -> dict:
    bootnodes = keys.by_role("bootnode")
    return {
        "namespace": config.spec.kubernetes.namespace,
        "appVersion": config.profile.pinned_tag("bootnode"),
        "image": _image(config.images["bootnode"]),
        "replicas": len(bootnodes),
        "nodes": [{"name": n.name, "group": "bootnode", "secretName": n.secret_name} for n in bootnodes],
        "secrets": [_node_secret(config, n, privates[n.name]) for n in bootnodes],
        "keysChecksum": _checksum([[n.name, n.public_key] for n in bootnodes]),
        "ports": {"discovery": DISCOVERY_PORT},
    }


def ethstats_chart_values(config: EnvironmentConfig, privates: Mapping[str, PrivateKeyMaterial]) -> dict[str, Any]:
    secret = _ethstats_secret(privates)
    return {
        "namespace": config.spec.kubernetes.namespace,
        "appVersion": config.profile.pinned_tag("ethstats"),
        "image": _image(config.images["ethstats"]),
        "secret": secret,
        "secretChecksum": hashlib.sha256(secret.encode()).hexdigest(),
        "secretName": ETHSTATS_SECRET_NAME,
        "secretKey": ETHSTATS_SECRET_KEY,
        "port": ETHSTATS_PORT,
    }


def chart_plan(
    config: EnvironmentConfig,
    keys: KeySet,
    genesis_hash: str,
    genesis_json: bytes,
    privates: Mapping[str, PrivateKeyMaterial],
) -> list[tuple[str, dict[str, Any]]]:
    """(chart, computed values) of every chart the environment renders, in render order."""
    plan = [
        (NETWORK_CHART, network_chart_values(config, keys, genesis_hash, genesis_json)),
        (config.profile.chart, node_chart_values(config, keys, genesis_hash, privates, genesis_json)),
    ]
    if keys.by_role("bootnode"):
        plan.append((BOOTNODE_CHART, bootnode_chart_values(config, keys, privates)))
    if config.spec.ethstats.enabled:
        plan.append((ETHSTATS_CHART, ethstats_chart_values(config, privates)))
    if config.spec.monitoring.enabled:
        plan.append((MONITORING_CHART, monitoring_chart_values(config, len(keys.validators), len(keys.by_role("rpc")))))
    return plan


# -- precedence ------------------------------------------------------------------------
def _leaf_paths(values: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for key, value in values.items():
        if isinstance(value, Mapping) and value:
            yield from _leaf_paths(value, (*prefix, key))
        else:
            yield (*prefix, key)


def computed_overrides(overrides: Mapping[str, Any], computed: Mapping[str, Any]) -> list[str]:
    """Value paths an environment sets although chainops computes them (or what is under them)."""
    computed_paths = set(_leaf_paths(computed))
    clashes = []
    for path in _leaf_paths(overrides):
        if any(path[: len(c)] == c or c[: len(path)] == path for c in computed_paths):
            clashes.append(".".join(path))
    return clashes


def environment_overrides(config: EnvironmentConfig) -> Mapping[str, Mapping[str, Any]]:
    """The environment's `values:` section (per chart)."""
    return getattr(config.spec, "values", None) or {}


def _computed_from(path: str) -> str:
    if path.startswith("serviceMonitor."):
        return ("set by monitoring.enabled: true; use monitoring.scrapeInterval and monitoring.serviceMonitorLabels "
                "instead (or leave monitoring off)")
    return "computed by chainops from the environment file; set the environment field instead (nodes, images, kubernetes, ethstats, monitoring)"


def render_objects(
    config: EnvironmentConfig,
    keys: KeySet,
    genesis_hash: str,
    genesis_json: bytes,
    privates: dict[str, PrivateKeyMaterial],
    charts_dir: Path,
) -> list[RenderedObject]:
    """Every object of the environment: charts rendered with the four value layers, checked."""
    release = {"Name": config.name, "Namespace": config.spec.kubernetes.namespace, "Service": "chainops"}
    overrides = environment_overrides(config)
    objects: list[RenderedObject] = []
    for chart_name, computed in chart_plan(config, keys, genesis_hash, genesis_json, privates):
        env_layer = overrides.get(chart_name, {})
        clashes = computed_overrides(env_layer, computed)
        if clashes:
            raise RenderError("\n".join(f"{config.source_path}: values.{chart_name}.{path}: {_computed_from(path)}" for path in clashes))
        chart = load_chart(charts_dir / chart_name)
        try:
            objects += render_chart(chart, release, config.profile.values.get(chart_name, {}), env_layer, computed)
        except RenderError as exc:
            raise RenderError(f"{config.source_path}: {exc}") from None
    problems = [p for rendered in objects for p in output_problems(rendered)]
    if problems:
        raise RenderError("\n".join(problems))
    return objects


# -- output checks ---------------------------------------------------------------------
def _json_path(parts: tuple[Any, ...]) -> str:
    return "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts)


def empty_values(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Paths of nulls, empty maps and empty lists (except the meaningful empty selectors)."""
    if value is None:
        yield path
    elif isinstance(value, (dict, list)) and not value:
        if not (isinstance(value, dict) and path and path[-1] in MEANINGFUL_EMPTY):
            yield path
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from empty_values(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from empty_values(item, (*path, index))


def _labels(obj: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Every label map of an object (its own, its pod template's, its claim templates')."""
    yield "$.metadata.labels", obj.get("metadata", {}).get("labels") or {}
    spec = obj.get("spec") or {}
    template = spec.get("template") or {}
    if isinstance(template, Mapping) and "metadata" in template:
        yield "$.spec.template.metadata.labels", template["metadata"].get("labels") or {}
    for i, claim in enumerate(spec.get("volumeClaimTemplates") or []):
        yield f"$.spec.volumeClaimTemplates[{i}].metadata.labels", claim.get("metadata", {}).get("labels") or {}


def output_problems(rendered: RenderedObject) -> list[str]:
    """Why an object would drift or be rejected: empty values, names or labels too long."""
    obj = rendered.obj
    kind, name = obj.get("kind"), obj.get("metadata", {}).get("name", "?")
    where = f"chart {rendered.chart}: templates/{rendered.template}: {kind}/{name}"
    problems = [
        f"{where}: {_json_path(path)}: empty value (the API server drops it: permanent drift)"
        for path in empty_values(obj)
    ]
    if kind in LABEL_NAMED_KINDS and not DNS_LABEL.match(str(name)):
        problems.append(f"{where}: metadata.name: must be a DNS label of at most 63 characters")
    if kind == "StatefulSet" and len(str(name)) > MAX_STATEFULSET_NAME:
        problems.append(f"{where}: metadata.name: at most {MAX_STATEFULSET_NAME} characters for a StatefulSet")
    for path, labels in _labels(obj):
        for key, value in labels.items():
            if not isinstance(value, str) or not LABEL_VALUE.match(value):
                problems.append(f"{where}: {path}[{key}]: {value!r} is not a label value (at most 63 characters)")
    for i, claim in enumerate((obj.get("spec") or {}).get("volumeClaimTemplates") or []):
        if claim.get("apiVersion") != "v1" or claim.get("kind") != "PersistentVolumeClaim":
            problems.append(f"{where}: $.spec.volumeClaimTemplates[{i}]: set apiVersion v1 and kind PersistentVolumeClaim")
    return problems
