"""The in-process SOPS writer, checked by the real sops binary (the second route).

Every property here is decided by sops itself: it decrypts what the writer wrote (the MAC
is verified on decrypt), rejects tampered files, and re-encrypts (``sops rotate``) them
into its own layout, which must match the writer's line for line apart from the values
that are random by design.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pyrage
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.lib.sealing import ENCRYPTED_REGEX, is_sops_encrypted, sops_binary
from pipelines.lib.sops_writer import FORMAT_VERSION, SopsFormatError, encrypt_document
from tests.yaml_reader import read_yaml

RANDOM_BY_DESIGN = re.compile(r"ENC\[AES256_GCM,[^\]]*\]|lastmodified: .*")


@pytest.fixture(scope="module")
def age_home(tmp_path_factory) -> tuple[Path, str]:
    """A private HOME with an age identity file; returns (home, recipient)."""
    home = tmp_path_factory.mktemp("sops-home")
    identity = pyrage.x25519.Identity.generate()
    (home / "identity.txt").write_text(f"{identity}\n")
    return home, str(identity.to_public())


def sops(home: Path, *args: str, stdin: bytes | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ.get("PATH", os.defpath), "HOME": str(home),
           "SOPS_AGE_KEY_FILE": str(home / "identity.txt")}
    return subprocess.run([sops_binary(), "--disable-version-check", *args], input=stdin, env=env,
                          cwd=cwd or home, capture_output=True, timeout=60, check=False)


def sops_decrypt(home: Path, sealed: bytes) -> subprocess.CompletedProcess:
    return sops(home, "decrypt", "--input-type", "yaml", "--output-type", "json", "/dev/stdin", stdin=sealed)


def node_secret() -> dict:
    keystore = json.dumps({"address": "ab" * 20, "crypto": {"cipher": "aes-128-ctr"}, "version": 3})
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "validator-0-keys", "namespace": "chain-dev",
                     "labels": {"app.kubernetes.io/version": "v1.13.15", "helm.sh/chart": "geth-node-0.2.0"}},
        "type": "Opaque",
        "data": {"nodekey": base64.b64encode(os.urandom(32).hex().encode()).decode(),
                 "keystore.json": base64.b64encode(keystore.encode()).decode(),
                 "password": base64.b64encode(b"0o17").decode()},
    }


def test_sops_decrypts_what_the_writer_wrote(age_home):
    home, recipient = age_home
    secret = node_secret()
    sealed = encrypt_document(secret, [recipient], ENCRYPTED_REGEX)
    result = sops_decrypt(home, sealed)
    assert result.returncode == 0, result.stderr.decode()
    assert json.loads(result.stdout) == secret
    assert is_sops_encrypted(sealed)
    for value in secret["data"].values():
        assert value.encode() not in sealed and base64.b64decode(value) not in sealed


def test_each_recipient_can_decrypt(age_home, tmp_path):
    home, recipient = age_home
    other = pyrage.x25519.Identity.generate()
    (tmp_path / "identity.txt").write_text(f"{other}\n")
    sealed = encrypt_document(node_secret(), [recipient, str(other.to_public())], ENCRYPTED_REGEX)
    assert sops_decrypt(home, sealed).returncode == 0
    assert sops_decrypt(tmp_path, sealed).returncode == 0
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    (stranger / "identity.txt").write_text(f"{pyrage.x25519.Identity.generate()}\n")
    assert sops_decrypt(stranger, sealed).returncode != 0


@pytest.mark.parametrize("target", ["encrypted value", "plain value", "mac"])
def test_sops_rejects_a_tampered_file(age_home, target):
    """The MAC covers every value, encrypted or not, as sops' own does."""
    home, recipient = age_home
    sealed = encrypt_document(node_secret(), [recipient], ENCRYPTED_REGEX).decode()
    if target == "encrypted value":
        other = encrypt_document(node_secret(), [recipient], ENCRYPTED_REGEX).decode()
        mine = re.search(r"nodekey: (ENC\[[^\]]*\])", sealed).group(1)
        theirs = re.search(r"nodekey: (ENC\[[^\]]*\])", other).group(1)
        tampered = sealed.replace(mine, theirs)
    elif target == "plain value":
        tampered = sealed.replace("name: validator-0-keys", "name: validator-1-keys")
    else:
        tampered = re.sub(r"lastmodified: \"\d{4}", "lastmodified: \"1999", sealed)
    assert tampered != sealed
    result = sops_decrypt(home, tampered.encode())
    assert result.returncode != 0
    assert b"MAC" in result.stderr or b"decrypt" in result.stderr.lower()


