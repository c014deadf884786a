"""From repository to cluster: the cluster's own key, bootstrap objects, CLI polish.

The cluster identity comes from `chainops cluster init`; the real sops binary decrypts every
committed Secret with it alone (as Flux's kustomize-controller would), and pyrage shows it
cannot open the key escrow, which stays the pipeline's.
"""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import pyrage
import pytest

from tests.conftest import git
from tests.key_helpers import sops_decrypt
from tests.yaml_reader import read_yaml

ENV = """\
apiVersion: chainops/v1
network: {{chainId: 4601, client: besu, consensus: qbft}}
nodes: {{validators: 1, rpc: 1}}
accounts: [{{name: faucet, balance: 1 ether}}]
kubernetes: {{namespace: chain-4601}}
gitops: {{controller: {controller}, secrets: {{ageRecipients: [{recipient}]}}}}
"""


@pytest.fixture
def site(workspace_dirs, run_cli):
    w = workspace_dirs
    return {"envs": w.envs, "remote": w.remote, "home": w.home, "tmp": w.tmp, "cli": run_cli}


def cluster_key(site: dict) -> tuple[str, Path]:
    result = site["cli"]("cluster", "init", "alpha", "--home", site["home"])
    assert result.code == 0, result.err
    recipient = result.out.split("cluster recipient ", 1)[1].split()[0]
    manifest = site["home"] / "cluster-keys" / "alpha.sops-age.yaml"
    assert manifest.stat().st_mode & 0o777 == 0o600
    secret = read_yaml(manifest.read_text())
    assert (secret["metadata"]["name"], secret["metadata"]["namespace"]) == ("sops-age", "flux-system")
    identity = site["tmp"] / "cluster.agekey"
    identity.write_bytes(base64.b64decode(secret["data"]["age.agekey"]))
    return recipient, identity


def test_the_cluster_identity_opens_every_secret_and_never_the_escrow(site):
    recipient, identity = cluster_key(site)
    (site["envs"] / "alpha.yaml").write_text(ENV.format(controller="flux", recipient=recipient))
    result = site["cli"]("compile", "--home", site["home"], "--environments", site["envs"], "--repo", site["remote"])
    assert result.code == 0, result.err
    work = site["tmp"] / "work"
    subprocess.run(["git", "clone", "-q", "-b", "main", str(site["remote"]), str(work)], check=True)
    secrets = sorted((work / "rendered/alpha").rglob("secret-*.yaml"))
    assert len(secrets) >= 3
    for path in secrets:
        decrypted = sops_decrypt(path, identity)
        assert decrypted["kind"] == "Secret" and decrypted["data"], path
    escrow = (work / "rendered/alpha/keys.escrow.age").read_bytes()
    cluster = pyrage.x25519.Identity.from_str(next(line for line in identity.read_text().splitlines() if line.startswith("AGE-SECRET-KEY-")))
    with pytest.raises(pyrage.DecryptError):
        pyrage.decrypt(escrow, [cluster])
    assert "AGE-SECRET-KEY" not in git(site["remote"], "log", "-p", "--all"), "the cluster key is never committed"
    bootstrap = read_yaml((work / "bootstrap/alpha.yaml").read_text().split("\n---\n")[-1])
    assert bootstrap["spec"]["decryption"] == {"provider": "sops", "secretRef": {"name": "sops-age"}}


def test_cluster_init_writes_its_key_once(site):
    cluster_key(site)
    again = site["cli"]("cluster", "init", "alpha", "--home", site["home"])
    assert again.code == 2 and "already exists" in again.err


def test_an_argo_cd_application_prunes_what_it_deployed_when_deleted(site):
    recipient, _ = cluster_key(site)
    (site["envs"] / "alpha.yaml").write_text(ENV.format(controller="argocd", recipient=recipient))
    assert site["cli"]("compile", "--home", site["home"], "--environments", site["envs"], "--repo", site["remote"]).code == 0
    app = read_yaml(git(site["remote"], "show", "main:bootstrap/alpha.yaml"))
    assert app["kind"] == "Application"
    assert app["metadata"]["finalizers"] == ["resources-finalizer.argocd.argoproj.io"]
    assert app["spec"]["syncPolicy"]["automated"]["prune"] is True


def test_version_yaml_errors_and_new_identity_notice(site):
    version = site["cli"]("--version") if False else None  # argparse exits; checked through the binary below
    del version
    out = subprocess.run([str(Path(__file__).resolve().parents[2] / ".venv/bin/chainops"), "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("chainops ")
    (site["envs"] / "bad.yaml").write_text("network: [\n")
    bad = site["cli"]("validate", "--environments", site["envs"])
    assert bad.code == 1 and f"{site['envs'] / 'bad.yaml'}: not valid YAML" in bad.err and "<unicode string>" not in bad.err
    (site["envs"] / "bad.yaml").unlink()
    (site["envs"] / "alpha.yaml").write_text(ENV.format(controller="flux", recipient="age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3290gq"))
    first = site["cli"]("compile", "--home", site["home"], "--environments", site["envs"])
    assert first.code == 0 and "created a new pipeline identity" in first.err and "created a new embedded GitOps repository" in first.err
    second = site["cli"]("compile", "--home", site["home"], "--environments", site["envs"])
    assert second.code == 0 and "created a new" not in second.err
