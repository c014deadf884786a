"""Leak-proofing: generate environments with every key source and sealing provider (CLI and
Dagster), then search everything chainops and Dagster leave behind for every private key
(hex with and without 0x, raw bytes, base64), keystore password, mnemonic (and its seed) and
the pipeline's age identity. The needles are gathered by independent routes: sops decrypts
the SOPS Secrets, the controller's algorithm (pycryptodome) unseals the SealedSecrets."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import dagster as dg
import pytest
from eth_account.hdaccount import Mnemonic, seed_from_mnemonic

from pipelines.lib.keys import derive_shared_secret
from tests.conftest import EXAMPLE_NAMES, EXAMPLES, REPO_ROOT, checkout, commit_count, venv_tool
from tests.key_helpers import (
    committed_secrets,
    identity_secret,
    leaked,
    make_controller_key,
    needles_for,
    open_escrow_file,
    private_keys_of,
)
from tests.postgres_server import DEPLOY_INSTANCE


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Example environments plus `vault`: sealed-secrets and keys from a mnemonic."""
    root = tmp_path_factory.mktemp("leaks")
    envs = root / "environments"
    shutil.copytree(EXAMPLES, envs)
    controller = make_controller_key()
    (envs / "certs").mkdir(exist_ok=True)
    (envs / "certs" / "controller.pem").write_bytes(controller.cert_pem)
    prod = envs / "prod.yaml"  # sealed for the example certificate, whose key nobody has: use ours
    prod.write_text(prod.read_text().replace("certs/prod-sealed-secrets.pem", "certs/controller.pem"))
    staging = (envs / "staging.yaml").read_text()
    vault = (
        staging.replace("chainId: 48720", "chainId: 48730")
        .replace("namespace: chain-staging", "namespace: chain-vault")
        .replace("rpc.staging.example.com", "rpc.vault.example.com")
        .replace("provider: sops", "provider: sealed-secrets\n    sealedSecretsCert: certs/controller.pem")
    )
    assert vault != staging
    (envs / "vault.yaml").write_text(vault + "keys: {source: mnemonic}\n")
    return {"root": root, "envs": envs, "controller": controller, "mnemonic": Mnemonic().generate(12)}


def run_env(world: dict, home: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "CHAINOPS_HOME": str(home),
        "CHAINOPS_ENVIRONMENTS": str(world["envs"]),
        "CHAINOPS_CHARTS": str(REPO_ROOT / "chart_sources"),
        "CHAINOPS_MNEMONIC": world["mnemonic"],
        "PYTHONPATH": str(REPO_ROOT),
        **extra,
    }


def needles_of(world: dict, home: Path, dest: Path, min_keys: int) -> set[bytes]:
    """Every secret of every environment committed to the home's repository."""
    work = checkout(home / "gitops.git", dest)
    identity_file = home / "age" / "identity.txt"
    found: dict[str, dict[str, str]] = {}
    for env_dir in sorted((work / "rendered").iterdir()):
        secrets = committed_secrets(work, env_dir.name, identity_file, world["controller"])
        escrow = open_escrow_file(env_dir / "keys.escrow.age", identity_file)
        committed_keys = {k for data in secrets.values() for k in private_keys_of(data)}
        assert committed_keys == {e["privateKey"] for e in escrow["keys"].values()}, "escrow and Secrets agree"
        found |= {f"{env_dir.name}/{name}": data for name, data in secrets.items()}
    identity = identity_secret(identity_file)
    derived = [derive_shared_secret(identity, env, purpose) for env in (*EXAMPLE_NAMES, "vault")
               for purpose in ("ethstats", "sealed-content-hmac")]
    seed = seed_from_mnemonic(world["mnemonic"], "").hex()
    needles = needles_for(found, world["mnemonic"], identity, seed, *derived)
    assert sum(1 for data in found.values() for _ in private_keys_of(data)) >= min_keys
    return needles


def git_objects(git_dir: Path) -> bytes:
    """Every object of a repository, decompressed (packs are zlib: a raw scan would miss them)."""
    return subprocess.run(
        ["git", "--git-dir", str(git_dir), "cat-file", "--batch-all-objects", "--batch"], capture_output=True, check=True
    ).stdout


def repositories(home: Path) -> list[Path]:
    return [home / "gitops.git", *sorted((home / "cache").glob("*.git"))]


def files_under(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink()}


