"""Tests for pipelines.lib.genesis.

The hash is checked by routes that share nothing with the implementation's header and
state code: published genesis hashes of public networks, and py-evm's own header
classes plus py-evm's AccountDB for the state root. extraData is checked against byte
vectors Besu itself produced and decoded by hand (raw RLP, byte slicing).
"""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path
from typing import Any

import pytest
import rlp
from eth_hash.auto import keccak
from eth_utils import to_checksum_address
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.lib.genesis import (
    GenesisError,
    build_genesis,
    canonical_validator_order,
    decode_clique_extra_data,
    decode_ibft2_extra_data,
    decode_qbft_extra_data,
    encode_clique_extra_data,
    encode_ibft2_extra_data,
    encode_qbft_extra_data,
    genesis_block_hash,
    genesis_header_rlp,
    genesis_json_bytes,
)
from tests.genesis_helpers import (
    ALLOC,
    PROFILES,
    SORTED_VALIDATORS,
    VALIDATORS,
    make_spec,
    num,
    pyevm_genesis_hash,
)

FIXTURES = Path(__file__).parents[1] / "fixtures" / "genesis"

# Four validators deliberately out of order and in mixed letter case.
def load_fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text())


# --- independent reference: py-evm ---------------------------------------------------


PUBLIC = {
    "goerli": "0xbf7e331f7f7c1dd2e05159666b3bf8bc7a8a3a9eb1d518969eab529dd9b88c1a",  # clique, pre-London
    "sepolia": "0x25a5cc106eea7138acab33231d7160d69cb777ee0c2c553fcddf5138993e6dd9",  # London
    "hoodi": "0xbbe312868b376a3001692a646dd2d7d1e4406380dfd86b98aa8a34d1557c971b",  # Cancun, code+storage
}


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_public_network_genesis_hash(name: str) -> None:
    assert genesis_block_hash(load_fixture(name)) == PUBLIC[name]


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_pyevm_reference_agrees_on_public_networks(name: str) -> None:
    """Validates the reference itself, so its agreement below means something."""
    assert pyevm_genesis_hash(load_fixture(name)) == PUBLIC[name]


def test_goerli_extra_data_is_a_clique_checkpoint() -> None:
    signers = decode_clique_extra_data(load_fixture("goerli")["extraData"])
    assert signers == ["0xe0a2Bd4258D2768837BAa26A28fE71Dc079f84c7"]


# --- our profiles, cross-checked with py-evm -------------------------------------------


@pytest.mark.parametrize("client,consensus", PROFILES)
def test_profile_hash_matches_pyevm(client: str, consensus: str) -> None:
    genesis = build_genesis(make_spec(client, consensus))
    assert genesis_block_hash(genesis) == pyevm_genesis_hash(genesis)


@pytest.mark.parametrize("client,consensus", PROFILES)
def test_profile_hash_survives_a_json_round_trip(client: str, consensus: str) -> None:
    genesis = build_genesis(make_spec(client, consensus))
    reloaded = json.loads(genesis_json_bytes(genesis))
    assert reloaded == genesis
    assert genesis_block_hash(reloaded) == genesis_block_hash(genesis)


def test_changing_any_input_changes_the_hash() -> None:
    base = genesis_block_hash(build_genesis(make_spec()))
    variants = [
        make_spec(chain_id=48721),  # only in config: the block hash must NOT change
        make_spec(gas_limit=30_000_001),
        make_spec(timestamp=1_700_000_001),
        make_spec(validators=VALIDATORS[:3]),
        make_spec(alloc=ALLOC[:2]),
        make_spec(alloc=((ALLOC[0][0], ALLOC[0][1] + 1),) + ALLOC[1:]),
        make_spec(consensus="ibft2"),
    ]
    hashes = [genesis_block_hash(build_genesis(s)) for s in variants]
    # chainId lives only in config, so the block hash does not depend on it (as in geth).
    assert hashes[0] == base
    assert base not in hashes[1:]
    assert len(set(hashes[1:])) == len(hashes[1:])


# --- later forks, code, storage, nonces ------------------------------------------------

CONTRACT = "0x00000000000000000000000000000000000c0de5"


