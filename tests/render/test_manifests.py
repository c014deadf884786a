"""Tests of pipelines.lib.manifests: canonical YAML, strict schema validation, kustomize builds."""

from __future__ import annotations

import base64
import copy
import random
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.lib import kustomize, yaml_io
from pipelines.lib import manifests as m
from pipelines.lib.errors import ManifestError

LABELS = {"app.kubernetes.io/name": "besu", "app.kubernetes.io/instance": "staging"}


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# --------------------------------------------------------------------------- sample objects


def statefulset() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "validator", "namespace": "chain-staging", "labels": dict(LABELS)},
        "spec": {
            "replicas": 4,
            "serviceName": "validator",
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": dict(LABELS)},
            "template": {
                "metadata": {"labels": dict(LABELS), "annotations": {"checksum/config": "0" * 64}},
                "spec": {
                    "containers": [
                        {
                            "name": "besu",
                            "image": "hyperledger/besu:25.1.0",
                            "imagePullPolicy": "IfNotPresent",
                            "args": ["--genesis-file=/etc/genesis/genesis.json", "--rpc-http-enabled"],
                            "ports": [
                                {"name": "rpc", "containerPort": 8545},
                                {"name": "p2p", "containerPort": 30303, "protocol": "TCP"},
                            ],
                            "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": 2147483648}},
                            "readinessProbe": {"httpGet": {"path": "/readiness", "port": "rpc"}},
                            "volumeMounts": [
                                {"name": "data", "mountPath": "/data"},
                                {"name": "genesis", "mountPath": "/etc/genesis", "readOnly": True},
                            ],
                            "securityContext": {"runAsNonRoot": True, "allowPrivilegeEscalation": False},
                        }
                    ],
                    "volumes": [
                        {"name": "genesis", "configMap": {"name": "genesis"}},
                        {"name": "nodekey", "secret": {"secretName": "validator-0-keys", "defaultMode": 0o400}},
                    ],
                },
            },
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data"},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "20Gi"}}},
                }
            ],
        },
    }


def service() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "validator", "namespace": "chain-staging", "labels": dict(LABELS)},
        "spec": {
            "clusterIP": "None",
            "selector": dict(LABELS),
            "ports": [
                {"name": "rpc", "port": 8545, "targetPort": "rpc"},
                {"name": "p2p", "port": 30303, "targetPort": 30303, "protocol": "UDP"},
            ],
        },
    }


def configmap() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "genesis", "namespace": "chain-staging"},
        "data": {"genesis.json": '{\n  "config": {"chainId": 48720}\n}\n', "static-nodes.json": "[]"},
    }


def secret() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "validator-0-keys", "namespace": "chain-staging"},
        "type": "Opaque",
        "data": {"nodekey": b64("ab" * 32)},
    }


def namespace() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "chain-staging", "labels": {"a": "b"}}}


def networkpolicy() -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "p2p", "namespace": "chain-staging"},
        "spec": {
            "podSelector": {"matchLabels": dict(LABELS)},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [{"podSelector": {"matchLabels": dict(LABELS)}}],
                    "ports": [{"port": 30303, "protocol": "TCP"}, {"port": "rpc"}],
                }
            ],
        },
    }


def sops_secret() -> dict[str, Any]:
    """A Secret as `sops --encrypt --encrypted-regex '^(data|stringData)$'` leaves it."""
    obj = secret()
    obj["data"] = {
        "nodekey": "ENC[AES256_GCM,data:q8hZ2xk0Yw==,iv:3Lw8b6y2F2Q5Zq3o9m2m8Q==,tag:1nW0p8m5bQ==,type:str]",
        "password": "ENC[AES256_GCM,data:Zm9v,iv:YmFy,tag:YmF6,type:str]",
    }
    obj["sops"] = {
        "age": [{"recipient": "age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3290gq", "enc": "-----BEGIN AGE ENCRYPTED FILE-----\n...\n"}],
        "lastmodified": "2026-01-01T00:00:00Z",
        "mac": "ENC[AES256_GCM,data:abc,iv:def,tag:ghi,type:str]",
        "encrypted_regex": "^(data|stringData)$",
        "version": "3.11.0",
    }
    return obj


