"""Key lifecycle through the CLI against real git repositories and the real sops binary:
keys only for new nodes, removal of exactly one node's key, p2p key rotation, recovery from
the escrow (and from Secrets for repositories written before it), the deterministic mnemonic
mode, SOPS decryption with the cluster's own identity, the plaintext provider."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pyrage
import pytest
from eth_account import Account
from eth_account.hdaccount import Mnemonic
from eth_keys import KeyAPI
from eth_keys.backends import NativeECCBackend

from pipelines.lib.config import load_environment
from pipelines.lib.errors import GuardError
from pipelines.lib.gitops import GitopsRepository
from pipelines.lib.keys import derivation_paths
from pipelines.lib.layout import owned_paths
from pipelines.lib.model import CompileContext, ExistingEnvironment, PublishTarget
from pipelines.lib.sealing import PLAINTEXT_ANNOTATION, AgeIdentity
from pipelines.lib.settings import resolve_settings
from pipelines.lib.stages.genesis import compute_genesis
from pipelines.lib.stages.keys import compute_keys
from pipelines.lib.stages.render import render_environment
from tests.conftest import checkout, commit_count, git, venv_tool
from tests.key_helpers import committed_secrets, open_escrow_file
from tests.yaml_reader import read_yaml, read_yaml_all

NATIVE = KeyAPI(NativeECCBackend)
HARDHAT = "test test test test test test test test test test test junk"  # the well-known dev mnemonic
HARDHAT_ACCOUNT_0 = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"  # its m/44'/60'/0'/0/0


def tree(git_dir: Path, prefix: str = "rendered") -> dict[str, str]:
    """path -> blob id of every file on main under prefix."""
    lines = git(git_dir, "ls-tree", "-r", "main", prefix).splitlines()
    return {line.split("\t")[1]: line.split()[2] for line in lines}


def lock_of(git_dir: Path, env: str) -> dict:
    return json.loads(git(git_dir, "show", f"main:rendered/{env}/network.lock.json"))


def nodes_of(git_dir: Path, env: str) -> dict[str, dict]:
    return {n["name"]: n for n in lock_of(git_dir, env)["nodes"]}


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def push_edit(git_dir: Path, tmp_path: Path, *paths: str) -> None:
    """A person deletes files in the GitOps repository (clone, git rm, push)."""
    work = checkout(git_dir, tmp_path / f"edit-{len(list(tmp_path.iterdir()))}")
    subprocess.run(["git", "-C", str(work), "rm", "-q", *paths], check=True)
    subprocess.run(["git", "-C", str(work), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "edit"], check=True)
    subprocess.run(["git", "-C", str(work), "push", "-q", "origin", "main"], check=True)


ENODE = re.compile(r"enode://[0-9a-f]{128}@[a-z0-9.-]+:[0-9]+")


def referenced_enodes(git_dir: Path, env: str) -> set[str]:
    """Every enode written into the rendered manifests (peer lists, bootnode flags)."""
    files = [p for p in tree(git_dir, f"rendered/{env}") if p.endswith(".yaml") and "/secret-" not in p]
    return {m for p in files for m in ENODE.findall(git(git_dir, "show", f"main:{p}"))}


def key_address(hex_key: str) -> str:
    return NATIVE.PrivateKey(bytes.fromhex(hex_key)).public_key.to_checksum_address()


def test_adding_one_rpc_node_changes_only_its_files_the_peer_lists_and_the_lock(run_cli, envs_dir, tmp_path):
    home = tmp_path / "home"
    git_dir = home / "gitops.git"
    assert run_cli("compile", "staging", "--home", home, "--environments", envs_dir).code == 0
    before, nodes_before = tree(git_dir), nodes_of(git_dir, "staging")
    edit(envs_dir / "staging.yaml", "rpc: 2", "rpc: 3")
    result = run_cli("compile", "staging", "--home", home, "--environments", envs_dir)
    assert result.code == 0, result.err
    after, nodes_after = tree(git_dir), nodes_of(git_dir, "staging")
    base = "rendered/staging/"
    added = set(after) - set(before)
    assert added == {base + "besu-node/secret-rpc-2-keys.yaml"}
    assert set(before) - set(after) == set()
    changed = {p for p in before if after[p] != before[p]}
    # Every existing Secret keeps its bytes; the genesis and the network chart do not move.
    assert not any("/secret-" in p for p in changed)
    assert base + "genesis.json" not in changed and not any(p.startswith(base + "network/") for p in changed)
    # What may change: the lock, the escrow, the file list, and what carries peer lists or replicas.
    allowed = {base + "network.lock.json", base + "keys.escrow.age", base + "kustomization.yaml", base + "README.md"}
    unexpected = {p for p in changed - allowed if not p.rsplit("/", 1)[-1].startswith(("configmap-", "statefulset-"))}
    assert unexpected == set()
    assert {base + "network.lock.json", base + "keys.escrow.age"} <= changed
    # The lock only gained the node; every peer list names locked enodes only.
    assert {k: v for k, v in nodes_after.items() if k != "rpc-2"} == nodes_before
    assert referenced_enodes(git_dir, "staging") <= {n["enode"] for n in nodes_after.values()}
    assert "New keys: rpc-2\n" in git(git_dir, "log", "-1", "--format=%B")
    # The escrow holds exactly the locked keys.
    work = checkout(git_dir, tmp_path / "work")
    escrow = open_escrow_file(work / base / "keys.escrow.age", home / "age" / "identity.txt")
    assert sorted(escrow["keys"]) == sorted([*nodes_after, "account/faucet"])
    assert key_address(escrow["keys"]["rpc-2"]["privateKey"]) == nodes_after["rpc-2"]["address"]


def test_removing_a_node_removes_its_secret_lock_entry_and_escrow_entry_only(run_cli, envs_dir, tmp_path):
    home = tmp_path / "home"
    git_dir = home / "gitops.git"
    assert run_cli("compile", "staging", "--home", home, "--environments", envs_dir).code == 0
    before, nodes_before = tree(git_dir), nodes_of(git_dir, "staging")
    edit(envs_dir / "staging.yaml", "rpc: 2", "rpc: 1")
    assert run_cli("compile", "staging", "--home", home, "--environments", envs_dir).code == 0
    after = tree(git_dir)
    assert set(before) - set(after) == {"rendered/staging/besu-node/secret-rpc-1-keys.yaml"}
    assert set(after) - set(before) == set()
    assert all(after[p] == before[p] for p in after if "/secret-" in p)
    assert nodes_of(git_dir, "staging") == {k: v for k, v in nodes_before.items() if k != "rpc-1"}
    escrow = open_escrow_file(checkout(git_dir, tmp_path / "w") / "rendered/staging/keys.escrow.age", home / "age" / "identity.txt")
    assert "rpc-1" not in escrow["keys"] and "rpc-0" in escrow["keys"]
    assert not any("rpc-1" in path for path in escrow["sealed"])


def test_rotate_replaces_one_p2p_key_and_rerenders_peer_lists(run_cli, envs_dir, tmp_path):
    home = tmp_path / "home"
    git_dir = home / "gitops.git"
    assert run_cli("compile", "staging", "--home", home, "--environments", envs_dir).code == 0
    before, nodes_before = tree(git_dir), nodes_of(git_dir, "staging")
    genesis_before = lock_of(git_dir, "staging")["genesisHash"]
    result = run_cli("keys", "rotate", "staging", "rpc-0", "--home", home, "--environments", envs_dir)
    assert result.code == 0, result.err
    nodes_after = nodes_of(git_dir, "staging")
    assert nodes_after["rpc-0"]["address"] != nodes_before["rpc-0"]["address"]
    assert nodes_after["rpc-0"]["enode"] != nodes_before["rpc-0"]["enode"]
    assert {k: v for k, v in nodes_after.items() if k != "rpc-0"} == {k: v for k, v in nodes_before.items() if k != "rpc-0"}
    assert lock_of(git_dir, "staging")["genesisHash"] == genesis_before
    assert f"rpc-0: {nodes_before['rpc-0']['address']} -> {nodes_after['rpc-0']['address']}" in result.out
    assert git(git_dir, "log", "-1", "--format=%s").strip() == "chainops: rotate p2p key of rpc-0 in staging"
    after = tree(git_dir)
    changed = {p for p in before if after[p] != before[p]}
    assert [p for p in changed if "/secret-" in p] == ["rendered/staging/besu-node/secret-rpc-0-keys.yaml"]
    referenced = referenced_enodes(git_dir, "staging")
    assert referenced and referenced <= {n["enode"] for n in nodes_after.values()}, "no peer list keeps the old enode"
    work = checkout(git_dir, tmp_path / "work")
    data = committed_secrets(work, "staging", home / "age" / "identity.txt")["rpc-0-keys"]
    assert key_address(data["nodekey"]) == nodes_after["rpc-0"]["address"]
    # The next compile keeps the rotated key.
    again = run_cli("compile", "staging", "--home", home, "--environments", envs_dir)
    assert again.code == 0 and "unchanged" in again.out


def test_rotate_refuses_validators_and_unknown_nodes(run_cli, envs_dir, tmp_path):
    home = tmp_path / "home"
    git_dir = home / "gitops.git"
    never = run_cli("keys", "rotate", "staging", "rpc-0", "--home", home, "--environments", envs_dir)
    assert never.code == 1 and "has not been compiled yet" in never.err
    assert run_cli("compile", "staging", "--home", home, "--environments", envs_dir).code == 0
    refused = run_cli("keys", "rotate", "staging", "validator-1", "--home", home, "--environments", envs_dir)
    assert refused.code == 1
    assert "validator-1 is a validator" in refused.err and "needs consensus votes" in refused.err
    unknown = run_cli("keys", "rotate", "staging", "rpc-9", "--home", home, "--environments", envs_dir)
    assert unknown.code == 1 and "no node 'rpc-9'" in unknown.err
    assert commit_count(git_dir) == 1


def test_rotate_a_geth_bootnode_updates_the_bootnodes_list(run_cli, envs_dir, tmp_path):
    home = tmp_path / "home"
    git_dir = home / "gitops.git"
    assert run_cli("compile", "dev", "--home", home, "--environments", envs_dir).code == 0
    old = nodes_of(git_dir, "dev")["bootnode-0"]["enode"]
    assert run_cli("keys", "rotate", "dev", "bootnode-0", "--home", home, "--environments", envs_dir).code == 0
    new = nodes_of(git_dir, "dev")["bootnode-0"]["enode"]
    assert new != old
    referenced = referenced_enodes(git_dir, "dev")
    assert new in referenced and old not in referenced


def test_lost_secret_is_restored_from_the_escrow_with_the_same_key(run_cli, envs_dir, tmp_path):
    home = tmp_path / "home"
    git_dir = home / "gitops.git"
    assert run_cli("compile", "staging", "--home", home, "--environments", envs_dir).code == 0
    nodes = nodes_of(git_dir, "staging")
    push_edit(git_dir, tmp_path, "rendered/staging/besu-node/secret-validator-1-keys.yaml")
    result = run_cli("compile", "staging", "--home", home, "--environments", envs_dir)
    assert result.code == 0, result.err
    assert nodes_of(git_dir, "staging") == nodes
    assert "New keys" not in git(git_dir, "log", "-1", "--format=%B")
    data = committed_secrets(checkout(git_dir, tmp_path / "work"), "staging", home / "age" / "identity.txt")
    assert key_address(data["validator-1-keys"]["nodekey"]) == nodes["validator-1"]["address"]


def test_repository_without_escrow_recovers_from_sops_secrets_and_keeps_them(run_cli, envs_dir, tmp_path):
    """Repositories written before the escrow: keys come from the Secrets (sops), the Secrets
    keep their bytes, and the escrow is added."""
    home = tmp_path / "home"
    git_dir = home / "gitops.git"
    assert run_cli("compile", "staging", "--home", home, "--environments", envs_dir).code == 0
    before = tree(git_dir)
    push_edit(git_dir, tmp_path, "rendered/staging/keys.escrow.age")
    result = run_cli("compile", "staging", "--home", home, "--environments", envs_dir)
    assert result.code == 0, result.err
    after = tree(git_dir)
    assert set(after) == set(before)
    assert {p for p in after if after[p] != before[p]} == {"rendered/staging/keys.escrow.age"}, "Secrets and lock unchanged"
    # Without both the escrow and a Secret, the key is gone: refused, nothing committed.
    push_edit(git_dir, tmp_path, "rendered/staging/keys.escrow.age", "rendered/staging/besu-node/secret-rpc-0-keys.yaml")
    commits = commit_count(git_dir)
    refused = run_cli("compile", "staging", "--home", home, "--environments", envs_dir)
    assert refused.code == 1 and "rpc-0: network.lock.json locks" in refused.err and "refusing to generate" in refused.err
    assert commit_count(git_dir) == commits


def test_escrow_of_another_pipeline_identity_is_refused(run_cli, envs_dir, tmp_path):
    home = tmp_path / "home"
    git_dir = home / "gitops.git"
    assert run_cli("compile", "staging", "--home", home, "--environments", envs_dir).code == 0
    (home / "age" / "identity.txt").write_text(f"{pyrage.x25519.Identity.generate()}\n")
    result = run_cli("compile", "staging", "--home", home, "--environments", envs_dir)
    assert result.code == 1 and "cannot be decrypted with the pipeline identity" in result.err
    assert "AGE-SECRET-KEY" not in result.err.upper()
    assert commit_count(git_dir) == 1


def test_flux_decrypts_every_secret_with_the_cluster_identity(run_cli, envs_dir, tmp_path):
    """The cluster's age key (an ageRecipient) alone opens every Secret, as Flux does."""
    cluster = pyrage.x25519.Identity.generate()
    cluster_file = tmp_path / "cluster-age.txt"
    cluster_file.write_text(f"{cluster}\n")
    edit(envs_dir / "staging.yaml", "provider: sops", f"provider: sops\n    ageRecipients: [{cluster.to_public()}]")
    home = tmp_path / "home"
    assert run_cli("compile", "staging", "--home", home, "--environments", envs_dir).code == 0
    work = checkout(home / "gitops.git", tmp_path / "work")
    lock = json.loads((work / "rendered/staging/network.lock.json").read_text())
    secrets = committed_secrets(work, "staging", cluster_file)
    for node in lock["nodes"]:
        key = NATIVE.PrivateKey(bytes.fromhex(secrets[node["secret"]]["nodekey"]))
        assert key.public_key.to_checksum_address() == node["address"]
        assert node["enode"] == f"enode://{key.public_key.to_bytes().hex()}@{node['enode'].split('@')[1]}"
    faucet = secrets["account-faucet"]
    assert Account.from_key(Account.decrypt(json.loads(faucet["keystore.json"]), faucet["password"])).address == lock["accounts"][0]["address"]
    bootstrap = list(read_yaml_all((work / "bootstrap/staging.yaml").read_text()))
    assert bootstrap[1]["spec"]["decryption"] == {"provider": "sops", "secretRef": {"name": "sops-age"}}
    # The escrow is for the pipeline only: the cluster's identity cannot open it.
    with pytest.raises(pyrage.DecryptError):
        pyrage.decrypt((work / "rendered/staging/keys.escrow.age").read_bytes(), [cluster])


