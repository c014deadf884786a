"""Genesis specs for tests and the independent reference: py-evm computes the genesis
block hash from the same document (a second route to genesis.py's hash)."""

from __future__ import annotations

from typing import Any

from eth.db.account import AccountDB
from eth.db.atomic import AtomicDB
from eth.rlp.headers import BlockHeader as FrontierBlockHeader
from eth.vm.forks.cancun.blocks import CancunBlockHeader
from eth.vm.forks.london.blocks import LondonBlockHeader
from eth.vm.forks.prague.blocks import PragueBlockHeader
from eth.vm.forks.shanghai.blocks import ShanghaiBlockHeader

from pipelines.lib.genesis import (
    GenesisSpec,
)

VALIDATORS = (
    "0xfe3b557e8fb62b89f4916b721be55ceb828dbd73",
    "0x627306090ABAB3A6E1400E9345BC60C78A8BEF57",
    "0x8ba1f109551bD432803012645Ac136ddd64DBA72",
    "0x0000000000000000000000000000000000000abc",
)
SORTED_VALIDATORS = sorted(bytes.fromhex(v[2:]) for v in VALIDATORS)
ALLOC = (
    ("0x8ba1f109551bD432803012645Ac136ddd64DBA72", 500 * 10**18),
    ("0xf17f52151EbEF6C7334FAD080c5704D77216b732", 1_000_000 * 10**18),
    ("0x00000000000000000000000000000000000000ff", 0),  # empty account: geth keeps it
)
PROFILES = [("besu", "qbft"), ("besu", "ibft2"), ("geth", "clique"), ("geth", "ethash")]


def make_spec(client: str = "besu", consensus: str = "qbft", **overrides: Any) -> GenesisSpec:
    fields: dict[str, Any] = dict(
        client=client,
        consensus=consensus,
        chain_id=48720,
        block_period_seconds=2,
        gas_limit=30_000_000,
        timestamp=1_700_000_000,
        validators=VALIDATORS,
        alloc=ALLOC,
    )
    fields.update(overrides)
    return GenesisSpec(**fields)


def num(value: Any) -> int:
    """Deliberately naive number reader for well-formed test documents."""
    if isinstance(value, int):
        return value
    if value == "":
        return 0
    return int(value, 16) if value.lower().startswith("0x") else int(value)


def hexbytes(value: str | None) -> bytes:
    if not value:
        return b""
    return bytes.fromhex(value[2:] if value.startswith("0x") else value)


def lower_keys(obj: dict[str, Any]) -> dict[str, Any]:
    return {k.lower(): v for k, v in obj.items()}


def pyevm_state_root(alloc: dict[str, Any]) -> bytes:
    """State root computed by py-evm's AccountDB (its own account/storage handling)."""
    db = AccountDB(AtomicDB())
    for address_text, account in alloc.items():
        address = hexbytes(address_text)
        account = lower_keys(account)
        db.set_balance(address, num(account["balance"]))
        db.set_nonce(address, num(account.get("nonce", 0)))
        db.set_code(address, hexbytes(account.get("code")))
        for slot, value in account.get("storage", {}).items():
            db.set_storage(address, num(slot if slot.startswith("0x") else "0x" + slot), num(value))
    return db.make_state_root()


def pyevm_genesis_hash(genesis: dict[str, Any]) -> str:
    """Genesis hash through py-evm's header classes, picked by the forks active at genesis."""
    g = lower_keys(genesis)
    config = lower_keys(g["config"])
    timestamp = num(g.get("timestamp", 0))

    def time_fork(key: str) -> bool:
        return config.get(key) is not None and num(config[key]) <= timestamp

    london = config.get("londonblock") is not None and num(config["londonblock"]) == 0
    params: dict[str, Any] = dict(
        difficulty=num(g["difficulty"]),
        block_number=num(g.get("number", 0)),
        gas_limit=num(g["gaslimit"]),
        timestamp=timestamp,
        coinbase=hexbytes(g.get("coinbase")) or b"\x00" * 20,
        parent_hash=hexbytes(g.get("parenthash")) or b"\x00" * 32,
        state_root=pyevm_state_root(g["alloc"]),
        gas_used=num(g.get("gasused", 0)),
        extra_data=hexbytes(g.get("extradata")),
        mix_hash=hexbytes(g.get("mixhash")) or b"\x00" * 32,
        nonce=num(g.get("nonce", 0)).to_bytes(8, "big"),
    )
    if not london:
        return "0x" + FrontierBlockHeader(**params).hash.hex()
    params["base_fee_per_gas"] = num(g.get("basefeepergas", 10**9))
    header_class: Any = LondonBlockHeader
    if time_fork("shanghaitime"):
        header_class = ShanghaiBlockHeader
    if time_fork("cancuntime"):
        header_class = CancunBlockHeader
        params["blob_gas_used"] = num(g.get("blobgasused", 0))
        params["excess_blob_gas"] = num(g.get("excessblobgas", 0))
    if time_fork("praguetime"):
        header_class = PragueBlockHeader  # requests_hash defaults to sha256(b"")
    return "0x" + header_class(**params).hash.hex()


# --- public networks -----------------------------------------------------------------

# Published genesis hashes (go-ethereum params/config.go: SepoliaGenesisHash,
# HoodiGenesisHash; GoerliGenesisHash in v1.13.15).