def argo_application() -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": "chain-staging", "namespace": "argocd"},
        "spec": {
            "project": "default",
            "source": {"repoURL": "https://git.example.com/gitops.git", "path": "rendered/staging", "targetRevision": "main"},
            "destination": {"server": "https://kubernetes.default.svc", "namespace": "chain-staging"},
            "syncPolicy": {"automated": {"prune": True, "selfHeal": True}, "syncOptions": ["CreateNamespace=true"]},
        },
    }


def flux_gitrepository() -> dict[str, Any]:
    return {
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "GitRepository",
        "metadata": {"name": "chainops", "namespace": "flux-system"},
        "spec": {"url": "ssh://git@git.example.com/gitops.git", "interval": "1m", "ref": {"branch": "main"}, "secretRef": {"name": "gitops-deploy-key"}},
    }


def flux_kustomization() -> dict[str, Any]:
    return {
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
        "kind": "Kustomization",
        "metadata": {"name": "chain-staging", "namespace": "flux-system"},
        "spec": {
            "interval": "10m",
            "path": "./rendered/staging",
            "prune": True,
            "sourceRef": {"kind": "GitRepository", "name": "chainops"},
            "decryption": {"provider": "sops", "secretRef": {"name": "sops-age"}},
        },
    }


def service_monitor() -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": "validator", "namespace": "chain-staging"},
        "spec": {"selector": {"matchLabels": dict(LABELS)}, "endpoints": [{"port": "metrics", "interval": "30s", "path": "/metrics"}]},
    }


def sealed_secret() -> dict[str, Any]:
    return {
        "apiVersion": "bitnami.com/v1alpha1",
        "kind": "SealedSecret",
        "metadata": {"name": "validator-0-keys", "namespace": "chain-staging"},
        "spec": {
            "encryptedData": {"nodekey": "AgBy3i4OJSWK+PiTySYZZA9rO43cGDEq"},
            "template": {"metadata": {"name": "validator-0-keys", "namespace": "chain-staging"}, "type": "Opaque"},
        },
    }


CORE_OBJECTS = [statefulset, service, configmap, secret, namespace, networkpolicy]
CUSTOM_OBJECTS = [argo_application, flux_gitrepository, flux_kustomization, service_monitor, sealed_secret]


@pytest.fixture(scope="module")
def validator() -> m.SchemaValidator:
    return m.validator_for()


def messages(issues: list[m.ValidationIssue]) -> list[str]:
    return [i.message for i in issues]


# --------------------------------------------------------------------------- core kinds


@pytest.mark.parametrize("make", CORE_OBJECTS, ids=lambda f: f.__name__)
def test_valid_core_objects_have_no_issues(validator: m.SchemaValidator, make) -> None:
    assert validator.validate(make()) == []


@pytest.mark.parametrize("make", CORE_OBJECTS + CUSTOM_OBJECTS, ids=lambda f: f.__name__)
def test_objects_valid_on_the_floor_version_are_valid_on_the_newest(make) -> None:
    newest = kubernetes_validate.utils.latest_version()
    assert m.validator_for(newest).validate(make()) == []


