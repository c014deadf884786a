"""Identity safety: no operator mistake or damaged repository silently resets a chain.

Each test drives the real CLI against a real bare git remote that is damaged the way an
operator would damage it (a force push, `git rm`, a hand edit committed and pushed, a
renamed environment file, a URL with a token in it, a lost age identity). Each asserts:
the run is refused (exit 1, or 2 for a bad flag) with a message that names the
environment and the repair, the remote's refs are unchanged and no escrow gained a key;
then that the documented repair (or the explicit per-environment flag) does exactly what
it says, for that one environment only. Addresses are cross-checked from the private
keys in the escrow (decrypted with pyrage, addresses derived with eth-account).
"""

from __future__ import annotations

import base64
import json
import re
import shlex
import subprocess
from pathlib import Path

import pyrage
import pytest
from eth_account import Account

from pipelines.lib.model import PublishTarget, without_credentials
from pipelines.lib.sealing import sops_binary
from tests.conftest import commit_count, git
from tests.git_http_server import GitHttpServer
from tests.key_helpers import identity_secret, sops_decrypt
from tests.yaml_reader import read_yaml, read_yaml_all


def env_yaml(chain_id: int, *, validators: int = 1, rpc: int = 1, namespace: str | None = None) -> str:
    """A small besu-qbft environment that compiles in well under a second."""
    return (
        "apiVersion: chainops/v1\n"
        f"network: {{chainId: {chain_id}, client: besu, consensus: qbft}}\n"
        f"nodes: {{validators: {validators}, rpc: {rpc}}}\n"
        "accounts: [{name: faucet, balance: 10 ether}]\n"
        f"kubernetes: {{namespace: {namespace or f'chain-{chain_id}'}}}\n"
        "gitops: {controller: flux, review: direct}\n"
    )


@pytest.fixture
def cli(run_cli, monkeypatch):
    for var in ("CHAINOPS_FORGE", "CHAINOPS_GIT_TOKEN", "CHAINOPS_CLUSTER_REPO_URL", "CHAINOPS_MNEMONIC"):
        monkeypatch.delenv(var, raising=False)
    return run_cli


@pytest.fixture
def site(tmp_path: Path, cli, published_sites):
    """Two published environments, alpha (2 validators) and beta, in a bare remote
    (compiled once, copied per test)."""

    def publish(where) -> None:
        where.envs.mkdir()
        (where.envs / "alpha.yaml").write_text(env_yaml(4101, validators=2))
        (where.envs / "beta.yaml").write_text(env_yaml(4102))
        subprocess.run(["git", "init", "-q", "--bare", "--initial-branch=main", str(where.remote)], check=True)
        first = cli("compile", *where.where)
        assert first.code == 0, first.err

    published = published_sites.copy_into(tmp_path, "identity:alpha+beta", publish)
    envs, remote, home = published.envs, published.remote, published.home

    def compile_(*args: str):
        return cli("compile", *args, *published.where)

    return {"envs": envs, "remote": remote, "home": home, "compile": compile_, "tmp": tmp_path}


def refs(remote: Path) -> str:
    return git(remote, "for-each-ref", "--format=%(refname) %(objectname)")


def locked_addresses(remote: Path, env: str, rev: str = "main") -> dict[str, str]:
    lock = json.loads(git(remote, "show", f"{rev}:rendered/{env}/network.lock.json"))
    found = {n["name"]: n["address"] for n in lock["nodes"]}
    found |= {f"account/{a['name']}": a["address"] for a in lock["accounts"]}
    return found


def escrow(remote: Path, env: str, home: Path, rev: str = "main") -> dict:
    data = subprocess.run(
        ["git", "--git-dir", str(remote), "show", f"{rev}:rendered/{env}/keys.escrow.age"], capture_output=True, check=True
    ).stdout
    identity = pyrage.x25519.Identity.from_str(identity_secret(home / "age" / "identity.txt"))
    return json.loads(pyrage.decrypt(data, [identity]))


