"""`chainops diff` is a dry run of `chainops compile`: what it prints is what compile commits.

For each kind of change, on a real bare remote through the CLI: `diff --format markdown`,
then `compile --summary` of the same change; the two summaries must be the same text once
compile's real values for the keys it generated are replaced by the labels diff printed
(the labels are derived here from the committed lock, a second route). diff writes
nothing: the remote's refs, the home and the escrow are as they were.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from eth_utils import to_checksum_address

from tests.conftest import REPO_ROOT, git

GENESIS_LABEL = "<genesis hash: computed at compile>"


def env_yaml(chain_id: int, validators: int = 4, rpc: int = 1, review: str = "direct", extra: str = "") -> str:
    return (
        "apiVersion: chainops/v1\n"
        f"network: {{chainId: {chain_id}, client: besu, consensus: qbft}}\n"
        f"nodes: {{validators: {validators}, rpc: {rpc}}}\n"
        "accounts: [{name: faucet, balance: 10 ether}]\n"
        f"kubernetes: {{namespace: chain-{chain_id}}}\n"
        f"gitops: {{controller: flux, review: {review}}}\n" + extra
    )


@pytest.fixture
def site(tmp_path: Path, run_cli, monkeypatch):
    for var in ("CHAINOPS_FORGE", "CHAINOPS_GIT_TOKEN", "CHAINOPS_CLUSTER_REPO_URL", "CHAINOPS_MNEMONIC"):
        monkeypatch.delenv(var, raising=False)
    envs = tmp_path / "environments"
    envs.mkdir()
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", "--initial-branch=main", str(remote)], check=True)
    home = tmp_path / "home"
    where = ("--home", home, "--environments", envs, "--repo", remote)

    def cli(command: str, *args):
        return run_cli(command, *args, *where)

    return {"envs": envs, "remote": remote, "home": home, "cli": cli, "tmp": tmp_path, "run": run_cli}


def refs(remote: Path) -> str:
    return git(remote, "for-each-ref", "--format=%(refname) %(objectname)")


def lock_at(remote: Path, env: str, rev: str) -> dict | None:
    try:
        return json.loads(git(remote, "show", f"{rev}:rendered/{env}/network.lock.json"))
    except subprocess.CalledProcessError:
        return None


def label_compiled(text: str, before: dict | None, after: dict | None) -> str:
    """Compile's real values of newly generated keys, as diff labels them."""
    if not after:
        return text
    known = {e["address"].lower() for s in ("nodes", "accounts") for e in (before or {}).get(s, [])}
    for node in after["nodes"]:
        if node["address"].lower() in known:
            continue
        for form in {node["address"], to_checksum_address(node["address"]), node["address"].lower()}:
            text = text.replace(form, f"<new key: {node['name']} address, generated at compile>")
        key = node["enode"][len("enode://"):].split("@")[0]
        text = text.replace(key, f"<new key: {node['name']} enode, generated at compile>")
    for account in after["accounts"]:
        if account["address"].lower() not in known:
            for form in {account["address"], to_checksum_address(account["address"])}:
                text = text.replace(form, f"<new key: account/{account['name']} address, generated at compile>")
    if before is None:
        text = text.replace(after["genesisHash"], GENESIS_LABEL)
    return text


def summary_of(output: str) -> str:
    return output[output.index("## chainops:"):]


def diff_then_compile(site: dict, env: str, *flags: str) -> tuple[str, str]:
    """(diff's summary, compile's summary labelled) for the change in the environment files now."""
    remote, home = site["remote"], site["home"]
    before_refs = refs(remote)
    home_before = sorted(p.relative_to(home) for p in home.rglob("*")) if home.exists() else None
    diff = site["cli"]("diff", env, "--format", "markdown", *flags)
    assert diff.code == 1, (diff.code, diff.err)
    assert refs(remote) == before_refs, "diff published nothing"
    if home_before is None:
        assert not home.exists(), "diff created no home"
    parent = git(remote, "rev-parse", "main").strip() if before_refs else None
    done = site["cli"]("compile", env, "--summary", *flags)
    assert done.code == 0, done.err
    before = lock_at(remote, env, parent) if parent else None
    after = lock_at(remote, env, "main")
    return diff.out, label_compiled(summary_of(done.out), before, after)


