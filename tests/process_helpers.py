"""Processes a test starts: the ones below it, whether one still runs, and stopping one."""

from __future__ import annotations

import subprocess
from pathlib import Path


def descendants(pid: int) -> set[int]:
    """Every process below `pid` (read from /proc): a test checks only the processes its own
    run started, never another worker's."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    """Running and not a zombie (an exited child its parent has not reaped yet)."""
    try:
        state_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return state_line.rsplit(")", 1)[1].split()[0] != "Z"


def stop(proc: subprocess.Popen, grace: float = 30) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds: a test never leaves its process running."""
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
