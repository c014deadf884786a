"""Provider `sealed-secrets`: SealedSecrets sealed offline, unsealed here by the controller's
algorithm (pycryptodome, independent of chainops' `cryptography` code), strict scope,
HMAC-based idempotency, key recovery from the escrow, certificate path rules."""

from __future__ import annotations

import base64
import datetime
import json
import os
import secrets
import subprocess
from pathlib import Path

import pytest
from eth_keys import KeyAPI
from eth_keys.backends import NativeECCBackend

from pipelines.lib.config import ConfigError, parse_environment
from pipelines.lib.sealed_secrets import (
    HMAC_ANNOTATION,
    CertificateError,
    SealedSecretsSealer,
    load_certificate,
    resolve_cert_path,
)
from pipelines.lib.sealing import SealingError, SealRequest
from tests.conftest import checkout, commit_count, git, venv_tool
from tests.key_helpers import (
    UnsealError,
    committed_secrets,
    controller_unseal,
    make_controller_key,
    open_escrow_file,
)
from tests.yaml_reader import read_yaml

NATIVE = KeyAPI(NativeECCBackend)


@pytest.fixture(scope="module")
def controller():
    return make_controller_key()


@pytest.fixture
def sealer(controller, tmp_path):
    (tmp_path / "cert.pem").write_bytes(controller.cert_pem)
    return SealedSecretsSealer(load_certificate(tmp_path / "cert.pem", "environments/x.yaml"), secrets.token_bytes(32))


def make_secret(name: str = "validator-0-keys", namespace: str = "chain-x") -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app.kubernetes.io/instance": "x"}},
        "type": "Opaque",
        "data": {"nodekey": base64.b64encode(secrets.token_hex(32).encode()).decode()},
        "stringData": {"password": "pw-" + secrets.token_hex(8)},
    }


def test_round_trip_through_the_controller_algorithm(sealer, controller):
    secret = make_secret()
    sealed = read_yaml(sealer.seal(secret))
    assert sealed["apiVersion"] == "bitnami.com/v1alpha1" and sealed["kind"] == "SealedSecret"
    assert sealed["metadata"]["annotations"][HMAC_ANNOTATION].startswith("hmac-sha256:")
    assert "sealedsecrets.bitnami.com/namespace-wide" not in sealed["metadata"]["annotations"]  # strict scope
    unsealed = controller_unseal(sealed, controller.private_pem)
    expected = dict(secret["data"], password=base64.b64encode(secret["stringData"]["password"].encode()).decode())
    assert unsealed["data"] == expected
    assert unsealed["metadata"] == secret["metadata"] and unsealed["type"] == "Opaque"
    raw = base64.b64decode(sealed["spec"]["encryptedData"]["nodekey"])
    assert int.from_bytes(raw[:2], "big") == 256, "uint16 length prefix of a 2048-bit RSA-OAEP block"


@pytest.mark.parametrize("field", ["namespace", "name"])
def test_moving_a_sealed_secret_breaks_it(sealer, controller, field):
    sealed = read_yaml(sealer.seal(make_secret()))
    moved = json.loads(json.dumps(sealed))
    moved["metadata"][field] = "elsewhere"
    with pytest.raises(UnsealError):
        controller_unseal(moved, controller.private_pem)
    widened = json.loads(json.dumps(sealed))  # claiming a wider scope does not help either
    widened["metadata"]["annotations"]["sealedsecrets.bitnami.com/namespace-wide"] = "true"
    with pytest.raises(UnsealError):
        controller_unseal(widened, controller.private_pem)


def test_another_controller_key_cannot_unseal(sealer):
    sealed = read_yaml(sealer.seal(make_secret()))
    with pytest.raises(UnsealError):
        controller_unseal(sealed, make_controller_key().private_pem)


