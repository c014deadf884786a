"""Child processes that die with chainops.

A compile runs worker processes (the compile pool) and short-lived tools (sops, kubectl).
If chainops itself is killed (SIGKILL from a CI runner's timeout, an OOM kill), nothing
would stop them: they would go on holding decrypted key material in memory and the home's
temp files. On Linux each child asks the kernel for SIGKILL when its parent dies
(prctl(2) PR_SET_PDEATHSIG); elsewhere this is a no-op.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """In a child (a pool initializer, or `preexec_fn` between fork and exec): SIGKILL when
    the parent dies; exits at once if the parent is already gone."""
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - no libc prctl
        return
    if os.getppid() != parent or parent == 1:  # the parent died before prctl took effect
        os._exit(1)
