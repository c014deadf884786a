"""Dagster: the code location loads, the assets compile and publish, blocking checks guard
the commit, the sensor and the schedule request the right runs."""

import base64
import json
import os
import shutil
import subprocess
from datetime import datetime
from pathlib import Path

import dagster as dg
import pytest
import yaml

from pipelines.definitions import defs
from pipelines.defs.resources import ChainopsResource, default_resource
from pipelines.lib.gitops import GitopsError
from pipelines.lib.keys import PrivateKeyMaterial
from pipelines.lib.leak_scan import files_holding_private_material
from tests.conftest import EXAMPLE_NAMES, EXAMPLES, REPO_ROOT, commit_count, git, venv_tool
from tests.dagster_helpers import ASSET_NAMES, ASSETS, CHECK_NAMES, CHECKS, checks_of  # noqa: E402
from tests.key_helpers import secrets_of
from tests.yaml_reader import read_yaml, read_yaml_all


def test_definitions_load_with_the_contract_names():
    dg.Definitions.validate_loadable(defs)
    repo = defs.get_repository_def()
    graph = repo.asset_graph
    assert {k.to_user_string() for k in graph.get_all_asset_keys()} == set(ASSET_NAMES)
    for name in ASSET_NAMES:
        node = graph.get(dg.AssetKey(name))
        partitions = node.partitions_def
        assert isinstance(partitions, dg.DynamicPartitionsDefinition) and partitions.name == "environments"
        assert node.owners == ["team:platform"] and node.description, name
        assert node.backfill_policy is None, "no policy = Dagster's one run per partition (one run per environment)"
    assert graph.get(dg.AssetKey("gitops_commit")).pools == {"gitops_publish"}
    # The lineage the contract names.
    assert [sorted(p.to_user_string() for p in graph.get(dg.AssetKey(n)).parent_keys) for n in ASSET_NAMES] == [
        [], ["environment_config"], ["environment_config", "node_keys"],
        ["environment_config", "genesis", "node_keys"], ["environment_config", "rendered_manifests"],
    ]
    checks = {key.name: graph.get_check_spec(key) for key in graph.asset_check_keys}
    assert set(checks) == set(CHECK_NAMES)
    assert {name for name, spec in checks.items() if spec.blocking} == {
        "config_valid", "genesis_lock", "manifests_valid", "no_plaintext_secrets"
    }
    assert {name: spec.asset_key.to_user_string() for name, spec in checks.items()} == {
        "config_valid": "environment_config", "genesis_lock": "genesis", "manifests_valid": "rendered_manifests",
        "no_plaintext_secrets": "rendered_manifests", "render_deterministic": "rendered_manifests",
    }
    job = repo.get_job("compile_environments")
    assert job.partitions_def.name == "environments"
    assert {k.to_user_string() for k in job.asset_layer.executable_asset_keys} == set(ASSET_NAMES)
    assert repo.get_sensor_def("environment_files").job_name == "compile_environments"
    assert repo.get_schedule_def("nightly_reconcile").cron_schedule == "0 2 * * *"
    assert job.executor_def.name == "in_process"


def test_resource_defaults_and_token_binding(monkeypatch, tmp_path):
    """Unset fields fall back to the CLI's variables; the token is an EnvVar, never a value."""
    monkeypatch.setenv("CHAINOPS_BRANCH", "release")
    monkeypatch.delenv("CHAINOPS_GIT_TOKEN", raising=False)
    assert ChainopsResource().paths().branch == "release"
    assert ChainopsResource(branch="main").paths().branch == "main"
    assert default_resource().git_token is None
    monkeypatch.setenv("CHAINOPS_GIT_TOKEN", "t0ken-value")
    bound = default_resource()
    assert isinstance(bound.git_token, dg.EnvVar) and bound.git_token.env_var_name == "CHAINOPS_GIT_TOKEN"
    with pytest.raises(Exception, match="review_mode"):
        ChainopsResource(review_mode="merge-request")
    with pytest.raises(GitopsError, match="EnvVar"):  # git reads the variable: a literal would be ignored
        ChainopsResource(git_token="another-token", home=str(tmp_path)).repository()


@pytest.fixture
def workspace(tmp_path: Path):
    envs = tmp_path / "environments"
    shutil.copytree(EXAMPLES, envs)
    resource = ChainopsResource(environments_dir=str(envs), home=str(tmp_path / "home"), charts_dir=str(REPO_ROOT / "chart_sources"))
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("environments", ["staging", "dev"])
        yield {"envs": envs, "home": tmp_path / "home", "resource": resource, "instance": instance}