def escrow_addresses(remote: Path, env: str, home: Path, rev: str = "main") -> dict[str, str]:
    """Addresses derived from the escrow's private keys (eth-account): the second route."""
    return {name: Account.from_key(bytes.fromhex(k["privateKey"])).address for name, k in escrow(remote, env, home, rev)["keys"].items()}


def escrow_blob(remote: Path, env: str) -> str:
    return git(remote, "rev-parse", f"main:rendered/{env}/keys.escrow.age").strip()


def operator_commit(site: dict, *shell: str) -> None:
    """A person edits the GitOps repository: clone, run commands, commit everything, push."""
    work = site["tmp"] / f"op-{len(list(site['tmp'].glob('op-*')))}"
    subprocess.run(["git", "clone", "-q", "-b", "main", str(site["remote"]), str(work)], check=True)
    for command in shell:
        subprocess.run(command, shell=True, cwd=work, check=True)
    subprocess.run(["git", "-C", str(work), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(work), "-c", "user.name=op", "-c", "user.email=op@x", "commit", "-qm", "hand edit"], check=True)
    subprocess.run(["git", "-C", str(work), "push", "-q", "origin", "main"], check=True)


def edit_lock(env: str, code: str) -> str:
    """A shell command that edits rendered/<env>/network.lock.json with Python code on `d`."""
    path = f"rendered/{env}/network.lock.json"
    script = f"import json; p={path!r}; d=json.load(open(p)); {code}; open(p, 'w').write(json.dumps(d, indent=2, sort_keys=True))"
    return f"python3 -c {shlex.quote(script)}"


def refused(result, *needles: str) -> None:
    assert result.code == 1, (result.code, result.out, result.err)
    assert result.out == ""
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.err
    for needle in needles:
        assert needle in result.err, (needle, result.err)
    assert "Traceback" not in result.err


# -- --decommission -------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["", ".", "rendered/..", "../../etc", "Alpha", "nosuchenv", "alpha/"])
def test_decommission_takes_only_names_of_published_environments(site, name):
    before = refs(site["remote"])
    result = site["compile"]("--decommission", name)
    assert result.code == 2 and result.out == "" and "Traceback" not in result.err, result
    assert f"--decommission {name!r}" in result.err or f"--decommission {name}:" in result.err
    if name == "nosuchenv":
        assert "published environments: alpha, beta" in result.err
    assert refs(site["remote"]) == before


def test_decommission_of_one_environment_touches_no_other(site):
    alpha_tree = git(site["remote"], "rev-parse", "main:rendered/alpha").strip()
    result = site["compile"]("--decommission", "beta")
    assert result.code == 0 and re.search(r"^beta: decommissioned  commit [0-9a-f]{12}$", result.out, re.M), result
    changed = git(site["remote"], "diff-tree", "--no-commit-id", "--name-only", "-r", "main").split()
    assert changed and all(p.startswith(("rendered/beta/", "bootstrap/beta.yaml", ".sops.yaml")) for p in changed)
    assert git(site["remote"], "rev-parse", "main:rendered/alpha").strip() == alpha_tree


def test_decommission_true_of_an_unpublished_environment_is_a_no_op(site):
    (site["envs"] / "gamma.yaml").write_text(env_yaml(4103) + "decommission: true\n")
    before = refs(site["remote"])
    result = site["compile"]()
    assert result.code == 0 and "gamma: decommission: true, and nothing of it is published  unchanged" in result.out
    assert refs(site["remote"]) == before


# -- a rewound remote --------------------------------------------------------------------------
def force_push(site: dict, rev: str) -> None:
    work = site["tmp"] / f"op-{len(list(site['tmp'].glob('op-*')))}"
    subprocess.run(["git", "clone", "-q", "-b", "main", str(site["remote"]), str(work)], check=True)
    subprocess.run(["git", "-C", str(work), "push", "-q", "--force", "origin", f"{rev}:refs/heads/main"], check=True)