def published(site: dict, **envs: str) -> None:
    for name, text in envs.items():
        (site["envs"] / f"{name}.yaml").write_text(text)
    result = site["cli"]("compile")
    assert result.code == 0, result.err


def test_new_environment(site):
    (site["envs"] / "alpha.yaml").write_text(env_yaml(4201))
    shown, committed = diff_then_compile(site, "alpha")
    assert shown == committed
    added = int(re.search(r"\*\*Objects:\*\* (\d+) added", shown)[1])
    message = git(site["remote"], "log", "-1", "--format=%B", "main")
    files = git(site["remote"], "ls-tree", "-r", "--name-only", "main").split()
    documents = sum(len([d for d in git(site["remote"], "show", f"main:{f}").split("\n---\n") if d.strip()])
                    for f in files if f.endswith(".yaml") and not f.endswith("kustomization.yaml") and f != ".sops.yaml")
    assert f"Objects: {added}\n" in message and added == documents, "one count of objects everywhere"
    assert GENESIS_LABEL in shown and "<new key: validator-0 address, generated at compile>" in shown
    assert not re.search(r"0x[0-9a-fA-F]{40}", shown), "no invented address"


def test_validator_added(site):
    published(site, alpha=env_yaml(4202))
    (site["envs"] / "alpha.yaml").write_text(env_yaml(4202, validators=5))
    shown, committed = diff_then_compile(site, "alpha")
    assert shown == committed
    assert "GENESIS CHANGED" not in shown
    assert 'qbft_proposeValidatorVote("<new key: validator-4 address, generated at compile>", true)' in shown
    assert "3 of the 4 validators vote" in shown


def test_validator_removed_in_direct_review_needs_the_votes_confirmed(site):
    published(site, alpha=env_yaml(4203))
    (site["envs"] / "alpha.yaml").write_text(env_yaml(4203, validators=3))
    before = refs(site["remote"])
    lock = lock_at(site["remote"], "alpha", "main")
    leaving = next(n["address"] for n in lock["nodes"] if n["name"] == "validator-3")
    refused_diff = site["cli"]("diff", "alpha")
    refused = site["cli"]("compile", "alpha")
    assert refused_diff.code == 2 and refused.code == 1 and refs(site["remote"]) == before
    assert refused_diff.err == refused.err, "diff refuses with compile's own words"
    assert f'qbft_proposeValidatorVote("{leaving}", false) on 3 of the 4 validators' in refused.err
    assert "--validators-voted alpha" in refused.err
    shown, committed = diff_then_compile(site, "alpha", "--validators-voted", "alpha")
    assert shown == committed
    assert "1. Before this change is applied, remove `validator-3`" in shown


def test_four_validators_to_one_is_voted_out_one_at_a_time(site):
    published(site, alpha=env_yaml(4204, review="direct"))
    (site["envs"] / "alpha.yaml").write_text(env_yaml(4204, validators=1))
    shown, committed = diff_then_compile(site, "alpha", "--validators-voted", "alpha")
    assert shown == committed
    sizes = [int(m) for m in re.findall(r"(\d+) of the \d+ validators vote", shown)]
    assert sizes == [3, 2, 2], "each removal needs more than half of the set it is voted in"


def test_chain_id_change_is_the_same_refusal_and_the_same_reset(site):
    published(site, alpha=env_yaml(4205))
    (site["envs"] / "alpha.yaml").write_text(env_yaml(4205).replace("chainId: 4205", "chainId: 4215"))
    refused_diff, refused = site["cli"]("diff", "alpha"), site["cli"]("compile", "alpha")
    assert refused_diff.code == 2 and refused.code == 1 and refused_diff.err == refused.err
    assert "chainId: 4205 -> 4215" in refused.err and "block hash unchanged" in refused.err
    shown, committed = diff_then_compile(site, "alpha", "--allow-genesis-change", "alpha")
    assert shown == committed and "GENESIS CHANGED" in shown and "generated at compile" not in shown


