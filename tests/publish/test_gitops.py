"""Publishing with real git: bare remotes in temp dirs, a second writer, replays."""

from __future__ import annotations

import base64
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from pipelines.lib.gitops import (
    EnvironmentChange,
    GitopsError,
    GitopsRepository,
    display_url,
    git_blob_id,
    redact,
)
from tests.conftest import commit_count, git
from tests.git_http_server import GitHttpServer


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    path = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", "--initial-branch=main", str(path)], check=True)
    return path


def change(env: str, files: dict[str, bytes]) -> EnvironmentChange:
    return EnvironmentChange(env, {f"rendered/{env}/{k}": v for k, v in files.items()}, (f"rendered/{env}",), f"compile {env}\n")


def publish(remote: Path, home: Path, *changes: EnvironmentChange):
    with GitopsRepository(str(remote), "main", home) as repo:
        return repo.publish(list(changes), repo.fetch())


def test_blob_id_matches_git(tmp_path: Path):
    data = b"apiVersion: v1\nkind: ConfigMap\n"
    (tmp_path / "f").write_bytes(data)
    assert git_blob_id(data) == subprocess.run(["git", "hash-object", str(tmp_path / "f")], capture_output=True, text=True).stdout.strip()


def test_one_commit_per_changed_environment_and_none_when_unchanged(remote, tmp_path):
    home = tmp_path / "home"
    first = publish(remote, home, change("a", {"x.yaml": b"1\n"}), change("b", {"y.yaml": b"2\n"}))
    assert set(first.commits) == {"a", "b"} and commit_count(remote) == 2
    again = publish(remote, home, change("a", {"x.yaml": b"1\n"}), change("b", {"y.yaml": b"2\n"}))
    assert again.commits == {} and commit_count(remote) == 2
    only_b = publish(remote, home, change("a", {"x.yaml": b"1\n"}), change("b", {"y.yaml": b"3\n"}))
    assert set(only_b.commits) == {"b"} and commit_count(remote) == 3


def test_replacing_an_environment_removes_files_it_no_longer_has(remote, tmp_path):
    home = tmp_path / "home"
    publish(remote, home, change("a", {"x.yaml": b"1\n", "old/z.yaml": b"z\n"}), change("b", {"y.yaml": b"2\n"}))
    publish(remote, home, change("a", {"x.yaml": b"1\n"}))
    files = git(remote, "ls-tree", "-r", "--name-only", "main").split()
    assert files == ["rendered/a/x.yaml", "rendered/b/y.yaml"]


def test_rejected_push_is_replayed_on_the_moved_remote(remote, tmp_path):
    """Another writer pushes between our fetch and our push: nothing is lost."""
    home = tmp_path / "home"
    publish(remote, home, change("a", {"x.yaml": b"1\n"}))
    other = tmp_path / "other"
    subprocess.run(["git", "clone", "-q", str(remote), str(other)], check=True)
    with GitopsRepository(str(remote), "main", home) as repo:
        base = repo.fetch()
        (other / "rendered" / "b").mkdir(parents=True)
        (other / "rendered" / "b" / "y.yaml").write_text("from another writer\n")
        subprocess.run(["git", "-C", str(other), "add", "."], check=True)
        subprocess.run(["git", "-C", str(other), "-c", "user.name=o", "-c", "user.email=o@o", "commit", "-qm", "other"], check=True)
        subprocess.run(["git", "-C", str(other), "push", "-q", "origin", "main"], check=True)
        result = repo.publish([change("a", {"x.yaml": b"2\n"})], base)
    assert result.attempts == 2 and "a" in result.commits
    assert git(remote, "show", "main:rendered/b/y.yaml") == "from another writer\n"
    assert git(remote, "show", "main:rendered/a/x.yaml") == "2\n"
    assert commit_count(remote) == 3


def test_concurrent_publishers_on_one_home_lose_nothing(remote, tmp_path):
    home = tmp_path / "home"
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            publish(remote, home, change(f"env{i}", {"x.yaml": f"{i}\n".encode()}))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert commit_count(remote) == 6
    assert len(git(remote, "ls-tree", "--name-only", "main", "rendered/").split()) == 6


def test_unreachable_remote_is_a_clear_error(tmp_path):
    with GitopsRepository(str(tmp_path / "missing.git"), "main", tmp_path / "home") as repo:
        with pytest.raises(GitopsError, match="cannot reach GitOps repository"):
            repo.fetch()


def test_stale_index_lock_from_a_killed_run_is_recovered(remote, tmp_path):
    home = tmp_path / "home"
    publish(remote, home, change("a", {"x.yaml": b"1\n"}))
    cache = next((home / "cache").glob("*.git"))
    (cache / "index.lock").write_text("")
    result = publish(remote, home, change("a", {"x.yaml": b"2\n"}))
    assert "a" in result.commits