def test_a_rewound_remote_is_refused_and_the_printed_command_restores_it(site):
    remote = site["remote"]
    beta = locked_addresses(remote, "beta")
    force_push(site, "main~1")  # a bad `git push -f`: beta's commit is gone
    assert git(remote, "ls-tree", "--name-only", "main", "rendered/").split() == ["rendered/alpha"]
    before = refs(remote)
    result = site["compile"]()
    refused(result, "GitOps branch main of", "was rewound", "--accept-remote-rewind", "Nothing was written")
    assert refs(remote) == before
    command = re.search(r"`(git --git-dir \S+ push \S+ [0-9a-f]{40}:refs/heads/main)`", result.err).group(1)
    subprocess.run(shlex.split(command), check=True, capture_output=True)
    again = site["compile"]()
    assert again.code == 0 and again.out.count("unchanged") == 2, again
    assert locked_addresses(remote, "beta") == beta == escrow_addresses(remote, "beta", site["home"])


def test_a_deleted_branch_is_a_rewind_too(site):
    git(site["remote"], "update-ref", "-d", "refs/heads/main")
    refused(site["compile"](), "the branch is gone")
    assert refs(site["remote"]) == ""


def test_an_accepted_rewind_still_needs_a_reset_for_each_environment_whose_lock_it_dropped(site):
    remote, home = site["remote"], site["home"]
    alpha, beta = locked_addresses(remote, "alpha"), locked_addresses(remote, "beta")
    force_push(site, "main~1")
    before = refs(remote)
    refused(site["compile"]("--accept-remote-rewind"), "beta: the accepted rewind", "--allow-genesis-change ENV")
    assert refs(remote) == before
    # A refused run must not make the next one forget the tip it went back from.
    refused(site["compile"](), "was rewound")
    reset = site["compile"]("--accept-remote-rewind", "--allow-genesis-change", "beta")
    assert reset.code == 0, reset.err
    assert locked_addresses(remote, "alpha") == alpha
    new_beta = locked_addresses(remote, "beta")
    assert new_beta == escrow_addresses(remote, "beta", home) and not set(new_beta.values()) & set(beta.values())
    plain = site["compile"]()
    assert plain.code == 0 and plain.out.count("unchanged") == 2, "the accepted rewind is remembered"


# -- a damaged lock --------------------------------------------------------------------------
def test_a_deleted_lock_is_refused_and_restored_from_history(site):
    remote, home = site["remote"], site["home"]
    alpha = locked_addresses(remote, "alpha")
    operator_commit(site, "git rm -q rendered/alpha/network.lock.json")
    before, blob = refs(remote), escrow_blob(remote, "alpha")
    result = site["compile"]()
    refused(
        result,
        "alpha: rendered/alpha/network.lock.json is missing",
        "genesis.json, keys.escrow.age, 4 key Secrets",
        "--allow-genesis-change alpha",
    )
    assert refs(remote) == before and escrow_blob(remote, "alpha") == blob
    # The repair the message gives, as an operator runs it.
    hint = re.search(r"`(git log --diff-filter=D -1 -- \S+)`", result.err).group(1)
    work = site["tmp"] / "repair"
    subprocess.run(["git", "clone", "-q", "-b", "main", str(remote), str(work)], check=True)
    deleted_in = subprocess.run(hint.replace("git log", "git log --format=%H"), shell=True, cwd=work, capture_output=True, text=True, check=True).stdout.strip()
    subprocess.run(["git", "checkout", f"{deleted_in}~1", "--", "rendered/alpha/network.lock.json"], cwd=work, check=True)
    subprocess.run(["git", "-c", "user.name=op", "-c", "user.email=op@x", "commit", "-qm", "restore lock"], cwd=work, check=True)
    subprocess.run(["git", "push", "-q", "origin", "main"], cwd=work, check=True)
    again = site["compile"]()
    assert again.code == 0 and again.out.count("unchanged") == 2, again
    assert locked_addresses(remote, "alpha") == alpha == escrow_addresses(remote, "alpha", home)


