"""The last look before a commit: no file holds a private key, keystore or password.

Every private value an environment has (node keys, account keys, keystores, passwords),
as it could appear in a file: hex in any case, with or without 0x, and base64 as Secret
data would hold it. Sealed files hold ciphertext only, so a hit means a chart or an
override wrote key material where it stays readable. `compile` refuses such a commit (the
CLI and Dagster alike); the Dagster check `no_plaintext_secrets` shows it too.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping

from pipelines.lib.keys import PrivateKeyMaterial


def _needles(privates: Mapping[str, PrivateKeyMaterial]) -> tuple[set[bytes], set[bytes]]:
    """(hex needles, searched case-insensitively; exact needles): every private value as it
    could appear in a file, plain or base64-encoded as Secret data would hold it."""
    hex_needles: set[bytes] = set()
    exact: set[bytes] = set()
    for material in privates.values():
        key = material.private_key.lower().removeprefix("0x").encode()
        hex_needles.add(key)
        exact.update(base64.b64encode(k) for k in (key, b"0x" + key))
        for value in (material.password, material.keystore_json):
            if value:
                exact.update({value.encode(), base64.b64encode(value.encode())})
    return hex_needles, exact


def files_holding_private_material(
    files: Mapping[str, bytes], privates: Mapping[str, PrivateKeyMaterial], skip: Iterable[str] = ()
) -> list[str]:
    """Paths of files that contain a private key, password or keystore (never the values)."""
    hex_needles, exact = _needles(privates)
    skipped = set(skip)
    leaking = []
    for path, data in sorted(files.items()):
        if path in skipped:
            continue
        lowered = data.lower()
        if any(n in lowered for n in hex_needles) or any(n in data for n in exact):
            leaking.append(path)
    return leaking
