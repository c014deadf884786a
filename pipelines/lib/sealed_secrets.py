"""Bitnami SealedSecrets (bitnami.com/v1alpha1), sealed offline from the controller's certificate.

No kubeseal binary and no cluster access: the format is the controller's own
(bitnami-labs/sealed-secrets, pkg/crypto/crypto.go ``HybridEncrypt`` and
pkg/apis/sealedsecrets/v1alpha1 ``NewSealedSecret`` / ``EncryptionLabel``):

* every value of ``data``/``stringData`` is encrypted on its own;
* a fresh 32-byte AES-256 session key per value, RSA-OAEP(SHA-256, MGF1-SHA-256)
  encrypted for the controller's public key with the *label* ``<namespace>/<name>``
  (strict scope: the ciphertext only opens for that namespace and name);
* AES-256-GCM with an all-zero 12-byte nonce (the session key is used once);
* ``uint16 big-endian len(rsa) || rsa ciphertext || gcm ciphertext+tag``, base64
  (standard alphabet) in ``spec.encryptedData[key]``.

The pipeline cannot decrypt what it seals (only the controller holds the private
key), so idempotency compares a keyed HMAC of the plaintext, stored in the
``chainops.io/sealed-content-hmac`` annotation: an unchanged plaintext for the same
certificate keeps the committed object byte for byte.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pipelines.lib.config import relative_path_problem
from pipelines.lib.errors import InputProblem
from pipelines.lib.sealing import (
    SealingError,
    SealRequest,
    content_fingerprint,
    fingerprints_equal,
)
from pipelines.lib.yaml_io import dump_yaml

API_VERSION = "bitnami.com/v1alpha1"
KIND = "SealedSecret"
HMAC_ANNOTATION = "chainops.io/sealed-content-hmac"
SESSION_KEY_BYTES = 32
GCM_NONCE = bytes(12)
MIN_RSA_BITS = 2048
MAX_CERT_BYTES = 64 * 1024
CERT_FIELD = "gitops.secrets.sealedSecretsCert"

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class CertificateError(InputProblem):
    """The sealing certificate is missing, outside the environments directory, or unusable."""


# --------------------------------------------------------------------------- certificate


@dataclass(frozen=True)
class SealingCertificate:
    """The controller's public certificate: what sealing needs, nothing secret."""

    public_key: rsa.RSAPublicKey
    fingerprint: str  # SHA-256 of the DER SubjectPublicKeyInfo, hex
    not_after: datetime
    source: str

    def __repr__(self) -> str:
        return f"SealingCertificate({self.source}, sha256:{self.fingerprint[:16]}…)"


def cert_path_problem(value: str) -> str | None:
    """Why ``value`` is not an acceptable certificate path (None when it is).

    The path is relative to the environments directory; absolute paths, ``..``,
    ``~``, backslashes and hidden components are refused (the same rule the
    environment file's validation applies).
    """
    return relative_path_problem(value)


def resolve_cert_path(environments_dir: Path, value: str, source: str) -> Path:
    """The certificate file for ``value``, guaranteed to lie inside ``environments_dir``."""
    problem = cert_path_problem(value)
    if problem:
        raise CertificateError(f"{source}: {CERT_FIELD}: {problem}")
    root = Path(environments_dir).resolve()
    try:
        resolved = (root / value).resolve(strict=True)
    except (FileNotFoundError, RuntimeError):
        raise CertificateError(
            f"{source}: {CERT_FIELD}: {value!r} does not exist in {root} (paths are relative to the environments directory)"
        ) from None
    if not resolved.is_relative_to(root):
        raise CertificateError(f"{source}: {CERT_FIELD}: {value!r} leads outside {root} (through a symbolic link); refused")
    if not resolved.is_file():
        raise CertificateError(f"{source}: {CERT_FIELD}: {value!r} is not a regular file")
    return resolved


def load_certificate(path: Path, source: str) -> SealingCertificate:
    """Parse the first PEM certificate (as kubeseal does) and check it can seal."""
    try:
        if path.stat().st_size > MAX_CERT_BYTES:
            raise CertificateError(f"{source}: {CERT_FIELD}: {path.name} is larger than {MAX_CERT_BYTES} bytes")
        data = path.read_bytes()
    except OSError as exc:
        raise CertificateError(f"{source}: {CERT_FIELD}: cannot read {path.name} ({exc.strerror})") from None
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise CertificateError(
            f"{source}: {CERT_FIELD}: {path.name} is not a PEM X.509 certificate "
            "(get it with `kubeseal --fetch-cert`)"
        ) from None
    certificate = certificates[0]
    public_key = certificate.public_key()
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise CertificateError(f"{source}: {CERT_FIELD}: {path.name} holds no RSA public key; the controller uses RSA")
    if public_key.key_size < MIN_RSA_BITS:
        raise CertificateError(f"{source}: {CERT_FIELD}: RSA key of {public_key.key_size} bits; at least {MIN_RSA_BITS} required")
    spki = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return SealingCertificate(public_key, hashlib.sha256(spki).hexdigest(), certificate.not_valid_after_utc, source)


