"""Hostile and malformed environment files through the real CLI: each is refused with one
clear line naming the file and the field (or, for free-form text, rendered literally and
safely quoted), quickly, and nothing is written: no home directory, no key, no commit."""

from __future__ import annotations

import hashlib
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from pipelines.lib.config import shown_path
from tests.conftest import commit_count, git
from tests.yaml_reader import read_yaml_all

GOOD = """\
apiVersion: chainops/v1
network: {chainId: 7101, client: besu, consensus: qbft}
nodes: {validators: 1, rpc: 1}
kubernetes: {namespace: chain-good}
"""
BASE = """\
apiVersion: chainops/v1
network: {chainId: 7102, client: besu, consensus: qbft}
nodes: {validators: 1, rpc: 1}
kubernetes: {namespace: chain-bad}
"""

# Nine levels of ten aliases each: 10^9 strings once expanded, a few hundred bytes on disk.
BILLION_LAUGHS = BASE + "values:\n  besu-node:\n    a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"    {chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]\n" for i in range(8)
)
HUGE = BASE + "# " + "x" * (1 << 20) + "\n"


def edit(old: str, new: str) -> bytes:
    assert old in BASE
    return BASE.replace(old, new).encode()


# (id, file bytes, field the message names, fragment of the message)
REJECTED: list[tuple[str, bytes, str, str]] = [
    ("billion-laughs", BILLION_LAUGHS.encode(), "not valid YAML", "expands to more than 100000 values"),
    ("recursive-alias", BASE.encode() + b"values: &v {besu-node: *v}\n", "not valid YAML", "recursive alias"),
    ("deep-nesting", BASE.encode() + b"values: {besu-node: {x: " + b"[" * 500 + b"]" * 500 + b"}}\n", "not valid YAML", "nests deeper than 64"),
    ("huge-file", HUGE.encode(), "file", "larger than 1048576 bytes"),
    ("duplicate-key", BASE.encode() + b"network: {chainId: 1}\n", "not valid YAML", "duplicate key 'network'"),
    ("duplicate-nested-key", edit("rpc: 1}", "rpc: 1, rpc: 2}"), "not valid YAML", "duplicate key 'rpc'"),
    ("non-utf8", BASE.encode() + b"# \xff\xfe latin-1 \xe9\n", "file", "not UTF-8"),
    ("tab-indent", BASE.encode() + b"ethstats:\n\tenabled: true\n", "not valid YAML", "cannot start any token"),
    ("unknown-key", edit("rpc: 1}", "rpc: 1, archive: 2}"), "nodes.archive", "unknown key; allowed: bootnodes, rpc, validators"),
    ("unknown-top-key", BASE.encode() + b"helm: {hooks: true}\n", "helm", "unknown key; allowed:"),
    ("wrong-type-string", edit("chainId: 7102", "chainId: '7102'"), "network.chainId", "is not an integer"),
    ("wrong-type-bool", edit("validators: 1", "validators: true"), "nodes.validators", "is not an integer"),
    ("wrong-type-float", edit("validators: 1", "validators: 1.0"), "nodes.validators", "is not an integer"),
    ("wrong-type-nan", edit("consensus: qbft}", "consensus: qbft, gasLimit: .nan}"), "network.gasLimit", "is not an integer"),
    ("wrong-type-date", edit("consensus: qbft}", "consensus: qbft, genesisTimestamp: 2001-12-14}"), "network.genesisTimestamp", "integer"),
    ("impossible-date", edit("consensus: qbft}", "consensus: qbft, genesisTimestamp: 2001-13-45}"), "not a valid environment document", "month must be in 1..12"),
    ("unhashable-key", BASE.encode() + b"? [a, b]\n: 1\n", "not a valid environment document", "unhashable"),
    ("negative-count", edit("validators: 1", "validators: -1"), "nodes.validators", "greater than or equal to 1"),
    ("enormous-count", edit("rpc: 1", "rpc: 1000000000000000000000000000000"), "nodes.rpc", "less than or equal to 64"),
    ("int-of-5000-digits", edit("chainId: 7102", "chainId: " + "9" * 5000), "not a valid environment document", "4300"),
    ("negative-chain-id", edit("chainId: 7102", "chainId: -5"), "network.chainId", "greater than or equal to 1"),
    ("bad-balance-unit", BASE.encode() + b"accounts: [{name: faucet, balance: 5 eth}]\n", "accounts[0].balance", "is not a balance"),
    ("negative-balance", BASE.encode() + b"accounts: [{name: faucet, balance: -1 wei}]\n", "accounts[0].balance", "not a balance"),
    ("balance-beyond-uint256", BASE.encode() + b"accounts: [{name: faucet, balance: 1" + b"0" * 80 + b" ether}]\n", "accounts[0].balance", "out of range"),
    ("bad-storage-unit", edit("namespace: chain-bad}", "namespace: chain-bad, storage: {size: 20GB}}"), "kubernetes.storage.size", "not a Kubernetes quantity"),
    ("host-not-dns", edit("namespace: chain-bad}", "namespace: chain-bad, rpcIngress: {host: RPC_node.example.com}}"), "kubernetes.rpcIngress.host", "not a DNS host name"),
    ("host-with-path", edit("namespace: chain-bad}", "namespace: chain-bad, rpcIngress: {host: 'rpc.example.com/../admin'}}"), "kubernetes.rpcIngress.host", "not a DNS host name"),
    ("namespace-traversal", edit("namespace: chain-bad", "namespace: ../kube-system"), "kubernetes.namespace", "not a namespace name"),
    ("namespace-newline-injection", edit("namespace: chain-bad", 'namespace: "chain-bad\\nkind: Secret"'), "kubernetes.namespace", "not a namespace name"),
    ("namespace-colon-injection", edit("namespace: chain-bad", 'namespace: "x: y"'), "kubernetes.namespace", "not a namespace name"),
    ("namespace-jinja", edit("namespace: chain-bad", 'namespace: "{{ 7 * 7 }}"'), "kubernetes.namespace", "not a namespace name"),
    ("storage-class-jinja", edit("namespace: chain-bad}", "namespace: chain-bad, storage: {storageClassName: '{% raw %}x'}}"), "kubernetes.storage.storageClassName", "not a DNS subdomain"),
    ("account-name-path", BASE.encode() + b"accounts: [{name: ../../etc/passwd, balance: 1}]\n", "accounts[0].name", "DNS label"),
    ("account-name-jinja", BASE.encode() + b"accounts: [{name: '{{ cycler.__init__ }}', balance: 1}]\n", "accounts[0].name", "DNS label"),
    ("cert-path-traversal", BASE.encode() + b"gitops: {secrets: {provider: sealed-secrets, sealedSecretsCert: ../../etc/ssl/cert.pem}}\n", "gitops.secrets.sealedSecretsCert", "'..'"),
    ("cert-path-absolute", BASE.encode() + b"gitops: {secrets: {provider: sealed-secrets, sealedSecretsCert: /etc/ssl/cert.pem}}\n", "gitops.secrets.sealedSecretsCert", "no absolute paths"),
    ("image-jinja", BASE.encode() + b"images: {besu: '{{ config.items() }}:1'}\n", "images", "not an image reference"),
    ("image-injection", BASE.encode() + b'images: {besu: "hyperledger/besu:1\\ncommand: [sh]"}\n', "images", "not an image reference"),
    ("image-without-tag", BASE.encode() + b"images: {besu: hyperledger/besu}\n", "images", "not an image reference"),
    ("address-not-hex", BASE.encode() + b"accounts: [{address: '0xZZ', balance: 1}]\n", "accounts[0].address", "not an address"),
    ("plaintext-not-allowed", BASE.encode() + b"gitops: {secrets: {provider: plaintext}}\n", "gitops.secrets", "allowPlaintextSecrets"),
    ("python-object-tag", b"!!python/object/apply:os.system ['touch /tmp/chainops-pwned']\n", "not valid YAML", "python/object"),
    ("top-level-list", b"- apiVersion: chainops/v1\n", "(top level)", "must be a mapping"),
    ("empty-file", b"", "(top level)", "must be a mapping"),
    ("null-section", edit("nodes: {validators: 1, rpc: 1}", "nodes: ~"), "nodes", "valid dictionary"),
    ("huge-string-value", edit("namespace: chain-bad", "namespace: " + "a" * 200_000), "kubernetes.namespace", "not a namespace name"),
    ("nel-folded-by-yaml", BASE.encode() + b'values: {besu-node: {rpc: {ingress: {annotations: {a: "p\\x85q"}}}}}\n', "values.besu-node.rpc.ingress.annotations.a", "U+0085"),
    ("line-separator", BASE.encode() + b'values: {besu-node: {rpc: {ingress: {annotations: {a: "p\\u2028q"}}}}}\n', "values.besu-node.rpc.ingress.annotations.a", "U+2028"),
    ("terminal-escape", edit("namespace: chain-bad", 'namespace: "\\e[2Jchain"'), "kubernetes.namespace", "U+001B"),
    ("del-in-key", BASE.encode() + b'values: {besu-node: {"k\\x7f": 1}}\n', "values.besu-node", "U+007F"),
    ("wrong-api-version", edit("apiVersion: chainops/v1", "apiVersion: chainops/v2"), "apiVersion", "'chainops/v2' is not allowed"),
]
# File names that are not environment names (the name comes from the file).
BAD_NAMES = ["UPPER", "under_score", "a..b", "dot.ted", "x" * 41, "-lead", "new\nline: injected", "esc\x1b[2Jape"]


