"""The cluster's own age identity: what Flux's kustomize-controller decrypts Secrets with.

Secrets are sealed for the pipeline identity and every `gitops.secrets.ageRecipients`
entry; the key escrow only for the pipeline. So a cluster given its own identity can read
the Secrets it runs and nothing else, and the pipeline's identity never leaves the
pipeline. The private key is written once, as the `sops-age` Secret the bootstrap's
`decryption.secretRef` names, to a file outside the GitOps repository (mode 0600); chainops
never reads it again and refuses to overwrite it.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pyrage
import yaml

from pipelines.lib.errors import UsageError

SECRET_NAME = "sops-age"  # bootstrap/<env>.yaml: spec.decryption.secretRef.name
SECRET_NAMESPACE = "flux-system"
SECRET_KEY = "age.agekey"  # Flux reads keys ending in .agekey


def write_cluster_key(environment: str, out: Path) -> str:
    """Create the key pair, write the Secret manifest to `out`; return the public recipient."""
    if out.exists():
        raise UsageError(f"{out}: already exists; a cluster key is written once (move it away to create another)")
    identity = pyrage.x25519.Identity.generate()
    recipient = str(identity.to_public())
    manifest = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": SECRET_NAME,
            "namespace": SECRET_NAMESPACE,
            "labels": {"app.kubernetes.io/part-of": "chainops", "app.kubernetes.io/instance": environment},
            "annotations": {"chainops.io/recipient": recipient},
        },
        "type": "Opaque",
        "data": {SECRET_KEY: base64.b64encode(f"# chainops cluster key for {environment}\n{identity}\n".encode()).decode()},
    }
    out.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    descriptor = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(yaml.safe_dump(manifest, sort_keys=True))
    return recipient