def test_cli_compile_leaks_nothing_and_keeps_secret_files_private(world, tmp_path):
    home = tmp_path / "home"
    proc = subprocess.run([venv_tool("chainops"), "compile"], capture_output=True, env=run_env(world, home), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert commit_count(home / "gitops.git") == len(EXAMPLE_NAMES) + 1  # the examples and vault
    needles = needles_of(world, home, tmp_path / "work", min_keys=20)
    haystack = proc.stdout + proc.stderr + b"".join(git_objects(r) for r in repositories(home))
    assert b"network.lock.json" in haystack and len(haystack) > 100_000
    assert leaked(needles, haystack) == []
    # On disk, only the pipeline identity holds a secret, and it is private.
    holders = [p for p, data in files_under(home).items() if leaked(needles, data)]
    assert holders == [home / "age" / "identity.txt"]
    assert stat.S_IMODE(holders[0].stat().st_mode) == 0o600
    assert stat.S_IMODE((home / "age").stat().st_mode) == 0o700
    # A failing run does not leak either: an error that involves the keys.
    (home / "age" / "identity.txt").write_text("AGE-SECRET-KEY-1" + "Q" * 58 + "\n")
    failed = subprocess.run([venv_tool("chainops"), "compile"], capture_output=True, env=run_env(world, home), cwd=tmp_path)
    assert failed.returncode != 0 and leaked(needles, failed.stdout + failed.stderr) == []


def dagster_materialize(world: dict, dagster_home: Path, home: Path, partition: str, **extra: str) -> bytes:
    proc = subprocess.run(
        [venv_tool("dagster"), "asset", "materialize", "-m", "pipelines.definitions", "--select", "*",
         "--partition", partition],
        capture_output=True, env=run_env(world, home, DAGSTER_HOME=str(dagster_home), **extra), cwd=REPO_ROOT, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    return proc.stdout + proc.stderr


def test_dagster_sqlite_run_leaks_nothing(world, tmp_path):
    """Event log (SQLite), captured logs, IO-manager pickles, asset metadata: all under DAGSTER_HOME."""
    dagster_home, home = tmp_path / "dagster", tmp_path / "home"
    dagster_home.mkdir()
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        instance.add_dynamic_partitions("environments", ["vault"])
    output = dagster_materialize(world, dagster_home, home, "vault")
    needles = needles_of(world, home, tmp_path / "work", min_keys=7)
    stored = files_under(dagster_home)
    assert any("compute_logs" in str(p) for p in stored), "the run's captured logs are part of the scan"
    assert any("storage/node_keys/vault" in str(p) for p in stored), "the IO manager's pickles are part of the scan"
    haystack = output + b"".join(stored.values()) + b"".join(git_objects(r) for r in repositories(home))
    lock = (tmp_path / "work" / "rendered" / "vault" / "network.lock.json").read_text()
    assert any(line.strip().strip('",').encode() in b"".join(stored.values()) for line in lock.splitlines() if "0x" in line)
    assert leaked(needles, haystack) == []


def test_dagster_postgres_run_leaks_nothing(world, tmp_path, postgres, monkeypatch):
    """geth signers: keystores and passwords; SOPS Secrets."""
    dagster_home, home = tmp_path / "dagster", tmp_path / "home"
    dagster_home.mkdir()
    shutil.copy(DEPLOY_INSTANCE, dagster_home / "dagster.yaml")
    pg = postgres.env()
    for key, value in pg.items():  # deploy/dagster.yaml reads the connection from the environment
        monkeypatch.setenv(key, value)
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        instance.add_dynamic_partitions("environments", ["dev"])
    output = dagster_materialize(world, dagster_home, home, "dev", **pg)
    needles = needles_of(world, home, tmp_path / "work", min_keys=4)
    with postgres.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")
        tables = [name for (name,) in cur.fetchall()]
        dumped = []
        for table in tables:
            cur.execute(f'SELECT t::text FROM "{table}" t')  # noqa: S608 - names from the catalog
            dumped += [row for (row,) in cur.fetchall()]
    database = "\n".join(dumped).encode()
    assert b"ASSET_MATERIALIZATION" in database and b"node_keys" in database, "the scan sees the real event log"
    haystack = output + database + b"".join(files_under(dagster_home).values())
    haystack += b"".join(git_objects(r) for r in repositories(home))
    assert leaked(needles, haystack) == []
