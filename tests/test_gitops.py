"""Publishing with real git: bare remotes in temp dirs, a second writer, replays."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import pytest

from pipelines.lib.gitops import (
    EnvironmentChange,
    GitopsError,
    GitopsRepository,
    git_blob_id,
)
from tests.conftest import commit_count, git


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
