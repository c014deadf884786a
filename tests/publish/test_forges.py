"""PyGithub and python-gitlab against a local server that speaks the documented endpoints."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pipelines.lib.forges import ForgeError, ForgeSettings, fit_body, forge_for, infer_from_remote
from tests.forge_server import ForgeServer, ForgeState

TOKEN = "forge-token-0123456789"


def settings_for(server: ForgeServer, kind: str, project: str, token: str = TOKEN) -> ForgeSettings:
    api = server.base_url + ("/api/v3" if kind == "github" else "")
    return ForgeSettings.from_env(
        {"CHAINOPS_FORGE": kind, "CHAINOPS_FORGE_URL": api, "CHAINOPS_FORGE_REPO": project, "CHAINOPS_FORGE_TOKEN": token}
    )


@pytest.fixture
def bare_with_branch(tmp_path: Path) -> Path:
    """A bare repository with `main` and a branch `chainops/staging` one commit ahead."""
    bare = tmp_path / "remote.git"
    work = tmp_path / "work"
    subprocess.run(["git", "init", "-q", "--bare", "--initial-branch=main", str(bare)], check=True)
    subprocess.run(["git", "clone", "-q", str(bare), str(work)], check=True)
    ident = ["-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "-C", str(work), *ident, "commit", "-q", "--allow-empty", "-m", "base"], check=True)
    subprocess.run(["git", "-C", str(work), "push", "-q", "origin", "HEAD:main"], check=True)
    subprocess.run(["git", "-C", str(work), *ident, "commit", "-q", "--allow-empty", "-m", "change"], check=True)
    subprocess.run(["git", "-C", str(work), "push", "-q", "origin", "HEAD:refs/heads/chainops/staging"], check=True)
    return bare


@pytest.mark.parametrize(("kind", "project"), [("github", "acme/gitops"), ("gitlab", "platform/chain/gitops")])
def test_opens_one_request_then_updates_it(kind, project, bare_with_branch):
    state = ForgeState(token=TOKEN, project=project, git_dir=bare_with_branch)
    with ForgeServer(state) as server:
        forge = forge_for(settings_for(server, kind, project), throttle=False)
        opened = forge.open_or_update("chainops/staging", "main", "chainops(staging): first", "body one")
        same = forge.open_or_update("chainops/staging", "main", "chainops(staging): first", "body one")
        updated = forge.open_or_update("chainops/staging", "main", "chainops(staging): second", "body two")
    assert (opened.action, same.action, updated.action) == ("opened", "unchanged", "updated")
    assert opened.number == same.number == updated.number == 1
    assert len(state.pulls) == 1, "a second run must update the request, not open another"
    pull = state.pulls[0]
    assert pull["title"] == "chainops(staging): second"
    assert pull.get("body", pull.get("description")) == "body two"
    writes = [(r.method, r.path) for r in state.writes()]
    if kind == "github":
        assert writes == [("POST", "/api/v3/repos/acme/gitops/pulls"), ("PATCH", "/api/v3/repos/acme/gitops/pulls/1")]
        assert state.writes()[0].body == {"base": "main", "head": "chainops/staging", "title": "chainops(staging): first", "body": "body one"}
    else:
        encoded = "/api/v4/projects/platform%2Fchain%2Fgitops/merge_requests"
        assert writes == [("POST", encoded), ("PUT", f"{encoded}/1")]
        assert state.writes()[0].body == {
            "source_branch": "chainops/staging", "target_branch": "main", "title": "chainops(staging): first", "description": "body one",
        }
    assert opened.url.endswith(("/pull/1", "/merge_requests/1"))


@pytest.mark.parametrize(("kind", "project"), [("github", "acme/gitops"), ("gitlab", "platform/gitops")])
def test_bad_token_is_a_clear_error_without_the_token(kind, project):
    state = ForgeState(token=TOKEN, project=project)
    with ForgeServer(state) as server:
        forge = forge_for(settings_for(server, kind, project, token="wrong-token-xyz"), throttle=False)
        with pytest.raises(ForgeError, match="HTTP 401") as raised:
            forge.open_or_update("chainops/staging", "main", "t", "b")
    assert "wrong-token-xyz" not in str(raised.value) and project in str(raised.value)


def test_github_refuses_a_pull_request_for_a_branch_that_was_not_pushed(bare_with_branch):
    state = ForgeState(token=TOKEN, project="acme/gitops", git_dir=bare_with_branch)
    with ForgeServer(state) as server:
        forge = forge_for(settings_for(server, "github", "acme/gitops"), throttle=False)
        with pytest.raises(ForgeError, match="HTTP 422"):
            forge.open_or_update("chainops/missing", "main", "t", "b")
    assert state.pulls == []


@pytest.mark.parametrize(("kind", "project"), [("github", "acme/gitops"), ("gitlab", "platform/gitops")])
def test_request_opened_by_a_concurrent_run_is_updated_not_duplicated(kind, project, bare_with_branch):
    """Another run opens the request between our lookup and our create: the forge answers
    422 (GitHub) or 409 (GitLab); we look again and update the one that exists."""
    state = ForgeState(token=TOKEN, project=project, git_dir=bare_with_branch)
    with ForgeServer(state) as server:
        other = forge_for(settings_for(server, kind, project), throttle=False)
        ours = forge_for(settings_for(server, kind, project), throttle=False)
        finder = ours._find  # the lookup as the racing run saw it: before the other run created
        calls = {"n": 0}

        def stale_first_lookup(source: str, target: str):
            calls["n"] += 1
            if calls["n"] == 1:
                other.open_or_update(source, target, "from the other run", "other body")
                return None
            return finder(source, target)

        ours._find = stale_first_lookup  # type: ignore[method-assign]
        result = ours.open_or_update("chainops/staging", "main", "ours", "our body")
    assert result.action == "updated" and len(state.pulls) == 1 and state.pulls[0]["title"] == "ours"


def test_numeric_gitlab_project_id(bare_with_branch):
    state = ForgeState(token=TOKEN, project="platform/gitops", project_id=77, git_dir=bare_with_branch)
    with ForgeServer(state) as server:
        forge = forge_for(settings_for(server, "gitlab", "77"), throttle=False)
        assert forge.open_or_update("chainops/staging", "main", "t", "b").action == "opened"
    assert state.writes()[0].path == "/api/v4/projects/77/merge_requests"


def test_settings_from_environment_and_inference():
    env = {"CHAINOPS_FORGE_TOKEN": "t0k3n-value"}
    github = ForgeSettings.from_env(env, "https://github.com/acme/gitops.git")
    assert (github.kind, github.api_url, github.project) == ("github", "https://api.github.com", "acme/gitops")
    gitlab = ForgeSettings.from_env({**env}, "git@gitlab.com:platform/chain/gitops.git")
    assert (gitlab.kind, gitlab.api_url, gitlab.project) == ("gitlab", "https://gitlab.com", "platform/chain/gitops")
    assert ForgeSettings.from_env(env, "/srv/git/gitops.git") is None
    assert ForgeSettings.from_env({"CHAINOPS_GIT_TOKEN": "fallback"}, "https://github.com/a/b").token == "fallback"
    enterprise = ForgeSettings.from_env(
        {"CHAINOPS_FORGE": "github", "CHAINOPS_FORGE_URL": "https://git.corp.test/api/v3/", "CHAINOPS_FORGE_REPO": "ops/gitops"}
    )
    assert enterprise.api_url == "https://git.corp.test/api/v3" and enterprise.token is None
    assert "t0k3n-value" not in repr(github)
    assert infer_from_remote("ssh://git@github.com:22/acme/gitops.git") == ("github", "acme/gitops")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CHAINOPS_FORGE": "bitbucket"}, "allowed: github, gitlab"),
        ({"CHAINOPS_FORGE": "gitlab"}, "needs CHAINOPS_FORGE_REPO"),
        ({"CHAINOPS_FORGE": "github", "CHAINOPS_FORGE_REPO": "just-a-name"}, "owner/name"),
        ({"CHAINOPS_FORGE": "github", "CHAINOPS_FORGE_REPO": "a/b", "CHAINOPS_FORGE_URL": "ftp://x"}, "must start with https://"),
    ],
)
def test_bad_forge_settings_are_named(env, message):
    with pytest.raises(ForgeError, match=message):
        ForgeSettings.from_env(env, "/local/path.git")


def test_missing_token_is_refused_before_any_call():
    with pytest.raises(ForgeError, match="CHAINOPS_FORGE_TOKEN"):
        forge_for(ForgeSettings("github", "https://api.github.com", "a/b", None))


def test_oversized_body_is_cut_at_a_line_and_says_so():
    body = "".join(f"| row {i} |\n" for i in range(20_000))
    cut = fit_body(body, 65_536, "run chainops diff")
    assert len(cut) <= 65_536 and cut.endswith("run chainops diff\n")
    kept = cut.split("\n\n…")[0]
    assert body.startswith(kept) and kept.endswith("|\n")
    assert fit_body("short", 10, "x") == "short"
