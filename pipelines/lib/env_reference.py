"""`docs/environment-file.md`: the environment file's reference, generated from the models.

Every field of `chainops/v1` with its type, default and allowed values, read from the
pydantic models in config.py, so the reference cannot drift from what chainops accepts
(`tests/config/test_docs.py` fails when the committed file is stale). Regenerate with
`python -m pipelines.lib.env_reference > docs/environment-file.md`.
"""

from __future__ import annotations

import types
import typing
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from pipelines.lib.config import EnvironmentSpec

HEADER = """# The environment file (`environments/<env>.yaml`, `apiVersion: chainops/v1`)

Generated from the models in `pipelines/lib/config.py` by
`python -m pipelines.lib.env_reference`; do not edit by hand. Rules that span fields
(profiles, production policy, cross-file uniqueness) are in the README.

| field | type | default | allowed | meaning |
|---|---|---|---|---|
"""

# What a field means, where its name and type do not say it.
NOTES = {
    "network.allowPublicChainId": "let the chain/network id be a public chain's (refused otherwise)",
    "network.networkId": "devp2p network id; defaults to chainId",
    "network.transitions": "besu-qbft / besu-ibft2: settings from a later block on (README: Consensus transitions)",
    "network.transitions[].block": "> 0, strictly increasing; the block the settings apply from",
    "network.transitions[].requestTimeoutSeconds": "refused: Besu applies no round timeout from a transition",
    "network.transitions[].validatorSelection": "QBFT only; with validatorContractAddress",
    "network.rpcUrl": "http(s) node of the live chain; its head checks new transitions (credentials never printed)",
    "nodes.bootnodes": "geth only; default 1",
    "accounts[].name": "chainops generates the key (give name or address)",
    "accounts[].address": "an external account; EIP-55 when mixed case",
    "accounts[].balance": "`<n> ether`, `<n> gwei` or `<n> wei` (a unit is required)",
    "contracts[].storage": "32-byte slot -> value, hex",
    "network.externalPeers": "enode URLs of nodes outside the cluster: static peers of every node (geth with bootnodes: also bootnodes), in the allowlist",
    "network.permissioning.nodes": "Besu only: every node loads a nodes-allowlist of the lock's enodes and externalPeers",
    "kubernetes.namespace": "not a system namespace (kube-*, default, flux-system, argocd, ...)",
    "kubernetes.p2pExposure": "one LoadBalancer / NodePort Service per validator and RPC pod; its advertised address is its enode in the lock and in the NAT flags",
    "kubernetes.p2pAdvertisedHosts": "node name -> the IPv4 address it advertises (loadBalancer: one address per node)",
    "kubernetes.p2pAdvertisedHost": "the IPv4 address of every node not in p2pAdvertisedHosts (nodePort: one address, a port per node)",
    "kubernetes.p2pNodePortBase": "nodePort: validator-i gets base+i, rpc-i base+64+i (in 30000-32767)",
    "kubernetes.rpcIngress.tlsSecretName": "kubernetes.io/tls Secret for the host (required with production: true)",
    "images": "image key -> `repo:tag`, `repo:tag@sha256:...` or `repo@sha256:...`",
    "values": "chart -> Helm-style overrides, checked against values.schema.json",
    "gitops.secrets.ageRecipients": "the cluster's recipients (`chainops cluster init ENV`)",
    "gitops.repositorySecret": "Flux: Secret in flux-system with the repository credentials (GitRepository secretRef); null: public repository",
    "monitoring.enabled": "ServiceMonitors (node charts), the PrometheusRule `chainops-<env>-chain-health` and a Grafana dashboard ConfigMap (chart `monitoring`; README \"Monitoring\")",
    "monitoring.grafanaDashboardLabel": "labels of the dashboard ConfigMap, the Grafana sidecar's label (kube-prometheus-stack: `grafana_dashboard`)",
    "monitoring.prometheusRuleLabels": "labels of the PrometheusRule, for the Prometheus' `ruleSelector` (e.g. `release: prometheus`)",
    "monitoring.serviceMonitorLabels": "labels of the ServiceMonitors, for the Prometheus' `serviceMonitorSelector`; replaces `values.<node chart>.serviceMonitor`",
    "monitoring.scrapeInterval": "`<n>s` or `<n>m`, 5s to 10m; the block-stall window is at least twice this",
    "monitoring.thresholds.blockStallPeriods": "alert when no node's height rose for this many block periods (ethash: 15 s each)",
    "monitoring.thresholds.diskFreeRatio": "alert when a node's data volume has less than this fraction free",
    "monitoring.thresholds.headLagBlocks": "alert when a node is more than this many blocks behind the highest one",
    "decommission": "remove the published output in one commit",
    "production": "apply the production policy (README) and refuse mnemonic keys",
}


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The model a field holds: itself, or inside Optional / tuple / list."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in get_args(annotation):
        found = _model_of(argument)
        if found is not None:
            return found
    return None


def _type_name(annotation: Any) -> str:
    origin = get_origin(annotation)
    if origin is typing.Annotated:  # a constrained type (e.g. an enode URL string): its base type
        return _type_name(get_args(annotation)[0])
    if origin is Literal:
        return "enum"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(annotation) if a is not type(None)) + (
            " (optional)" if type(None) in get_args(annotation) else ""
        )
    if origin in (tuple, list):
        return f"list of {_type_name(get_args(annotation)[0])}"
    if origin is dict:
        return "mapping"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "mapping"
    return getattr(annotation, "__name__", str(annotation))


def _allowed(annotation: Any, info: Any) -> str:
    literals = [a for a in get_args(annotation)] if get_origin(annotation) is Literal else []
    for arg in get_args(annotation):
        if get_origin(arg) is Literal:
            literals += list(get_args(arg))
    parts = [", ".join(f"`{v}`" for v in literals)] if literals else []
    for meta in info.metadata:
        for bound, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            if getattr(meta, bound, None) is not None:
                parts.append(f"{sign} {getattr(meta, bound)}")
    return "; ".join(parts)


def _default(info: Any) -> str:
    if info.is_required():
        return "required"
    value = info.default
    if value is PydanticUndefined:
        value = info.default_factory() if info.default_factory else None
    if isinstance(value, BaseModel):
        return ""
    if value in ((), {}, []):
        return "empty"
    return f"`{value}`" if value is not None else "none"


def rows(model: type[BaseModel], prefix: str = "") -> list[str]:
    found = []
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        annotation = info.annotation
        found.append(f"| `{path}` | {_type_name(annotation)} | {_default(info)} | {_allowed(annotation, info)} | {NOTES.get(path, '')} |")
        inner = _model_of(annotation)
        if inner is not None:
            list_like = get_origin(annotation) in (tuple, list)
            found += rows(inner, f"{path}[]." if list_like else f"{path}.")
    return found


def render() -> str:
    return HEADER + "\n".join(rows(EnvironmentSpec)) + "\n"


if __name__ == "__main__":
    print(render(), end="")
