"""Genesis documents for the chainops profiles, and geth-compatible genesis block hashes.

Two jobs, both pure functions:

* ``build_genesis`` turns a :class:`GenesisSpec` into the ``genesis.json`` the pinned
  client loads (Besu QBFT / IBFT 2.0, geth v1.13.15 Clique, geth v1.11.6 ethash), with
  validators in canonical order inside ``extraData`` and every value that feeds the
  block hash written explicitly, so the hash never depends on a client default.
* ``genesis_block_hash`` computes the genesis block hash of *any* geth-style
  ``genesis.json`` exactly as go-ethereum's ``Genesis.ToBlock`` does (core/genesis.go):
  the state root from ``alloc`` and the header fields of the forks active at genesis.

Byte layouts were checked against the client sources:

* QBFT ``extraData``: hyperledger/besu ``consensus/qbft/.../QbftExtraDataCodec.java``:
  ``RLP([vanity32, [validators], vote, round, [seals]])`` where "no vote" is an empty
  RLP list (0xc0), the round is ``writeIntScalar`` (0 -> 0x80) and seals an empty list.
* IBFT 2.0 ``extraData``: ``consensus/ibft/.../IbftExtraDataCodec.java``: same list,
  but "no vote" is ``writeNull`` (0x80) and the round is ``writeInt`` (4 bytes, 0x84
  00000000); decoding uses ``readInt`` so the 4-byte form is mandatory.
* Clique ``extraData``: go-ethereum ``consensus/clique/clique.go``: 32-byte vanity,
  20-byte signers, 65-byte seal; the snapshot orders signers by address bytes.
* Header: go-ethereum ``core/types/block.go`` and ``gen_header_rlp.go`` (optional
  trailing fields; a missing field *before* a present one is written as 0x80).
* BFT transitions (``config.transitions``): see :data:`TRANSITION_KEYS`. They live in
  ``config``, which is not part of the header, so they never change the block hash.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import rlp
from eth_hash.auto import keccak
from trie import HexaryTrie

from pipelines.lib.errors import InputProblem

__all__ = [
    "GenesisError",
    "GenesisSpec",
    "Transition",
    "build_genesis",
    "canonical_validator_order",
    "decode_clique_extra_data",
    "decode_ibft2_extra_data",
    "decode_qbft_extra_data",
    "encode_clique_extra_data",
    "encode_ibft2_extra_data",
    "encode_qbft_extra_data",
    "genesis_block_hash",
    "genesis_header_rlp",
    "genesis_json_bytes",
    "transitions_by_block",
]


class GenesisError(InputProblem):
    """A genesis spec or genesis.json that no client would load the way we expect."""


# --- constants (values verified against go-ethereum core/types/hashes.go, params) ---

EMPTY_TRIE_ROOT = keccak(rlp.encode(b""))  # 0x56e81f…b421: empty state/tx/receipt/withdrawals
EMPTY_OMMERS_HASH = keccak(rlp.encode([]))  # 0x1dcc4d…9347
EMPTY_REQUESTS_HASH = hashlib.sha256(b"").digest()  # EIP-7685: sha256 of no requests, 0xe3b0c4…b855
EMPTY_BLOCK_ACCESS_LIST_HASH = keccak(rlp.encode([]))  # EIP-7928 (Amsterdam), geth v1.17
ZERO_HASH = b"\x00" * 32
EMPTY_BLOOM = b"\x00" * 256

GETH_GENESIS_GAS_LIMIT = 4_712_388  # params.GenesisGasLimit, used when gasLimit is 0
GETH_INITIAL_BASE_FEE = 1_000_000_000  # params.InitialBaseFee, London genesis without baseFeePerGas

VANITY_LENGTH = 32
ADDRESS_LENGTH = 20
CLIQUE_SEAL_LENGTH = 65

# Istanbul BFT "magic" mixHash Besu expects on QBFT/IBFT 2.0 blocks.
BFT_MIX_HASH = "0x63746963616c2062797a616e74696e65206661756c7420746f6c6572616e6365"
ZERO_HASH_HEX = "0x" + "00" * 32
ZERO_ADDRESS_HEX = "0x" + "00" * 20

EPOCH_LENGTH = 30_000
GENESIS_BASE_FEE = GETH_INITIAL_BASE_FEE  # written explicitly into every London genesis we build
ETHASH_GENESIS_DIFFICULTY = 0x20000  # = geth's MinimumDifficulty: CPU miners find blocks at once

UINT64_MAX = 2**64 - 1
INT64_MAX = 2**63 - 1  # Besu parses chainId-adjacent values, timestamp and gasLimit as Java long
MIN_GAS_LIMIT = 5_000  # params.MinGasLimit

# Block-number forks through London, all at block 0. Names are geth's JSON keys, which
# Besu reads too (JsonGenesisConfigOptions: homesteadblock … londonblock, petersburgblock).
# eip155Block is geth-only (Besu folds it into eip158Block) and harmless for Besu.
_LONDON_FORKS: tuple[str, ...] = (
    "homesteadBlock",
    "eip150Block",
    "eip155Block",
    "eip158Block",
    "byzantiumBlock",
    "constantinopleBlock",
    "petersburgBlock",
    "istanbulBlock",
    "muirGlacierBlock",
    "berlinBlock",
    "londonBlock",
)
# Difficulty-bomb delays only matter for ethash; at 0 they push the bomb ~11.4M blocks out.
_ETHASH_BOMB_DELAYS: tuple[str, ...] = ("arrowGlacierBlock", "grayGlacierBlock")

_PROFILES: dict[str, tuple[str, ...]] = {"besu": ("qbft", "ibft2"), "geth": ("clique", "ethash")}

# Besu's transitions ("forks" in its sources), checked against hyperledger/besu:
# * config/.../TransitionsConfigOptions.java: `config.transitions` holds a list per
#   consensus, read by getBftForks("qbft") and getBftForks("ibft2");
# * config/.../BftFork.java: FORK_BLOCK_KEY "block", BLOCK_PERIOD_SECONDS_KEY
#   "blockperiodseconds"; config/.../QbftFork.java: VALIDATOR_SELECTION_MODE_KEY
#   "validatorselectionmode" (BLOCKHEADER | CONTRACT, matched ignoring case) and
#   VALIDATOR_CONTRACT_ADDRESS_KEY "validatorcontractaddress";
# * consensus/qbft/.../QbftForksSchedulesFactory.java and consensus/ibft/.../
#   IbftForksSchedulesFactory.java: what a transition changes (block period, block reward,
#   mining beneficiary; QBFT also the validator selection, contract mode needing the
#   address). No key for the round timeout: the RoundTimer takes requesttimeoutseconds
#   from the genesis `qbft`/`ibft2` block, so a transition cannot change it;
# * consensus/common/.../ForksScheduleFactory.java: "Transition cannot be created for
#   genesis block" (block > 0), "Duplicate transitions cannot be created for the same block".
# The Besu docs ("Configure QBFT consensus", section Transitions) show the same layout:
# "transitions": {"qbft": [{"block": 1240, "blockperiodseconds": 4}]}.
TRANSITION_KEYS = {"block": "block", "block_period_seconds": "blockperiodseconds",
                   "selection_mode": "validatorselectionmode", "validator_contract": "validatorcontractaddress"}
MAX_BLOCK_NUMBER = INT64_MAX  # Besu reads "block" as a Java long


# --- spec -------------------------------------------------------------------------


@dataclass(frozen=True)
class GenesisSpec:
    """Everything that decides a chainops genesis; same spec, same bytes, same hash."""

    client: str  # "besu" | "geth"
    consensus: str  # "qbft" | "ibft2" (besu) ; "clique" | "ethash" (geth)
    chain_id: int
    block_period_seconds: int  # qbft/ibft2/clique
    gas_limit: int
    timestamp: int  # fixed genesis timestamp, never "now"
    validators: tuple[str, ...]  # validators / clique signers; ignored for ethash
    alloc: tuple[tuple[str, int], ...]  # (address, balance in wei)
    contracts: tuple[ContractAlloc, ...] = ()  # predeployed contracts (code, storage, balance)
    zero_base_fee: bool = False  # besu: free-gas network (config.zeroBaseFee, base fee 0)
    contract_size_limit: int | None = None  # besu: config.contractSizeLimit in bytes
    validator_contract: str | None = None  # qbft: validators come from this contract, not extraData
    transitions: tuple[Transition, ...] = ()  # besu qbft/ibft2: settings that change from a later block on


@dataclass(frozen=True)
class Transition:
    """From `block` on, a BFT network runs with these settings (None: unchanged)."""

    block: int
    block_period_seconds: int | None = None
    validator_contract: str | None = None  # qbft: switch to validator selection by this contract


@dataclass(frozen=True)
class ContractAlloc:
    """A predeployed contract: runtime code and initial storage (slot -> value, 0x hex words)."""

    address: str
    code: str
    storage: tuple[tuple[str, str], ...] = ()
    balance: int = 0


def address_array_storage(addresses: Iterable[str], slot: int = 0) -> dict[str, str]:
    """Storage of a Solidity `address[]` state variable at `slot`: length in the slot, element
    i at keccak256(slot) + i. This is how a validator contract whose first state variable is
    `address[] validators` holds its genesis validators."""
    items = [_address_bytes(a, f"validators[{i}]") for i, a in enumerate(addresses)]
    base = int.from_bytes(keccak(slot.to_bytes(32, "big")), "big")
    storage = {_word_hex(slot): _word_hex(len(items))}
    for i, item in enumerate(items):
        storage[_word_hex(base + i)] = _word_hex(int.from_bytes(item, "big"))
    return storage


def _word_hex(value: int) -> str:
    return "0x" + value.to_bytes(32, "big").hex()


# --- addresses ----------------------------------------------------------------------


def _address_bytes(value: object, field: str) -> bytes:
    """Parse a 0x-prefixed (or bare) 40-hex-digit address in any letter case."""
    if not isinstance(value, str):
        raise GenesisError(f"{field}: {value!r} is not an address; expected a 0x-prefixed 40-hex-digit string")
    text = value[2:] if value[:2] in ("0x", "0X") else value
    if len(text) != 2 * ADDRESS_LENGTH or not _is_hex(text):
        raise GenesisError(f"{field}: {value!r} is not an address; expected 0x followed by 40 hex digits")
    return bytes.fromhex(text)


def _checksum(address: bytes) -> str:
    """EIP-55 mixed-case spelling: the form people compare by eye in the lock file."""
    lower = address.hex()
    digest = keccak(lower.encode("ascii")).hex()
    return "0x" + "".join(c.upper() if int(d, 16) >= 8 else c for c, d in zip(lower, digest))


def _sorted_unique(addresses: Iterable[str], field: str) -> list[bytes]:
    """Addresses ascending by their 20 bytes (Besu and geth Clique order); duplicates refused."""
    raw = [_address_bytes(a, f"{field}[{i}]") for i, a in enumerate(addresses)]
    if len(set(raw)) != len(raw):
        dupes = sorted({_checksum(a) for a in raw if raw.count(a) > 1})
        raise GenesisError(f"{field}: duplicate address(es) {', '.join(dupes)}; each may appear once")
    return sorted(raw)


def canonical_validator_order(addresses: Iterable[str]) -> list[str]:
    """Validators sorted by address bytes, EIP-55 spelled: the order clients keep in extraData."""
    return [_checksum(a) for a in _sorted_unique(addresses, "validators")]


# --- extraData codecs ---------------------------------------------------------------


def _require_validators(validators: Iterable[str], field: str) -> list[bytes]:
    ordered = _sorted_unique(validators, field)
    if not ordered:
        raise GenesisError(f"{field}: at least one address is required")
    return ordered


def encode_qbft_extra_data(validators: Iterable[str]) -> str:
    """Besu QbftExtraDataCodec: RLP([vanity, validators, [] (no vote), 0 (round), [] (seals)])."""
    ordered = _require_validators(validators, "validators")
    return "0x" + rlp.encode([b"\x00" * VANITY_LENGTH, ordered, [], 0, []]).hex()


def encode_ibft2_extra_data(validators: Iterable[str]) -> str:
    """Besu IbftExtraDataCodec: RLP([vanity, validators, null (no vote), int32 round 0, seals])."""
    ordered = _require_validators(validators, "validators")
    return "0x" + rlp.encode([b"\x00" * VANITY_LENGTH, ordered, b"", b"\x00" * 4, []]).hex()


def encode_clique_extra_data(signers: Iterable[str]) -> str:
    """geth Clique checkpoint layout: vanity ‖ signers (ascending) ‖ 65-byte zero seal."""
    ordered = _require_validators(signers, "signers")
    return "0x" + (b"\x00" * VANITY_LENGTH + b"".join(ordered) + b"\x00" * CLIQUE_SEAL_LENGTH).hex()


def _bft_items(extra_data: str, codec: str) -> list[Any]:
    """Outer RLP list of a BFT extraData, with the checks every BFT codec shares."""
    raw = _hex_bytes(extra_data, "extraData", require_prefix=False)
    try:
        items = rlp.decode(raw)
    except rlp.exceptions.DecodingError as exc:
        raise GenesisError(f"extraData: not valid RLP for {codec} ({exc})") from None
    if not isinstance(items, list) or len(items) != 5:
        raise GenesisError(f"extraData: {codec} expects an RLP list of 5 items [vanity, validators, vote, round, seals]")
    vanity, validators, _vote, _round, seals = items
    if not isinstance(vanity, bytes) or len(vanity) != VANITY_LENGTH:
        raise GenesisError(f"extraData: {codec} vanity must be {VANITY_LENGTH} bytes")
    if not isinstance(validators, list) or not all(isinstance(v, bytes) and len(v) == ADDRESS_LENGTH for v in validators):
        raise GenesisError(f"extraData: {codec} validators must be a list of 20-byte addresses")
    if not isinstance(seals, list):
        raise GenesisError(f"extraData: {codec} seals must be a list")
    return items


def decode_qbft_extra_data(extra_data: str) -> list[str]:
    """Validators of a QBFT extraData, in stored order (as QbftExtraDataCodec.decodeRaw reads it)."""
    items = _bft_items(extra_data, "QBFT")
    vote, round_ = items[2], items[3]
    if not (vote == [] or (isinstance(vote, list) and len(vote) == 2)):
        raise GenesisError("extraData: QBFT vote must be an empty list or [recipient, vote]")
    if not isinstance(round_, bytes) or len(round_) > 4 or round_[:1] == b"\x00":
        raise GenesisError("extraData: QBFT round must be an RLP scalar (no leading zero bytes)")
    return [_checksum(v) for v in items[1]]


def decode_ibft2_extra_data(extra_data: str) -> list[str]:
    """Validators of an IBFT 2.0 extraData, in stored order (IbftExtraDataCodec.decodeRaw)."""
    items = _bft_items(extra_data, "IBFT 2.0")
    vote, round_ = items[2], items[3]
    if not (vote == b"" or (isinstance(vote, list) and len(vote) == 2)):
        raise GenesisError("extraData: IBFT 2.0 vote must be RLP null (0x80) or [recipient, vote]")
    if not isinstance(round_, bytes) or len(round_) != 4:
        raise GenesisError("extraData: IBFT 2.0 round must be a 4-byte integer")
    return [_checksum(v) for v in items[1]]


def decode_clique_extra_data(extra_data: str) -> list[str]:
    """Signers of a Clique checkpoint extraData, in stored order (geth snapshot parsing)."""
    raw = _hex_bytes(extra_data, "extraData", require_prefix=False)
    body = len(raw) - VANITY_LENGTH - CLIQUE_SEAL_LENGTH
    if body < 0 or body % ADDRESS_LENGTH:
        raise GenesisError(
            "extraData: Clique expects 32 vanity bytes, a multiple of 20 signer bytes and a 65-byte seal"
        )
    signers = raw[VANITY_LENGTH : VANITY_LENGTH + body]
    return [_checksum(signers[i : i + ADDRESS_LENGTH]) for i in range(0, body, ADDRESS_LENGTH)]


# --- building chainops genesis documents ----------------------------------------------


def _check_int(value: object, field: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise GenesisError(f"{field}: {value!r} is not allowed; expected an integer from {low} to {high}")
    return value


def _validate_spec(spec: GenesisSpec) -> None:
    """Refuse specs a pinned client would reject or misread, naming the field."""
    if spec.client not in _PROFILES:
        raise GenesisError(f"client: {spec.client!r} is not allowed; expected one of {', '.join(_PROFILES)}")
    if spec.consensus not in _PROFILES[spec.client]:
        allowed = " | ".join(_PROFILES[spec.client])
        raise GenesisError(f"consensus: {spec.consensus!r} is not allowed for {spec.client}; expected {allowed}")
    _check_int(spec.chain_id, "chainId", 1, INT64_MAX)
    _check_int(spec.gas_limit, "gasLimit", MIN_GAS_LIMIT, INT64_MAX)
    _check_int(spec.timestamp, "timestamp", 0, INT64_MAX)
    if spec.consensus != "ethash":
        _check_int(spec.block_period_seconds, "blockPeriodSeconds", 1, 3600)
    if spec.client != "besu" and (spec.zero_base_fee or spec.contract_size_limit is not None):
        raise GenesisError("zeroBaseFee, contractSizeLimit: Besu options; not allowed for geth profiles")
    if spec.contract_size_limit is not None:
        _check_int(spec.contract_size_limit, "contractSizeLimit", 1, 2**31 - 1)
    if spec.validator_contract is not None:
        if spec.consensus != "qbft":
            raise GenesisError("validatorContract: contract-based validator selection is QBFT only")
        wanted = _address_bytes(spec.validator_contract, "validatorContract")
        if all(_address_bytes(c.address, "contracts.address") != wanted for c in spec.contracts):
            raise GenesisError("validatorContract: the address must be one of the predeployed contracts")
    _validate_transitions(spec)


def _validate_transitions(spec: GenesisSpec) -> None:
    """What Besu's fork schedule accepts, refused here by name rather than at node start."""
    if spec.transitions and spec.client != "besu":
        raise GenesisError(f"transitions: {spec.client}/{spec.consensus} has no consensus transitions (Besu QBFT and IBFT 2.0 only)")
    previous = 0
    for i, transition in enumerate(spec.transitions):
        where = f"transitions[{i}]"
        _check_int(transition.block, f"{where}.block", 1, MAX_BLOCK_NUMBER)
        if transition.block <= previous:
            raise GenesisError(f"{where}.block: {transition.block} is not after block {previous}; blocks must strictly increase")
        previous = transition.block
        if transition.block_period_seconds is None and transition.validator_contract is None:
            raise GenesisError(f"{where}: changes nothing; set a block period or a validator contract")
        if transition.block_period_seconds is not None:
            _check_int(transition.block_period_seconds, f"{where}.blockPeriodSeconds", 1, 3600)
        if transition.validator_contract is not None:
            if spec.consensus != "qbft":
                raise GenesisError(f"{where}.validatorContract: validator selection by contract is QBFT only")
            _address_bytes(transition.validator_contract, f"{where}.validatorContract")


