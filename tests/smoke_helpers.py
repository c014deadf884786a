"""What the smoke tests need (the geth binaries `make smoke-bins` builds, bubblewrap, root),
found once for every module that runs `chainops smoke`. In CI (CHAINOPS_REQUIRE_SMOKE=1)
anything missing fails the suite instead of skipping it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

BIN_DIR = Path(os.environ.get("CHAINOPS_GETH_DIR") or Path.home() / ".cache" / "chainops" / "geth-v1.13.15" / "bin")
REQUIRED = os.environ.get("CHAINOPS_REQUIRE_SMOKE") == "1"
# geth-ethash pins geth v1.11.6 (built with go1.21 by make smoke-bins).
ETHASH_BIN_DIR = Path(os.environ.get("CHAINOPS_ETHASH_GETH_DIR") or Path.home() / ".cache" / "chainops" / "geth-v1.11.6" / "bin")
MISSING = [what for what, ok in (
    ("geth", (BIN_DIR / "geth").is_file()),
    ("bootnode", (BIN_DIR / "bootnode").is_file()),
    ("geth v1.11.6", (ETHASH_BIN_DIR / "geth").is_file() and (ETHASH_BIN_DIR / "bootnode").is_file()),
    ("bwrap", subprocess.run(["sh", "-c", "command -v bwrap"], capture_output=True).returncode == 0),
    ("root", os.geteuid() == 0),
) if not ok]
if MISSING and REQUIRED:
    raise RuntimeError(f"smoke tests required but missing: {', '.join(MISSING)}")