def fork_genesis(**config_forks: int) -> dict[str, Any]:
    """A geth-style genesis with contract code, storage (incl. a zero value) and nonces."""
    return {
        "config": {"chainId": 1337, "londonBlock": 0, **config_forks},
        "nonce": "0x42",
        "timestamp": "0x6553f100",
        "gasLimit": "0x1c9c380",
        "difficulty": "0x0",
        "mixHash": "0x" + "11" * 32,
        "coinbase": "0x" + "22" * 20,
        "extraData": "0xdeadbeef",
        "baseFeePerGas": "0x7",
        "alloc": {
            CONTRACT[2:]: {
                "balance": "0",
                "nonce": "0x1",
                "code": "0x6000356000526020600020",
                "storage": {
                    "0x00": "0x01",
                    "0x0000000000000000000000000000000000000000000000000000000000000001": "0x" + "ff" * 32,
                    "0x02": "0x00",  # zero value: not stored in the trie
                },
            },
            "0x" + "ab" * 20: {"balance": "1000000000000000000000", "nonce": "7"},
            "0xF17F52151EBEF6C7334FAD080C5704D77216B732": {"balance": 12345},
        },
    }


FORK_CASES = {
    "london": {},
    "shanghai": {"shanghaiTime": 0},
    "cancun": {"shanghaiTime": 0, "cancunTime": 0},
    "prague": {"shanghaiTime": 0, "cancunTime": 0, "pragueTime": 0},
    "prague-later": {"shanghaiTime": 0, "cancunTime": 0, "pragueTime": 2_000_000_000},
}


@pytest.mark.parametrize("case", sorted(FORK_CASES))
def test_fork_genesis_matches_pyevm(case: str) -> None:
    genesis = fork_genesis(**FORK_CASES[case])
    assert genesis_block_hash(genesis) == pyevm_genesis_hash(genesis)


def test_cancun_blob_fields_come_from_genesis() -> None:
    genesis = fork_genesis(shanghaiTime=0, cancunTime=0)
    genesis["excessBlobGas"] = "0x60000"
    genesis["blobGasUsed"] = 131072
    assert genesis_block_hash(genesis) == pyevm_genesis_hash(genesis)
    fields = rlp.decode(genesis_header_rlp(genesis))
    assert len(fields) == 20
    assert (rlp.sedes.big_endian_int.deserialize(fields[17]), rlp.sedes.big_endian_int.deserialize(fields[18])) == (
        131072,
        0x60000,
    )
    assert fields[19] == b"\x00" * 32  # parentBeaconBlockRoot


def test_prague_requests_hash_is_sha256_of_nothing() -> None:
    fields = rlp.decode(genesis_header_rlp(fork_genesis(shanghaiTime=0, cancunTime=0, pragueTime=0)))
    assert len(fields) == 21
    assert fields[20].hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_time_forks_compare_with_the_genesis_timestamp() -> None:
    genesis = fork_genesis(shanghaiTime=0x6553F100)  # exactly the genesis timestamp: active
    assert len(rlp.decode(genesis_header_rlp(genesis))) == 17
    genesis = fork_genesis(shanghaiTime=0x6553F101)  # one second later: not active
    assert len(rlp.decode(genesis_header_rlp(genesis))) == 16
    assert genesis_block_hash(genesis) == pyevm_genesis_hash(genesis)


def test_cancun_without_shanghai_writes_an_empty_withdrawals_placeholder() -> None:
    """geth's header RLP writes 0x80 for an absent optional field before a present one."""
    fields = rlp.decode(genesis_header_rlp(fork_genesis(cancunTime=0)))
    assert len(fields) == 20
    assert fields[16] == b""


def test_amsterdam_adds_block_access_list_hash_and_slot_number() -> None:
    genesis = fork_genesis(shanghaiTime=0, cancunTime=0, pragueTime=0, osakaTime=0, amsterdamTime=0)
    genesis["slotNumber"] = "0x5"
    fields = rlp.decode(genesis_header_rlp(genesis))
    assert len(fields) == 23
    assert fields[21] == keccak(rlp.encode([]))  # EIP-7928 empty block access list
    assert fields[22] == b"\x05"


def test_london_without_base_fee_uses_geths_initial_base_fee() -> None:
    genesis = fork_genesis()
    del genesis["baseFeePerGas"]
    explicit = fork_genesis()
    explicit["baseFeePerGas"] = hex(10**9)
    assert genesis_block_hash(genesis) == genesis_block_hash(explicit)