def test_the_reset_flag_resets_exactly_the_environment_it_names(site):
    remote, home = site["remote"], site["home"]
    alpha, beta_tree = locked_addresses(remote, "alpha"), git(remote, "rev-parse", "main:rendered/beta").strip()
    operator_commit(site, "git rm -q rendered/alpha/network.lock.json")
    refused(site["compile"]("--allow-genesis-change", "beta"), "alpha: rendered/alpha/network.lock.json is missing")
    reset = site["compile"]("--allow-genesis-change", "alpha")
    assert reset.code == 0, reset.err
    new_alpha = locked_addresses(remote, "alpha")
    assert new_alpha == escrow_addresses(remote, "alpha", home) and not set(new_alpha.values()) & set(alpha.values())
    assert git(remote, "rev-parse", "main:rendered/beta").strip() == beta_tree


def test_a_node_removed_from_the_lock_by_hand_is_refused(site):
    remote = site["remote"]
    operator_commit(site, edit_lock("alpha", "d['nodes'] = [n for n in d['nodes'] if n['name'] != 'validator-1']"))
    lock = json.loads(git(remote, "show", "main:rendered/alpha/network.lock.json"))
    assert len(lock["validators"]) == 2, "validator-1 is still in the locked genesis validator set"
    before, blob = refs(remote), escrow_blob(remote, "alpha")
    refused(site["compile"](), "alpha: rendered/alpha/network.lock.json does not list validator-1", "--allow-genesis-change alpha")
    assert refs(remote) == before and escrow_blob(remote, "alpha") == blob
    assert "validator-1" in escrow(remote, "alpha", site["home"])["keys"]


@pytest.mark.parametrize(
    ("field", "code"),
    [
        ("genesisHash", "del d['genesisHash']"),
        ("validators", "del d['validators']"),
        ("nodes.0.address", "d['nodes'][0]['address'] = 'not an address'"),
        ("environment", "d['environment'] = 'beta'"),
    ],
)
def test_a_lock_that_lost_a_field_is_refused_even_with_a_chain_id_change(site, field, code):
    operator_commit(site, edit_lock("alpha", code))
    path = site["envs"] / "alpha.yaml"
    path.write_text(path.read_text().replace("chainId: 4101", "chainId: 4109"))
    before = refs(site["remote"])
    message = "is the lock of environment 'beta'" if field == "environment" else f"field {field} is"
    refused(site["compile"](), "alpha: rendered/alpha/network.lock.json", message, "--allow-genesis-change alpha")
    assert refs(site["remote"]) == before


def test_a_chain_id_change_is_a_genesis_change_even_when_genesis_json_and_its_hash_are_gone(site):
    operator_commit(site, "git rm -q rendered/alpha/genesis.json", edit_lock("alpha", "del d['genesisFileSha256']"))
    path = site["envs"] / "alpha.yaml"
    path.write_text(path.read_text().replace("chainId: 4101", "chainId: 4109"))
    before = refs(site["remote"])
    refused(site["compile"](), "the committed genesis would change (chainId: 4101 -> 4109", "block hash unchanged")
    assert refs(site["remote"]) == before
    allowed = site["compile"]("--allow-genesis-change", "alpha")
    assert allowed.code == 0 and "alpha: GENESIS CHANGED" in allowed.out
    assert json.loads(git(site["remote"], "show", "main:rendered/alpha/network.lock.json"))["chainId"] == 4109


# -- a renamed environment file ----------------------------------------------------------------
def test_a_renamed_file_is_refused_and_rename_moves_the_network_with_its_keys(site):
    remote, home, envs = site["remote"], site["home"], site["envs"]
    alpha_lock = json.loads(git(remote, "show", "main:rendered/alpha/network.lock.json"))
    (envs / "alpha.yaml").rename(envs / "gamma.yaml")
    before = refs(remote)
    result = site["compile"]()
    refused(
        result,
        "gamma.yaml: network.chainId 4101 and kubernetes.namespace chain-4101 already belong to environment alpha",
        "(there is no environment file alpha.yaml)",
        "--rename alpha=gamma",
        "--decommission alpha",
    )
    assert refs(remote) == before
    moved = site["compile"]("gamma", "--rename", "alpha=gamma")
    assert moved.code == 0 and "alpha: renamed to gamma  commit" in moved.out, moved
    assert git(remote, "ls-tree", "--name-only", "main", "rendered/").split() == ["rendered/beta", "rendered/gamma"]
    gamma_lock = json.loads(git(remote, "show", "main:rendered/gamma/network.lock.json"))
    assert gamma_lock == {**alpha_lock, "environment": "gamma"}  # same genesis, validators, enodes
    sealed = escrow(remote, "gamma", home)
    assert sealed["environment"] == "gamma"
    assert escrow_addresses(remote, "gamma", home) == locked_addresses(remote, "gamma")
    # the cluster's Secret holds the same key (read back with the real sops binary)
    work = site["tmp"] / "check"
    subprocess.run(["git", "clone", "-q", "-b", "main", str(remote), str(work)], check=True)
    secret = sops_decrypt(work / "rendered/gamma/besu-node/secret-validator-0-keys.yaml", home / "age" / "identity.txt")
    nodekey = base64.b64decode(secret["data"]["nodekey"]).decode()
    assert Account.from_key(bytes.fromhex(nodekey)).address == gamma_lock["nodes"][0]["address"]
    assert site["compile"]().out.count("unchanged") == 2


