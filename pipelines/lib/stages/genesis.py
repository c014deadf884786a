"""Genesis stage: the genesis document and block hash, the lock that pins them, and the
guards on a published chain (genesis lock, validator vote plan).

The genesis algorithm itself (extraData, the block hash, sources cited) is the pure
pipelines.lib.genesis; the vote planning is pipelines.lib.validator_plan.
"""


from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from eth_utils import to_checksum_address

from pipelines.lib import chain_rpc
from pipelines.lib import genesis as genesis_lib
from pipelines.lib.config import EnvironmentConfig, parse_balance, shown_url
from pipelines.lib.errors import GuardError
from pipelines.lib.keys import (
    KeySet,
)
from pipelines.lib.layout import (
    GENESIS_FILE,
    env_dir,
)
from pipelines.lib.lock import LockedAccount, LockedNode, LockedTransition, NetworkLock
from pipelines.lib.model import Decisions, ExistingEnvironment, GenesisResult
from pipelines.lib.peers import lock_enode
from pipelines.lib.stages.validate import check_genesis_size
from pipelines.lib.validator_plan import Validator, ValidatorPlan, describe_step, plan_change


def genesis_validators(config: EnvironmentConfig, keys: KeySet, lock: NetworkLock | None, reset: bool) -> tuple[str, ...]:
    """The genesis validator set: locked once committed, so validator changes never touch genesis."""
    if config.spec.network.consensus == "ethash":
        return ()
    if lock is not None and not reset:
        return tuple(lock.validators)
    return tuple(n.address for n in keys.validators)


# A new transition must be more than this many blocks ahead of the head an RPC node reports.
TRANSITION_SAFETY_BLOCKS = 10


def locked_transitions(config: EnvironmentConfig) -> list[dict[str, Any]]:
    """The environment's transitions as the lock records them: its own field names, set fields
    only, addresses EIP-55 (so a change of letter case is no change)."""
    found = []
    for transition in config.spec.network.transitions:
        entry: dict[str, Any] = {"block": transition.block}
        if transition.blockPeriodSeconds is not None:
            entry["blockPeriodSeconds"] = transition.blockPeriodSeconds
        if transition.validatorSelection is not None and transition.validatorContractAddress is not None:
            entry["validatorSelection"] = transition.validatorSelection
            entry["validatorContractAddress"] = to_checksum_address(transition.validatorContractAddress)
        found.append(entry)
    return found


def recorded_transitions(lock: NetworkLock | None) -> list[dict[str, Any]]:
    """The lock's transitions as it records them (the fields they were written with), in the
    form of locked_transitions, so the two compare field by field."""
    return [t.document() for t in lock.transitions] if lock is not None else []


def _spec_transitions(entries: list[dict[str, Any]]) -> tuple[genesis_lib.Transition, ...]:
    return tuple(
        genesis_lib.Transition(e["block"], e.get("blockPeriodSeconds"), e.get("validatorContractAddress"))
        for e in sorted(entries, key=lambda e: e["block"])
    )


def transition_changes(locked: list[dict[str, Any]], wanted: list[dict[str, Any]]) -> tuple[list[int], list[int]]:
    """(blocks of transitions added, blocks of locked transitions changed or removed)."""
    before = {e["block"]: e for e in locked}
    after = {e["block"]: e for e in wanted}
    added = sorted(set(after) - set(before))
    altered = sorted(b for b in before if after.get(b) != before[b])
    return added, altered


def genesis_spec(config: EnvironmentConfig, keys: KeySet, validators: tuple[str, ...]) -> genesis_lib.GenesisSpec:
    network = config.spec.network
    generated = {a.name: a.address for a in keys.accounts}
    alloc = tuple(
        (account.address or generated[account.name or ""], account.balance_wei) for account in config.spec.accounts
    )
    selector = (network.validatorContractAddress or "").lower()
    contracts = []
    for contract in config.spec.contracts:
        storage = dict(contract.storage_words())
        if contract.address.lower() == selector:
            # The validator contract's first state variable is `address[] validators`.
            ordered = genesis_lib.canonical_validator_order(validators)
            for slot, value in genesis_lib.address_array_storage(ordered).items():
                if storage.get(slot, value) != value:
                    raise GuardError(
                        f"{config.source_path}: contracts: storage slot {slot} of the validator contract is "
                        "computed by chainops (validators array at slot 0); remove it from the file"
                    )
                storage[slot] = value
        contracts.append(
            genesis_lib.ContractAlloc(contract.address, contract.code, tuple(sorted(storage.items())), parse_balance(contract.balance))
        )
    return genesis_lib.GenesisSpec(
        client=network.client,
        consensus=network.consensus,
        chain_id=network.chainId,
        block_period_seconds=network.blockPeriodSeconds,
        gas_limit=network.gasLimit,
        timestamp=network.genesisTimestamp,
        validators=validators,
        alloc=alloc,
        contracts=tuple(contracts),
        zero_base_fee=network.zeroBaseFee,
        contract_size_limit=network.contractSizeLimit,
        validator_contract=network.validatorContractAddress,
        transitions=_spec_transitions(locked_transitions(config)),
    )