def test_unchanged_plaintext_keeps_the_committed_bytes(sealer, controller, tmp_path):
    secret = make_secret()
    first = sealer.seal(secret)
    assert sealer.seal(secret, first) == first
    assert sealer.seal_requests([SealRequest(secret, first)]) == [first]
    assert sealer.seal(secret) != first, "fresh session keys: sealing twice gives new ciphertext"
    changed = json.loads(json.dumps(secret))
    changed["stringData"]["password"] = "other"
    assert sealer.seal(changed, first) != first
    relabelled = json.loads(json.dumps(secret))
    relabelled["metadata"]["labels"]["tier"] = "x"
    assert sealer.seal(relabelled, first) != first
    # The HMAC key is the pipeline's: another key (another pipeline) does not trust the annotation.
    other = SealedSecretsSealer(sealer.certificate, secrets.token_bytes(32))
    assert other.seal(secret, first) != first
    # A new controller certificate re-seals.
    (tmp_path / "new.pem").write_bytes(make_controller_key().cert_pem)
    rotated = SealedSecretsSealer(load_certificate(tmp_path / "new.pem", "x"), sealer._key)
    assert rotated.seal(secret, first) != first


def test_no_plaintext_in_the_sealed_object(sealer):
    secret = make_secret()
    sealed = sealer.seal(secret)
    nodekey = secret["data"]["nodekey"]
    for value in (nodekey.encode(), base64.b64decode(nodekey), secret["stringData"]["password"].encode()):
        assert value not in sealed


def test_expired_certificate_refuses_to_seal(controller, tmp_path):
    expired_key = make_controller_key(not_after=datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=1))
    (tmp_path / "expired.pem").write_bytes(expired_key.cert_pem)
    expired = SealedSecretsSealer(load_certificate(tmp_path / "expired.pem", "environments/x.yaml"), secrets.token_bytes(32))
    with pytest.raises(SealingError, match="environments/x.yaml: gitops.secrets.sealedSecretsCert: the certificate expired on"):
        expired.seal(make_secret())


@pytest.mark.parametrize(
    "value",
    ["/etc/ssl/cert.pem", "../outside.pem", "certs/../../outside.pem", "~/cert.pem", "certs\\cert.pem", ".hidden/cert.pem", "./cert.pem", ""],
)
def test_path_tricks_are_refused_by_validation(value):
    text = f"""apiVersion: chainops/v1
network: {{chainId: 7}}
kubernetes: {{namespace: chain-x}}
gitops: {{secrets: {{provider: sealed-secrets, sealedSecretsCert: {json.dumps(value)}}}}}
"""
    with pytest.raises(ConfigError) as info:
        parse_environment("x", text, "environments/x.yaml")
    assert any("environments/x.yaml: gitops.secrets.sealedSecretsCert" in p for p in info.value.problems), info.value.problems


def test_symlink_out_of_the_environments_directory_is_refused(tmp_path, controller):
    envs = tmp_path / "environments"
    (envs / "certs").mkdir(parents=True)
    outside = tmp_path / "outside.pem"
    outside.write_bytes(controller.cert_pem)
    (envs / "certs" / "link.pem").symlink_to(outside)
    with pytest.raises(CertificateError, match="leads outside"):
        resolve_cert_path(envs, "certs/link.pem", "environments/x.yaml")
    (envs / "certs" / "inside.pem").write_bytes(controller.cert_pem)
    (envs / "certs" / "ok.pem").symlink_to(envs / "certs" / "inside.pem")
    assert resolve_cert_path(envs, "certs/ok.pem", "x") == (envs / "certs" / "inside.pem").resolve()
    with pytest.raises(CertificateError, match="does not exist"):
        resolve_cert_path(envs, "certs/missing.pem", "x")
    with pytest.raises(CertificateError, match="not a regular file"):
        resolve_cert_path(envs, "certs", "x")


def test_unusable_certificates_are_refused(tmp_path):
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    with pytest.raises(CertificateError, match="is not a PEM X.509 certificate"):
        load_certificate(tmp_path / "junk.pem", "environments/x.yaml")
    small = make_controller_key(bits=1024)
    (tmp_path / "small.pem").write_bytes(small.cert_pem)
    with pytest.raises(CertificateError, match="at least 2048"):
        load_certificate(tmp_path / "small.pem", "environments/x.yaml")


# --------------------------------------------------------------------------- compile


