"""Property-based: Hypothesis writes environment files (mostly valid, each field sometimes
hostile) and chainops must either refuse the file with clean, one-line problems naming
the file, or compile it into objects that validate against the Kubernetes schemas and
re-render byte for byte from the committed state. Free-form text (Jinja2, YAML structure,
any Unicode) must come out as exactly the same string.

Compiles in memory with the `plaintext` provider (allowPlaintextSecrets), so no sops
process runs; the sealing providers are covered elsewhere."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from pipelines.lib.config import ConfigError, parse_environment, shown_path
from pipelines.lib.errors import GuardError
from pipelines.lib.keys import KeyPolicyError
from pipelines.lib.layout import env_dir
from pipelines.lib.manifests import validator_for
from pipelines.lib.model import CompileContext, ExistingEnvironment, PublishTarget
from pipelines.lib.pipeline import compile_environment
from pipelines.lib.render import RenderError
from pipelines.lib.sealing import AgeIdentity
from pipelines.lib.stages.validate import ManifestValidationError
from pipelines.lib.yaml_io import load_yaml_all
from tests.conftest import REPO_ROOT
from tests.yaml_reader import read_yaml

PROFILES = [("besu", "qbft"), ("besu", "ibft2"), ("geth", "clique"), ("geth", "ethash")]
HOSTILE_TEXT = [
    "{{ 7 * 7 }}", "{% for x in range(9) %}{{ x }}{% endfor %}", "{{ ''.__class__.__mro__ }}", "a: b", "- x",
    "x\nkind: Secret\n---\nkind: Namespace", "---", "'\"`$(id)`", "${HOME}", "\u202egnp.exe", "", " ", "~", "null",
    "0o17", "1e3", "yes", "@x", "&a *a", "!!python/object:os.system",
]
free_text = st.one_of(st.sampled_from(HOSTILE_TEXT), st.text(max_size=30))
dns_label = st.from_regex(r"[a-z]([a-z0-9-]{0,14}[a-z0-9])?", fullmatch=True)
host = st.builds(lambda a, b: f"{a}.{b}.example.com", dns_label, dns_label)
balance = st.one_of(
    st.builds(lambda n: f"{n} wei", st.integers(0, 10**30)),
    st.builds(lambda n, u: f"{n} {u}", st.integers(0, 10**6), st.sampled_from(["ether", "gwei", "wei"])),
)

BAD = {
    "count": st.sampled_from([0, -1, 65, 10**30, "2", 2.0, True, None]),
    "chainId": st.sampled_from([0, -7, 2**64, "48720", 1.5, None, [1]]),
    "balance": st.sampled_from(["5 eth", "-1", "1.5 wei", "1 ether ether", [], {"a": 1}]),
    "quantity": st.one_of(free_text, st.sampled_from(["20GB", "-1Gi", "1.5.5Gi"])),
}


@st.composite
def environment_documents(draw: st.DrawFn) -> tuple[str, dict[str, Any], dict[str, str]]:
    """(file name, document, the free-text annotations it carries)."""

    def bad() -> bool:  # each field is hostile about one time in 25
        return draw(st.integers(0, 24)) == 7  # not 0: Hypothesis favours boundary values

    client, consensus = draw(st.sampled_from(PROFILES))
    name = draw(free_text) if bad() else draw(st.from_regex(r"[a-z][a-z0-9-]{0,10}[a-z0-9]", fullmatch=True))
    network: dict[str, Any] = {"chainId": draw(st.integers(1, 2**53 - 1)), "client": client, "consensus": consensus}
    if bad():
        network["chainId"] = draw(BAD["chainId"])
    if bad():
        network["consensus"] = draw(st.sampled_from(["qbft", "clique", "pow", ""]))
    if draw(st.booleans()):
        network["gasLimit"] = draw(st.integers(5000, 10**9))
    if consensus != "ethash" and draw(st.booleans()):
        network["blockPeriodSeconds"] = draw(st.integers(1, 60))
    nodes: dict[str, Any] = {"validators": draw(st.integers(1, 3)), "rpc": draw(st.integers(0, 2))}
    if client == "geth":
        nodes["bootnodes"] = draw(st.integers(0, 1))
    if bad():
        nodes[draw(st.sampled_from(["validators", "rpc"]))] = draw(BAD["count"])
    if bad():
        nodes["archive"] = 1
    accounts = []
    for _ in range(draw(st.integers(0, 2))):
        entry: dict[str, Any] = (
            {"name": draw(st.sampled_from(["faucet", "ops", "treasury-1"]))}
            if draw(st.booleans())
            else {"address": draw(st.from_regex(r"0x[0-9a-fA-F]{40}", fullmatch=True))}
        )
        entry["balance"] = draw(BAD["balance"]) if bad() else draw(balance)
        accounts.append(entry)
    kubernetes: dict[str, Any] = {"namespace": draw(free_text) if bad() else draw(dns_label)}
    if draw(st.booleans()):
        kubernetes["storage"] = {"size": draw(BAD["quantity"]) if bad() else draw(st.sampled_from(["1Gi", "500Mi", "1Ti", "20Gi"]))}
    annotations: dict[str, str] = {}
    if draw(st.booleans()):
        kubernetes["rpcIngress"] = {"host": draw(free_text) if bad() else draw(host)}
        if client == "besu":
            keys = draw(st.lists(st.sampled_from(["example.com/a", "example.com/b", "note"]), unique=True, max_size=3))
            annotations = {key: draw(free_text) for key in keys}
    secrets: dict[str, Any] = {"provider": "plaintext", "allowPlaintextSecrets": not bad()}
    document: dict[str, Any] = {
        "apiVersion": "chainops/v2" if bad() else "chainops/v1",
        "network": network,
        "nodes": nodes,
        "accounts": accounts,
        "ethstats": {"enabled": draw(st.booleans())},
        "kubernetes": kubernetes,
        "gitops": {"controller": draw(st.sampled_from(["flux", "argocd"])), "secrets": secrets},
    }
    if annotations:
        document["values"] = {"besu-node": {"rpc": {"ingress": {"annotations": annotations}}}}
    if bad():
        document["images"] = {client: draw(free_text)}
    if bad():
        document[draw(st.sampled_from(["helm", "hooks", "Network"]))] = draw(free_text)
    return name, document, annotations


@pytest.fixture(scope="module")
def ctx(tmp_path_factory) -> CompileContext:
    home = tmp_path_factory.mktemp("property-home")
    target = PublishTarget(str(home / "gitops.git"), "main")
    return CompileContext(REPO_ROOT / "chart_sources", AgeIdentity.load_or_create(home), target)


@settings(
    max_examples=50,
    deadline=None,
    derandomize=True,  # the same examples on every run: a bounded, reproducible CI test
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(environment_documents())
def test_any_environment_file_is_refused_cleanly_or_compiles_valid_and_reproducible(ctx, generated):
    name, document, annotations = generated
    source = shown_path(Path(f"environments/{name}.yaml"))
    text = yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
    try:
        config = parse_environment(name, text, source)
    except ConfigError as exc:
        assert exc.problems
        for problem in exc.problems:
            assert problem.startswith(f"{source}: ") and "\n" not in problem and len(problem) < 700, problem
        event("refused with a clean ConfigError")
        return
    existing = ExistingEnvironment(name)
    try:
        first = compile_environment(config, existing, ctx)
    except RenderError as exc:
        # Rules that need the rendered network (an RPC Ingress needs RPC nodes) refuse at
        # render time; still one clean line naming the file and the field.
        assert str(exc).startswith(f"{source}: ") and "\n" not in str(exc), exc
        event("refused at render time with a clean RenderError")
        return
    except (ManifestValidationError, KeyPolicyError, GuardError) as exc:  # pragma: no cover - reported
        pytest.fail(f"a file that passed validation failed to compile: {exc}")

    validator = validator_for()
    objects = 0
    for path, data in first.files.items():
        if not path.startswith((env_dir(name), "bootstrap/")) or not path.endswith(".yaml") or path.endswith("kustomization.yaml"):
            continue
        for obj in load_yaml_all(data):
            if path.startswith(env_dir(name)):
                assert validator.has_schema(obj["apiVersion"], obj["kind"]), path
            if validator.has_schema(obj["apiVersion"], obj["kind"]):
                assert validator.validate(obj, path) == [], path
                objects += 1
    assert objects >= first.object_count
    lock = json.loads(first.files[env_dir(name) + "network.lock.json"])
    assert len(lock["nodes"]) == config.spec.nodes.validators + config.spec.nodes.rpc + config.bootnode_count
    if annotations:
        ingress = [read_yaml(d) for p, d in first.files.items() if "/ingress-" in p]
        assert ingress and all(i["metadata"].get("annotations", {}) == annotations for i in ingress)

    again = compile_environment(config, ExistingEnvironment(name, dict(first.files)), ctx)
    assert again.files == first.files, "a re-render from the committed state must give the same bytes"
    assert again.generated_keys == (), "keys are generated once"
    event("compiled, schema-valid and reproducible")