def validator_plan_for(config: EnvironmentConfig, keys: KeySet, lock: NetworkLock | None, reset: bool) -> ValidatorPlan | None:
    """The votes that take the live validator set (the lock's validator nodes) to the
    validator nodes of this compile. A first compile or a genesis reset puts the set into
    genesis instead: no plan."""
    if lock is None or reset:
        return None
    before = [Validator(n.name, n.address) for n in lock.validator_nodes()]
    after = [Validator(n.name, n.address) for n in keys.validators]
    network = config.spec.network
    return plan_change(network.consensus, before, after, by_contract=network.validatorSelection == "contract")


def check_validator_plan(config: EnvironmentConfig, plan: ValidatorPlan | None, decisions: Decisions) -> None:
    """Refuse validator changes the network cannot carry out as published: one that lowers
    the fault tolerance by more than a step, or (review: direct, which applies the commit
    at once) removals whose votes have not been confirmed as passed."""
    if plan is None:
        return
    where = f"{config.source_path}: nodes.validators"
    if plan.problems and not decisions.allow_unsafe_validator_change:
        route = " -> ".join(str(n) for n in (len(plan.before), *plan.route))
        raise GuardError(
            f"{where}: {'; '.join(plan.problems)}. Change it in steps ({route} validators), one change per step, "
            f"each after the previous one's votes have passed; or re-run with --allow-unsafe-validator-change {config.name}"
        )
    if plan.removals and config.spec.gitops.review == "direct" and not decisions.validators_voted:
        steps = "; ".join(f"{i}. {describe_step(plan, step)}" for i, step in enumerate(plan.removals, 1))
        raise GuardError(
            f"{where}: removing {', '.join(s.target.name for s in plan.removals)} from the live chain: review: direct "
            f"publishes at once and stops their pods, so vote them out first, one at a time, checking "
            f"{plan.set_method}(\"latest\") after each: {steps}. Nothing was written. Then re-run with "
            f"--validators-voted {config.name}"
        )


def compute_genesis(
    config: EnvironmentConfig, keys: KeySet, existing: ExistingEnvironment | None = None, allow_change: bool = False
) -> GenesisResult:
    """The genesis for the environment; for a locked environment, the locked validator set.

    Transitions only added to the locked ones (block hash unchanged: `config` is not in the
    header) keep the genesis locked: the lock's genesis.json sha256 is then compared with
    the genesis built from the locked transitions. A changed or removed locked transition
    is a genesis change (nodes past its block would fork)."""
    lock = existing.lock if existing else None
    validators = genesis_validators(config, keys, lock, reset=allow_change)
    spec = genesis_spec(config, keys, validators)
    document = genesis_lib.build_genesis(spec)
    json_bytes = genesis_lib.genesis_json_bytes(document)
    check_genesis_size(config, json_bytes)
    block_hash = genesis_lib.genesis_block_hash(document)
    ordered = tuple(genesis_lib.canonical_validator_order(validators)) if validators else ()
    locked_hash = lock.genesisHash if lock is not None else None
    previous_doc = _previous_genesis(existing)
    chain_changes = _locked_chain_changes(config, lock)
    transitions = locked_transitions(config)
    recorded = recorded_transitions(lock)
    added, altered = transition_changes(recorded, transitions)
    compared = document  # what must equal the committed genesis for it to stay locked
    if lock is not None and added and not altered:
        compared = genesis_lib.build_genesis(dataclasses.replace(spec, transitions=_spec_transitions(recorded)))
    compared_sha256 = hashlib.sha256(genesis_lib.genesis_json_bytes(compared)).hexdigest()
    changed = lock is not None and (
        locked_hash != block_hash
        or (lock.genesisFileSha256 is not None and lock.genesisFileSha256 != compared_sha256)  # None: not locked
        or (previous_doc is not None and previous_doc != compared)
        or bool(chain_changes)
    )
    chain_goes_on = lock is not None and locked_hash == block_hash and not chain_changes
    return GenesisResult(
        document=document,
        json_bytes=json_bytes,
        block_hash=block_hash,
        validators=ordered,
        validator_plan=validator_plan_for(config, keys, lock, reset=allow_change),
        previous_hash=locked_hash if changed else None,
        differences=tuple(dict.fromkeys(chain_changes + genesis_differences(previous_doc, document))) if changed else (),
        transitions=tuple(transitions),
        unconfirmed_transitions=tuple(sorted(set(added) | set(altered))) if chain_goes_on else (),
    )


