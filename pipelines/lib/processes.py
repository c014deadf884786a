"""Child processes that die with chainops.

A compile runs worker processes (the compile pool) and short-lived tools (sops, kubectl).
If chainops itself is killed (SIGKILL from a CI runner's timeout, an OOM kill), nothing
would stop them: they would go on holding decrypted key material in memory and the home's
temp files. On Linux each child asks the kernel for SIGKILL when its parent dies
(prctl(2) PR_SET_PDEATHSIG); elsewhere this is a no-op.

A child also starts with SIGTERM's default action. An ignored signal stays ignored
across exec(2), and chainops can run in a process where SIGTERM is ignored without knowing
it: Dagster maps SIGTERM to SIGINT's disposition (dagster._utils.interrupts.
setup_interrupt_handlers), and SIGINT is ignored in any job a non-interactive shell starts
in the background. Its children would then ignore the SIGTERM chainops stops them with (a
smoke pod would outlive its teardown's grace period, a broken compile pool could not be
terminated). Only SIGTERM: an ignored SIGINT or SIGHUP (a background job, nohup) is the
operator's choice and must keep protecting the children from a terminal's Ctrl-C or hangup.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1


def prepare_child() -> None:
    """In a child (a pool initializer, or `preexec_fn` between fork and exec): an ignored
    SIGTERM back to its default action, and SIGKILL when the parent dies; exits at once if
    the parent is already gone."""
    if signal.getsignal(signal.SIGTERM) == signal.SIG_IGN:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
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
