"""The ordered plan that changes a live chain's validator set, and the changes it refuses.

On a running QBFT, IBFT 2.0 or Clique chain the validator set is not in the files: it
changes when more than half of the current validators vote for a proposal
(`qbft_proposeValidatorVote`, `ibft_proposeValidatorVote`, geth's `clique_propose`; Besu
docs "Add and remove QBFT validators", geth docs "Clique"). Blocks keep coming only while
enough validators of the current set are online (block_quorum): ceil(2n/3) for QBFT and
IBFT 2.0, which tolerate f = floor((n-1)/3) faulty validators, or more than half of the
signers for Clique (a signer may seal one block in every floor(n/2)+1).

So the plan is ordered: removal votes first, one proposal at a time, while every pod still
runs; then the commit (new pods start, removed pods stop); then, once the new pods have
synced, addition votes one at a time. Each step names the set it is voted in, the votes it
needs and which validators cast them. Pure: no I/O, the same inputs give the same plan.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

BFT = ("qbft", "ibft2")
VOTE_METHODS = {"qbft": "qbft_proposeValidatorVote", "ibft2": "ibft_proposeValidatorVote", "clique": "clique_propose"}
# The call that shows the current set, to check each step before the next one.
SET_METHODS = {"qbft": "qbft_getValidatorsByBlockNumber", "ibft2": "ibft_getValidatorsByBlockNumber", "clique": "clique_getSigners"}


@dataclass(frozen=True, order=True)
class Validator:
    name: str
    address: str


def fault_tolerance(consensus: str, size: int) -> int:
    """Validators that may be offline while blocks keep coming."""
    if size <= 0:
        return 0
    return (size - 1) // 3 if consensus in BFT else (size - 1) // 2


def block_quorum(consensus: str, size: int) -> int:
    """Online validators of a set of `size` needed to keep producing blocks: ceil(2n/3) for
    QBFT and IBFT 2.0 (Besu's BftHelpers.calculateRequiredValidatorQuorum), more than half
    of the signers for Clique."""
    return -(-2 * size // 3) if consensus in BFT else size // 2 + 1


def votes_needed(size: int) -> int:
    """A proposal passes with votes from more than half of the current set."""
    return size // 2 + 1


@dataclass(frozen=True)
class VoteStep:
    """One proposal, voted by `voters` (`needed` of them) in the set `before`."""

    add: bool
    target: Validator
    before: tuple[Validator, ...]
    voters: tuple[Validator, ...]
    quorum: int  # online validators the set needs, once the proposal passed, to keep producing blocks

    @property
    def needed(self) -> int:
        return len(self.voters)

    @property
    def after(self) -> tuple[Validator, ...]:
        members = set(self.before) | {self.target} if self.add else set(self.before) - {self.target}
        return tuple(sorted(members, key=_natural))

    def call(self, method: str) -> str:
        return f'{method}("{self.target.address}", {"true" if self.add else "false"})'

    def payload(self, method: str) -> str:
        """The JSON-RPC request body of :meth:`call`."""
        body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": [self.target.address, self.add]}
        return json.dumps(body, separators=(",", ":"))


@dataclass(frozen=True)
class ValidatorPlan:
    consensus: str
    by_contract: bool  # validator selection by contract: votes are transactions to it
    before: tuple[Validator, ...]
    after: tuple[Validator, ...]
    removals: tuple[VoteStep, ...]  # before the commit is applied
    additions: tuple[VoteStep, ...]  # after the commit is applied and the new pods have synced
    problems: tuple[str, ...]  # why the network cannot carry this change out in one step
    route: tuple[int, ...]  # validator counts of changes that would work, one after another

    @property
    def method(self) -> str:
        return VOTE_METHODS[self.consensus]

    @property
    def set_method(self) -> str:
        return SET_METHODS[self.consensus]

    @property
    def steps(self) -> tuple[VoteStep, ...]:
        return self.removals + self.additions

    @property
    def safe(self) -> bool:
        return not self.problems


def _natural(validator: Validator) -> tuple[str, int, str]:
    """validator-2 before validator-10."""
    stem, _, number = validator.name.rpartition("-")
    return (stem, int(number), validator.address) if number.isdigit() else (validator.name, -1, validator.address)


def _pick_voters(members: Iterable[Validator], target: Validator, add: bool, leaving: set[Validator]) -> tuple[Validator, ...]:
    """The first validators (by name) that must vote: those that stay before those that
    leave, the target itself last (a validator may vote itself out)."""
    members = sorted(members)
    need = votes_needed(len(members))
    ranked = sorted(members, key=lambda v: (v == target, v in leaving, _natural(v)))
    return tuple(sorted(ranked[:need], key=_natural))


def plan_change(consensus: str, before: Iterable[Validator], after: Iterable[Validator], by_contract: bool = False) -> ValidatorPlan | None:
    """The plan from the live set `before` to `after`; None when nothing changes or the
    consensus has no validator votes (ethash)."""
    if consensus not in VOTE_METHODS:
        return None
    old, new = tuple(sorted(set(before), key=_natural)), tuple(sorted(set(after), key=_natural))
    if old == new:
        return None
    leaving = sorted(set(old) - set(new), key=_natural)
    joining = sorted(set(new) - set(old), key=_natural)
    members = set(old)
    removals, additions = [], []
    for target in leaving:
        voters = _pick_voters(members, target, False, set(leaving))
        step = VoteStep(False, target, tuple(sorted(members, key=_natural)), voters, block_quorum(consensus, len(members) - 1))
        removals.append(step)
        members.discard(target)
    for target in joining:
        voters = _pick_voters(members, target, True, set())
        step = VoteStep(True, target, tuple(sorted(members, key=_natural)), voters, block_quorum(consensus, len(members) + 1))
        additions.append(step)
        members.add(target)
    problems, route = _problems(consensus, len(old), len(new))
    return ValidatorPlan(consensus, by_contract, old, new, tuple(removals), tuple(additions), problems, route)


def _problems(consensus: str, size_before: int, size_after: int) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """A change may lower the set's fault tolerance by one step at most: while it is carried
    out, the validators that leave or have not synced yet are the ones the set must be able
    to lose. Larger reductions go in several changes; `route` lists one that works."""
    if size_after < 1:
        return ("no validator would remain",), ()
    f_before, f_after = fault_tolerance(consensus, size_before), fault_tolerance(consensus, size_after)
    if consensus not in BFT or f_after >= f_before - 1:
        return (), (size_after,)
    route, size = [], size_before
    while fault_tolerance(consensus, size) - 1 > f_after:
        floor = fault_tolerance(consensus, size) - 1
        size = min(n for n in range(size_after, size) if fault_tolerance(consensus, n) >= floor)
        route.append(size)
    route.append(size_after)
    problem = (
        f"{size_before} -> {size_after} validators lowers the fault tolerance from {f_before} to {f_after} in one change "
        f"(at most one step at a time: the validators leaving must be ones the set can lose)"
    )
    return (problem,), tuple(route)


def describe_step(plan: ValidatorPlan, step: VoteStep) -> str:
    """One vote step in plain text (commit messages, refusals)."""
    verb = "add" if step.add else "remove"
    if plan.by_contract:
        return f"{verb} {step.target.name} ({step.target.address}) with a transaction to the validator contract"
    return (
        f"{step.call(plan.method)} on {step.needed} of the {len(step.before)} validators "
        f"({', '.join(v.name for v in step.voters)}); then {step.quorum} of {len(step.after)} must stay online"
    )