# -- remotes over https-style HTTP, ssh, and failures --------------------------------------
TOKEN = "ghp_test0123456789abcdefSECRET"


@pytest.fixture
def http_remote(tmp_path: Path, monkeypatch):
    """A bare repository served by `git http-backend` behind Basic auth; token in the env."""
    root = tmp_path / "served"
    root.mkdir()
    subprocess.run(["git", "init", "-q", "--bare", "--initial-branch=main", str(root / "gitops.git")], check=True)
    monkeypatch.setenv("CHAINOPS_GIT_TOKEN", TOKEN)
    monkeypatch.delenv("CHAINOPS_GIT_USERNAME", raising=False)
    with GitHttpServer(root, "x-access-token", TOKEN) as server:
        yield server, root / "gitops.git"


def _all_bytes_under(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in path.rglob("*") if p.is_file())


def test_http_remote_authenticates_with_token_from_environment_and_stores_it_nowhere(http_remote, tmp_path):
    server, bare = http_remote
    home = tmp_path / "home"
    result = publish(server.url("gitops.git"), home, change("a", {"x.yaml": b"1\n"}))
    assert result.pushed and git(bare, "show", "main:rendered/a/x.yaml") == "1\n"
    expected = "Basic " + base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()
    assert expected in server.seen_auth, "git must have sent the token from CHAINOPS_GIT_TOKEN"
    assert TOKEN.encode() not in _all_bytes_under(home), "the token must not land in the cache's config or anywhere on disk"


def test_wrong_token_is_a_clear_error_that_does_not_echo_credentials(http_remote, tmp_path, monkeypatch):
    server, _ = http_remote
    monkeypatch.setenv("CHAINOPS_GIT_TOKEN", "wrong-token-value")
    with GitopsRepository(server.url("gitops.git"), "main", tmp_path / "home") as repo:
        with pytest.raises(GitopsError, match="Authentication failed") as raised:
            repo.fetch()
    assert "wrong-token-value" not in str(raised.value)


def test_credentials_in_a_url_are_redacted_from_errors(tmp_path):
    url = "http://deploy:hunter2-secret@127.0.0.1:9/gitops.git"  # port 9: nothing listens
    with GitopsRepository(url, "main", tmp_path / "home") as repo:
        with pytest.raises(GitopsError) as raised:
            repo.fetch()
    assert "hunter2-secret" not in str(raised.value) and "***@127.0.0.1:9" in str(raised.value)


def test_remote_down_at_push_time_leaves_the_cache_recoverable(http_remote, tmp_path):
    """The remote goes away between fetch and push: nothing is half-published, the cache's
    view of the remote is unchanged, and the next run publishes everything."""
    server, bare = http_remote
    home = tmp_path / "home"
    publish(server.url("gitops.git"), home, change("a", {"x.yaml": b"1\n"}))
    with GitopsRepository(server.url("gitops.git"), "main", home) as repo:
        base = repo.fetch()
        server.stop()
        with pytest.raises(GitopsError, match="cannot push .*nothing was published"):
            repo.publish([change("a", {"x.yaml": b"2\n"}), change("b", {"y.yaml": b"3\n"})], base)
        assert repo.repo.git.rev_parse(repo.tracking_ref) == base
    assert commit_count(bare) == 1
    server.start()
    again = publish(server.url("gitops.git"), home, change("a", {"x.yaml": b"2\n"}), change("b", {"y.yaml": b"3\n"}))
    assert set(again.commits) == {"a", "b"} and commit_count(bare) == 3