def _transition_entry(transition: Transition) -> dict[str, Any]:
    entry: dict[str, Any] = {TRANSITION_KEYS["block"]: transition.block}
    if transition.block_period_seconds is not None:
        entry[TRANSITION_KEYS["block_period_seconds"]] = transition.block_period_seconds
    if transition.validator_contract is not None:
        entry[TRANSITION_KEYS["selection_mode"]] = "contract"
        address = _address_bytes(transition.validator_contract, "validatorContract")
        entry[TRANSITION_KEYS["validator_contract"]] = "0x" + address.hex()
    return entry


def transitions_by_block(genesis: Mapping[str, Any] | None) -> dict[int, dict[str, Any]]:
    """The BFT transitions of a genesis document, by block (keys lower-cased, as Besu reads them)."""
    config = _fields((genesis or {}).get("config") or {}, "config")
    found: dict[int, dict[str, Any]] = {}
    for entries in (_fields(config.get("transitions") or {}, "config.transitions")).values():
        for entry in entries if isinstance(entries, list) else ():
            if isinstance(entry, Mapping) and isinstance(entry.get("block"), int):
                found[entry["block"]] = {str(k).lower(): v for k, v in entry.items()}
    return dict(sorted(found.items()))


def _alloc_document(
    alloc: Iterable[tuple[str, int]], contracts: Iterable[ContractAlloc] = ()
) -> dict[str, dict[str, Any]]:
    """alloc keyed by lower-case 0x address, balances as 0x hex (both clients read both)."""
    out: dict[str, dict[str, Any]] = {}
    for i, entry in enumerate(alloc):
        if not isinstance(entry, tuple | list) or len(entry) != 2:
            raise GenesisError(f"alloc[{i}]: expected an (address, balance) pair")
        address = "0x" + _address_bytes(entry[0], f"alloc[{i}].address").hex()
        balance = _check_int(entry[1], f"alloc[{i}].balance", 0, 2**256 - 1)
        if address in out:
            raise GenesisError(f"alloc[{i}].address: {_checksum(bytes.fromhex(address[2:]))} is listed twice")
        out[address] = {"balance": hex(balance)}
    for i, contract in enumerate(contracts):
        where = f"contracts[{i}]"
        address = "0x" + _address_bytes(contract.address, f"{where}.address").hex()
        if address in out:
            raise GenesisError(f"{where}.address: {_checksum(bytes.fromhex(address[2:]))} is also an account")
        code = _hex_bytes(contract.code, f"{where}.code")
        if not code:
            raise GenesisError(f"{where}.code: a contract needs runtime code")
        account: dict[str, Any] = {
            "balance": hex(_check_int(contract.balance, f"{where}.balance", 0, 2**256 - 1)),
            "code": "0x" + code.hex(),
        }
        storage = {}
        for key, value in contract.storage:
            slot, word = _word(key, f"{where}.storage key"), _word(value, f"{where}.storage[{key!r}]")
            if _word_hex(slot) in storage:
                raise GenesisError(f"{where}.storage: slot {key!r} appears twice")
            if word:
                storage[_word_hex(slot)] = _word_hex(word)
        if storage:
            account["storage"] = dict(sorted(storage.items()))
        out[address] = account
    return dict(sorted(out.items()))