def test_sops_rerun_is_byte_identical_and_runs_no_sops(run_cli, envs_dir, tmp_path, monkeypatch):
    home = tmp_path / "home"
    assert run_cli("compile", "--home", home, "--environments", envs_dir).code == 0
    before = tree(home / "gitops.git")
    calls = []
    real = subprocess.run

    def counting(cmd, *args, **kwargs):
        calls.append(Path(str(cmd[0])).name)
        return real(cmd, *args, **kwargs)

    monkeypatch.setattr(subprocess, "run", counting)
    again = run_cli("compile", "--home", home, "--environments", envs_dir)
    monkeypatch.undo()
    assert again.code == 0 and again.out.count("unchanged") == len({p.split("/")[1] for p in before})
    assert tree(home / "gitops.git") == before
    assert "sops" not in calls, "an unchanged environment is recognised from the escrow's index"


# --------------------------------------------------------------------------- mnemonic mode


def mnemonic_env(envs_dir: Path, name: str = "dev") -> Path:
    path = envs_dir / f"{name}.yaml"
    path.write_text(path.read_text() + "keys: {source: mnemonic}\n")
    return path


def test_mnemonic_mode_recreates_the_same_network_from_nothing(run_cli, envs_dir, tmp_path, monkeypatch):
    mnemonic_env(envs_dir)
    monkeypatch.setenv("CHAINOPS_MNEMONIC", HARDHAT)
    locks = []
    for attempt in ("a", "b"):
        home = tmp_path / attempt
        result = run_cli("compile", "dev", "--home", home, "--environments", envs_dir)
        assert result.code == 0, result.err
        locks.append(git(home / "gitops.git", "show", "main:rendered/dev/network.lock.json"))
    assert locks[0] == locks[1], "two fresh homes and repositories, one network"
    lock = json.loads(locks[0])
    assert lock["accounts"][0]["address"] == HARDHAT_ACCOUNT_0, "faucet = the mnemonic's first wallet account"
    Account.enable_unaudited_hdwallet_features()
    paths = derivation_paths(load_environment(envs_dir / "dev.yaml"))
    assert paths == {
        "validator-0": "m/44'/60'/1'/0/0", "rpc-0": "m/44'/60'/2'/0/0", "bootnode-0": "m/44'/60'/3'/0/0",
        "account/faucet": "m/44'/60'/0'/0/0",
    }
    for node in lock["nodes"]:
        assert Account.from_mnemonic(HARDHAT, account_path=paths[node["name"]]).address == node["address"]


