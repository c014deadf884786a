"""Guardrails: well-formed files that are wrong for a real network, and failure paths.

Each refused case runs the real CLI on top of an already published environment and
asserts: exit 1 with one line naming the file, the field and the rule; the remote's refs,
the home (identity, cache, escrow copies) and the escrow blob byte-identical afterwards.
A second route checks the accepted cases (the rendered object, the genesis alloc).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, git
from tests.process_helpers import alive, descendants
from tests.yaml_reader import read_yaml

PUBLISHED = """\
apiVersion: chainops/v1
network: {chainId: 7201, client: besu, consensus: qbft}
nodes: {validators: 1, rpc: 1}
kubernetes: {namespace: chain-published}
"""
BASE = """\
apiVersion: chainops/v1
network: {chainId: 7202, client: besu, consensus: qbft}
nodes: {validators: 4, rpc: 1}
kubernetes: {namespace: chain-guard}
"""
CLUSTER_RECIPIENT = "age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3290gq"
PROD = BASE + f"production: true\ngitops: {{secrets: {{ageRecipients: [{CLUSTER_RECIPIENT}]}}}}\n"
GETH = """\
apiVersion: chainops/v1
network: {chainId: 7203, client: geth, consensus: clique}
nodes: {validators: 1, rpc: 1}
kubernetes: {namespace: chain-geth}
"""
CHECKSUMMED = "0x8ba1f109551bD432803012645Ac136ddd64DBA72"
BAD_CHECKSUM = "0x8ba1f109551bD432803012645Ac136ddd64dBA72"
INGRESS = "kubernetes: {namespace: chain-guard, rpcIngress: {host: rpc.guard.example.com, tlsSecretName: rpc-tls}}\n"
READ_APIS = "values: {besu-node: {rpc: {apis: [ETH, NET, WEB3]}}}\n"


def with_(base: str, *lines: str) -> str:
    text = base
    for line in lines:
        key = line.split(":", 1)[0]
        if text.count(f"\n{key}:") == 1 and not line.startswith(" "):
            text = "\n".join(ln for ln in text.split("\n") if not ln.startswith(f"{key}:"))
            text = text.rstrip("\n") + "\n"
        text += line if line.endswith("\n") else line + "\n"
    return text


def prod_ingress(*lines: str) -> str:
    return with_(PROD, INGRESS, *lines)


# (id, file text, field named, fragment of the rule)
REFUSED: list[tuple[str, str, str, str]] = [
    # reserved namespaces
    *[(f"namespace-{ns}", BASE.replace("chain-guard", ns), "kubernetes.namespace", "system namespace")
      for ns in ("kube-system", "default", "kube-public", "flux-system", "argocd", "sealed-secrets")],
    # production policy
    ("prod-admin-apis", prod_ingress("values: {besu-node: {rpc: {apis: [ETH, ADMIN, DEBUG]}}}"), "values.besu-node.rpc.apis", "ADMIN, DEBUG behind an Ingress"),
    ("prod-txpool-default", prod_ingress(), "values.besu-node.rpc.apis", "TXPOOL behind an Ingress"),
    ("prod-trace-api", prod_ingress("values: {besu-node: {rpc: {apis: [ETH, TRACE]}}}"), "values.besu-node.rpc.apis", "TRACE"),
    ("prod-vote-api", prod_ingress("values: {besu-node: {rpc: {apis: [ETH, QBFT]}}}"), "values.besu-node.rpc.apis", "QBFT behind an Ingress"),
    ("prod-cors-star", prod_ingress("values: {besu-node: {rpc: {apis: [ETH], corsOrigins: ['*']}}}"), "values.besu-node.rpc.corsOrigins", "any origin"),
    ("prod-no-tls", with_(PROD, "kubernetes: {namespace: chain-guard, rpcIngress: {host: rpc.guard.example.com}}", READ_APIS), "values.besu-node.rpc.ingress.tlsSecretName", "without TLS"),
    ("prod-snippet", prod_ingress("values: {besu-node: {rpc: {apis: [ETH], ingress: {annotations: {nginx.ingress.kubernetes.io/server-snippet: 'return 200;'}}}}}"), "values.besu-node.rpc.ingress.annotations", "server-snippet"),
    ("prod-latest", with_(PROD, "images: {besu: 'hyperledger/besu:latest'}"), "images.besu", "not a pinned release"),
    ("prod-develop", with_(PROD, "images: {besu: 'hyperledger/besu:develop'}"), "images.besu", "not a pinned release"),
    ("prod-one-validator", PROD.replace("validators: 4", "validators: 1"), "nodes.validators", "tolerate no fault"),
    ("prod-two-validators", PROD.replace("validators: 4", "validators: 2"), "nodes.validators", "at least 4"),
    ("prod-privileged", with_(PROD, "values: {network: {podSecurity: {level: privileged}}}"), "values.network.podSecurity.level", "enforces privileged"),
    ("prod-no-cluster-recipient", BASE + "production: true\n", "gitops.secrets.ageRecipients", "no cluster recipient"),
    ("prod-no-netpol", with_(PROD, "values: {network: {networkPolicy: {enabled: false}}}"), "values.network.networkPolicy.enabled", "no NetworkPolicy"),
    # exact inputs
    ("balance-no-unit", BASE + "accounts: [{name: faucet, balance: 1000000}]\n", "accounts[0].balance", "has no unit"),
    ("balance-digit-string", BASE + "accounts: [{name: faucet, balance: '1000000'}]\n", "accounts[0].balance", "has no unit"),
    ("balance-no-space", BASE + "accounts: [{name: faucet, balance: 1000000ether}]\n", "accounts[0].balance", "a space before the unit"),
    ("bad-eip55", BASE + f"accounts: [{{address: '{BAD_CHECKSUM}', balance: 1 ether}}]\n", "accounts[0].address", f"wrong EIP-55 checksum (mixed case); expected {CHECKSUMMED}"),
    ("zero-address", BASE + "accounts: [{address: '0x0000000000000000000000000000000000000000', balance: 1 ether}]\n", "accounts[0].address", "reserved"),
    ("precompile-contract", BASE + "contracts: [{address: '0x0000000000000000000000000000000000000004', code: '0x00'}]\n", "contracts[0].address", "precompiled"),
    ("storage-collision", BASE + "contracts: [{address: '0x00000000000000000000000000000000000000ff', code: '0x00', storage: {'0x1': '0x2', '0x0001': '0x3'}}]\n", "contracts[0].storage", "the same storage slot"),
    ("mainnet-chain-id", BASE.replace("chainId: 7202", "chainId: 1"), "network.chainId", "Ethereum mainnet"),
    ("sepolia-chain-id", BASE.replace("chainId: 7202", "chainId: 11155111"), "network.chainId", "Sepolia"),
    ("polygon-chain-id", BASE.replace("chainId: 7202", "chainId: 137"), "network.chainId", "Polygon"),
    ("mainnet-network-id", BASE.replace("chainId: 7202", "chainId: 7202, networkId: 1"), "network.networkId", "Ethereum mainnet"),
    ("ingress-ip", BASE.replace("namespace: chain-guard}", "namespace: chain-guard, rpcIngress: {host: 10.0.0.1}}"), "kubernetes.rpcIngress.host", "IP address"),
    ("pvc-zero", BASE.replace("namespace: chain-guard}", "namespace: chain-guard, storage: {size: '0'}}"), "kubernetes.storage.size", "positive size"),
    ("pvc-zero-gi", BASE.replace("namespace: chain-guard}", "namespace: chain-guard, storage: {size: 0Gi}}"), "kubernetes.storage.size", "positive size"),
    ("geth-too-new", with_(GETH, "images: {geth: 'ethereum/client-go:v1.14.0'}"), "images.geth", "seals no Clique blocks"),
    ("geth-latest-on-clique", with_(GETH, "images: {geth: 'ethereum/client-go:latest'}"), "images.geth", "has no release version"),
    ("genesis-over-1mib", BASE + "contracts: [{address: '0x00000000000000000000000000000000000000ff', code: '0x00', storage: {"
     + ", ".join(f"'0x{i:x}': '0x{i:064x}'" for i in range(1, 9000)) + "}}]\n", "accounts, contracts", "at most 1048576 bytes"),
    ("too-many-named-accounts", BASE + "accounts:\n" + "".join(f"  - {{name: a{i}, balance: 1 wei}}\n" for i in range(201)), "accounts", "at most 200"),
]


def snapshot(path: Path) -> dict[str, str]:
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.rglob("*")) if p.is_file()}


def refs(remote: Path) -> str:
    return git(remote, "for-each-ref", "--format=%(refname) %(objectname)")


@pytest.fixture
def site(tmp_path: Path, run_cli, monkeypatch, published_sites):
    """`published.yaml` published into a bare remote (compiled once, copied per test)."""
    for var in ("CHAINOPS_FORGE", "CHAINOPS_GIT_TOKEN", "CHAINOPS_CLUSTER_REPO_URL"):
        monkeypatch.delenv(var, raising=False)

    def publish(where) -> None:
        where.envs.mkdir()
        (where.envs / "published.yaml").write_text(PUBLISHED)
        subprocess.run(["git", "init", "-q", "--bare", "--initial-branch=main", str(where.remote)], check=True)
        assert run_cli("compile", *where.where).code == 0

    published = published_sites.copy_into(tmp_path, "guardrails:" + PUBLISHED, publish)
    envs, remote, home = published.envs, published.remote, published.home

    def cli(*args):
        return run_cli("compile", *published.where, *args)

    return {"envs": envs, "remote": remote, "home": home, "cli": cli, "tmp": tmp_path, "run": run_cli}


def state(site: dict) -> tuple:
    escrow = git(site["remote"], "rev-parse", "main:rendered/published/keys.escrow.age")
    return refs(site["remote"]), snapshot(site["home"]), escrow


@pytest.mark.parametrize(("text", "field", "fragment"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_dangerous_input_is_refused_with_one_line_and_nothing_changes(site, text, field, fragment):
    before = state(site)
    bad = site["envs"] / "bad.yaml"
    bad.write_text(text)
    result = site["cli"]()
    assert result.code == 1, (result.code, result.out, result.err)
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.err, result.err
    assert lines[0].startswith(f"error: {bad}: {field}: "), lines[0]
    assert fragment in lines[0], lines[0]
    assert state(site) == before, "the repository, the home and the escrow are untouched"


def test_the_same_findings_are_warnings_without_production(site):
    text = with_(BASE, INGRESS.replace(", tlsSecretName: rpc-tls", ""), "values: {besu-node: {rpc: {apis: [ETH, ADMIN]}}}")
    (site["envs"] / "bad.yaml").write_text(text)
    result = site["cli"]("--summary")
    assert result.code == 0, result.err
    assert "Production policy findings" in result.out
    assert "ADMIN behind an Ingress" in result.out and "without TLS" in result.out


def test_a_production_environment_that_follows_the_policy_compiles_with_tls_and_read_apis_only(site):
    (site["envs"] / "prod.yaml").write_text(prod_ingress(READ_APIS))
    result = site["cli"]("--summary")
    assert result.code == 0, result.err
    assert "Production policy findings" not in result.out
    ingress = read_yaml(git(site["remote"], "show", "main:rendered/prod/besu-node/ingress-rpc-jsonrpc.yaml"))
    assert ingress["spec"]["tls"] == [{"hosts": ["rpc.guard.example.com"], "secretName": "rpc-tls"}]
    config = git(site["remote"], "show", "main:rendered/prod/besu-node/configmap-besu-config.yaml")
    assert '"*"' not in config and "rpc.guard.example.com" in config, "host-allowlist names the hosts, not *"
    rpc = read_yaml(git(site["remote"], "show", "main:rendered/prod/besu-node/statefulset-rpc.yaml"))
    args = rpc["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--rpc-http-api=ETH,NET,WEB3" in args
    probe = rpc["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]
    assert probe["httpHeaders"] == [{"name": "Host", "value": "localhost"}], "probes pass the host allowlist"


@pytest.mark.parametrize(
    ("reference", "rendered"),
    [
        ("hyperledger/besu@sha256:" + "ab" * 32, "sha256-" + "ab" * 6),
        ("hyperledger/besu:26.8.0@sha256:" + "cd" * 32, "26.8.0"),
    ],
)
def test_a_digest_pin_is_accepted_and_rendered_as_given(site, reference, rendered):
    (site["envs"] / "pinned.yaml").write_text(with_(PROD, f"images: {{besu: '{reference}'}}"))
    assert site["cli"]().code == 0
    rpc = read_yaml(git(site["remote"], "show", "main:rendered/pinned/besu-node/statefulset-rpc.yaml"))
    assert rpc["spec"]["template"]["spec"]["containers"][0]["image"] == reference
    assert rpc["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/version"] == rendered


def test_a_public_chain_id_is_accepted_when_asked_for_and_checksums_in_one_case_are_accepted(site):
    text = BASE.replace("chainId: 7202", "chainId: 1, allowPublicChainId: true") + (
        f"accounts: [{{address: '{CHECKSUMMED.lower()}', balance: 1 ether}}, {{address: '{CHECKSUMMED.upper().replace('0X', '0x')}', balance: 2 ether}}]\n"
    )
    (site["envs"] / "pub.yaml").write_text(text)
    result = site["cli"]()
    assert result.code == 1 and "accounts" in result.err and "listed twice" in result.err, "same address, two cases"
    (site["envs"] / "pub.yaml").write_text(text.split("accounts:")[0] + f"accounts: [{{address: '{CHECKSUMMED}', balance: 1 ether}}]\n")
    assert site["cli"]().code == 0
    genesis = json.loads(git(site["remote"], "show", "main:rendered/pub/genesis.json"))
    assert genesis["config"]["chainId"] == 1
    (balance,) = [v["balance"] for k, v in genesis["alloc"].items() if k.lower().removeprefix("0x") == CHECKSUMMED[2:].lower()]
    assert int(balance, 0) == 10**18


@pytest.mark.parametrize("name", ["staging.YAML", "staging.yml", "staging.Yaml"])
def test_other_yaml_extensions_are_reported_not_ignored(site, name):
    before = state(site)
    (site["envs"] / name).write_text(BASE)
    result = site["cli"]()
    assert result.code == 1 and f"{site['envs'] / name}: file name:" in result.err and "use the .yaml extension" in result.err
    assert state(site) == before


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        (("--repo", "--upload-pack=touch /tmp/chainops-pwned"), "would be read as an option"),
        (("--branch", "../x"), "not a branch name"),
        (("--branch=-x",), "not a branch name"),
        (("--decommission", "../../etc"), "not an environment name"),
    ],
)
def test_hostile_locations_are_usage_errors_before_git_sees_them(site, flags, fragment):
    before = state(site)
    result = site["run"]("compile", "--home", site["home"], "--environments", site["envs"], *flags)
    assert result.code == 2 and fragment in result.err and "Traceback" not in result.err, result.err
    assert len(result.err.strip().splitlines()) == 1
    assert not Path("/tmp/chainops-pwned").exists()
    assert state(site) == before


def test_a_render_time_refusal_leaves_no_fresh_home(site):
    fresh = site["tmp"] / "fresh-home"
    (site["envs"] / "bad.yaml").write_text(BASE + "values: {besu-node: {rpc: {unknownField: 1}}}\n")
    result = site["run"]("compile", "bad", "--home", fresh, "--environments", site["envs"], "--repo", site["tmp"] / "other.git")
    assert result.code in (1, 2) and "Traceback" not in result.err
    assert not fresh.exists(), "no home, no identity, no cache"


@pytest.mark.parametrize("where", ["age", "cache"])
def test_a_home_that_cannot_be_written_is_one_line_and_exit_two(site, tmp_path, where):
    """What a full or read-only disk looks like to chainops: the identity or the cache cannot
    be created (here the path is the character device /dev/full, which no directory can be
    made in; mounting a full tmpfs needs root)."""
    home = tmp_path / "full-home"
    home.mkdir()
    (home / where).symlink_to("/dev/full")
    result = site["run"]("compile", "--home", home, "--environments", site["envs"], "--repo", tmp_path / "x.git")
    problems = [line for line in result.err.strip().splitlines() if not line.startswith("chainops: created a new")]
    assert result.code == 2 and "Traceback" not in result.err and len(problems) == 1 and problems[0].startswith("error: "), result.err


@pytest.mark.slow  # a kill point: starts chainops and its workers, then kills them
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_killing_chainops_mid_compile_leaves_no_child_process(tmp_path):
    envs = tmp_path / "environments"
    envs.mkdir()
    for i in range(6):
        (envs / f"e{i}.yaml").write_text(BASE.replace("7202", str(7300 + i)).replace("chain-guard", f"chain-k{i}"))
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", "--initial-branch=main", str(remote)], check=True)
    command = [str(REPO_ROOT / ".venv" / "bin" / "chainops"), "compile", "--jobs", "2", "--home", str(tmp_path / "home"),
               "--environments", str(envs), "--repo", str(remote)]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ})
    seen: set[int] = set()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(seen) < 2 and proc.poll() is None:
        seen |= descendants(proc.pid)
        time.sleep(0.05)
    assert len(seen) >= 2, "the compile started its worker processes"
    seen |= descendants(proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(5)
    survivors = [pid for pid in seen if alive(pid)]
    assert survivors == [], f"child processes outlived chainops: {survivors}"


CHILD_UNDER_DAGSTER = """
import signal, subprocess, time
from pipelines.lib.processes import prepare_child

