"""The deployment and operations guides, executed as written.

Every `$ chainops ...` line of docs/deploy-flux.md, docs/deploy-argocd.md and
docs/operations.md runs, in document order, in a sandbox: a copy of
tests/fixtures/environments, a temporary home (CHAINOPS_HOME) and a bare GitOps remote
(CHAINOPS_REPO), through conftest's in-process CLI runner. Each command must exit as its
guide says (a trailing `# exits N`, else 0) and print the lines the guide shows under it.
Commands for a cluster (kubectl, flux, argocd) and other tools are not run.

What the guides may use, and this file acts on:
- a ```console block: `$ ` starts a command; the lines up to the next `$ ` are its output
  (a line `…` elides), shown as a run in /tmp/chainops-docs printed them, with the home
  /tmp/chainops-docs/home and the remote /tmp/chainops-docs/gitops.git; hashes,
  addresses, keys, age recipients and commit ids are compared as placeholders;
- `$ export CHAINOPS_CLUSTER_REPO_URL=...` in a console block is set; CHAINOPS_HOME and
  CHAINOPS_REPO are the sandbox's, and `$CHAINOPS_HOME` is the only placeholder a command
  may use;
- a ```yaml block whose first line is `# environments/<name>.yaml` is merged into that
  file (a null deletes the key); an age recipient in it stands for the one the last
  `chainops cluster init` printed;
- a ```yaml block whose first line is `# <bootstrap or rendered path>, as chainops commits
  it` must equal that file on the remote's main branch at that point;
- `<!-- docs-test: ACTION ARGS -->` does to the sandbox what the prose says happened
  outside chainops (ACTIONS below).

`chainops smoke` lines run only where tests/smoke/test_smoke.py runs (geth binaries, bwrap,
root; CHAINOPS_REQUIRE_SMOKE=1 makes a missing one an error), one smoke at a time on the
machine, as there.
"""

from __future__ import annotations

import fcntl
import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from tests.conftest import EXAMPLES, REPO_ROOT
from tests.smoke_helpers import MISSING as SMOKE_MISSING
from tests.yaml_reader import read_yaml

DOCS = ("deploy-flux.md", "deploy-argocd.md", "operations.md")
SHOWN_ROOT = "/tmp/chainops-docs"  # where the outputs shown in the guides were printed
EXITS = re.compile(r"\s+# exits (\d+)\s*$")
EDIT_HEADER = re.compile(r"^# (environments/[a-z0-9][-a-z0-9]*\.yaml)\s*$")
COMMITTED_HEADER = re.compile(r"^# ((?:bootstrap|rendered)/\S+), as chainops commits it$")
MARKER = re.compile(r"^<!-- docs-test: (.+?) -->$")
EXPORT = re.compile(r"^\$ export (CHAINOPS_CLUSTER_REPO_URL)=(\S+)$")
RECIPIENT = re.compile(r"age1[0-9a-z]{58}")
ELISION = ("…", "...")

# Hosts of container, chart and package registries: the guides name images by repository
# and tag only (the team's mirror is its own business) and install nothing from a registry.
REGISTRY_HOSTS = re.compile(
    r"(?<![\w.-])(?:[\w-]+\.)*(?:docker\.io|docker\.com|ghcr\.io|quay\.io|gcr\.io|registry\.k8s\.io|k8s\.gcr\.io|"
    r"public\.ecr\.aws|amazonaws\.com|azurecr\.io|mcr\.microsoft\.com|pkg\.dev|registry\.gitlab\.com|nvcr\.io|"
    r"pypi\.org|pythonhosted\.org|npmjs\.org|npmjs\.com|proxy\.golang\.org|crates\.io|rubygems\.org|"
    r"maven\.apache\.org|charts\.bitnami\.com|artifacthub\.io)\b|oci://",
    re.I,
)
# What a private key, identity or sealed value looks like in text.
KEY_MATERIAL = re.compile(
    r"AGE-SECRET-KEY-|PRIVATE KEY-----|(?<![0-9A-Za-z])(?<!0x)[0-9a-fA-F]{64}(?![0-9A-Za-z])|\"ciphertext\"|"
    r"ENC\[AES256_GCM|(?<![A-Za-z0-9+/])(?=[0-9a-fA-F/]*[g-zG-Z+])[A-Za-z0-9+/]{80,}"  # base64, not an enode's hex
)


@dataclass
class Command:
    line: int
    text: str
    argv: list[str]
    exit: int
    shown: list[str] = field(default_factory=list)


@dataclass
class Edit:
    line: int
    path: str
    text: str


@dataclass
class Committed:
    line: int
    path: str
    text: str


@dataclass
class Action:
    line: int
    name: str
    args: list[str]


@dataclass
class Export:
    line: int
    name: str
    value: str


Step = Command | Edit | Committed | Action | Export


