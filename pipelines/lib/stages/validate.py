"""Validate stage: what a rendered environment must satisfy before anything is written.

Every object against the Kubernetes OpenAPI schemas (and the pinned CRD schemas),
ConfigMaps within etcd's 1 MiB, and no private key, keystore or password anywhere but
in a sealed Secret (the leak scan, run by every compile: CLI and Dagster).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pipelines.lib.config import EnvironmentConfig
from pipelines.lib.errors import GuardError, InputProblem
from pipelines.lib.keys import PrivateKeyMaterial
from pipelines.lib.layout import env_dir
from pipelines.lib.leak_scan import files_holding_private_material
from pipelines.lib.manifests import SchemaValidator, ValidationIssue
from pipelines.lib.model import CompiledEnvironment
from pipelines.lib.yaml_io import load_yaml

MAX_OBJECT_BYTES = 1 << 20  # a ConfigMap's data limit (etcd refuses larger objects)


class ManifestValidationError(InputProblem):
    """Rendered objects do not validate against the Kubernetes schemas."""


def schema_problems(validator: SchemaValidator, objects: Iterable[tuple[str, dict[str, Any]]]) -> list[ValidationIssue]:
    """Schema problems of every (path, object)."""
    return [problem for path, obj in objects for problem in validator.validate(obj, path)]


def raise_problems(problems: list[ValidationIssue]) -> None:
    if problems:
        raise ManifestValidationError("\n".join(f"{p.path}: {p.kind}/{p.name}: {p.message}" for p in problems))


def check_object_size(config: EnvironmentConfig, chart: str, obj: Mapping[str, Any], data: bytes) -> None:
    """A ConfigMap etcd would refuse, named by the environment-file field that filled it."""
    if obj["kind"] == "ConfigMap" and len(data) > MAX_OBJECT_BYTES:
        what = "accounts, contracts" if obj["metadata"]["name"] == "genesis" else f"values.{chart}"
        raise ManifestValidationError(
            f"{config.source_path}: {what}: ConfigMap/{obj['metadata']['name']} would be {len(data)} "
            f"bytes; Kubernetes stores at most {MAX_OBJECT_BYTES} bytes (1 MiB) per ConfigMap"
        )


def check_genesis_size(config: EnvironmentConfig, genesis_json: bytes) -> None:
    """genesis.json alone over the ConfigMap limit, refused before it is hashed: the genesis
    ConfigMap holds the file whole, and hashing a megabyte of contract storage takes seconds."""
    if len(genesis_json) > MAX_OBJECT_BYTES:
        raise ManifestValidationError(
            f"{config.source_path}: accounts, contracts: genesis.json would be {len(genesis_json)} bytes; "
            f"Kubernetes stores at most {MAX_OBJECT_BYTES} bytes (1 MiB) per ConfigMap"
        )


def check_no_leaks(
    config: EnvironmentConfig, files: Mapping[str, bytes], privates: Mapping[str, PrivateKeyMaterial], unsealed: Iterable[str]
) -> None:
    """Refuse a compile whose files would commit key material outside a sealed Secret
    (a chart or an override that writes a key into a ConfigMap or an annotation)."""
    leaking = files_holding_private_material(files, privates, skip=list(unsealed))
    if leaking:
        raise GuardError(
            f"{config.source_path}: {', '.join(leaking)} would commit a private key, keystore or password in readable "
            "form; nothing was written (check the chart templates and values overrides)"
        )


def parse_files(compiled: CompiledEnvironment) -> dict[str, Any]:
    """Every YAML object written, by path (for checks and tests)."""
    return {p: load_yaml(b) for p, b in compiled.files.items() if p.startswith(env_dir(compiled.name)) and p.endswith(".yaml")}
