"""`network.lock.json`: the published identity of one environment, checked on read.

The lock is the memory of what a live network is (its genesis, validators, node and
account addresses). A lock that lost a field by hand-editing would switch a guard off
(no `genesisHash`: no genesis check), so a lock is read only through
:func:`parse_lock`, which refuses anything that is not a complete chainops lock and
says which field is wrong. Every reader gets the typed :class:`NetworkLock` and reads its
attributes; the writer builds one too, and :meth:`NetworkLock.document` (through
:func:`canonical_json`) gives the bytes that are committed.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipelines.lib.errors import GuardError
from pipelines.lib.layout import lock_path

_HASH = r"^0x[0-9a-f]{64}$"
_ADDRESS = r"^0x[0-9a-fA-F]{40}$"
_ENODE = r"^enode://[0-9a-f]{128}@[^:@/\s]+:[0-9]{1,5}$"
_NODE_NAME = r"^(validator|rpc|bootnode)-[0-9]+$"


class _LockPart(BaseModel):
    # Unknown fields are kept (a newer chainops may add some); known ones must be right.
    model_config = ConfigDict(extra="allow", strict=True, frozen=True)

    def document(self) -> dict[str, Any]:
        """As JSON data: exactly the fields it was read or built with, unknown ones included
        (no defaults added), so a lock read and written back keeps its bytes."""
        return self.model_dump(exclude_unset=True)


class LockedNode(_LockPart):
    name: str = Field(pattern=_NODE_NAME)
    role: Literal["validator", "rpc", "bootnode"]
    address: str = Field(pattern=_ADDRESS)
    enode: str = Field(pattern=_ENODE)
    secret: str = Field(min_length=1)


class LockedAccount(_LockPart):
    name: str | None = None
    address: str = Field(pattern=_ADDRESS)
    secret: str | None = None


class LockedTransition(_LockPart):
    """A consensus transition the chain has been told about (the environment file's fields)."""

    block: int = Field(gt=0)
    blockPeriodSeconds: int | None = Field(default=None, ge=1)
    validatorSelection: Literal["contract"] | None = None
    validatorContractAddress: str | None = Field(default=None, pattern=_ADDRESS)


class NetworkLock(_LockPart):
    environment: str
    chainId: int = Field(gt=0)
    networkId: int = Field(gt=0)
    client: Literal["besu", "geth"]
    consensus: Literal["qbft", "ibft2", "clique", "ethash"]
    genesisHash: str = Field(pattern=_HASH)
    genesisFileSha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    validators: list[str]
    nodes: list[LockedNode]
    accounts: list[LockedAccount]
    transitions: list[LockedTransition] = []  # a lock written before transitions existed has none

    @property
    def node_names(self) -> set[str]:
        return {n.name for n in self.nodes}

    @property
    def account_names(self) -> set[str]:
        return {a.name for a in self.accounts if a.name}

    def validator_nodes(self) -> list[LockedNode]:
        """The nodes whose role is validator, in lock order (the live validator set)."""
        return [n for n in self.nodes if n.role == "validator"]

    def addresses_by_name(self) -> dict[str, str]:
        """Key name -> locked address: every node by its name, every named account as
        `account/<name>` (the names the key escrow uses)."""
        found = {n.name: n.address for n in self.nodes}
        return found | {f"account/{a.name}": a.address for a in self.accounts if a.name}


def _field_path(location: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in location) or "(document)"


def parse_lock(data: bytes, environment: str) -> NetworkLock:
    """The checked lock of ``environment``; a GuardError naming the field otherwise."""
    path = lock_path(environment)
    repair = (
        f"restore it from Git history (`git log -p -- {path}` shows every published version) "
        f"or, to start a new chain with new keys and genesis, re-run with --allow-genesis-change {environment}"
    )
    try:
        document = json.loads(data)
    except ValueError:
        raise GuardError(f"{environment}: {path} is not JSON; {repair}") from None
    try:
        lock = NetworkLock.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        problem = "is missing" if first["type"] == "missing" else f"is invalid ({first['msg']})"
        raise GuardError(
            f"{environment}: {path}: field {_field_path(first['loc'])} {problem}; without it the published "
            f"identity of {environment} cannot be checked, so nothing is compiled; {repair}"
        ) from None
    if lock.environment != environment:
        raise GuardError(
            f"{environment}: {path} is the lock of environment {lock.environment!r} (a copied or moved directory); "
            f"nothing is compiled; {repair}"
        )
    names = [n.name for n in lock.nodes]
    if len(set(names)) != len(names):
        raise GuardError(f"{environment}: {path}: nodes: a node name appears twice; {repair}")
    if lock.consensus != "ethash" and not lock.validators:
        raise GuardError(f"{environment}: {path}: field validators is empty for {lock.consensus}; {repair}")
    for address in lock.validators:
        if not re.match(_ADDRESS, address):
            raise GuardError(f"{environment}: {path}: validators: {address!r} is not an address; {repair}")
    blocks = [t.block for t in lock.transitions]
    if blocks != sorted(set(blocks)):
        raise GuardError(f"{environment}: {path}: transitions: blocks are not strictly increasing; {repair}")
    return lock


def canonical_json(data: Any) -> bytes:
    """The one byte form of the lock (and every JSON chainops commits): sorted keys, two-space
    indent, UTF-8, a final newline; the same data always gives the same bytes."""
    return (json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()