def _locked_chain_changes(config: EnvironmentConfig, lock: NetworkLock | None) -> list[str]:
    """What the environment file changes in the chain the lock records. chainId, networkId
    and the consensus are not all in the block hash, and genesis.json may be gone, so the
    lock's own fields are compared too."""
    if lock is None:
        return []
    network = config.spec.network
    pairs = {
        "chainId": (lock.chainId, network.chainId),
        "networkId": (lock.networkId, network.effective_network_id),
        "client": (lock.client, network.client),
        "consensus": (lock.consensus, network.consensus),
    }
    return [f"{key}: {locked!r} -> {wanted!r}" for key, (locked, wanted) in pairs.items() if locked != wanted]


def _previous_genesis(existing: ExistingEnvironment | None) -> dict | None:
    data = existing.files.get(env_dir(existing.name) + GENESIS_FILE) if existing else None
    return json.loads(data) if data else None


def genesis_differences(old: dict | None, new: dict) -> list[str]:
    """What changed between two genesis documents, in words a reviewer can check."""
    if old is None:
        return []
    found: list[str] = []
    for key in sorted(set(old) | set(new)):
        before, after = old.get(key), new.get(key)
        if before == after:
            continue
        if key == "config" and isinstance(before, dict) and isinstance(after, dict):
            found += [
                f"config.{k}: {before.get(k)!r} -> {after.get(k)!r}"
                for k in sorted(set(before) | set(after))
                if before.get(k) != after.get(k) and k != "transitions"
            ]
            found += _transition_differences(old, new)
        elif key == "alloc" and isinstance(before, dict) and isinstance(after, dict):
            for address in sorted(set(before) | set(after)):
                if address not in before:
                    found.append(f"alloc: {address} added")
                elif address not in after:
                    found.append(f"alloc: {address} removed")
                elif before[address] != after[address]:
                    found.append(f"alloc: {address} changed")
        elif key == "extraData":
            found.append("extraData: the genesis validator set changed")
        else:
            found.append(f"{key}: {before!r} -> {after!r}")
    return found


def _transition_differences(old: dict, new: dict) -> list[str]:
    before, after = genesis_lib.transitions_by_block(old), genesis_lib.transitions_by_block(new)
    found = []
    for block in sorted(set(before) | set(after)):
        if block not in before:
            found.append(f"config.transitions: block {block} added")
        elif block not in after:
            found.append(f"config.transitions: block {block} removed (a node past it would fork)")
        elif before[block] != after[block]:
            keys = sorted(k for k in set(before[block]) | set(after[block]) if before[block].get(k) != after[block].get(k))
            what = ", ".join(f"{k} {before[block].get(k)!r} -> {after[block].get(k)!r}" for k in keys)
            found.append(f"config.transitions: block {block} changed ({what}; a node past it would fork)")
    return found


