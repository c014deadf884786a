"""What every Dagster domain shares: the asset defaults (partitions, group, owners), the run
tags that carry the operator's per-environment decisions, and the one wrapper that turns a
chainops error into the step's `dg.Failure` (its repair advice in run tags, not CLI flags).
"""

import re
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import dagster as dg

from pipelines.defs.partitions import environments_partitions
from pipelines.lib.errors import ChainopsError
from pipelines.lib.model import Decisions

# Partitioned asset checks are a Dagster preview feature chainops relies on knowingly: say it
# here once instead of printing the PreviewWarning for every check on every run.
warnings.filterwarnings("ignore", category=dg.PreviewWarning, message=".*partitions_def on an AssetCheckSpec.*")

OWNERS = ["team:platform"]
GROUP = "chainops"
ENVIRONMENT_TAG = "chainops/environment"
PROFILE_TAG = "chainops/profile"
ALLOW_GENESIS_CHANGE_TAG = "chainops/allow-genesis-change"
ACCEPT_REWIND_TAG = "chainops/accept-remote-rewind"
VALIDATORS_VOTED_TAG = "chainops/validators-voted"
ALLOW_UNSAFE_VALIDATOR_CHANGE_TAG = "chainops/allow-unsafe-validator-change"
CONFIRM_TRANSITIONS_TAG = "chainops/confirm-transitions"
# CLI flag -> the run tag that records the same per-environment decision in Dagster.
_FLAG_TAGS = {
    "--allow-genesis-change": ALLOW_GENESIS_CHANGE_TAG,
    "--validators-voted": VALIDATORS_VOTED_TAG,
    "--allow-unsafe-validator-change": ALLOW_UNSAFE_VALIDATOR_CHANGE_TAG,
    "--confirm-transitions": CONFIRM_TRANSITIONS_TAG,
}


ASSET_DEFAULTS = {
    "partitions_def": environments_partitions,
    "group_name": GROUP,
    "owners": OWNERS,
}


def genesis_change_allowed(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> bool:
    return context.run.tags.get(ALLOW_GENESIS_CHANGE_TAG) == "true"


def rewind_accepted(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> bool:
    return context.run.tags.get(ACCEPT_REWIND_TAG) == "true"


def decisions(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> Decisions:
    """The operator's decisions for this partition's run, from its run tags."""
    tags = context.run.tags
    return Decisions(
        allow_genesis_change=tags.get(ALLOW_GENESIS_CHANGE_TAG) == "true",
        validators_voted=tags.get(VALIDATORS_VOTED_TAG) == "true",
        allow_unsafe_validator_change=tags.get(ALLOW_UNSAFE_VALIDATOR_CHANGE_TAG) == "true",
        transition_confirmed=tags.get(CONFIRM_TRANSITIONS_TAG) == "true",
    )


def refusal(exc: Exception) -> dg.Failure:
    """A lib error as the step's failure, its repair advice in Dagster's terms (run tags, not CLI flags)."""
    text = str(exc)
    for flag, tag in _FLAG_TAGS.items():
        text = re.sub(rf"{flag} (?:[a-z0-9-]+|ENV)", f"the run tag {tag}=true", text)
    text = text.replace("--accept-remote-rewind", f"the run tag {ACCEPT_REWIND_TAG}=true")
    return dg.Failure(description=text)


def md_list(items: Iterable[str]) -> dg.MetadataValue:
    lines = [f"- {item}" for item in items]
    return dg.MetadataValue.md("\n".join(lines) or "none")


@contextmanager
def lib_failures() -> Iterator[None]:
    """The one wrapper around lib calls in an asset: any ChainopsError becomes the step's
    dg.Failure (one error tree; nothing else is caught, so a bug stays a bug)."""
    try:
        yield
    except ChainopsError as exc:
        raise refusal(exc) from None
