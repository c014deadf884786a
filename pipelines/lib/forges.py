"""Pull requests (GitHub) and merge requests (GitLab) for the `pull-request` review mode.

chainops pushes an environment's change to the branch `chainops/<env>` and keeps exactly
one open request from that branch to the target branch: opened on the first run, its
title and body (the review summary) updated on later runs. Clients are PyGithub and
python-gitlab pointed at the forge's API base URL, so GitHub Enterprise, a self-hosted
GitLab and a local test server all work.

Configuration (environment variables, like the rest of chainops' settings):
- CHAINOPS_FORGE: github | gitlab (inferred for github.com / gitlab.com remotes)
- CHAINOPS_FORGE_URL: API base URL (GitHub: https://api.github.com or
  https://HOST/api/v3; GitLab: the instance URL, e.g. https://gitlab.example.com)
- CHAINOPS_FORGE_REPO: owner/name (GitHub) or group/project path or numeric id (GitLab);
  inferred from an https or ssh remote URL
- CHAINOPS_FORGE_TOKEN: API token (falls back to CHAINOPS_GIT_TOKEN)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from pipelines.lib.errors import OperationalFailure

if TYPE_CHECKING:  # the clients load on first use: direct-mode runs never pay their import time
    from github import GithubException

ForgeKind = Literal["github", "gitlab"]
FORGE_KINDS: tuple[ForgeKind, ...] = ("github", "gitlab")
KIND_ENV = "CHAINOPS_FORGE"
URL_ENV = "CHAINOPS_FORGE_URL"
REPO_ENV = "CHAINOPS_FORGE_REPO"
TOKEN_ENV = "CHAINOPS_FORGE_TOKEN"
FALLBACK_TOKEN_ENV = "CHAINOPS_GIT_TOKEN"
DEFAULT_API_URLS: dict[ForgeKind, str] = {"github": "https://api.github.com", "gitlab": "https://gitlab.com"}
PUBLIC_HOSTS: dict[str, ForgeKind] = {"github.com": "github", "gitlab.com": "gitlab"}
# GitHub caps a pull request body at 65536 characters; GitLab a description at 1 MB.
BODY_LIMITS: dict[ForgeKind, int] = {"github": 65_536, "gitlab": 1_000_000}
TIMEOUT_SECONDS = 30


class ForgeError(OperationalFailure):
    """The forge API refused or could not be reached; the message names the call and the reason."""


@dataclass(frozen=True)
class ReviewRequest:
    """An open pull/merge request and what this run did to it."""

    number: int
    url: str
    action: Literal["opened", "updated", "unchanged"]


class Forge(Protocol):
    kind: ForgeKind

    def open_or_update(self, source_branch: str, target_branch: str, title: str, body: str) -> ReviewRequest:
        """Ensure exactly one open request from source to target with this title and body."""
        ...


@dataclass(frozen=True)
class ForgeSettings:
    kind: ForgeKind
    api_url: str
    project: str
    token: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str], repo_url: str | None = None) -> ForgeSettings | None:
        """Read CHAINOPS_FORGE* (inferring kind and project from the remote URL where it can);
        None when no forge is configured or inferable."""
        inferred_kind, inferred_project = infer_from_remote(repo_url or "")
        raw_kind = environ.get(KIND_ENV, "").strip().lower() or inferred_kind
        if not raw_kind:
            return None
        if raw_kind not in FORGE_KINDS:
            raise ForgeError(f"{KIND_ENV}={raw_kind!r} is not a forge chainops knows; allowed: {', '.join(FORGE_KINDS)}")
        kind: ForgeKind = "github" if raw_kind == "github" else "gitlab"
        project = environ.get(REPO_ENV, "").strip() or (inferred_project if inferred_kind == kind else "")
        if not project:
            raise ForgeError(
                f"{KIND_ENV}={kind} needs {REPO_ENV} (owner/name on GitHub, group/project on GitLab); "
                "it cannot be inferred from the GitOps repository URL"
            )
        if kind == "github" and not re.fullmatch(r"[^/\s]+/[^/\s]+", project):
            raise ForgeError(f"{REPO_ENV}={project!r}: a GitHub repository is owner/name")
        api_url = (environ.get(URL_ENV, "").strip() or DEFAULT_API_URLS[kind]).rstrip("/")
        if not api_url.startswith(("https://", "http://")):
            raise ForgeError(f"{URL_ENV}={api_url!r}: the forge API URL must start with https:// (or http://)")
        token = environ.get(TOKEN_ENV) or environ.get(FALLBACK_TOKEN_ENV) or None
        return cls(kind=kind, api_url=api_url, project=project, token=token)

    def __repr__(self) -> str:  # never show the token
        return f"ForgeSettings(kind={self.kind!r}, api_url={self.api_url!r}, project={self.project!r})"


def infer_from_remote(url: str) -> tuple[str, str]:
    """(kind, project) for a github.com / gitlab.com remote in https or ssh form, else ("", "")."""
    match = re.match(r"^(?:[a-z+]+://)?(?:[^@/]+@)?(?P<host>[^/:]+)(?::\d+)?[:/](?P<path>.+?)(?:\.git)?/?$", url)
    if not match or url.startswith(("/", "file://")):
        return "", ""
    host = match.group("host").lower()
    kind = PUBLIC_HOSTS.get(host, "")
    return (kind, match.group("path")) if kind else ("", "")


def forge_for(settings: ForgeSettings, throttle: bool = True) -> Forge:
    """The API client for `settings`. `throttle` keeps PyGithub's pauses between calls
    (GitHub asks integrations to space out writes); tests against a local server turn it off."""
    if not settings.token:
        raise ForgeError(f"the {settings.kind} API needs a token: set {TOKEN_ENV} (or {FALLBACK_TOKEN_ENV})")
    if settings.kind == "github":
        return GitHubForge(settings, throttle)
    return GitLabForge(settings)


def fit_body(body: str, limit: int, hint: str) -> str:
    """Cut a body that exceeds the forge's limit at a line boundary and say where the rest is."""
    if len(body) <= limit:
        return body
    note = f"\n\n… summary truncated to fit; {hint}\n"
    cut = body[: limit - len(note)]
    return cut[: cut.rfind("\n") + 1 or len(cut)] + note


