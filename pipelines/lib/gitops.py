"""Publishing to the GitOps repository with real git (GitPython).

chainops keeps a bare cache clone of the remote under the home directory and builds
commits with plumbing on a temporary index, so it never needs a work tree, never
touches another environment's paths, and can replay a commit onto a moved remote.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path

import git
from filelock import FileLock
from gitdb import IStream

AUTHOR_NAME = "chainops"
AUTHOR_EMAIL = "chainops@localhost"
MAX_PUSH_ATTEMPTS = 5
EMPTY_SHA = "0" * 40


class GitopsError(RuntimeError):
    """The GitOps repository cannot be read or written; the message says which and why."""


def git_blob_id(data: bytes) -> str:
    """The object id git gives a blob, computed without writing it."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def repo_url(target: str) -> str:
    """Normalise a local path to an absolute path; URLs are used as they are."""
    if "://" in target or target.startswith("git@"):
        return target
    return str(Path(target).expanduser().resolve())


def ensure_embedded_repository(path: Path, branch: str) -> None:
    """Create the embedded bare repository on first use."""
    if (path / "HEAD").exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    git.Repo.init(path, bare=True, initial_branch=branch).close()


@dataclass(frozen=True)
class EnvironmentChange:
    """Replace everything under `prefixes` with `files` (repo path -> bytes), then commit."""

    environment: str
    files: Mapping[str, bytes]
    prefixes: tuple[str, ...]
    message: str


@dataclass
class PublishResult:
    commits: dict[str, str] = field(default_factory=dict)  # environment -> commit id
    pushed: bool = False
    attempts: int = 0