def test_a_new_file_in_a_published_namespace_is_refused(site):
    (site["envs"] / "beta.yaml").unlink()  # beta is still published: its namespace is taken
    (site["envs"] / "delta.yaml").write_text(env_yaml(4104, namespace="chain-4102"))
    before = refs(site["remote"])
    refused(site["compile"](), "delta.yaml: kubernetes.namespace chain-4102 already belong to environment beta")
    assert refs(site["remote"]) == before


# -- credentials in URLs -----------------------------------------------------------------------
TOKEN = "glpat-identity-0123456789"


def test_credentials_in_repository_urls_never_reach_git(cli, tmp_path, monkeypatch):
    root = tmp_path / "served"
    root.mkdir()
    bare = root / "gitops.git"
    subprocess.run(["git", "init", "-q", "--bare", "--initial-branch=main", str(bare)], check=True)
    envs = tmp_path / "environments"
    envs.mkdir()
    (envs / "alpha.yaml").write_text(env_yaml(4101))
    with GitHttpServer(root, "deploy", TOKEN) as server:
        url = server.url("gitops.git").replace("http://", f"http://deploy:{TOKEN}@")
        first = cli("compile", "--home", tmp_path / "home", "--environments", envs, "--repo", url)
        assert first.code == 0, first.err
        bootstrap = list(read_yaml_all(git(bare, "show", "main:bootstrap/alpha.yaml")))
        assert bootstrap[0]["spec"]["url"] == server.url("gitops.git")
        monkeypatch.setenv("CHAINOPS_CLUSTER_REPO_URL", "https://flux:s3cret-pass@git.example.com/org/gitops.git")
        second = cli("compile", "--home", tmp_path / "home", "--environments", envs, "--repo", url)
        assert second.code == 0, second.err
    bootstrap = list(read_yaml_all(git(bare, "show", "main:bootstrap/alpha.yaml")))
    assert bootstrap[0]["spec"]["url"] == "https://git.example.com/org/gitops.git"
    history = git(bare, "log", "-p", "--all")
    assert TOKEN not in history and "s3cret-pass" not in history
    assert TOKEN not in first.out + first.err + second.out + second.err


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:tok@git.example.com/a.git", "https://git.example.com/a.git"),
        ("https://tok@git.example.com/a.git", "https://git.example.com/a.git"),
        ("ssh://git:pw@git.example.com/a.git", "ssh://git@git.example.com/a.git"),
        ("ssh://git@git.example.com/a.git", "ssh://git@git.example.com/a.git"),
        ("git@git.example.com:org/a.git", "ssh://git@git.example.com/org/a.git"),
    ],
)
def test_cluster_urls_lose_their_secrets(url, shown):
    assert without_credentials(url) == shown or url.startswith("git@")
    assert PublishTarget(url, "main").url_for_cluster == shown


# -- .sops.yaml --------------------------------------------------------------------------------
def sops_recipients_for(work: Path, relative: str) -> list[str]:
    """The age recipients the real sops binary picks from .sops.yaml for a new file there."""
    path = work / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("apiVersion: v1\nkind: Secret\nmetadata: {name: probe}\ndata: {k: dg==}\n")
    out = subprocess.run(
        [sops_binary(), "--disable-version-check", "--encrypt", relative], cwd=work, capture_output=True, text=True, check=True
    ).stdout
    return sorted(entry["recipient"] for entry in read_yaml(out)["sops"]["age"])


