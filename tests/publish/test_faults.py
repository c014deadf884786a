"""Crash safety: a real `chainops compile` process is SIGKILLed at chosen points of
publishing, then the repository, the home directory and the keys are checked and the next
run must recover and publish exactly what should be there.

How a kill point is reached deterministically without any test hook in chainops: the
killed process runs with a `git` on PATH that runs the real git and stops (sleeps) at one
subcommand, or the bare remote has a hook that sleeps; the test waits for the marker the
wrapper or hook writes, then kills the whole process group (chainops, git and the hook).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.hdaccount import Mnemonic

from tests.conftest import commit_count, git, venv_tool
from tests.key_helpers import leaked, open_escrow_file

REAL_GIT = shutil.which("git") or "/usr/bin/git"
MNEMONIC = Mnemonic().generate(12)
Account.enable_unaudited_hdwallet_features()


def env_yaml(chain_id: int, *, rpc: int = 1, mnemonic: bool = False) -> str:
    """A small besu-qbft environment (one validator) that compiles in well under a second."""
    return (
        "apiVersion: chainops/v1\n"
        f"network: {{chainId: {chain_id}, client: besu, consensus: qbft}}\n"
        f"nodes: {{validators: 1, rpc: {rpc}}}\n"
        f"kubernetes: {{namespace: chain-{chain_id}}}\n"
        + ("keys: {source: mnemonic}\n" if mnemonic else "")
    )


GIT_WRAPPER = """#!/bin/sh
# Test stand-in for git: runs the real git, but stops at one subcommand so that the test
# can SIGKILL the process group there. Modes: before (never runs it), after (runs it to
# completion first), midstream (feeds it the first 2 KiB of its input, then stops).
real="{real}"
hit=""
for arg in "$@"; do [ "$arg" = "$FAULT_AT" ] && hit=1; done
if [ -z "$hit" ] || [ -e "$FAULT_MARKER" ]; then exec "$real" "$@"; fi
case "$FAULT_MODE" in
  before) touch "$FAULT_MARKER"; sleep 300 ;;
  after) "$real" "$@"; touch "$FAULT_MARKER"; sleep 300 ;;
  midstream) {{ head -c 2048; touch "$FAULT_MARKER"; sleep 300; }} | "$real" "$@" ;;
esac
"""

HOOK = """#!/bin/sh
# One-shot: the first push that reaches this hook stops here until the test kills it.
[ -e "{armed}" ] || exit 0
rm -f "{armed}"
touch "{marker}"
sleep 300
"""


class World:
    """Three environments, a bare remote and a home; alpha's keys come from a mnemonic so
    the test knows every private key a killed run holds, even one it never wrote."""

    def __init__(self, tmp_path: Path):
        self.root = tmp_path
        self.envs = tmp_path / "environments"
        self.envs.mkdir()
        self.remote = tmp_path / "remote.git"
        subprocess.run(["git", "init", "-q", "--bare", "--initial-branch=main", str(self.remote)], check=True)
        self.home = tmp_path / "home"
        self.tmp = tmp_path / "tmp"
        self.tmp.mkdir()
        (self.envs / "alpha.yaml").write_text(env_yaml(6101, mnemonic=True))
        (self.envs / "beta.yaml").write_text(env_yaml(6102))

    def args(self, *extra: str) -> list[str]:
        return ["compile", *extra, "--home", str(self.home), "--environments", str(self.envs), "--repo", str(self.remote)]

    def next_change(self) -> None:
        """One more rpc node in alpha and beta (new keys next to locked ones) and a new
        environment gamma (nothing locked yet)."""
        (self.envs / "alpha.yaml").write_text(env_yaml(6101, rpc=2, mnemonic=True))
        (self.envs / "beta.yaml").write_text(env_yaml(6102, rpc=2))
        (self.envs / "gamma.yaml").write_text(env_yaml(6103))

    @property
    def cache(self) -> Path:
        return next((self.home / "cache").glob("*.git"))

    def lock(self, env: str, rev: str = "main") -> dict:
        return json.loads(git(self.remote, "show", f"{rev}:rendered/{env}/network.lock.json"))

    def escrow(self, env: str) -> dict:
        path = self.root / f"escrow-{env}.age"
        path.write_bytes(subprocess.run(
            ["git", "--git-dir", str(self.remote), "show", f"main:rendered/{env}/keys.escrow.age"],
            check=True, capture_output=True).stdout)
        return open_escrow_file(path, self.home / "age" / "identity.txt")

    def run_killed(self, environ: dict[str, str], marker: Path) -> None:
        """Start `chainops compile`, wait until it reaches the marker, SIGKILL its group."""
        proc = subprocess.Popen(
            [venv_tool("chainops"), *self.args()],
            env={**os.environ, "CHAINOPS_MNEMONIC": MNEMONIC, "TMPDIR": str(self.tmp), **environ},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, cwd=self.root,
        )
        deadline = time.monotonic() + 90
        while not marker.exists():
            if proc.poll() is not None:
                out, err = proc.communicate()
                pytest.fail(f"chainops ended (exit {proc.returncode}) before the fault point: {err.decode()}")
            if time.monotonic() > deadline:
                os.killpg(proc.pid, signal.SIGKILL)
                pytest.fail("the fault point was never reached")
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
        proc.communicate()


@pytest.fixture
def world(tmp_path, run_cli, monkeypatch) -> World:
    monkeypatch.setenv("CHAINOPS_MNEMONIC", MNEMONIC)
    for var in ("CHAINOPS_FORGE", "CHAINOPS_GIT_TOKEN", "CHAINOPS_CLUSTER_REPO_URL"):
        monkeypatch.delenv(var, raising=False)
    w = World(tmp_path)
    first = run_cli(*w.args())
    assert first.code == 0, first.err
    assert commit_count(w.remote) == 2
    return w


def mnemonic_keys(names_and_paths: dict[str, str]) -> dict[str, Account]:
    return {name: Account.from_mnemonic(MNEMONIC, account_path=path) for name, path in names_and_paths.items()}


ALPHA_PATHS = {"validator-0": "m/44'/60'/1'/0/0", "rpc-0": "m/44'/60'/2'/0/0", "rpc-1": "m/44'/60'/2'/0/1"}


def key_needles(accounts: dict[str, Account]) -> set[bytes]:
    needles: set[bytes] = set()
    for account in accounts.values():
        hexkey = account.key.hex().removeprefix("0x")
        needles |= {hexkey.encode(), b"0x" + hexkey.encode(), bytes(account.key), base64.b64encode(hexkey.encode())}
    return needles


def everything_on_disk(*roots: Path) -> bytes:
    """Every file's bytes, plus every git object decompressed (packs and loose objects)."""
    chunks = [p.read_bytes() for root in roots for p in root.rglob("*") if p.is_file() and not p.is_symlink()]
    for root in roots:
        for git_dir in [root] if (root / "objects").is_dir() else list(root.rglob("*.git")):
            if (git_dir / "objects").is_dir():
                chunks.append(subprocess.run(
                    ["git", "--git-dir", str(git_dir), "cat-file", "--batch-all-objects", "--batch", "--unordered"],
                    capture_output=True, check=False).stdout)
    return b"".join(chunks)


