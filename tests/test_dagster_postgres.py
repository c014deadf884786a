"""Dagster with PostgreSQL instance storage (deploy/dagster.yaml) against a real PostgreSQL server.

The fixture starts a throwaway server (initdb + pg_ctl, as the `postgres` user when the
tests run as root) on a free loopback port with password authentication; `.ci/run`
installs the Debian `postgresql` package when it is missing.
"""

import glob
import json
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import psycopg2
import pytest

from tests.conftest import EXAMPLES, REPO_ROOT, checkout, commit_count, git, venv_tool
from tests.test_end_to_end import secrets_of

DEPLOY_INSTANCE = REPO_ROOT / "deploy" / "dagster.yaml"


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    database: str
    username: str
    password: str

    def env(self) -> dict[str, str]:
        """The variables deploy/dagster.yaml reads."""
        return {
            "DAGSTER_PG_HOST": self.host,
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_DB": self.database,
            "DAGSTER_PG_USERNAME": self.username,
            "DAGSTER_PG_PASSWORD": self.password,
        }

    def connect(self):
        return psycopg2.connect(
            host=self.host, port=self.port, dbname=self.database, user=self.username, password=self.password
        )


def postgres_bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _as_postgres_user(args: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root; CI runs as root."""
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


def _pg(bindir: Path, tool: str, *args: str) -> None:
    subprocess.run(_as_postgres_user([str(bindir / tool), *args]), check=True, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    bindir = postgres_bindir()
    if bindir is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not installed; .ci/run installs the Debian postgresql package")
        pytest.skip("PostgreSQL server binaries not installed (apt-get install postgresql)")
    root = Path(tempfile.mkdtemp(prefix="chainops-pg-"))
    data, sockets = root / "data", root / "sockets"
    started = False
    try:
        sockets.mkdir()
        admin_password = secrets.token_hex(16)
        (root / "pwfile").write_text(admin_password + "\n")
        if os.geteuid() == 0:
            for path in (root, sockets, root / "pwfile"):
                shutil.chown(path, "postgres")
        port = free_port()
        _pg(bindir, "initdb", "-D", str(data), "-U", "postgres", "--pwfile", str(root / "pwfile"),
            "--auth-local=trust", "--auth-host=scram-sha-256", "--encoding=UTF8", "--no-sync")
        _pg(bindir, "pg_ctl", "-D", str(data), "-l", str(root / "server.log"), "-w", "-t", "60", "start",
            "-o", f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off")
        started = True
        server = PostgresServer("127.0.0.1", port, "dagster", "dagster", secrets.token_hex(16))
        psql = ("-h", str(sockets), "-p", str(port), "-U", "postgres", "-v", "ON_ERROR_STOP=1", "-q", "-c")
        _pg(bindir, "psql", *psql, f"CREATE ROLE dagster LOGIN PASSWORD '{server.password}'")
        _pg(bindir, "psql", *psql, "CREATE DATABASE dagster OWNER dagster")
        yield server
    finally:
        if started:
            subprocess.run(_as_postgres_user([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]),
                           capture_output=True, timeout=120)
        shutil.rmtree(root, ignore_errors=True)


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