def _fork_blocks(names: Iterable[str]) -> dict[str, int]:
    return {name: 0 for name in names}


def _besu_config(spec: GenesisSpec) -> dict[str, Any]:
    # Forks stop at London on purpose. Besu accepts shanghaiTime/cancunTime on QBFT and
    # IBFT 2.0, but BFT support for them is recent and has regressed (Besu CHANGELOG:
    # "Support for shanghaiTime … in QBFT/IBFT chains" #6353, "Fix QBFT Shanghai support by
    # reintroducing NotApplicableWithdrawals withdrawals validator" #9830 in 26.2.0), and
    # Cancun needs blob settings a private BFT chain has no use for. London (EIP-1559) is
    # the fork set every supported Besu release runs on BFT chains.
    engine = {
        "blockperiodseconds": spec.block_period_seconds,
        "epochlength": EPOCH_LENGTH,
        # Round-change timeout: Besu's examples use twice the block period; keep at least
        # 10 s so a validator pod restarting does not trigger round changes.
        "requesttimeoutseconds": max(10, 2 * spec.block_period_seconds),
    }
    if spec.validator_contract is not None:
        engine["validatorcontractaddress"] = "0x" + _address_bytes(spec.validator_contract, "validatorContract").hex()
    config: dict[str, Any] = {"chainId": spec.chain_id, **_fork_blocks(_LONDON_FORKS), spec.consensus: engine}
    if spec.zero_base_fee:
        config["zeroBaseFee"] = True
    if spec.contract_size_limit is not None:
        config["contractSizeLimit"] = spec.contract_size_limit
    if spec.transitions:
        config["transitions"] = {spec.consensus: [_transition_entry(t) for t in spec.transitions]}
    return config