signal.signal(signal.SIGINT, signal.SIG_IGN)  # what a non-interactive shell does to a background job
# What an in-process Dagster run does (dagster._utils.interrupts.setup_interrupt_handlers):
signal.signal(signal.SIGTERM, signal.getsignal(signal.SIGINT))
codes = []
for preexec in (None, prepare_child):
    child = subprocess.Popen(["sleep", "30"], preexec_fn=preexec)
    time.sleep(0.3)
    status = open(f"/proc/{child.pid}/status").read()
    ignored = int(next(line.split()[1] for line in status.splitlines() if line.startswith("SigIgn:")), 16)
    codes.append(sorted(n for n in (signal.SIGINT, signal.SIGTERM) if ignored >> (n - 1) & 1))
    child.terminate()
    try:
        codes.append(child.wait(timeout=0.7))
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
        codes.append("ignored SIGTERM")
print(codes)
"""


def test_children_stop_on_sigterm_when_chainops_runs_with_sigterm_ignored():
    """A process started plainly inherits the ignored SIGTERM (the smoke pods of a run started
    from a background Dagster worker outlived their teardown); one started with
    prepare_child, as every chainops child is, stops on it, and still ignores the SIGINT
    its background job ignores (read from /proc, SigIgn)."""
    out = subprocess.run([sys.executable, "-c", CHILD_UNDER_DAGSTER], capture_output=True, text=True, cwd=REPO_ROOT, check=True).stdout
    assert out.strip() == str([[signal.SIGINT, signal.SIGTERM], "ignored SIGTERM", [signal.SIGINT], -signal.SIGTERM])


def test_a_chart_that_writes_a_key_in_readable_form_is_refused_by_compile(site, tmp_path):
    """The leak scan runs in every compile (CLI and Dagster), not only as a Dagster check."""
    import shutil

    charts = tmp_path / "charts"
    shutil.copytree(REPO_ROOT / "chart_sources", charts)
    (charts / "besu-node" / "templates" / "debug.yaml").write_text(
        '{% import "_common/_helpers.j2" as h with context %}\n{% set node = Values.secrets[0] %}\n'
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: debug-keys\n  namespace: {{ Values.namespace | tojson }}\n"
        "data:\n  nodekey: {{ node.data.nodekey | tojson }}\n"
    )
    before = state(site)
    (site["envs"] / "bad.yaml").write_text(BASE)
    result = subprocess.run(
        [str(REPO_ROOT / ".venv/bin/chainops"), "compile", "--home", str(site["home"]), "--environments", str(site["envs"]),
         "--repo", str(site["remote"])],
        capture_output=True, text=True, env={**os.environ, "CHAINOPS_CHARTS": str(charts)},
    )
    assert result.returncode == 1, result.stderr
    assert "rendered/bad/besu-node/configmap-debug-keys.yaml would commit a private key" in result.stderr
    assert state(site) == before
