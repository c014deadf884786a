"""Dagster: the code location loads, the assets compile and publish, blocking checks guard the commit."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from datetime import datetime
from pathlib import Path

import dagster as dg
import pytest

from pipelines.definitions import defs
from pipelines.defs.assets.environment import (
    environment_config,
    genesis,
    gitops_commit,
    node_keys,
    rendered_manifests,
)
from pipelines.defs.checks.environment import (
    config_valid,
    genesis_lock,
    manifests_valid,
    no_plaintext_secrets,
    render_deterministic,
)
from pipelines.defs.resources.chainops import ChainopsResource
from tests.conftest import EXAMPLES, commit_count, git, venv_tool
from tests.test_end_to_end import secrets_of

ASSETS = [environment_config, node_keys, genesis, rendered_manifests, gitops_commit]
CHECKS = [config_valid, genesis_lock, manifests_valid, no_plaintext_secrets, render_deterministic]


def test_definitions_load_with_the_contract_names():
    dg.Definitions.validate_loadable(defs)
    repo = defs.get_repository_def()
    assert {k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()} == {
        "environment_config", "node_keys", "genesis", "rendered_manifests", "gitops_commit"
    }
    assert repo.get_job("compile_environments")
    assert repo.get_sensor_def("environment_files")
    assert repo.get_schedule_def("nightly_reconcile")
    assert {c.name for c in repo.asset_graph.asset_check_keys} == {
        "config_valid", "genesis_lock", "manifests_valid", "no_plaintext_secrets", "render_deterministic"
    }


@pytest.fixture
def workspace(tmp_path: Path):
    envs = tmp_path / "environments"
    shutil.copytree(EXAMPLES, envs)
    resource = ChainopsResource(environments_dir=str(envs), home=str(tmp_path / "home"))
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("environments", ["staging", "dev"])
        yield {"envs": envs, "home": tmp_path / "home", "resource": resource, "instance": instance}


def materialize(workspace, partition: str, tags: dict | None = None) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [*ASSETS, *CHECKS],
        partition_key=partition,
        instance=workspace["instance"],
        resources={"chainops": workspace["resource"]},
        tags=tags,
        raise_on_error=False,
    )


def test_materialize_publishes_and_reports_metadata_without_secrets(workspace, tmp_path):
    result = materialize(workspace, "staging")
    assert result.success
    git_dir = workspace["home"] / "gitops.git"
    assert commit_count(git_dir) == 1
    lock = json.loads(git(git_dir, "show", "main:rendered/staging/network.lock.json"))
    commit = result.asset_materializations_for_node("gitops_commit")[0].metadata
    assert commit["commit"].value == git(git_dir, "rev-parse", "main").strip()
    assert commit["genesis_hash"].value == lock["genesisHash"]
    genesis_meta = result.asset_materializations_for_node("genesis")[0].metadata
    assert genesis_meta["validator_count"].value == 4
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == dict.fromkeys(
        ["config_valid", "genesis_lock", "manifests_valid", "no_plaintext_secrets", "render_deterministic"], True
    )
    # Neither the event log nor the IO manager's storage may hold a private key or password.
    work = tmp_path / "work"
    subprocess.run(["git", "clone", "-q", str(git_dir), str(work)], check=True)
    secrets = secrets_of(work, "staging", workspace["home"] / "age" / "identity.txt")
    needles = {v.encode() for data in secrets.values() for k, v in data.items() if k in ("nodekey", "password")}
    assert len(needles) == 7
    records = workspace["instance"].get_event_records(dg.EventRecordsFilter(event_type=dg.DagsterEventType.ASSET_MATERIALIZATION))
    stored = json.dumps([str(r.event_log_entry) for r in records]).encode()
    assert lock["validators"][0].encode() in stored, "the scan must see the real event log"
    for path in Path(workspace["instance"].storage_directory()).rglob("*"):
        if path.is_file():
            stored += path.read_bytes()
    assert [n for n in needles if n in stored] == []

    again = materialize(workspace, "staging")
    assert again.success
    assert again.asset_materializations_for_node("gitops_commit")[0].metadata["commit"].value == "unchanged"
    assert commit_count(git_dir) == 1


def test_blocking_genesis_lock_stops_the_commit(workspace):
    assert materialize(workspace, "staging").success
    path = workspace["envs"] / "staging.yaml"
    path.write_text(path.read_text().replace("gasLimit: 30000000", "gasLimit: 31000000"))
    result = materialize(workspace, "staging")
    assert not result.success
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks["genesis_lock"] is False
    assert result.asset_materializations_for_node("gitops_commit") == []
    assert commit_count(workspace["home"] / "gitops.git") == 1
    allowed = materialize(workspace, "staging", tags={"chainops/allow-genesis-change": "true"})
    assert allowed.success and commit_count(workspace["home"] / "gitops.git") == 2


def test_sensor_registers_partitions_and_requests_runs_only_for_changes(workspace):
    instance = workspace["instance"]
    sensor = defs.get_sensor_def("environment_files")
    context = dg.build_sensor_context(instance=instance, resources={"chainops": workspace["resource"]})
    first = sensor(context)
    assert sorted(r.partition_key for r in first.run_requests) == ["dev", "seed", "staging"]
    assert first.dynamic_partitions_requests[0].partition_keys == ["seed"]
    instance.add_dynamic_partitions("environments", ["seed"])
    context = dg.build_sensor_context(instance=instance, cursor=first.cursor, resources={"chainops": workspace["resource"]})
    assert sensor(context).run_requests == []
    path = workspace["envs"] / "dev.yaml"
    path.write_text(path.read_text() + "\n# touched\n")
    context = dg.build_sensor_context(instance=instance, cursor=first.cursor, resources={"chainops": workspace["resource"]})
    assert [r.partition_key for r in sensor(context).run_requests] == ["dev"]


def test_schedule_requests_one_run_per_registered_environment(workspace):
    schedule = defs.get_schedule_def("nightly_reconcile")
    context = dg.build_schedule_context(
        instance=workspace["instance"], scheduled_execution_time=datetime(2026, 11, 27), repository_def=defs.get_repository_def()
    )
    requests = schedule.evaluate_tick(context).run_requests
    assert [(r.partition_key, r.run_key) for r in requests] == [
        ("dev", "nightly-2026-11-27-dev"),
        ("staging", "nightly-2026-11-27-staging"),
    ]


def test_dagster_cli_materializes_a_registered_partition(tmp_path):
    """The command from the README, in a subprocess with its own DAGSTER_HOME."""
    dagster_home = tmp_path / "dagster"
    dagster_home.mkdir()
    envs = tmp_path / "environments"
    shutil.copytree(EXAMPLES, envs)
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home), "CHAINOPS_HOME": str(tmp_path / "home"),
           "CHAINOPS_ENVIRONMENTS": str(envs), "CHAINOPS_CHARTS": str(EXAMPLES.parent / "chart_sources")}
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        instance.add_dynamic_partitions("environments", ["dev"])
    proc = subprocess.run(
        [venv_tool("dagster"), "asset", "materialize", "-m", "pipelines.definitions", "--select", "*", "--partition", "dev"],
        capture_output=True, text=True, env=env, cwd=EXAMPLES.parent, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert commit_count(tmp_path / "home" / "gitops.git") == 1
    assert "Chainops-Environment: dev" in git(tmp_path / "home" / "gitops.git", "log", "-1", "--format=%B")
