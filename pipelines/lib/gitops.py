"""Publishing to the GitOps repository with real git (GitPython).

chainops keeps a bare cache clone of the remote under the home directory and builds
commits with plumbing on a temporary index, so it never needs a work tree, never
touches another environment's paths, and can replay a commit onto a moved remote.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shlex
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import git
from filelock import FileLock

from pipelines.lib.errors import OperationalFailure, RemoteRewoundError

AUTHOR_NAME = "chainops"
AUTHOR_EMAIL = "chainops@localhost"
# Every concurrent writer can push at most once per round, so a writer racing N others
# lands within N+1 attempts; 10 covers the 8-way test with room, the jitter breaks lockstep.
MAX_PUSH_ATTEMPTS = 10
RETRY_BASE_DELAY = 0.05
IMPORT_REF = "refs/chainops/import"  # scratch ref for fast-import; deleted after each batch
INCOMING_REF = "refs/chainops/incoming"  # scratch ref a fetch lands in before the rewind check
BEFORE_REWIND_REF = "refs/chainops/before-rewind"  # the tip an accepted rewind dropped
REVIEW_BRANCH_PREFIX = "chainops/"
TOKEN_ENV = "CHAINOPS_GIT_TOKEN"
USERNAME_ENV = "CHAINOPS_GIT_USERNAME"
SSH_KEY_ENV = "CHAINOPS_GIT_SSH_KEY"
DEFAULT_TOKEN_USERNAME = "x-access-token"
# A push lost to another writer (retry after a fetch) as opposed to one refused for good.
_RACE_MARKERS = (
    "non-fast-forward",
    "fetch first",
    "stale info",
    "cannot lock ref",
    "failed to update ref",
    "incorrect old value",
)
# Reads the token from the process environment when git asks; the helper text holds only
# variable names, so the token never reaches argv, .git/config or a log line.
_CREDENTIAL_HELPER = (
    '!f() { test "$1" = get || exit 0; '
    f'echo "username=${{{USERNAME_ENV}:-{DEFAULT_TOKEN_USERNAME}}}"; '
    f'echo "password=${{{TOKEN_ENV}}}"; }}; f'
)


class GitopsError(OperationalFailure):
    """The GitOps repository cannot be read or written; the message says which and why."""


def git_blob_id(data: bytes) -> str:
    """The object id git gives a blob, computed without writing it."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def repo_url(target: str) -> str:
    """Normalise a local path to an absolute path; URLs are used as they are."""
    if "://" in target or re.match(r"^[^/@:]+@[^/:]+:", target):
        return target
    return str(Path(target).expanduser().resolve())


def display_url(url: str) -> str:
    """The URL without any user:password part, for messages."""
    if "://" not in url:
        return url
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit((parts.scheme, f"***@{host}", parts.path, parts.query, parts.fragment))


def redact(text: str, environ: Mapping[str, str] | None = None) -> str:
    """Remove credentials from a message: URL user-info and the token's value."""
    environ = os.environ if environ is None else environ
    text = re.sub(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@\s]+@", r"\g<scheme>***@", text)
    token = environ.get(TOKEN_ENV)
    if token and len(token) >= 4:
        text = text.replace(token, "***")
    return text


def remote_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for git commands that talk to the remote.

    Never prompts (no terminal in CI); with CHAINOPS_GIT_TOKEN set, https pushes and
    fetches authenticate through a credential helper that reads the variable; with
    CHAINOPS_GIT_SSH_KEY set, ssh uses that key. Config goes through GIT_CONFIG_COUNT
    (git >= 2.31), which lands neither in argv nor in any config file.
    """
    environ = os.environ if environ is None else environ
    env = {"GIT_TERMINAL_PROMPT": "0", "GCM_INTERACTIVE": "never"}
    config: list[tuple[str, str]] = []
    if environ.get(TOKEN_ENV):
        config += [("credential.helper", ""), ("credential.helper", _CREDENTIAL_HELPER)]
    if environ.get(SSH_KEY_ENV):
        key_file = shlex.quote(str(Path(environ[SSH_KEY_ENV]).expanduser()))
        config.append(("core.sshCommand", f"ssh -i {key_file} -o IdentitiesOnly=yes -o BatchMode=yes"))
    if config:
        start = int(environ.get("GIT_CONFIG_COUNT", "0") or 0)
        for offset, (name, value) in enumerate(config):
            env[f"GIT_CONFIG_KEY_{start + offset}"] = name
            env[f"GIT_CONFIG_VALUE_{start + offset}"] = value
        env["GIT_CONFIG_COUNT"] = str(start + len(config))
    return env


def review_branch(environment: str) -> str:
    """The branch a pull-request environment's changes are pushed to."""
    return f"{REVIEW_BRANCH_PREFIX}{environment}"