def test_pre_london_genesis_has_no_base_fee() -> None:
    genesis = fork_genesis()
    genesis["config"]["londonBlock"] = 5
    del genesis["baseFeePerGas"]
    assert len(rlp.decode(genesis_header_rlp(genesis))) == 15
    assert genesis_block_hash(genesis) == pyevm_genesis_hash(genesis)


def test_empty_alloc_has_the_empty_trie_root() -> None:
    genesis = fork_genesis()
    genesis["alloc"] = {}
    fields = rlp.decode(genesis_header_rlp(genesis))
    assert fields[3].hex() == "56e81f171bcc55a6ff8345e692c0f86e5b48e01b996cadc001622fb5e363b421"
    assert genesis_block_hash(genesis) == pyevm_genesis_hash(genesis)


# --- number and key spellings -------------------------------------------------------------


def respell_numbers(genesis: dict[str, Any], style: str) -> dict[str, Any]:
    """The same genesis with every number written as decimal strings / JSON ints / 0X hex."""
    out = copy.deepcopy(genesis)

    def spell(value: Any) -> Any:
        n = num(value)
        return {"decimal": str(n), "int": n, "upper": "0X" + format(n, "X")}[style]

    for key in ("nonce", "timestamp", "gasLimit", "difficulty", "baseFeePerGas"):
        out[key] = spell(out[key])
    for account in out["alloc"].values():
        account["balance"] = spell(account["balance"])
        if "nonce" in account:
            account["nonce"] = spell(account["nonce"])
    return out


@pytest.mark.parametrize("style", ["decimal", "int", "upper"])
@pytest.mark.parametrize("client,consensus", PROFILES)
def test_number_spellings_give_the_same_hash(client: str, consensus: str, style: str) -> None:
    genesis = build_genesis(make_spec(client, consensus))
    assert genesis_block_hash(respell_numbers(genesis, style)) == genesis_block_hash(genesis)


@pytest.mark.parametrize("style", ["decimal", "int", "upper"])
def test_number_spellings_with_code_and_storage(style: str) -> None:
    genesis = fork_genesis(shanghaiTime=0, cancunTime=0)
    assert genesis_block_hash(respell_numbers(genesis, style)) == genesis_block_hash(genesis)


def test_keys_are_case_insensitive_and_addresses_any_case() -> None:
    genesis = build_genesis(make_spec())
    renamed = {k.lower(): v for k, v in genesis.items()}
    renamed["alloc"] = {k.upper().replace("0X", ""): v for k, v in genesis["alloc"].items()}
    assert genesis_block_hash(renamed) == genesis_block_hash(genesis)


def test_storage_keys_are_left_padded() -> None:
    short = fork_genesis()
    long = copy.deepcopy(short)
    storage = long["alloc"][CONTRACT[2:]]["storage"]
    storage["0x" + "00" * 31 + "00"] = storage.pop("0x00")
    assert genesis_block_hash(short) == genesis_block_hash(long)


# --- extraData: vectors produced by Besu --------------------------------------------------

# hyperledger/besu app/src/test/java/.../operator/OperatorSubCommandTest.java and
# IbftBesuControllerBuilderTest.java (IBFT 2.0), consensus/qbft-core/src/integration-test/
# resources/genesis_migrating_validator_contract.json (QBFT) and the QBFT equivalent of the
# two-validator OperatorSubCommandTest vector.
BESU_IBFT2_ONE = (
    ["0xc2ab482b506de561668e07f04547232a72897daf"],
    "0xf83ea00000000000000000000000000000000000000000000000000000000000000000"
    "d594c2ab482b506de561668e07f04547232a72897daf808400000000c0",
)
BESU_IBFT2_TWO = (
    ["0xd5feb0fc5a54a89f97aeb34c3df15397c19f6dd2", "0xd6a9a4c886eb008ac307abdc1f38745c1dd13a88"],
    "0xf853a00000000000000000000000000000000000000000000000000000000000000000"
    "ea94d5feb0fc5a54a89f97aeb34c3df15397c19f6dd294d6a9a4c886eb008ac307abdc1f38745c1dd13a88"
    "808400000000c0",
)
BESU_QBFT_ONE = (
    ["0xeac51e3fe1afc9894f0dfeab8ceb471899b932df"],
    "0xf83aa00000000000000000000000000000000000000000000000000000000000000000"
    "d594eac51e3fe1afc9894f0dfeab8ceb471899b932dfc080c0",
)
BESU_QBFT_TWO = (
    ["0xd5feb0fc5a54a89f97aeb34c3df15397c19f6dd2", "0xd6a9a4c886eb008ac307abdc1f38745c1dd13a88"],
    "0xf84fa00000000000000000000000000000000000000000000000000000000000000000"
    "ea94d5feb0fc5a54a89f97aeb34c3df15397c19f6dd294d6a9a4c886eb008ac307abdc1f38745c1dd13a88"
    "c080c0",
)


