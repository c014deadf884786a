#!/usr/bin/env python3
"""Refresh or verify the pinned CustomResourceDefinitions in pipelines/lib/crds/.

chainops validates the Flux, Argo CD, prometheus-operator and sealed-secrets objects it
writes against the CRDs their projects publish. Those schemas are pinned: each file is
kept byte for byte as published in its project's Go module at the version named in
pipelines/lib/crds/SOURCES.json, so validation never depends on the network and a schema
changes only when someone changes a pin. This script is how the pins are refreshed or
verified; it uses the go command (the Go module proxy, checked against the checksum
database) and nothing but the standard library.

    python3 scripts/update_crds.py           # fetch each module@version, copy the file,
                                             # recompute sha256 and license, rewrite SOURCES.json
    python3 scripts/update_crds.py --check   # only verify: exit 1 naming each file that
                                             # differs from the published one or from its sha256

To move a pin, edit "version" (or "path") in SOURCES.json and run the script without --check.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CRD_DIR = ROOT / "pipelines" / "lib" / "crds"
SOURCES = CRD_DIR / "SOURCES.json"
# Some pinned modules (source-controller, kustomize-controller v1.10, argo-cd v3.6) declare
# go 1.27 in go.mod, and `go mod download` refuses to extract a module whose go.mod needs a
# newer Go than the one running. When the local go is older, this toolchain (served by the
# Go module proxy) runs the download instead; an explicit GOTOOLCHAIN in the environment wins.
MIN_TOOLCHAIN = "go1.27.3"
FIELDS = ("file", "module", "version", "path", "sha256", "license", "group", "kind", "version_served")
LICENSE_FILES = ("LICENSE", "LICENSE.txt", "LICENSE.md", "COPYING")


def go_version_tuple(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", name)[:3])


def go_env() -> dict[str, str]:
    env = dict(os.environ)
    flags = env.get("GOFLAGS", "").split()
    env["GOFLAGS"] = " ".join([f for f in flags if not f.startswith("-mod=")] + ["-mod=mod"])
    if "GOTOOLCHAIN" not in env:
        local = subprocess.run(["go", "env", "GOVERSION"], capture_output=True, text=True, check=True).stdout.strip()
        if go_version_tuple(local) < go_version_tuple(MIN_TOOLCHAIN):
            env["GOTOOLCHAIN"] = MIN_TOOLCHAIN
    return env


def module_dir(module: str, version: str, env: dict[str, str]) -> Path:
    """The extracted module zip of module@version in the module cache (downloaded if needed)."""
    with tempfile.TemporaryDirectory() as cwd:  # outside any go.mod or go.work
        proc = subprocess.run(["go", "mod", "download", "-json", f"{module}@{version}"],
                              cwd=cwd, env=env, capture_output=True, text=True)
    try:
        info = json.loads(proc.stdout)
    except json.JSONDecodeError:
        info = {}
    if proc.returncode != 0 or info.get("Error") or not info.get("Dir"):
        raise SystemExit(f"go mod download {module}@{version} failed: "
                         f"{info.get('Error') or proc.stderr.strip() or proc.stdout.strip()}")
    return Path(info["Dir"])


def license_name(moddir: Path) -> str:
    for name in LICENSE_FILES:
        path = moddir / name
        if path.is_file():
            text = " ".join(path.read_text(errors="replace").split())
            break
    else:
        raise SystemExit(f"{moddir}: no LICENSE file")
    if "Apache License" in text and "Version 2.0" in text:
        return "Apache-2.0"
    if "Mozilla Public License Version 2.0" in text:
        return "MPL-2.0"
    if "Permission is hereby granted, free of charge" in text:
        return "MIT"
    if "Redistribution and use in source and binary forms" in text:
        return "BSD-3-Clause" if "Neither the name" in text else "BSD-2-Clause"
    raise SystemExit(f"{moddir}: license not recognised; name it in SOURCES.json by hand")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def load() -> list[dict]:
    entries = json.loads(SOURCES.read_text())
    for entry in entries:
        missing = [f for f in FIELDS if f not in entry]
        if missing:
            raise SystemExit(f"SOURCES.json entry {entry.get('file')!r} lacks {', '.join(missing)}")
    return entries


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="only verify the committed files equal the published ones")
    args = parser.parse_args(argv)
    if shutil.which("go") is None:
        raise SystemExit("the go command is not on PATH")
    entries = load()
    env = go_env()
    bad: list[str] = []
    for entry in entries:
        moddir = module_dir(entry["module"], entry["version"], env)
        published_path = moddir / entry["path"]
        if not published_path.is_file():
            raise SystemExit(f"{entry['module']}@{entry['version']} has no {entry['path']}")
        published = published_path.read_bytes()
        target = CRD_DIR / entry["file"]
        if args.check:
            committed = target.read_bytes() if target.is_file() else None
            if committed != published or sha256(published) != entry["sha256"]:
                bad.append(entry["file"])
                print(f"{entry['file']}: differs from {entry['module']}@{entry['version']} {entry['path']}"
                      if committed is not None else f"{entry['file']}: missing", file=sys.stderr)
            else:
                print(f"ok {entry['file']} ({entry['module']}@{entry['version']})")
            continue
        target.write_bytes(published)
        entry["sha256"] = sha256(published)
        entry["license"] = license_name(moddir)
        print(f"wrote {entry['file']} ({len(published)} bytes) from {entry['module']}@{entry['version']}")
    if args.check:
        if bad:
            print(f"not as published: {', '.join(bad)} (run scripts/update_crds.py to refresh)", file=sys.stderr)
            return 1
        return 0
    entries.sort(key=lambda e: e["file"])
    SOURCES.write_text(json.dumps([{k: e[k] for k in sorted(e)} for e in entries], indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
