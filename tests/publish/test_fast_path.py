"""Scale features of `chainops compile`: the unchanged-input fast path and worker processes."""

from __future__ import annotations

import subprocess

from pipelines.lib import pipeline
from tests.conftest import EXAMPLE_NAMES, commit_count, git


def test_unchanged_inputs_skip_compilation_entirely(run_cli, envs_dir, tmp_path, monkeypatch):
    home = tmp_path / "home"
    assert run_cli("compile", "--home", home, "--environments", envs_dir).code == 0

    def must_not_compile(*args, **kwargs):
        raise AssertionError("an environment with unchanged inputs was compiled")

    monkeypatch.setattr(pipeline, "compile_environment", must_not_compile)
    again = run_cli("compile", "--home", home, "--environments", envs_dir)
    assert again.code == 0, again.err
    assert again.out.count("unchanged") == len(EXAMPLE_NAMES)
    lock_hash = git(home / "gitops.git", "show", "main:rendered/staging/network.lock.json").split('"genesisHash": "')[1][:66]
    assert f"staging: genesis {lock_hash}" in again.out


def test_a_changed_file_or_a_hand_edited_repository_is_compiled_again(run_cli, envs_dir, tmp_path):
    home = tmp_path / "home"
    git_dir = home / "gitops.git"
    assert run_cli("compile", "--home", home, "--environments", envs_dir).code == 0
    path = envs_dir / "staging.yaml"
    path.write_text(path.read_text().replace("size: 20Gi", "size: 30Gi"))
    changed = run_cli("compile", "--home", home, "--environments", envs_dir)
    assert "staging: genesis" in changed.out and "commit" in changed.out.split("staging:")[1]
    assert commit_count(git_dir) == len(EXAMPLE_NAMES) + 1
    # Someone edits the rendered output by hand: the next run notices and restores it.
    work = tmp_path / "work"
    subprocess.run(["git", "clone", "-q", str(git_dir), str(work)], check=True)
    target = next((work / "rendered" / "dev").glob("*/statefulset-validator.yaml"))
    original = target.read_text()
    target.write_text(original.replace("replicas: 1", "replicas: 5"))
    subprocess.run(["git", "-C", str(work), "-c", "user.name=h", "-c", "user.email=h@h", "commit", "-qam", "hand edit"], check=True)
    subprocess.run(["git", "-C", str(work), "push", "-q", "origin", "main"], check=True)
    restored = run_cli("compile", "--home", home, "--environments", envs_dir)
    assert restored.code == 0 and "dev: genesis" in restored.out
    assert git(git_dir, "show", f"main:{target.relative_to(work)}") == original
    assert commit_count(git_dir) == len(EXAMPLE_NAMES) + 3


def test_worker_processes_give_the_same_bytes_as_one_process(run_cli, envs_dir, tmp_path):
    home = tmp_path / "home"
    assert run_cli("compile", "--home", home, "--environments", envs_dir, "--jobs", "2").code == 0
    assert commit_count(home / "gitops.git") == len(EXAMPLE_NAMES)
    serial = run_cli("compile", "--home", home, "--environments", envs_dir, "--jobs", "1", "--no-cache")
    assert serial.code == 0 and serial.out.count("unchanged") == len(EXAMPLE_NAMES)
    assert commit_count(home / "gitops.git") == len(EXAMPLE_NAMES)


def test_an_error_in_a_worker_publishes_nothing(run_cli, envs_dir, tmp_path):
    home = tmp_path / "home"
    assert run_cli("compile", "--home", home, "--environments", envs_dir, "--jobs", "2").code == 0
    path = envs_dir / "staging.yaml"
    path.write_text(path.read_text().replace("gasLimit: 30000000", "gasLimit: 30000001"))
    dev = envs_dir / "dev.yaml"
    dev.write_text(dev.read_text().replace("size: 5Gi", "size: 6Gi"))
    result = run_cli("compile", "--home", home, "--environments", envs_dir, "--jobs", "2")
    assert result.code == 1 and "the committed genesis would change" in result.err
    assert commit_count(home / "gitops.git") == len(EXAMPLE_NAMES), "dev's valid change is not published either"