def test_ssh_remote_uses_the_configured_key(remote, tmp_path, monkeypatch):
    """`ssh://` and scp-style URLs go through the ssh program with CHAINOPS_GIT_SSH_KEY.
    The `ssh` on PATH stands in for the remote host: it records its arguments and runs
    the git command it is asked to run (git-upload-pack / git-receive-pack) locally."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "ssh-args.log"
    fake_ssh = bindir / "ssh"
    fake_ssh.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> {log}\n'
        'for last; do :; done\n'  # the remote command is the last argument
        'exec sh -c "$last"\n'
    )
    fake_ssh.chmod(0o755)
    key = tmp_path / "deploy_key"
    key.write_text("not a real key\n")
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    monkeypatch.setenv("CHAINOPS_GIT_SSH_KEY", str(key))
    monkeypatch.delenv("GIT_SSH_COMMAND", raising=False)
    monkeypatch.delenv("GIT_SSH", raising=False)
    for url in (f"ssh://git@gitops.invalid{remote}", f"git@gitops.invalid:{remote}"):
        publish(url, tmp_path / "home", change("a", {"x.yaml": url.encode()}))
        assert git(remote, "show", "main:rendered/a/x.yaml") == url
    calls = log.read_text().splitlines()
    assert calls and all(f"-i {key}" in call and "BatchMode=yes" in call for call in calls)
    assert any("git-receive-pack" in call for call in calls)


def test_push_refused_by_the_remote_is_not_retried(remote, tmp_path):
    """A hook that declines the push is a final answer, not a race: one attempt, clear error."""
    hook = remote / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'protected branch' >&2\nexit 1\n")
    hook.chmod(0o755)
    home = tmp_path / "home"
    started = time.monotonic()
    with pytest.raises(GitopsError, match="pre-receive hook declined"):
        publish(remote, home, change("a", {"x.yaml": b"1\n"}))
    assert time.monotonic() - started < 5
    assert commit_count(remote) == 0


# -- review branches (pull-request mode) ---------------------------------------------------
def _publish_branch(remote: Path, home: Path, item: EnvironmentChange):
    with GitopsRepository(str(remote), "main", home) as repo:
        return repo.publish_review_branch(item, repo.fetch())


def test_review_branch_is_one_commit_on_the_target_and_is_reused_while_current(remote, tmp_path):
    home = tmp_path / "home"
    publish(remote, home, change("a", {"x.yaml": b"1\n"}))
    main_before = git(remote, "rev-parse", "main").strip()
    first = _publish_branch(remote, home, change("b", {"y.yaml": b"2\n"}))
    assert first.pushed and first.branch == "chainops/b"
    assert git(remote, "rev-parse", "main").strip() == main_before, "pull-request mode never writes the target"
    assert git(remote, "rev-parse", "chainops/b^").strip() == main_before
    assert git(remote, "diff", "--name-only", "main", "chainops/b").split() == ["rendered/b/y.yaml"]
    again = _publish_branch(remote, home, change("b", {"y.yaml": b"2\n"}))
    assert not again.pushed and again.commit == first.commit, "an unchanged review branch gets no new commit"
    publish(remote, home, change("a", {"x.yaml": b"moved\n"}))  # the target moves on other paths
    still = _publish_branch(remote, home, change("b", {"y.yaml": b"2\n"}))
    assert not still.pushed and still.commit == first.commit
    updated = _publish_branch(remote, home, change("b", {"y.yaml": b"3\n"}))
    assert updated.pushed and updated.commit != first.commit
    assert git(remote, "rev-parse", "chainops/b^").strip() == git(remote, "rev-parse", "main").strip()
    assert git(remote, "show", "chainops/b:rendered/b/y.yaml") == "3\n"
    nothing = _publish_branch(remote, home, change("a", {"x.yaml": b"moved\n"}))
    assert nothing.commit is None and not nothing.pushed, "no difference from the target: nothing to review"


def test_review_branch_push_races_are_detected_by_the_lease(remote, tmp_path):
    """Someone pushes to chainops/b between our fetch and our push: the lease refuses our
    push, we fetch again and push on top of what is there now."""
    home = tmp_path / "home"
    publish(remote, home, change("a", {"x.yaml": b"1\n"}))
    other = tmp_path / "other"
    subprocess.run(["git", "clone", "-q", str(remote), str(other)], check=True)
    with GitopsRepository(str(remote), "main", home) as repo:
        base = repo.fetch()
        real_fetch_branch = repo.fetch_branch
        interfered: list[str] = []

        def fetch_then_someone_pushes(branch: str) -> str | None:
            head = real_fetch_branch(branch)
            if branch == "chainops/b" and not interfered:
                subprocess.run(["git", "-C", str(other), "checkout", "-qb", "chainops/b"], check=True)
                subprocess.run(["git", "-C", str(other), "-c", "user.name=o", "-c", "user.email=o@o", "commit", "-q", "--allow-empty", "-m", "x"], check=True)
                subprocess.run(["git", "-C", str(other), "push", "-q", "origin", "chainops/b"], check=True)
                interfered.append(branch)
            return head

        repo.fetch_branch = fetch_then_someone_pushes  # type: ignore[method-assign]
        result = repo.publish_review_branch(change("b", {"y.yaml": b"2\n"}), base)
    assert interfered and result.pushed and result.attempts == 2
    assert git(remote, "show", "chainops/b:rendered/b/y.yaml") == "2\n"
    assert git(remote, "rev-parse", "chainops/b^").strip() == git(remote, "rev-parse", "main").strip()


def test_redact_and_display_url():
    assert display_url("https://user:tok@example.test/org/repo.git") == "https://***@example.test/org/repo.git"
    assert display_url("git@example.test:org/repo.git") == "git@example.test:org/repo.git"
    assert redact("fatal: https://u:p@h/x and TOKENVALUE", {"CHAINOPS_GIT_TOKEN": "TOKENVALUE"}) == "fatal: https://***@h/x and ***"
