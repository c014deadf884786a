"""Strict schema validation of rendered objects, and their file names.

Framework-free: the Dagster asset checks, the CLI and the tests all call these functions.

Quality bar served here (DESIGN.md): every rendered object validates against the
Kubernetes OpenAPI schema with unknown fields rejected, and every ``rendered/<env>``
directory builds with ``kubectl kustomize``.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import functools
import json
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
from referencing import Registry, Resource

from pipelines.lib.crd_schemas import custom_schema
from pipelines.lib.errors import ManifestError

# Kubernetes schema version every object is validated against.
#
# kubernetes_validate 1.37.0 ships strict schemas for 1.25 ... 1.37. We validate against
# 1.33 on purpose, as a *floor*: an object that validates against 1.33 uses only fields
# that 1.33 API servers know, and GA fields are never removed from a served API version,
# so the same object is also valid for 1.34 ... 1.37. Validating against the newest
# schema would let a field added in 1.36 slip through and then be rejected (or silently
# pruned) by an older cluster. Raise this when the oldest cluster chainops targets moves.
KUBERNETES_VERSION = "1.33.0"

_SCHEMA_ROOT = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
_K8S_DEFS = "https://kubernetes.io/api/_definitions.json#/$defs/"

_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_KIND = re.compile(r"^[A-Za-z][A-Za-z0-9]*$")
_API_VERSION = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?v[0-9]+((alpha|beta)[0-9]+)?$")
_GROUP_DOMAIN = re.compile(r"^([^./]*)(?:\.[^/]*)?/")
_CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
# A value encrypted by SOPS: ENC[AES256_GCM,data:...,iv:...,tag:...,type:str]
_SOPS_VALUE = re.compile(r"^ENC\[[A-Z0-9_]+,data:.*\]$", re.DOTALL)
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_MAX_FILENAME_BYTES = 255  # ext4, APFS, NTFS component limit


# --------------------------------------------------------------------------- files


def object_filename(obj: dict) -> str:
    """``<kind lower-case>-<metadata.name>.yaml``; refuses names that could escape a directory."""
    kind = obj.get("kind") if isinstance(obj, dict) else None
    metadata = obj.get("metadata") if isinstance(obj, dict) else None
    name = metadata.get("name") if isinstance(metadata, dict) else None
    if not isinstance(kind, str) or not _KIND.match(kind):
        raise ManifestError(f"object has no valid kind: {kind!r}")
    if not isinstance(name, str) or len(name) > 253 or not _DNS1123_SUBDOMAIN.match(name):
        raise ManifestError(
            f"{kind} metadata.name {name!r} is not a DNS-1123 name "
            "(lower-case letters, digits, '-' and '.', at most 253 characters)"
        )
    filename = f"{kind.lower()}-{name}.yaml"
    if len(filename.encode()) > _MAX_FILENAME_BYTES:
        raise ManifestError(f"file name for {kind}/{name} exceeds {_MAX_FILENAME_BYTES} bytes")
    return filename


# --------------------------------------------------------------------------- validation


@dataclass(frozen=True)
class ValidationIssue:
    """One problem with one object, precise enough to fix without opening the schema."""

    path: str  # file, e.g. "network/statefulset-validator.yaml"
    kind: str
    name: str
    message: str  # JSON path of the offending field + what is wrong

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{where}{self.kind}/{self.name}: {self.message}"


def _normalise_version(kubernetes_version: str) -> str:
    """"v1.33" and "1.33" -> "1.33.0", the naming of kubernetes_validate's schema directories."""
    version = kubernetes_version.removeprefix("v")
    return version + ".0" if re.fullmatch(r"\d+\.\d+", version) else version


def _schema_dir(kubernetes_version: str) -> Path:
    """The bundled strict schema directory for an exact ``X.Y.Z`` (or ``vX.Y``) version."""
    version = _normalise_version(kubernetes_version)
    directory = _SCHEMA_ROOT / f"v{version}-local-strict"
    if not re.fullmatch(r"\d+\.\d+\.\d+", version) or not directory.is_dir():
        shipped = sorted(p.name[1:].removesuffix("-local-strict") for p in _SCHEMA_ROOT.glob("v*-local-strict"))
        raise ManifestError(
            f"kubernetes_validate ships no strict schemas for Kubernetes {kubernetes_version!r}; "
            f"available: {', '.join(shipped)}"
        )
    return directory


def _schema_filename(api_version: str, kind: str) -> str:
    """kubernetes_validate's file naming: ``rbac.authorization.k8s.io/v1`` Role -> role-rbac-v1.json."""
    api_part = _GROUP_DOMAIN.sub(r"\1-", api_version)
    return f"{kind.lower()}-{api_part}.json"