def fsck_clean(git_dir: Path) -> None:
    fsck = subprocess.run(["git", "--git-dir", str(git_dir), "fsck", "--strict", "--no-dangling"], capture_output=True, text=True)
    assert fsck.returncode == 0 and "error" not in fsck.stderr.lower(), fsck.stderr


def install_git_wrapper(world: World, at: str, mode: str) -> tuple[dict[str, str], Path]:
    bindir = world.root / "faultbin"
    bindir.mkdir(exist_ok=True)
    wrapper = bindir / "git"
    wrapper.write_text(GIT_WRAPPER.format(real=REAL_GIT))
    wrapper.chmod(0o755)
    marker = world.root / f"reached-{mode}-{at}"
    environ = {"PATH": f"{bindir}:{os.environ['PATH']}", "FAULT_AT": at, "FAULT_MODE": mode, "FAULT_MARKER": str(marker)}
    return environ, marker


def install_remote_hook(world: World, hook: str) -> tuple[dict[str, str], Path]:
    armed, marker = world.root / f"armed-{hook}", world.root / f"reached-{hook}"
    armed.touch()
    path = world.remote / "hooks" / hook
    path.write_text(HOOK.format(armed=armed, marker=marker))
    path.chmod(0o755)
    return {}, marker


# (id, how the kill point is reached, whether the remote accepted the push before the kill)
FAULTS = [
    ("mid-fast-import", ("git", "fast-import", "midstream"), False),
    ("after-fast-import", ("git", "fast-import", "after"), False),
    ("before-push", ("git", "push", "before"), False),
    ("during-push", ("hook", "pre-receive", ""), False),
    ("after-remote-accepted", ("hook", "post-receive", ""), True),
]
FAULT_IDS = [f[0] for f in FAULTS]


