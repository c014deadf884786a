"""Property: whatever an operator does, no published identity is replaced without the
explicit reset of its environment.

Hypothesis draws sequences of operator actions on a real bare remote and real environment
files: edit a file, rename it (`mv`), delete it, decommission, rewind the remote (a force
push), delete or hand-edit the lock (commit + push), compile, compile accepting a rewind,
compile with `--allow-genesis-change ENV`, compile with `--rename OLD=NEW`. After every
chainops command the published locks are compared with every identity chainops ever
published: a (environment, node) keeps its address unless that command named the
environment in `--allow-genesis-change` (or it was decommissioned or renamed). A refused
command must leave every ref of the remote as it was, and nothing may end in a traceback.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.cli import main as cli_main
from tests.conftest import REPO_ROOT

NAMES = ("alpha", "beta", "gamma")
CHAIN_IDS = {"alpha": 4201, "beta": 4202, "gamma": 4203}


def env_yaml(chain_id: int, rpc: int) -> str:
    return (
        "apiVersion: chainops/v1\n"
        f"network: {{chainId: {chain_id}, client: besu, consensus: qbft}}\n"
        f"nodes: {{validators: 1, rpc: {rpc}}}\n"
        f"kubernetes: {{namespace: chain-{chain_id}}}\n"
        "gitops: {controller: flux, review: direct, secrets: {provider: plaintext, allowPlaintextSecrets: true}}\n"
    )


@pytest.fixture
def clean_environment(monkeypatch):
    for var in ("CHAINOPS_HOME", "CHAINOPS_REPO", "CHAINOPS_ENVIRONMENTS", "CHAINOPS_BRANCH", "CHAINOPS_FORGE", "CHAINOPS_GIT_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("CHAINOPS_CHARTS", str(REPO_ROOT / "chart_sources"))


def git(*args: str, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=check)


name = st.sampled_from(NAMES)
actions = st.one_of(
    st.tuples(st.just("edit"), name, st.integers(0, 2)),
    st.tuples(st.just("mv"), name, name),
    st.tuples(st.just("delete-file"), name),
    st.tuples(st.just("restore-file"), name),
    st.tuples(st.just("decommission"), name),
    st.tuples(st.just("rewind"), st.integers(1, 3)),
    st.tuples(st.just("delete-lock"), name),
    st.tuples(st.just("delete-lock-field"), name, st.sampled_from(["genesisHash", "validators", "nodes.0"])),
    st.tuples(st.just("compile")),
    st.tuples(st.just("compile-accept-rewind")),
    st.tuples(st.just("reset"), name),
    st.tuples(st.just("rename"), name, name),
)


class Site:
    def __init__(self, root: Path):
        self.root = root
        self.envs = root / "environments"
        self.envs.mkdir()
        self.remote = root / "remote.git"
        git("init", "-q", "--bare", "--initial-branch=main", str(self.remote))
        self.home = root / "home"
        self.ever: dict[tuple[str, str], str] = {}  # (environment, node) -> address chainops published
        self.edits = 0

    def refs(self) -> str:
        return git("--git-dir", str(self.remote), "for-each-ref", "--format=%(refname) %(objectname)").stdout

    def locks(self) -> dict[str, dict]:
        listing = git("--git-dir", str(self.remote), "ls-tree", "-r", "--name-only", "main", "rendered", check=False).stdout.split()
        found = {}
        for path in listing:
            if path.endswith("/network.lock.json"):
                data = git("--git-dir", str(self.remote), "show", f"main:{path}").stdout
                try:
                    found[path.split("/")[1]] = {n["name"]: n["address"] for n in json.loads(data).get("nodes", [])}
                except (ValueError, KeyError, TypeError, AttributeError):
                    pass  # a hand-damaged lock: chainops must refuse it, it publishes nothing
        return found

    def chainops(self, *args: str, reset: tuple[str, ...] = (), moved: dict[str, str] | None = None) -> int:
        before = self.refs()
        code = cli_main(["compile", *args, "--home", str(self.home), "--environments", str(self.envs), "--repo", str(self.remote)])
        assert code in (0, 1, 2)
        if code != 0:
            assert self.refs() == before, f"a refused run ({args}) changed the remote"
            return code
        for old, new in (moved or {}).items():
            for env, node in list(self.ever):
                if env == old:
                    self.ever[(new, node)] = self.ever.pop((env, node))
        for env in reset:
            self.ever = {k: v for k, v in self.ever.items() if k[0] != env}
        locks = self.locks()
        for env, nodes in locks.items():
            for node, address in nodes.items():
                known = self.ever.get((env, node))
                assert known is None or known == address, f"{env}/{node}: {known} replaced by {address} after {args}"
        for env, nodes in locks.items():
            if (self.envs / f"{env}.yaml").exists():  # compiled in this run: its lock is the file's network
                self.ever = {k: v for k, v in self.ever.items() if k[0] != env}
                self.ever.update({(env, node): address for node, address in nodes.items()})
        return code

    def operator(self, *shell: str) -> None:
        """Clone, run shell commands, commit and push, as a person would (skipped when there is nothing)."""
        self.edits += 1
        work = self.root / f"op-{self.edits}"
        if git("clone", "-q", "-b", "main", str(self.remote), str(work), check=False).returncode != 0:
            return
        for command in shell:
            if subprocess.run(command, shell=True, cwd=work, capture_output=True).returncode != 0:
                return
        git("add", "-A", cwd=work)
        if git("-c", "user.name=op", "-c", "user.email=op@x", "commit", "-qm", "hand edit", cwd=work, check=False).returncode == 0:
            git("push", "-q", "--force", "origin", "HEAD:main", cwd=work)

    def apply(self, action: tuple) -> None:
        kind = action[0]
        if kind == "edit" and (self.envs / f"{action[1]}.yaml").exists():
            (self.envs / f"{action[1]}.yaml").write_text(env_yaml(CHAIN_IDS[action[1]], action[2]))
        elif kind == "mv" and action[1] != action[2] and (self.envs / f"{action[1]}.yaml").exists():
            (self.envs / f"{action[1]}.yaml").replace(self.envs / f"{action[2]}.yaml")
        elif kind == "delete-file":
            (self.envs / f"{action[1]}.yaml").unlink(missing_ok=True)
        elif kind == "restore-file" and not (self.envs / f"{action[1]}.yaml").exists():
            (self.envs / f"{action[1]}.yaml").write_text(env_yaml(CHAIN_IDS[action[1]], 1))
        elif kind == "decommission":
            if self.chainops("--decommission", action[1]) == 0:
                self.ever = {k: v for k, v in self.ever.items() if k[0] != action[1]}
        elif kind == "rewind":
            self.operator(f"git reset -q --hard HEAD~{action[1]}")
        elif kind == "delete-lock":
            self.operator(f"git rm -q rendered/{action[1]}/network.lock.json")
        elif kind == "delete-lock-field":
            path, field = f"rendered/{action[1]}/network.lock.json", action[2]
            code = "del d['nodes'][0]" if field == "nodes.0" else f"del d[{field!r}]"
            script = f"import json; p={path!r}; d=json.load(open(p)); {code}; open(p,'w').write(json.dumps(d))"
            self.operator(f"python3 -c {shlex.quote(script)}")
        elif kind == "compile":
            self.chainops()
        elif kind == "compile-accept-rewind":
            self.chainops("--accept-remote-rewind")
        elif kind == "reset":
            self.chainops("--allow-genesis-change", action[1], reset=(action[1],))
        elif kind == "rename" and action[1] != action[2]:
            old, new = action[1], action[2]
            self.chainops(new, "--rename", f"{old}={new}", moved={old: new})


@settings(max_examples=int(os.environ.get("CHAINOPS_PROPERTY_EXAMPLES", "25")), deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(steps=st.lists(actions, min_size=1, max_size=7))
def test_no_sequence_of_operator_actions_replaces_an_identity_without_its_reset(steps, clean_environment):
    with tempfile.TemporaryDirectory(prefix="chainops-identity-") as tmp:
        site = Site(Path(tmp))
        for env in ("alpha", "beta"):
            (site.envs / f"{env}.yaml").write_text(env_yaml(CHAIN_IDS[env], 1))
        assert site.chainops() == 0
        for step in steps:
            site.apply(step)
        site.apply(("compile",))