def recipient_of(home: Path) -> str:
    return str(pyrage.x25519.Identity.from_str(identity_secret(home / "age" / "identity.txt")).to_public())


def test_a_new_identity_never_rekeys_another_environment(site, cli):
    remote, envs = site["remote"], site["envs"]
    old_rules = read_yaml(git(remote, "show", "main:.sops.yaml"))["creation_rules"]
    (envs / "gamma.yaml").write_text(env_yaml(4103))
    lost = site["tmp"] / "new-home"  # the age identity is lost: a new home makes a new one
    result = cli("compile", "gamma", "--home", lost, "--environments", envs, "--repo", remote)
    assert result.code == 0, result.err
    rules = read_yaml(git(remote, "show", "main:.sops.yaml"))["creation_rules"]
    assert [r for r in rules if "gamma" not in r["path_regex"]] == old_rules
    work = site["tmp"] / "sops-check"
    subprocess.run(["git", "clone", "-q", "-b", "main", str(remote), str(work)], check=True)
    old, new = recipient_of(site["home"]), recipient_of(lost)
    assert old != new
    assert sops_recipients_for(work, "rendered/alpha/besu-node/secret-probe.yaml") == [old]
    assert sops_recipients_for(work, "rendered/beta/besu-node/secret-probe.yaml") == [old]
    assert sops_recipients_for(work, "rendered/gamma/besu-node/secret-probe.yaml") == [new]
    assert commit_count(remote) == 3


# -- the same guards in Dagster ----------------------------------------------------------------
@pytest.fixture
def dagster_site(site):
    import dagster as dg

    from pipelines.defs.resources import ChainopsResource
    from tests.conftest import REPO_ROOT

    resource = ChainopsResource(
        environments_dir=str(site["envs"]), home=str(site["home"]), repo=str(site["remote"]), charts_dir=str(REPO_ROOT / "chart_sources")
    )
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("environments", ["alpha", "beta", "gamma"])
        yield {**site, "resource": resource, "instance": instance}


def materialize(site: dict, partition: str, tags: dict | None = None):
    import dagster as dg

    from pipelines.defs.compile.assets import genesis, node_keys, rendered_manifests
    from pipelines.defs.compile.checks import genesis_lock, manifests_valid, no_plaintext_secrets
    from pipelines.defs.environments.assets import environment_config
    from pipelines.defs.environments.checks import config_valid
    from pipelines.defs.publish.assets import gitops_commit

    return dg.materialize(
        [environment_config, node_keys, genesis, rendered_manifests, gitops_commit, config_valid, genesis_lock, manifests_valid, no_plaintext_secrets],
        partition_key=partition,
        instance=site["instance"],
        resources={"chainops": site["resource"]},
        tags=tags,
        raise_on_error=False,
    )


def failure_of(result, step: str) -> str:
    failures = [e for e in result.all_events if e.is_step_failure and e.step_key == step]
    assert failures, f"{step} did not fail"
    return failures[0].event_specific_data.user_failure_data.description


def test_dagster_refuses_a_deleted_lock_and_the_run_tag_resets_that_environment(dagster_site):
    site = dagster_site
    remote, home = site["remote"], site["home"]
    alpha = locked_addresses(remote, "alpha")
    operator_commit(site, "git rm -q rendered/alpha/network.lock.json")
    before = refs(remote)
    result = materialize(site, "alpha")
    assert not result.success
    message = failure_of(result, "node_keys")
    assert "alpha: rendered/alpha/network.lock.json is missing" in message
    assert "the run tag chainops/allow-genesis-change=true" in message and "--allow-genesis-change" not in message
    assert refs(remote) == before
    reset = materialize(site, "alpha", tags={"chainops/allow-genesis-change": "true"})
    assert reset.success
    new_alpha = locked_addresses(remote, "alpha")
    assert new_alpha == escrow_addresses(remote, "alpha", home) and not set(new_alpha.values()) & set(alpha.values())


