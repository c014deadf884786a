"""Read-only JSON-RPC to a node of a live chain (`network.rpcUrl`).

chainops asks a node three questions, never anything that changes state: which chain it
follows (`eth_chainId`), its head (`eth_blockNumber`) and whether an address holds code
(`eth_getCode`). Requests go through urllib with a 5 s timeout and no redirects (a
redirect would carry the Authorization header to another host). User name and password
in the URL are sent as HTTP basic auth and never printed: messages name the endpoint
as scheme://host:port only (config.shown_url), since paths and queries hold API keys.
"""

from __future__ import annotations

import base64
import http.client
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from pipelines.lib.config import shown_url
from pipelines.lib.errors import OperationalFailure

TIMEOUT_SECONDS = 5.0
MAX_RESPONSE_BYTES = 1 << 20


class ChainRpcError(OperationalFailure):
    """The node did not answer, or not with a JSON-RPC result (exit 2)."""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        return None  # urllib then raises HTTPError with the 3xx code


_OPENER = urllib.request.build_opener(_NoRedirect)


@dataclass(frozen=True)
class ChainState:
    chain_id: int
    head: int


def _request(url: str, body: bytes) -> urllib.request.Request:
    parts = urlsplit(url)
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, netloc = netloc.rsplit("@", 1)
        user, _, password = userinfo.partition(":")
        token = base64.b64encode(f"{unquote(user)}:{unquote(password)}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    plain = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
    return urllib.request.Request(plain, data=body, headers=headers, method="POST")


def call(url: str, method: str, params: list[Any] | None = None) -> Any:
    """The `result` of one JSON-RPC call; ChainRpcError naming the endpoint (without secrets)."""
    where = shown_url(url)
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}).encode()
    try:
        with _OPENER.open(_request(url, body), timeout=TIMEOUT_SECONDS) as response:
            raw = response.read(MAX_RESPONSE_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise ChainRpcError(f"{where} answered {method} with HTTP {exc.code}") from None
    except urllib.error.URLError as exc:
        raise ChainRpcError(f"{where} did not answer {method}: {_reason(exc.reason)}") from None
    except (OSError, http.client.HTTPException, ValueError) as exc:  # timeouts, resets, bad status lines
        raise ChainRpcError(f"{where} did not answer {method}: {_reason(exc)}") from None
    if len(raw) > MAX_RESPONSE_BYTES:
        raise ChainRpcError(f"{where}: the answer to {method} is larger than {MAX_RESPONSE_BYTES} bytes")
    try:
        answer = json.loads(raw)
    except ValueError:
        raise ChainRpcError(f"{where}: the answer to {method} is not JSON (is this a node's JSON-RPC port?)") from None
    if not isinstance(answer, dict):
        raise ChainRpcError(f"{where}: the answer to {method} is not a JSON-RPC response")
    if answer.get("error") is not None:
        error = answer["error"]
        message = error.get("message") if isinstance(error, dict) else error
        raise ChainRpcError(f"{where} refused {method}: {str(message)[:200]!r}")
    if "result" not in answer:
        raise ChainRpcError(f"{where}: the answer to {method} has no result")
    return answer["result"]


def _reason(reason: object) -> str:
    text = str(reason) or type(reason).__name__
    return "timed out" if isinstance(reason, TimeoutError) or "timed out" in text else text[:200]


def quantity(value: Any, where: str, method: str) -> int:
    """A JSON-RPC QUANTITY: 0x-prefixed hex."""
    if not isinstance(value, str) or not value.startswith("0x") or len(value) > 66:
        raise ChainRpcError(f"{where}: {method} returned {str(value)[:80]!r}, not a hex quantity")
    try:
        return int(value[2:], 16)
    except ValueError:
        raise ChainRpcError(f"{where}: {method} returned {value[:80]!r}, not a hex quantity") from None


def chain_state(url: str) -> ChainState:
    """The chain id the node follows and its head block number."""
    where = shown_url(url)
    chain_id = quantity(call(url, "eth_chainId"), where, "eth_chainId")
    head = quantity(call(url, "eth_blockNumber"), where, "eth_blockNumber")
    return ChainState(chain_id, head)


def code_at(url: str, address: str) -> bytes:
    """The code at `address` in the node's latest state (b"" for no contract)."""
    value = call(url, "eth_getCode", [address, "latest"])
    if not isinstance(value, str) or not value.startswith("0x") or len(value) % 2:
        raise ChainRpcError(f"{shown_url(url)}: eth_getCode returned {str(value)[:80]!r}, not hex data")
    try:
        return bytes.fromhex(value[2:])
    except ValueError:
        raise ChainRpcError(f"{shown_url(url)}: eth_getCode returned {value[:80]!r}, not hex data") from None
