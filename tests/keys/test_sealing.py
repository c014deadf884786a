"""Tests of pipelines.lib.sealing against the real sops binary and real age keys."""

from __future__ import annotations

import base64
import json
import os
import secrets
import stat
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyrage
import pytest
import yaml

from pipelines.lib.sealing import (
    ENCRYPTED_REGEX,
    PLAINTEXT_ANNOTATION,
    AgeIdentity,
    PlaintextSealer,
    SealingError,
    SealRequest,
    SopsSealer,
    is_plaintext_secret,
    is_sops_encrypted,
    sops_binary,
    sops_config_yaml,
)
from tests.yaml_reader import read_yaml

PATH_REGEX = r"^rendered/.*/secret-.*\.yaml$"


# --------------------------------------------------------------------------- helpers


def make_secret(name: str = "validator-0") -> dict:
    """A Secret with random, distinctive plaintext so that scans are meaningful."""
    nodekey = secrets.token_hex(32)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": "chain-staging",
            "labels": {"app.kubernetes.io/name": "besu", "app.kubernetes.io/instance": "staging"},
        },
        "type": "Opaque",
        "data": {"nodekey": base64.b64encode(nodekey.encode()).decode()},
        "stringData": {"password": "pw-" + secrets.token_hex(16)},
    }


def plaintext_needles(secret: dict) -> list[bytes]:
    """Every form in which a secret value could leak into the sealed bytes."""
    needles: list[bytes] = []
    for value in secret.get("stringData", {}).values():
        needles += [value.encode(), base64.b64encode(value.encode())]
    for value in secret.get("data", {}).values():
        needles += [value.encode(), base64.b64decode(value)]
    return needles


def write_identity(directory: Path) -> tuple[Path, str]:
    """A second, independent age identity written like age-keygen does."""
    identity = pyrage.x25519.Identity.generate()
    path = directory / "other-identity.txt"
    path.write_text(f"{identity}\n")
    path.chmod(0o600)
    return path, str(identity.to_public())


def run_sops(args: list[str], *, stdin: bytes | None = None, cwd: Path, home: Path,
             key_file: Path | None = None) -> subprocess.CompletedProcess:
    """The sops CLI as a person would run it, isolated from the user's settings."""
    env = {"PATH": os.environ.get("PATH", os.defpath), "HOME": str(home)}
    if key_file is not None:
        env["SOPS_AGE_KEY_FILE"] = str(key_file)
    return subprocess.run([sops_binary(), "--disable-version-check", *args], input=stdin,
                          capture_output=True, cwd=cwd, env=env, check=False)


def age_stanzas(sealed: bytes) -> dict[str, str]:
    meta = read_yaml(sealed)["sops"]
    return {s["recipient"]: s["enc"] for s in meta["age"]}


def flip_first_enc_data_char(sealed: bytes) -> bytes:
    start = sealed.index(b"ENC[AES256_GCM,data:") + len(b"ENC[AES256_GCM,data:")
    replacement = b"B" if sealed[start:start + 1] == b"A" else b"A"
    return sealed[:start] + replacement + sealed[start + 1:]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("chainops-home")


@pytest.fixture(scope="module")
def identity(home: Path) -> AgeIdentity:
    return AgeIdentity.load_or_create(home)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The environment's own recipient (e.g. the Flux cluster key)."""
    return write_identity(tmp_path_factory.mktemp("cluster"))


@pytest.fixture(scope="module")
def sealer(identity: AgeIdentity, cluster: tuple[Path, str]):
    with SopsSealer(identity, [cluster[1]]) as s:
        yield s


# --------------------------------------------------------------------------- round trip


def test_round_trip_hides_plaintext_and_keeps_metadata_readable(sealer: SopsSealer) -> None:
    secret = make_secret()
    sealed = sealer.seal(secret)

    for needle in plaintext_needles(secret):
        assert needle not in sealed
    assert is_sops_encrypted(sealed)
    parsed = read_yaml(sealed)
    assert parsed["metadata"] == secret["metadata"]
    assert (parsed["apiVersion"], parsed["kind"], parsed["type"]) == ("v1", "Secret", "Opaque")
    assert parsed["sops"]["encrypted_regex"] == ENCRYPTED_REGEX
    assert set(age_stanzas(sealed)) == set(sealer.recipients)
    assert sealer.unseal(sealed) == secret