def test_image_bump(site):
    published(site, alpha=env_yaml(4206))
    (site["envs"] / "alpha.yaml").write_text(env_yaml(4206, extra="images: {besu: 'hyperledger/besu:26.9.0'}\n"))
    shown, committed = diff_then_compile(site, "alpha")
    assert shown == committed and "besu:26.9.0" in shown


def test_new_rpc_node(site):
    published(site, alpha=env_yaml(4207))
    (site["envs"] / "alpha.yaml").write_text(env_yaml(4207, rpc=2))
    shown, committed = diff_then_compile(site, "alpha")
    assert shown == committed and "<new key: rpc-1 address, generated at compile>" in shown
    assert "Validators" not in shown


def test_decommission(site):
    published(site, alpha=env_yaml(4208), beta=env_yaml(4218))
    (site["envs"] / "alpha.yaml").write_text(env_yaml(4208) + "decommission: true\n")
    shown, committed = diff_then_compile(site, "alpha")
    assert shown == committed and "DECOMMISSION" in shown


def test_no_change_exits_zero_and_diff_writes_nothing_in_a_fresh_home(site):
    published(site, alpha=env_yaml(4209))
    assert site["cli"]("diff", "alpha").code == 0
    fresh = site["tmp"] / "fresh-home"
    result = site["run"]("diff", "alpha", "--home", fresh, "--environments", site["envs"], "--repo", site["remote"])
    assert result.code == 2 and "alpha" in result.err, "a home without the identity cannot read the escrow"
    assert not fresh.exists()


@pytest.mark.parametrize(
    ("breakage", "needle"),
    [
        ("nodes: {validators: four}\n", "nodes"),  # a broken field
        ("values: {besu-node: {rpc: {unknownField: 1}}}\n", "unknownField"),  # a chart-schema error
        ("network: [\n", "alpha.yaml"),  # not YAML
    ],
)
def test_diff_exits_two_on_a_broken_environment(site, breakage, needle):
    published(site, alpha=env_yaml(4210))
    (site["envs"] / "alpha.yaml").write_text(env_yaml(4210) + breakage)
    result = site["cli"]("diff", "alpha")
    assert result.code == 2 and result.out == "" and needle in result.err
    assert len(result.err.strip().splitlines()) == 1 and "Traceback" not in result.err


def test_diff_exits_two_on_an_unknown_environment_and_an_unreadable_remote(site):
    assert site["cli"]("diff", "nosuch").code == 2
    (site["envs"] / "alpha.yaml").write_text(env_yaml(4211))
    result = site["run"]("diff", "alpha", "--home", site["home"], "--environments", site["envs"], "--repo", site["tmp"] / "missing.git")
    assert result.code == 2 and "Traceback" not in result.err


def readme_recipe() -> str:
    text = (REPO_ROOT / "README.md").read_text()
    return re.search(r"<!-- ci-recipe -->\n```sh\n(.*?)```", text, re.S)[1]


@pytest.mark.slow  # runs the recipe in bash: three chainops processes
def test_the_readme_ci_recipe_fails_on_a_broken_environment_and_passes_on_a_change(site):
    published(site, alpha=env_yaml(4212))
    script = site["tmp"] / "ci.sh"
    script.write_text("set -eu\n" + readme_recipe())
    env = {**os.environ, "PATH": f"{REPO_ROOT / '.venv' / 'bin'}:{os.environ['PATH']}", "GITOPS_URL": str(site["remote"]),
           "ENV": "alpha", "CHAINOPS_ENVIRONMENTS": str(site["envs"]), "CHAINOPS_HOME": str(site["home"])}

    def run() -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(script)], cwd=site["tmp"], env=env, capture_output=True, text=True)

    assert run().returncode == 0, "no change"
    (site["envs"] / "alpha.yaml").write_text(env_yaml(4212, rpc=2))
    changed = run()
    assert changed.returncode == 0, changed.stderr
    assert "rpc-1" in (site["tmp"] / "diff.md").read_text()
    (site["envs"] / "alpha.yaml").write_text(env_yaml(4212) + "nodes: {validators: four}\n")
    assert run().returncode != 0
