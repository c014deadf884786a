"""The review summary and the network page, from hand-built repository states.

Each state is a small environment written here (lock, genesis, workloads, Secrets), so
every expectation follows from the change the test makes, not from chainops' output.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from pipelines.lib import markdown, review
from pipelines.lib.yaml_io import dump_yaml
from tests.conftest import git
from tests.yaml_reader import read_yaml

ENV = "demo"
NS = "chain-demo"
V = [f"0x{i:040x}" for i in range(1, 9)]  # addresses: validators use V[0..], rpc nodes V[5..]
SENTINEL = "PLAINTEXT-SENTINEL-do-not-show"


def statefulset(name: str, replicas: int, image: str) -> dict:
    labels = {"app.kubernetes.io/component": name, "app.kubernetes.io/instance": ENV}
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name, "namespace": NS, "labels": labels},
        "spec": {
            "replicas": replicas,
            "serviceName": name,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "besu", "image": image, "ports": [{"name": "http", "containerPort": 8545}]}]},
            },
        },
    }


def sops_secret(name: str, payload: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": NS},
        "data": {"nodekey": f"ENC[AES256_GCM,data:{payload},type:str]"},
        "sops": {"age": [{"recipient": "age1xyz", "enc": "..."}], "mac": f"ENC[{payload}]"},
    }


def state(
    *,
    image: str = "hyperledger/besu:25.10.0",
    validators: int = 4,
    rpc: int = 2,
    gas_limit: int = 30_000_000,
    genesis_hash: str = "0x" + "aa" * 32,
    consensus: str = "qbft",
    rotated: str | None = None,
    plaintext: bool = False,
    secret_payload: str = "cipher-1",
) -> dict[str, bytes]:
    """Files of one environment as committed: lock, genesis, two StatefulSets, Secrets, bootstrap."""
    base = f"rendered/{ENV}/"
    nodes = [{"name": f"validator-{i}", "role": "validator", "address": V[i]} for i in range(validators)]
    nodes += [{"name": f"rpc-{i}", "role": "rpc", "address": V[5 + i]} for i in range(rpc)]
    for node in nodes:
        if node["name"] == rotated:
            node["address"] = "0x" + "ee" * 20
        node["enode"] = f"enode://{'0' * 128}@{node['name']}.{node['role']}.{NS}.svc.cluster.local:30303"
        node["secret"] = f"{node['name']}-keys"
    lock = {"environment": ENV, "consensus": consensus, "genesisHash": genesis_hash, "nodes": nodes,
            "validators": V[:validators], "accounts": []}
    files = {
        base + "network.lock.json": json.dumps(lock, sort_keys=True).encode(),
        base + "genesis.json": json.dumps({"gasLimit": hex(gas_limit), "alloc": {}}, sort_keys=True).encode(),
        base + "besu-node/statefulset-validator.yaml": dump_yaml(statefulset("validator", validators, image)).encode(),
        base + "kustomization.yaml": b"resources: []\n",
        f"bootstrap/{ENV}.yaml": b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: boot, namespace: flux-system}\n---\n"
        b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: boot2, namespace: flux-system}\n",
    }
    if rpc:
        files[base + "besu-node/statefulset-rpc.yaml"] = dump_yaml(statefulset("rpc", rpc, image)).encode()
    for node in nodes:
        secret = sops_secret(node["secret"], secret_payload)
        files[f"{base}besu-node/secret-{node['secret']}.yaml"] = dump_yaml(secret).encode()
    if plaintext:
        files[base + "besu-node/secret-dev-plain.yaml"] = dump_yaml(
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "dev-plain", "namespace": NS},
             "stringData": {"password": SENTINEL}}
        ).encode()
    return files


def section(markdown: str, title: str) -> str:
    """The body of one `### title` section ("" when absent)."""
    match = re.search(rf"^### {re.escape(title)}\n(.*?)(?=^### |\Z)", markdown, re.M | re.S)
    return match.group(1) if match else ""


def test_no_change_is_no_change():
    summary = review.build_summary(ENV, state(), state())
    assert summary.kind == "none" and not summary.changed
    assert "No changes." in review.render_summary(summary)
    assert review.commit_lines(summary) == []


def test_image_bump_new_rpc_node_and_genesis_change_are_exactly_what_is_listed():
    before = state()
    after = state(image="hyperledger/besu:25.11.0", rpc=3, gas_limit=40_000_000, genesis_hash="0x" + "bb" * 32)
    summary = review.build_summary(ENV, before, after)
    assert summary.genesis_changed and summary.genesis_fields == ("gasLimit",)
    assert [(i.before, i.after) for i in summary.images] == [("hyperledger/besu:25.10.0", "hyperledger/besu:25.11.0")]
    assert summary.images[0].containers == ("StatefulSet/rpc: besu", "StatefulSet/validator: besu")
    assert [(r.name, r.before, r.after) for r in summary.replicas] == [("rpc", 2, 3)]
    assert [n.name for n in summary.nodes_added] == ["rpc-2"] and summary.nodes_removed == ()
    assert summary.validators_added == summary.validators_removed == () and summary.plan is None
    assert summary.keys_rotated == () and summary.plaintext_secrets == ()
    assert [(o.action, o.kind, o.name) for o in summary.objects if o.action != "changed"] == [("added", "Secret", "rpc-2-keys")]
    md = review.render_summary(summary)
    assert "GENESIS CHANGED" in md and "> [!CAUTION]" in md
    assert {m.group(1) for m in re.finditer(r"^### (.+)$", md, re.M)} == {"Images", "Replicas", "Nodes", "Objects", "Files"}
    assert section(md, "Nodes").strip() == f"- added: `rpc-2` (rpc, `{V[7]}`)"
    assert section(md, "Images").count("`hyperledger/besu:25.11.0`") == 1
    assert summary.headline().startswith("GENESIS CHANGED, image besu:25.10.0 -> besu:25.11.0, rpc replicas 2 -> 3")


def test_secret_contents_are_never_shown():
    before = state(plaintext=True)
    after = state(plaintext=True, secret_payload="cipher-2")
    after_plain = after[f"rendered/{ENV}/besu-node/secret-dev-plain.yaml"].replace(SENTINEL.encode(), b"changed-" + SENTINEL.encode())
    after[f"rendered/{ENV}/besu-node/secret-dev-plain.yaml"] = after_plain
    summary = review.build_summary(ENV, before, after)
    md = review.render_summary(summary)
    secrets = [o for o in summary.objects if o.kind == "Secret"]
    assert len(secrets) == 7 and all(o.fields == () for o in secrets)
    assert {o.secret for o in secrets} == {"sealed", "plaintext"}
    assert SENTINEL not in md and "cipher-" not in md and "nodekey" not in md and "password" not in md
    assert summary.plaintext_secrets == ("dev-plain",)
    assert "Plaintext Secrets in use" in md and "`dev-plain`" in md


@pytest.mark.parametrize(
    ("consensus", "method"),
    [("qbft", "qbft_proposeValidatorVote"), ("ibft2", "ibft_proposeValidatorVote"), ("clique", "clique_propose")],
)
def test_validator_changes_come_with_the_vote_calls(consensus, method):
    before = state(consensus=consensus, validators=4)
    after = state(consensus=consensus, validators=5)  # genesis (hash) unchanged: a live chain votes
    summary = review.build_summary(ENV, before, after)
    assert [n.name for n in summary.validators_added] == ["validator-4"]
    (step,) = summary.plan.steps
    assert (summary.plan.method, step.target.address, step.add) == (method, V[4], True)
    assert [v.name for v in step.before] == ["validator-0", "validator-1", "validator-2", "validator-3"]
    assert step.needed == 3 and [v.name for v in step.voters] == ["validator-0", "validator-1", "validator-2"]
    payload = json.loads(step.payload(method))
    assert payload == {"jsonrpc": "2.0", "id": 1, "method": method, "params": [V[4], True]}
    md = review.render_summary(summary)
    assert f'{method}("{V[4]}", true)' in md and "3 of the 4 validators vote" in md
    assert md.index("Apply this change") < md.index(f'{method}("{V[4]}", true)'), "added validators are voted in after"
    removed = review.build_summary(ENV, before, state(consensus=consensus, validators=3))
    assert [(s.target.address, s.add) for s in removed.plan.steps] == [(V[3], False)]
    text = review.render_summary(removed)
    assert "1. Before this change is applied, remove `validator-3`" in text and "2. Apply this change" in text


def test_no_votes_when_the_genesis_is_reset_or_for_ethash():
    reset = review.build_summary(ENV, state(validators=4), state(validators=5, genesis_hash="0x" + "cc" * 32))
    assert reset.validators_added and reset.plan is None
    assert "written into the new genesis; no votes" in review.render_summary(reset)
    ethash = review.build_summary(ENV, state(consensus="ethash", validators=2), state(consensus="ethash", validators=3))
    assert ethash.validators_added and ethash.plan is None
    assert "has no validator votes" in review.render_summary(ethash)


def test_rotated_keys_are_named_and_nothing_else():
    summary = review.build_summary(ENV, state(), state(rotated="rpc-1"))
    assert summary.keys_rotated == ("rpc-1",)
    assert summary.nodes_added == summary.nodes_removed == ()
    md = section(review.render_summary(summary), "Keys rotated")
    assert md.strip() == "- `rpc-1`"


def test_new_environment_and_decommission():
    new = review.build_summary(ENV, {}, state())
    assert new.kind == "new" and len(new.nodes_added) == 6 and new.plan is None and not new.genesis_changed
    assert "New network: genesis" in review.render_summary(new)
    gone = review.build_summary(ENV, state(), {})
    assert gone.kind == "decommission" and gone.nodes_removed == ()
    assert {o.action for o in gone.objects} == {"removed"} and len(gone.objects) == 10  # 2 sts + 6 secrets + 2 bootstrap
    md = review.render_summary(gone)
    assert "DECOMMISSION" in md and "GENESIS CHANGED" not in md
    assert gone.headline() == "decommission"


def test_changed_fields_are_named_by_path_with_list_items_by_name():
    before, after = state(), state()
    sts = read_yaml(after[f"rendered/{ENV}/besu-node/statefulset-rpc.yaml"])
    sts["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = 9545
    sts["metadata"]["labels"]["a.b/c"] = "x"
    after[f"rendered/{ENV}/besu-node/statefulset-rpc.yaml"] = dump_yaml(sts).encode()
    (change,) = review.build_summary(ENV, before, after).objects
    assert change.fields == ('metadata.labels."a.b/c"', "spec.template.spec.containers[besu].ports[http].containerPort")


def test_markdown_special_characters_stay_inside_their_cells():
    evil = "registry.test/x|y:`1`"
    summary = review.build_summary(ENV, state(), state(image=evil))
    rows = [line for line in section(review.render_summary(summary), "Images").splitlines() if line.startswith("| `")]
    assert len(rows) == 1
    cells = re.split(r"(?<!\\)\|", rows[0])[1:-1]
    assert len(cells) == 3 and "``" in cells[1]


def test_terminal_rendering_colours_the_banner_only():
    md = review.render_summary(review.build_summary(ENV, state(), state(genesis_hash="0x" + "dd" * 32, gas_limit=1)))
    coloured = review.for_terminal(md).splitlines()
    red = [line for line in coloured if line.startswith("\x1b[1;31m")]
    assert len(red) == 1 and "GENESIS CHANGED" in red[0]


# -- the network page ------------------------------------------------------------------
def test_network_readme_from_a_real_compile(run_cli, envs_dir, tmp_path):
    home = tmp_path / "home"
    assert run_cli("compile", "staging", "--home", home, "--environments", envs_dir).code == 0
    bare = home / "gitops.git"
    readme = git(bare, "show", "main:rendered/staging/README.md")
    lock = json.loads(git(bare, "show", "main:rendered/staging/network.lock.json"))
    spec = read_yaml((envs_dir / "staging.yaml").read_text())
    kustomization = read_yaml(git(bare, "show", "main:rendered/staging/kustomization.yaml"))
    assert "README.md" not in kustomization["resources"]
    assert f"| Chain ID | {spec['network']['chainId']} (`{hex(spec['network']['chainId'])}`) |" in readme
    assert f"| Genesis hash | `{lock['genesisHash']}` |" in readme
    for node in lock["nodes"]:
        if node["role"] == "validator":
            assert f"| {node['name']} | `{node['address']}` | `{node['enode']}` |" in readme
    faucet = next(a for a in lock["accounts"] if a["name"] == "faucet")
    assert re.search(rf"\| faucet .*\| `{faucet['address']}` \| 1000000 \|", readme)
    external = next(a for a in spec["accounts"] if "address" in a)
    assert re.search(rf"\| external \| `{external['address']}` \| 500 \|", readme, re.I)
    forward = re.search(r"kubectl -n (\S+) port-forward svc/(\S+) 8545:8545", readme)
    assert forward and forward.group(1) == spec["kubernetes"]["namespace"]
    files = git(bare, "ls-tree", "-r", "--name-only", "main", "rendered/staging").split()
    assert f"rendered/staging/besu-node/service-{forward.group(2)}.yaml" in files
    diagram = readme.split("```mermaid\n", 1)[1].split("```", 1)[0]
    check_mermaid_structure(diagram)
    assert "validator-3" in diagram and "static peers" in diagram and "ethstats" in diagram


def check_mermaid_structure(diagram: str) -> None:
    """What GitHub's renderer needs: a flowchart header, balanced subgraphs, and edges only
    between ids declared as nodes or subgraphs."""
    lines = diagram.strip().splitlines()
    assert lines[0] == "flowchart LR"
    opened = sum(1 for line in lines if line.strip().startswith("subgraph "))
    assert opened == sum(1 for line in lines if line.strip() == "end") > 0
    declared = set(re.findall(r"^\s*(?:subgraph\s+)?([A-Za-z0-9_]+)[\[(]", diagram, re.M))
    for line in lines:
        edge = re.match(r"^\s*([A-Za-z0-9_]+) (?:-->|<-->|-\.->)(?:\|\"[^\"]*\"\|)? ([A-Za-z0-9_]+)$", line)
        if edge:
            assert {edge.group(1), edge.group(2)} <= declared, line


def test_readme_rendering_is_deterministic_and_changes_only_with_the_network(run_cli, envs_dir, tmp_path):
    home = tmp_path / "home"
    assert run_cli("compile", "staging", "--home", home, "--environments", envs_dir).code == 0
    first = git(home / "gitops.git", "rev-parse", "main")
    again = run_cli("compile", "staging", "--home", home, "--environments", envs_dir)
    assert again.code == 0 and "unchanged" in again.out
    assert git(home / "gitops.git", "rev-parse", "main") == first
    path = envs_dir / "staging.yaml"
    path.write_text(path.read_text().replace("rpc: 2", "rpc: 3"))
    assert run_cli("compile", "staging", "--home", home, "--environments", envs_dir).code == 0
    changed = subprocess.run(
        ["git", "--git-dir", str(home / "gitops.git"), "diff", "--name-only", "main~1", "main", "--", "rendered/staging/README.md"],
        capture_output=True, text=True, check=True,
    ).stdout.split()
    assert changed == ["rendered/staging/README.md"]
    assert "rpc-2" in git(home / "gitops.git", "show", "main:rendered/staging/README.md")


def test_templates_are_sandboxed_and_strict():
    env = markdown.template_env()
    assert env.is_safe_attribute is not None and type(env).__name__ == "SandboxedEnvironment"
    with pytest.raises(Exception, match="undefined"):
        env.from_string("{{ missing.value }}").render()
    assert Path(markdown.TEMPLATES_DIR / "review_summary.md.j2").is_file()


def test_markdown_blocks_are_separated_so_renderers_keep_them_apart():
    """A line right after a `>` alert would be swallowed into it (lazy continuation), and a
    heading glued to a paragraph renders as text in some renderers."""
    for before, after in (
        (state(validators=4), state(validators=5, genesis_hash="0x" + "ab" * 32, gas_limit=1)),
        (state(validators=4, plaintext=True), state(validators=3, plaintext=True)),
        (state(consensus="ethash"), state(consensus="ethash", validators=5)),
    ):
        lines = review.render_summary(review.build_summary(ENV, before, after)).splitlines()
        for previous, line in zip(lines, lines[1:]):
            assert not (previous.startswith(">") and line and not line.startswith(">")), (previous, line)
            if line.startswith(("### ", "> [!")):
                assert previous == "", line


# --------------------------------------------------------------------------- worker summaries


def test_a_worker_summary_is_reused_only_for_the_files_it_was_compiled_from(tmp_path):
    """Compile workers summarise against the files they compiled from; publishing reuses
    that summary only when the base holds exactly those files, otherwise it recomputes."""
    from pipelines.lib import publish
    from pipelines.lib.config import parse_environment
    from pipelines.lib.model import CompileContext, ExistingEnvironment, PublishTarget
    from pipelines.lib.pipeline import compile_environment
    from pipelines.lib.sealing import AgeIdentity
    from tests.conftest import EXAMPLES, REPO_ROOT

    home = tmp_path / "home"
    ctx = CompileContext(REPO_ROOT / "chart_sources", AgeIdentity.load_or_create(home),
                         PublishTarget(str(home / "gitops.git"), "main"))
    source = EXAMPLES / "staging.yaml"
    config = parse_environment("staging", source.read_text(), str(source))
    first = compile_environment(config, ExistingEnvironment("staging"), ctx)
    assert first.summary == review.build_summary("staging", {}, first.files, first.policy_warnings)
    assert first.summary.kind == "new"

    grown = parse_environment("staging", source.read_text().replace("rpc: 2", "rpc: 3"), str(source))
    second = compile_environment(grown, ExistingEnvironment("staging", dict(first.files)), ctx)
    recomputed = review.build_summary("staging", first.files, second.files, second.policy_warnings)
    assert second.summary == recomputed and second.summary.kind == "update"

    reused = publish.plan_compiled(None, None, second, config.profile.name, "direct", None, before=dict(first.files))
    assert reused.summary is second.summary
    other_base = publish.plan_compiled(None, None, second, config.profile.name, "direct", None, before={})
    assert other_base.summary is not second.summary and other_base.summary.kind == "new"


@pytest.mark.parametrize(("bootnodes", "static"), [(1, False), (0, True)])
def test_the_diagram_draws_static_peers_only_where_the_nodes_get_them(run_cli, tmp_path, bootnodes, static):
    """geth with a bootnode gets --bootnodes and discovers its peers; without one, the
    validators are static peers in config.toml. The diagram follows the rendered flags."""
    envs = tmp_path / "environments"
    envs.mkdir()
    (envs / "gethnet.yaml").write_text(
        "apiVersion: chainops/v1\n"
        "network: {chainId: 4301, client: geth, consensus: clique}\n"
        f"nodes: {{validators: 1, rpc: 1, bootnodes: {bootnodes}}}\n"
        "kubernetes: {namespace: chain-4301}\n"
        "gitops: {controller: flux, review: direct}\n"
    )
    home = tmp_path / "home"
    assert run_cli("compile", "--home", home, "--environments", envs).code == 0
    bare = home / "gitops.git"
    rpc = read_yaml(git(bare, "show", "main:rendered/gethnet/geth-node/statefulset-rpc.yaml"))
    args = " ".join(a for c in rpc["spec"]["template"]["spec"]["containers"] for a in c.get("args", []) + c.get("command", []))
    assert ("--config=/config/config.toml" in args) is static and ("--bootnodes=" in args) is (not static)
    diagram = git(bare, "show", "main:rendered/gethnet/README.md").split("```mermaid\n", 1)[1].split("```", 1)[0]
    check_mermaid_structure(diagram)
    assert ("static peers" in diagram) is static and ("discovery" in diagram) is (not static)
