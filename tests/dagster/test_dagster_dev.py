"""End to end through Dagster's own processes: `dagster dev` (webserver, daemon, code
server) on a free loopback port, driven only through the GraphQL API the UI uses.

Two partitions are registered and backfilled like an operator does from the UI; the
backfill daemon launches one run per environment (the backfill policy), the queued run
coordinator starts them, and both environments land as commits in the bare repository.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from tests.conftest import EXAMPLES, REPO_ROOT, commit_count, git, venv_tool

ASSETS = ["environment_config", "node_keys", "genesis", "rendered_manifests", "gitops_commit"]
ENVIRONMENTS = ["dev", "staging"]
CHECKS = ["config_valid", "genesis_lock", "manifests_valid", "no_plaintext_secrets", "render_deterministic"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class GraphQL:
    def __init__(self, port: int):
        self.url = f"http://127.0.0.1:{port}/graphql"

    def __call__(self, query: str, **variables: object) -> dict:
        body = json.dumps({"query": query, "variables": variables}).encode()
        request = urllib.request.Request(self.url, data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            result = json.loads(response.read())
        assert not result.get("errors"), result["errors"]
        return result["data"]


def wait_for(predicate, timeout: float, what: str, interval: float = 1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def default_signals() -> None:
    """In the child: dagster dev maps SIGTERM to its SIGINT handler, so a SIGINT ignored
    by a background parent would make it ignore SIGTERM too."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def stop_process_group(proc: subprocess.Popen) -> None:
    """SIGTERM to the whole group (dagster dev, webserver, daemon, code server, run workers)."""
    pgid = proc.pid  # start_new_session: the leader's pid is the group id
    try:
        os.killpg(pgid, signal.SIGTERM)
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(pgid, signal.SIGKILL)
        proc.wait(timeout=30)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.5)
    os.killpg(pgid, signal.SIGKILL)


@pytest.fixture
def dagster_dev(tmp_path: Path) -> Iterator[dict]:
    dagster_home = tmp_path / "dagster"
    dagster_home.mkdir()
    shutil.copy(REPO_ROOT / "deploy" / "dagster.local.yaml", dagster_home / "dagster.yaml")
    envs = tmp_path / "environments"
    shutil.copytree(EXAMPLES, envs)
    home = tmp_path / "home"
    port = free_port()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(dagster_home),
        "CHAINOPS_HOME": str(home),
        "CHAINOPS_ENVIRONMENTS": str(envs),
        "CHAINOPS_CHARTS": str(REPO_ROOT / "chart_sources"),
    }
    env.pop("CHAINOPS_REPO", None)
    log = (tmp_path / "dagster-dev.log").open("wb")
    proc = subprocess.Popen(
        [venv_tool("dagster"), "dev", "-w", str(REPO_ROOT / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(port)],
        cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True, preexec_fn=default_signals,
    )
    try:
        yield {"port": port, "home": home, "dagster_home": dagster_home, "proc": proc, "log": tmp_path / "dagster-dev.log"}
    finally:
        stop_process_group(proc)
        log.close()


def server_up(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


REPOSITORIES = """
query { repositoriesOrError { __typename ... on RepositoryConnection { nodes { name location { name } } }
        ... on PythonError { message } } }"""

ADD_PARTITION = """
mutation($selector: RepositorySelector!, $key: String!) {
  addDynamicPartition(repositorySelector: $selector, partitionsDefName: "environments", partitionKey: $key) {
    __typename ... on AddDynamicPartitionSuccess { partitionKey } ... on PythonError { message } } }"""

LAUNCH_BACKFILL = """
mutation($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }"""

BACKFILL = """
query($id: String!) { partitionBackfillOrError(backfillId: $id) {
  __typename ... on PartitionBackfill { status } ... on PythonError { message } } }"""

BACKFILL_RUNS = """
query($id: String!) { runsOrError(filter: {tags: [{key: "dagster/backfill", value: $id}]}) {
  ... on Runs { results { runId status tags { key value } } } } }"""


def test_ui_backfill_of_two_partitions_commits_both_environments(dagster_dev):
    gql = GraphQL(dagster_dev["port"])
    wait_for(lambda: server_up(dagster_dev["port"]), 180, "the webserver", interval=0.5)
    repos = wait_for(
        lambda: gql(REPOSITORIES)["repositoriesOrError"].get("nodes"), 120, "the code location to load"
    )
    selector = {"repositoryName": repos[0]["name"], "repositoryLocationName": repos[0]["location"]["name"]}
    for key in ENVIRONMENTS:
        added = gql(ADD_PARTITION, selector=selector, key=key)["addDynamicPartition"]
        assert added == {"__typename": "AddDynamicPartitionSuccess", "partitionKey": key}

    launched = gql(
        LAUNCH_BACKFILL,
        params={"partitionNames": ENVIRONMENTS, "assetSelection": [{"path": [a]} for a in ASSETS]},
    )["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    backfill_id = launched["backfillId"]

    def finished() -> str | None:
        status = gql(BACKFILL, id=backfill_id)["partitionBackfillOrError"]["status"]
        return status if status not in ("REQUESTED", "CANCELING", "FAILING") else None

    status = wait_for(finished, 420, "the backfill to finish", interval=2)
    runs = gql(BACKFILL_RUNS, id=backfill_id)["runsOrError"]["results"]
    assert status == "COMPLETED_SUCCESS", (status, runs, dagster_dev["log"].read_text()[-4000:])

    # One run per environment, each tagged with its environment and profile.
    tags = sorted(({t["key"]: t["value"] for t in r["tags"]} for r in runs), key=lambda t: t["dagster/partition"])
    assert [r["status"] for r in runs] == ["SUCCESS", "SUCCESS"]
    assert [(t["dagster/partition"], t["chainops/environment"], t["chainops/profile"]) for t in tags] == [
        ("dev", "dev", "geth-clique"),
        ("staging", "staging", "besu-qbft"),
    ]

    git_dir = dagster_dev["home"] / "gitops.git"
    assert commit_count(git_dir) == 2
    messages = git(git_dir, "log", "--format=%B%x00", "main")
    assert sorted(m.split("Chainops-Environment: ")[1].split()[0] for m in messages.split("\0") if m.strip()) == ENVIRONMENTS
    files = git(git_dir, "ls-tree", "-r", "--name-only", "main").split()
    for env in ENVIRONMENTS:
        assert f"rendered/{env}/network.lock.json" in files and f"bootstrap/{env}.yaml" in files
    assert not any(f.startswith("rendered/seed/") for f in files), "only the backfilled partitions are compiled"

    # The publishing steps of the two runs never overlapped (pool gitops_publish, limit 1).
    with dg.DagsterInstance.from_config(str(dagster_dev["dagster_home"])) as instance:
        assert instance.event_log_storage.get_concurrency_info("gitops_publish").slot_count == 1
        spans = []
        for run in runs:
            logs = instance.all_logs(run["runId"])
            checked = {
                e.dagster_event.event_specific_data.check_name: e.dagster_event.event_specific_data.passed
                for e in logs if e.dagster_event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
            }
            assert checked == dict.fromkeys(CHECKS, True), "the backfill runs every check, blocking ones first"
            events = {e.dagster_event_type: e.timestamp for e in logs if e.step_key == "gitops_commit" and e.dagster_event}
            spans.append((events[dg.DagsterEventType.STEP_START], events[dg.DagsterEventType.STEP_SUCCESS]))
    first, second = sorted(spans)
    assert first[1] <= second[0], f"gitops_commit ran concurrently: {spans}"