def _group_version(api_version: str) -> tuple[str, str]:
    group, _, version = api_version.rpartition("/")
    return group, version


class SchemaValidator:
    """One cached jsonschema validator per (apiVersion, kind), from kubernetes_validate's strict schemas.

    kubernetes_validate.validate() re-reads the 1.4 MB definitions file on every call
    (~11 ms); here it is read once and each kind's validator is compiled on first use.
    The "-strict" schemas set additionalProperties: false, so unknown fields are errors.
    Beyond the schema, a few rules the API server or kustomize would enforce anyway are
    checked: metadata.name present, ConfigMap/Secret data keys well-formed, Secret data
    values valid base64 (except SOPS ``ENC[...]`` values).
    """

    def __init__(self, kubernetes_version: str = KUBERNETES_VERSION) -> None:
        self.kubernetes_version = kubernetes_version
        self._dir = _schema_dir(kubernetes_version)
        definitions = json.loads((self._dir / "_definitions.json").read_text(encoding="utf-8"))
        self._registry: Registry = Registry().with_resource(definitions["$id"], Resource.from_contents(definitions))
        self._validators: dict[tuple[str, str], jsonschema.protocols.Validator | None] = {}
        self._lock = threading.Lock()

    def has_schema(self, api_version: str, kind: str) -> bool:
        """Whether objects of this apiVersion/kind can be validated."""
        return self._validator(api_version, kind) is not None

    def validate(self, obj: dict, path: str = "") -> list[ValidationIssue]:
        """All problems with one object, sorted by field path; [] when it is valid."""
        if not isinstance(obj, dict):
            return [ValidationIssue(path, "?", "?", f"$: expected a mapping, got {_type_name(obj)}")]
        api_version, kind = obj.get("apiVersion"), obj.get("kind")
        metadata = obj.get("metadata")
        name = metadata.get("name") if isinstance(metadata, dict) else None
        kind_label = kind if isinstance(kind, str) and kind else "?"
        name_label = name if isinstance(name, str) and name else "?"

        def issue(message: str) -> ValidationIssue:
            return ValidationIssue(path, kind_label, name_label, message)

        if not isinstance(api_version, str) or not isinstance(kind, str) or not api_version or not kind:
            return [issue("$: apiVersion and kind must both be non-empty strings")]
        validator = self._validator(api_version, kind)
        if validator is None:
            return [issue(f"no schema for {api_version}/{kind}")]

        body = _without_sops(obj)
        redact = kind == "Secret"  # never echo Secret values into logs or asset metadata
        errors = sorted(validator.iter_errors(body), key=lambda e: [str(p) for p in e.absolute_path])
        messages = [m for e in errors for m in _describe(e, redact)]
        messages += _extra_checks(body, sops="sops" in obj and isinstance(obj["sops"], dict))
        return [issue(m) for m in messages]

    def _validator(self, api_version: str, kind: str) -> jsonschema.protocols.Validator | None:
        """Compile (once) the validator for a kind; None when no schema is known."""
        key = (api_version, kind)
        try:
            return self._validators[key]
        except KeyError:
            pass
        with self._lock:
            if key not in self._validators:
                schema = self._load_schema(api_version, kind)
                self._validators[key] = (
                    None if schema is None else jsonschema.Draft202012Validator(schema, registry=self._registry)
                )
            return self._validators[key]

    def _load_schema(self, api_version: str, kind: str) -> dict[str, Any] | None:
        """Core kind file (checked against its exact group/version/kind) or a custom schema."""
        if not _KIND.match(kind) or not _API_VERSION.match(api_version):
            return None
        schema_file = self._dir / _schema_filename(api_version, kind)
        if schema_file.is_file():
            schema = json.loads(schema_file.read_text(encoding="utf-8"))
            group, version = _group_version(api_version)
            # The file name drops the group's domain: make sure e.g. networking.example.com/v1
            # NetworkPolicy is not validated as networking.k8s.io/v1 NetworkPolicy.
            if {"group": group, "version": version, "kind": kind} in schema.get("x-kubernetes-group-version-kind", []):
                return schema
        return custom_schema(api_version, kind)


def validator_for(kubernetes_version: str = KUBERNETES_VERSION) -> SchemaValidator:
    """Process-wide validator; safe to share because the schemas never change."""
    return _cached_validator(_normalise_version(kubernetes_version))


@functools.cache
def _cached_validator(kubernetes_version: str) -> SchemaValidator:
    # Keyed by the normalised version: lru_cache alone would build separate instances for
    # validator_for(), validator_for("1.33.0") and validator_for("v1.33").
    return SchemaValidator(kubernetes_version)