def parse(doc: Path) -> list[Step]:
    """The guide's steps in document order."""
    steps: list[Step] = []
    block: tuple[str, int, list[str]] | None = None
    indent = 0
    for number, raw in enumerate(doc.read_text().splitlines(), 1):
        if block is None:
            if raw.lstrip().startswith("```"):  # a fence, also inside a list item
                indent = len(raw) - len(raw.lstrip())
                block = (raw.strip()[3:].strip(), number, [])
            elif marker := MARKER.match(raw.strip()):
                name, *args = shlex.split(marker.group(1))
                steps.append(Action(number, name, args))
            continue
        if raw.strip().startswith("```"):
            steps += _block_steps(*block)
            block = None
            continue
        block[2].append(raw[indent:])
    assert block is None, f"{doc.name}: unterminated code block from line {block[1]}"
    return steps


def _block_steps(lang: str, start: int, lines: list[str]) -> list[Step]:
    if lang == "yaml" and lines and (header := EDIT_HEADER.match(lines[0])):
        return [Edit(start + 1, header.group(1), "\n".join(lines[1:]) + "\n")]
    if lang == "yaml" and lines and (header := COMMITTED_HEADER.match(lines[0])):
        return [Committed(start + 1, header.group(1), "\n".join(lines[1:]) + "\n")]
    if lang != "console":
        return []
    steps: list[Step] = []
    current: Command | None = None
    for offset, raw in enumerate(lines, start + 1):
        if raw.startswith("$ "):
            current = None
            if export := EXPORT.match(raw):
                steps.append(Export(offset, export.group(1), export.group(2)))
            elif raw.startswith("$ chainops "):
                found = EXITS.search(raw)
                text = raw[2:found.start()] if found else raw[2:]
                current = Command(offset, text, shlex.split(text, comments=True)[1:], int(found.group(1)) if found else 0)
                steps.append(current)
        elif current is not None:
            current.shown.append(raw)
    return steps


def normalize(text: str, root: Path, numbers: bool = False) -> str:
    """Output as the guides show it: sandbox paths as /tmp/chainops-docs, and what differs
    from run to run (keys, hashes, commit ids) as placeholders."""
    text = text.replace(str(root), SHOWN_ROOT)
    text = RECIPIENT.sub("age1…", text)
    text = re.sub(r"0x[0-9a-fA-F]{8,}", "0x…", text)
    text = re.sub(r"[0-9a-f]{64,}", "<hex>", text)
    text = re.sub(r"\b(?=[0-9a-f]*[0-9])[0-9a-f]{7,40}\b", "<id>", text)
    return re.sub(r"\d+", "N", text) if numbers else text


def _git(*args: str | Path, cwd: Path | None = None) -> str:
    return subprocess.run(["git", *map(str, args)], cwd=cwd, check=True, capture_output=True, text=True).stdout


def _remote_rewind(sandbox: Sandbox, commits: str) -> None:
    """A force push that moves main back (someone restored an older state)."""
    target = _git("--git-dir", sandbox.remote, "rev-parse", f"main~{int(commits)}").strip()
    _git("--git-dir", sandbox.remote, "update-ref", "refs/heads/main", target)


def _remote_delete(sandbox: Sandbox, path: str) -> None:
    """A hand commit on the GitOps repository that deletes a file."""
    work = sandbox.root / f"hand-edit-{len(list(sandbox.root.glob('hand-edit-*')))}"
    _git("clone", "-q", sandbox.remote, work)
    _git("rm", "-q", path, cwd=work)
    _git("-c", "user.name=op", "-c", "user.email=op@example.com", "commit", "-qm", f"delete {path}", cwd=work)
    _git("push", "-q", "origin", "main", cwd=work)


ACTIONS: dict[str, Callable[..., None]] = {
    "remote-rewind": _remote_rewind,
    "remote-delete": _remote_delete,
    "move": lambda sandbox, old, new: (sandbox.root / old).rename(sandbox.root / new),
    "delete": lambda sandbox, path: (sandbox.root / path).unlink(),
}


def _merge(base: dict, patch: dict) -> dict:
    for key, value in patch.items():
        if value is None:
            base.pop(key, None)
        elif isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


Runner = Callable[..., tuple[int, str, str]]  # argv -> (exit code, stdout, stderr)


