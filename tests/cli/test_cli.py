"""The `chainops` CLI as a user runs it, against real git repositories in temp dirs."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.conftest import commit_count, git


def lock(home: Path, env: str, git_dir: Path | None = None) -> dict:
    return json.loads(git(git_dir or home / "gitops.git", "show", f"main:rendered/{env}/network.lock.json"))


def test_validate_examples_ok(run_cli, envs_dir):
    result = run_cli("validate", "--environments", envs_dir)
    assert result.code == 0
    assert "staging: ok (besu-qbft; compiles)" in result.out and "dev: ok (geth-clique, legacy; compiles)" in result.out


def test_validate_dry_compiles_and_reports_what_compile_would_refuse(run_cli, envs_dir, tmp_path, monkeypatch):
    """Chart values against their schemas and render-time rules are checked without a
    repository; every broken environment is reported, nothing is written anywhere."""
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    staging = (envs_dir / "staging.yaml").read_text()
    (envs_dir / "staging.yaml").write_text(staging + "values:\n  besu-node:\n    rpc: {unknownField: 1}\n")
    dev = (envs_dir / "dev.yaml").read_text()
    assert "  rpc: 1\n" in dev and "  namespace: chain-dev\n" in dev
    (envs_dir / "dev.yaml").write_text(dev.replace("  rpc: 1\n", "  rpc: 0\n").replace(
        "  namespace: chain-dev\n", "  namespace: chain-dev\n  rpcIngress: {host: rpc.dev.example.com}\n"))
    home = tmp_path / "home"
    result = run_cli("validate", "--home", home, "--environments", envs_dir)
    assert result.code == 1, result.out + result.err
    assert f"{envs_dir}/staging.yaml" in result.err and "unknownField" in result.err
    assert f"{envs_dir}/dev.yaml: kubernetes.rpcIngress: an RPC Ingress needs RPC nodes" in result.err
    assert "seed: ok (geth-ethash, legacy; compiles)" in result.out
    assert "Traceback" not in result.err
    assert not home.exists() and list((tmp_path / "tmp").iterdir()) == [], "validate writes nothing"
    files_only = run_cli("validate", "--no-render", "--environments", envs_dir)
    assert files_only.code == 0 and "staging: ok (besu-qbft; files only)" in files_only.out
    only_seed = run_cli("validate", "seed", "--environments", envs_dir)
    assert only_seed.code == 0 and "staging" not in only_seed.out + only_seed.err
    assert run_cli("validate", "nope", "--environments", envs_dir).code == 2


def test_validate_renders_mnemonic_environments_without_the_mnemonic(run_cli, envs_dir, monkeypatch):
    monkeypatch.delenv("CHAINOPS_MNEMONIC", raising=False)
    (envs_dir / "dev.yaml").write_text((envs_dir / "dev.yaml").read_text() + "keys: {source: mnemonic}\n")
    result = run_cli("validate", "--environments", envs_dir)
    assert result.code == 0, result.err
    assert "dev: ok (geth-clique, legacy; compiles)" in result.out
    (envs_dir / "dev.yaml").write_text((envs_dir / "dev.yaml").read_text() + "production: true\n")
    refused = run_cli("validate", "dev", "--environments", envs_dir)
    assert refused.code == 1 and "keys.source: 'mnemonic' is refused for production" in refused.err


def test_bad_input_exits_1_and_writes_nothing(run_cli, envs_dir, tmp_path):
    (envs_dir / "broken.yaml").write_text("apiVersion: chainops/v1\nnetwork: {chainId: 48720}\nkubernetes: {namespace: chain-staging}\n")
    home = tmp_path / "home"
    result = run_cli("compile", "--home", home, "--environments", envs_dir)
    assert result.code == 1
    assert f"{envs_dir}/staging.yaml: network.chainId: 48720 is already used by {envs_dir}/broken.yaml" in result.err
    assert not home.exists(), "a failed validation must not create keys, repositories or files"
    assert run_cli("validate", "--environments", envs_dir).code == 1


def test_unknown_environment_is_a_usage_error(run_cli, envs_dir, tmp_path):
    result = run_cli("compile", "nope", "--home", tmp_path / "home", "--environments", envs_dir)
    assert result.code == 2 and "no environment file for nope" in result.err


def test_compile_selected_environment_into_a_remote_repository(run_cli, envs_dir, tmp_path):
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", "--initial-branch=main", str(remote)], check=True)
    result = run_cli("compile", "staging", "--home", tmp_path / "home", "--environments", envs_dir, "--repo", remote)
    assert result.code == 0, result.err
    assert commit_count(remote) == 1
    message = git(remote, "log", "-1", "--format=%B")
    assert "Chainops-Environment: staging" in message and "Chainops-Version: " in message
    assert git(remote, "ls-tree", "--name-only", "main", "rendered/").split() == ["rendered/staging"]
    assert not (tmp_path / "home" / "gitops.git").exists(), "--repo must not create the embedded repository"


def test_genesis_change_is_refused_then_allowed_explicitly(run_cli, envs_dir, tmp_path):
    home = tmp_path / "home"
    assert run_cli("compile", "staging", "--home", home, "--environments", envs_dir).code == 0
    before = lock(home, "staging")
    path = envs_dir / "staging.yaml"
    path.write_text(path.read_text().replace("gasLimit: 30000000", "gasLimit: 40000000"))
    refused = run_cli("compile", "staging", "--home", home, "--environments", envs_dir)
    assert refused.code == 1 and "the committed genesis would change" in refused.err and "--allow-genesis-change staging" in refused.err
    assert commit_count(home / "gitops.git") == 1
    allowed = run_cli("compile", "staging", "--home", home, "--environments", envs_dir, "--allow-genesis-change", "staging")
    assert allowed.code == 0, allowed.err
    after = lock(home, "staging")
    assert after["genesisHash"] != before["genesisHash"]
    assert after["nodes"] == before["nodes"], "a genesis change must not regenerate keys"


def test_adding_and_removing_rpc_nodes_touches_only_those_keys(run_cli, envs_dir, tmp_path):
    home = tmp_path / "home"
    path = envs_dir / "staging.yaml"
    assert run_cli("compile", "staging", "--home", home, "--environments", envs_dir).code == 0
    first = {n["name"]: n for n in lock(home, "staging")["nodes"]}
    path.write_text(path.read_text().replace("rpc: 2", "rpc: 3"))
    assert run_cli("compile", "staging", "--home", home, "--environments", envs_dir).code == 0
    second = {n["name"]: n for n in lock(home, "staging")["nodes"]}
    assert set(second) == set(first) | {"rpc-2"}
    assert all(second[name] == node for name, node in first.items())
    assert "New keys: rpc-2\n" in git(home / "gitops.git", "log", "-1", "--format=%B")
    path.write_text(path.read_text().replace("rpc: 3", "rpc: 1"))
    assert run_cli("compile", "staging", "--home", home, "--environments", envs_dir).code == 0
    third = {n["name"]: n for n in lock(home, "staging")["nodes"]}
    assert set(third) == set(first) - {"rpc-1"}
    files = git(home / "gitops.git", "ls-tree", "-r", "--name-only", "main", "rendered/staging/besu-node").split()
    assert "rendered/staging/besu-node/secret-rpc-1-keys.yaml" not in files
    assert "rendered/staging/besu-node/secret-rpc-2-keys.yaml" not in files
    assert "rendered/staging/besu-node/secret-rpc-0-keys.yaml" in files


def test_missing_secret_for_a_locked_node_is_refused(run_cli, envs_dir, tmp_path):
    home = tmp_path / "home"
    assert run_cli("compile", "staging", "--home", home, "--environments", envs_dir).code == 0
    work = tmp_path / "work"
    subprocess.run(["git", "clone", "-q", str(home / "gitops.git"), str(work)], check=True)
    # Both copies of the key: the sealed Secret and the pipeline escrow.
    subprocess.run(["git", "-C", str(work), "rm", "-q", "rendered/staging/besu-node/secret-validator-1-keys.yaml", "rendered/staging/keys.escrow.age"], check=True)
    subprocess.run(["git", "-C", str(work), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "oops"], check=True)
    subprocess.run(["git", "-C", str(work), "push", "-q", "origin", "main"], check=True)
    result = run_cli("compile", "staging", "--home", home, "--environments", envs_dir)
    assert result.code == 1 and "validator-1" in result.err and "refusing to generate a new key" in result.err
    assert commit_count(home / "gitops.git") == 2


def test_diff_reports_changes_with_exit_codes(run_cli, envs_dir, tmp_path):
    home = tmp_path / "home"
    assert run_cli("diff", "staging", "--home", home, "--environments", envs_dir).code == 1
    assert run_cli("compile", "staging", "--home", home, "--environments", envs_dir).code == 0
    clean = run_cli("diff", "staging", "--home", home, "--environments", envs_dir)
    assert clean.code == 0 and clean.out == ""
    path = envs_dir / "staging.yaml"
    path.write_text(path.read_text().replace("size: 20Gi", "size: 50Gi"))
    changed = run_cli("diff", "staging", "--home", home, "--environments", envs_dir)
    assert changed.code == 1
    assert "-          storage: 20Gi\n+          storage: 50Gi" in changed.out
    assert "+++ b/rendered/staging/besu-node/statefulset-validator.yaml" in changed.out
    assert commit_count(home / "gitops.git") == 1, "diff never commits"


def test_deleted_environment_is_reported_not_pruned_until_decommissioned(run_cli, envs_dir, tmp_path):
    home = tmp_path / "home"
    assert run_cli("compile", "--home", home, "--environments", envs_dir).code == 0
    (envs_dir / "dev.yaml").unlink()
    result = run_cli("compile", "--home", home, "--environments", envs_dir)
    assert result.code == 0 and "dev: environment file is gone" in result.err
    assert "rendered/dev" in git(home / "gitops.git", "ls-tree", "--name-only", "main", "rendered/")
    result = run_cli("compile", "--home", home, "--environments", envs_dir, "--decommission", "dev")
    assert result.code == 0 and "dev: decommissioned  commit" in result.out
    assert "rendered/dev" not in git(home / "gitops.git", "ls-tree", "--name-only", "main", "rendered/")
    assert "bootstrap/dev.yaml" not in git(home / "gitops.git", "ls-tree", "-r", "--name-only", "main")


def test_genesis_hash_command_errors(run_cli, tmp_path):
    bad = tmp_path / "g.json"
    bad.write_text("{not json")
    assert run_cli("genesis-hash", bad).code == 2
    bad.write_text(json.dumps({"config": {"chainId": 1}, "gasLimit": "zz"}))
    result = run_cli("genesis-hash", bad)
    assert result.code == 1 and str(bad) in result.err


def test_a_mistyped_age_recipient_is_refused_naming_the_field(run_cli, envs_dir):
    """The pattern alone would accept a key with one wrong character; its checksum does not."""
    import pyrage

    good = str(pyrage.x25519.Identity.generate().to_public())
    typo = good[:-1] + ("q" if good[-1] != "q" else "p")
    staging = envs_dir / "staging.yaml"
    staging.write_text(staging.read_text().replace("provider: sops", f"provider: sops\n    ageRecipients: [{typo}]"))
    result = run_cli("validate", "--environments", envs_dir)
    assert result.code == 1 and "Traceback" not in result.err
    assert f"{staging}: gitops.secrets.ageRecipients" in result.err and "valid checksum" in result.err, result.err
    staging.write_text(staging.read_text().replace(typo, good))
    assert run_cli("validate", "--environments", envs_dir).code == 0