@pytest.mark.parametrize("vector", [BESU_IBFT2_ONE, BESU_IBFT2_TWO])
def test_ibft2_matches_besu_bytes(vector: tuple[list[str], str]) -> None:
    validators, extra = vector
    assert encode_ibft2_extra_data(list(reversed(validators))) == extra
    assert decode_ibft2_extra_data(extra) == [to_checksum_address(v) for v in validators]


@pytest.mark.parametrize("vector", [BESU_QBFT_ONE, BESU_QBFT_TWO])
def test_qbft_matches_besu_bytes(vector: tuple[list[str], str]) -> None:
    validators, extra = vector
    assert encode_qbft_extra_data(list(reversed(validators))) == extra
    assert decode_qbft_extra_data(extra) == [to_checksum_address(v) for v in validators]


def test_ibft2_decoder_keeps_stored_order() -> None:
    """Besu's docs vector lists validators unsorted; decoding must not reorder them."""
    extra = (
        "0xf853a00000000000000000000000000000000000000000000000000000000000000000"
        "ea94be068f726a13c8d46c44be6ce9d275600e1735a4945ff6f4b66a46a2b2310a6f3a93aaddc0d9a1c193"
        "808400000000c0"
    )
    assert [a.lower() for a in decode_ibft2_extra_data(extra)] == [
        "0xbe068f726a13c8d46c44be6ce9d275600e1735a4",
        "0x5ff6f4b66a46a2b2310a6f3a93aaddc0d9a1c193",
    ]


def test_qbft_extra_data_decoded_by_raw_rlp() -> None:
    raw = bytes.fromhex(build_genesis(make_spec("besu", "qbft"))["extraData"][2:])
    vanity, validators, vote, round_, seals = rlp.decode(raw)
    assert vanity == b"\x00" * 32
    assert validators == SORTED_VALIDATORS
    assert vote == []  # no vote: empty list
    assert round_ == b""  # round 0 as an RLP scalar (0x80)
    assert seals == []
    assert raw.endswith(bytes.fromhex("c080c0"))


def test_ibft2_extra_data_decoded_by_raw_rlp() -> None:
    raw = bytes.fromhex(build_genesis(make_spec("besu", "ibft2"))["extraData"][2:])
    vanity, validators, vote, round_, seals = rlp.decode(raw)
    assert vanity == b"\x00" * 32
    assert validators == SORTED_VALIDATORS
    assert vote == b""  # no vote: RLP null
    assert round_ == b"\x00\x00\x00\x00"  # 4-byte int
    assert seals == []
    assert raw.endswith(bytes.fromhex("808400000000c0"))


def test_clique_extra_data_sliced_by_hand() -> None:
    raw = bytes.fromhex(build_genesis(make_spec("geth", "clique"))["extraData"][2:])
    assert len(raw) == 32 + 20 * len(VALIDATORS) + 65
    assert raw[:32] == b"\x00" * 32
    assert raw[-65:] == b"\x00" * 65
    body = raw[32:-65]
    assert [body[i : i + 20] for i in range(0, len(body), 20)] == SORTED_VALIDATORS


def test_ethash_extra_data_is_empty() -> None:
    assert build_genesis(make_spec("geth", "ethash"))["extraData"] == "0x"


addresses = st.lists(st.binary(min_size=20, max_size=20), min_size=1, max_size=12, unique=True)