def ensure_embedded_repository(path: Path, branch: str) -> None:
    """Create the embedded bare repository on first use."""
    if (path / "HEAD").exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    git.Repo.init(path, bare=True, initial_branch=branch).close()


SharedMerge = Callable[[bytes | None, str, bytes | None], bytes | None]


@dataclass(frozen=True)
class SharedEdit:
    """One environment's section of a file every environment shares (`.sops.yaml`).

    `merge(current file, environment, section)` returns the whole file with only this
    environment's section replaced (``section`` None: removed); None deletes the file.
    It runs on the file as it is in the commit being built, so environments published in
    one batch, or by racing writers, never overwrite each other's sections."""

    path: str
    section: bytes | None
    merge: SharedMerge


@dataclass(frozen=True)
class EnvironmentChange:
    """Replace everything under `prefixes` with `files` (repo path -> bytes), apply the
    `shared` edits, then commit."""

    environment: str
    files: Mapping[str, bytes]
    prefixes: tuple[str, ...]
    message: str
    shared: tuple[SharedEdit, ...] = ()


@dataclass
class PublishResult:
    commits: dict[str, str] = field(default_factory=dict)  # environment -> commit id
    pushed: bool = False
    attempts: int = 0
    head: str | None = None  # the target branch after publishing


@dataclass(frozen=True)
class BranchResult:
    """A review branch after publishing: `commit` is None when nothing differs from the target."""

    branch: str
    commit: str | None
    pushed: bool
    attempts: int