def _geth_config(spec: GenesisSpec) -> dict[str, Any]:
    if spec.consensus == "clique":
        # geth 1.13.15 Clique rejects Shanghai ("clique does not support shanghai fork").
        engine: dict[str, Any] = {"clique": {"period": spec.block_period_seconds, "epoch": EPOCH_LENGTH}}
        forks = _LONDON_FORKS
    else:
        # geth 1.11.6 mines ethash; Shanghai would need a merge (TTD), so London is the end.
        engine = {"ethash": {}}
        forks = _LONDON_FORKS + _ETHASH_BOMB_DELAYS
    return {"chainId": spec.chain_id, **_fork_blocks(forks), **engine}


def _extra_data(spec: GenesisSpec) -> str:
    if spec.consensus == "qbft" and spec.validator_contract is not None:
        return "0x" + rlp.encode([ZERO_HASH, [], [], 0, []]).hex()  # validators live in the contract
    if spec.consensus == "qbft":
        return encode_qbft_extra_data(spec.validators)
    if spec.consensus == "ibft2":
        return encode_ibft2_extra_data(spec.validators)
    if spec.consensus == "clique":
        return encode_clique_extra_data(spec.validators)
    return "0x"


def build_genesis(spec: GenesisSpec) -> dict[str, Any]:
    """The genesis.json document for the spec's profile; every hash input is explicit."""
    _validate_spec(spec)
    is_bft = spec.client == "besu"
    config = _besu_config(spec) if is_bft else _geth_config(spec)
    difficulty = ETHASH_GENESIS_DIFFICULTY if spec.consensus == "ethash" else 1
    return {
        "config": config,
        "nonce": "0x0",
        "timestamp": hex(spec.timestamp),
        "gasLimit": hex(spec.gas_limit),
        "difficulty": hex(difficulty),
        "mixHash": BFT_MIX_HASH if is_bft else ZERO_HASH_HEX,
        "coinbase": ZERO_ADDRESS_HEX,
        "extraData": _extra_data(spec),
        "baseFeePerGas": hex(0 if spec.zero_base_fee else GENESIS_BASE_FEE),
        "alloc": _alloc_document(spec.alloc, spec.contracts),
    }


