"""docs/environment-file.md is generated from the models and never stale; it names every field."""

from __future__ import annotations

import re

from pipelines.lib.config import EnvironmentSpec
from pipelines.lib.env_reference import render
from tests.conftest import REPO_ROOT


def test_the_environment_file_reference_is_the_generated_one():
    committed = (REPO_ROOT / "docs" / "environment-file.md").read_text()
    assert committed == render(), "stale: python -m pipelines.lib.env_reference > docs/environment-file.md"


def test_the_reference_names_every_field_the_models_accept():
    documented = set(re.findall(r"^\| `([^`]+)` \|", render(), re.M))
    assert {name for name in EnvironmentSpec.model_fields} <= documented
    assert {"network.chainId", "accounts[].balance", "kubernetes.rpcIngress.tlsSecretName", "gitops.secrets.ageRecipients"} <= documented
