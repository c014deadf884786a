"""enode URLs of nodes outside the cluster (`network.externalPeers`), checked exactly.

`enode://<node id>@<host>:<port>[?discport=<udp port>]` (devp2p's node URL, as geth's
p2p/enode/urlv4.go and Besu's EnodeURLImpl parse it): the node id is the node's secp256k1
public key, 64 bytes (x and y, without the 0x04 prefix) as 128 hex digits, and must be a
point on the curve, or neither client can open an encrypted RLPx session to it; the host
is an IP address (IPv6 in brackets) or a DNS name (geth resolves it once at start, Besu
with --Xdns-enabled); ports are 1 to 65535.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

import coincurve

ENODE_RE = re.compile(
    r"^enode://(?P<id>[^@]*)@(?P<host>\[[^\]]*\]|[^:@/?\[\]]*):(?P<port>[^?]*)(?:\?discport=(?P<discport>.*))?$"
)
NODE_ID_RE = re.compile(r"^[0-9a-fA-F]{128}$")
DNS_NAME_RE = re.compile(r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$")
FORM = "enode://<128 hex digits>@<IP or DNS name>:<port>[?discport=<port>]"


@dataclass(frozen=True)
class Enode:
    node_id: str  # 128 lower-case hex digits
    host: str  # an IP address (IPv6 without brackets) or a lower-case DNS name
    port: int
    discport: int | None = None

    @property
    def is_ip(self) -> bool:
        return is_ip_address(self.host)

    @property
    def udp_port(self) -> int:
        return self.discport or self.port

    def url(self) -> str:
        """The canonical form chainops writes (lower-case id and host, IPv6 in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"enode://{self.node_id}@{host}:{self.port}" + (f"?discport={self.discport}" if self.discport else "")

    def short(self) -> str:
        return f"{self.node_id[:12]}…@{self.host}:{self.port}"


class EnodeError(ValueError):
    pass


def is_ip_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def is_public_key(node_id: str) -> bool:
    """A point on secp256k1 (coincurve parses the uncompressed form 0x04 || x || y)."""
    try:
        coincurve.PublicKey(b"\x04" + bytes.fromhex(node_id))
    except ValueError:
        return False
    return True


def _port(text: str | None, what: str) -> int:
    if text is None or not text.isdigit() or len(text) > 5:
        raise EnodeError(f"{what} {text!r} is not a port number; allowed: 1 to 65535")
    value = int(text)
    if not 1 <= value <= 65535:
        raise EnodeError(f"{what} {value} is out of range; allowed: 1 to 65535")
    return value


def parse_enode(url: str) -> Enode:
    """The enode, or an EnodeError saying what is wrong and what is allowed."""
    shown = url if len(url) <= 60 else url[:40] + "…" + url[-16:]
    match = ENODE_RE.match(url)
    if match is None:
        raise EnodeError(f"{shown!r} is not an enode URL; allowed: {FORM}")
    node_id = match["id"]
    if not NODE_ID_RE.match(node_id):
        raise EnodeError(f"{shown!r}: the node id must be 128 hex digits (the 64-byte public key), not {len(node_id)} characters")
    if not is_public_key(node_id):
        raise EnodeError(f"{shown!r}: the node id is not a secp256k1 public key (not a point on the curve); copy it from the node's admin_nodeInfo")
    host = match["host"]
    if host.startswith("["):
        inner = host[1:-1]
        try:
            address = ipaddress.IPv6Address(inner)
        except ValueError:
            raise EnodeError(f"{shown!r}: {host} is not an IPv6 address") from None
        host = str(address)
    elif is_ip_address(host):
        host = str(ipaddress.ip_address(host))
    else:
        if all(part.isdigit() for part in host.split(".")) and host:
            raise EnodeError(f"{shown!r}: {host} is not an IP address")
        if not DNS_NAME_RE.match(host.lower()):
            raise EnodeError(f"{shown!r}: host {host!r} is neither an IP address nor a DNS name")
        host = host.lower()
    port = _port(match["port"], "port")
    discport = _port(match["discport"], "discport") if match["discport"] is not None else None
    return Enode(node_id.lower(), host, port, discport)
