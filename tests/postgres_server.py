"""A throwaway PostgreSQL server for the Dagster storage tests: initdb + pg_ctl (as the
`postgres` user when the tests run as root) on a free loopback port with password
authentication; `.ci/run` installs the Debian `postgresql` package when it is missing.
"""

import glob
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import pytest

DEPLOY_INSTANCE = Path(__file__).resolve().parents[1] / "deploy" / "dagster.yaml"


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