class GitopsRepository:
    """A remote GitOps repository seen through a bare cache clone under `home/cache`."""

    def __init__(self, url: str, branch: str, home: Path):
        self.url = repo_url(url)
        self.branch = branch
        slug = hashlib.sha256(f"{self.url}\0{branch}".encode()).hexdigest()[:16]
        self.cache_path = home / "cache" / f"{slug}.git"
        self.lock = FileLock(str(home / "cache" / f"{slug}.lock"))
        self.tracking_ref = f"refs/remotes/origin/{branch}"
        self._repo: git.Repo | None = None

    # -- lifecycle -------------------------------------------------------------------
    def __enter__(self) -> GitopsRepository:
        self.cache_path.parent.mkdir(parents=True, exist_ok=True)
        self.lock.acquire()
        try:
            if not (self.cache_path / "HEAD").exists():
                git.Repo.init(self.cache_path, bare=True).close()
            self._repo = git.Repo(self.cache_path)
            for stale in (self.cache_path / "index.lock", self.cache_path / "shallow.lock"):
                stale.unlink(missing_ok=True)  # left by a killed run; we hold the repository lock
        except BaseException:
            self.lock.release()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self._repo is not None:
            self._repo.close()
            self._repo = None
        self.lock.release()

    @property
    def repo(self) -> git.Repo:
        if self._repo is None:
            raise GitopsError("repository used outside its `with` block")
        return self._repo

    # -- reading ---------------------------------------------------------------------
    def fetch(self) -> str | None:
        """Bring the remote branch into the cache; None when the remote branch does not exist yet."""
        try:
            remote_refs = self.repo.git.ls_remote(self.url, f"refs/heads/{self.branch}")
        except git.GitCommandError as exc:
            raise GitopsError(f"cannot reach GitOps repository {self.url}: {_stderr(exc)}") from None
        if not remote_refs.strip():
            return None
        try:
            self.repo.git.fetch("--quiet", "--no-tags", self.url, f"+refs/heads/{self.branch}:{self.tracking_ref}")
        except git.GitCommandError as exc:
            raise GitopsError(f"cannot fetch {self.branch} from {self.url}: {_stderr(exc)}") from None
        return self.repo.git.rev_parse(self.tracking_ref)

    def tree_entries(self, base: str | None, paths: tuple[str, ...]) -> dict[str, str]:
        """Path -> blob id for every file under `paths` at commit `base`."""
        if base is None:
            return {}
        out = self.repo.git.ls_tree("-r", "-z", "--full-tree", base, "--", *paths)
        entries = {}
        for record in filter(None, out.split("\0")):
            meta, path = record.split("\t", 1)
            _mode, kind, sha = meta.split()
            if kind == "blob":
                entries[path] = sha
        return entries

    def read_blobs(self, entries: Mapping[str, str]) -> dict[str, bytes]:
        return {path: self.repo.odb.stream(bytes.fromhex(sha)).read() for path, sha in entries.items()}

    def read_files(self, base: str | None, paths: tuple[str, ...]) -> dict[str, bytes]:
        return self.read_blobs(self.tree_entries(base, paths))

    # -- writing ---------------------------------------------------------------------
    def _write_blob(self, data: bytes) -> str:
        hexsha = self.repo.odb.store(IStream(b"blob", len(data), BytesIO(data))).hexsha
        return hexsha.decode() if isinstance(hexsha, bytes) else hexsha

    def _commit_change(self, base: str | None, change: EnvironmentChange) -> str | None:
        """Build the commit for one environment on top of `base`; None when the tree is unchanged."""
        current = self.tree_entries(base, change.prefixes)
        wanted = {path: git_blob_id(data) for path, data in change.files.items()}
        if current == wanted:
            return None
        lines = [f"0 {EMPTY_SHA}\t{path}" for path in sorted(set(current) - set(wanted))]
        for path, data in sorted(change.files.items()):
            if current.get(path) != wanted[path]:
                lines.append(f"100644 {self._write_blob(data)}\t{path}")
        with _temporary_index(self.cache_path) as index_env:
            if base is None:
                self.repo.git.read_tree("--empty", env=index_env)
            else:
                self.repo.git.read_tree(base, env=index_env)
            self._git_with_input(["update-index", "--index-info"], ("\n".join(lines) + "\n").encode(), index_env)
            tree = self.repo.git.write_tree(env=index_env)
        parents = ["-p", base] if base else []
        return self._git_with_input(["commit-tree", tree, *parents, "-F", "-"], change.message.encode(), _author_env())

    def _git_with_input(self, args: list[str], data: bytes, env: Mapping[str, str]) -> str:
        """Run a git command fed on stdin (GitPython's istream needs a real file descriptor)."""
        proc = subprocess.run(
            ["git", "--git-dir", str(self.cache_path), *args],
            input=data,
            capture_output=True,
            env={**os.environ, **env},
            check=False,
        )
        if proc.returncode != 0:
            raise GitopsError(f"git {args[0]} failed: {proc.stderr.decode(errors='replace').strip()}")
        return proc.stdout.decode().strip()

    def publish(self, changes: list[EnvironmentChange], base: str | None) -> PublishResult:
        """Commit each change on top of the previous one and push; on a rejected push,
        fetch and replay the same changes onto the new remote head (bounded retries)."""
        result = PublishResult()
        for attempt in range(1, MAX_PUSH_ATTEMPTS + 1):
            result.attempts = attempt
            head = base
            commits: dict[str, str] = {}
            for change in changes:
                commit = self._commit_change(head, change)
                if commit is not None:
                    commits[change.environment] = commit
                    head = commit
            if not commits:
                return result
            try:
                self.repo.git.push("--quiet", self.url, f"{head}:refs/heads/{self.branch}")
            except git.GitCommandError as exc:
                message = _stderr(exc)
                if "non-fast-forward" in message or "fetch first" in message or "rejected" in message:
                    base = self.fetch()
                    continue
                raise GitopsError(f"cannot push to {self.url}: {message}") from None
            self.repo.git.update_ref(self.tracking_ref, head)
            result.commits = commits
            result.pushed = True
            return result
        raise GitopsError(f"push to {self.url} was rejected {MAX_PUSH_ATTEMPTS} times; another writer keeps moving {self.branch}")


class _temporary_index:
    """A private index file so concurrent plumbing never shares git's default index."""

    def __init__(self, git_dir: Path):
        self.git_dir = git_dir
        self.path: str | None = None

    def __enter__(self) -> dict[str, str]:
        fd, self.path = tempfile.mkstemp(prefix="chainops-index-", dir=self.git_dir)
        os.close(fd)
        os.unlink(self.path)
        return {"GIT_INDEX_FILE": self.path}

    def __exit__(self, *exc: object) -> None:
        if self.path:
            Path(self.path).unlink(missing_ok=True)


def _author_env() -> dict[str, str]:
    return {
        "GIT_AUTHOR_NAME": AUTHOR_NAME,
        "GIT_AUTHOR_EMAIL": AUTHOR_EMAIL,
        "GIT_COMMITTER_NAME": AUTHOR_NAME,
        "GIT_COMMITTER_EMAIL": AUTHOR_EMAIL,
    }


def _stderr(exc: git.GitCommandError) -> str:
    text = (exc.stderr or str(exc)).strip().replace("\n", " ")
    return text.removeprefix("stderr: ").strip("' ")


def iter_history(url: str, branch: str) -> Iterator[str]:
    """Commit ids of a branch, newest first (used by tests and the CLI's summary)."""
    with git.Repo(repo_url(url)) as repo:
        yield from (c.hexsha for c in repo.iter_commits(branch))