def genesis_json_bytes(genesis: Mapping[str, Any]) -> bytes:
    """Canonical file bytes: sorted keys, 2-space indent, ASCII, trailing newline."""
    return (json.dumps(genesis, sort_keys=True, indent=2) + "\n").encode("ascii")


# --- parsing geth-style genesis.json ------------------------------------------------------


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdefABCDEF" for c in text)


def _fields(obj: object, where: str) -> dict[str, Any]:
    """Case-insensitive view of a JSON object, as Go's encoding/json and Besu match keys."""
    if not isinstance(obj, Mapping):
        raise GenesisError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    out: dict[str, Any] = {}
    for key, value in obj.items():
        low = str(key).lower()
        if low in out:
            raise GenesisError(f"{where}: key {key!r} appears twice (keys are case-insensitive)")
        out[low] = value
    return out


def _uint(value: object, field: str, bits: int) -> int:
    """geth's HexOrDecimal64/256: JSON number, decimal string, 0x-hex string; "" is 0."""
    allowed = (
        f"expected a non-negative integer below 2^{bits} as a JSON number, "
        "a decimal string or a 0x-prefixed hex string"
    )
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise GenesisError(f"{field}: {value!r} is not allowed; {allowed}")
    if isinstance(value, int):
        number = value
    elif value == "":
        number = 0
    elif value[:2] in ("0x", "0X"):
        digits = value[2:]
        if not digits or not _is_hex(digits):
            raise GenesisError(f"{field}: {value!r} is not allowed; {allowed}")
        number = int(digits, 16)
    elif value.isascii() and value.isdigit():
        number = int(value, 10)
    else:
        raise GenesisError(f"{field}: {value!r} is not allowed; {allowed}")
    if not 0 <= number < 2**bits:
        raise GenesisError(f"{field}: {value!r} is out of range; {allowed}")
    return number