def snapshot(path: Path) -> dict[str, str]:
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest() for p in path.rglob("*") if p.is_file()}


@pytest.fixture
def setup(tmp_path: Path, run_cli):
    envs = tmp_path / "environments"
    envs.mkdir()
    (envs / "good.yaml").write_text(GOOD)
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", "--initial-branch=main", str(remote)], check=True)
    home = tmp_path / "home"

    def compile_all():
        return run_cli("compile", "--home", home, "--environments", envs, "--repo", remote)

    return envs, remote, home, compile_all


def assert_refused(result, source: Path, field: str, fragment: str, home: Path, remote: Path) -> None:
    assert result.code == 1, (result.code, result.err)
    assert "Traceback" not in result.err
    lines = result.err.removeprefix("error: ").splitlines()
    mine = [line for line in lines if line.startswith(f"{shown_path(source)}: ")]
    assert mine, result.err
    assert any(field in line and fragment in line for line in mine), result.err
    assert all(len(line) < 700 for line in lines), "a problem is one readable line, even for a huge value"
    assert not home.exists(), "a refused file must not create the home directory, an identity or keys"
    assert commit_count(remote) == 0, "one bad file publishes nothing, not even the good environments"


@pytest.mark.parametrize(("content", "field", "fragment"), [c[1:] for c in REJECTED], ids=[c[0] for c in REJECTED])
def test_hostile_file_is_refused_with_a_clear_message_and_nothing_written(setup, content, field, fragment):
    envs, remote, home, compile_all = setup
    (envs / "bad.yaml").write_bytes(content)
    started = time.monotonic()
    result = compile_all()
    assert time.monotonic() - started < 10, "hostile input must be refused quickly, not expanded"
    assert_refused(result, envs / "bad.yaml", field, fragment, home, remote)
    assert not Path("/tmp/chainops-pwned").exists()


