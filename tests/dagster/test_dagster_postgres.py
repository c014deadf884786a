"""Dagster with PostgreSQL instance storage (deploy/dagster.yaml) against a real PostgreSQL server.

The fixture starts a throwaway server (initdb + pg_ctl, as the `postgres` user when the
tests run as root) on a free loopback port with password authentication; `.ci/run`
installs the Debian `postgresql` package when it is missing.
"""

import json
import os
import shutil
import subprocess

import dagster as dg

from tests.conftest import EXAMPLES, REPO_ROOT, checkout, commit_count, git, venv_tool
from tests.key_helpers import secrets_of
from tests.postgres_server import DEPLOY_INSTANCE


def test_partition_materializes_with_postgres_storage(postgres, tmp_path, monkeypatch):
    """deploy/dagster.yaml as it is, the README's materialize command, and the rows read
    back with plain SQL: the run, its materialization events, the publishing pool."""
    dagster_home = tmp_path / "dagster"
    dagster_home.mkdir()
    shutil.copy(DEPLOY_INSTANCE, dagster_home / "dagster.yaml")
    envs = tmp_path / "environments"
    shutil.copytree(EXAMPLES, envs)
    home = tmp_path / "home"
    for key, value in postgres.env().items():
        monkeypatch.setenv(key, value)
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
        instance.add_dynamic_partitions("environments", ["dev"])

    env = {**os.environ, "DAGSTER_HOME": str(dagster_home), "CHAINOPS_HOME": str(home),
           "CHAINOPS_ENVIRONMENTS": str(envs), "CHAINOPS_CHARTS": str(REPO_ROOT / "chart_sources")}
    proc = subprocess.run(
        [venv_tool("dagster"), "asset", "materialize", "-m", "pipelines.definitions", "--select", "*", "--partition", "dev"],
        capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert commit_count(home / "gitops.git") == 1
    head = git(home / "gitops.git", "rev-parse", "main").strip()

    with postgres.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT run_id, status, partition, run_body FROM runs")
        runs = cur.fetchall()
        assert [(status, partition) for _, status, partition, _ in runs] == [("SUCCESS", "dev")]
        run_id, _, _, run_body = runs[0]
        tags = json.loads(run_body)["tags"]
        assert tags["chainops/environment"] == "dev" and tags["chainops/profile"] == "geth-clique"

        cur.execute(
            "SELECT asset_key, partition, event FROM event_logs "
            "WHERE dagster_event_type = 'ASSET_MATERIALIZATION' AND run_id = %s", (run_id,)
        )
        materialized = {(json.loads(key)[0], partition): event for key, partition, event in cur.fetchall()}
        assert set(materialized) == {
            (name, "dev") for name in ("environment_config", "node_keys", "genesis", "rendered_manifests", "gitops_commit")
        }
        assert head in materialized[("gitops_commit", "dev")], "the commit id is in the stored metadata"

        cur.execute(
            "SELECT event FROM event_logs WHERE dagster_event_type = 'ASSET_CHECK_EVALUATION' AND run_id = %s", (run_id,)
        )
        evaluations = [json.loads(e)["dagster_event"]["event_specific_data"] for (e,) in cur.fetchall()]
        assert {(e["check_name"], e["success"]) for e in evaluations} == {
            (name, True) for name in ("config_valid", "genesis_lock", "manifests_valid", "no_plaintext_secrets", "render_deterministic")
        }

        cur.execute('SELECT concurrency_key, "limit", using_default_limit FROM concurrency_limits')
        assert cur.fetchall() == [("gitops_publish", 1, True)], "publishing initialised its pool from default_limit"
        cur.execute("SELECT count(*), count(run_id) FROM concurrency_slots WHERE concurrency_key = 'gitops_publish'")
        assert cur.fetchone() == (1, 0), "one slot, released after the run"

        # No private key or password in anything Dagster stored in PostgreSQL.
        cur.execute("SELECT event FROM event_logs")
        stored = "\n".join(e for (e,) in cur.fetchall()).lower()
    secrets_found = secrets_of(checkout(home / "gitops.git", tmp_path / "work"), "dev", home / "age" / "identity.txt")
    needles = {v.lower() for data in secrets_found.values() for k, v in data.items() if k in ("nodekey", "password")}
    assert len(needles) >= 4
    assert [n for n in needles if n in stored] == []
