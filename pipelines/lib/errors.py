"""One error tree for every front end: what went wrong, and the exit code it means.

- `InputProblem` (exit 1): the environment file, its values or the requested change is
  wrong, or a guard refused it (`GuardError`): going on could replace a live network's
  identity. The message names the file, the field and the rule, or the environment and
  the repair. Nothing has been written when it is raised.
- `OperationalFailure` (exit 2): the machine or a service failed (git, a forge, sops,
  kubectl, the file system) or the request names something that does not exist
  (`UsageError`). Nothing was published by the failed step.

Each module keeps its own class (GitopsError, SealingError, ...) as a subclass of one of
these, so a caller can be as precise as it needs; the CLI maps `exit_code`, the Dagster
assets turn any `ChainopsError` into a `dg.Failure`.
"""

from __future__ import annotations


class ChainopsError(Exception):
    """Everything chainops raises on purpose; `exit_code` is what the CLI returns."""

    exit_code = 2


class InputProblem(ChainopsError, ValueError):
    """Bad input or a refused change (exit 1)."""

    exit_code = 1


class OperationalFailure(ChainopsError, RuntimeError):
    """An environment or service failure, or a usage error (exit 2)."""

    exit_code = 2


class GuardError(InputProblem):
    """A run would do something dangerous (change a locked genesis, lose a key)."""


class RemoteRewoundError(GuardError):
    """The GitOps branch no longer contains the tip chainops last published or saw."""


class UsageError(OperationalFailure):
    """A request that names something that does not exist or cannot be meant (exit 2)."""


class ManifestError(OperationalFailure, ValueError):
    """A manifest cannot be rendered, named, loaded or built."""
