"""A local forge API on 127.0.0.1 speaking the documented REST endpoints chainops uses.

GitHub (REST v3, under /api/v3 as on GitHub Enterprise):
  GET   /repos/{owner}/{repo}/pulls?state=&head=owner:branch&base=   list pull requests
  POST  /repos/{owner}/{repo}/pulls  {title, head, base, body}       create (201; 422 when one exists,
                                                                      the head branch is missing, or has no commits)
  PATCH /repos/{owner}/{repo}/pulls/{number}  {title, body}          update
GitLab (REST v4, under /api/v4):
  GET  /projects/{id or url-encoded path}/merge_requests?state=opened&source_branch=&target_branch=
  POST /projects/{id}/merge_requests  {source_branch, target_branch, title, description}  (201; 409 when one exists)
  PUT  /projects/{id}/merge_requests/{iid}  {title, description}

Authentication as documented: GitHub `Authorization: token|Bearer <token>`, GitLab
`PRIVATE-TOKEN: <token>`; 401 otherwise. When given the bare Git repository behind the
project, the server checks branches the way the real forges do (a pull request needs a
pushed head branch with commits the base does not have).
"""

from __future__ import annotations

import json
import subprocess
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    body: dict[str, Any] | None


@dataclass
class ForgeState:
    token: str
    project: str  # owner/name or group/project
    git_dir: Path | None = None
    project_id: int = 42
    pulls: list[dict[str, Any]] = field(default_factory=list)
    requests: list[Recorded] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def branch_exists(self, branch: str) -> bool:
        if self.git_dir is None:
            return True
        proc = subprocess.run(
            ["git", "--git-dir", str(self.git_dir), "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}"],
            capture_output=True,
        )
        return proc.returncode == 0

    def commits_ahead(self, base: str, head: str) -> int:
        if self.git_dir is None:
            return 1
        out = subprocess.run(
            ["git", "--git-dir", str(self.git_dir), "rev-list", "--count", f"refs/heads/{base}..refs/heads/{head}"],
            capture_output=True, text=True, check=True,
        ).stdout
        return int(out.strip())

    def writes(self) -> list[Recorded]:
        return [r for r in self.requests if r.method in {"POST", "PATCH", "PUT"}]


class ForgeServer:
    """Serves both APIs on one loopback port; `state` holds what a test asserts on."""

    def __init__(self, state: ForgeState):
        self.state = state
        handler = type("Handler", (_Handler,), {"state": state})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> ForgeServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