def test_layout_matches_sops_own_reencryption(age_home, tmp_path):
    """`sops rotate` parses the file and writes it again in sops' layout: same lines."""
    home, recipient = age_home
    (tmp_path / ".sops.yaml").write_text("stores:\n  yaml:\n    indent: 2\n")
    path = tmp_path / "secret.yaml"
    written = encrypt_document(node_secret(), [recipient], ENCRYPTED_REGEX)
    path.write_bytes(written)
    result = sops(home, "rotate", "--in-place", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr.decode()
    rotated = path.read_bytes()
    assert rotated != written  # new data key and IVs

    def shape(text: bytes) -> list[str]:
        lines = RANDOM_BY_DESIGN.sub("<random>", text.decode()).splitlines()
        enc_body = re.compile(r"^ {8}[A-Za-z0-9+/=]+$")  # armoured age file lines
        return [line for line in lines if not enc_body.match(line)]

    assert shape(written) == shape(rotated)
    assert f"version: {FORMAT_VERSION}" in rotated.decode()
    assert json.loads(sops_decrypt(home, rotated).stdout) == json.loads(sops_decrypt(home, written).stdout)


def test_same_encrypted_paths_and_types_as_sops_encrypt(age_home):
    home, recipient = age_home
    document = {"data": {"a": "x", "empty": "", "n": 7, "b": False, "null": None, "list": ["p", 1]},
                "metadata": {"name": "s", "count": 3}, "kind": "Secret"}
    ours = read_yaml(encrypt_document(document, [recipient], ENCRYPTED_REGEX))
    # YAML input: sops' JSON store would read 7 as a float.
    result = sops(home, "encrypt", "--input-type", "yaml", "--output-type", "yaml", "--age", recipient,
                  "--encrypted-regex", ENCRYPTED_REGEX, "/dev/stdin", stdin=yaml.safe_dump(document).encode())
    assert result.returncode == 0, result.stderr.decode()
    theirs = read_yaml(result.stdout)

    def masked(node):
        if isinstance(node, dict):
            return {k: masked(v) for k, v in node.items() if k != "sops"}
        if isinstance(node, list):
            return [masked(v) for v in node]
        if isinstance(node, str) and node.startswith("ENC["):
            return "ENC:" + node.rsplit("type:", 1)[1].rstrip("]")
        return node

    assert masked(ours) == masked(theirs)
    assert masked(ours)["data"]["n"] == "ENC:int" and masked(ours)["data"]["b"] == "ENC:bool"
    assert list(ours["sops"]) == list(theirs["sops"])
    assert json.loads(sops_decrypt(home, encrypt_document(document, [recipient], ENCRYPTED_REGEX)).stdout) == document


@pytest.mark.parametrize(
    "document",
    [
        {"metadata": {"a": "x\n..."}},  # a literal block whose last line is "...": not a document end
        {"metadata": {"zz": "x\n"}, "type": "end\n...\n"},
        {"metadata": {"b\x85a": "nel in a key", "c\u2028d": "line separator"}, "data": {"k\x85": "v\u2029w\x85"}},
        {"data": {"big": 2**63 - 1, "small": -(2**63)}, "metadata": {"n": 2**63 - 1}},
        {"metadata": {"x": "\n"}, "data": {"y": "\n\n"}},
    ],
    ids=["dots-line", "dots-last", "unicode-breaks", "int64-bounds", "keep-chomp"],
)
def test_edge_documents_found_in_review_round_trip(age_home, document):
    home, recipient = age_home
    sealed = encrypt_document(document, [recipient], ENCRYPTED_REGEX)
    result = sops_decrypt(home, sealed)
    assert result.returncode == 0, result.stderr.decode()
    assert json.loads(result.stdout) == document


def test_lastmodified_is_the_mac_additional_data(age_home):
    home, recipient = age_home
    when = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    sealed = encrypt_document(node_secret(), [recipient], ENCRYPTED_REGEX, now=when)
    assert b'lastmodified: "2030-01-02T03:04:05Z"' in sealed
    assert sops_decrypt(home, sealed).returncode == 0


@pytest.mark.parametrize(
    ("document", "recipients", "message"),
    [
        ({"data": {"x": 1.5}}, None, "data.x: only strings"),
        ({"sops": {}}, None, "top-level 'sops'"),
        ({"data": {"x": "y"}}, ["age1notarecipient"], "not an age X25519 recipient"),
        ({"data": {"x": "y"}}, [], "at least one age recipient"),
        ({"data": {"x": 2**63}}, None, "data.x: integers must fit in 64 bits"),
        ({"metadata": {"x": -(2**63) - 1}}, None, "metadata.x: integers must fit in 64 bits"),
        ({"data\n": {"x": "y"}}, None, "<document>: keys must not contain line breaks"),
    ],
)
def test_refuses_what_sops_would_not_read_back_identically(age_home, document, recipients, message):
    _, recipient = age_home
    with pytest.raises(SopsFormatError, match=re.escape(message)):
        encrypt_document(document, [recipient] if recipients is None else recipients, ENCRYPTED_REGEX)


# Text that YAML 1.1 (PyYAML) and YAML 1.2 (go-yaml, which sops and kustomize use) read
# differently, plus anything Hypothesis finds.
AMBIGUOUS = ["x\n...", "\x85", "a\u2028b", "0o17", "1e3", "0x1F", "1_000", "+1", ".5", "~", "null", "True", "yes", "off", "2001-12-14",
             "12:30:45", "<<", "=", "-", "- x", "a: b", "#c", "'q'", "\"q\"", "{a}", "[a]", "|", ">", "!t", "&a", "*a",
             "", " lead", "trail ", "line\nbreak", "tab\there", "\u2028", "é", "😀"]
text = st.one_of(st.sampled_from(AMBIGUOUS), st.text(st.characters(blacklist_categories=("Cs",)), max_size=30))
key = text.filter(lambda k: "\n" not in k)  # refused in keys (see above)
scalar = st.one_of(text, st.integers(-(2**63), 2**63 - 1), st.booleans(), st.none())
tree = st.recursive(scalar, lambda children: st.one_of(
    st.lists(children, max_size=3), st.dictionaries(key, children, max_size=4)), max_leaves=12)


# Derandomized: the same 60 documents in every CI run. For exploration set
# CHAINOPS_SOPS_EXAMPLES and CHAINOPS_SOPS_RANDOM=1. A random run found one bug (the "..."
# PyYAML writes after a keep-chomped block scalar ended the document early); after the fix,
# two random runs of 3000 documents found none.
@pytest.mark.slow  # a property run: sops decrypts 60 generated documents
@settings(max_examples=int(os.environ.get("CHAINOPS_SOPS_EXAMPLES", "60")), deadline=None, database=None,
          derandomize=not os.environ.get("CHAINOPS_SOPS_RANDOM"),
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.dictionaries(key, tree, max_size=4), metadata=st.dictionaries(key, tree, max_size=3))
def test_any_document_round_trips_through_sops(age_home, data, metadata):
    home, recipient = age_home
    document = {"apiVersion": "v1", "kind": "Secret", "metadata": metadata, "data": data}
    sealed = encrypt_document(document, [recipient], ENCRYPTED_REGEX)
    result = sops_decrypt(home, sealed)
    assert result.returncode == 0, result.stderr.decode()
    assert json.loads(result.stdout) == document


def test_sops_updatekeys_adds_a_recipient_to_a_written_file(age_home, tmp_path):
    """People manage recipients of committed files with sops' own tools."""
    home, recipient = age_home
    newcomer = pyrage.x25519.Identity.generate()
    newcomer_home = tmp_path / "newcomer"
    newcomer_home.mkdir()
    (newcomer_home / "identity.txt").write_text(f"{newcomer}\n")
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / ".sops.yaml").write_text(
        "creation_rules:\n  - path_regex: secret\\.yaml$\n"
        f"    age: {recipient},{newcomer.to_public()}\n    encrypted_regex: ^(data|stringData)$\n"
        "stores:\n  yaml:\n    indent: 2\n"
    )
    secret = node_secret()
    (repo / "secret.yaml").write_bytes(encrypt_document(secret, [recipient], ENCRYPTED_REGEX))
    assert sops_decrypt(newcomer_home, (repo / "secret.yaml").read_bytes()).returncode != 0
    result = sops(home, "updatekeys", "--yes", "secret.yaml", cwd=repo)
    assert result.returncode == 0, result.stderr.decode()
    decrypted = sops_decrypt(newcomer_home, (repo / "secret.yaml").read_bytes())
    assert decrypted.returncode == 0, decrypted.stderr.decode()
    assert json.loads(decrypted.stdout) == secret
