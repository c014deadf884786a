"""deploy/: what can be checked without a cluster or a Docker daemon.

- Helm values: parse, every key exists in the official chart's values schema (an excerpt
  in tests/data, strict about unknown keys), and the instance configuration the chart
  derives from them is valid for Dagster itself.
- Dockerfile: parsed by Docker's own parser; the package it installs builds with the
  same `pip install .` from exactly the files it copies, and imports and loads the code
  location from there; the entrypoint installs the age identity or refuses to start.
- dagster.local.yaml (make ui): the publishing pool and run monitoring.
"""

import copy
import json
import os
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import dagster as dg
import dockerfile
import jsonschema
import pytest
import yaml

from tests.conftest import REPO_ROOT
from tests.yaml_reader import read_yaml

DEPLOY = REPO_ROOT / "deploy"
VALUES = DEPLOY / "helm" / "values.yaml"
SCHEMA = Path(__file__).parents[1] / "data" / "dagster_helm_values.schema.json"
# How the chart's configmap-instance.yaml turns dagsterDaemon.runMonitoring into dagster.yaml.
CHART_RUN_MONITORING_KEYS = {
    "enabled": "enabled",
    "startTimeoutSeconds": "start_timeout_seconds",
    "cancelTimeoutSeconds": "cancel_timeout_seconds",
    "maxResumeRunAttempts": "max_resume_run_attempts",
    "pollIntervalSeconds": "poll_interval_seconds",
    "freeSlotsAfterRunEndSeconds": "free_slots_after_run_end_seconds",
}


def values() -> dict:
    return read_yaml(VALUES.read_text())


def schema_errors(document: dict) -> list[str]:
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]


def docker_commands() -> list[dockerfile.Command]:
    return list(dockerfile.parse_file(str(DEPLOY / "Dockerfile")))


def docker_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for command in docker_commands():
        if command.cmd == "ENV":
            env.update(zip(command.value[::2], command.value[1::2]))
    return env


# -- Helm values --------------------------------------------------------------------------
def test_helm_values_keys_exist_in_the_chart_schema():
    assert schema_errors(values()) == []


@pytest.mark.parametrize(
    "path, key",
    [
        ((), "runLaucher"),
        (("runLauncher", "config", "k8sRunLauncher"), "imagePullPolcy"),
        (("dagster-user-deployments", "deployments", 0), "codeServerArg"),
        (("dagsterDaemon", "runCoordinator"), "confg"),
        (("postgresql",), "postgresqlHostname"),
    ],
)
def test_the_schema_check_rejects_a_misspelled_key(path, key):
    """The excerpt is strict: a typo anywhere chainops sets keys is an error, not a silent default."""
    document = copy.deepcopy(values())
    target = document
    for part in path:
        target = target[part]
    target[key] = target.get(key, 1)
    assert any(key in error for error in schema_errors(document))


def chart_instance_config(v: dict) -> dict:
    """The parts of dagster.yaml the chart renders from these values (run coordinator, run
    monitoring, additionalInstanceConfig), with SQLite storage standing in for PostgreSQL.
    Like the chart's template, the run coordinator gets a config (with max_concurrent_runs,
    -1 when unset) as soon as any queuedRunCoordinator option is set."""
    daemon = v["dagsterDaemon"]
    queued = (daemon["runCoordinator"].get("config") or {}).get("queuedRunCoordinator") or {}
    coordinator: dict = {"module": "dagster.core.run_coordinator", "class": "QueuedRunCoordinator"}
    if any(value not in (None, "", [], {}) for value in queued.values()):
        coordinator["config"] = {"max_concurrent_runs": queued.get("maxConcurrentRuns", -1)}
    config = {
        "run_coordinator": coordinator,
        "run_monitoring": {CHART_RUN_MONITORING_KEYS[k]: value for k, value in daemon["runMonitoring"].items()},
    }
    config.update(copy.deepcopy(v["additionalInstanceConfig"]))
    return config


