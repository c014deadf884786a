"""Strict JSON schemas for the custom resources chainops writes, from their published CRDs.

The CRDs in `crds/` are pinned byte for byte from the Go modules that publish them
(`crds/SOURCES.json`: module, version, path, sha256; `scripts/update_crds.py --check`
verifies them, `scripts/update_crds.py` refreshes them). Their `openAPIV3Schema` becomes
a JSON Schema (draft 2020-12) that is stricter than the API server on purpose: the API
server prunes unknown fields of a custom resource silently, so a typo (`intervall:`) would
apply and do nothing; here every object schema that lists its properties rejects any
other one. `metadata` is checked as the core ObjectMeta, as for built-in kinds. CEL rules
(`x-kubernetes-validations`) are not evaluated (no CEL engine here): the API server still
runs them at apply time.

kustomize's own kustomization.yaml has no CRD; its schema is written here.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import yaml

CRD_DIR = Path(__file__).with_name("crds")
K8S_DEFS = "https://kubernetes.io/api/_definitions.json#/$defs/"
_DROPPED = ("description", "default", "format", "example", "externalDocs")


def _strict(node: Any) -> Any:
    """One openAPIV3Schema node as JSON Schema, unknown properties rejected."""
    if isinstance(node, list):
        return [_strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED or key.startswith("x-kubernetes-"):
            continue
        if key == "properties":
            out[key] = {name: _strict(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not") and isinstance(value, dict):
            out[key] = _strict(value)
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = _strict(value)
        elif key != "nullable":
            out[key] = value
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if "properties" in node and "additionalProperties" not in node:
        out["additionalProperties"] = False
    if node.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


def crd_schema(crd: dict[str, Any], version: str) -> dict[str, Any]:
    """The strict top-level schema of one served version of a CustomResourceDefinition."""
    group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
    served = {v["name"]: v for v in crd["spec"]["versions"] if v.get("served")}
    root = _strict(served[version]["schema"]["openAPIV3Schema"])
    properties = root.setdefault("properties", {})
    properties["apiVersion"] = {"type": "string", "enum": [f"{group}/{version}"]}
    properties["kind"] = {"type": "string", "enum": [kind]}
    properties["metadata"] = {"$ref": K8S_DEFS + "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}
    properties.pop("status", None)  # written by the controller, never by chainops
    root["required"] = sorted({"apiVersion", "kind", "metadata", *root.get("required", [])})
    root["additionalProperties"] = False
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **root}


@functools.cache
def pinned_sources() -> tuple[dict[str, str], ...]:
    """The pinned CRDs (crds/SOURCES.json)."""
    return tuple(json.loads((CRD_DIR / "SOURCES.json").read_text(encoding="utf-8")))


KUSTOMIZE_KUSTOMIZATION: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {
        "apiVersion": {"type": "string", "enum": ["kustomize.config.k8s.io/v1beta1"]},
        "kind": {"type": "string", "enum": ["Kustomization"]},
        "resources": {"type": "array", "items": {"type": "string"}},
        "namespace": {"type": "string"},
    },
    "required": ["apiVersion", "kind", "resources"],
    "additionalProperties": False,
}


@functools.cache
def custom_schema(api_version: str, kind: str) -> dict[str, Any] | None:
    """The schema of a custom resource chainops writes (None: not one it knows)."""
    if (api_version, kind) == ("kustomize.config.k8s.io/v1beta1", "Kustomization"):
        return KUSTOMIZE_KUSTOMIZATION
    for source in pinned_sources():
        if (f"{source['group']}/{source['version_served']}", source["kind"]) == (api_version, kind):
            crd = yaml.load((CRD_DIR / source["file"]).read_bytes(), Loader=yaml.CSafeLoader)
            return crd_schema(crd, source["version_served"])
    return None


def known_kinds() -> list[tuple[str, str]]:
    """(apiVersion, kind) of every custom resource with a schema here."""
    kinds = [(f"{s['group']}/{s['version_served']}", s["kind"]) for s in pinned_sources()]
    return sorted([*kinds, ("kustomize.config.k8s.io/v1beta1", "Kustomization")])
