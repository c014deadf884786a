"""Publishing end to end: the `chainops` CLI against real bare repositories, a Git HTTP
remote with a token, concurrent processes, and pull requests on a local forge API."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from pipelines.lib.sealing import AgeIdentity
from tests.conftest import commit_count, git, venv_tool
from tests.forge_server import ForgeServer, ForgeState
from tests.git_http_server import GitHttpServer
from tests.yaml_reader import read_yaml

BESU_IMAGE_BUMP = "hyperledger/besu:99.1.0"
FORGE_TOKEN = "forge-token-for-tests"


def env_yaml(chain_id: int, *, rpc: int = 1, gas: int = 30_000_000, image: str | None = None, review: str = "direct") -> str:
    """A small besu-qbft environment (one validator) that compiles in well under a second."""
    images = f"images: {{besu: {json.dumps(image)}}}\n" if image else ""
    return (
        "apiVersion: chainops/v1\n"
        f"network: {{chainId: {chain_id}, client: besu, consensus: qbft, gasLimit: {gas}}}\n"
        f"nodes: {{validators: 1, rpc: {rpc}}}\n"
        f"kubernetes: {{namespace: chain-{chain_id}}}\n"
        f"{images}"
        f"gitops: {{controller: flux, review: {review}}}\n"
    )


@pytest.fixture
def envs(tmp_path: Path) -> Path:
    directory = tmp_path / "environments"
    directory.mkdir()
    (directory / "alpha.yaml").write_text(env_yaml(4101))
    (directory / "beta.yaml").write_text(env_yaml(4102))
    return directory


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    path = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", "--initial-branch=main", str(path)], check=True)
    return path


@pytest.fixture
def cli(run_cli, monkeypatch):
    """`chainops` in-process with no forge or token settings leaking in from the caller."""
    for var in ("CHAINOPS_FORGE", "CHAINOPS_FORGE_URL", "CHAINOPS_FORGE_REPO", "CHAINOPS_FORGE_TOKEN", "CHAINOPS_GIT_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    return run_cli


def changed_paths(bare: Path, rev: str = "main") -> list[str]:
    return git(bare, "diff-tree", "--no-commit-id", "--name-only", "-r", "--root", rev).split()


def trailers(bare: Path, rev: str = "main") -> dict[str, str]:
    message = git(bare, "log", "-1", "--format=%B", rev)
    parsed = subprocess.run(["git", "interpret-trailers", "--parse"], input=message, capture_output=True, text=True, check=True)
    return dict(line.split(": ", 1) for line in parsed.stdout.splitlines())


def owned_by(path: str, env: str) -> bool:
    return path.startswith(f"rendered/{env}/") or path in (f"bootstrap/{env}.yaml", ".sops.yaml")


def test_change_to_one_environment_is_one_commit_on_its_paths_only(cli, envs, remote, tmp_path):
    home = tmp_path / "home"
    first = cli("compile", "--home", home, "--environments", envs, "--repo", remote)
    assert first.code == 0, first.err
    assert commit_count(remote) == 2
    assert trailers(remote)["Chainops-Environment"] == "beta" and trailers(remote, "main~1")["Chainops-Environment"] == "alpha"
    assert all(owned_by(p, "beta") for p in changed_paths(remote))

    (envs / "beta.yaml").write_text(env_yaml(4102, rpc=2))
    second = cli("compile", "--home", home, "--environments", envs, "--repo", remote)
    assert second.code == 0, second.err
    assert commit_count(remote) == 3
    assert re.search(r"^alpha: .*unchanged$", second.out, re.M) and re.search(r"^beta: .*commit [0-9a-f]{12}$", second.out, re.M)
    paths = changed_paths(remote)
    assert paths and all(owned_by(p, "beta") for p in paths), paths
    assert "rendered/beta/besu-node/secret-rpc-1-keys.yaml" in paths
    found = trailers(remote)
    assert found["Chainops-Environment"] == "beta" and found["Chainops-Version"]
    message = git(remote, "log", "-1", "--format=%B")
    assert message.startswith("chainops: compile beta (rpc replicas 1 -> 2)\n")
    assert "Nodes added: rpc-1\n" in message and "Replicas: StatefulSet/rpc 1 -> 2\n" in message

    third = cli("compile", "--home", home, "--environments", envs, "--repo", remote)
    assert third.code == 0 and third.out.count("unchanged") == 2
    assert commit_count(remote) == 3, "a no-change run makes no commit"


def test_removing_a_node_removes_its_files(cli, envs, remote, tmp_path):
    home = tmp_path / "home"
    (envs / "beta.yaml").write_text(env_yaml(4102, rpc=2))
    assert cli("compile", "beta", "--home", home, "--environments", envs, "--repo", remote).code == 0
    (envs / "beta.yaml").write_text(env_yaml(4102, rpc=1))
    result = cli("compile", "beta", "--home", home, "--environments", envs, "--repo", remote)
    assert result.code == 0, result.err
    tree = set(git(remote, "ls-tree", "-r", "--name-only", "main", "rendered/beta").split())
    assert "rendered/beta/besu-node/secret-rpc-1-keys.yaml" not in tree
    assert "rendered/beta/besu-node/secret-rpc-0-keys.yaml" in tree
    listed = read_yaml(git(remote, "show", "main:rendered/beta/kustomization.yaml"))["resources"]
    yaml_files = {p.removeprefix("rendered/beta/") for p in tree if p.endswith(".yaml") and not p.endswith("kustomization.yaml")}
    assert yaml_files == set(listed), "every file left is listed, nothing stale remains"
    lock = json.loads(git(remote, "show", "main:rendered/beta/network.lock.json"))
    assert [n["name"] for n in lock["nodes"]] == ["validator-0", "rpc-0"]
    assert "rpc-1" not in git(remote, "show", "main:rendered/beta/README.md")
    assert "Nodes removed: rpc-1" in git(remote, "log", "-1", "--format=%B")


def test_eight_concurrent_compiles_of_different_environments_all_land(envs, remote, tmp_path):
    """Eight processes, eight homes (one shared pipeline identity), one remote."""
    for i in range(8):
        (envs / f"env{i}.yaml").write_text(env_yaml(5000 + i))
    identity_home = tmp_path / "identity"
    identity = AgeIdentity.load_or_create(identity_home)
    procs = []
    for i in range(8):
        home = tmp_path / f"home{i}"
        (home / "age").mkdir(parents=True)
        shutil.copy2(identity.path, home / "age" / identity.path.name)
        os.chmod(home, 0o700)
        procs.append(
            subprocess.Popen(
                [venv_tool("chainops"), "compile", f"env{i}", "--home", str(home), "--environments", str(envs), "--repo", str(remote)],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
            )
        )
    results = [(p.wait(timeout=240), *p.communicate()) for p in procs]
    assert [code for code, _, _ in results] == [0] * 8, [err for _, _, err in results]
    assert commit_count(remote) == 8
    landed = sorted(trailers(remote, f"main~{n}")["Chainops-Environment"] for n in range(8))
    assert landed == [f"env{i}" for i in range(8)]
    for n in range(8):
        env = trailers(remote, f"main~{n}")["Chainops-Environment"]
        assert all(owned_by(p, env) for p in changed_paths(remote, f"main~{n}"))
    assert git(remote, "ls-tree", "--name-only", "main", "rendered/").split() == [f"rendered/env{i}" for i in range(8)]
    fsck = subprocess.run(["git", "--git-dir", str(remote), "fsck", "--strict", "--no-dangling"], capture_output=True, text=True)
    assert fsck.returncode == 0 and fsck.stdout == "" and "error" not in fsck.stderr.lower(), fsck.stderr


TOKEN = "glpat-test-0123456789abcdef"


@pytest.fixture
def http_remote(tmp_path: Path, monkeypatch):
    root = tmp_path / "served"
    root.mkdir()
    subprocess.run(["git", "init", "-q", "--bare", "--initial-branch=main", str(root / "gitops.git")], check=True)
    with GitHttpServer(root, "x-access-token", TOKEN) as server:
        yield server, root / "gitops.git"


def test_remote_down_is_a_clear_error_and_the_next_run_publishes_everything(cli, envs, http_remote, tmp_path, monkeypatch):
    server, bare = http_remote
    home = tmp_path / "home"
    url = server.url("gitops.git")
    monkeypatch.setenv("CHAINOPS_GIT_TOKEN", TOKEN)
    server.stop()
    down = cli("compile", "--home", home, "--environments", envs, "--repo", url)
    assert down.code == 2
    assert f"cannot reach GitOps repository {url}" in down.err and "Failed to connect" in down.err
    assert TOKEN not in down.err + down.out
    assert commit_count(bare) == 0
    server.start()
    up = cli("compile", "--home", home, "--environments", envs, "--repo", url)
    assert up.code == 0, up.err
    assert commit_count(bare) == 2 and git(bare, "ls-tree", "--name-only", "main", "rendered/").split() == [
        "rendered/alpha", "rendered/beta",
    ]
    on_disk = b"".join(p.read_bytes() for p in home.rglob("*") if p.is_file())
    assert TOKEN.encode() not in on_disk, "the token must not be written into the cache's git config"


def test_change_summary_lists_exactly_an_image_bump_a_new_rpc_node_and_a_genesis_change(cli, envs, remote, tmp_path):
    home = tmp_path / "home"
    assert cli("compile", "alpha", "--home", home, "--environments", envs, "--repo", remote).code == 0
    before_image = next(
        c["image"]
        for c in read_yaml(git(remote, "show", "main:rendered/alpha/besu-node/statefulset-rpc.yaml"))["spec"]["template"]["spec"]["containers"]
        if c["name"] == "besu"
    )
    (envs / "alpha.yaml").write_text(env_yaml(4101, rpc=2, gas=40_000_000, image=BESU_IMAGE_BUMP))
    refused = cli("diff", "alpha", "--home", home, "--environments", envs, "--repo", remote)
    assert refused.code == 2 and "--allow-genesis-change alpha" in refused.err, "diff refuses what compile refuses"
    diff = cli("diff", "alpha", "--home", home, "--environments", envs, "--repo", remote, "--allow-genesis-change", "alpha")
    assert diff.code == 1, diff.err
    summary, _, unified = diff.out.partition("\n--- ")
    sections = re.findall(r"^### (.+)$", summary, re.M)
    assert sections == ["Images", "Replicas", "Nodes", "Objects", "Production policy", "Files"]
    assert "GENESIS CHANGED" in summary
    image_rows = [line for line in _section(summary, "Images").splitlines() if line.startswith("| `")]
    assert len(image_rows) == 1 and f"`{before_image}`" in image_rows[0] and f"`{BESU_IMAGE_BUMP}`" in image_rows[0]
    assert [line for line in _section(summary, "Replicas").splitlines() if line.startswith("| StatefulSet")] == [
        "| StatefulSet/rpc | 1 | 2 |"
    ]
    assert _section(summary, "Nodes").strip() == "- added: `rpc-1` (rpc, `<new key: rpc-1 address, generated at compile>`)"
    assert len(_section(summary, "Nodes").strip().splitlines()) == 1
    assert "| removed |" not in _section(summary, "Objects")
    assert "+++ b/rendered/alpha/besu-node/statefulset-rpc.yaml" in unified
    assert commit_count(remote) == 1, "diff never commits"

    applied = cli("compile", "alpha", "--home", home, "--environments", envs, "--repo", remote,
                  "--allow-genesis-change", "alpha", "--summary")
    assert applied.code == 0, applied.err
    assert "### Images" in applied.out and "GENESIS CHANGED" in applied.out
    subject = git(remote, "log", "-1", "--format=%s").strip()
    assert subject == f"chainops: compile alpha (GENESIS CHANGED, image besu:{before_image.rsplit(':', 1)[1]} -> besu:99.1.0, rpc replicas 1 -> 2)"


def _section(markdown: str, title: str) -> str:
    match = re.search(rf"^### {re.escape(title)}\n(.*?)(?=^### |\Z)", markdown, re.M | re.S)
    return match.group(1) if match else ""


# -- pull-request review mode ----------------------------------------------------------------
def forge_env(monkeypatch, server: ForgeServer, kind: str, project: str) -> None:
    monkeypatch.setenv("CHAINOPS_FORGE", kind)
    monkeypatch.setenv("CHAINOPS_FORGE_URL", server.base_url + ("/api/v3" if kind == "github" else ""))
    monkeypatch.setenv("CHAINOPS_FORGE_REPO", project)
    monkeypatch.setenv("CHAINOPS_FORGE_TOKEN", FORGE_TOKEN)


@pytest.mark.parametrize(("kind", "project"), [("github", "acme/gitops"), ("gitlab", "platform/gitops")])
def test_pull_request_mode_pushes_a_branch_opens_one_request_and_updates_it(kind, project, cli, envs, remote, tmp_path, monkeypatch):
    (envs / "beta.yaml").write_text(env_yaml(4102, review="pull-request"))
    state = ForgeState(token=FORGE_TOKEN, project=project, git_dir=remote)
    home = tmp_path / "home"
    with ForgeServer(state) as server:
        forge_env(monkeypatch, server, kind, project)
        first = cli("compile", "--home", home, "--environments", envs, "--repo", remote)
        assert first.code == 0, first.err
        assert re.search(r"^beta: .*commit [0-9a-f]{12} on chainops/beta; review #1 opened: http", first.out, re.M), first.out
        assert git(remote, "ls-tree", "--name-only", "main", "rendered/").split() == ["rendered/alpha"], "beta waits for review"
        assert git(remote, "rev-parse", "chainops/beta^") == git(remote, "rev-parse", "main")
        assert all(owned_by(p, "beta") for p in changed_paths(remote, "chainops/beta"))
        assert len(state.pulls) == 1
        body = state.pulls[0].get("body") or state.pulls[0].get("description")
        assert "## chainops: `beta`" in body and "New network: genesis" in body and "chainops/beta" in body
        assert state.pulls[0]["title"].startswith("chainops(beta): new network")
        branch_head = git(remote, "rev-parse", "chainops/beta")

        again = cli("compile", "--home", home, "--environments", envs, "--repo", remote)
        assert again.code == 0 and re.search(r"^beta: .*branch unchanged on chainops/beta; review #1 unchanged", again.out, re.M)
        assert git(remote, "rev-parse", "chainops/beta") == branch_head and len(state.writes()) == 1

        (envs / "beta.yaml").write_text(env_yaml(4102, rpc=2, review="pull-request"))
        updated = cli("compile", "--home", home, "--environments", envs, "--repo", remote)
        assert updated.code == 0, updated.err
        assert re.search(r"^beta: .*review #1 updated", updated.out, re.M)
        assert git(remote, "rev-parse", "chainops/beta") != branch_head
        assert git(remote, "rev-parse", "chainops/beta^") == git(remote, "rev-parse", "main")
        assert len(state.pulls) == 1, "the second change updates the request instead of opening another"
        body = state.pulls[0].get("body") or state.pulls[0].get("description")
        assert "rpc-1" in body and "New network" in body, "the summary compares with the target branch, not the old PR"
        assert [r.method for r in state.writes()] == ["POST", "PATCH" if kind == "github" else "PUT"]

        git(remote, "update-ref", "refs/heads/main", "chainops/beta")  # the reviewer merges
        merged = cli("compile", "--home", home, "--environments", envs, "--repo", remote)
        assert merged.code == 0 and re.search(r"^beta: .*unchanged \(nothing to review\)", merged.out, re.M)
        assert len(state.writes()) == 2


def test_pull_request_mode_without_a_forge_is_refused_before_anything_is_written(cli, envs, remote, tmp_path):
    (envs / "beta.yaml").write_text(env_yaml(4102, review="pull-request"))
    home = tmp_path / "home"
    result = cli("compile", "--home", home, "--environments", envs, "--repo", remote)
    assert result.code == 2 and "beta: gitops.review: pull-request needs a forge" in result.err
    assert commit_count(remote) == 0 and not home.exists()


def test_decommission_is_one_commit_whose_message_and_diff_say_what_goes(cli, envs, remote, tmp_path):
    home = tmp_path / "home"
    assert cli("compile", "--home", home, "--environments", envs, "--repo", remote).code == 0
    objects = [p for p in git(remote, "ls-tree", "-r", "--name-only", "main", "rendered/beta").split()
               if p.count("/") == 3 and p.endswith(".yaml")]
    (envs / "beta.yaml").write_text(env_yaml(4102) + "decommission: true\n")
    diff = cli("diff", "beta", "--home", home, "--environments", envs, "--repo", remote)
    assert diff.code == 1 and "DECOMMISSION" in diff.out
    assert f"**Objects:** 0 added · 0 changed · {len(objects) + 2} removed" in diff.out  # + Flux GitRepository, Kustomization
    result = cli("compile", "--home", home, "--environments", envs, "--repo", remote)
    assert result.code == 0 and re.search(r"^beta: decommissioned  commit [0-9a-f]{12}$", result.out, re.M)
    assert commit_count(remote) == 3 and trailers(remote)["Chainops-Environment"] == "beta"
    assert f"Changes: 0 added, 0 changed, {len(objects) + 2} removed objects" in git(remote, "log", "-1", "--format=%B")
    assert all(p.startswith(("rendered/beta/", "bootstrap/beta.yaml", ".sops.yaml")) for p in changed_paths(remote))
    assert git(remote, "ls-tree", "--name-only", "main", "rendered/").split() == ["rendered/alpha"]
    # beta's creation rule leaves .sops.yaml with it; alpha's stays as it was
    rules = read_yaml(git(remote, "show", "main:.sops.yaml"))["creation_rules"]
    assert [r["path_regex"] for r in rules] == [r"^rendered/alpha/[^/]+/secret-[^/]+\.yaml$"]
    assert rules == [r for r in read_yaml(git(remote, "show", "main~1:.sops.yaml"))["creation_rules"] if "alpha" in r["path_regex"]]
