"""Seal stage: Secrets into the environment's provider format (SOPS, SealedSecrets,
plaintext for local development) and the key escrow that lets the pipeline recover them.

A committed file whose plaintext is unchanged keeps its bytes (SOPS ciphertext is never
deterministic), found through the escrow's index without decrypting it.
"""


from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from pipelines.lib.config import ConfigError, EnvironmentConfig
from pipelines.lib.gitops import git_blob_id
from pipelines.lib.keys import (
    Escrow,
    PrivateKeyMaterial,
    SealedFileRecord,
    derive_shared_secret,
    open_escrow,
    seal_escrow,
)
from pipelines.lib.layout import (
    escrow_path,
)
from pipelines.lib.model import CompiledEnvironment, ExistingEnvironment
from pipelines.lib.sealed_secrets import CertificateError, SealedSecretsSealer, load_certificate, resolve_cert_path
from pipelines.lib.sealing import (
    AgeIdentity,
    PlaintextSealer,
    Sealer,
    SealingError,
    SealRequest,
    SopsSealer,
)


def fingerprint_key(config: EnvironmentConfig, identity: AgeIdentity) -> bytes:
    """Key of the sealed-content HMACs: derived from the pipeline identity, never stored."""
    return bytes.fromhex(derive_shared_secret(str(identity.secret()), config.name, "sealed-content-hmac"))


def sealer_for(config: EnvironmentConfig, identity: AgeIdentity) -> Sealer:
    """The environment's sealing provider (`gitops.secrets.provider`)."""
    spec = config.spec.gitops.secrets
    key = fingerprint_key(config, identity)
    if spec.provider == "sealed-secrets":
        try:
            path = resolve_cert_path(Path(config.source_path).parent, spec.sealedSecretsCert or "", config.source_path)
            certificate = load_certificate(path, config.source_path)
        except CertificateError as exc:
            raise ConfigError([str(exc)]) from None
        return SealedSecretsSealer(certificate, key)
    if spec.provider == "plaintext":
        return PlaintextSealer(key)
    return SopsSealer(identity, extra_recipients=spec.ageRecipients, fingerprint_key=key)


def read_escrow(existing: ExistingEnvironment, identity: AgeIdentity) -> Escrow | None:
    data = existing.files.get(escrow_path(existing.name))
    return open_escrow(data, identity.secret(), existing.name) if data else None


def naming_the_file(exc: SealingError, paths: Sequence[str], environment: str) -> SealingError:
    """A sealer error about "item 3" (or the only item) as one about the committed file it is."""
    text = str(exc)
    found = re.match(r"item (\d+): (.*)", text, re.S)
    if found and int(found[1]) < len(paths):
        return SealingError(f"{paths[int(found[1])]}: {found[2]}")
    if len(paths) == 1:
        return SealingError(f"{paths[0]}: {text}")
    return SealingError(f"a Secret of {environment}: {text}")


def seal_secrets(
    config: EnvironmentConfig,
    to_seal: list[tuple[str, dict, bytes | None]],
    privates: dict[str, PrivateKeyMaterial],
    existing: ExistingEnvironment,
    identity: AgeIdentity,
    sealer: Sealer,
) -> dict[str, bytes]:
    """Sealed bytes for every (path, Secret, committed bytes), plus the updated key escrow.

    A committed file that the escrow's index records for exactly the wanted plaintext is
    kept without decrypting it; the escrow keeps its own bytes when its content is equal.
    """
    escrow = read_escrow(existing, identity)
    index = escrow.sealed if escrow else {}
    requests = []
    for path, obj, prior in to_seal:
        record = index.get(path)
        known = record.fingerprint if record and prior is not None and git_blob_id(prior) == record.blob else None
        requests.append(SealRequest(obj, prior, known))
    try:
        sealed_files = dict(zip([path for path, _, _ in to_seal], sealer.seal_requests(requests)))
    except SealingError as exc:
        raise naming_the_file(exc, [path for path, _, _ in to_seal], config.name) from None
    records = {
        path: SealedFileRecord(git_blob_id(sealed_files[path]), sealer.fingerprint(obj)) for path, obj, _ in to_seal
    }
    keys = {name: m for name, m in privates.items() if not name.startswith("shared/")}
    path = escrow_path(config.name)
    sealed_files[path] = seal_escrow(
        config.name, Escrow(keys, records), identity.recipient, existing.files.get(path), identity.secret()
    )
    return sealed_files


def sealed_secret_paths(compiled: CompiledEnvironment) -> list[str]:
    """Committed Secret and SealedSecret files (the key escrow is not among them)."""
    return sorted(p for p in compiled.files if p.rsplit("/", 1)[-1].startswith(("secret-", "sealedsecret-")))
