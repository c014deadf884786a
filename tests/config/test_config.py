"""Environment file validation: one clear line per problem, naming file, field and rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.lib.config import ConfigError, load_all, parse_balance, parse_environment

VALID = """\
apiVersion: chainops/v1
network: {chainId: 48720, client: besu, consensus: qbft}
nodes: {validators: 4, rpc: 1}
kubernetes: {namespace: chain-x}
"""


def problems_for(text: str, name: str = "x") -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_environment(name, text, f"environments/{name}.yaml")
    return info.value.problems


def test_valid_file_parses_with_defaults():
    config = parse_environment("x", VALID, "environments/x.yaml")
    assert config.profile.name == "besu-qbft"
    assert config.spec.network.effective_network_id == 48720
    assert config.spec.gitops.secrets.provider == "sops"
    assert config.bootnode_count == 0


@pytest.mark.parametrize(
    ("edit", "field", "fragment"),
    [
        (("nodes: {validators: 4, rpc: 1}", "nodes: {validators: 4, rpc: 1, archive: 2}"), "nodes.archive", "unknown key; allowed: bootnodes, rpc, validators"),
        (("chainId: 48720", "chainId: '48720'"), "network.chainId", "is not an integer"),
        (("validators: 4", "validators: -1"), "nodes.validators", "greater than or equal to 1"),
        (("validators: 4", "validators: 100000"), "nodes.validators", "less than or equal to 64"),
        (("consensus: qbft", "consensus: clique"), "network", "does not run on client 'besu'; allowed: qbft, ibft2"),
        (("consensus: qbft", "consensus: pow"), "network.consensus", "'pow' is not allowed"),
        (("namespace: chain-x", "namespace: Chain_X"), "kubernetes.namespace", "not a namespace name"),
        (("apiVersion: chainops/v1", "apiVersion: chainops/v2"), "apiVersion", "'chainops/v2' is not allowed"),
    ],
)
def test_each_problem_names_file_field_and_rule(edit, field, fragment):
    text = VALID.replace(*edit)
    assert text != VALID
    problems = problems_for(text)
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"environments/x.yaml: {field}: ")
    assert fragment in problems[0]
    assert "\n" not in problems[0]


@pytest.mark.parametrize("balance", ["5 eth", "1.5 wei", "-3 ether", "ten ether", True, 1000000, "1000000", "1000000ether"])
def test_bad_balance_units_are_rejected(balance):
    text = VALID + f"accounts:\n  - name: faucet\n    balance: {balance!r}\n".replace("'", '"')
    problems = problems_for(text)
    assert problems[0].startswith("environments/x.yaml: accounts[0].balance: ")


@pytest.mark.parametrize(
    ("value", "wei"),
    [("1 ether", 10**18), ("2.5 gwei", 2_500_000_000), ("7 wei", 7), ("123 wei", 123), ("1000000 ether", 10**24), ("0.000000000000000001 ether", 1)],
)
def test_balance_units(value, wei):
    assert parse_balance(value) == wei


def test_bootnodes_are_geth_only():
    problems = problems_for(VALID.replace("rpc: 1}", "rpc: 1, bootnodes: 1}"))
    assert "bootnodes are for geth profiles only" in problems[0]


def test_account_needs_exactly_one_of_name_and_address():
    problems = problems_for(VALID + "accounts:\n  - {name: a, address: '0x8ba1f109551bD432803012645Ac136ddd64DBA72', balance: 1 wei}\n")
    assert "exactly one of 'name'" in problems[0]


def test_plaintext_secrets_refused_unless_allowed():
    problems = problems_for(VALID + "gitops: {secrets: {provider: plaintext}}\n")
    assert "gitops.secrets" in problems[0] and "allowPlaintextSecrets" in problems[0]


@pytest.mark.parametrize("name", ["Staging", "../etc", "a_b", "-x", "x" * 41, "a.b"])
def test_file_name_must_be_a_dns_label(name):
    problems = problems_for(VALID, name=name)
    assert "file name" in problems[0] and "DNS label" in problems[0]


def test_duplicate_keys_and_non_mapping_and_bad_yaml():
    assert "duplicate key 'network'" in problems_for(VALID + "network: {chainId: 1}\n")[0]
    assert "must be a mapping" in problems_for("- a\n- b\n")[0]
    assert "not valid YAML" in problems_for("a: [\n")[0]
    with pytest.raises(ConfigError, match="not UTF-8"):
        parse_environment("x", b"apiVersion: \xff\xfe", "environments/x.yaml")


def test_yaml_tags_that_construct_objects_are_refused():
    problems = problems_for("!!python/object/apply:os.system ['true']\n")
    assert "not valid YAML" in problems[0]


def test_cross_file_duplicates(tmp_path: Path):
    (tmp_path / "a.yaml").write_text(VALID.replace("chain-x", "chain-a"))
    (tmp_path / "b.yaml").write_text(VALID.replace("chain-x", "chain-b"))  # same chainId as a
    (tmp_path / "c.yaml").write_text(VALID.replace("48720", "48721").replace("chain-x", "chain-a"))  # same namespace as a
    with pytest.raises(ConfigError) as info:
        load_all(tmp_path)
    assert info.value.problems == [
        f"{tmp_path}/b.yaml: network.chainId: 48720 is already used by {tmp_path}/a.yaml; each environment needs its own",
        f"{tmp_path}/c.yaml: kubernetes.namespace: 'chain-a' is already used by {tmp_path}/a.yaml; each environment needs its own",
    ]
