"""Monitoring of a network (`monitoring.enabled`): which metrics, thresholds and dashboard.

The `monitoring` chart renders a PrometheusRule and a Grafana dashboard ConfigMap; the node
charts render the ServiceMonitors (their `serviceMonitor` values, turned on here). This
module decides what they need from the environment: the pinned client's metric names, the
windows and peer counts the alerts compare with, and the dashboard JSON. Pure: the same
environment gives the same values, byte for byte.

Metric names, as each pinned client registers them:

- Besu 26.8.0 (`hyperledger/besu:26.8.0`; sources at the tag 26.8.0 of besu-eth/besu):
  `ethereum_blockchain_height` (ethereum/core/.../chain/DefaultBlockchain.java,
  createGauges: category ETHEREUM, "blockchain_height"; the ETHEREUM category has no
  `besu_` prefix, metrics/core/.../BesuMetricCategory.java), `ethereum_peer_count`
  (ethereum/eth/.../manager/EthPeers.java, "peer_count"), and
  `besu_transaction_pool_number_of_transactions{layer}` (ethereum/eth/.../transactions/
  TransactionPoolMetrics.java: the layered pool, TransactionPoolConfiguration's default
  implementation LAYERED). All categories but the RocksDB ones are on by default
  (BesuMetricCategory.DEFAULT_METRIC_CATEGORIES). Besu's docs list the first two
  ("Use metrics to monitor node performance", metrics list). The QBFT and IBFT 2.0 modules
  (consensus/) register no per-validator proposal metric: a validator that does not
  propose is derived from its block height lagging the network's (and its target down).
- geth v1.13.15 and v1.11.6 (`--metrics`, served at /debug/metrics/prometheus; geth's
  metrics/prometheus package writes `chain/head/block` as `chain_head_block`):
  `chain_head_block`, `p2p_peers`, `txpool_pending`. tests/render/test_monitoring.py
  starts both binaries with `--dev --metrics` and reads these names from the endpoint.
- Data volumes: the kubelet's `kubelet_volume_stats_available_bytes` and
  `kubelet_volume_stats_capacity_bytes` (labels `namespace`, `persistentvolumeclaim`).

Every target of a node chart's ServiceMonitor carries `namespace`, `pod` and `job` (the
Service's name: `validator` or `rpc`), the labels the alerts select and group by.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pipelines.lib.config import EnvironmentConfig, duration_seconds
from pipelines.lib.validator_plan import block_quorum

METRICS = {
    "besu": {
        "height": "ethereum_blockchain_height",
        "peers": "ethereum_peer_count",
        "pendingTransactions": "besu_transaction_pool_number_of_transactions",
    },
    "geth": {"height": "chain_head_block", "peers": "p2p_peers", "pendingTransactions": "txpool_pending"},
}
# ethash has no block period: its difficulty aims at roughly 13-15 s a block.
ETHASH_NOMINAL_BLOCK_SECONDS = 15
NODE_JOBS = ("validator", "rpc")  # the node charts' headless Services (the ServiceMonitor's job label)
DATA_CLAIM = "data"  # the node StatefulSets' volumeClaimTemplates name: PVCs data-<pod>
DASHBOARD_SCHEMA_VERSION = 39
GRAFANA_UID_MAX = 40


def rule_name(environment: str) -> str:
    return f"chainops-{environment}-chain-health"


def dashboard_name(environment: str) -> str:
    return f"chainops-{environment}-chain-overview"


def dashboard_uid(environment: str) -> str:
    """A Grafana uid (at most 40 characters) derived from the environment name alone."""
    uid = f"chainops-{environment}"
    if len(uid) <= GRAFANA_UID_MAX:
        return uid
    return f"chainops-{environment[:21]}-{hashlib.sha256(environment.encode()).hexdigest()[:8]}"


def block_seconds(config: EnvironmentConfig) -> int:
    network = config.spec.network
    return ETHASH_NOMINAL_BLOCK_SECONDS if network.consensus == "ethash" else network.blockPeriodSeconds


def stall_window_seconds(config: EnvironmentConfig) -> int:
    """How long without a new block is a stall: blockStallPeriods block periods, but at least
    two scrape intervals (a shorter window holds too few samples to see a block)."""
    monitoring = config.spec.monitoring
    periods = monitoring.thresholds.blockStallPeriods * block_seconds(config)
    return max(periods, 2 * duration_seconds(monitoring.scrapeInterval))


def min_validator_peers(config: EnvironmentConfig, validators: int, nodes: int) -> int:
    """Peers a validator needs to be part of a quorum: the quorum less itself (BFT: ceil(2n/3),
    Clique: more than half of the signers); an ethash miner needs one peer when there are
    other nodes at all."""
    consensus = config.spec.network.consensus
    if consensus == "ethash":
        return 1 if nodes > 1 else 0
    return max(0, block_quorum(consensus, validators) - 1)


def _selector(namespace: str, jobs: tuple[str, ...]) -> str:
    return f'{{namespace="{namespace}",job=~"{"|".join(jobs)}"}}'


def chain_overview_dashboard(config: EnvironmentConfig, jobs: tuple[str, ...]) -> dict[str, Any]:
    """The "chain overview" Grafana dashboard: block height per node, block time, peers,
    pending transactions and data volume space, for this network's namespace."""
    client = config.spec.network.client
    metric = METRICS[client]
    namespace = config.spec.kubernetes.namespace
    nodes = _selector(namespace, jobs)
    pending = f"{metric['pendingTransactions']}{nodes}"
    if client == "besu":  # one series per layer of the layered pool
        pending = f"sum by (pod) ({pending})"
    claims = f'{{namespace="{namespace}",persistentvolumeclaim=~"{DATA_CLAIM}-({"|".join(jobs)})-[0-9]+"}}'
    panels = [
        ("Block height per node", f"{metric['height']}{nodes}", "{{pod}}", "none"),
        ("Block time (5m average)", f"300 / max by (namespace) (delta({metric['height']}{nodes}[5m]))", "block time", "s"),
        ("Peers per node", f"{metric['peers']}{nodes}", "{{pod}}", "none"),
        ("Pending transactions", pending, "{{pod}}", "none"),
        (
            "Data volume free",
            f"kubelet_volume_stats_available_bytes{claims} / kubelet_volume_stats_capacity_bytes{claims}",
            "{{persistentvolumeclaim}}",
            "percentunit",
        ),
    ]
    datasource = {"type": "prometheus", "uid": "${datasource}"}
    return {
        "annotations": {"list": []},
        "description": f"chainops network {config.name} ({config.profile.name}, namespace {namespace})",
        "editable": False,
        "graphTooltip": 1,
        "panels": [
            {
                "datasource": datasource,
                "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                "gridPos": {"h": 8, "w": 12, "x": 12 * (index % 2), "y": 8 * (index // 2)},
                "id": index + 1,
                "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True}},
                "targets": [{"datasource": datasource, "expr": expr, "legendFormat": legend, "refId": "A"}],
                "title": title,
                "type": "timeseries",
            }
            for index, (title, expr, legend, unit) in enumerate(panels)
        ],
        "refresh": "30s",
        "schemaVersion": DASHBOARD_SCHEMA_VERSION,
        "tags": ["chainops", config.name],
        "templating": {
            "list": [
                {
                    "hide": 0,
                    "label": "Prometheus",
                    "name": "datasource",
                    "options": [],
                    "query": "prometheus",
                    "refresh": 1,
                    "type": "datasource",
                }
            ]
        },
        "time": {"from": "now-1h", "to": "now"},
        "timezone": "browser",
        "title": f"chainops {config.name}: chain overview",
        "uid": dashboard_uid(config.name),
        "version": 1,
    }


