"""Who a node peers with and how it is reached: enode URLs in the lock and in the charts,
external peers, the advertised addresses of exposed pods, and Besu's node allowlist.

One place decides every enode chainops writes, so the lock (`network.lock.json`), the static
peer lists and the allowlist cannot disagree:

- inside the cluster a node is `<pod>.<headless Service>.<namespace>.svc.cluster.local`
  (the stable DNS name of a StatefulSet pod) on 30303 (30301 UDP for geth bootnodes);
- with `kubernetes.p2pExposure` a validator or RPC node is published at its advertised
  address (`EnvironmentConfig.advertised_endpoints`): that is its enode in the lock, the one
  nodes outside the cluster list; nodes inside keep dialing each other by pod DNS name;
- `network.externalPeers` are the enodes of nodes outside, as the environment file gives them.

Besu's local permissioning admits a connection when the remote node's id, IP and listening
port match an allowlist entry, so an exposed node is listed twice, by its pod DNS name (how
the nodes of this cluster see it) and by its advertised address (how it is dialed from
outside), as Besu's documentation recommends for nodes whose ingress and egress addresses
differ (besu-docs, private-networks/how-to/use-local-permissioning.md, "Specify bootnodes in
the allowlist").
"""

from __future__ import annotations

from pipelines.lib.config import EnvironmentConfig
from pipelines.lib.enode import parse_enode
from pipelines.lib.errors import InputProblem
from pipelines.lib.keys import P2P_PORT, KeySet, NodeIdentity
from pipelines.lib.layout import LOCK_FILE

DISCOVERY_PORT = 30301  # the geth bootnodes' UDP port, as in their enode URLs


class PeerError(InputProblem):
    """An external peer that is one of this network's own nodes."""


def pod_host(node: NodeIdentity, namespace: str) -> str:
    """The stable DNS name of a StatefulSet pod: <pod>.<headless Service>.<namespace>."""
    return f"{node.name}.{node.role}.{namespace}.svc.cluster.local"


def internal_enode(config: EnvironmentConfig, node: NodeIdentity) -> str:
    """How the nodes of this cluster reach the node (its pod DNS name)."""
    port = DISCOVERY_PORT if node.role == "bootnode" else P2P_PORT
    return node.enode(pod_host(node, config.spec.kubernetes.namespace), port)


def lock_enode(config: EnvironmentConfig, node: NodeIdentity) -> str:
    """The node's enode in network.lock.json: its advertised address when it is exposed."""
    advertised = config.advertised_endpoints().get(node.name)
    if advertised is None:
        return internal_enode(config, node)
    host, port = advertised
    return node.enode(host, port)


def external_peers(config: EnvironmentConfig) -> list[str]:
    return list(config.spec.network.externalPeers)


def static_peers(config: EnvironmentConfig, keys: KeySet) -> list[str]:
    """Static peers of every node: the validators (a stable set, so adding an RPC node
    restarts nothing) by pod DNS name, then the external peers."""
    return [internal_enode(config, n) for n in keys.validators] + external_peers(config)


def allowlist(config: EnvironmentConfig, keys: KeySet) -> list[str]:
    """Besu's nodes-allowlist: every node's lock enode (plus its pod DNS enode when it is
    exposed) and the external peers, sorted."""
    entries = {lock_enode(config, n) for n in keys.nodes} | {internal_enode(config, n) for n in keys.nodes}
    return sorted(entries | set(external_peers(config)))


def check_external_peers(config: EnvironmentConfig, keys: KeySet, locked: set[str] = frozenset()) -> None:
    """An external peer must not be one of this network's nodes (a node would list itself,
    and the lock already names it). `locked`: node names the committed lock holds."""
    own = {n.public_key.lower(): n for n in keys.nodes}
    for index, url in enumerate(config.spec.network.externalPeers):
        node = own.get(parse_enode(url).node_id)
        if node is not None:
            where = f"in {LOCK_FILE}" if node.name in locked else "of this compile"
            raise PeerError(
                f"{config.source_path}: network.externalPeers[{index}]: node key {node.public_key[:12]}… is {node.name} "
                f"of this network ({where}); externalPeers lists nodes outside this cluster only"
            )