class Sandbox:
    """A working directory with environments/, a home and a bare remote, as the guides assume."""

    def __init__(self, root: Path, run: Runner, smoke: bool) -> None:
        self.root, self.run, self.smoke = root, run, smoke
        self.home, self.remote = root / "home", root / "gitops.git"
        self.recipient: str | None = None
        self.skipped: list[Command] = []
        shutil.copytree(EXAMPLES, root / "environments")
        _git("init", "-q", "--bare", "--initial-branch=main", self.remote)

    def apply(self, step: Step, where: str) -> None:
        if isinstance(step, Action):
            ACTIONS[step.name](self, *step.args)
        elif isinstance(step, Edit):
            text = RECIPIENT.sub(self.recipient, step.text) if self.recipient else step.text
            target = self.root / step.path
            data = read_yaml(target.read_text()) if target.exists() else {}
            target.write_text(yaml.safe_dump(_merge(data, read_yaml(text)), sort_keys=False))
        elif isinstance(step, Committed):
            committed = _git("--git-dir", self.remote, "show", f"main:{step.path}")
            assert normalize(committed, self.root) == normalize(step.text, self.root), f"{where}: {step.path} is now\n{committed}"
        elif isinstance(step, Command):
            self.command(step, where)

    def command(self, step: Command, where: str) -> None:
        smoke = step.argv[0] == "smoke"
        if smoke and not self.smoke:
            self.skipped.append(step)
            return
        argv = [str(self.home) if arg == "$CHAINOPS_HOME" else arg for arg in step.argv]
        if smoke:  # one smoke at a time on this machine, as tests/smoke/test_smoke.py runs them
            with open(Path(tempfile.gettempdir()) / "chainops-smoke-tests.lock", "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                code, out, err = self.run(*argv)
        else:
            code, out, err = self.run(*argv)
        printed = normalize(out + "\n" + err, self.root, numbers=smoke)
        context = f"{where}: $ {step.text}\n--- it printed (normalized) ---\n{printed[-6000:]}"
        assert code == step.exit, f"exit {code}, the guide says {step.exit}\n{context}"
        lines = {line.rstrip() for line in printed.splitlines()}
        missing = [
            line for line in (normalize(s, self.root, numbers=smoke).rstrip() for s in step.shown)
            if line.strip() and line.strip() not in ELISION and line not in lines
        ]
        assert not missing, "the guide shows lines this run did not print:\n" + "\n".join(missing) + "\n" + context
        if step.argv[:2] == ["cluster", "init"]:
            self.recipient = RECIPIENT.search(out).group(0)


# deploy-flux.md boots `dev` with smoke (about 18 s here): slow, and one smoke at a time as in
# tests/smoke/test_smoke.py; the other two guides take a few seconds.
GUIDE_RUNS = [
    pytest.param("deploy-flux.md", marks=[pytest.mark.slow, pytest.mark.xdist_group("smoke")]),
    "deploy-argocd.md",
    "operations.md",
]


@pytest.mark.parametrize("doc", GUIDE_RUNS)
def test_the_guide_runs_as_written(doc, run_cli, monkeypatch, tmp_path):
    def run(*argv: str) -> tuple[int, str, str]:
        result = run_cli(*argv)
        return result.code, result.out, result.err

    sandbox = Sandbox(tmp_path / "chainops-docs", run, smoke=not SMOKE_MISSING)
    monkeypatch.chdir(sandbox.root)
    monkeypatch.setenv("CHAINOPS_HOME", str(sandbox.home))
    monkeypatch.setenv("CHAINOPS_REPO", str(sandbox.remote))
    monkeypatch.delenv("CHAINOPS_CLUSTER_REPO_URL", raising=False)
    steps = parse(REPO_ROOT / "docs" / doc)
    assert any(isinstance(s, Command) for s in steps)
    for step in steps:
        if isinstance(step, Export):
            monkeypatch.setenv(step.name, step.value)
        else:
            sandbox.apply(step, f"docs/{doc}:{step.line}")
    if sandbox.skipped:
        pytest.skip(f"ran all but {len(sandbox.skipped)} smoke line(s): smoke needs {', '.join(SMOKE_MISSING)}")


CODE_BLOCK = re.compile(r"^[ \t]*```.*?^[ \t]*```", re.S | re.M)
CHAINOPS_WORD = re.compile(r"(?<![\w/.-])chainops\s")


@pytest.mark.parametrize("doc", DOCS)
def test_the_guide_follows_its_conventions(doc):
    text = (REPO_ROOT / "docs" / doc).read_text()
    hosts, keys = REGISTRY_HOSTS.search(text), KEY_MATERIAL.search(text)
    assert not hosts, f"docs/{doc} names a registry host: {hosts.group(0) if hosts else ''}"
    assert not keys, f"docs/{doc} holds what looks like key material: {keys.group(0)[:16] if keys else ''}…"
    commands = [s for s in parse(REPO_ROOT / "docs" / doc) if isinstance(s, Command)]
    for command in commands:
        tokens, where = command.argv, f"docs/{doc}:{command.line}: $ {command.text}"
        assert "ENV" not in tokens and not any(t.startswith("~") for t in tokens), where
        assert all(t == "$CHAINOPS_HOME" or ("$" not in t and "<" not in t) for t in tokens), where
        assert all(tokens[i + 1 : i + 2] == ["$CHAINOPS_HOME"] for i, t in enumerate(tokens) if t == "--home"), where
    for number, line in enumerate(text.splitlines(), 1):  # a chainops command nobody would run
        shell = line.lstrip()
        if shell.startswith("$ ") and CHAINOPS_WORD.search(shell.split(" #")[0]):
            assert shell.startswith("$ chainops "), f"docs/{doc}:{number}: {shell}"
    executed = [shlex.split(c.text) for c in commands]
    for inline in re.findall(r"`(chainops [^`]+)`", CODE_BLOCK.sub("", text)):
        tokens = shlex.split(inline)
        assert any(run[: len(tokens)] == tokens for run in executed), f"docs/{doc}: `{inline}` is not a command the guide runs"


def test_the_readme_links_the_guides():
    deploying = REPO_ROOT.joinpath("README.md").read_text().split("## Deploying", 1)[1].split("\n## ", 1)[0]
    assert all(f"(docs/{doc})" in deploying for doc in DOCS)