@pytest.mark.parametrize("name", BAD_NAMES)
def test_file_name_that_is_not_an_environment_name_is_refused(setup, name):
    envs, remote, home, compile_all = setup
    (envs / f"{name}.yaml").write_text(BASE)
    assert_refused(compile_all(), envs / f"{name}.yaml", "file name", "not an environment name", home, remote)


def test_symlinked_environment_file_is_refused(setup, tmp_path):
    envs, remote, home, compile_all = setup
    outside = tmp_path / "outside.yaml"
    outside.write_text(BASE)
    (envs / "linked.yaml").symlink_to(outside)
    assert_refused(compile_all(), envs / "linked.yaml", "", "not a regular file", home, remote)


def test_free_text_is_rendered_literally_never_evaluated_or_injected(setup, run_cli):
    """Free-form strings (Ingress annotations) carrying Jinja2 expressions, statements and
    YAML structure come out byte-for-byte as the same string in a single object."""
    envs, remote, home, compile_all = setup
    hostile = {
        "example.com/jinja": "{{ 12345 * 11 }}",
        "example.com/statement": "{% for x in range(3) %}<<{{ x }}>>{% endfor %}",
        "example.com/escape": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "example.com/newline": "x\nkind: Secret\nmetadata: {name: evil}\n---\nkind: ClusterRoleBinding",
        "example.com/colon": "a: b",
        "example.com/quotes": "'\"`$(id)`\\",
        "example.com/raw": "{% raw %}{{ x }}{% endraw %}",
    }
    text = GOOD.replace("namespace: chain-good}", "namespace: chain-good, rpcIngress: {host: rpc.good.example.com}}")
    text += yaml.safe_dump({"values": {"besu-node": {"rpc": {"ingress": {"annotations": hostile}}}}})
    (envs / "good.yaml").write_text(text)
    result = compile_all()
    assert result.code == 0, result.err
    documents = list(read_yaml_all(git(remote, "show", "main:rendered/good/besu-node/ingress-rpc-jsonrpc.yaml")))
    assert len(documents) == 1 and documents[0]["kind"] == "Ingress"
    assert documents[0]["metadata"]["annotations"] == hostile
    tree = git(remote, "ls-tree", "-r", "--name-only", "main").split()
    assert not any("clusterrolebinding" in p or "evil" in p for p in tree)
    everything = "".join(git(remote, "show", f"main:{p}") for p in tree if p.endswith(".yaml"))
    assert "135795" not in everything and "<<0>>" not in everything, "an expression was evaluated"


def test_values_that_fail_a_chart_schema_are_refused_and_change_nothing(setup, run_cli):
    """Overrides are checked against the chart's values.schema.json: a label value that is
    not a Kubernetes label value, an unknown key. The repository and home stay as they were."""
    envs, remote, home, compile_all = setup
    assert compile_all().code == 0
    before, commits = snapshot(home), commit_count(remote)
    for override, fragment in [
        ({"serviceMonitor": {"labels": {"team": "a b/c"}}}, "serviceMonitor"),
        ({"rpc": {"unknownField": 1}}, "unknownField"),
    ]:
        (envs / "good.yaml").write_text(GOOD + yaml.safe_dump({"values": {"besu-node": override}}))
        result = compile_all()
        assert result.code == 1 and "Traceback" not in result.err, result.err
        assert f"{envs / 'good.yaml'}" in result.err and fragment in result.err, result.err
        assert commit_count(remote) == commits
        assert snapshot(home) == before, "a refused run writes nothing into the home directory"

