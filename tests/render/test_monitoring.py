"""Monitoring (`monitoring.enabled`, issue 19): the node charts' ServiceMonitors, the
`monitoring` chart's PrometheusRule and Grafana dashboard, checked by second routes.

- The objects against the pinned Prometheus Operator CRDs (a typo field is refused).
- The alert rules with the real `promtool` (`make monitoring-bins` builds it once into
  ~/.cache/chainops/promtool-<version>/bin; CHAINOPS_PROMTOOL_DIR points elsewhere):
  `promtool check rules` on every profile's rules and on the dashboard's queries, and
  `promtool test rules` with series in and alerts out. Without promtool these are skipped,
  unless CHAINOPS_REQUIRE_SMOKE=1, where they fail.
- The geth metric names the rules and the dashboard use, read from the pinned geth
  binaries' own /debug/metrics/prometheus (`make smoke-bins` builds them). Besu's are cited
  from its sources in pipelines/lib/monitoring.py (no Besu binary here).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from pipelines.lib import monitoring
from pipelines.lib.chart_values import render_objects
from pipelines.lib.config import ConfigError, parse_environment
from pipelines.lib.keys import (
    KeySet,
    NodeIdentity,
    PrivateKeyMaterial,
    address_of_public_key,
    desired_nodes,
    make_keystore,
    needs_keystore,
    public_key_of,
)
from pipelines.lib.layout import env_dir
from pipelines.lib.lock import NetworkLock
from pipelines.lib.manifests import object_filename, validator_for
from pipelines.lib.network_page import network_readme
from pipelines.lib.processes import prepare_child
from pipelines.lib.render import RenderError
from pipelines.lib.stages.genesis import compute_genesis
from pipelines.lib.yaml_io import dump_yaml
from tests.conftest import REPO_ROOT
from tests.process_helpers import stop
from tests.yaml_reader import read_yaml

CHARTS = REPO_ROOT / "chart_sources"
REQUIRED = os.environ.get("CHAINOPS_REQUIRE_SMOKE") == "1"
PROMTOOL_VERSION = "v0.316.0"
GETH_VERSIONS = ("1.13.15", "1.11.6")  # geth-clique and geth-ethash pin these

STAGING = """apiVersion: chainops/v1
network: {chainId: 48720, client: besu, consensus: qbft, blockPeriodSeconds: 2}
nodes: {validators: 4, rpc: 2}
kubernetes: {namespace: chain-staging}
monitoring:
  enabled: true
  prometheusRuleLabels: {release: prometheus}
  serviceMonitorLabels: {release: prometheus}
"""
ENVS = {
    "staging": STAGING,
    "ibft": """apiVersion: chainops/v1
network: {chainId: 48721, client: besu, consensus: ibft2, blockPeriodSeconds: 5}
nodes: {validators: 1, rpc: 0}
kubernetes: {namespace: chain-ibft}
monitoring: {enabled: true, scrapeInterval: 15s, thresholds: {blockStallPeriods: 3, diskFreeRatio: 0.2, headLagBlocks: 4}}
""",
    "dev": """apiVersion: chainops/v1
network: {chainId: 1337001, client: geth, consensus: clique, blockPeriodSeconds: 5}
nodes: {validators: 3, rpc: 1, bootnodes: 1}
kubernetes: {namespace: chain-dev}
monitoring: {enabled: true}
""",
    "seed": """apiVersion: chainops/v1