def _opt_uint(fields: Mapping[str, Any], key: str, field: str, bits: int) -> int | None:
    value = fields.get(key)
    return None if value is None else _uint(value, field, bits)


def _hex_bytes(value: object, field: str, *, require_prefix: bool = True, length: int | None = None) -> bytes:
    """geth's hexutil.Bytes / fixed hashes: 0x-prefixed, even number of hex digits."""
    want = f"exactly {length} bytes" if length is not None else "an even number of hex digits"
    allowed = f"expected a 0x-prefixed hex string of {want}"
    if not isinstance(value, str):
        raise GenesisError(f"{field}: {value!r} is not allowed; {allowed}")
    if value[:2] in ("0x", "0X"):
        text = value[2:]
    elif value == "" and length is None:
        text = ""  # geth accepts an empty string as empty bytes
    elif require_prefix:
        raise GenesisError(f"{field}: {value!r} is missing the 0x prefix; {allowed}")
    else:
        text = value
    if len(text) % 2 or not _is_hex(text):
        raise GenesisError(f"{field}: {value!r} is not allowed; {allowed}")
    raw = bytes.fromhex(text)
    if length is not None and len(raw) != length:
        raise GenesisError(f"{field}: {value!r} has {len(raw)} bytes; {allowed}")
    return raw