# --------------------------------------------------------------------------- crypto


def encryption_label(namespace: str, name: str) -> bytes:
    """Strict scope: the OAEP label binds the ciphertext to one namespace and name."""
    if not namespace or not name:
        raise SealingError("a strictly scoped SealedSecret needs a namespace and a name")
    return f"{namespace}/{name}".encode()


def hybrid_encrypt(public_key: rsa.RSAPublicKey, plaintext: bytes, label: bytes) -> bytes:
    """The controller's HybridEncrypt: RSA-OAEP-wrapped session key, then AES-256-GCM."""
    session_key = os.urandom(SESSION_KEY_BYTES)
    wrapped = public_key.encrypt(
        session_key,
        padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=label),
    )
    return struct.pack(">H", len(wrapped)) + wrapped + AESGCM(session_key).encrypt(GCM_NONCE, plaintext, None)


# --------------------------------------------------------------------------- sealer


def _plaintext_values(secret: Mapping[str, Any]) -> dict[str, bytes]:
    """Bytes of every value, as the controller's Secret.Data holds them."""
    values: dict[str, bytes] = {}
    for key, value in (secret.get("data") or {}).items():
        if not isinstance(value, str):
            raise SealingError(f"Secret data[{key!r}] must be a base64 string")
        try:
            values[key] = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise SealingError(f"Secret data[{key!r}] is not valid base64") from None
    for key, value in (secret.get("stringData") or {}).items():
        if not isinstance(value, str):
            raise SealingError(f"Secret stringData[{key!r}] must be a string")
        values[key] = value.encode()
    return values


def _template_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    kept = {k: metadata[k] for k in ("name", "namespace", "labels", "annotations") if metadata.get(k)}
    return kept


class SealedSecretsSealer:
    """Provider ``sealed-secrets``: strict-scope SealedSecrets from the controller's certificate."""

    provider = "sealed-secrets"
    output_kind = KIND

    def __init__(self, certificate: SealingCertificate, fingerprint_key: bytes) -> None:
        self.certificate = certificate
        self._key = fingerprint_key

    def __repr__(self) -> str:
        return f"SealedSecretsSealer({self.certificate!r})"

    def fingerprint(self, secret: Mapping[str, Any]) -> str:
        """Covers the certificate: a new controller key re-seals everything."""
        parameters = {"certificate": self.certificate.fingerprint, "scope": "strict"}
        return content_fingerprint(self._key, self.provider, parameters, secret)

    def seal(self, secret: dict, existing: bytes | None = None) -> bytes:
        """The SealedSecret for ``secret``; ``existing`` when its HMAC annotation still matches."""
        metadata = secret.get("metadata") or {}
        namespace, name = metadata.get("namespace"), metadata.get("name")
        if secret.get("kind") != "Secret" or not isinstance(namespace, str) or not isinstance(name, str):
            raise SealingError("only a Secret with metadata.namespace and metadata.name can be sealed")
        values = _plaintext_values(secret)
        wanted = self.fingerprint(secret)
        if existing is not None and self._reusable(existing, namespace, name, set(values), wanted):
            return existing
        if datetime.now(UTC) > self.certificate.not_after:
            raise SealingError(
                f"{self.certificate.source}: {CERT_FIELD}: the certificate expired on "
                f"{self.certificate.not_after:%Y-%m-%d}; fetch the controller's current one"
            )
        label = encryption_label(namespace, name)
        encrypted = {
            key: base64.b64encode(hybrid_encrypt(self.certificate.public_key, value, label)).decode()
            for key, value in sorted(values.items())
        }
        template: dict[str, Any] = {"metadata": _template_metadata(metadata), "type": secret.get("type", "Opaque")}
        if "immutable" in secret:
            template["immutable"] = secret["immutable"]
        outer = {"name": name, "namespace": namespace, "annotations": {HMAC_ANNOTATION: wanted}}
        if metadata.get("labels"):
            outer["labels"] = metadata["labels"]
        document = {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": outer,
            "spec": {"encryptedData": encrypted, "template": template},
        }
        return dump_yaml(document).encode()

    def seal_requests(self, requests: Sequence[SealRequest]) -> list[bytes]:
        return [self.seal(r.secret, r.existing) for r in requests]

    def close(self) -> None:
        """Nothing to release."""

    @staticmethod
    def _reusable(existing: bytes, namespace: str, name: str, keys: set[str], wanted: str) -> bool:
        try:
            document = yaml.load(existing, Loader=_Loader)
        except (yaml.YAMLError, ValueError):
            return False
        if not isinstance(document, dict) or document.get("apiVersion") != API_VERSION or document.get("kind") != KIND:
            return False
        metadata = document.get("metadata") or {}
        spec = document.get("spec") or {}
        if metadata.get("namespace") != namespace or metadata.get("name") != name:
            return False
        if not isinstance(spec.get("encryptedData"), dict) or set(spec["encryptedData"]) != keys:
            return False
        annotations = metadata.get("annotations") or {}
        return fingerprints_equal(annotations.get(HMAC_ANNOTATION), wanted)