def test_helm_instance_config_is_valid_for_dagster(tmp_path):
    v = values()
    assert set(v["dagsterDaemon"]["runMonitoring"]) <= set(CHART_RUN_MONITORING_KEYS), "keys the chart template reads"
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(chart_instance_config(v)))
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:  # Dagster's own schema validation
        pools = instance.event_log_storage.get_pool_config()
        assert (pools.default_pool_limit, pools.pool_granularity.value) == (1, "op")
        assert instance.run_monitoring_enabled
        assert instance.run_monitoring_settings["free_slots_after_run_end_seconds"] > 0
        assert "MONITORING" in instance.get_required_daemon_types()
        assert instance.get_concurrency_config().run_queue_config.max_concurrent_runs == 8


def test_helm_values_agree_with_the_image_and_the_code():
    v = values()
    deployment = v["dagster-user-deployments"]["deployments"][0]
    workspace = read_yaml((REPO_ROOT / "workspace.yaml").read_text())
    assert deployment["codeServerArgs"] == ["-m", workspace["load_from"][0]["python_module"]]
    env = docker_env()
    commands = docker_commands()
    assert str(deployment["port"]) in next(c.value for c in commands if c.cmd == "EXPOSE")
    user = next(c.value[0] for c in commands if c.cmd == "USER").split(":")[0]
    assert str(deployment["podSecurityContext"]["runAsUser"]) == user
    mounts = {m["name"]: m["mountPath"] for m in deployment["volumeMounts"]}
    volumes = {vol["name"]: vol for vol in deployment["volumes"]}
    assert mounts["chainops-age"] == str(Path(env["CHAINOPS_AGE_IDENTITY_FILE"]).parent)
    assert volumes["chainops-age"]["secret"]["defaultMode"] == 0o440, "readable by fsGroup, which the image's user is in"
    assert mounts["chainops-home"] == env["CHAINOPS_HOME"]
    assert deployment["includeConfigInLaunchedRuns"]["enabled"], "run pods need the same identity, token and settings"
    run_pod = v["runLauncher"]["config"]["k8sRunLauncher"]["runK8sConfig"]["podSpecConfig"]["securityContext"]
    assert run_pod == deployment["podSecurityContext"], "run pods read the identity like the code server does"
    read_by_code = set()
    for path in (REPO_ROOT / "pipelines").rglob("*.py"):
        read_by_code.update(word for word in path.read_text().replace('"', " ").split() if word.startswith("CHAINOPS_"))
    assert set(deployment["env"]) <= read_by_code
    assert v["runLauncher"]["type"] == "K8sRunLauncher"
    assert v["postgresql"]["postgresqlScheme"] == "postgresql+psycopg2"


# -- Dockerfile ---------------------------------------------------------------------------
def test_dockerfile_parses_and_copies_only_what_exists():
    commands = docker_commands()
    assert commands[0].cmd == "FROM" and commands[0].value[0].startswith("python:3.11")
    copies = [c for c in commands if c.cmd == "COPY"]
    for command in copies:
        for source in command.value[:-1]:
            assert (REPO_ROOT / source).exists(), source
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert {s.rstrip("/") for c in copies for s in c.value[:-1]} == allowed, "the build context is exactly what is copied"
    assert any(c.cmd == "RUN" and "pip install" in c.value[0] for c in commands)