def _opt_fixed(fields: Mapping[str, Any], key: str, field: str, length: int) -> bytes:
    value = fields.get(key)
    return b"\x00" * length if value is None else _hex_bytes(value, field, length=length)


def _word(value: object, field: str) -> int:
    """geth's storageJSON: up to 64 hex digits, 0x optional, left-padded to 32 bytes."""
    allowed = "expected up to 64 hex digits (0x optional, even count)"
    if not isinstance(value, str):
        raise GenesisError(f"{field}: {value!r} is not allowed; {allowed}")
    text = value[2:] if value[:2] == "0x" else value
    if len(text) > 64 or len(text) % 2 or not _is_hex(text):
        raise GenesisError(f"{field}: {value!r} is not allowed; {allowed}")
    return int(text, 16) if text else 0


# --- state root ---------------------------------------------------------------------------


def _trie_root(items: Iterable[tuple[bytes, bytes]]) -> bytes:
    """Root of a secure (keccak-keyed) Merkle-Patricia trie in a throwaway in-memory db.

    Plain inserts: measured faster than ``squash_changes`` or pruning for genesis sizes.
    """
    trie = HexaryTrie({})
    for key, value in items:
        trie[keccak(key)] = value
    return trie.root_hash


def _storage_root(storage: object, where: str) -> bytes:
    """Storage trie: key keccak(slot32), value rlp(trimmed word); zero words are not stored."""
    if storage is None:
        return EMPTY_TRIE_ROOT
    if not isinstance(storage, Mapping):
        raise GenesisError(f"{where}.storage: expected a JSON object of slot -> value")
    slots: dict[int, int] = {}
    for key, value in storage.items():
        slot = _word(key, f"{where}.storage key")
        if slot in slots:
            raise GenesisError(f"{where}.storage: slot {key!r} appears twice")
        slots[slot] = _word(value, f"{where}.storage[{key!r}]")
    entries = [(s.to_bytes(32, "big"), rlp.encode(v)) for s, v in slots.items() if v]
    return _trie_root(entries) if entries else EMPTY_TRIE_ROOT


def _account_rlp(account: object, where: str) -> bytes:
    """Account leaf [nonce, balance, storageRoot, codeHash], as geth's hashAlloc stores it."""
    fields = _fields(account, where)
    if fields.get("balance") is None:
        raise GenesisError(f"{where}.balance: required (geth refuses accounts without a balance)")
    balance = _uint(fields["balance"], f"{where}.balance", 256)
    nonce = _opt_uint(fields, "nonce", f"{where}.nonce", 64) or 0
    code_value = fields.get("code")
    code = b"" if code_value is None else _hex_bytes(code_value, f"{where}.code")
    storage_root = _storage_root(fields.get("storage"), where)
    return rlp.encode([nonce, balance, storage_root, keccak(code)])


def _state_root(alloc: object) -> bytes:
    if not isinstance(alloc, Mapping):
        raise GenesisError("alloc: expected a JSON object of address -> account")
    accounts: dict[bytes, bytes] = {}
    for key, account in alloc.items():
        address = _address_bytes(key, f"alloc key {key!r}")
        if address in accounts:
            raise GenesisError(f"alloc: address {_checksum(address)} appears twice (addresses are case-insensitive)")
        accounts[address] = _account_rlp(account, f"alloc[{key!r}]")
    return _trie_root(accounts.items()) if accounts else EMPTY_TRIE_ROOT


# --- header -------------------------------------------------------------------------------


def _time_fork_active(config: Mapping[str, Any], name: str, timestamp: int) -> bool:
    """geth isTimestampForked(config.<name>, timestamp): set and <= genesis timestamp."""
    value = _opt_uint(config, name.lower(), f"config.{name}", 64)
    return value is not None and value <= timestamp