def test_unknown_field_is_rejected_by_json_path(validator: m.SchemaValidator) -> None:
    obj = statefulset()
    obj["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    issues = validator.validate(obj, "network/statefulset-validator.yaml")
    assert messages(issues) == [
        "$.spec.template.spec.containers[0].imagePullPolicyy: unknown field (did you mean 'imagePullPolicy'?)"
    ]
    assert (issues[0].path, issues[0].kind, issues[0].name) == ("network/statefulset-validator.yaml", "StatefulSet", "validator")
    assert str(issues[0]).startswith("network/statefulset-validator.yaml: StatefulSet/validator: $.spec.template")


def test_unknown_top_level_field_is_rejected(validator: m.SchemaValidator) -> None:
    obj = configmap()
    obj["datas"] = {}
    assert messages(validator.validate(obj)) == ["$.datas: unknown field (did you mean 'data'?)"]


def test_wrong_type_is_rejected(validator: m.SchemaValidator) -> None:
    obj = statefulset()
    obj["spec"]["replicas"] = "3"
    assert messages(validator.validate(obj)) == ['$.spec.replicas: expected integer, got string "3"']


def test_boolean_is_not_an_integer(validator: m.SchemaValidator) -> None:
    obj = statefulset()
    obj["spec"]["replicas"] = True
    assert messages(validator.validate(obj)) == ["$.spec.replicas: expected integer, got boolean true"]


def test_missing_required_field_is_rejected(validator: m.SchemaValidator) -> None:
    obj = statefulset()
    del obj["spec"]["template"]["spec"]["containers"][0]["name"]
    assert messages(validator.validate(obj)) == ["$.spec.template.spec.containers[0].name: required field missing"]


def test_int_or_string_rejects_objects(validator: m.SchemaValidator) -> None:
    obj = service()
    obj["spec"]["ports"][0]["targetPort"] = {"name": "rpc"}
    assert messages(validator.validate(obj)) == ["$.spec.ports[0].targetPort: expected integer or string, got object"]


def test_all_issues_are_reported_in_path_order(validator: m.SchemaValidator) -> None:
    obj = statefulset()
    obj["spec"]["replicas"] = "3"
    obj["metadata"]["labelz"] = {}
    paths = [msg.split(":")[0] for msg in messages(validator.validate(obj))]
    assert paths == ["$.metadata.labelz", "$.spec.replicas"]


def test_odd_keys_are_quoted_in_json_path(validator: m.SchemaValidator) -> None:
    obj = statefulset()
    obj["spec"]["template"]["metadata"]["annotations"]["checksum/config"] = 5
    assert messages(validator.validate(obj)) == [
        '$.spec.template.metadata.annotations["checksum/config"]: expected string, got integer 5'
    ]


def test_metadata_name_is_required(validator: m.SchemaValidator) -> None:
    obj = configmap()
    del obj["metadata"]["name"]
    assert messages(validator.validate(obj)) == [
        "$.metadata.name: required field missing (GitOps objects need a fixed name)"
    ]


def test_configmap_key_syntax_is_checked(validator: m.SchemaValidator) -> None:
    obj = configmap()
    obj["data"]["keys/validator.json"] = "{}"
    assert messages(validator.validate(obj)) == [
        "$.data[\"keys/validator.json\"]: invalid key (use letters, digits, '-', '_' or '.')"
    ]


def test_secret_data_must_be_base64(validator: m.SchemaValidator) -> None:
    obj = secret()
    obj["data"]["password"] = "not base64!"
    assert messages(validator.validate(obj)) == ["$.data.password: value is not valid base64"]


def test_secret_values_are_never_echoed(validator: m.SchemaValidator) -> None:
    obj = secret()
    obj["stringData"] = {"password": 918273645}
    obj["data"]["other"] = "s3cr3t-not-base64"
    text = " ".join(messages(validator.validate(obj)))
    assert "$.stringData.password: expected string, got integer" in text
    assert "918273645" not in text and "s3cr3t" not in text


def test_group_must_match_not_only_its_first_label(validator: m.SchemaValidator) -> None:
    obj = networkpolicy()
    obj["apiVersion"] = "networking.example.com/v1"
    assert messages(validator.validate(obj)) == ["no schema for networking.example.com/v1/NetworkPolicy"]


def test_unknown_kind_is_an_issue(validator: m.SchemaValidator) -> None:
    obj = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    assert messages(validator.validate(obj, "x/widget-w.yaml")) == ["no schema for example.com/v1/Widget"]
    assert validator.has_schema("apps/v1", "StatefulSet") and not validator.has_schema("example.com/v1", "Widget")


@pytest.mark.parametrize("obj", [[], "x", {"kind": "ConfigMap"}, {"apiVersion": "v1", "kind": ""}])
def test_malformed_objects_are_issues_not_crashes(validator: m.SchemaValidator, obj: Any) -> None:
    issues = validator.validate(obj)
    assert len(issues) == 1 and issues[0].message.startswith("$:")


def test_validator_for_is_cached() -> None:
    assert m.validator_for() is m.validator_for(m.KUBERNETES_VERSION)
    major_minor = ".".join(m.KUBERNETES_VERSION.split(".")[:2])
    assert m.validator_for("v" + major_minor) is m.validator_for()


def test_unsupported_kubernetes_version_is_refused() -> None:
    with pytest.raises(ManifestError, match="ships no strict schemas.*available: 1.25.0"):
        m.SchemaValidator("1.12.0")


# --------------------------------------------------------------------------- SOPS


def test_sops_secret_validates(validator: m.SchemaValidator) -> None:
    obj = sops_secret()
    before = copy.deepcopy(obj)
    assert validator.validate(obj) == []
    assert obj == before  # the caller's object is not modified


def test_sops_secret_with_unknown_metadata_field_is_rejected(validator: m.SchemaValidator) -> None:
    obj = sops_secret()
    obj["metadata"]["nmae"] = "x"
    assert messages(validator.validate(obj)) == ["$.metadata.nmae: unknown field (did you mean 'name'?)"]


def test_sops_secret_unencrypted_values_must_still_be_base64(validator: m.SchemaValidator) -> None:
    obj = sops_secret()
    obj["data"]["plain"] = "hello world"
    assert messages(validator.validate(obj)) == ["$.data.plain: value is not valid base64"]


def test_enc_values_without_sops_metadata_are_rejected(validator: m.SchemaValidator) -> None:
    obj = sops_secret()
    del obj["sops"]
    assert messages(validator.validate(obj)) == [
        "$.data.nodekey: value is not valid base64",
        "$.data.password: value is not valid base64",
    ]


def test_sops_block_that_is_not_a_mapping_is_an_unknown_field(validator: m.SchemaValidator) -> None:
    obj = sops_secret()
    obj["sops"] = "yes"
    assert "$.sops: unknown field" in messages(validator.validate(obj))


# --------------------------------------------------------------------------- custom resources


@pytest.mark.parametrize("make", CUSTOM_OBJECTS, ids=lambda f: f.__name__)
def test_custom_resources_validate(validator: m.SchemaValidator, make) -> None:
    assert validator.validate(make()) == []


@pytest.mark.parametrize("make", CUSTOM_OBJECTS, ids=lambda f: f.__name__)
def test_custom_resources_reject_unknown_spec_fields(validator: m.SchemaValidator, make) -> None:
    obj = make()
    obj["spec"]["prunee"] = True
    assert messages(validator.validate(obj)) == ["$.spec.prunee: unknown field" + (
        " (did you mean 'prune'?)" if obj["kind"] == "Kustomization" else ""
    )]


@pytest.mark.parametrize("make", CUSTOM_OBJECTS, ids=lambda f: f.__name__)
def test_custom_resources_use_strict_core_metadata(validator: m.SchemaValidator, make) -> None:
    obj = make()
    obj["metadata"]["labels"] = {"a": 1}
    assert messages(validator.validate(obj)) == ["$.metadata.labels.a: expected string, got integer 1"]


def test_flux_fields_follow_the_crd_patterns(validator: m.SchemaValidator) -> None:
    repo = flux_gitrepository()
    repo["spec"]["interval"] = "1 minute"
    repo["spec"]["url"] = "/srv/gitops.git"
    found = messages(validator.validate(repo))
    assert [msg.split(":")[0] for msg in found] == ["$.spec.interval", "$.spec.url"]
    ks = flux_kustomization()
    del ks["spec"]["prune"]
    ks["spec"]["sourceRef"]["kind"] = "HelmRepository"
    assert messages(validator.validate(ks)) == [
        "$.spec.prune: required field missing",
        '$.spec.sourceRef.kind: expected one of [\'OCIRepository\', \'GitRepository\', \'Bucket\', \'ExternalArtifact\'], got string "HelmRepository"',
    ]


def test_argo_application_requires_destination_and_project(validator: m.SchemaValidator) -> None:
    obj = argo_application()
    del obj["spec"]["project"]
    del obj["spec"]["source"]["repoURL"]
    assert messages(validator.validate(obj)) == [
        "$.spec.project: required field missing",
        "$.spec.source.repoURL: required field missing",
    ]


def test_kustomization_document_validates(validator: m.SchemaValidator) -> None:
    doc = kustomize.kustomization(["b.yaml", "a.yaml"], namespace="chain-staging")
    assert validator.validate(doc) == []
    doc["resource"] = []
    assert messages(validator.validate(doc)) == ["$.resource: unknown field (did you mean 'resources'?)"]


# --------------------------------------------------------------------------- cross-check with kubernetes_validate


def _invalid(make, mutate) -> dict[str, Any]:
    obj = make()
    mutate(obj)
    return obj


CROSS_CHECK = [
    statefulset(),
    service(),
    configmap(),
    secret(),
    namespace(),
    networkpolicy(),
    _invalid(statefulset, lambda o: o["spec"]["template"]["spec"]["containers"][0].update(imagePullPolicyy="x")),
    _invalid(statefulset, lambda o: o["spec"].update(replicas="3")),
    _invalid(statefulset, lambda o: o["spec"]["template"]["spec"]["containers"][0].pop("name")),
    _invalid(service, lambda o: o["spec"]["ports"][0].update(targetPort=[1])),
    _invalid(service, lambda o: o["spec"]["ports"][0].pop("port")),
    _invalid(configmap, lambda o: o["data"].update(n=1)),
    _invalid(networkpolicy, lambda o: o["spec"].update(podSelector={"matchLabelz": {}})),
    _invalid(namespace, lambda o: o.update(apiVersion="v2")),
    _invalid(secret, lambda o: o.update(immutable="yes")),
]


@pytest.mark.parametrize("obj", CROSS_CHECK, ids=range(len(CROSS_CHECK)))
def test_same_verdict_as_kubernetes_validate(validator: m.SchemaValidator, obj: dict[str, Any]) -> None:
    try:
        kubernetes_validate.validate(obj, m.KUBERNETES_VERSION, strict=True)
        official_valid = True
    except kubernetes_validate.ValidationError:
        official_valid = False
    except kubernetes_validate.SchemaNotFoundError:
        official_valid = False
    assert (validator.validate(obj) == []) is official_valid


# --------------------------------------------------------------------------- YAML

TRICKY = [
    "0123", "0o17", "0x1F", "1e3", "1E3", "-1.5e3", "6e9_", "1_000", ".5", "1.", "+1", "12:30", ".inf", ".NaN",
    "yes", "no", "on", "off", "y", "n", "Y", "N", "true", "False", "null", "Null", "~", "", " ", "  padded  ",
    "2024-01-01", "2024-01-01T00:00:00Z", "a: b", "- x", "# not a comment", "@x", "`x", "!x", "&x", "*x", "%x",
    "|", ">", "?", "=", "<<", "[a]", "{a: 1}", "{{ x }}", "{{ .Values.x }}", "'quoted'", '"dq"', "back\\slash",
    "tab\tinside", "line1\nline2", "line1\nline2\n", "trailing\n\n\n", "\nleading newline", "  indented\nx",
    "trailing space \nx", "crlf\r\nline", "ünïcødé ✓", "zero\x00byte", "bell\x07", "\u2028sep", "x" * 5000,
    " ".join(["word"] * 2000),
]


@pytest.mark.parametrize("value", TRICKY, ids=range(len(TRICKY)))
def test_tricky_strings_round_trip(value: str) -> None:
    doc = {"data": {"v": value, value: "as-key"} if value else {"v": value}}
    assert yaml_io.load_yaml(yaml_io.dump_yaml(doc)) == doc


def test_dump_is_sorted_and_deterministic() -> None:
    a = {"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "x", "labels": {"b": "2", "a": "1"}}}
    b = {"metadata": {"labels": {"a": "1", "b": "2"}, "name": "x"}, "apiVersion": "v1", "kind": "ConfigMap"}
    text = yaml_io.dump_yaml(a)
    assert text == yaml_io.dump_yaml(b) == yaml_io.dump_yaml(copy.deepcopy(a))
    assert text == "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  labels:\n    a: '1'\n    b: '2'\n  name: x\n"


def test_multi_line_strings_are_literal_blocks() -> None:
    text = yaml_io.dump_yaml({"data": {"genesis.json": '{\n  "chainId": 1\n}\n', "script": "a\nb"}})
    assert text == 'data:\n  genesis.json: |\n    {\n      "chainId": 1\n    }\n  script: |-\n    a\n    b\n'


def test_shared_objects_are_not_anchored() -> None:
    labels = {"app": "besu"}
    text = yaml_io.dump_yaml({"metadata": {"labels": labels}, "selector": {"matchLabels": labels}})
    assert "&" not in text and "*" not in text
    assert text.count("app: besu") == 2


def test_long_lines_are_not_folded() -> None:
    value = " ".join(["enode://" + "a" * 128 + "@validator-0:30303"] * 20)
    assert yaml_io.dump_yaml({"v": value}) == f"v: {value}\n"


def test_unserialisable_values_raise_manifest_error() -> None:
    with pytest.raises(ManifestError):
        yaml_io.dump_yaml({"v": object()})
    with pytest.raises(ManifestError):
        yaml_io.dump_yaml({1: "a", "b": "c"})


def test_load_yaml_accepts_bytes_and_rejects_bad_input() -> None:
    assert yaml_io.load_yaml(b"a: 1\nb: [x]\n") == {"a": 1, "b": ["x"]}
    with pytest.raises(ManifestError):
        yaml_io.load_yaml("a: [1\n")
    with pytest.raises(ManifestError):
        yaml_io.load_yaml("a: 1\n---\nb: 2\n")
    with pytest.raises(ManifestError):
        yaml_io.load_yaml("!!python/object/apply:os.system ['true']")
    assert yaml_io.load_yaml_all("a: 1\n---\n---\nb: 2\n") == [{"a": 1}, {"b": 2}]


json_scalars = st.none() | st.booleans() | st.integers() | st.text() | st.floats(allow_nan=False)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_dump_load_round_trip(value: Any) -> None:
    text = yaml_io.dump_yaml(value)
    assert yaml_io.load_yaml(text) == value
    assert yaml_io.dump_yaml(yaml_io.load_yaml(text)) == text


def _kustomize_dir(tmp_path: Path, objects: list[dict[str, Any]], namespace: str | None = None) -> Path:
    names = []
    for obj in objects:
        name = m.object_filename(obj)
        (tmp_path / name).write_text(yaml_io.dump_yaml(obj), encoding="utf-8")
        names.append(name)
    (tmp_path / "kustomization.yaml").write_text(yaml_io.dump_yaml(kustomize.kustomization(names, namespace)), encoding="utf-8")
    return tmp_path


def test_go_yaml_reads_our_strings_as_the_same_strings(tmp_path: Path) -> None:
    """kustomize (Go YAML) must read every value as the string we wrote: "1e3" must not become 1000."""
    rng = random.Random(20261127)
    alphabet = "0123456789.eE+-_xXoObB:yYnN~ =<tTrueFalsNl"
    values = sorted({"".join(rng.choice(alphabet) for _ in range(rng.randint(1, 6))) for _ in range(3000)})
    values += [v for v in TRICKY if "\x00" not in v and "\x07" not in v]
    data = {f"k{i:05d}": v for i, v in enumerate(values)}
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "tricky"}, "data": data}
    built = kustomize.kustomize_build(_kustomize_dir(tmp_path, [cm]))
    # BaseLoader keeps every scalar as its text, so a number Go re-emitted (1e3 -> 1000) shows.
    out = yaml.load(built, Loader=yaml.CBaseLoader)["data"]
    wrong = {data[k]: out.get(k) for k in data if out.get(k) != data[k]}
    assert wrong == {}


