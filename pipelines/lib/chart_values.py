"""Computed chart values: what the environment, its keys and its genesis mean for each chart.

This is the "computed values" layer of the Helm-style precedence (chart defaults <
profile defaults < environment overrides < computed values).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pipelines.lib.config import EnvironmentConfig
from pipelines.lib.keys import KeySet, NodeIdentity, PrivateKeyMaterial, needs_keystore
from pipelines.lib.render import RenderedObject, load_chart, render_chart


def pod_host(node: NodeIdentity, namespace: str) -> str:
    return f"{node.name}.{node.role}.{namespace}.svc.cluster.local"


def _image(reference: str) -> dict[str, str]:
    repository, tag = reference.rsplit(":", 1)
    return {"repository": repository, "tag": tag, "pullPolicy": "IfNotPresent"}


def _secret_payloads(config: EnvironmentConfig, keys: KeySet, privates: dict[str, PrivateKeyMaterial]) -> list[dict]:
    """The per-node and per-account Secrets (plaintext, in memory only)."""
    secrets = []
    for node in keys.nodes:
        material = privates[node.name]
        data = {"nodekey": material.private_key}
        if config.spec.network.client == "geth" and node.role == "validator":
            data["address"] = node.address
        if needs_keystore(config, node.role):
            data["keystore.json"] = material.keystore_json or ""
            data["password"] = material.password or ""
        secrets.append({"name": node.secret_name, "component": node.role, "data": data})
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


def node_chart_values(config: EnvironmentConfig, keys: KeySet, secrets: list[dict]) -> dict[str, Any]:
    namespace = config.spec.kubernetes.namespace
    counts = {"validator": config.spec.nodes.validators, "rpc": config.spec.nodes.rpc, "bootnode": config.bootnode_count}
    groups = [
        {"name": role, "replicas": count, "rpc": role == "rpc"} for role, count in counts.items() if count > 0
    ]
    peers = [n for n in keys.nodes if n.role in ("validator", "rpc")]
    values: dict[str, Any] = {
        "namespace": namespace,
        "image": _image(config.images[config.spec.network.client]),
        "network": {
            "chainId": config.spec.network.chainId,
            "networkId": config.spec.network.effective_network_id,
            "consensus": config.spec.network.consensus,
        },
        "groups": groups,
        "nodes": [
            {"name": n.name, "group": n.role, "address": n.address, "secretName": n.secret_name} for n in keys.nodes
        ],
        "staticNodes": [n.enode(pod_host(n, namespace)) for n in peers],
        "secrets": secrets,
        "identityChecksum": hashlib.sha256(
            json.dumps([[n.name, n.public_key] for n in keys.nodes]).encode()
        ).hexdigest(),
        "storage": {
            "size": config.spec.kubernetes.storage.size,
            "storageClassName": config.spec.kubernetes.storage.storageClassName or "",
        },
    }
    if config.spec.network.client == "geth":
        values["bootnodeImage"] = _image(config.images["bootnode"])
        values["bootnodes"] = [n.enode(pod_host(n, namespace), 30301) for n in keys.by_role("bootnode")]
    if config.spec.kubernetes.rpcIngress:
        values["rpc"] = {"ingressHost": config.spec.kubernetes.rpcIngress.host}
    return values


def network_chart_values(config: EnvironmentConfig, genesis_hash: str, genesis_json: bytes) -> dict[str, Any]:
    return {
        "namespace": config.spec.kubernetes.namespace,
        "network": {
            "profile": config.profile.name,
            "chainId": config.spec.network.chainId,
            "networkId": config.spec.network.effective_network_id,
            "genesisHash": genesis_hash,
            "legacyNote": config.profile.note if config.profile.legacy else "",
        },
        "genesisJson": genesis_json.decode(),
    }


def render_objects(
    config: EnvironmentConfig,
    keys: KeySet,
    genesis_hash: str,
    genesis_json: bytes,
    privates: dict[str, PrivateKeyMaterial],
    charts_dir: Path,
) -> list[RenderedObject]:
    release = {"Name": config.name, "Namespace": config.spec.kubernetes.namespace, "Service": "chainops"}
    network_chart = load_chart(charts_dir / "network")
    node_chart = load_chart(charts_dir / config.profile.chart)
    secrets = _secret_payloads(config, keys, privates)
    return render_chart(network_chart, release, network_chart_values(config, genesis_hash, genesis_json)) + render_chart(
        node_chart, release, node_chart_values(config, keys, secrets)
    )