def _optional_header_fields(
    genesis: Mapping[str, Any], config: Mapping[str, Any], timestamp: int, number: int
) -> list[Any]:
    """Post-London header fields, in geth's order; None = absent (see gen_header_rlp.go)."""
    london_block = _opt_uint(config, "londonblock", "config.londonBlock", 256)
    base_fee = _opt_uint(genesis, "basefeepergas", "baseFeePerGas", 256)  # kept even pre-London
    if london_block is not None and london_block <= 0 and base_fee is None:  # IsLondon(0)
        base_fee = GETH_INITIAL_BASE_FEE
    # Time forks also need London at the genesis *number*: IsShanghai(num, time) etc.
    london_at_number = london_block is not None and london_block <= number
    shanghai = london_at_number and _time_fork_active(config, "shanghaiTime", timestamp)
    cancun = london_at_number and _time_fork_active(config, "cancunTime", timestamp)
    prague = london_at_number and _time_fork_active(config, "pragueTime", timestamp)
    amsterdam = london_at_number and _time_fork_active(config, "amsterdamTime", timestamp)
    excess_blob_gas = _opt_uint(genesis, "excessblobgas", "excessBlobGas", 64)
    blob_gas_used = _opt_uint(genesis, "blobgasused", "blobGasUsed", 64)
    slot_number = _opt_uint(genesis, "slotnumber", "slotNumber", 64)
    return [
        base_fee,
        EMPTY_TRIE_ROOT if shanghai else None,
        (blob_gas_used or 0) if cancun else None,
        # geth keeps a pre-Cancun excessBlobGas ("allowing it for testing purposes")
        (excess_blob_gas or 0) if cancun else excess_blob_gas,
        ZERO_HASH if cancun else None,  # EIP-4788: genesis parent beacon root is zero
        EMPTY_REQUESTS_HASH if prague else None,
        EMPTY_BLOCK_ACCESS_LIST_HASH if amsterdam else None,
        (slot_number or 0) if amsterdam else None,
    ]


def _header_fields(genesis: Mapping[str, Any]) -> list[Any]:
    """All header fields geth's Genesis.toBlockWithRoot sets, ready for RLP."""
    fields = _fields(genesis, "genesis")
    if fields.get("config") is None:
        raise GenesisError("config: required (geth refuses a genesis without a chain configuration)")
    config = _fields(fields["config"], "config")
    for name in ("enableVerkleAtGenesis", "enableUBTAtGenesis"):
        if config.get(name.lower()):
            raise GenesisError(f"config.{name}: a verkle/binary-trie genesis state is not supported; remove it")
    for key, name in (("gaslimit", "gasLimit"), ("difficulty", "difficulty"), ("alloc", "alloc")):
        if fields.get(key) is None:
            raise GenesisError(f"{name}: required (geth refuses a genesis without it)")
    timestamp = _opt_uint(fields, "timestamp", "timestamp", 64) or 0
    number = _opt_uint(fields, "number", "number", 64) or 0
    gas_limit = _uint(fields["gaslimit"], "gasLimit", 64) or GETH_GENESIS_GAS_LIMIT
    header = [
        _opt_fixed(fields, "parenthash", "parentHash", 32),
        EMPTY_OMMERS_HASH,
        _opt_fixed(fields, "coinbase", "coinbase", ADDRESS_LENGTH),
        _state_root(fields["alloc"]),
        EMPTY_TRIE_ROOT,  # transactions
        EMPTY_TRIE_ROOT,  # receipts
        EMPTY_BLOOM,
        _uint(fields["difficulty"], "difficulty", 256),
        number,
        gas_limit,
        _opt_uint(fields, "gasused", "gasUsed", 64) or 0,
        timestamp,
        b"" if fields.get("extradata") is None else _hex_bytes(fields["extradata"], "extraData"),
        _opt_fixed(fields, "mixhash", "mixHash", 32),
        (_opt_uint(fields, "nonce", "nonce", 64) or 0).to_bytes(8, "big"),
    ]
    optional = _optional_header_fields(fields, config, timestamp, number)
    while optional and optional[-1] is None:
        optional.pop()
    return header + [b"" if value is None else value for value in optional]


def genesis_header_rlp(genesis: Mapping[str, Any]) -> bytes:
    """RLP of the genesis header geth builds for this genesis.json (hash preimage)."""
    return rlp.encode(_header_fields(genesis))


def genesis_block_hash(genesis: Mapping[str, Any]) -> str:
    """Genesis block hash exactly as geth's Genesis.ToBlock().Hash() computes it.

    Reproduces ToBlock (go-ethereum core/genesis.go), not geth's separate config sanity
    checks (fork order, blob schedule), so Besu-style files with sparse fork lists still
    hash. Amsterdam fields follow geth v1.17 (an unfinalised fork that may still change).
    """
    return "0x" + keccak(genesis_header_rlp(genesis)).hex()