def test_mnemonic_mode_needs_the_variable_and_never_echoes_the_words(run_cli, envs_dir, tmp_path, monkeypatch):
    mnemonic_env(envs_dir)
    home = tmp_path / "home"
    monkeypatch.delenv("CHAINOPS_MNEMONIC", raising=False)
    missing = run_cli("compile", "dev", "--home", home, "--environments", envs_dir)
    assert missing.code == 1 and "keys.source: mnemonic needs the CHAINOPS_MNEMONIC environment variable" in missing.err
    checker = Mnemonic()
    valid = checker.generate(12).split()
    words = next(w for w in (" ".join(valid[:11] + [last]) for last in checker.wordlist) if not checker.is_mnemonic_valid(w))
    monkeypatch.setenv("CHAINOPS_MNEMONIC", words)
    bad = run_cli("compile", "dev", "--home", home, "--environments", envs_dir)
    assert bad.code == 1 and "CHAINOPS_MNEMONIC is not a valid BIP-39 mnemonic" in bad.err
    assert all(word not in bad.err.split() for word in set(words.split()) - {"is", "a", "not"})
    assert commit_count(home / "gitops.git") == 0


def test_mnemonic_mode_is_refused_for_production(run_cli, envs_dir, tmp_path, monkeypatch):
    path = mnemonic_env(envs_dir)
    path.write_text(path.read_text() + "production: true\n")
    monkeypatch.setenv("CHAINOPS_MNEMONIC", HARDHAT)
    result = run_cli("compile", "dev", "--home", tmp_path / "home", "--environments", envs_dir)
    assert result.code == 1
    assert f"{path}: keys.source: 'mnemonic' is refused for production: true environments" in result.err
    assert not (tmp_path / "home").exists()