def dashboard_json(dashboard: dict[str, Any]) -> str:
    """Canonical, line-per-field JSON (the ConfigMap diffs line by line in a review)."""
    return json.dumps(dashboard, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def monitoring_chart_values(config: EnvironmentConfig, validators: int, rpc: int) -> dict[str, Any]:
    """Computed values of the `monitoring` chart."""
    monitoring = config.spec.monitoring
    jobs = tuple(job for job, count in zip(NODE_JOBS, (validators, rpc), strict=True) if count)
    client = config.spec.network.client
    dashboard = chain_overview_dashboard(config, jobs)
    return {
        "namespace": config.spec.kubernetes.namespace,
        "appVersion": config.profile.pinned_tag(client),
        "client": client,
        "consensus": config.spec.network.consensus,
        "jobs": list(jobs),
        "validators": validators,
        "metrics": {"height": METRICS[client]["height"], "peers": METRICS[client]["peers"]},
        "dataClaimPattern": f"{DATA_CLAIM}-({'|'.join(jobs)})-[0-9]+",
        "alerts": {
            "ruleName": rule_name(config.name),
            "stallWindowSeconds": stall_window_seconds(config),
            "blockSeconds": block_seconds(config),
            "blockStallPeriods": monitoring.thresholds.blockStallPeriods,
            "minValidatorPeers": min_validator_peers(config, validators, validators + rpc),
            "headLagBlocks": monitoring.thresholds.headLagBlocks,
            "diskFreeRatio": monitoring.thresholds.diskFreeRatio,
            "labels": dict(monitoring.prometheusRuleLabels),
        },
        "dashboard": {
            "name": dashboard_name(config.name),
            "labels": dict(monitoring.grafanaDashboardLabel),
            "json": dashboard_json(dashboard),
        },
    }