@pytest.mark.slow  # pip builds and installs the package
def test_dockerfile_pip_install_builds_a_package_that_loads_the_code_location(tmp_path):
    """Replay the Dockerfile's COPY and `pip install .` steps in a directory standing in for
    WORKDIR (dependencies come from this venv, not from the network), then import the code
    location from the installed package, with the image's ENV and no repository on sys.path."""
    commands = docker_commands()
    workdir = next(c.value[0] for c in commands if c.cmd == "WORKDIR")
    root = tmp_path / "image"
    context = root / workdir.lstrip("/")
    site = tmp_path / "site"
    context.mkdir(parents=True)
    ran_pip = False
    for command in commands:
        if command.cmd == "COPY":
            *sources, dest = command.value
            target = context / dest if not dest.startswith("/") else root / dest.lstrip("/")
            for source in sources:
                src = REPO_ROOT / source
                into = target / src.name if dest.endswith("/") and src.is_file() else target
                if src.is_dir():
                    shutil.copytree(src, into, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    into.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(src, into)
        elif command.cmd == "RUN" and "pip install" in command.value[0]:
            args = shlex.split(command.value[0])
            assert args[:2] == ["pip", "install"] and args[-1] == "."
            proc = subprocess.run(
                [sys.executable, "-m", "pip", "install", "--quiet", *args[2:-1], "--no-deps", "--target", str(site), "."],
                cwd=context, capture_output=True, text=True, timeout=300,
            )
            assert proc.returncode == 0, proc.stderr[-2000:]
            ran_pip = True
    assert ran_pip
    image_env = {k: v.replace(workdir, str(context)) for k, v in docker_env().items()}
    probe = (
        "import pipelines, dagster as dg\n"
        "from pipelines.definitions import defs\n"
        "dg.Definitions.validate_loadable(defs)\n"
        "from pipelines.lib import markdown\n"
        "markdown.template_env().get_template('review_summary.md.j2')\n"
        "from pipelines.lib.settings import resolve_settings\n"
        "s = resolve_settings()\n"
        "assert (s.charts_dir / 'besu-node' / 'Chart.yaml').is_file(), s.charts_dir\n"
        "assert sorted(p.stem for p in s.environments_dir.glob('*.yaml')), s.environments_dir\n"
        "print(pipelines.__file__)\n"
    )
    env = {**os.environ, **image_env, "PYTHONPATH": str(site), "CHAINOPS_AGE_IDENTITY_FILE": ""}
    proc = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().startswith(str(site)), "imported from the installed package, not the repository"


def test_entrypoint_installs_the_age_identity_or_refuses_to_start(tmp_path):
    identity = tmp_path / "secret" / "identity.txt"
    identity.parent.mkdir()
    identity.write_text("# test identity\nAGE-SECRET-KEY-1TESTONLY\n")
    identity.chmod(0o440)
    home = tmp_path / "home"
    env = {"PATH": os.environ["PATH"], "CHAINOPS_HOME": str(home), "CHAINOPS_AGE_IDENTITY_FILE": str(identity)}
    entrypoint = str(DEPLOY / "entrypoint.sh")
    ok = subprocess.run(["sh", entrypoint, "sh", "-c", "echo started"], env=env, capture_output=True, text=True)
    assert (ok.returncode, ok.stdout) == (0, "started\n"), ok.stderr
    installed = home / "age" / "identity.txt"
    assert installed.read_text() == identity.read_text()
    assert stat.S_IMODE(installed.stat().st_mode) == 0o600
    assert stat.S_IMODE((home / "age").stat().st_mode) == 0o700
    missing = subprocess.run(
        ["sh", entrypoint, "sh", "-c", "echo started"], env={**env, "CHAINOPS_AGE_IDENTITY_FILE": str(tmp_path / "nope")},
        capture_output=True, text=True,
    )
    assert missing.returncode == 1 and missing.stdout == "" and "age identity" in missing.stderr


# -- local instance (make ui) ---------------------------------------------------------------
def test_local_instance_serializes_publishing_and_monitors_runs(tmp_path):
    shutil.copy(DEPLOY / "dagster.local.yaml", tmp_path / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        pools = instance.event_log_storage.get_pool_config()
        assert (pools.default_pool_limit, pools.pool_granularity.value) == (1, "op")
        assert instance.run_monitoring_enabled and instance.run_monitoring_settings["free_slots_after_run_end_seconds"] > 0
        assert type(instance.run_storage).__name__ == "SqliteRunStorage"