class GitopsRepository:
    """A remote GitOps repository seen through a bare cache clone under `home/cache`."""

    def __init__(self, url: str, branch: str, home: Path, accept_rewind: bool = False):
        self.url = repo_url(url)
        self.accept_rewind = accept_rewind  # the operator accepted a rewound remote (--accept-remote-rewind)
        self.rewound_from: str | None = None  # the tip the cache knew, when an accepted rewind dropped it
        self._rewound_to: str | None = None  # the accepted tip, adopted by adopt_rewind()
        self.branch = branch
        slug = hashlib.sha256(f"{self.url}\0{branch}".encode()).hexdigest()[:16]
        self.cache_path = home / "cache" / f"{slug}.git"
        self.lock = FileLock(str(home / "cache" / f"{slug}.lock"))
        self.tracking_ref = f"refs/remotes/origin/{branch}"
        self.shown_url = display_url(self.url)
        self._repo: git.Repo | None = None

    # -- lifecycle -------------------------------------------------------------------
    def __enter__(self) -> GitopsRepository:
        self.cache_path.parent.mkdir(parents=True, exist_ok=True)
        self.lock.acquire()
        try:
            if not (self.cache_path / "HEAD").exists():
                # No template: a cache needs neither sample hooks nor info/exclude. (GitPython
                # guards --template against caller-chosen paths; this one is empty.)
                git.Repo.init(self.cache_path, bare=True, template="", allow_unsafe_options=True).close()
            self._repo = git.Repo(self.cache_path)
            self._clear_leftovers()
        except BaseException:
            self.lock.release()
            raise
        return self

    def _clear_leftovers(self) -> None:
        """Remove what a killed run leaves in the cache: git's lock files (`index.lock`,
        `<ref>.lock`, `packed-refs.lock`), half-written packs, fast-import's marks files and
        its scratch ref (a stale one makes the next fast-import refuse to move it). Every
        writer of the cache holds `self.lock`, so none of them belongs to a live process
        (git's automatic gc after a fetch is kept in the foreground, under the lock, too)."""
        if "autodetach" not in (self.cache_path / "config").read_text().lower():
            with self.repo.config_writer() as config:
                config.set_value("gc", "autoDetach", "false")
                config.set_value("maintenance", "autoDetach", "false")
        patterns = ("index.lock", "shallow.lock", "packed-refs.lock", "chainops-marks-*", "chainops-index-*", "objects/pack/tmp_*")
        leftovers = [p for pattern in patterns for p in self.cache_path.glob(pattern)]
        leftovers += list((self.cache_path / "refs").rglob("*.lock"))
        for stale in leftovers:
            stale.unlink(missing_ok=True)
        for scratch in self.repo.git.for_each_ref("--format=%(refname)", IMPORT_REF, INCOMING_REF).split():
            self.repo.git.update_ref("-d", scratch)

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
        return self.fetch_branch(self.branch)

    def fetch_branch(self, branch: str) -> str | None:
        """Fetch `branch` into refs/remotes/origin/<branch>; None when the remote has no such branch.

        The target branch only ever moves forward (chainops pushes fast-forwards only), so
        its new tip must contain the one the cache last saw or published. It is fetched into
        a scratch ref first: a rewound or deleted branch is refused before the cache forgets
        the tip chainops knows (the repair needs it). Review branches are chainops' own and
        are rebuilt freely. A tip the cache already tracks is not fetched again (one
        ls-remote round trip for an unchanged remote)."""
        tracking = f"refs/remotes/origin/{branch}"
        known = self._ref(tracking)
        try:
            remote_refs = self.repo.git.ls_remote(self.url, f"refs/heads/{branch}", env=remote_env())
        except git.GitCommandError as exc:
            raise GitopsError(f"cannot reach GitOps repository {self.shown_url}: {_stderr(exc)}") from None
        guarded = branch == self.branch and known is not None
        remote_tip = next((line.split()[0] for line in remote_refs.splitlines() if line.endswith(f"\trefs/heads/{branch}")), None)
        if remote_tip == known:
            return known  # the cache already tracks this tip (or neither side has the branch): nothing moved
        if remote_tip is None:
            if guarded and not self.accept_rewind:
                raise self._rewound(known, None)
            if known is not None and branch == self.branch:
                self.rewound_from = self.rewound_from or known
                self.repo.git.update_ref(BEFORE_REWIND_REF, known)
                self._rewound_to = ""  # the branch is gone: adopting deletes the tracking ref
            elif known is not None:
                self.repo.git.update_ref("-d", tracking)
            return None
        try:
            self.repo.git.fetch(
                "--quiet", "--no-tags", "--no-write-fetch-head", self.url, f"+refs/heads/{branch}:{INCOMING_REF}", env=remote_env()
            )
        except git.GitCommandError as exc:
            raise GitopsError(f"cannot fetch {branch} from {self.shown_url}: {_stderr(exc)}") from None
        fetched = self.repo.git.rev_parse(INCOMING_REF)
        self.repo.git.update_ref("-d", INCOMING_REF)
        if guarded and not self.is_ancestor(known, fetched):
            if not self.accept_rewind:
                raise self._rewound(known, fetched)
            # Accepted, but remembered only once the run succeeds (adopt_rewind): a run that is
            # refused later must not make the next run forget the tip it went back from.
            self.rewound_from = self.rewound_from or known
            self.repo.git.update_ref(BEFORE_REWIND_REF, known)  # kept for a later repair
            self._rewound_to = fetched
            return fetched
        self.repo.git.update_ref(tracking, fetched)
        return fetched

    def adopt_rewind(self) -> None:
        """Make an accepted rewind the cache's new memory (at the end of a successful run)."""
        if self._rewound_to is not None:
            if self._ref(self.tracking_ref) == self.rewound_from:
                if self._rewound_to:
                    self.repo.git.update_ref(self.tracking_ref, self._rewound_to)
                else:
                    self.repo.git.update_ref("-d", self.tracking_ref)
            self._rewound_to = None

    def _ref(self, ref: str) -> str | None:
        out = self.repo.git.for_each_ref("--format=%(objectname)", ref).strip()
        return out or None

    def _rewound(self, known: str, now: str | None) -> RemoteRewoundError:
        state = f"its tip is now {now[:12]}, which does not contain" if now else "the branch is gone; it held"
        return RemoteRewoundError(
            f"GitOps branch {self.branch} of {self.shown_url} was rewound: {state} {known[:12]}, the tip chainops last "
            f"published or saw from this home. Every environment published since would look new and get new keys. "
            f"Nothing was written. If the rewind was a mistake (a force push, a restored backup), restore the branch "
            f"from chainops' cache: `git --git-dir {self.cache_path} push {self.shown_url} {known}:refs/heads/{self.branch}`. "
            f"If the remote's history is intended, re-run with --accept-remote-rewind (environments whose lock the "
            f"rewind changed then each need --allow-genesis-change ENV)"
        )

    def has_commit(self, commit: str) -> bool:
        """Whether the cache holds `commit` (a full object id)."""
        try:
            return self.repo.git.cat_file("-t", commit) == "commit"
        except git.GitCommandError:
            return False

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
    def differs(self, base: str | None, change: EnvironmentChange) -> bool:
        """Whether `change` would alter the tree at `base` (blob ids compared, never mtimes)."""
        current, wanted, _ = self._effective(base, change)
        return current != wanted

    def _effective(self, base: str | None, change: EnvironmentChange) -> tuple[dict[str, str], dict[str, str], dict[str, bytes]]:
        """(blob ids now, blob ids wanted, bytes wanted) of every path `change` touches at `base`."""
        shared = tuple(edit.path for edit in change.shared)
        current = self.tree_entries(base, change.prefixes + shared)
        files = dict(change.files)
        shared_now = self.read_files(base, shared) if shared else {}
        for edit in change.shared:
            after = edit.merge(shared_now.get(edit.path), change.environment, edit.section)
            files.pop(edit.path, None)
            if after is not None:
                files[edit.path] = after
        return current, {path: git_blob_id(data) for path, data in files.items()}, files

    def preview(self, base: str | None, change: EnvironmentChange) -> tuple[dict[str, bytes], dict[str, bytes]]:
        """(files now, files after) of every path `change` would touch at `base`: what its
        commit would change, without building it (`chainops diff`)."""
        _, _, after = self._effective(base, change)
        before = self.read_files(base, change.prefixes + tuple(edit.path for edit in change.shared))
        return before, after

    def _commit_change(self, base: str | None, change: EnvironmentChange) -> str | None:
        """Build the commit for one environment on top of `base`; None when the tree is unchanged."""
        _, commits = self._commit_changes(base, [change])
        return commits.get(change.environment)

    def _commit_changes(
        self, base: str | None, changes: Sequence[EnvironmentChange]
    ) -> tuple[str | None, dict[str, str]]:
        """Chain one commit per changed environment on top of `base` with a single
        `git fast-import` (one process and one pack for the whole batch, however many
        environments). Unchanged environments (same blob ids) get no commit. Shared files
        are merged section by section on the state each commit is built on."""
        prefixes = tuple(sorted({p for change in changes for p in change.prefixes}))
        state = group_by_prefix(self.tree_entries(base, prefixes) if prefixes else {}, prefixes)
        shared_paths = tuple(sorted({edit.path for change in changes for edit in change.shared}))
        shared_now: dict[str, bytes | None] = dict(self.read_files(base, shared_paths)) if shared_paths else {}
        planned: list[tuple[EnvironmentChange, dict[str, str], dict[str, str], dict[str, bytes]]] = []
        for change in changes:
            current = {p: sha for prefix in change.prefixes for p, sha in state.get(prefix, {}).items()}
            wanted = {path: git_blob_id(data) for path, data in change.files.items()}
            files = dict(change.files)
            merged: dict[str, bytes | None] = {}
            for edit in change.shared:
                before = shared_now.get(edit.path)
                after = edit.merge(before, change.environment, edit.section)
                merged[edit.path] = after
                if before is not None:
                    current[edit.path] = git_blob_id(before)
                if after is not None:
                    wanted[edit.path] = git_blob_id(after)
                    files[edit.path] = after
            if current == wanted:
                continue
            planned.append((change, current, wanted, files))
            shared_now.update(merged)
            for prefix in change.prefixes:
                state[prefix] = {}
            for prefix, entries in group_by_prefix(wanted, change.prefixes).items():
                state[prefix] = entries
        if not planned:
            return base, {}
        marked = [change.environment for change, _, _, _ in planned]
        with tempfile.NamedTemporaryFile(dir=self.cache_path, prefix="chainops-marks-") as marks:
            self._fast_import(_import_stream(planned, base), marks.name)
            ids = dict(line.split() for line in Path(marks.name).read_text().splitlines())
        self.repo.git.update_ref("-d", IMPORT_REF)
        commits = {env: ids[f":{i}"] for i, env in enumerate(marked, start=1)}
        return commits[marked[-1]], commits

    def _fast_import(self, chunks: Iterator[bytes], marks: str) -> None:
        """Stream the import to `git fast-import` chunk by chunk: a run never holds a second
        copy of every file it publishes."""
        with tempfile.TemporaryFile() as errors:
            proc = subprocess.Popen(
                ["git", "--git-dir", str(self.cache_path), "fast-import", "--quiet", "--done", f"--export-marks={marks}"],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=errors,
            )
            assert proc.stdin is not None
            try:
                for chunk in chunks:
                    proc.stdin.write(chunk)
                proc.stdin.write(b"done\n")
            except BrokenPipeError:
                pass  # fast-import stopped early; its exit status and stderr say why
            finally:
                proc.stdin.close()
            if proc.wait() != 0:
                errors.seek(0)
                raise GitopsError(f"git fast-import failed: {errors.read().decode(errors='replace').strip()}")

    def _push(self, refspec: str, *options: str) -> bool:
        """Push one refspec; False when another writer got there first (retry after a fetch)."""
        try:
            self.repo.git.push("--quiet", *options, self.url, refspec, env=remote_env())
        except git.GitCommandError as exc:
            if any(marker in _stderr(exc) for marker in _RACE_MARKERS):
                return False
            raise GitopsError(
                f"cannot push to {self.shown_url}: {_stderr(exc)}; nothing was published, "
                "the local cache is unchanged and the next run publishes everything again"
            ) from None
        return True

    def publish(self, changes: list[EnvironmentChange], base: str | None) -> PublishResult:
        """Commit each change on top of the previous one and push; on a rejected push,
        fetch and replay the same changes onto the new remote head (bounded retries).

        The tracking ref moves only after a push succeeds, so a failure leaves the cache as
        it was: the next run fetches and rebuilds the same commits."""
        result = PublishResult(head=base)
        compiled_on = base
        for attempt in range(1, MAX_PUSH_ATTEMPTS + 1):
            result.attempts = attempt
            if base != compiled_on:
                self._refuse_stale_replay(compiled_on, base, changes)
            head, commits = self._commit_changes(base, changes)
            if not commits:
                result.head = base
                self.adopt_rewind()
                return result
            if not self._push(f"{head}:refs/heads/{self.branch}"):
                _backoff(attempt)
                base = self.fetch()
                continue
            self.repo.git.update_ref(self.tracking_ref, head)
            result.commits = commits
            result.pushed = True
            result.head = head
            return result
        raise GitopsError(
            f"push to {self.shown_url} was rejected {MAX_PUSH_ATTEMPTS} times; another writer keeps moving {self.branch}"
        )

    def _refuse_stale_replay(self, compiled_on: str | None, base: str | None, changes: Sequence[EnvironmentChange]) -> None:
        """A change was compiled from the files at `compiled_on`. When another writer changed
        them since (to something else than this change), replaying it would silently replace
        that writer's work: its keys, its genesis. Stop instead; the next run compiles on top."""
        prefixes = tuple(sorted({p for change in changes for p in change.prefixes}))
        then = group_by_prefix(self.tree_entries(compiled_on, prefixes), prefixes)
        now = group_by_prefix(self.tree_entries(base, prefixes), prefixes)
        stale = []
        for change in changes:
            wanted = group_by_prefix({p: git_blob_id(d) for p, d in change.files.items()}, change.prefixes)
            if any(now[p] != then[p] and now[p] != wanted[p] for p in change.prefixes):
                stale.append(change.environment)
        if stale:
            raise GitopsError(
                f"{', '.join(stale)}: changed by another writer in {self.shown_url} while this run compiled "
                "(replaying would replace its keys or genesis); nothing was published, run again to compile on top of it"
            )

    def _branch_is_current(self, head: str, base: str | None, change: EnvironmentChange) -> bool:
        """True when the review branch already is one chainops commit holding exactly `change`
        on top of a commit the target branch still contains (so it merges cleanly)."""
        parents = self.parents(head)
        if len(parents) != 1 or base is None:
            return False
        if not self.is_ancestor(parents[0], base):
            return False
        _, wanted, _ = self._effective(base, change)
        return self.tree_entries(head, change.prefixes + tuple(e.path for e in change.shared)) == wanted

    def parents(self, commit: str) -> list[str]:
        return self.repo.git.rev_list("--parents", "-n", "1", commit).split()[1:]

    def is_ancestor(self, commit: str, of: str) -> bool:
        """True when `commit` is `of` or one of its ancestors."""
        if commit == of:
            return True
        try:
            self.repo.git.merge_base("--is-ancestor", commit, of)
        except git.GitCommandError:
            return False
        return True

    def pending_review(self, environment: str, base: str | None, prefixes: tuple[str, ...]) -> str | None:
        """The head of `chainops/<env>` when it holds a pending change on top of the target's
        current state of these paths (so the next compile starts from it), else None."""
        if base is None:
            return None
        head = self.fetch_branch(review_branch(environment))
        if head is None:
            return None
        parents = self.parents(head)
        if len(parents) != 1 or not self.is_ancestor(parents[0], base):
            return None
        if self.tree_entries(parents[0], prefixes) != self.tree_entries(base, prefixes):
            return None  # the target moved for this environment since: start from the target
        return head

    def publish_review_branch(self, change: EnvironmentChange, base: str | None) -> BranchResult:
        """Push `change` as one commit on top of the target branch to `chainops/<env>`.

        The branch belongs to chainops: it is rebuilt from the target when it is stale and
        force-pushed with a lease, so a concurrent writer is detected, never overwritten
        blindly. A branch that already holds exactly this change is left alone (no commit)."""
        branch = review_branch(change.environment)
        for attempt in range(1, MAX_PUSH_ATTEMPTS + 1):
            if attempt > 1:
                base = self.fetch()
            head = self.fetch_branch(branch)
            if not self.differs(base, change):
                return BranchResult(branch, None, False, attempt)
            if head is not None and self._branch_is_current(head, base, change):
                return BranchResult(branch, head, False, attempt)
            commit = self._commit_change(base, change)
            if commit is None:  # pragma: no cover - differs() said otherwise
                raise GitopsError(f"{branch}: nothing to commit")
            lease = f"--force-with-lease=refs/heads/{branch}:{head or ''}"
            if not self._push(f"{commit}:refs/heads/{branch}", lease):  # no "+": it would override the lease
                _backoff(attempt)
                continue
            self.repo.git.update_ref(f"refs/remotes/origin/{branch}", commit)
            return BranchResult(branch, commit, True, attempt)
        raise GitopsError(f"push of {branch} to {self.shown_url} was rejected {MAX_PUSH_ATTEMPTS} times")