def sealed_env(envs_dir: Path, controller, name: str = "staging") -> Path:
    """Turn an example environment into a sealed-secrets one with the controller's cert."""
    (envs_dir / "certs").mkdir(exist_ok=True)
    (envs_dir / "certs" / "controller.pem").write_bytes(controller.cert_pem)
    path = envs_dir / f"{name}.yaml"
    path.write_text(path.read_text().replace("provider: sops", "provider: sealed-secrets\n    sealedSecretsCert: certs/controller.pem"))
    return path


def push_edit(git_dir: Path, tmp_path: Path, *paths: str) -> None:
    """A person deletes files in the GitOps repository (clone, git rm, push)."""
    work = checkout(git_dir, tmp_path / f"edit-{len(list(tmp_path.iterdir()))}")
    subprocess.run(["git", "-C", str(work), "rm", "-q", *paths], check=True)
    subprocess.run(["git", "-C", str(work), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "edit"], check=True)
    subprocess.run(["git", "-C", str(work), "push", "-q", "origin", "main"], check=True)


def tree(git_dir: Path, prefix: str) -> dict[str, str]:
    lines = git(git_dir, "ls-tree", "-r", "main", prefix).splitlines()
    return {line.split("\t")[1]: line.split()[2] for line in lines}


def test_compile_with_sealed_secrets_end_to_end(run_cli, envs_dir, tmp_path, controller):
    sealed_env(envs_dir, controller)
    home = tmp_path / "home"
    git_dir = home / "gitops.git"
    first = run_cli("compile", "staging", "--home", home, "--environments", envs_dir)
    assert first.code == 0, first.err
    work = checkout(git_dir, tmp_path / "work")
    base = work / "rendered" / "staging"
    assert list(base.glob("*/secret-*.yaml")) == []
    sealed_files = sorted(base.glob("*/sealedsecret-*.yaml"))
    lock = json.loads((base / "network.lock.json").read_text())
    names = {p.name.removeprefix("sealedsecret-").removesuffix(".yaml") for p in sealed_files}
    assert {n["secret"] for n in lock["nodes"] + lock["accounts"]} <= names  # plus shared ones (ethstats)
    assert (base / "keys.escrow.age").is_file()
    listed = read_yaml((base / "kustomization.yaml").read_text())["resources"]
    assert "keys.escrow.age" not in listed and all(str(p.relative_to(base)) in listed for p in sealed_files)
    built = subprocess.run([venv_tool("kubectl"), "kustomize", str(base)], capture_output=True, text=True, check=True).stdout
    assert built.count("kind: SealedSecret") == len(sealed_files) and "kind: Secret\n" not in built
    bootstrap = (work / "bootstrap" / "staging.yaml").read_text()
    assert "decryption" not in bootstrap, "no SOPS decryption for a sealed-secrets environment"

    # Every node key, unsealed as the controller would, matches the lock.
    found = committed_secrets(work, "staging", home / "age" / "identity.txt", controller)
    for node in lock["nodes"]:
        key = NATIVE.PrivateKey(bytes.fromhex(found[node["secret"]]["nodekey"]))
        assert key.public_key.to_checksum_address() == node["address"]
        assert node["enode"].startswith(f"enode://{key.public_key.to_bytes().hex()}@")
    escrow = open_escrow_file(base / "keys.escrow.age", home / "age" / "identity.txt")
    assert {n["name"]: found[n["secret"]]["nodekey"] for n in lock["nodes"]} == {
        n["name"]: escrow["keys"][n["name"]]["privateKey"] for n in lock["nodes"]
    }

    # Nothing changed: no commit, every file byte-identical.
    before = tree(git_dir, "rendered/staging")
    again = run_cli("compile", "staging", "--home", home, "--environments", envs_dir)
    assert again.code == 0 and "unchanged" in again.out
    assert commit_count(git_dir) == 1 and tree(git_dir, "rendered/staging") == before

    # A new controller certificate re-seals every Secret; no key changes.
    (envs_dir / "certs" / "controller.pem").write_bytes((new := make_controller_key()).cert_pem)
    assert run_cli("compile", "staging", "--home", home, "--environments", envs_dir).code == 0
    after = tree(git_dir, "rendered/staging")
    assert all(after[p] != before[p] for p in before if "/sealedsecret-" in p)
    assert after["rendered/staging/network.lock.json"] == before["rendered/staging/network.lock.json"]
    rewired = committed_secrets(checkout(git_dir, tmp_path / "work2"), "staging", home / "age" / "identity.txt", new)
    assert rewired == found