network: {chainId: 1101, client: geth, consensus: ethash}
nodes: {validators: 2, rpc: 1, bootnodes: 1}
kubernetes: {namespace: chain-seed}
monitoring: {enabled: true}
""",
}


# -- rendering with fixed test keys ------------------------------------------------------
def environment(name: str, text: str | None = None):
    return parse_environment(name, ENVS[name] if text is None else text, f"environments/{name}.yaml")


def render(config) -> list:
    privates, nodes = {}, []
    for name, role in desired_nodes(config):
        key = hashlib.sha256(f"chainops-test-only/{config.name}/{name}".encode()).digest()
        keystore, password = make_keystore(key) if needs_keystore(config, role) else (None, None)
        privates[name] = PrivateKeyMaterial(key.hex(), keystore, password)
        public = public_key_of(key)
        nodes.append(NodeIdentity(name, role, address_of_public_key(public), public.hex()))
    keys = KeySet(tuple(nodes), (), b"")
    genesis = compute_genesis(config, keys)
    return render_objects(config, keys, genesis.block_hash, genesis.json_bytes, privates, CHARTS)


@pytest.fixture(scope="module")
def rendered() -> dict[str, list]:
    return {name: render(environment(name)) for name in ENVS}


def objects(rendered_objects, kind: str) -> list[dict]:
    return [r.obj for r in rendered_objects if r.obj["kind"] == kind]


def the(rendered_objects, kind: str) -> dict:
    [obj] = objects(rendered_objects, kind)
    return obj


def dashboard_of(rendered_objects) -> dict:
    [cm] = [r.obj for r in rendered_objects if r.chart == "monitoring" and r.obj["kind"] == "ConfigMap"]
    [text] = cm["data"].values()
    return json.loads(text)


def alerts(rule: dict) -> dict[str, dict]:
    return {r["alert"]: r for group in rule["spec"]["groups"] for r in group["rules"]}


# -- what renders ------------------------------------------------------------------------
def test_monitoring_is_off_by_default_and_renders_nothing_then():
    text = STAGING.split("monitoring:")[0]
    config = environment("staging", text)
    assert config.spec.monitoring.enabled is False
    assert config.spec.monitoring.grafanaDashboardLabel == {"grafana_dashboard": "1"}
    assert config.spec.monitoring.prometheusRuleLabels == {}
    thresholds = config.spec.monitoring.thresholds
    assert (thresholds.blockStallPeriods, thresholds.diskFreeRatio, thresholds.headLagBlocks) == (5, 0.1, 10)
    out = render(config)
    assert {r.chart for r in out} == {"network", "besu-node"}
    assert not objects(out, "ServiceMonitor") and not objects(out, "PrometheusRule")


@pytest.mark.parametrize("env", sorted(ENVS))
def test_enabled_renders_scrape_config_alerts_and_dashboard(rendered, env):
    config = environment(env)
    out = rendered[env]
    client = config.spec.network.client
    [monitor] = objects(out, "ServiceMonitor")
    assert monitor["metadata"]["namespace"] == config.spec.kubernetes.namespace
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint == {
        "port": "metrics",
        "path": "/metrics" if client == "besu" else "/debug/metrics/prometheus",
        "interval": config.spec.monitoring.scrapeInterval,
    }
    # The ServiceMonitor selects exactly the node Services with a metrics port: every node pod.
    selected = [
        s for s in objects(out, "Service")
        if all(s["metadata"]["labels"].get(k) == v for k, v in monitor["spec"]["selector"]["matchLabels"].items())
        and any(p["name"] == "metrics" for p in s["spec"]["ports"])
    ]
    groups = {s["metadata"]["name"] for s in selected}
    assert groups == {role for _, role in desired_nodes(config) if role in ("validator", "rpc")}
    rule = the(out, "PrometheusRule")
    assert rule["metadata"]["name"] == f"chainops-{env}-chain-health"
    metric = monitoring.METRICS[client]
    exprs = " ".join(r["expr"] for r in alerts(rule).values())
    assert metric["height"] in exprs and "kubelet_volume_stats_available_bytes" in exprs
    assert all(f'namespace="{config.spec.kubernetes.namespace}"' in r["expr"] for r in alerts(rule).values())
    [dashboard_map] = [r.obj for r in out if r.chart == "monitoring" and r.obj["kind"] == "ConfigMap"]
    assert dashboard_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboard_map["metadata"]["name"] == f"chainops-{env}-chain-overview"


def test_alert_set_follows_the_consensus(rendered):
    staging = alerts(the(rendered["staging"], "PrometheusRule"))
    assert set(staging) == {
        "ChainopsBlockProductionStalled", "ChainopsValidatorPeersBelowQuorum", "ChainopsValidatorNotProposing",
        "ChainopsNodeBehindHead", "ChainopsDataVolumeFillingUp",
    }
    # 4 QBFT validators: quorum ceil(8/3) = 3, so each needs 2 peers; stall after 5 x 2 s,
    # raised to two 30 s scrape intervals.
    assert staging["ChainopsValidatorPeersBelowQuorum"]["expr"].endswith(" < 2")
    assert "offset 60s" in staging["ChainopsBlockProductionStalled"]["expr"]
    # One IBFT validator needs no peer: no peer alert. 3 x 5 s = 15 s, raised to 2 x 15 s.
    ibft = alerts(the(rendered["ibft"], "PrometheusRule"))
    assert "ChainopsValidatorPeersBelowQuorum" not in ibft
    assert "offset 30s" in ibft["ChainopsBlockProductionStalled"]["expr"]
    assert ibft["ChainopsNodeBehindHead"]["expr"].endswith(" > 4") and ibft["ChainopsDataVolumeFillingUp"]["expr"].endswith(" < 0.2")
    assert 'job=~"validator"' in ibft["ChainopsNodeBehindHead"]["expr"], "no rpc group, none selected"
    # 3 Clique signers: more than half (2) sign, each needs 1 peer; 5 periods of 5 s.
    dev = alerts(the(rendered["dev"], "PrometheusRule"))
    assert dev["ChainopsValidatorPeersBelowQuorum"]["expr"] == 'p2p_peers{namespace="chain-dev",job="validator"} < 1'
    assert "offset 60s" in dev["ChainopsBlockProductionStalled"]["expr"]
    # ethash counts nominal 15 s blocks.
    seed = alerts(the(rendered["seed"], "PrometheusRule"))
    assert "offset 75s" in seed["ChainopsBlockProductionStalled"]["expr"]


def test_besu_metrics_port_accepts_the_scrape_host(rendered):
    """Besu's metrics port answers only Host headers in --host-allowlist; Prometheus sends
    <pod IP>:9545, so with a ServiceMonitor the pod IP joins the list (command line)."""
    out = rendered["staging"]
    [config_map] = [o for o in objects(out, "ConfigMap") if o["metadata"]["name"] == "besu-config"]
    assert "host-allowlist" not in config_map["data"]["config.toml"]
    for sts in objects(out, "StatefulSet"):
        [container] = sts["spec"]["template"]["spec"]["containers"]
        [flag] = [a for a in container["args"] if a.startswith("--host-allowlist=")]
        hosts = flag.split("=", 1)[1].split(",")
        assert hosts[:2] == ["localhost", "127.0.0.1"] and hosts[-1] == "$(POD_IP)"
        assert "rpc-jsonrpc.chain-staging.svc.cluster.local" in hosts
        assert {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}} in container["env"]


def test_the_values_option_still_works_and_cannot_contradict_monitoring():
    text = STAGING.split("monitoring:")[0] + "values:\n  besu-node:\n    serviceMonitor: {enabled: true, interval: 15s}\n"
    out = render(environment("staging", text))
    assert the(out, "ServiceMonitor")["spec"]["endpoints"][0]["interval"] == "15s"
    assert not objects(out, "PrometheusRule")
    clash = STAGING + "values:\n  besu-node:\n    serviceMonitor: {enabled: false}\n"
    with pytest.raises(RenderError, match=r"values.besu-node.serviceMonitor.enabled: set by monitoring.enabled: true; use monitoring.scrapeInterval"):
        render(environment("staging", clash))


def test_monitoring_chart_values_can_be_overridden_but_not_computed_ones():
    out = render(environment("staging", STAGING + "values:\n  monitoring:\n    alerts: {criticalSeverity: page}\n    dashboard: {folder: Chains}\n"))
    assert alerts(the(out, "PrometheusRule"))["ChainopsBlockProductionStalled"]["labels"]["severity"] == "page"
    [cm] = [r.obj for r in out if r.chart == "monitoring" and r.obj["kind"] == "ConfigMap"]
    assert cm["metadata"]["annotations"] == {"grafana_folder": "Chains"}
    with pytest.raises(RenderError, match=r"values.monitoring.alerts.headLagBlocks: computed by chainops"):
        render(environment("staging", STAGING + "values:\n  monitoring:\n    alerts: {headLagBlocks: 3}\n"))


@pytest.mark.parametrize(
    ("snippet", "message"),
    [
        ("{thresholds: {diskFreeRatio: 1.5}}", r"monitoring.thresholds.diskFreeRatio: 1.5 is out of range"),
        ("{thresholds: {blockStallPeriods: 0}}", r"monitoring.thresholds.blockStallPeriods: 0 is out of range"),
        ("{thresholds: {stallPeriods: 3}}", r"monitoring.thresholds.stallPeriods: unknown key; allowed: blockStallPeriods, diskFreeRatio, headLagBlocks"),
        ("{grafanaDashboardLabel: {}}", r"monitoring.grafanaDashboardLabel: the Grafana sidecar finds dashboards by a label"),
        ("{prometheusRuleLabels: {release: 'a b'}}", r"monitoring.prometheusRuleLabels: release: 'a b' is not a label value"),
        ("{serviceMonitorLabels: {app.kubernetes.io/name: x}}", r"chainops sets the app.kubernetes.io/\* and helm.sh/\* labels itself"),
        ("{scrapeInterval: 1h}", r"monitoring.scrapeInterval: '1h' is not a duration"),
        ("{enabled: yes please}", r"monitoring.enabled: 'yes please' is not a boolean"),
    ],
)
def test_bad_monitoring_fields_name_the_field(snippet, message):
    with pytest.raises(ConfigError, match=message):
        environment("staging", STAGING.split("monitoring:")[0] + f"monitoring: {snippet}\n")


# -- schemas -----------------------------------------------------------------------------
@pytest.mark.parametrize("env", sorted(ENVS))
def test_objects_validate_against_the_pinned_crds(rendered, env):
    validator = validator_for()
    assert [str(p) for r in rendered[env] for p in validator.validate(r.obj, r.chart)] == []


@pytest.mark.parametrize(
    ("kind", "edit", "field"),
    [
        ("PrometheusRule", lambda o: o["spec"]["groups"][0]["rules"][0].update(expresion="up"), "expresion"),
        ("PrometheusRule", lambda o: o["spec"]["groups"][0].update(intervall="30s"), "intervall"),
        ("ServiceMonitor", lambda o: o["spec"]["endpoints"][0].update(scrapeIntervall="30s"), "scrapeIntervall"),
        ("ServiceMonitor", lambda o: o["spec"].update(selectors={}), "selectors"),
    ],
)
def test_a_typo_field_is_refused(rendered, kind, edit, field):
    obj = copy.deepcopy(the(rendered["staging"], kind))
    edit(obj)
    problems = [str(p) for p in validator_for().validate(obj, "monitoring")]
    assert problems and any(field in p for p in problems), problems


def test_kustomize_builds_the_monitored_network(rendered, tmp_path):
    from pipelines.lib.kustomize import kustomization, kustomize_build
    from pipelines.lib.yaml_io import load_yaml_all

    files = {f"{r.chart}/{object_filename(r.obj)}": dump_yaml(r.obj) for r in rendered["staging"]}
    for path, text in files.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    (tmp_path / "kustomization.yaml").write_text(dump_yaml(kustomization(list(files))))
    built = {(o["kind"], o["metadata"]["name"]): o for o in load_yaml_all(kustomize_build(tmp_path))}
    assert len(built) == len(rendered["staging"])
    dashboard = built[("ConfigMap", "chainops-staging-chain-overview")]
    assert json.loads(dashboard["data"]["chainops-staging-chain-overview.json"]) == dashboard_of(rendered["staging"])
    assert built[("PrometheusRule", "chainops-staging-chain-health")]["spec"] == the(rendered["staging"], "PrometheusRule")["spec"]


# -- the dashboard -------------------------------------------------------------------------
@pytest.mark.parametrize("env", sorted(ENVS))
def test_dashboard_is_grafana_dashboard_json(rendered, env):
    dashboard = dashboard_of(rendered[env])
    config = environment(env)
    assert dashboard["uid"] == f"chainops-{env}" and dashboard["title"] == f"chainops {env}: chain overview"
    assert isinstance(dashboard["schemaVersion"], int) and dashboard["panels"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(set(ids)) == len(ids)
    [variable] = dashboard["templating"]["list"]
    assert variable == {**variable, "type": "datasource", "query": "prometheus", "name": "datasource"}
    for panel in dashboard["panels"]:
        assert panel["type"] == "timeseries" and set(panel["gridPos"]) == {"h", "w", "x", "y"}
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert [t["refId"] for t in panel["targets"]] == ["A"]
    titles = {p["title"]: p["targets"][0]["expr"] for p in dashboard["panels"]}
    metric = monitoring.METRICS[config.spec.network.client]
    assert metric["height"] in titles["Block height per node"] and metric["peers"] in titles["Peers per node"]
    assert metric["pendingTransactions"] in titles["Pending transactions"] and "Block time (5m average)" in titles


def test_dashboard_uid_is_derived_from_the_name_and_fits_grafana():
    assert monitoring.dashboard_uid("staging") == "chainops-staging"
    long_name = "a" * 40
    uid = monitoring.dashboard_uid(long_name)
    assert len(uid) <= 40 and uid == monitoring.dashboard_uid(long_name) != monitoring.dashboard_uid("a" * 39 + "b")


def test_rendering_is_deterministic(rendered):
    again = render(environment("staging"))
    files = lambda out: {object_filename(r.obj): dump_yaml(r.obj) for r in out if r.chart == "monitoring" or r.obj["kind"] == "ServiceMonitor"}  # noqa: E731
    assert files(again) == files(rendered["staging"])


# -- the network page ------------------------------------------------------------------------
def test_network_page_lists_alerts_and_dashboard(rendered):
    config = environment("staging")
    files = {f"{env_dir('staging')}{r.chart}/{object_filename(r.obj)}": dump_yaml(r.obj).encode() for r in rendered["staging"]}
    page = network_readme(config, NetworkLock.model_construct(nodes=[], validators=[], accounts=[], genesisHash="0x00"), files).decode()
    section = page.split("## Monitoring", 1)[1].split("## Topology", 1)[0]
    assert "PrometheusRule `chainops-staging-chain-health`" in section
    assert "- `ChainopsBlockProductionStalled` (critical)" in section and "- `ChainopsNodeBehindHead` (warning)" in section
    assert "**chainops staging: chain overview** (uid `chainops-staging`, ConfigMap `chainops-staging-chain-overview`)" in section
    assert len(section.strip().splitlines()) < 15, "short"
    off = render(environment("staging", STAGING.split("monitoring:")[0]))
    files = {f"{env_dir('staging')}{r.chart}/{object_filename(r.obj)}": dump_yaml(r.obj).encode() for r in off}
    assert "## Monitoring" not in network_readme(config, NetworkLock.model_construct(nodes=[], validators=[], accounts=[], genesisHash="0x00"), files).decode()


def test_docs_example_environment_validates(run_cli, tmp_path):
    envs = tmp_path / "environments"
    envs.mkdir()
    shutil.copy(REPO_ROOT / "docs" / "examples" / "monitoring.yaml", envs / "monitoring.yaml")
    result = run_cli("validate", "--environments", envs, "--home", tmp_path / "home")
    assert result.code == 0, result.out + result.err
    assert environment("staging", (envs / "monitoring.yaml").read_text()).spec.monitoring.enabled


# -- promtool ------------------------------------------------------------------------------
def promtool() -> Path:
    candidates = [Path(d) / "promtool" for d in (
        os.environ.get("CHAINOPS_PROMTOOL_DIR"),
        Path.home() / ".cache" / "chainops" / f"promtool-{PROMTOOL_VERSION}" / "bin",
    ) if d]
    candidates += [Path(found)] if (found := shutil.which("promtool")) else []
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    if REQUIRED:
        pytest.fail("CHAINOPS_REQUIRE_SMOKE=1 but promtool is missing: run `make monitoring-bins`")
    pytest.skip(f"promtool {PROMTOOL_VERSION} is not built: `make monitoring-bins` (or set CHAINOPS_PROMTOOL_DIR)")


def run_promtool(*args: str, cwd: Path) -> str:
    proc = subprocess.run([str(promtool()), *args], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@pytest.mark.parametrize("env", sorted(ENVS))
def test_promtool_checks_the_rules_and_the_dashboard_queries(rendered, env, tmp_path):
    rule = the(rendered[env], "PrometheusRule")
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rule["spec"]))
    out = run_promtool("check", "rules", "rules.yaml", cwd=tmp_path)
    assert f"SUCCESS: {len(alerts(rule))} rules found" in out
    # The dashboard's queries, parsed by Prometheus' own parser as recording rules.
    queries = [t["expr"] for p in dashboard_of(rendered[env])["panels"] for t in p["targets"]]
    records = {"groups": [{"name": "dashboard", "rules": [{"record": f"chainops:panel{i}", "expr": q} for i, q in enumerate(queries)]}]}
    (tmp_path / "dashboard.yaml").write_text(yaml.safe_dump(records))
    assert f"SUCCESS: {len(queries)} rules found" in run_promtool("check", "rules", "dashboard.yaml", cwd=tmp_path)


def node(pod: str, metric: str = "ethereum_blockchain_height", job: str | None = None) -> str:
    return f'{metric}{{namespace="chain-staging",job="{job or pod.rsplit("-", 1)[0]}",pod="{pod}"}}'


LABELS = {"namespace": "chain-staging", "chainops_environment": "staging"}


def firing(alertname: str, labels: dict, summary: str, description: str) -> dict:
    return {"exp_labels": labels, "exp_annotations": {"summary": summary, "description": description}}


def test_promtool_unit_tests_fire_the_alerts(rendered, tmp_path):
    """Series in, alerts out (staging: 2 s blocks, 30 s scrapes, 4 QBFT validators)."""
    rule = the(rendered["staging"], "PrometheusRule")
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rule["spec"]))
    critical, warning = {**LABELS, "severity": "critical"}, {**LABELS, "severity": "warning"}
    stall = alerts(rule)["ChainopsBlockProductionStalled"]["annotations"]
    behind = "More than 10 blocks behind the highest node in namespace chain-staging (heights compared at one moment)."
    target = {"job": "rpc", "pod": "rpc-0"}
    tests = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "30s",
        "tests": [
            {   # 15 blocks a scrape until 5 min, then none: the stall shows after the 60 s window.
                "interval": "30s",
                "input_series": [{"series": node(p), "values": "0+15x10 150x20"} for p in ("validator-0", "validator-1")],
                "alert_rule_test": [
                    {"eval_time": "5m", "alertname": "ChainopsBlockProductionStalled", "exp_alerts": []},
                    {"eval_time": "5m30s", "alertname": "ChainopsBlockProductionStalled", "exp_alerts": []},
                    {"eval_time": "6m", "alertname": "ChainopsBlockProductionStalled",
                     "exp_alerts": [firing("ChainopsBlockProductionStalled", critical, stall["summary"], stall["description"])]},
                    {"eval_time": "6m", "alertname": "ChainopsNodeBehindHead", "exp_alerts": []},
                ],
            },
            {   # validator-1 drops to 1 peer at 5 min 30 s (a quorum of 3 needs 2); validator-0 keeps 2.
                "interval": "30s",
                "input_series": [
                    {"series": node("validator-0", "ethereum_peer_count"), "values": "2x30"},
                    {"series": node("validator-1", "ethereum_peer_count"), "values": "3x10 1x20"},
                    {"series": node("rpc-0", "ethereum_peer_count"), "values": "0x30"},
                ],
                "alert_rule_test": [
                    {"eval_time": "5m", "alertname": "ChainopsValidatorPeersBelowQuorum", "exp_alerts": []},
                    {"eval_time": "6m", "alertname": "ChainopsValidatorPeersBelowQuorum", "exp_alerts": []},  # pending
                    {"eval_time": "7m", "alertname": "ChainopsValidatorPeersBelowQuorum", "exp_alerts": [firing(
                        "ChainopsValidatorPeersBelowQuorum", {**warning, "job": "validator", "pod": "validator-1"},
                        "Validator validator-1 of staging has 1 peers",
                        "The qbft quorum of 4 validators needs 2 peers per validator (peers of any role count).")]},
                ],
            },
            {   # validator-2 stops importing at block 60; rpc-0 falls 20 blocks behind; the chain goes on.
                "interval": "30s",
                "input_series": [
                    {"series": node("validator-0"), "values": "0+15x30"},
                    {"series": node("validator-1"), "values": "0+15x30"},
                    {"series": node("validator-2"), "values": "0+15x4 60x26"},
                    {"series": node("rpc-0"), "values": "0+15x10 145+15x20"},
                    {"series": 'up{namespace="chain-staging",job="validator",pod="validator-3"}', "values": "1x10 0x20"},
                ],
                "alert_rule_test": [
                    {"eval_time": "1m", "alertname": "ChainopsValidatorNotProposing", "exp_alerts": []},
                    {"eval_time": "8m", "alertname": "ChainopsValidatorNotProposing", "exp_alerts": [
                        firing("ChainopsValidatorNotProposing", {**critical, "job": "validator", "pod": pod},
                               f"Validator {pod} of staging is not proposing",
                               f"Derived from block heights: {pod} is more than 2 blocks behind the network's head "
                               "(or its metrics target is down), so it proposes no block the others accept.")
                        for pod in ("validator-2", "validator-3")]},
                    {"eval_time": "8m", "alertname": "ChainopsNodeBehindHead", "exp_alerts": [
                        firing("ChainopsNodeBehindHead", {**warning, "job": "validator", "pod": "validator-2"},
                               "validator-2 of staging is 180 blocks behind the head", behind),
                        firing("ChainopsNodeBehindHead", {**warning, **target}, "rpc-0 of staging is 20 blocks behind the head", behind),
                    ]},
                ],
            },
            {   # a data volume with 5 % free (the threshold is 10 %), another with 50 %.
                "interval": "1m",
                "input_series": [
                    {"series": 'kubelet_volume_stats_available_bytes{namespace="chain-staging",persistentvolumeclaim="data-validator-0"}', "values": "5x10"},
                    {"series": 'kubelet_volume_stats_capacity_bytes{namespace="chain-staging",persistentvolumeclaim="data-validator-0"}', "values": "100x10"},
                    {"series": 'kubelet_volume_stats_available_bytes{namespace="chain-staging",persistentvolumeclaim="data-rpc-0"}', "values": "50x10"},
                    {"series": 'kubelet_volume_stats_capacity_bytes{namespace="chain-staging",persistentvolumeclaim="data-rpc-0"}', "values": "100x10"},
                    {"series": 'kubelet_volume_stats_available_bytes{namespace="other",persistentvolumeclaim="data-validator-0"}', "values": "1x10"},
                    {"series": 'kubelet_volume_stats_capacity_bytes{namespace="other",persistentvolumeclaim="data-validator-0"}', "values": "100x10"},
                ],
                "alert_rule_test": [
                    {"eval_time": "6m", "alertname": "ChainopsDataVolumeFillingUp", "exp_alerts": [firing(
                        "ChainopsDataVolumeFillingUp", {**warning, "persistentvolumeclaim": "data-validator-0"},
                        "Data volume data-validator-0 of staging has 5% free",
                        "Less than 0.1 of the node's PersistentVolumeClaim is free: grow kubernetes.storage.size (or the PVC) before the client stops.")]},
                ],
            },
        ],
    }
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests, sort_keys=False))
    assert "SUCCESS" in run_promtool("test", "rules", "tests.yaml", cwd=tmp_path)


# -- geth's metric names, from the pinned binaries --------------------------------------------
def geth_binary(version: str) -> Path:
    for directory in (os.environ.get("CHAINOPS_GETH_DIR") if version == GETH_VERSIONS[0] else None,
                      Path.home() / ".cache" / "chainops" / f"geth-v{version}" / "bin"):
        if directory and (Path(directory) / "geth").is_file():
            return Path(directory) / "geth"
    if REQUIRED:
        pytest.fail(f"CHAINOPS_REQUIRE_SMOKE=1 but geth v{version} is missing: run `make smoke-bins`")
    pytest.skip(f"geth v{version} is not built: `make smoke-bins`")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # boots both pinned geth releases
@pytest.mark.parametrize("version", GETH_VERSIONS)
def test_geth_serves_the_metric_names_the_rules_use(version, tmp_path):
    geth = geth_binary(version)
    port = free_port()
    proc = subprocess.Popen(
        [str(geth), "--dev", "--datadir", str(tmp_path / "data"), "--metrics", "--metrics.addr", "127.0.0.1",
         "--metrics.port", str(port), "--port", "0", "--nodiscover", "--maxpeers", "0", "--ipcdisable"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=prepare_child,
    )
    try:
        # Prometheus sends <pod IP>:<port> as Host: geth's metrics server must not refuse it.
        request = urllib.request.Request(f"http://127.0.0.1:{port}/debug/metrics/prometheus", headers={"Host": "10.1.2.3:6060"})
        deadline, text = time.monotonic() + 60, ""
        while time.monotonic() < deadline and "chain_head_block" not in text:
            try:
                with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - loopback
                    text = response.read().decode()
            except OSError:
                time.sleep(0.3)
    finally:
        stop(proc)
    types = {line.split()[2]: line.split()[3] for line in text.splitlines() if line.startswith("# TYPE ")}
    for name in monitoring.METRICS["geth"].values():
        assert types.get(name) == "gauge", f"geth v{version} serves no gauge {name}"


# -- the review summary ----------------------------------------------------------------------
def test_review_summary_names_the_alerts_a_change_touches(rendered):
    from pipelines.lib.review import build_summary, render_summary

    def files(out) -> dict[str, bytes]:
        lock = json.dumps({"environment": "staging", "nodes": [], "genesisHash": "0x00"}).encode()
        return {f"{env_dir('staging')}network.lock.json": lock,
                **{f"{env_dir('staging')}{r.chart}/{object_filename(r.obj)}": dump_yaml(r.obj).encode() for r in out}}

    one_validator = STAGING.replace("validators: 4, rpc: 2", "validators: 1, rpc: 2").replace("enabled: true", "enabled: true\n  thresholds: {headLagBlocks: 4}")
    summary = build_summary("staging", files(rendered["staging"]), files(render(environment("staging", one_validator))))
    assert [(a.action, a.alert) for a in summary.alerts] == [
        ("changed", "ChainopsNodeBehindHead"), ("removed", "ChainopsValidatorPeersBelowQuorum"),
    ]
    text = render_summary(summary)
    assert ("### Alerts\n- changed: `ChainopsNodeBehindHead` (`annotations.description`, `expr`)\n"
            "- removed: `ChainopsValidatorPeersBelowQuorum`\n\n") in text
    assert not build_summary("staging", files(rendered["staging"]), files(rendered["staging"])).alerts


# -- through the CLI and Dagster ------------------------------------------------------------
def committed_tree(git_dir: Path, prefix: str) -> dict[str, str]:
    from tests.conftest import git

    names = git(git_dir, "ls-tree", "-r", "--name-only", "main", prefix).split()
    return {name: git(git_dir, "show", f"main:{name}") for name in names}


def test_dagster_and_the_cli_publish_the_same_monitoring_bundle(run_cli, tmp_path, rendered):
    """`chainops compile` and a Dagster materialisation of the same file commit the same
    monitoring objects, and they are the ones rendered here in-process (key-independent)."""
    import dagster as dg

    from pipelines.defs.resources import ChainopsResource
    from tests.dagster_helpers import ASSETS, CHECK_NAMES, CHECKS, checks_of

    envs = tmp_path / "environments"
    envs.mkdir()
    (envs / "staging.yaml").write_text(STAGING)
    result = run_cli("compile", "--home", tmp_path / "cli", "--environments", envs)
    assert result.code == 0, result.err
    cli_files = committed_tree(tmp_path / "cli" / "gitops.git", "rendered/staging/monitoring")
    rule = read_yaml(cli_files["rendered/staging/monitoring/prometheusrule-chainops-staging-chain-health.yaml"])
    assert rule["metadata"]["labels"]["release"] == "prometheus"
    assert rule["spec"] == the(rendered["staging"], "PrometheusRule")["spec"]
    monitors = [read_yaml(text) for name, text in committed_tree(tmp_path / "cli" / "gitops.git", "rendered/staging/besu-node").items()
                if "/servicemonitor-" in name]
    assert monitors and all(m["metadata"]["labels"]["release"] == "prometheus" for m in monitors)

    resource = ChainopsResource(environments_dir=str(envs), home=str(tmp_path / "dagster"), charts_dir=str(CHARTS))
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("environments", ["staging"])
        materialised = dg.materialize([*ASSETS, *CHECKS], partition_key="staging", instance=instance,
                                      resources={"chainops": resource}, raise_on_error=False)
    assert materialised.success
    assert checks_of(materialised) == dict.fromkeys(CHECK_NAMES, (True, "ERROR"))
    assert committed_tree(tmp_path / "dagster" / "gitops.git", "rendered/staging/monitoring") == cli_files