def _import_stream(
    planned: Sequence[tuple[EnvironmentChange, dict[str, str], dict[str, str], dict[str, bytes]]], base: str | None
) -> Iterator[bytes]:
    """fast-import commands: one commit per planned change, each on top of the previous."""
    when = f"{int(time.time())} +0000".encode()
    for mark, (change, current, wanted, files) in enumerate(planned, start=1):
        message = change.message.encode()
        head = b"commit %s\nmark :%d\n" % (IMPORT_REF.encode(), mark)
        for role in (b"author", b"committer"):
            head += b"%s %s <%s> %s\n" % (role, AUTHOR_NAME.encode(), AUTHOR_EMAIL.encode(), when)
        head += b"data %d\n%s\n" % (len(message), message)
        if mark > 1:
            head += b"from :%d\n" % (mark - 1)
        elif base is not None:
            head += b"from %s\n" % base.encode()
        for path in sorted(set(current) - set(wanted)):
            head += b"D %s\n" % _quote_path(path)
        yield head
        for path, data in sorted(files.items()):
            if current.get(path) != wanted[path]:
                yield b"M 100644 inline %s\ndata %d\n" % (_quote_path(path), len(data))
                yield data + b"\n"


def group_by_prefix(entries: Mapping[str, str], prefixes: Sequence[str]) -> dict[str, dict[str, str]]:
    """Split path -> blob id entries by the prefix (a file, or a directory) each lies under,
    in one pass over the entries (thousands of environments share one tree)."""
    wanted = set(prefixes)
    grouped: dict[str, dict[str, str]] = {prefix: {} for prefix in prefixes}
    for path, sha in entries.items():
        parts = path.split("/")
        for depth in range(1, len(parts) + 1):
            candidate = "/".join(parts[:depth])
            if candidate in wanted:
                grouped[candidate][path] = sha
                break
    return grouped


def _quote_path(path: str) -> bytes:
    """fast-import path syntax: C-style quoting when the path needs it."""
    if any(c in path for c in '"\\\n') or path.startswith('"'):
        return json.dumps(path).encode()
    return path.encode()


def _backoff(attempt: int) -> None:
    """Jittered pause so racing writers stop retrying in lockstep."""
    time.sleep(random.uniform(0, RETRY_BASE_DELAY * (2 ** min(attempt, 5))))


def _stderr(exc: git.GitCommandError) -> str:
    text = (exc.stderr or str(exc)).strip().replace("\n", " ")
    return redact(text.removeprefix("stderr: ").strip("' "))