# --------------------------------------------------------------------------- file names and kustomize


def test_object_filename() -> None:
    assert m.object_filename(statefulset()) == "statefulset-validator.yaml"
    assert m.object_filename(networkpolicy()) == "networkpolicy-p2p.yaml"
    assert m.object_filename({"kind": "ConfigMap", "metadata": {"name": "a.b-c"}}) == "configmap-a.b-c.yaml"


@pytest.mark.parametrize(
    "obj",
    [
        {"kind": "ConfigMap", "metadata": {"name": "Genesis"}},
        {"kind": "ConfigMap", "metadata": {"name": "../x"}},
        {"kind": "ConfigMap", "metadata": {"name": "a/b"}},
        {"kind": "ConfigMap", "metadata": {"name": ""}},
        {"kind": "ConfigMap", "metadata": {"name": "-x"}},
        {"kind": "ConfigMap", "metadata": {"name": "a" * 254}},
        {"kind": "ConfigMap", "metadata": {"name": "a" * 250}},  # valid name, file name too long
        {"kind": "ConfigMap", "metadata": {}},
        {"kind": "../ConfigMap", "metadata": {"name": "x"}},
        {"metadata": {"name": "x"}},
    ],
)
def test_object_filename_refuses_bad_names(obj: dict[str, Any]) -> None:
    with pytest.raises(ManifestError):
        m.object_filename(obj)