def test_sops_cli_decrypts_with_pipeline_identity(sealer: SopsSealer, identity: AgeIdentity,
                                                  tmp_path: Path) -> None:
    secret = make_secret()
    sealed_file = tmp_path / "secret-validator-0.yaml"
    sealed_file.write_bytes(sealer.seal(secret))

    proc = run_sops(["decrypt", "--output-type", "json", sealed_file.name], cwd=tmp_path,
                    home=tmp_path, key_file=identity.path)
    assert proc.returncode == 0, proc.stderr.decode()
    assert json.loads(proc.stdout) == secret


def test_second_recipient_can_decrypt(sealer: SopsSealer, identity: AgeIdentity,
                                      cluster: tuple[Path, str], tmp_path: Path) -> None:
    cluster_key_file, cluster_recipient = cluster
    secret = make_secret()
    sealed = sealer.seal(secret)

    proc = run_sops(["decrypt", "--input-type", "yaml", "--output-type", "json", "/dev/stdin"],
                    stdin=sealed, cwd=tmp_path, home=tmp_path, key_file=cluster_key_file)
    assert proc.returncode == 0, proc.stderr.decode()
    assert json.loads(proc.stdout) == secret

    # Independently of sops: both recipients unwrap the same SOPS data key.
    stanzas = age_stanzas(sealed)
    cluster_id = pyrage.x25519.Identity.from_str(cluster_key_file.read_text().strip())
    pipeline_id = pyrage.x25519.Identity.from_str(
        next(l for l in identity.path.read_text().splitlines() if l.startswith("AGE-SECRET-KEY-"))
    )
    data_key = pyrage.decrypt(stanzas[cluster_recipient].encode(), [cluster_id])
    assert len(data_key) == 32
    assert pyrage.decrypt(stanzas[identity.recipient].encode(), [pipeline_id]) == data_key
    with pytest.raises(pyrage.DecryptError):
        pyrage.decrypt(stanzas[identity.recipient].encode(), [cluster_id])


def test_output_layout_is_indent_2_with_sorted_keys(sealer: SopsSealer) -> None:
    secret = make_secret()
    unsorted = {key: secret[key] for key in reversed(list(secret))}
    text = sealer.seal(unsorted).decode()

    top_level = [line.split(":")[0] for line in text.splitlines() if line and not line[0].isspace()]
    assert top_level == ["apiVersion", "data", "kind", "metadata", "stringData", "type", "sops"]
    assert "\n  name: validator-0\n" in text
    assert "\n  age:\n    - recipient: age1" in text
    assert "\n    " + "name" not in text.split("sops:")[0]  # nothing indented by 4 in the body


def test_yaml_1_1_lookalike_strings_stay_strings(sealer: SopsSealer) -> None:
    # PyYAML writes 0o17 and 1e3 unquoted; sops (YAML 1.2) would read numbers.
    tricky = ["0o17", "1e3", "yes", "on", "0x1F", "~", "null", "2001-12-14", "1_000", "=",
              "ünïcödé", "line1\nline2\n"]
    secret = make_secret()
    secret["stringData"] = {f"k{i}": value for i, value in enumerate(tricky)}
    secret["metadata"]["labels"]["version"] = "0o17"
    sealed = sealer.seal(secret)

    assert read_yaml(sealed)["metadata"]["labels"]["version"] == "0o17"
    assert sealer.unseal(sealed) == secret


# --------------------------------------------------------------------------- idempotence


