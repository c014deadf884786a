"""Concurrency: parallel `chainops compile` processes on overlapping and disjoint
environments against one remote, some sharing a home (one cache), some not (as separate
CI runners or Dagster pods would). Nothing may be lost: every commit a run reports is on
the branch, every environment's identities are locked exactly once (no second set of keys
replaces the first), and only one process at a time works in a cache repository."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path

from eth_account import Account

from pipelines.lib.sealing import AgeIdentity
from tests.conftest import commit_count, git, venv_tool
from tests.key_helpers import open_escrow_file

REAL_GIT = shutil.which("git") or "/usr/bin/git"
ENVS = ["e0", "e1", "e2", "e3"]
# (home, environments; [] = all). Homes A is shared by three processes; B, C, D are alone.
RUNS = [("A", ["e0", "e1"]), ("A", ["e1", "e2"]), ("A", []), ("B", ["e2", "e3"]), ("C", ["e3", "e0"]), ("D", ["e1"])]
CONFLICT = "changed by another writer"

LOGGING_GIT = """#!/bin/sh
# Test stand-in for git: runs the real git and logs who (parent pid) used which
# repository when, so the test can check that writers of one cache never overlap.
dir=""; prev=""
for arg in "$@"; do [ "$prev" = "--git-dir" ] && dir="$arg"; prev="$arg"; done
[ -n "$dir" ] || dir=$(pwd -P)
start=$(date +%s%N)
"{real}" "$@"
rc=$?
echo "$PPID $start $(date +%s%N) $dir" >> "{log}"
exit $rc
"""


def env_yaml(chain_id: int) -> str:
    return (
        "apiVersion: chainops/v1\n"
        f"network: {{chainId: {chain_id}, client: besu, consensus: qbft}}\n"
        "nodes: {validators: 1, rpc: 0}\n"
        f"kubernetes: {{namespace: chain-{chain_id}}}\n"
    )


def test_parallel_runs_on_overlapping_environments_lose_nothing_and_lock_keys_once(tmp_path: Path, run_cli):
    envs = tmp_path / "environments"
    envs.mkdir()
    for i, name in enumerate(ENVS):
        (envs / f"{name}.yaml").write_text(env_yaml(8100 + i))
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", "--initial-branch=main", str(remote)], check=True)
    identity = AgeIdentity.load_or_create(tmp_path / "identity")
    homes = {}
    for label in sorted({home for home, _ in RUNS}):
        homes[label] = tmp_path / f"home{label}"
        (homes[label] / "age").mkdir(parents=True)
        shutil.copy2(identity.path, homes[label] / "age" / identity.path.name)
        os.chmod(homes[label], 0o700)
    bindir, log = tmp_path / "bin", tmp_path / "git.log"
    bindir.mkdir()
    (bindir / "git").write_text(LOGGING_GIT.format(real=REAL_GIT, log=log))
    (bindir / "git").chmod(0o755)
    environ = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}"}
    for var in ("CHAINOPS_HOME", "CHAINOPS_REPO", "CHAINOPS_ENVIRONMENTS", "CHAINOPS_GIT_TOKEN", "CHAINOPS_FORGE"):
        environ.pop(var, None)

    procs = [
        subprocess.Popen(
            [venv_tool("chainops"), "compile", *names, "--jobs", "1", "--home", str(homes[home]),
             "--environments", str(envs), "--repo", str(remote)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=environ,
        )
        for home, names in RUNS
    ]
    results = [(p.pid, p.wait(timeout=240), *p.communicate()) for p in procs]

    # Each run either published or stopped with a clear conflict error (its environments
    # were changed by another writer after it compiled them: replaying would replace keys).
    for _pid, code, _out, err in results:
        assert code == 0 or (code == 2 and CONFLICT in err), err
    assert any(code == 0 for _, code, _, _ in results)
    reported = [m for _, code, out, _ in results if code == 0 for m in re.findall(r"commit ([0-9a-f]{12})", out)]
    for short in reported:
        full = git(remote, "rev-parse", short).strip()
        ancestor = subprocess.run(["git", "--git-dir", str(remote), "merge-base", "--is-ancestor", full, "main"])
        assert ancestor.returncode == 0, f"commit {short} was reported but is not on main: a lost update"

    # One writer per cache repository at a time: per cache, the spans of the processes
    # that used it (first git call to last) never overlap.
    spans: dict[str, dict[str, list[int]]] = defaultdict(dict)
    for line in log.read_text().splitlines():
        pid, start, end, directory = line.split(" ", 3)
        if "/cache/" in directory:
            span = spans[directory].setdefault(pid, [int(start), int(end)])
            span[0], span[1] = min(span[0], int(start)), max(span[1], int(end))
    shared_cache = next(d for d in spans if d.startswith(str(homes["A"].resolve())))
    assert len(spans[shared_cache]) == 3, "the three processes of home A all used its cache"
    for directory, by_pid in spans.items():
        ordered = sorted(by_pid.values())
        for before, after in zip(ordered, ordered[1:]):
            assert before[1] <= after[0], f"two processes worked in {directory} at the same time"

    # A final run completes whatever a conflicting run left out; then nothing is left to do.
    final = run_cli("compile", "--home", homes["A"], "--environments", envs, "--repo", remote)
    assert final.code == 0, final.err
    again = run_cli("compile", "--home", homes["B"], "--environments", envs, "--repo", remote)
    assert again.code == 0 and again.out.count("unchanged") == len(ENVS), again.out
    assert commit_count(remote) == len(ENVS), "each environment was published exactly once"
    fsck = subprocess.run(["git", "--git-dir", str(remote), "fsck", "--strict", "--no-dangling"], capture_output=True, text=True)
    assert fsck.returncode == 0 and "error" not in fsck.stderr.lower(), fsck.stderr

    for name in ENVS:
        history = git(remote, "log", "--format=%H", "main", "--", f"rendered/{name}/network.lock.json").split()
        assert len(history) == 1, f"{name}: its identities were locked {len(history)} times (keys replaced)"
        lock = json.loads(git(remote, "show", f"main:rendered/{name}/network.lock.json"))
        escrow_file = tmp_path / f"{name}.escrow.age"
        escrow_file.write_bytes(subprocess.run(
            ["git", "--git-dir", str(remote), "show", f"main:rendered/{name}/keys.escrow.age"], check=True, capture_output=True
        ).stdout)
        escrow = open_escrow_file(escrow_file, identity.path)["keys"]
        assert set(escrow) == {n["name"] for n in lock["nodes"]}, "no orphaned or missing keys"
        for node in lock["nodes"]:
            assert Account.from_key(bytes.fromhex(escrow[node["name"]]["privateKey"])).address == node["address"]