@settings(max_examples=60, deadline=None)
@given(addresses, st.randoms(use_true_random=False))
def test_canonical_order_ignores_input_order_and_case(raw: list[bytes], rnd: random.Random) -> None:
    spellings = ["0x" + (a.hex().upper() if rnd.random() < 0.5 else a.hex()) for a in raw]
    shuffled = spellings[:]
    rnd.shuffle(shuffled)
    expected = [to_checksum_address(a) for a in sorted(raw)]
    assert canonical_validator_order(spellings) == expected
    assert canonical_validator_order(shuffled) == expected
    assert encode_qbft_extra_data(shuffled) == encode_qbft_extra_data(spellings)
    assert decode_qbft_extra_data(encode_qbft_extra_data(shuffled)) == expected
    assert decode_ibft2_extra_data(encode_ibft2_extra_data(shuffled)) == expected
    assert decode_clique_extra_data(encode_clique_extra_data(shuffled)) == expected


def test_canonical_order_is_byte_order_not_string_order() -> None:
    upper_first = "0xAA00000000000000000000000000000000000000"
    lower_second = "0x0b00000000000000000000000000000000000000"
    assert [a.lower() for a in canonical_validator_order([upper_first, lower_second])] == [
        lower_second,
        upper_first.lower(),
    ]


def test_duplicate_validators_are_refused() -> None:
    with pytest.raises(GenesisError, match="duplicate"):
        canonical_validator_order([VALIDATORS[0], VALIDATORS[0].upper().replace("0X", "0x")])


@pytest.mark.parametrize(
    "decoder,extra",
    [
        (decode_qbft_extra_data, "0x1234"),
        (decode_qbft_extra_data, BESU_IBFT2_ONE[1]),  # IBFT encoding is not valid QBFT
        (decode_ibft2_extra_data, BESU_QBFT_ONE[1]),  # and vice versa
        (decode_clique_extra_data, "0x" + "00" * 96),
        (decode_clique_extra_data, "0x" + "00" * 98),
    ],
)
def test_malformed_extra_data_is_refused(decoder: Any, extra: str) -> None:
    with pytest.raises(GenesisError, match="extraData"):
        decoder(extra)


# --- documents per profile ---------------------------------------------------------------


@pytest.mark.parametrize("client,consensus", PROFILES)
def test_build_is_deterministic(client: str, consensus: str) -> None:
    spec = make_spec(client, consensus)
    shuffled = make_spec(client, consensus, validators=tuple(reversed(VALIDATORS)), alloc=tuple(reversed(ALLOC)))
    first = genesis_json_bytes(build_genesis(spec))
    assert first == genesis_json_bytes(build_genesis(spec))
    assert first == genesis_json_bytes(build_genesis(shuffled))
    assert first.endswith(b"}\n")
    assert first == (json.dumps(json.loads(first), sort_keys=True, indent=2) + "\n").encode()


@pytest.mark.parametrize("client,consensus", PROFILES)
def test_profile_documents(client: str, consensus: str) -> None:
    genesis = build_genesis(make_spec(client, consensus))
    config = genesis["config"]
    assert config["chainId"] == 48720
    assert config["londonBlock"] == 0 and config["berlinBlock"] == 0
    assert not any(k.endswith("Time") for k in config), "no time-based forks on these clients"
    assert genesis["timestamp"] == hex(1_700_000_000)
    assert genesis["gasLimit"] == hex(30_000_000)
    assert genesis["baseFeePerGas"] == "0x3b9aca00"
    assert genesis["alloc"] == {
        "0x00000000000000000000000000000000000000ff": {"balance": "0x0"},
        "0x8ba1f109551bd432803012645ac136ddd64dba72": {"balance": hex(500 * 10**18)},
        "0xf17f52151ebef6c7334fad080c5704d77216b732": {"balance": hex(10**24)},
    }
    if client == "besu":
        assert genesis["difficulty"] == "0x1"
        assert genesis["mixHash"] == "0x63746963616c2062797a616e74696e65206661756c7420746f6c6572616e6365"
        assert config[consensus] == {"blockperiodseconds": 2, "epochlength": 30000, "requesttimeoutseconds": 10}
    elif consensus == "clique":
        assert genesis["difficulty"] == "0x1"
        assert config["clique"] == {"period": 2, "epoch": 30000}
    else:
        assert genesis["difficulty"] == "0x20000"
        assert config["ethash"] == {}
        assert config["grayGlacierBlock"] == 0