def test_seal_keeps_existing_ciphertext_for_same_document(sealer: SopsSealer) -> None:
    secret = make_secret()
    prior = sealer.seal(secret)

    assert sealer.seal(secret, existing=prior) == prior
    # Reordered keys are the same document.
    reordered = {key: secret[key] for key in reversed(list(secret))}
    assert sealer.seal(reordered, existing=prior) == prior
    # Without `existing`, sops produces new bytes every time: that is why reuse exists.
    assert sealer.seal(secret) != prior


def test_changed_document_is_reencrypted(sealer: SopsSealer) -> None:
    secret = make_secret()
    prior = sealer.seal(secret)
    changed = json.loads(json.dumps(secret))
    changed["stringData"]["password"] = "pw-" + secrets.token_hex(16)

    sealed = sealer.seal(changed, existing=prior)
    assert sealed != prior
    assert sealer.unseal(sealed) == changed

    relabelled = json.loads(json.dumps(secret))
    relabelled["metadata"]["labels"]["tier"] = "p2p"
    assert sealer.unseal(sealer.seal(relabelled, existing=prior)) == relabelled


def test_changed_recipients_are_reencrypted(identity: AgeIdentity, cluster: tuple[Path, str],
                                            tmp_path: Path) -> None:
    _, extra_recipient = write_identity(tmp_path)
    secret = make_secret()
    with SopsSealer(identity, [cluster[1]]) as before, \
            SopsSealer(identity, [cluster[1], extra_recipient]) as after, \
            SopsSealer(identity) as pipeline_only:
        prior = before.seal(secret)

        added = after.seal(secret, existing=prior)
        assert added != prior
        assert set(age_stanzas(added)) == {identity.recipient, cluster[1], extra_recipient}

        removed = pipeline_only.seal(secret, existing=added)
        assert removed != added
        assert set(age_stanzas(removed)) == {identity.recipient}
        assert pipeline_only.unseal(removed) == secret


def test_existing_from_another_provider_is_replaced(sealer: SopsSealer) -> None:
    secret = make_secret()
    plaintext_file = yaml.safe_dump(secret).encode()
    sealed = sealer.seal(secret, existing=plaintext_file)
    assert sealed != plaintext_file
    assert is_sops_encrypted(sealed)
    assert sealer.seal(secret, existing=b"not: [valid") != b"not: [valid"


def test_seal_many_and_unseal_many_preserve_order_and_reuse(sealer: SopsSealer) -> None:
    docs = [make_secret(f"validator-{i}") for i in range(8)]
    first = sealer.seal_many([(doc, None) for doc in docs])

    assert [read_yaml(s)["metadata"]["name"] for s in first] == [d["metadata"]["name"] for d in docs]
    assert sealer.unseal_many(first) == docs

    docs[3]["stringData"]["password"] = "pw-changed-" + secrets.token_hex(8)
    second = sealer.seal_many(list(zip(docs, first)))
    assert [a == b for a, b in zip(first, second)] == [i != 3 for i in range(8)]
    assert sealer.unseal(second[3]) == docs[3]


def test_seal_many_names_the_failing_item(sealer: SopsSealer) -> None:
    good = sealer.seal(make_secret())
    with pytest.raises(SealingError, match="item 1"):
        sealer.unseal_many([good, flip_first_enc_data_char(good)])


# --------------------------------------------------------------------------- identity