class _Handler(BaseHTTPRequestHandler):
    state: ForgeState

    def log_message(self, *args: object) -> None:  # keep test output clean
        return

    # -- plumbing ------------------------------------------------------------------
    def _send(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> dict[str, Any] | None:
        length = int(self.headers.get("Content-Length") or 0)
        if not length:
            return None
        raw = self.rfile.read(length)
        ctype = self.headers.get("Content-Type", "")
        if "json" in ctype:
            return json.loads(raw)
        return {k: v[0] for k, v in parse_qs(raw.decode()).items()}

    def _dispatch(self) -> None:
        split = urlsplit(self.path)
        segments = split.path.strip("/").split("/")
        query = {k: v[0] for k, v in parse_qs(split.query).items()}
        body = self._body()
        with self.state.lock:
            self.state.requests.append(Recorded(self.command, split.path, query, body))
            if segments[:2] == ["api", "v3"]:
                self._github(segments[2:], query, body)
            elif segments[:2] == ["api", "v4"]:
                self._gitlab(segments[2:], query, body)
            else:
                self._send(404, {"message": "Not Found"})

    do_GET = do_POST = do_PATCH = do_PUT = _dispatch

    # -- GitHub --------------------------------------------------------------------
    def _github(self, segments: list[str], query: dict[str, str], body: dict[str, Any] | None) -> None:
        auth = self.headers.get("Authorization", "")
        if auth not in {f"token {self.state.token}", f"Bearer {self.state.token}"}:
            self._send(401, {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"})
            return
        if len(segments) < 4 or segments[0] != "repos" or "/".join(segments[1:3]) != self.state.project or segments[3] != "pulls":
            self._send(404, {"message": "Not Found"})
            return
        owner = segments[1]
        api = f"{self.server_url}/api/v3/repos/{self.state.project}/pulls"
        if len(segments) == 4 and self.command == "GET":
            found = [
                p for p in self.state.pulls
                if (query.get("state", "open") in ("all", p["state"]))
                and ("head" not in query or query["head"] == p["head"]["label"])
                and ("base" not in query or query["base"] == p["base"]["ref"])
            ]
            self._send(200, found)
        elif len(segments) == 4 and self.command == "POST":
            body = body or {}
            missing = [k for k in ("head", "base") if not body.get(k)]
            if missing:
                self._send(422, {"message": "Validation Failed", "errors": [{"resource": "PullRequest", "field": k, "code": "missing_field"} for k in missing]})
                return
            head, base = body["head"].split(":")[-1], body["base"]
            if not self.state.branch_exists(head) or not self.state.branch_exists(base):
                self._send(422, {"message": "Validation Failed", "errors": [{"resource": "PullRequest", "field": "head", "code": "invalid"}]})
                return
            if any(p["state"] == "open" and p["head"]["ref"] == head and p["base"]["ref"] == base for p in self.state.pulls):
                self._send(422, {"message": "Validation Failed", "errors": [{"resource": "PullRequest", "code": "custom", "message": f"A pull request already exists for {owner}:{head}."}]})
                return
            if self.state.commits_ahead(base, head) == 0:
                self._send(422, {"message": "Validation Failed", "errors": [{"resource": "PullRequest", "code": "custom", "message": f"No commits between {base} and {head}"}]})
                return
            number = len(self.state.pulls) + 1
            pull = {
                "id": 1000 + number,
                "number": number,
                "state": "open",
                "title": body.get("title", ""),
                "body": body.get("body"),
                "url": f"{api}/{number}",
                "html_url": f"{self.server_url}/{self.state.project}/pull/{number}",
                "head": {"ref": head, "label": f"{owner}:{head}", "sha": "0" * 40},
                "base": {"ref": base, "label": f"{owner}:{base}", "sha": "0" * 40},
                "user": {"login": "chainops"},
            }
            self.state.pulls.append(pull)
            self._send(201, pull)
        elif len(segments) == 5 and self.command == "PATCH" and segments[4].isdigit():
            matches = [p for p in self.state.pulls if p["number"] == int(segments[4])]
            if not matches:
                self._send(404, {"message": "Not Found"})
                return
            pull = matches[0]
            for key in ("title", "body", "state", "base"):
                if body and key in body:
                    pull[key] = body[key] if key != "base" else {**pull["base"], "ref": body[key]}
            self._send(200, pull)
        else:
            self._send(404, {"message": "Not Found"})

    # -- GitLab --------------------------------------------------------------------
    def _gitlab(self, segments: list[str], query: dict[str, str], body: dict[str, Any] | None) -> None:
        if self.headers.get("PRIVATE-TOKEN") != self.state.token:
            self._send(401, {"message": "401 Unauthorized"})
            return
        if len(segments) < 3 or segments[0] != "projects" or segments[2] != "merge_requests":
            self._send(404, {"message": "404 Not Found"})
            return
        if unquote(segments[1]) not in {self.state.project, str(self.state.project_id)}:
            self._send(404, {"message": "404 Project Not Found"})
            return
        if len(segments) == 3 and self.command == "GET":
            found = [
                m for m in self.state.pulls
                if query.get("state", "all") in ("all", m["state"])
                and query.get("source_branch", m["source_branch"]) == m["source_branch"]
                and query.get("target_branch", m["target_branch"]) == m["target_branch"]
            ]
            self._send(200, found)
        elif len(segments) == 3 and self.command == "POST":
            body = body or {}
            missing = [k for k in ("source_branch", "target_branch", "title") if not body.get(k)]
            if missing:
                self._send(400, {"error": f"{', '.join(missing)} is missing"})
                return
            source, target = body["source_branch"], body["target_branch"]
            if not self.state.branch_exists(source):
                self._send(422, {"message": ["Source branch does not exist"]})
                return
            existing = [m for m in self.state.pulls if m["state"] == "opened" and m["source_branch"] == source and m["target_branch"] == target]
            if existing:
                self._send(409, {"message": [f"Another open merge request already exists for this source branch: !{existing[0]['iid']}"]})
                return
            iid = len(self.state.pulls) + 1
            request = {
                "id": 5000 + iid,
                "iid": iid,
                "project_id": self.state.project_id,
                "state": "opened",
                "title": body["title"],
                "description": body.get("description"),
                "source_branch": source,
                "target_branch": target,
                "web_url": f"{self.server_url}/{self.state.project}/-/merge_requests/{iid}",
            }
            self.state.pulls.append(request)
            self._send(201, request)
        elif len(segments) == 4 and self.command == "PUT" and segments[3].isdigit():
            matches = [m for m in self.state.pulls if m["iid"] == int(segments[3])]
            if not matches:
                self._send(404, {"message": "404 Not found"})
                return
            for key in ("title", "description", "target_branch"):
                if body and key in body:
                    matches[0][key] = body[key]
            self._send(200, matches[0])
        else:
            self._send(404, {"message": "404 Not Found"})

    @property
    def server_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"