def test_ethash_ignores_validators() -> None:
    with_validators = build_genesis(make_spec("geth", "ethash"))
    without = build_genesis(make_spec("geth", "ethash", validators=()))
    assert with_validators == without


@pytest.mark.parametrize(
    "overrides,field",
    [
        ({"client": "parity"}, "client"),
        ({"consensus": "clique"}, "consensus"),  # besu + clique is not a profile
        ({"chain_id": 0}, "chainId"),
        ({"chain_id": True}, "chainId"),
        ({"gas_limit": 4999}, "gasLimit"),
        ({"timestamp": -1}, "timestamp"),
        ({"block_period_seconds": 0}, "blockPeriodSeconds"),
        ({"validators": ()}, "validators"),
        ({"validators": ("0x1234",)}, r"validators\[0\]"),
        ({"alloc": (("0xnothex", 1),)}, r"alloc\[0\]\.address"),
        ({"alloc": (("0x" + "11" * 20, -1),)}, r"alloc\[0\]\.balance"),
        ({"alloc": (("0x" + "aa" * 20, 1), ("0x" + "AA" * 20, 2))}, r"alloc\[1\]\.address"),
    ],
)
def test_bad_spec_is_refused(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(GenesisError, match=field):
        build_genesis(make_spec(**overrides))


# --- malformed genesis.json ---------------------------------------------------------------


def broken(mutate: Any) -> dict[str, Any]:
    genesis = fork_genesis(shanghaiTime=0)
    mutate(genesis)
    return genesis


def _set(key: str, value: Any) -> Any:
    return lambda g: g.__setitem__(key, value)


def _del(key: str) -> Any:
    return lambda g: g.pop(key)


def _account(address: str, key: str, value: Any) -> Any:
    return lambda g: g["alloc"][address].__setitem__(key, value)


@pytest.mark.parametrize(
    "mutate,field",
    [
        (_del("config"), "config"),
        (_del("difficulty"), "difficulty"),
        (_del("gasLimit"), "gasLimit"),
        (_del("alloc"), "alloc"),
        (_set("gasLimit", "0x"), "gasLimit"),
        (_set("gasLimit", "12abc"), "gasLimit"),
        (_set("gasLimit", 1.5), "gasLimit"),
        (_set("gasLimit", True), "gasLimit"),
        (_set("gasLimit", 2**64), "gasLimit"),
        (_set("timestamp", "-1"), "timestamp"),
        (_set("difficulty", "0x1" + "0" * 64), "difficulty"),
        (_set("extraData", "0x123"), "extraData"),
        (_set("extraData", "deadbeef"), "extraData"),
        (_set("mixHash", "0x1234"), "mixHash"),
        (_set("coinbase", "0x" + "11" * 19), "coinbase"),
        (_set("config", []), "config"),
        (_set("alloc", []), "alloc"),
        (lambda g: g["alloc"].__setitem__("0x1234", {"balance": "1"}), "alloc key"),
        (lambda g: g["alloc"].__setitem__(CONTRACT.upper().replace("0X", "0x"), {"balance": "1"}), "twice"),
        (_account(CONTRACT[2:], "balance", None), "balance"),
        (_account(CONTRACT[2:], "balance", "-5"), "balance"),
        (_account(CONTRACT[2:], "nonce", "0x" + "f" * 17), "nonce"),
        (_account(CONTRACT[2:], "code", "0xabc"), "code"),
        (_account(CONTRACT[2:], "storage", {"0x" + "00" * 33: "0x01"}), "storage"),
        (_account(CONTRACT[2:], "storage", {"0x01": 5}), "storage"),
        (lambda g: g.__setitem__("GASLIMIT", "0x1"), "twice"),
        (lambda g: g["config"].__setitem__("shanghaiTime", "soon"), "config.shanghaiTime"),
        (lambda g: g["config"].__setitem__("enableVerkleAtGenesis", True), "verkle"),
    ],
)
def test_malformed_genesis_names_the_field(mutate: Any, field: str) -> None:
    with pytest.raises(GenesisError, match=field):
        genesis_block_hash(broken(mutate))


def test_non_object_genesis_is_refused() -> None:
    with pytest.raises(GenesisError, match="genesis"):
        genesis_block_hash([])  # type: ignore[arg-type]


def test_genesis_error_is_a_value_error() -> None:
    assert issubclass(GenesisError, ValueError)