def test_identity_file_and_dir_are_private_and_stable(tmp_path: Path) -> None:
    first = AgeIdentity.load_or_create(tmp_path)
    second = AgeIdentity.load_or_create(tmp_path)

    assert first.path == tmp_path / "age" / "identity.txt"
    assert stat.S_IMODE(first.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(first.path.parent.stat().st_mode) == 0o700
    assert first == second
    assert first.recipient.startswith("age1")
    assert "AGE-SECRET-KEY" not in repr(first)
    # The file is in age-keygen format and matches the recipient.
    key_line = next(l for l in first.path.read_text().splitlines() if l.startswith("AGE-SECRET-KEY-1"))
    assert str(pyrage.x25519.Identity.from_str(key_line).to_public()) == first.recipient
    assert [p.name for p in first.path.parent.iterdir()] == ["identity.txt"]


def test_identity_loose_permissions_are_tightened(tmp_path: Path) -> None:
    created = AgeIdentity.load_or_create(tmp_path)
    created.path.chmod(0o644)
    created.path.parent.chmod(0o755)

    reloaded = AgeIdentity.load_or_create(tmp_path)
    assert reloaded.recipient == created.recipient
    assert stat.S_IMODE(created.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(created.path.parent.stat().st_mode) == 0o700


def test_concurrent_first_use_yields_one_identity(tmp_path: Path) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        identities = list(pool.map(lambda _: AgeIdentity.load_or_create(tmp_path), range(16)))
    assert len({i.recipient for i in identities}) == 1
    assert [p.name for p in (tmp_path / "age").iterdir()] == ["identity.txt"]


def test_malformed_identity_file_is_an_error_without_its_content(tmp_path: Path) -> None:
    path = tmp_path / "age" / "identity.txt"
    path.parent.mkdir(mode=0o700)
    path.write_text("AGE-SECRET-KEY-1NOTAKEYATALL\n")
    with pytest.raises(SealingError) as info:
        AgeIdentity.load_or_create(tmp_path)
    assert "NOTAKEY" not in str(info.value)


# --------------------------------------------------------------------------- .sops.yaml


def test_sops_config_yaml_is_deterministic(cluster: tuple[Path, str], identity: AgeIdentity) -> None:
    a = sops_config_yaml(PATH_REGEX, [cluster[1], identity.recipient])
    b = sops_config_yaml(PATH_REGEX, [identity.recipient, cluster[1], identity.recipient])
    assert a == b
    parsed = read_yaml(a)
    assert parsed == {
        "creation_rules": [{
            "path_regex": PATH_REGEX,
            "encrypted_regex": ENCRYPTED_REGEX,
            "age": ",".join(sorted([cluster[1], identity.recipient])),
        }],
        "stores": {"yaml": {"indent": 2}},
    }


def test_sops_accepts_the_generated_config(sealer: SopsSealer, identity: AgeIdentity,
                                           cluster: tuple[Path, str], tmp_path: Path) -> None:
    (tmp_path / ".sops.yaml").write_bytes(sops_config_yaml(PATH_REGEX, [identity.recipient, cluster[1]]))
    secret = make_secret()
    target = tmp_path / "rendered" / "staging" / "secret-validator-0.yaml"
    target.parent.mkdir(parents=True)
    target.write_text(json.dumps(secret))  # JSON is valid YAML with one meaning

    proc = run_sops(["encrypt", "rendered/staging/secret-validator-0.yaml"], cwd=tmp_path, home=tmp_path)
    assert proc.returncode == 0, proc.stderr.decode()
    encrypted = proc.stdout
    assert set(age_stanzas(encrypted)) == {identity.recipient, cluster[1]}
    assert is_sops_encrypted(encrypted)
    for needle in plaintext_needles(secret):
        assert needle not in encrypted
    assert "\n  name: validator-0\n" in encrypted.decode()  # stores.yaml.indent: 2 applied
    # Same recipient set as the sealer, so the pipeline keeps it as is.
    assert sealer.seal(secret, existing=encrypted) == encrypted

    elsewhere = tmp_path / "other" / "secret-x.yaml"
    elsewhere.parent.mkdir()
    elsewhere.write_text(json.dumps(secret))
    proc = run_sops(["encrypt", "other/secret-x.yaml"], cwd=tmp_path, home=tmp_path)
    assert proc.returncode != 0
    assert b"no matching creation rules" in proc.stderr


def test_sops_config_yaml_rejects_bad_recipients(identity: AgeIdentity) -> None:
    with pytest.raises(SealingError):
        sops_config_yaml(PATH_REGEX, [])
    with pytest.raises(SealingError):
        sops_config_yaml(PATH_REGEX, ["age1notarecipient"])
    secret_key = str(pyrage.x25519.Identity.generate())
    with pytest.raises(SealingError) as info:
        sops_config_yaml(PATH_REGEX, [secret_key])
    assert secret_key not in str(info.value)


# --------------------------------------------------------------------------- tampering


def test_tampered_value_is_rejected(sealer: SopsSealer) -> None:
    secret = make_secret()
    tampered = flip_first_enc_data_char(sealer.seal(secret))
    with pytest.raises(SealingError) as info:
        sealer.unseal(tampered)
    for needle in plaintext_needles(secret):
        assert needle.decode("utf-8", "replace") not in str(info.value)


@pytest.mark.parametrize("tag", ["int", "bool", "float", "time"])
def test_tampered_type_tag_does_not_put_the_decrypted_value_into_the_error(sealer: SopsSealer, tag: str) -> None:
    """The type tag is not authenticated: sops decrypts the value, fails to parse it as the
    claimed type and quotes it in its error. That stderr must not reach our message."""
    secret = make_secret()
    sealed = sealer.seal(secret)
    tampered = sealed.replace(b",type:str]", f",type:{tag}]".encode())
    assert tampered != sealed
    with pytest.raises(SealingError) as info:
        sealer.unseal(tampered)
    assert "withheld" in str(info.value)
    for needle in plaintext_needles(secret):
        assert needle.decode("utf-8", "replace") not in str(info.value)


def test_tampered_metadata_fails_the_mac(sealer: SopsSealer) -> None:
    sealed = sealer.seal(make_secret())
    tampered = sealed.replace(b"namespace: chain-staging", b"namespace: chain-prod")
    assert tampered != sealed
    with pytest.raises(SealingError, match="MAC mismatch"):
        sealer.unseal(tampered)


def test_tampered_existing_is_not_silently_replaced(sealer: SopsSealer) -> None:
    secret = make_secret()
    tampered = flip_first_enc_data_char(sealer.seal(secret))
    with pytest.raises(SealingError):
        sealer.seal(secret, existing=tampered)


def test_unseal_needs_the_pipeline_identity(identity: AgeIdentity, tmp_path: Path) -> None:
    _, stranger = write_identity(tmp_path)
    other_home = tmp_path / "other-home"
    with SopsSealer(AgeIdentity.load_or_create(other_home), [stranger]) as foreign, \
            SopsSealer(identity) as ours:
        sealed = foreign.seal(make_secret())
        with pytest.raises(SealingError, match="decrypt failed"):
            ours.unseal(sealed)


# --------------------------------------------------------------------------- detection


def test_is_sops_encrypted_detects_plaintext(sealer: SopsSealer) -> None:
    secret = make_secret()
    sealed = sealer.seal(secret)
    assert is_sops_encrypted(sealed)

    document = read_yaml(sealed)
    document["stringData"]["password"] = "hunter2"
    assert not is_sops_encrypted(yaml.safe_dump(document).encode())

    assert not is_sops_encrypted(yaml.safe_dump(secret).encode())
    no_age = read_yaml(sealed)
    no_age["sops"]["age"] = []
    assert not is_sops_encrypted(yaml.safe_dump(no_age).encode())
    assert not is_sops_encrypted(b"\x00\xff not yaml: [")
    assert not is_sops_encrypted(sealed + b"---\nkind: Secret\n")


# --------------------------------------------------------------------------- isolation


def test_user_sops_settings_do_not_leak_in(identity: AgeIdentity, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    user_key_file, user_recipient = write_identity(tmp_path)
    # A user's keys in ~/.config/sops/age/keys.txt and a stray .sops.yaml in cwd.
    user_home = tmp_path / "user-home"
    (user_home / ".config" / "sops" / "age").mkdir(parents=True)
    (user_home / ".config" / "sops" / "age" / "keys.txt").write_text(user_key_file.read_text())
    stray = tmp_path / "workdir"
    stray.mkdir()
    (stray / ".sops.yaml").write_text("creation_rules:\n  - age: age1qqqq\n    encrypted_regex: '^kind$'\n")
    monkeypatch.chdir(stray)
    monkeypatch.setenv("HOME", str(user_home))
    monkeypatch.setenv("SOPS_AGE_RECIPIENTS", user_recipient)
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(user_key_file))
    monkeypatch.setenv("SOPS_CONFIG", str(stray / ".sops.yaml"))

    with SopsSealer(identity) as ours, SopsSealer(AgeIdentity.load_or_create(tmp_path / "h"),
                                                  [user_recipient]) as theirs:
        secret = make_secret()
        sealed = ours.seal(secret)
        assert set(age_stanzas(sealed)) == {identity.recipient}
        assert ours.unseal(sealed) == secret
        # The user's keys are not used to decrypt on the pipeline's behalf.
        foreign = theirs.seal(secret)
        with pytest.raises(SealingError):
            ours.unseal(foreign)


def test_invalid_secret_values_are_refused_without_echo(sealer: SopsSealer) -> None:
    secret = make_secret()
    secret["stringData"]["port"] = 30303
    with pytest.raises(SealingError, match=r"stringData\['port'\]") as info:
        sealer.seal(secret)
    assert "30303" not in str(info.value)
    with pytest.raises(SealingError):
        sealer.seal({"kind": "Secret", "data": {"k": b"bytes"}})


def test_sops_binary_is_an_executable_sops() -> None:
    binary = sops_binary()
    assert os.access(binary, os.X_OK)
    proc = subprocess.run([binary, "--disable-version-check", "--version"], capture_output=True,
                          check=False, env={"PATH": os.defpath})
    assert proc.returncode == 0
    assert proc.stdout.startswith(b"sops 3.")


# --------------------------------------------------------------------------- fingerprints and providers


def test_known_fingerprint_keeps_the_file_without_running_sops(identity: AgeIdentity, cluster, monkeypatch) -> None:
    key = secrets.token_bytes(32)
    with SopsSealer(identity, [cluster[1]], fingerprint_key=key) as ours:
        secret = make_secret()
        committed = ours.seal(secret)
        wanted = ours.fingerprint(secret)
        calls: list[object] = []
        real = subprocess.run
        monkeypatch.setattr(subprocess, "run", lambda *a, **k: calls.append(a) or real(*a, **k))
        assert ours.seal_requests([SealRequest(secret, committed, wanted)]) == [committed]
        assert calls == [], "no sops process for a recorded, unchanged Secret"
        # An unknown or stale fingerprint falls back to decrypting and comparing.
        assert ours.seal_requests([SealRequest(secret, committed, None)]) == [committed]
        assert len(calls) == 1
        changed = dict(secret, stringData={"password": "new"})
        resealed = ours.seal_requests([SealRequest(changed, committed, wanted)])[0]
        assert resealed != committed and ours.unseal(resealed)["stringData"] == {"password": "new"}
    # The fingerprint is keyed and covers the recipients.
    with SopsSealer(identity, fingerprint_key=key) as fewer, SopsSealer(identity, [cluster[1]], fingerprint_key=secrets.token_bytes(32)) as other:
        assert fewer.fingerprint(secret) != wanted and other.fingerprint(secret) != wanted
        assert wanted.startswith("hmac-sha256:") and len(wanted) == len("hmac-sha256:") + 64


def test_plaintext_sealer_marks_secrets_and_quotes_yaml_12_numbers() -> None:
    sealer = PlaintextSealer(secrets.token_bytes(32))
    secret = make_secret()
    secret["data"]["tricky"] = "0o17"  # valid base64, and an octal number to a YAML 1.2 reader
    out = sealer.seal(secret)
    assert sealer.seal_requests([SealRequest(secret, b"old")]) == [out], "deterministic, ignores committed bytes"
    parsed = read_yaml(out)
    assert parsed["metadata"]["annotations"] == {PLAINTEXT_ANNOTATION: "true"}
    assert parsed["data"] == secret["data"]
    assert "tricky: '0o17'" in out.decode() or 'tricky: "0o17"' in out.decode()
    assert is_plaintext_secret(out) and not is_sops_encrypted(out)
    assert "PlaintextSealer(<key redacted>)" == repr(sealer)