def test_kustomization_document() -> None:
    assert kustomize.kustomization(["b.yaml", "a.yaml"], "chain-staging") == {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": "chain-staging",
        "resources": ["a.yaml", "b.yaml"],
    }
    assert "namespace" not in kustomize.kustomization(["a.yaml"])
    with pytest.raises(ManifestError):
        kustomize.kustomization("a.yaml")
    with pytest.raises(ManifestError, match="duplicate"):
        kustomize.kustomization(["a.yaml", "a.yaml"])


def test_kustomize_build_returns_every_object(tmp_path: Path) -> None:
    built = kustomize.kustomize_build(_kustomize_dir(tmp_path, [configmap(), service()], namespace="chain-prod"))
    docs = yaml_io.load_yaml_all(built)
    assert sorted((d["kind"], d["metadata"]["name"], d["metadata"]["namespace"]) for d in docs) == [
        ("ConfigMap", "genesis", "chain-prod"),
        ("Service", "validator", "chain-prod"),
    ]
    assert next(d for d in docs if d["kind"] == "ConfigMap")["data"] == configmap()["data"]


def test_kustomize_build_keeps_sops_secrets_intact(tmp_path: Path) -> None:
    built = yaml_io.load_yaml_all(kustomize.kustomize_build(_kustomize_dir(tmp_path, [sops_secret()])))
    assert built == [sops_secret()]


def test_kustomize_build_missing_resource_is_a_manifest_error(tmp_path: Path) -> None:
    _kustomize_dir(tmp_path, [configmap()])
    (tmp_path / "kustomization.yaml").write_text(yaml_io.dump_yaml(kustomize.kustomization(["configmap-genesis.yaml", "gone.yaml"])))
    with pytest.raises(ManifestError, match="gone.yaml"):
        kustomize.kustomize_build(tmp_path)


def test_kustomize_build_of_a_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="not a directory"):
        kustomize.kustomize_build(tmp_path / "nope")


def test_kubectl_binary_prefers_the_virtualenv() -> None:
    venv_kubectl = Path(sys.executable).parent / "kubectl"
    if venv_kubectl.exists():
        assert kustomize.kubectl_binary() == str(venv_kubectl)
    else:
        assert Path(kustomize.kubectl_binary()).name == "kubectl"
