"""`chainops compile` of the example environments, checked by independent routes.

Keys are decrypted with the sops binary itself (not chainops' sealer), addresses and
enodes derived with eth-keys' pure-Python backend (chainops uses coincurve), extraData
decoded by hand, objects validated with kubernetes_validate's own (slow) API.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import rlp
from eth_account import Account
from eth_keys import KeyAPI
from eth_keys.backends import NativeECCBackend

from pipelines.lib.manifests import KUBERNETES_VERSION
from tests.conftest import EXAMPLE_NAMES, EXAMPLES, REPO_ROOT, checkout, commit_count, git, venv_tool
from tests.key_helpers import secrets_of
from tests.yaml_reader import read_yaml

NATIVE_KEYS = KeyAPI(NativeECCBackend)
ENVIRONMENTS = ("dev", "seed", "staging")  # the SOPS examples (prod uses sealed-secrets)


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """Compile the examples once into a fresh home; return paths and the CLI output."""
    root = tmp_path_factory.mktemp("e2e")
    home = root / "home"
    envs = root / "environments"
    shutil.copytree(EXAMPLES, envs)
    out = subprocess.run(
        [venv_tool("chainops"), "compile", "--home", str(home), "--environments", str(envs)],
        capture_output=True, text=True, cwd=root, env={**os.environ, "CHAINOPS_CHARTS": str(REPO_ROOT / "chart_sources")},
    )
    assert out.returncode == 0, out.stderr
    work = checkout(home / "gitops.git", root / "work")
    return {"root": root, "home": home, "envs": envs, "work": work, "stdout": out.stdout}


def lock_of(work: Path, env: str) -> dict:
    return json.loads((work / "rendered" / env / "network.lock.json").read_text())


def test_compile_prints_hash_objects_and_commit_per_environment(compiled):
    lines = compiled["stdout"].strip().splitlines()
    assert [line.split(":")[0] for line in lines] == list(EXAMPLE_NAMES)
    for line, env in zip(lines, EXAMPLE_NAMES):
        lock = lock_of(compiled["work"], env)
        assert lock["genesisHash"] in line and "commit " in line
    assert commit_count(compiled["home"] / "gitops.git") == len(EXAMPLE_NAMES)


def test_second_run_is_unchanged_and_makes_no_commit(compiled, run_cli):
    before = git(compiled["home"] / "gitops.git", "rev-parse", "main")
    result = run_cli("compile", "--home", compiled["home"], "--environments", compiled["envs"])
    assert result.code == 0, result.err
    assert result.out.count("unchanged") == len(EXAMPLE_NAMES)
    assert git(compiled["home"] / "gitops.git", "rev-parse", "main") == before


def test_layout_matches_the_contract(compiled):
    work = compiled["work"]
    assert (work / ".sops.yaml").is_file()
    for env in EXAMPLE_NAMES:
        base = work / "rendered" / env
        for name in ("kustomization.yaml", "network.lock.json", "genesis.json"):
            assert (base / name).is_file()
        assert (work / "bootstrap" / f"{env}.yaml").is_file()
        listed = read_yaml((base / "kustomization.yaml").read_text())["resources"]
        on_disk = sorted(str(p.relative_to(base)) for p in base.glob("*/*.yaml"))
        assert sorted(listed) == on_disk
        for path in base.glob("*/*.yaml"):
            obj = read_yaml(path.read_text())
            assert path.name == f"{obj['kind'].lower()}-{obj['metadata']['name']}.yaml"


@pytest.mark.parametrize("env", EXAMPLE_NAMES)
def test_kustomize_builds_and_every_object_is_schema_valid(compiled, env):
    base = compiled["work"] / "rendered" / env
    built = subprocess.run(
        [venv_tool("kubectl"), "kustomize", str(base)], capture_output=True, text=True, check=True
    ).stdout
    # kustomize re-emits 0x-strings unquoted (YAML 1.2); PyYAML would read them as ints, so
    # compare identities here and validate the committed files themselves below.
    built_ids = sorted(
        (m.group(1), m.group(2))
        for m in re.finditer(r"^kind: (\S+)\n(?:.*\n)*?  name: (\S+)$", built, re.M)
    )
    files = [read_yaml(p.read_text()) for p in sorted(base.glob("*/*.yaml"))]
    assert built_ids == sorted((o["kind"], o["metadata"]["name"]) for o in files)
    kinds = {o["kind"] for o in files}
    assert {"Namespace", "ConfigMap", "StatefulSet", "Service"} <= kinds
    assert ("Secret" in kinds) != ("SealedSecret" in kinds), "one provider per environment"
    for obj in files:
        if obj["kind"] == "SealedSecret":  # a CRD: no built-in schema; test_sealed_secrets unseals them
            assert obj["apiVersion"] == "bitnami.com/v1alpha1" and obj["spec"]["encryptedData"]
            continue
        if obj["kind"] == "Secret":
            obj = {k: v for k, v in obj.items() if k not in ("sops", "data")}
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_unknown_field_would_be_rejected_by_the_same_validation():
    bad = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "labelz": {}}, "data": {}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_keys_in_secrets_match_lock_addresses_and_enodes(compiled, env):
    work, identity = compiled["work"], compiled["home"] / "age" / "identity.txt"
    lock = lock_of(work, env)
    secrets = secrets_of(work, env, identity)
    assert len(lock["nodes"]) == len([s for s in secrets if s.endswith("-keys")])
    for node in lock["nodes"]:
        data = secrets[node["secret"]]
        private = NATIVE_KEYS.PrivateKey(bytes.fromhex(data["nodekey"]))
        assert private.public_key.to_checksum_address() == node["address"]
        pubkey, host = node["enode"].removeprefix("enode://").split("@")
        assert pubkey == private.public_key.to_bytes().hex()
        namespace = read_yaml((EXAMPLES / f"{env}.yaml").read_text())["kubernetes"]["namespace"]
        assert host.startswith(f"{node['name']}.{node['role']}.{namespace}.svc.cluster.local:")
        if "keystore.json" in data:  # geth signers: the keystore unlocks to the same key
            assert Account.decrypt(json.loads(data["keystore.json"]), data["password"]) == private.to_bytes()
            assert data["address"] == node["address"]
    for account in lock["accounts"]:
        data = secrets[account["secret"]]
        key = Account.decrypt(json.loads(data["keystore.json"]), data["password"])
        assert NATIVE_KEYS.PrivateKey(key).public_key.to_checksum_address() == account["address"]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_extra_data_decodes_to_the_locked_validators(compiled, env):
    work = compiled["work"]
    lock = lock_of(work, env)
    genesis = json.loads((work / "rendered" / env / "genesis.json").read_text())
    extra = bytes.fromhex(genesis["extraData"][2:])
    validator_nodes = [n["address"] for n in lock["nodes"] if n["role"] == "validator"]
    if lock["consensus"] == "ethash":  # miners are not a validator set: nothing in extraData
        assert extra == b"" and lock["validators"] == [] and len(validator_nodes) == 3
        return
    if lock["consensus"] == "clique":
        assert len(extra) == 32 + 20 * len(validator_nodes) + 65 and extra[-65:] == bytes(65)
        signers = [extra[32 + 20 * i : 52 + 20 * i] for i in range(len(validator_nodes))]
    else:
        vanity, signers, vote, round_, seals = rlp.decode(extra)
        assert vanity == bytes(32) and vote == [] and round_ == b"" and seals == []
    decoded = ["0x" + s.hex() for s in signers]
    assert decoded == sorted(decoded), "validators must be in ascending address order"
    assert decoded == [a.lower() for a in lock["validators"]]
    assert sorted(decoded) == sorted(a.lower() for a in validator_nodes)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_genesis_hash_is_consistent_everywhere(compiled, env, run_cli):
    work = compiled["work"]
    lock = lock_of(work, env)
    result = run_cli("genesis-hash", work / "rendered" / env / "genesis.json")
    assert result.code == 0 and result.out.strip() == lock["genesisHash"]
    configmap = read_yaml((work / "rendered" / env / "network" / "configmap-genesis.yaml").read_text())
    assert configmap["metadata"]["annotations"]["chainops.io/genesis-hash"] == lock["genesisHash"]
    assert configmap["data"]["genesis.json"] == (work / "rendered" / env / "genesis.json").read_text()


def test_no_private_key_or_password_in_any_git_object(compiled):
    git_dir = compiled["home"] / "gitops.git"
    identity = compiled["home"] / "age" / "identity.txt"
    needles: set[bytes] = {identity.read_text().split("AGE-SECRET-KEY-")[1].split()[0].encode()}
    for env in ENVIRONMENTS:
        for data in secrets_of(compiled["work"], env, identity).values():
            for key in ("nodekey", "password"):
                if key in data:
                    needles |= {data[key].encode(), base64.b64encode(data[key].encode())}
            if "keystore.json" in data:
                private = Account.decrypt(json.loads(data["keystore.json"]), data["password"])
                needles |= {private.hex().encode(), base64.b64encode(private.hex().encode())}
    assert len(needles) > 20
    blobs = subprocess.run(
        ["git", "--git-dir", str(git_dir), "cat-file", "--batch-all-objects", "--batch"], capture_output=True, check=True
    ).stdout.lower()
    assert len(blobs) > 10_000
    leaked = [n for n in needles if n.lower() in blobs]
    assert leaked == []


def test_every_secret_file_is_sops_encrypted_for_the_pipeline_identity(compiled):
    recipient = (compiled["home"] / "age" / "identity.txt").read_text()
    for path in compiled["work"].glob("rendered/*/*/secret-*.yaml"):
        doc = read_yaml(path.read_text())
        assert doc["sops"]["age"][0]["recipient"] in recipient
        assert all(str(v).startswith("ENC[AES256_GCM,") for v in doc["data"].values())


def test_identity_file_is_private(compiled):
    identity = compiled["home"] / "age" / "identity.txt"
    assert identity.stat().st_mode & 0o777 == 0o600
    assert compiled["home"].stat().st_mode & 0o777 == 0o700
