"""The printed vote plan, run against a simulated validator set.

The simulator is written here from the consensus rules, not from validator_plan.py: a
proposal passes when validators of the current set, all online, cast votes for it and they
are more than half of the set (Besu's QBFT/IBFT 2.0 vote tally, geth's Clique snapshot);
blocks keep coming while ceil(2n/3) (BFT) or more than half (Clique) of the current set is
online. Pods: every old validator runs until the commit is applied; then the removed ones
stop and the added ones run (and have synced before their votes). The plan is read back
from the Markdown summary a reviewer sees, not from the plan object.
"""

from __future__ import annotations

import math
import re

import pytest

from pipelines.lib import review
from pipelines.lib.validator_plan import Validator, plan_change


def vset(count: int, start: int = 0) -> list[Validator]:
    return [Validator(f"validator-{i}", "0x" + f"{i + 1:040x}") for i in range(start, start + count)]


def quorum(consensus: str, size: int) -> int:
    return math.ceil(2 * size / 3) if consensus in ("qbft", "ibft2") else size // 2 + 1


STEP = re.compile(
    r"^(\d+)\. (?:Before this change is applied, remove|Add) `(?P<target>[^`]+)` \(`(?P<address>0x[0-9a-f]{40})`\): "
    r"(?P<needed>\d+) of the (?P<size>\d+) validators vote: `\w+\(\"0x[0-9a-f]{40}\", (?P<add>true|false)\)` on (?P<voters>[^.]+)\.",
    re.M,
)
APPLY = re.compile(r"^(\d+)\. Apply this change", re.M)


def printed_plan(consensus: str, before: list[Validator], after: list[Validator]) -> tuple[list[dict], int]:
    """(steps in printed order, position of the 'apply' step) from the Markdown summary."""
    plan = plan_change(consensus, before, after)
    summary = review.ReviewSummary(
        environment="e", kind="update", consensus=consensus, namespace="ns", genesis_before="0x1", genesis_after="0x1",
        genesis_file_changed=False, genesis_fields=(), objects=(), files=(), images=(), replicas=(), nodes_added=(),
        nodes_removed=(), validators_added=(review.NodeRef("x", "validator", "0x0"),), validators_removed=(), plan=plan,
        keys_rotated=(), plaintext_secrets=(),
    )
    text = review.render_summary(summary)
    steps = [
        {"n": int(m[1]), "target": m["target"], "add": m["add"] == "true", "needed": int(m["needed"]),
         "size": int(m["size"]), "voters": [v.strip() for v in m["voters"].split(",")]}
        for m in STEP.finditer(text)
    ]
    apply_at = int(APPLY.search(text)[1])
    assert [s["n"] for s in steps] == [n for n in range(1, len(steps) + 2) if n != apply_at], text
    return steps, apply_at


def simulate(consensus: str, before: list[Validator], after: list[Validator], steps: list[dict], apply_at: int) -> list[str]:
    """Problems found running the steps in order; [] when the plan reaches `after` with quorum throughout."""
    names_before, names_after = {v.name for v in before}, {v.name for v in after}
    current = set(names_before)
    running = set(names_before)
    problems = []

    def live(where: str) -> None:
        if len(current & running) < quorum(consensus, len(current)):
            problems.append(f"{where}: {len(current & running)} of {len(current)} validators online, no quorum")

    order = sorted([*steps, {"n": apply_at, "apply": True}], key=lambda s: s["n"])
    for step in order:
        if step.get("apply"):
            running = (running - (names_before - names_after)) | (names_after - names_before)
            live("after the commit")
            continue
        voters = set(step["voters"])
        if not voters <= current or not voters <= running:
            problems.append(f"step {step['n']}: voters {sorted(voters - (current & running))} are not online validators")
            continue
        if step["size"] != len(current) or 2 * len(voters) <= len(current):
            problems.append(f"step {step['n']}: {len(voters)} votes do not pass in a set of {len(current)}")
            continue
        (current.add if step["add"] else current.discard)(step["target"])
        live(f"step {step['n']}")
    if current != names_after:
        problems.append(f"ends with {sorted(current)}, not {sorted(names_after)}")
    return problems


CHANGES = {
    "add one": (4, vset(4), vset(5)),
    "remove one": (4, vset(4), vset(3)),
    "four to one": (4, vset(4), vset(1)),
    "one to four": (1, vset(1), vset(4)),
    "replace one": (4, vset(4), vset(3) + vset(1, start=7)),
    "two to three": (2, vset(2), vset(3)),
    "five to three": (5, vset(5), vset(3)),
}


@pytest.mark.parametrize("consensus", ["qbft", "ibft2", "clique"])
@pytest.mark.parametrize("change", sorted(CHANGES))
def test_the_printed_plan_reaches_the_new_set_with_quorum_at_every_step(consensus, change):
    _, before, after = CHANGES[change]
    steps, apply_at = printed_plan(consensus, before, after)
    assert len(steps) == len(set(before) ^ set(after))
    assert simulate(consensus, before, after, steps, apply_at) == []


@pytest.mark.parametrize("change", ["four to one", "five to three"])
def test_publishing_removals_before_their_votes_loses_quorum(change):
    """What review: direct did before: the commit first (pods stop), the removal votes after.
    (Removing one of four survives that order: one stopped validator is within f = 1.)"""
    _, before, after = CHANGES[change]
    steps, _ = printed_plan("qbft", before, after)
    problems = simulate("qbft", before, after, steps, apply_at=0)
    assert any("no quorum" in p or "not online" in p for p in problems), problems


def test_the_old_plan_of_one_vote_round_on_the_old_set_cannot_pass_four_to_one():
    """Before: every removal voted by 'at least 3 of the 4 current validators'."""
    before, after = vset(4), vset(1)
    naive = [{"n": i + 1, "target": v.name, "add": False, "needed": 3, "size": 4, "voters": ["validator-0", "validator-1", "validator-2"]}
             for i, v in enumerate(reversed(before[1:]))]
    assert simulate("qbft", before, after, naive, apply_at=4)


@pytest.mark.parametrize(
    ("size_before", "size_after", "route"),
    [(7, 1, (4, 1)), (10, 1, (7, 4, 1)), (10, 4, (7, 4)), (7, 3, (4, 3))],
)
def test_more_than_one_fault_tolerance_step_is_refused_with_a_route_that_works(size_before, size_after, route):
    plan = plan_change("qbft", vset(size_before), vset(size_after))
    assert not plan.safe and plan.route == route
    sizes = (size_before, *route)
    for a, b in zip(sizes, sizes[1:]):
        hop = plan_change("qbft", vset(a), vset(b))
        assert hop.safe, (a, b)
        steps, apply_at = printed_plan("qbft", vset(a), vset(b))
        assert simulate("qbft", vset(a), vset(b), steps, apply_at) == []


@pytest.mark.parametrize(("size_before", "size_after"), [(4, 1), (5, 4), (4, 7), (1, 10), (7, 4)])
def test_one_step_at_a_time_is_accepted(size_before, size_after):
    assert plan_change("qbft", vset(size_before), vset(size_after)).safe


def test_clique_has_no_bft_step_rule_and_ethash_has_no_votes():
    assert plan_change("clique", vset(7), vset(1)).safe
    assert plan_change("ethash", vset(4), vset(1)) is None
