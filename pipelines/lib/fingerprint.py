"""Skip environments whose every input is unchanged since chainops last published them.

A fingerprint covers everything a compile reads: the environment file's bytes, the
chainops code and chart sources, the pipeline identity, where the output points, and the
blob ids the GitOps repository holds for the environment now. If any of them differs
(including someone editing `rendered/<env>` by hand) the environment is compiled in full.
The store is a local cache under the home directory: losing it only costs time.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

LIB_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Fingerprinted:
    """What a skipped environment still reports."""

    fingerprint: str
    genesis_hash: str
    object_count: int


def _tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


@lru_cache(maxsize=8)
def source_digest(charts_dir: Path) -> str:
    """The chainops code and the charts, hashed once per process."""
    return hashlib.sha256(f"{_tree_digest(LIB_DIR)}:{_tree_digest(charts_dir)}".encode()).hexdigest()


def environment_fingerprint(
    environment_file: bytes, sources: str, recipient: str, target: str, tree: Mapping[str, str]
) -> str:
    payload = json.dumps(
        {
            "file": hashlib.sha256(environment_file).hexdigest(),
            "sources": sources,
            "recipient": recipient,
            "target": target,
            "tree": sorted(tree.items()),
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


class FingerprintStore:
    """environment -> Fingerprinted, kept as one JSON file written atomically."""

    def __init__(self, path: Path):
        self.path = path
        try:
            raw = json.loads(path.read_text())
            self.entries = {name: Fingerprinted(**entry) for name, entry in raw.items()}
        except (OSError, ValueError, TypeError):
            self.entries = {}

    def matches(self, name: str, fingerprint: str) -> Fingerprinted | None:
        entry = self.entries.get(name)
        return entry if entry is not None and entry.fingerprint == fingerprint else None

    def record(self, name: str, entry: Fingerprinted) -> None:
        self.entries[name] = entry

    def forget(self, name: str) -> None:
        self.entries.pop(name, None)

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = json.dumps({n: asdict(e) for n, e in sorted(self.entries.items())}, indent=1).encode()
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".fingerprints-")
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, self.path)
