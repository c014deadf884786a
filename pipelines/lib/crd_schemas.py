"""Strict JSON schemas for the custom resources chainops writes (Flux, Argo CD,
prometheus-operator, sealed-secrets) and for kustomize's own kustomization.yaml.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

_K8S_DEFS = "https://kubernetes.io/api/_definitions.json#/$defs/"

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