def test_sealed_secrets_recover_keys_only_from_the_escrow(run_cli, envs_dir, tmp_path, controller):
    sealed_env(envs_dir, controller)
    home = tmp_path / "home"
    git_dir = home / "gitops.git"
    assert run_cli("compile", "staging", "--home", home, "--environments", envs_dir).code == 0
    lock_before = git(git_dir, "show", "main:rendered/staging/network.lock.json")
    # Lost SealedSecrets are sealed again from the escrow (same keys).
    push_edit(git_dir, tmp_path, "rendered/staging/besu-node/sealedsecret-rpc-0-keys.yaml")
    restored = run_cli("compile", "staging", "--home", home, "--environments", envs_dir)
    assert restored.code == 0, restored.err
    assert git(git_dir, "show", "main:rendered/staging/network.lock.json") == lock_before
    work = checkout(git_dir, tmp_path / "work")
    rpc0 = next(n for n in json.loads(lock_before)["nodes"] if n["name"] == "rpc-0")
    data = committed_secrets(work, "staging", home / "age" / "identity.txt", controller)["rpc-0-keys"]
    assert NATIVE.PrivateKey(bytes.fromhex(data["nodekey"])).public_key.to_checksum_address() == rpc0["address"]
    # Without the escrow the keys cannot be read back: refused, nothing committed, nothing regenerated.
    push_edit(git_dir, tmp_path, "rendered/staging/keys.escrow.age")
    commits = commit_count(git_dir)
    refused = run_cli("compile", "staging", "--home", home, "--environments", envs_dir)
    assert refused.code == 1 and "refusing to generate a new key" in refused.err and "keys.escrow.age" in refused.err
    assert commit_count(git_dir) == commits


def test_certificate_outside_the_environments_directory_fails_cleanly(run_cli, envs_dir, tmp_path, controller):
    outside = tmp_path / "outside.pem"
    outside.write_bytes(controller.cert_pem)
    path = sealed_env(envs_dir, controller)
    (envs_dir / "certs" / "controller.pem").unlink()
    os.symlink(outside, envs_dir / "certs" / "controller.pem")
    home = tmp_path / "home"
    result = run_cli("compile", "staging", "--home", home, "--environments", envs_dir)
    assert result.code == 1
    assert f"{path}: gitops.secrets.sealedSecretsCert: 'certs/controller.pem' leads outside" in result.err
    assert commit_count(home / "gitops.git") == 0


def test_switching_providers_keeps_every_key(run_cli, envs_dir, tmp_path, controller):
    home = tmp_path / "home"
    git_dir = home / "gitops.git"
    assert run_cli("compile", "staging", "--home", home, "--environments", envs_dir).code == 0
    lock = git(git_dir, "show", "main:rendered/staging/network.lock.json")
    sealed_env(envs_dir, controller)
    switched = run_cli("compile", "staging", "--home", home, "--environments", envs_dir)
    assert switched.code == 0, switched.err
    assert git(git_dir, "show", "main:rendered/staging/network.lock.json") == lock
    files = tree(git_dir, "rendered/staging")
    assert not any("/secret-" in p for p in files) and any("/sealedsecret-" in p for p in files)
    assert "New keys" not in git(git_dir, "log", "-1", "--format=%B")
    path = envs_dir / "staging.yaml"
    path.write_text(path.read_text().replace("provider: sealed-secrets\n    sealedSecretsCert: certs/controller.pem", "provider: sops"))
    back = run_cli("compile", "staging", "--home", home, "--environments", envs_dir)
    assert back.code == 0, back.err
    assert git(git_dir, "show", "main:rendered/staging/network.lock.json") == lock
    secrets = committed_secrets(checkout(git_dir, tmp_path / "work"), "staging", home / "age" / "identity.txt")
    for node in json.loads(lock)["nodes"]:
        assert NATIVE.PrivateKey(bytes.fromhex(secrets[node["secret"]]["nodekey"])).public_key.to_checksum_address() == node["address"]