class GitHubForge:
    """Pull requests through GitHub's REST API (`/repos/{owner}/{repo}/pulls`)."""

    kind: ForgeKind = "github"

    def __init__(self, settings: ForgeSettings, throttle: bool = True):
        import github

        self.settings = settings
        self.owner = settings.project.split("/", 1)[0]
        pauses = {} if throttle else {"seconds_between_requests": None, "seconds_between_writes": None}
        self._client = github.Github(
            base_url=settings.api_url,
            auth=github.Auth.Token(settings.token or ""),
            timeout=TIMEOUT_SECONDS,
            retry=3,
            user_agent="chainops",
            lazy=True,  # no request until a pull request is looked up
            **pauses,
        )
        self._repo = self._client.get_repo(settings.project)

    def _find(self, source_branch: str, target_branch: str):  # -> PullRequest | None
        pulls = self._repo.get_pulls(state="open", head=f"{self.owner}:{source_branch}", base=target_branch)
        for pull in pulls:
            if pull.head.ref == source_branch and pull.base.ref == target_branch:
                return pull
        return None

    def open_or_update(self, source_branch: str, target_branch: str, title: str, body: str) -> ReviewRequest:
        from github import GithubException

        body = fit_body(body, BODY_LIMITS["github"], f"run `chainops diff` for the whole of {source_branch}")
        try:
            pull = self._find(source_branch, target_branch)
            if pull is None:
                try:
                    pull = self._repo.create_pull(base=target_branch, head=source_branch, title=title, body=body)
                    return ReviewRequest(pull.number, pull.html_url, "opened")
                except GithubException as exc:
                    # 422 "A pull request already exists": another run opened it meanwhile.
                    pull = self._find(source_branch, target_branch) if exc.status == 422 else None
                    if pull is None:
                        raise
            if pull.title == title and (pull.body or "") == body:
                return ReviewRequest(pull.number, pull.html_url, "unchanged")
            pull.edit(title=title, body=body)
            return ReviewRequest(pull.number, pull.html_url, "updated")
        except GithubException as exc:
            raise ForgeError(
                f"GitHub API {self.settings.api_url} ({self.settings.project}): HTTP {exc.status}: {_github_message(exc)}"
            ) from None
        except OSError as exc:
            raise ForgeError(f"GitHub API {self.settings.api_url} is unreachable: {exc}") from None


class GitLabForge:
    """Merge requests through GitLab's REST API (`/projects/:id/merge_requests`)."""

    kind: ForgeKind = "gitlab"

    def __init__(self, settings: ForgeSettings):
        import gitlab

        self.settings = settings
        self._client = gitlab.Gitlab(
            settings.api_url,
            private_token=settings.token,
            timeout=TIMEOUT_SECONDS,
            retry_transient_errors=True,
            user_agent="chainops",
        )
        project_id: int | str = int(settings.project) if settings.project.isdigit() else settings.project
        self._project = self._client.projects.get(project_id, lazy=True)

    def _find(self, source_branch: str, target_branch: str):  # -> ProjectMergeRequest | None
        for request in self._project.mergerequests.list(
            source_branch=source_branch, target_branch=target_branch, state="opened", get_all=True
        ):
            if request.source_branch == source_branch and request.target_branch == target_branch:
                return request
        return None

    def open_or_update(self, source_branch: str, target_branch: str, title: str, body: str) -> ReviewRequest:
        from gitlab.exceptions import GitlabError

        body = fit_body(body, BODY_LIMITS["gitlab"], f"run `chainops diff` for the whole of {source_branch}")
        try:
            request = self._find(source_branch, target_branch)
            if request is None:
                try:
                    request = self._project.mergerequests.create(
                        {"source_branch": source_branch, "target_branch": target_branch, "title": title, "description": body}
                    )
                    return ReviewRequest(request.iid, request.web_url, "opened")
                except GitlabError as exc:
                    # 409 "Another open merge request already exists for this source branch".
                    request = self._find(source_branch, target_branch) if exc.response_code == 409 else None
                    if request is None:
                        raise
            if request.title == title and (request.description or "") == body:
                return ReviewRequest(request.iid, request.web_url, "unchanged")
            request.title = title
            request.description = body
            request.save()
            return ReviewRequest(request.iid, request.web_url, "updated")
        except GitlabError as exc:
            raise ForgeError(
                f"GitLab API {self.settings.api_url} ({self.settings.project}): HTTP {exc.response_code}: {exc.error_message}"
            ) from None
        except OSError as exc:
            raise ForgeError(f"GitLab API {self.settings.api_url} is unreachable: {exc}") from None


def _github_message(exc: GithubException) -> str:
    data = exc.data if isinstance(exc.data, dict) else {}
    message = str(data.get("message") or exc)
    details = [str(e.get("message") or e.get("code")) for e in data.get("errors", []) if isinstance(e, dict)]
    return message + (f" ({'; '.join(details)})" if details else "")