def check_transitions(config: EnvironmentConfig, genesis: GenesisResult, decisions: Decisions) -> None:
    """A new (or changed) transition is published only when its block is still ahead of the
    chain: the operator says so (--confirm-transitions ENV), or the node at network.rpcUrl
    shows a head more than TRANSITION_SAFETY_BLOCKS below it. A node the URL reaches that
    shows a later head refuses it even when confirmed; an unreachable one needs the flag."""
    blocks = genesis.unconfirmed_transitions
    if not blocks:
        return
    network = config.spec.network
    named = ("block " if len(blocks) == 1 else "blocks ") + ", ".join(str(b) for b in blocks)
    transition = "transition" if len(blocks) == 1 else "transitions"
    flag = f"--confirm-transitions {config.name}"
    where = f"{config.source_path}: network.transitions"
    if network.rpcUrl is None:
        if decisions.transition_confirmed:
            return
        raise GuardError(
            f"{where}: the {transition} at {named} take{'s' if len(blocks) == 1 else ''} effect on the live chain only if "
            "every node runs the new genesis before that block, and a block the chain has passed forks it; chainops "
            "cannot see the chain head "
            f"(no network.rpcUrl). Nothing was written. Check the head (eth_blockNumber on any node), then re-run with "
            f"{flag}, or set network.rpcUrl to a node of the chain"
        )
    endpoint = shown_url(network.rpcUrl)
    try:
        state = chain_rpc.chain_state(network.rpcUrl)
    except chain_rpc.ChainRpcError as exc:
        if decisions.transition_confirmed:
            return  # the operator confirmed the blocks; the node could not be asked
        raise chain_rpc.ChainRpcError(
            f"{config.source_path}: network.rpcUrl: {exc}; the head is needed to check the {transition} at {named}. "
            f"Nothing was written. Fix network.rpcUrl, or check the head yourself and re-run with {flag}"
        ) from None
    if state.chain_id != network.chainId:
        raise GuardError(
            f"{config.source_path}: network.rpcUrl: {endpoint} follows chain {state.chain_id}, not {network.chainId}: "
            "its head says nothing about this network. Nothing was written. Point network.rpcUrl at a node of this chain"
        )
    limit = state.head + TRANSITION_SAFETY_BLOCKS
    late = [b for b in blocks if b <= limit]
    if late:
        raise GuardError(
            f"{where}: block {', '.join(map(str, late))} {'is' if len(late) == 1 else 'are'} at or below the chain head {state.head} of {endpoint} "
            f"+ {TRANSITION_SAFETY_BLOCKS} blocks (safety margin): the chain reaches it before every node can restart "
            f"with the new genesis, and a transition at a block the chain has passed forks it. Nothing was written. "
            f"Pick a block above {limit}, leaving time for a rolling restart of every node"
        )
    for transition in network.transitions:
        address = transition.validatorContractAddress
        if transition.block in blocks and address is not None:
            try:
                code = chain_rpc.code_at(network.rpcUrl, address)
            except chain_rpc.ChainRpcError as exc:
                raise chain_rpc.ChainRpcError(f"{config.source_path}: network.rpcUrl: {exc}. Nothing was written") from None
            if not code:
                raise GuardError(
                    f"{where}: block {transition.block}: {endpoint} has no contract at {address} (eth_getCode is empty): "
                    "from that block on the validators would come from nowhere and the chain would halt. Nothing was "
                    "written. Deploy the validator contract first (it must return the current validators), then "
                    "add the transition"
                )


def check_genesis_lock(
    config: EnvironmentConfig, lock: NetworkLock | None, genesis: GenesisResult, allow_change: bool
) -> None:
    """A committed genesis never changes by accident: that would fork or reset a live chain."""
    if lock is None or not genesis.changed or allow_change:
        return
    what = "; ".join(genesis.differences) or "see genesis.json"
    if lock.genesisHash == genesis.block_hash:
        hashes = f"block hash unchanged ({genesis.block_hash}) but the chain it describes is not"
    else:
        hashes = f"block hash {lock.genesisHash} -> {genesis.block_hash}"
    raise GuardError(
        f"{config.source_path}: the committed genesis would change ({what}): {hashes}; genesis.json sha256 "
        f"{lock.genesisFileSha256 or '(not locked)'} -> {genesis.file_sha256}. This resets the chain: nodes "
        f"with the old genesis will not follow the new one. Re-run with --allow-genesis-change {config.name} "
        "if that is intended"
    )


def build_lock(config: EnvironmentConfig, keys: KeySet, genesis: GenesisResult) -> NetworkLock:
    """The public identity of the environment (its committed form: canonical_json(lock.document())).
    A node's enode names its advertised address when kubernetes.p2pExposure publishes it
    (peers.lock_enode): exposure changes enodes, never keys or genesis."""
    network = config.spec.network
    return NetworkLock(
        environment=config.name,
        chainId=network.chainId,
        networkId=network.effective_network_id,
        client=network.client,
        consensus=network.consensus,
        genesisHash=genesis.block_hash,
        genesisFileSha256=genesis.file_sha256,
        validators=list(genesis.validators),
        nodes=[
            LockedNode(name=n.name, role=n.role, address=n.address, enode=lock_enode(config, n), secret=n.secret_name)
            for n in keys.nodes
        ],
        accounts=[LockedAccount(name=a.name, address=a.address, secret=a.secret_name) for a in keys.accounts],
        # Only when there are any: a lock without the field reads as none (locks written before
        # transitions existed), so environments without transitions keep their lock bytes.
        **({"transitions": [LockedTransition(**t) for t in genesis.transitions]} if genesis.transitions else {}),
    )