def materialize(workspace, partition: str, tags: dict | None = None, resource: ChainopsResource | None = None):
    return dg.materialize(
        [*ASSETS, *CHECKS],
        partition_key=partition,
        instance=workspace["instance"],
        resources={"chainops": resource or workspace["resource"]},
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
    assert commit["validator_count"].value == len(lock["validators"]) == 4
    objects = [p for p in git(git_dir, "ls-tree", "-r", "--name-only", "main", "rendered/staging").split()
               if p.count("/") == 3 and p.endswith(".yaml")]
    bootstrap = [d for d in read_yaml_all(git(git_dir, "show", "main:bootstrap/staging.yaml")) if d]
    assert commit["objects_written"].value == len(objects) + len(bootstrap), "every object the commit writes"
    assert f"**Objects:** {len(objects) + len(bootstrap)} added" in commit["summary"].value, "the summary counts the same"
    assert commit["review"].value == "direct" and commit["branch"].value == "main"
    summary = commit["summary"].value  # the review summary a reviewer reads (pipelines.lib.review)
    assert "New network" in summary and lock["genesisHash"] in summary and "GENESIS CHANGED" not in summary
    genesis_meta = result.asset_materializations_for_node("genesis")[0].metadata
    assert genesis_meta["validator_count"].value == 4
    assert checks_of(result) == dict.fromkeys(CHECK_NAMES, (True, "ERROR"))
    run = workspace["instance"].get_run_by_id(result.run_id)
    assert (run.tags["chainops/environment"], run.tags["chainops/profile"]) == ("staging", "besu-qbft")

    # Neither the event log nor the IO manager's storage may hold a private key or password.
    work = tmp_path / "work"
    subprocess.run(["git", "clone", "-q", str(git_dir), str(work)], check=True)
    secrets = secrets_of(work, "staging", workspace["home"] / "age" / "identity.txt")
    needles = {v.encode() for data in secrets.values() for k, v in data.items() if k in ("nodekey", "password")}
    assert len(needles) >= 7
    records = workspace["instance"].fetch_materializations(dg.AssetKey("genesis"), limit=10).records
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


def test_decommission_from_dagster_removes_the_output_in_one_commit(workspace):
    assert materialize(workspace, "dev").success
    git_dir = workspace["home"] / "gitops.git"
    path = workspace["envs"] / "dev.yaml"
    path.write_text(path.read_text() + "decommission: true\n")
    result = materialize(workspace, "dev")
    assert result.success
    metadata = result.asset_materializations_for_node("gitops_commit")[0].metadata
    assert metadata["status"].value.startswith("decommissioned")
    assert commit_count(git_dir) == 2
    files = git(git_dir, "ls-tree", "-r", "--name-only", "main").split()
    assert not [f for f in files if f.startswith(("rendered/dev/", "bootstrap/dev.yaml"))]


def test_blocking_genesis_lock_stops_the_commit(workspace):
    assert materialize(workspace, "staging").success
    path = workspace["envs"] / "staging.yaml"
    path.write_text(path.read_text().replace("gasLimit: 30000000", "gasLimit: 31000000"))
    result = materialize(workspace, "staging")
    assert not result.success
    assert checks_of(result)["genesis_lock"] == (False, "ERROR")
    assert result.asset_materializations_for_node("gitops_commit") == []
    assert commit_count(workspace["home"] / "gitops.git") == 1
    allowed = materialize(workspace, "staging", tags={"chainops/allow-genesis-change": "true"})
    assert allowed.success and commit_count(workspace["home"] / "gitops.git") == 2
    metadata = allowed.asset_materializations_for_node("gitops_commit")[0].metadata
    assert "GENESIS CHANGED" in metadata["summary"].value and "GENESIS CHANGED" in metadata["headline"].value


LEAKY_CONFIGMAP = """{% import "_common/_helpers.j2" as h with context %}
{% set node = Values.secrets[0] %}
apiVersion: v1
kind: ConfigMap
metadata:
  name: debug-keys
  namespace: {{ Values.namespace | tojson }}
  labels: {{ h.labels("config") }}
data:
  nodekey: {{ node.data.nodekey | tojson }}
"""
# A Secret whose data SOPS encrypts, with the key copied into an annotation, which stays
# readable (SOPS encrypts only data/stringData): a Secret that is sealed and still leaks.
LEAKY_SECRET = """{% import "_common/_helpers.j2" as h with context %}
{% set node = Values.secrets[0] %}
apiVersion: v1
kind: Secret
metadata:
  name: debug-keys
  namespace: {{ Values.namespace | tojson }}
  labels: {{ h.labels("config") }}
  annotations:
    debug/nodekey: {{ node.data.nodekey | tojson }}
type: Opaque
data:
  nodekey: {{ node.data.nodekey | b64enc | tojson }}
"""


@pytest.mark.parametrize(
    "template, leaking_file",
    [
        (LEAKY_CONFIGMAP, "rendered/staging/besu-node/configmap-debug-keys.yaml"),
        (LEAKY_SECRET, "rendered/staging/besu-node/secret-debug-keys.yaml"),
    ],
    ids=["configmap", "secret-annotation"],
)
def test_blocking_no_plaintext_secrets_stops_a_chart_that_leaks_a_key(workspace, tmp_path, template, leaking_file):
    """Chart sources are configuration: a template that writes a node key where it stays
    readable must stop the commit, although every Secret's data is sealed."""
    charts = tmp_path / "charts"
    shutil.copytree(REPO_ROOT / "chart_sources", charts)
    (charts / "besu-node" / "templates" / "debug.yaml").write_text(template)
    leaky = ChainopsResource(environments_dir=str(workspace["envs"]), home=str(workspace["home"]), charts_dir=str(charts))
    result = materialize(workspace, "staging", resource=leaky)
    assert not result.success
    # The leak scan runs in the compile itself (lib.leak_scan, the CLI's too): the render
    # step refuses, naming the file, before any check or commit.
    failure = next(e for e in result.all_events if e.is_step_failure and e.step_key == "rendered_manifests")
    description = failure.event_specific_data.user_failure_data.description
    assert f"{leaking_file} would commit a private key" in description
    assert result.asset_materializations_for_node("gitops_commit") == []
    assert commit_count(workspace["home"] / "gitops.git") == 0, "nothing pushed"


def test_plaintext_provider_is_a_warning_not_a_block(workspace):
    """The documented opt-in (provider plaintext + allowPlaintextSecrets) commits, flagged."""
    path = workspace["envs"] / "dev.yaml"
    data = read_yaml(path.read_text())
    data["gitops"]["secrets"] = {"provider": "plaintext", "allowPlaintextSecrets": True}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    result = materialize(workspace, "dev")
    assert result.success
    assert checks_of(result)["no_plaintext_secrets"] == (False, "WARN")
    evaluation = next(e for e in result.get_asset_check_evaluations() if e.check_name == "no_plaintext_secrets")
    unsealed = evaluation.metadata["unsealed_secrets"].value
    assert unsealed and all("/secret-" in p for p in unsealed)
    assert commit_count(workspace["home"] / "gitops.git") == 1
    committed = git(workspace["home"] / "gitops.git", "show", f"main:{unsealed[0]}")
    assert "sops:" not in committed and "kind: Secret" in committed


def test_private_material_scan_finds_plain_prefixed_and_base64_forms():
    key = "ab" * 32
    material = {"n": PrivateKeyMaterial(key, '{"crypto": {}}', "pa55word-xyz")}
    files = {
        "a.yaml": f"k: {key.upper()}".encode(),
        "b.yaml": f"k: 0x{key}".encode(),
        "c.yaml": b"k: " + base64.b64encode(key.encode()),
        "d.yaml": b"p: " + base64.b64encode(b"pa55word-xyz"),
        "e.yaml": b"clean: " + ("cd" * 32).encode(),
    }
    assert files_holding_private_material(files, material) == ["a.yaml", "b.yaml", "c.yaml", "d.yaml"]
    assert files_holding_private_material(files, material, skip=["a.yaml"]) == ["b.yaml", "c.yaml", "d.yaml"]


def test_config_valid_blocks_only_the_environments_a_problem_involves(workspace):
    (workspace["envs"] / "broken.yaml").write_text("apiVersion: chainops/v1\nnetwork: {}\n")
    result = materialize(workspace, "dev")
    assert result.success, "an unrelated broken file does not block dev"
    evaluation = next(e for e in result.get_asset_check_evaluations() if e.check_name == "config_valid")
    assert "broken.yaml" in evaluation.metadata["other_files_with_problems"].value
    staging = read_yaml((workspace["envs"] / "staging.yaml").read_text())
    dev = workspace["envs"] / "dev.yaml"
    data = read_yaml(dev.read_text())
    data["network"]["chainId"] = staging["network"]["chainId"]
    dev.write_text(yaml.safe_dump(data, sort_keys=False))
    clash = materialize(workspace, "dev")
    assert not clash.success
    assert checks_of(clash)["config_valid"] == (False, "ERROR")
    assert commit_count(workspace["home"] / "gitops.git") == 1


# -- sensor and schedule -----------------------------------------------------------------
def add_environment(envs: Path, name: str, chain_id: int) -> Path:
    data = read_yaml((envs / "staging.yaml").read_text())
    data["network"]["chainId"] = chain_id
    data["kubernetes"]["namespace"] = f"chain-{name}"
    data["kubernetes"].pop("rpcIngress", None)
    path = envs / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def tick(workspace, cursor: str | None) -> dg.SensorResult:
    sensor = defs.get_sensor_def("environment_files")
    context = dg.build_sensor_context(instance=workspace["instance"], cursor=cursor, resources={"chainops": workspace["resource"]})
    result = sensor(context)
    for request in result.dynamic_partitions_requests:  # what the daemon does with them
        workspace["instance"].add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    return result


def test_sensor_adds_new_files_and_requests_runs_only_for_changes(workspace):
    instance = workspace["instance"]
    first = tick(workspace, None)
    assert sorted(r.partition_key for r in first.run_requests) == list(EXAMPLE_NAMES)
    registered = {"staging", "dev"}  # the workspace fixture registers these two
    assert [list(r.partition_keys) for r in first.dynamic_partitions_requests] == [
        [n for n in EXAMPLE_NAMES if n not in registered]
    ]

    unchanged = tick(workspace, first.cursor)
    assert unchanged.run_requests == [] and unchanged.dynamic_partitions_requests == []

    add_environment(workspace["envs"], "qa", 48999)
    new = tick(workspace, unchanged.cursor)
    assert [list(r.partition_keys) for r in new.dynamic_partitions_requests] == [["qa"]]
    assert [(r.partition_key, r.tags["chainops/environment"], r.tags["chainops/profile"]) for r in new.run_requests] == [
        ("qa", "qa", "besu-qbft")
    ]
    assert "qa" in instance.get_dynamic_partitions("environments")

    dev = workspace["envs"] / "dev.yaml"
    original = dev.read_text()
    dev.write_text(original + "\n# touched\n")
    changed = tick(workspace, new.cursor)
    assert [r.partition_key for r in changed.run_requests] == ["dev"] and changed.dynamic_partitions_requests == []

    dev.write_text(original)  # back to content that was compiled before: compile it again
    reverted = tick(workspace, changed.cursor)
    assert [r.partition_key for r in reverted.run_requests] == ["dev"]
    dev_keys = [r.run_key for t in (first, changed, reverted) for r in t.run_requests if r.partition_key == "dev"]
    assert len(set(dev_keys)) == 3, "run keys stay unique, so Dagster does not drop the revert"

    (workspace["envs"] / "seed.yaml").unlink()
    deleted = tick(workspace, reverted.cursor)
    assert deleted.run_requests == [] and deleted.dynamic_partitions_requests == []
    assert "seed" in instance.get_dynamic_partitions("environments"), "a deleted file never drops its partition"


def test_sensor_does_no_git_work(workspace):
    """The sensor runs in the long-lived daemon: it must not create the home or the repository."""
    tick(workspace, None)
    assert not workspace["home"].exists()


def test_schedule_requests_one_run_per_registered_environment(workspace):
    workspace["instance"].add_dynamic_partitions("environments", ["gone"])  # its file was deleted
    schedule = defs.get_schedule_def("nightly_reconcile")
    context = dg.build_schedule_context(
        instance=workspace["instance"], scheduled_execution_time=datetime(2026, 11, 27),
        repository_def=defs.get_repository_def(), resources={"chainops": workspace["resource"]},
    )
    requests = schedule.evaluate_tick(context).run_requests
    assert [(r.partition_key, r.run_key, r.tags["chainops/profile"]) for r in requests] == [
        ("dev", "nightly-2026-11-27-dev", "geth-clique"),
        ("staging", "nightly-2026-11-27-staging", "besu-qbft"),
    ]


def test_dagster_cli_materializes_a_registered_partition(tmp_path):
    """The command from the README, in a subprocess with its own DAGSTER_HOME."""
    dagster_home = tmp_path / "dagster"
    dagster_home.mkdir()
    envs = tmp_path / "environments"
    shutil.copytree(EXAMPLES, envs)
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home), "CHAINOPS_HOME": str(tmp_path / "home"),
           "CHAINOPS_ENVIRONMENTS": str(envs), "CHAINOPS_CHARTS": str(REPO_ROOT / "chart_sources")}
    env.pop("CHAINOPS_REPO", None)
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        instance.add_dynamic_partitions("environments", ["dev"])
    proc = subprocess.run(
        [venv_tool("dagster"), "asset", "materialize", "-m", "pipelines.definitions", "--select", "*", "--partition", "dev"],
        capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert commit_count(tmp_path / "home" / "gitops.git") == 1
    assert "Chainops-Environment: dev" in git(tmp_path / "home" / "gitops.git", "log", "-1", "--format=%B")


def test_gitops_commit_refuses_when_another_writer_changed_the_environment_after_render(workspace, tmp_path):
    """Between rendered_manifests and gitops_commit another writer publishes the same
    environment: the commit step must not overwrite it (its keys and lock would be lost)."""
    assert materialize(workspace, "staging").success
    git_dir = workspace["home"] / "gitops.git"
    path = workspace["envs"] / "staging.yaml"
    path.write_text(path.read_text().replace("rpc: 2", "rpc: 3"))
    upstream = dg.materialize(
        [*ASSETS, *CHECKS],
        partition_key="staging",
        instance=workspace["instance"],
        resources={"chainops": workspace["resource"]},
        selection=["environment_config", "node_keys", "genesis", "rendered_manifests"],
        raise_on_error=False,
    )
    assert upstream.success
    work = tmp_path / "other-writer"
    subprocess.run(["git", "clone", "-q", str(git_dir), str(work)], check=True)
    (work / "rendered" / "staging" / "README.md").write_text("edited elsewhere\n")
    subprocess.run(["git", "-C", str(work), "-c", "user.name=o", "-c", "user.email=o@o", "commit", "-qam", "other"], check=True)
    subprocess.run(["git", "-C", str(work), "push", "-q", "origin", "main"], check=True)
    head = git(git_dir, "rev-parse", "main")
    publish_only = dg.materialize(
        [*ASSETS, *CHECKS],
        partition_key="staging",
        instance=workspace["instance"],
        resources={"chainops": workspace["resource"]},
        selection=["gitops_commit"],
        raise_on_error=False,
    )
    assert not publish_only.success
    assert git(git_dir, "rev-parse", "main") == head, "nothing may be published over the other writer"


def test_two_environments_rendered_before_either_publishes_both_commit(workspace):
    """A backfill renders partitions in parallel: the shared .sops.yaml that the first
    publish adds is not a conflict for the second."""
    def run(partition: str, selection: list[str]):
        return dg.materialize(
            [*ASSETS, *CHECKS],
            partition_key=partition,
            instance=workspace["instance"],
            resources={"chainops": workspace["resource"]},
            selection=selection,
            raise_on_error=False,
        )

    upstream = ["environment_config", "node_keys", "genesis", "rendered_manifests"]
    assert run("dev", upstream).success and run("staging", upstream).success
    assert run("dev", ["gitops_commit"]).success
    assert run("staging", ["gitops_commit"]).success
    assert commit_count(workspace["home"] / "gitops.git") == 2


@pytest.mark.parametrize("published_first", [False, True], ids=["new environment", "node added"])
def test_a_run_compiles_on_one_snapshot_even_when_another_writer_publishes_mid_run(workspace, run_cli, published_first):
    """node_keys plans keys on the committed state it read; when another writer publishes the
    environment before rendered_manifests, the run must not mix its keys with the other
    writer's lock (that would replace the other writer's keys)."""
    def run(selection: list[str]):
        return dg.materialize(
            [*ASSETS, *CHECKS],
            partition_key="staging",
            instance=workspace["instance"],
            resources={"chainops": workspace["resource"]},
            selection=selection,
            raise_on_error=False,
        )

    compile_cli = ("compile", "staging", "--home", workspace["home"], "--environments", workspace["envs"], "--no-cache")
    if published_first:  # the other writer's change adds an RPC node: genesis stays, a new key appears
        assert run_cli(*compile_cli).code == 0
        path = workspace["envs"] / "staging.yaml"
        path.write_text(path.read_text().replace("rpc: 2", "rpc: 3"))
    assert run(["environment_config", "node_keys"]).success
    other = run_cli(*compile_cli)
    assert other.code == 0, other.err
    git_dir = workspace["home"] / "gitops.git"
    head = git(git_dir, "rev-parse", "main")
    locked = json.loads(git(git_dir, "show", "main:rendered/staging/network.lock.json"))
    rest = run(["genesis", "rendered_manifests", "gitops_commit"])
    assert not rest.success
    assert git(git_dir, "rev-parse", "main") == head, "nothing may be published over the other writer"
    assert json.loads(git(git_dir, "show", "main:rendered/staging/network.lock.json")) == locked
    again = run(["environment_config", "node_keys", "genesis", "rendered_manifests", "gitops_commit"])
    assert again.success, "the next run compiles on top of the other writer's state"
    assert json.loads(git(git_dir, "show", "main:rendered/staging/network.lock.json"))["nodes"] == locked["nodes"]