def test_mnemonic_mode_keeps_locked_keys_and_derives_only_new_ones(run_cli, envs_dir, tmp_path, monkeypatch):
    path = mnemonic_env(envs_dir)
    monkeypatch.setenv("CHAINOPS_MNEMONIC", HARDHAT)
    home = tmp_path / "home"
    assert run_cli("compile", "dev", "--home", home, "--environments", envs_dir).code == 0
    first = nodes_of(home / "gitops.git", "dev")
    edit(path, "rpc: 1", "rpc: 2")
    assert run_cli("compile", "dev", "--home", home, "--environments", envs_dir).code == 0
    second = nodes_of(home / "gitops.git", "dev")
    assert {k: v for k, v in second.items() if k != "rpc-1"} == first
    Account.enable_unaudited_hdwallet_features()
    assert second["rpc-1"]["address"] == Account.from_mnemonic(HARDHAT, account_path="m/44'/60'/2'/0/1").address


# --------------------------------------------------------------------------- plaintext provider


def test_plaintext_provider_writes_marked_plain_secrets(run_cli, envs_dir, tmp_path):
    edit(envs_dir / "dev.yaml", "provider: sops", "provider: plaintext\n    allowPlaintextSecrets: true")
    home = tmp_path / "home"
    assert run_cli("compile", "dev", "--home", home, "--environments", envs_dir).code == 0
    work = checkout(home / "gitops.git", tmp_path / "work")
    files = sorted((work / "rendered/dev").glob("*/secret-*.yaml"))
    assert files
    lock = json.loads((work / "rendered/dev/network.lock.json").read_text())
    secrets = committed_secrets(work, "dev", home / "age" / "identity.txt")
    for path in files:
        doc = read_yaml(path.read_text())
        assert "sops" not in doc and doc["metadata"]["annotations"][PLAINTEXT_ANNOTATION] == "true"
    for node in lock["nodes"]:
        assert key_address(secrets[node["secret"]]["nodekey"]) == node["address"]
    built = subprocess.run([venv_tool("kubectl"), "kustomize", str(work / "rendered/dev")],
                           capture_output=True, text=True, check=True).stdout
    assert built.count("kind: Secret") == len(files)
    # The compiled environment says which files are plaintext (for the review summary).
    settings = resolve_settings(str(envs_dir), str(home))
    config = load_environment(envs_dir / "dev.yaml")
    identity = AgeIdentity.load_or_create(home)
    with GitopsRepository(settings.repo, settings.branch, home) as repo:
        existing = ExistingEnvironment("dev", repo.read_files(repo.fetch(), owned_paths("dev")))
    keys = compute_keys(config, existing, identity)
    compiled = render_environment(
        config, keys, compute_genesis(config, keys, existing), existing,
        CompileContext(settings.charts_dir, identity, settings.target),
    )
    assert compiled.secrets_provider == "plaintext"
    assert compiled.plaintext_secrets == tuple(sorted(str(p.relative_to(work)) for p in files))
    assert compiled.files == {p: existing.files[p] for p in compiled.files}, "a re-run is byte-identical"


