"""`chainops diff`: a compile that writes nothing, with what only the compile can know labelled.

A dry run compiles exactly like `chainops compile` (actions.plan_run: same base, same
guards, same decisions), but a compile generates keys, and a key drawn now is not the key
the real compile will draw. So every value that depends on a key not yet in the
repository is shown as a label, never as an invented value:

1. Named: each new node's address and enode key, each new account's address, in every
   form they are written in (0x-prefixed, EIP-55, bare lower-case hex inside extraData).
2. Derived: the run is planned twice with independent keys; any remaining hex value that
   differs between the two (the genesis hash, checksum annotations, extraData around
   the addresses) depends on the new keys, and is labelled too.

The home is never created and no identity is generated: a home without an identity or
without a cache for this repository gets a temporary one, deleted afterwards.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from eth_utils import to_checksum_address

from pipelines.lib.gitops import GitopsRepository
from pipelines.lib.lock import NetworkLock
from pipelines.lib.sealing import AgeIdentity
from pipelines.lib.settings import Settings

GENESIS_LABEL = "<genesis hash: computed at compile>"
DERIVED_LABEL = "<derived from new keys: computed at compile>"
LINE_LABEL = "<line derived from new keys: computed at compile>"
_HEX = re.compile(r"(?:0x)?[0-9a-fA-F]{16,}")


def key_labels(before: NetworkLock | None, after: NetworkLock | None) -> dict[str, str]:
    """Bare lower-case hex of each key-derived value new in `after` (the compiled lock) -> its label."""
    if after is None:
        return {}
    known = {e.address.lower() for e in [*before.nodes, *before.accounts]} if before is not None else set()
    labels: dict[str, str] = {}
    for node in after.nodes:
        if node.address.lower() in known:
            continue
        labels[node.address[2:].lower()] = f"<new key: {node.name} address, generated at compile>"
        key = node.enode.removeprefix("enode://").split("@", 1)[0]
        labels[key.lower()] = f"<new key: {node.name} enode, generated at compile>"
    for account in after.accounts:
        if account.address.lower() not in known:
            labels[account.address[2:].lower()] = f"<new key: account/{account.name or '?'} address, generated at compile>"
    return labels


def _named(text: str, labels: Mapping[str, str]) -> str:
    for value in sorted(labels, key=len, reverse=True):
        forms = [value] if len(value) != 40 else [value, to_checksum_address("0x" + value)[2:], value.upper()]
        for form in dict.fromkeys(forms):
            text = text.replace("0x" + form, labels[value]).replace(form, labels[value])
    return text


def _derived(first: str, second: str, genesis_hash: str | None) -> str:
    """`first` with every hex value that differs from the same place in `second` labelled."""
    parts_a, parts_b = _HEX.split(first), _HEX.split(second)
    values_a, values_b = _HEX.findall(first), _HEX.findall(second)
    if parts_a != parts_b:  # not the same shape: label whole lines that differ
        lines_b = set(second.splitlines())
        return "\n".join(line if line in lines_b else LINE_LABEL for line in first.split("\n"))
    out = [parts_a[0]]
    for value_a, value_b, after in zip(values_a, values_b, parts_a[1:]):
        if value_a == value_b:
            out.append(value_a)
        else:
            out.append(GENESIS_LABEL if genesis_hash and value_a.lower() == genesis_hash.lower() else DERIVED_LABEL)
        out.append(after)
    return "".join(out)


@dataclass(frozen=True)
class Labeller:
    """Labels one environment's texts from two dry runs (`first` shown, `second` compared)."""

    first: Mapping[str, str]
    second: Mapping[str, str]
    genesis_hash: str | None

    def __call__(self, text_first: str, text_second: str) -> str:
        return _derived(_named(text_first, self.first), _named(text_second, self.second), self.genesis_hash)


@contextlib.contextmanager
def dry_run_home(settings: Settings, accept_rewind: bool) -> Iterator[tuple[AgeIdentity, GitopsRepository]]:
    """The pipeline identity and the repository to read, without creating anything in the
    home: a missing identity or cache (or embedded repository) is replaced by a
    temporary one for this run only."""
    with tempfile.TemporaryDirectory(prefix="chainops-diff-") as scratch:
        scratch_home = Path(scratch)
        identity_file = settings.home / "age" / "identity.txt"
        identity = AgeIdentity.from_file(identity_file) if identity_file.is_file() else AgeIdentity.load_or_create(scratch_home)
        url = settings.repo
        if settings.uses_embedded_repo and not settings.embedded_repo.exists():  # nothing published yet
            url = str(scratch_home / "gitops.git")
            subprocess.run(["git", "init", "-q", "--bare", url], check=True)
        real = GitopsRepository(url, settings.branch, settings.home, accept_rewind)
        home = settings.home if real.cache_path.is_dir() else scratch_home
        with GitopsRepository(url, settings.branch, home, accept_rewind) as repo:
            yield identity, repo
