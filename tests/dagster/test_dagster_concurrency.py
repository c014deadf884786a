"""Publishing is serialized by the pool `gitops_publish` (limit 1 from the instance config),
and run monitoring frees the slot a crashed run still holds.

The instance is deploy/dagster.local.yaml as shipped, except that the free-slot delay is
cut from 60 s to 1 s so the test does not wait a minute. The crashed run is what a run
worker killed mid-publish leaves behind: a run marked failed that still holds the slot.
"""

import logging
import shutil
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import yaml
from dagster._daemon.monitoring.concurrency import execute_concurrency_slots_iteration

from pipelines.defs.publish.assets import PUBLISH_POOL
from pipelines.defs.resources import ChainopsResource
from tests.conftest import EXAMPLES, REPO_ROOT, commit_count
from tests.dagster_helpers import ASSETS, CHECKS
from tests.yaml_reader import read_yaml


def local_instance(tmp_path: Path) -> dg.DagsterInstance:
    config = read_yaml((REPO_ROOT / "deploy" / "dagster.local.yaml").read_text())
    assert config["run_monitoring"]["free_slots_after_run_end_seconds"] > 1
    config["run_monitoring"]["free_slots_after_run_end_seconds"] = 1
    home = tmp_path / "dagster"
    home.mkdir()
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    return dg.DagsterInstance.from_config(str(home))


def crashed_run_holding_the_slot(instance: dg.DagsterInstance) -> dg.DagsterRun:
    run = instance.add_run(dg.DagsterRun(job_name="compile_environments", run_id="crashed-publisher", status=dg.DagsterRunStatus.STARTED))
    storage = instance.event_log_storage
    storage.initialize_concurrency_limit_to_default(PUBLISH_POOL)
    assert storage.claim_concurrency_slot(PUBLISH_POOL, run.run_id, "gitops_commit").is_claimed
    instance.report_run_failed(run, "run worker died (simulated crash)")
    return run


def step_events(instance: dg.DagsterInstance, step_key: str) -> set[dg.DagsterEventType]:
    records = instance.get_records_for_run(run_id=run_ids(instance)[0]).records if run_ids(instance) else []
    return {r.event_log_entry.dagster_event_type for r in records if r.event_log_entry.step_key == step_key}


def run_ids(instance: dg.DagsterInstance) -> list[str]:
    return [r.run_id for r in instance.get_runs() if r.run_id != "crashed-publisher"]


def test_publishing_waits_for_the_pool_slot_and_monitoring_frees_a_crashed_runs_slot(tmp_path):
    envs = tmp_path / "environments"
    shutil.copytree(EXAMPLES, envs)
    home = tmp_path / "home"
    resource = ChainopsResource(environments_dir=str(envs), home=str(home), charts_dir=str(REPO_ROOT / "chart_sources"))
    with local_instance(tmp_path) as instance:
        instance.add_dynamic_partitions("environments", ["dev"])
        crashed = crashed_run_holding_the_slot(instance)
        info = instance.event_log_storage.get_concurrency_info(PUBLISH_POOL)
        assert (info.slot_count, info.active_slot_count) == (1, 1)

        outcome: dict = {}
        worker = threading.Thread(
            target=lambda: outcome.setdefault(
                "result",
                dg.materialize([*ASSETS, *CHECKS], partition_key="dev", instance=instance,
                               resources={"chainops": resource}, raise_on_error=False),
            ),
            daemon=True,
        )
        worker.start()
        deadline = time.monotonic() + 180
        while dg.DagsterEventType.STEP_SUCCESS not in step_events(instance, "rendered_manifests"):
            assert time.monotonic() < deadline and worker.is_alive(), "the run never reached publishing"
            time.sleep(0.5)
        time.sleep(5)  # the run would have published by now if the pool did not hold it back
        assert dg.DagsterEventType.STEP_START not in step_events(instance, "gitops_commit")
        assert commit_count(home / "gitops.git") == 0
        assert worker.is_alive()

        time.sleep(1.5)  # past free_slots_after_run_end_seconds
        logger = logging.getLogger("test-monitoring")
        list(execute_concurrency_slots_iteration(SimpleNamespace(instance=instance), logger))
        assert crashed.run_id not in instance.event_log_storage.get_concurrency_info(PUBLISH_POOL).active_run_ids
        worker.join(timeout=180)
        assert not worker.is_alive()
        result = outcome["result"]
        assert result.success
        assert result.asset_materializations_for_node("gitops_commit")[0].metadata["commit"].value != "unchanged"
        assert commit_count(home / "gitops.git") == 1
        info = instance.event_log_storage.get_concurrency_info(PUBLISH_POOL)
        assert (info.slot_count, info.active_slot_count) == (1, 0), "the publishing run released its slot too"