def _without_sops(obj: dict) -> dict:
    """The object minus SOPS's top-level ``sops:`` metadata block (a shallow copy)."""
    if isinstance(obj.get("sops"), dict):
        return {k: v for k, v in obj.items() if k != "sops"}
    return obj


def _extra_checks(obj: dict, sops: bool) -> list[str]:
    """Rules outside the OpenAPI schema that would otherwise fail only at apply time."""
    messages: list[str] = []
    metadata = obj.get("metadata")
    if obj.get("apiVersion") == "kustomize.config.k8s.io/v1beta1":
        return messages  # kustomization.yaml is read by kustomize, never applied: no name needed
    if not isinstance(metadata, dict) or not isinstance(metadata.get("name"), str) or not metadata["name"]:
        messages.append("$.metadata.name: required field missing (GitOps objects need a fixed name)")
    if obj.get("apiVersion") != "v1" or obj.get("kind") not in ("ConfigMap", "Secret"):
        return messages
    fields = ("data", "binaryData") if obj["kind"] == "ConfigMap" else ("data", "stringData")
    for field in fields:
        values = obj.get(field)
        if not isinstance(values, dict):
            continue
        for key in sorted(values, key=str):
            if not isinstance(key, str) or len(key) > 253 or not _CONFIG_KEY.match(key):
                messages.append(
                    f"{_json_path([field, key])}: invalid key (use letters, digits, '-', '_' or '.')"
                )
        if obj["kind"] == "Secret" and field == "data":
            messages += _base64_issues(values, sops)
    return messages


def _base64_issues(data: dict, sops: bool) -> list[str]:
    """Secret.data values must be base64; SOPS ciphertext (ENC[...]) is skipped."""
    messages = []
    for key in sorted(data, key=str):
        value = data[key]
        if not isinstance(value, str):
            continue  # the schema already reports the wrong type
        if sops and _SOPS_VALUE.match(value):
            continue
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            messages.append(f"{_json_path(['data', key])}: value is not valid base64")
    return messages


def _describe(error: jsonschema.ValidationError, redact: bool) -> list[str]:
    """Turn a jsonschema error into "<JSON path>: <what is wrong>" messages."""
    where = list(error.absolute_path)
    validator, expected, instance = error.validator, error.validator_value, error.instance
    if validator == "additionalProperties" and isinstance(instance, dict):
        known = sorted((error.schema.get("properties") or {}).keys())
        messages = []
        for field in sorted((k for k in instance if k not in known), key=str):
            hint = difflib.get_close_matches(str(field), known, n=1)
            suffix = f" (did you mean {hint[0]!r}?)" if hint else ""
            messages.append(f"{_json_path(where + [field])}: unknown field{suffix}")
        if messages:
            return messages
    if validator == "required" and isinstance(instance, dict):
        return [
            f"{_json_path(where + [field])}: required field missing"
            for field in expected
            if field not in instance
        ]
    if validator == "type":
        wanted = [t for t in ([expected] if isinstance(expected, str) else expected) if t != "null"]
        return [f"{_json_path(where)}: expected {' or '.join(wanted)}, got {_shown(instance, redact)}"]
    if validator in ("oneOf", "anyOf"):
        wanted = sorted({t for branch in expected for t in _branch_types(branch)} - {"null"})
        allowed = " or ".join(wanted) if wanted else "one of the allowed forms"
        return [f"{_json_path(where)}: expected {allowed}, got {_shown(instance, redact)}"]
    if validator == "enum":
        return [f"{_json_path(where)}: expected one of {expected}, got {_shown(instance, redact)}"]
    if validator == "pattern":
        return [f"{_json_path(where)}: {_shown(instance, redact)} does not match {expected!r}"]
    detail = f"{validator} {expected!r} not satisfied" if redact else error.message
    return [f"{_json_path(where)}: {_truncate(detail)}"]


def _branch_types(branch: dict) -> list[str]:
    """The JSON types a oneOf/anyOf branch accepts, for a readable message."""
    types = branch.get("type") if isinstance(branch, dict) else None
    if isinstance(types, str):
        return [types]
    return list(types) if isinstance(types, list) else []


def _json_path(parts: Iterable[Any]) -> str:
    """``$.spec.template.spec.containers[0].name``; odd keys as ``["checksum/config"]``."""
    out = "$"
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and _IDENTIFIER.match(part):
            out += f".{part}"
        else:
            out += f"[{json.dumps(str(part))}]"
    return out


def _type_name(value: Any) -> str:
    """JSON-ish type name of a Python value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    return type(value).__name__


def _shown(value: Any, redact: bool) -> str:
    """Type plus a short rendering of a scalar value, or only the type when redacting."""
    if redact or isinstance(value, (dict, list)):
        return _type_name(value)
    return f"{_type_name(value)} {_truncate(json.dumps(value, default=str))}"


def _truncate(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