@pytest.mark.parametrize(("point", "how", "accepted"), FAULTS, ids=FAULT_IDS)
def test_sigkill_while_publishing_loses_nothing_and_the_next_run_recovers(world: World, run_cli, point, how, accepted):
    before = {env: world.lock(env) for env in ("alpha", "beta")}
    head0 = git(world.remote, "rev-parse", "main").strip()
    world.next_change()
    kind, at, mode = how
    environ, marker = install_git_wrapper(world, at, mode) if kind == "git" else install_remote_hook(world, at)
    world.run_killed(environ, marker)

    # -- right after the kill: the remote is consistent and holds all or nothing of the run
    fsck_clean(world.remote)
    if accepted:
        assert commit_count(world.remote) == 5
        published = {env: world.lock(env) for env in ("alpha", "beta", "gamma")}
    else:
        assert git(world.remote, "rev-parse", "main").strip() == head0, "a killed run must publish nothing"
    # The kill really happened where it says (the cache shows that state).
    cache = world.cache
    if point == "mid-fast-import":
        assert list((cache / "objects" / "pack").glob("tmp_pack_*")), "fast-import was killed while writing its pack"
    if point == "after-fast-import":
        assert git(cache, "for-each-ref", "refs/chainops/").strip(), "killed before the scratch ref was deleted"
    if point == "before-push":
        kinds = git(cache, "cat-file", "--batch-all-objects", "--batch-check=%(objecttype)").split()
        assert kinds.count("commit") == commit_count(world.remote) + 3, "the three commits were built, not pushed"

    # No plaintext private key anywhere on disk: home (cache packs decompressed), temp dir,
    # remote. alpha's keys (including rpc-1, which the killed run generated) are known from
    # the mnemonic, checked against the published lock first so the needles are the real ones.
    alpha_keys = mnemonic_keys(ALPHA_PATHS)
    locked = {n["name"]: n["address"] for n in before["alpha"]["nodes"]}
    assert all(alpha_keys[name].address == locked[name] for name in locked)
    found = leaked(key_needles(alpha_keys), everything_on_disk(world.home, world.tmp, world.remote))
    assert found == [], f"plaintext key material on disk after the kill: {found}"

    # -- the next run recovers: exactly one commit per changed environment, nothing twice
    again = run_cli(*world.args())
    assert again.code == 0, again.err
    assert commit_count(world.remote) == 5
    fsck_clean(world.remote)
    fsck_clean(world.cache)
    assert git(world.remote, "ls-tree", "--name-only", "main", "rendered/").split() == [
        "rendered/alpha", "rendered/beta", "rendered/gamma",
    ]
    after = {env: world.lock(env) for env in ("alpha", "beta", "gamma")}
    for env in ("alpha", "beta"):
        old = {n["name"]: n for n in before[env]["nodes"]}
        new = {n["name"]: n for n in after[env]["nodes"]}
        assert set(new) == set(old) | {"rpc-1"}
        assert all(new[name] == node for name, node in old.items()), "committed keys are never regenerated"
        assert after[env]["genesisHash"] == before[env]["genesisHash"]
    if accepted:
        assert after == published, "keys the remote accepted from the killed run are kept, not replaced"
        assert again.out.count("unchanged") == 3
    assert after["alpha"]["nodes"][-1]["address"] == alpha_keys["rpc-1"].address
    # No orphaned keys: each escrow holds exactly the locked identities, and each key is the one locked.
    for env, lock in after.items():
        escrow = world.escrow(env)["keys"]
        assert set(escrow) == {n["name"] for n in lock["nodes"]}
        for node in lock["nodes"]:
            assert Account.from_key(bytes.fromhex(escrow[node["name"]]["privateKey"])).address == node["address"]

    # -- and a third run has nothing left to do
    third = run_cli(*world.args())
    assert third.code == 0 and third.out.count("unchanged") == 3, third.out
    assert commit_count(world.remote) == 5


def test_git_lock_files_left_by_a_killed_git_do_not_block_the_next_run(world: World, run_cli):
    """git takes `<ref>.lock` and `packed-refs.lock` for microseconds while it updates a ref;
    a kill inside that window (too short to hit on purpose) leaves them behind. chainops
    holds its own lock on the cache, so they can only be stale: the next run clears them."""
    cache = world.cache
    for stale in ("refs/remotes/origin/main.lock", "packed-refs.lock", "index.lock"):
        (cache / stale).parent.mkdir(parents=True, exist_ok=True)
        (cache / stale).write_text("")
    world.next_change()
    result = run_cli(*world.args())
    assert result.code == 0, result.err
    assert commit_count(world.remote) == 5
    assert not any((cache / stale).exists() for stale in ("refs/remotes/origin/main.lock", "packed-refs.lock"))
    # git's automatic gc after a fetch runs in the foreground, under chainops' lock: no
    # detached gc can hold (or lose) these locks when the next run starts.
    assert git(cache, "config", "gc.autoDetach").strip() == "false"


def test_failure_between_key_generation_and_commit_leaves_no_key_and_no_lock(world: World, run_cli):
    """A push the remote refuses after new keys were generated: nothing is published, no
    key is left on disk, and the next run generates (and locks) keys exactly once."""
    hook = world.remote / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'maintenance window' >&2\nexit 1\n")
    hook.chmod(0o755)
    world.next_change()
    refused = run_cli(*world.args())
    assert refused.code == 2 and "pre-receive hook declined" in refused.err and "nothing was published" in refused.err
    assert commit_count(world.remote) == 2
    found = leaked(key_needles(mnemonic_keys(ALPHA_PATHS)), everything_on_disk(world.home, world.remote))
    assert found == []
    hook.unlink()
    ok = run_cli(*world.args())
    assert ok.code == 0, ok.err
    assert commit_count(world.remote) == 5
    log = git(world.remote, "log", "--format=%H", "--", "rendered/gamma/network.lock.json").split()
    assert len(log) == 1, "gamma's identities were locked exactly once"
