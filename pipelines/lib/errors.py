"""The refusals every front end maps to exit code 1 (a guard, not a usage error).

A `GuardError` means chainops looked at the published state and the request and
decided that going on could replace a live network's identity (keys, genesis) or
another environment's files. Its message names the environment, what is
inconsistent and how to repair it. Nothing has been written when it is raised.
"""

from __future__ import annotations


class GuardError(RuntimeError):
    """A run would do something dangerous (change a locked genesis, lose a key)."""


class RemoteRewoundError(GuardError):
    """The GitOps branch no longer contains the tip chainops last published or saw."""


class UsageError(Exception):
    """A request that names something that does not exist or cannot be meant (exit 2)."""