def test_dagster_refuses_a_rewound_remote_and_a_renamed_file(dagster_site):
    site = dagster_site
    remote = site["remote"]
    force_push(site, "main~1")
    before = refs(remote)
    result = materialize(site, "alpha")
    assert not result.success and "was rewound" in failure_of(result, "node_keys")
    assert "the run tag chainops/accept-remote-rewind=true" in failure_of(result, "node_keys")
    assert refs(remote) == before
    accept = {"chainops/accept-remote-rewind": "true"}
    dropped = materialize(site, "alpha", tags=accept)
    assert not dropped.success, "alpha's lock is the same on both tips, but the rewind dropped beta's"
    assert "beta: the accepted rewind of main drops the published lock" in failure_of(dropped, "node_keys")
    assert "the run tag chainops/allow-genesis-change=true" in failure_of(dropped, "node_keys")
    assert refs(remote) == before
    reset = materialize(site, "beta", tags={**accept, "chainops/allow-genesis-change": "true"})
    assert reset.success, "beta's own partition, tagged with both decisions"
    assert locked_addresses(remote, "beta") == escrow_addresses(remote, "beta", site["home"])
    assert materialize(site, "alpha").success, "the accepted rewind is remembered"
    # now alpha's file is renamed
    (site["envs"] / "alpha.yaml").rename(site["envs"] / "gamma.yaml")
    before = refs(remote)
    clash = materialize(site, "gamma")
    assert not clash.success
    assert "network.chainId 4101 and kubernetes.namespace chain-4101 already belong to environment alpha" in failure_of(clash, "node_keys")
    assert refs(remote) == before and git(remote, "ls-tree", "--name-only", "main", "rendered/").split() == ["rendered/alpha", "rendered/beta"]


def test_dagster_genesis_lock_check_shows_locked_and_computed_fields(dagster_site):
    site = dagster_site
    assert materialize(site, "beta").success
    path = site["envs"] / "beta.yaml"
    path.write_text(path.read_text().replace("chainId: 4102", "chainId: 4112"))
    result = materialize(site, "beta")
    assert not result.success
    evaluation = next(e for e in result.get_asset_check_evaluations() if e.check_name == "genesis_lock")
    assert not evaluation.passed
    locked, computed = evaluation.metadata["locked"].value, evaluation.metadata["computed"].value
    assert locked["chainId"] == 4102 and computed["chainId"] == 4112
    assert locked["genesisHash"] == computed["genesisHash"], "chainId is not part of the block hash"
    assert "chainId: 4102 -> 4112" in evaluation.metadata["differences"].value
    assert "the run tag chainops/allow-genesis-change=true" in evaluation.description


def test_dagster_removal_of_a_validator_waits_for_the_votes_run_tag(dagster_site):
    site = dagster_site
    remote = site["remote"]
    path = site["envs"] / "alpha.yaml"
    path.write_text(path.read_text().replace("validators: 2", "validators: 1"))
    before = refs(remote)
    leaving = locked_addresses(remote, "alpha")["validator-1"]
    refused = materialize(site, "alpha")
    message = failure_of(refused, "genesis")
    assert f'qbft_proposeValidatorVote("{leaving}", false) on 2 of the 2 validators' in message
    assert "the run tag chainops/validators-voted=true" in message and "--validators-voted" not in message
    assert refs(remote) == before
    voted = materialize(site, "alpha", tags={"chainops/validators-voted": "true"})
    assert voted.success
    assert "validator-1" not in locked_addresses(remote, "alpha")
    commit = next(e for e in voted.get_asset_materialization_events() if e.asset_key.path[-1] == "gitops_commit")
    assert commit.materialization.metadata["validator_count"].value == 1
    votes = commit.materialization.metadata["validator_votes"].value
    assert votes.startswith(f'1. before applying: qbft_proposeValidatorVote("{leaving}", false) on 2 of the 2 validators')
    assert "2. apply the change" in votes and commit.materialization.metadata["genesis_changed"].value is False
