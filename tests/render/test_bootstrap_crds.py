"""Bootstrap objects against the published CRDs of Flux and Argo CD (pinned in
pipelines/lib/crds/), unknown fields rejected, and the repository credentials reference."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import jsonschema
import pytest

from pipelines.lib import crd_schemas
from pipelines.lib.manifests import validator_for
from tests.conftest import EXAMPLE_NAMES
from tests.yaml_reader import read_yaml, read_yaml_all

CORE_GROUPS = re.compile(r"^(v1|apps/v1|policy/v1|networking\.k8s\.io/v1|batch/v1|rbac\.authorization\.k8s\.io/v1)$")


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """Every example compiled once: the bootstrap objects and every rendered object."""
    from pipelines.cli import main

    root = tmp_path_factory.mktemp("crds")
    envs = root / "environments"
    import shutil

    from tests.conftest import EXAMPLES

    shutil.copytree(EXAMPLES, envs)
    assert main(["compile", "--home", str(root / "home"), "--environments", str(envs)]) == 0
    work = root / "work"
    import subprocess

    subprocess.run(["git", "clone", "-q", "-b", "main", str(root / "home" / "gitops.git"), str(work)], check=True)
    return work


def bootstrap(work: Path, env: str) -> list[dict]:
    return [d for d in read_yaml_all((work / "bootstrap" / f"{env}.yaml").read_text()) if d]


def problems(obj: dict) -> list[str]:
    return [i.message for i in validator_for().validate(obj, "bootstrap")]


def test_every_custom_resource_chainops_writes_has_a_pinned_crd(published):
    written = set()
    for path in published.rglob("*.yaml"):
        if ".git" in path.parts:
            continue
        for doc in read_yaml_all(path.read_text()):
            if isinstance(doc, dict) and "apiVersion" in doc and not CORE_GROUPS.match(doc["apiVersion"]):
                written.add((doc["apiVersion"], doc["kind"]))
    assert written, "no custom resources found"
    assert written <= set(crd_schemas.known_kinds()), written - set(crd_schemas.known_kinds())


@pytest.mark.parametrize("env", EXAMPLE_NAMES)
def test_bootstrap_validates_against_the_published_crds(published, env):
    objects = bootstrap(published, env)
    assert objects
    for obj in objects:
        schema = crd_schemas.custom_schema(obj["apiVersion"], obj["kind"])
        assert schema is not None
        # Second route: the pinned CRD's own openAPIV3Schema, as the API server reads it
        # (unknown fields allowed there: the server prunes them), accepts the object too.
        source = next(s for s in crd_schemas.pinned_sources() if s["kind"] == obj["kind"])
        crd = read_yaml((crd_schemas.CRD_DIR / source["file"]).read_text())
        raw = next(v for v in crd["spec"]["versions"] if v["name"] == source["version_served"])["schema"]["openAPIV3Schema"]
        body = {k: v for k, v in obj.items() if k != "metadata"}  # metadata is the core ObjectMeta's
        jsonschema.Draft7Validator({
            **raw,
            "properties": {k: v for k, v in raw["properties"].items() if k != "metadata"},
            "required": [r for r in raw.get("required", []) if r != "metadata"],
        }).validate(body)
        assert problems(obj) == [], (env, obj["kind"])


def test_unknown_and_misspelt_fields_are_rejected_where_the_api_server_would_prune_them(published):
    repo, kustomization = bootstrap(published, "staging")
    for obj, field in ((repo, "intervall"), (kustomization, "prunee")):
        broken = copy.deepcopy(obj)
        broken["spec"][field] = "1m"
        assert any(f"$.spec.{field}" in p or field in p for p in problems(broken)), problems(broken)
    broken = copy.deepcopy(repo)
    broken["spec"]["secretRef"]["nmae"] = "x"
    assert problems(broken), "an unknown field inside a nested object passed"


def test_fields_of_the_published_crd_that_chainops_does_not_write_are_still_known(published):
    """The schema is the CRD's, not a hand-written subset: a valid Flux field is accepted."""
    repo, kustomization = bootstrap(published, "staging")
    repo = copy.deepcopy(repo)
    repo["spec"]["suspend"] = True
    repo["spec"]["timeout"] = "60s"
    kustomization = copy.deepcopy(kustomization)
    kustomization["spec"]["force"] = False
    kustomization["spec"]["retryInterval"] = "2m"
    assert problems(repo) == [] and problems(kustomization) == []
    kustomization["spec"]["retryInterval"] = "two minutes"  # the CRD's duration pattern
    assert any("retryInterval" in p for p in problems(kustomization))


def test_flux_bootstrap_references_the_repository_credentials_secret(published):
    repo, kustomization = bootstrap(published, "staging")
    assert repo["spec"]["secretRef"] == {"name": "chainops-gitops-auth"}
    assert kustomization["spec"]["decryption"] == {"provider": "sops", "secretRef": {"name": "sops-age"}}
    assert "secretRef" not in bootstrap(published, "prod")[0]["spec"]  # Argo CD matches credentials by URL


def test_repository_secret_is_configurable_and_checked(run_cli, envs_dir, tmp_path):
    staging = envs_dir / "staging.yaml"
    text = staging.read_text()
    assert "gitops:\n" in text
    staging.write_text(text.replace("gitops:\n", "gitops:\n  repositorySecret: null\n", 1))
    home = tmp_path / "home"
    assert run_cli("compile", "staging", "--home", home, "--environments", envs_dir).code == 0
    import subprocess

    shown = subprocess.run(["git", "--git-dir", str(home / "gitops.git"), "show", "main:bootstrap/staging.yaml"],
                           capture_output=True, text=True, check=True).stdout
    assert "secretRef" in shown  # the Kustomization's decryption key
    assert next(read_yaml_all(shown))["spec"].get("secretRef") is None
    staging.write_text(text.replace("gitops:\n", "gitops:\n  repositorySecret: Bad_Name\n", 1))
    before = subprocess.run(["git", "--git-dir", str(home / "gitops.git"), "rev-parse", "main"], capture_output=True, text=True).stdout
    result = run_cli("compile", "staging", "--home", home, "--environments", envs_dir)
    assert result.code == 1
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert len(lines) == 1 and "staging.yaml" in lines[0] and "gitops.repositorySecret" in lines[0], result.err
    after = subprocess.run(["git", "--git-dir", str(home / "gitops.git"), "rev-parse", "main"], capture_output=True, text=True).stdout
    assert before == after