def test_keys_are_rendered_only_on_the_committed_state_they_were_planned_on(tmp_path, envs_dir):
    """Keys planned on one commit and rendered on another could replace keys that a writer
    published in between; the renderer refuses, naming both commits."""
    config = load_environment(envs_dir / "staging.yaml")
    ctx = CompileContext(
        Path(__file__).resolve().parents[2] / "chart_sources", AgeIdentity.load_or_create(tmp_path / "home"),
        PublishTarget(str(tmp_path / "gitops.git"), "main"),
    )
    planned_on = ExistingEnvironment("staging", {}, None)
    keys = compute_keys(config, planned_on, ctx.identity)
    assert keys.based_on is None
    genesis = compute_genesis(config, keys, planned_on, False)
    first = render_environment(config, keys, genesis, planned_on, ctx)
    moved = ExistingEnvironment("staging", dict(first.files), "ab" * 20)
    with pytest.raises(GuardError, match=r"planned on GitOps commit \(none\) .* is abababababab"):
        render_environment(config, keys, genesis, moved, ctx)
    replanned = compute_keys(config, moved, ctx.identity)
    assert replanned.based_on == "ab" * 20 and replanned.nodes == keys.nodes
    again = render_environment(config, replanned, genesis, moved, ctx)
    assert again.files == first.files
