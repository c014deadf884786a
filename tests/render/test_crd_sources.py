"""The pinned CRDs in pipelines/lib/crds/ are what SOURCES.json says they are.

Each file is a CustomResourceDefinition kept byte for byte as published in its project's
Go module (scripts/update_crds.py refreshes or verifies them). Here: the files and the
manifest agree (sha256, nothing unlisted), each file is the CRD of the group and kind its
entry names and serves the version chainops uses with an openAPIV3Schema, and (slow, needs
go and the Go module proxy) the files still equal the published ones. Without go the last
one is skipped, unless CHAINOPS_REQUIRE_SMOKE=1, where it fails.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.yaml_reader import read_yaml

ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = ROOT / "pipelines" / "lib" / "crds"
SOURCES = CRD_DIR / "SOURCES.json"
SCRIPT = ROOT / "scripts" / "update_crds.py"
REQUIRED = os.environ.get("CHAINOPS_REQUIRE_SMOKE") == "1"
FIELDS = {"file", "module", "version", "path", "sha256", "license", "group", "kind", "version_served"}

ENTRIES = json.loads(SOURCES.read_text())


def test_sources_json_is_canonical():
    text = SOURCES.read_text()
    assert ENTRIES, "SOURCES.json lists no CRD"
    assert text == json.dumps([{k: e[k] for k in sorted(e)} for e in ENTRIES], indent=2) + "\n"
    files = [e["file"] for e in ENTRIES]
    assert files == sorted(files), "entries are sorted by file"
    assert len(set(files)) == len(files), "a file is listed twice"
    for entry in ENTRIES:
        assert set(entry) == FIELDS, entry["file"]
        assert Path(entry["path"]).name == entry["file"], "the upstream file name is kept"
        assert entry["license"], entry["file"]


def test_every_file_in_the_directory_is_listed():
    on_disk = {p.name for p in CRD_DIR.iterdir() if p.name != SOURCES.name}
    listed = {e["file"] for e in ENTRIES}
    assert on_disk - listed == set(), "files not in SOURCES.json"
    assert listed - on_disk == set(), "listed files missing"


@pytest.mark.parametrize("entry", ENTRIES, ids=[e["file"] for e in ENTRIES])
def test_file_matches_its_sha256(entry):
    path = CRD_DIR / entry["file"]
    assert path.is_file(), f"{entry['file']} is listed but missing"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"], entry["file"]


@pytest.mark.parametrize("entry", ENTRIES, ids=[e["file"] for e in ENTRIES])
def test_file_is_the_crd_its_entry_names(entry):
    crd = read_yaml((CRD_DIR / entry["file"]).read_text())
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["kind"] == "CustomResourceDefinition"
    assert crd["spec"]["group"] == entry["group"]
    assert crd["spec"]["names"]["kind"] == entry["kind"]
    served = {v["name"]: v for v in crd["spec"]["versions"] if v.get("served")}
    assert entry["version_served"] in served, f"{entry['file']} serves {sorted(served)}"
    schema = served[entry["version_served"]].get("schema", {}).get("openAPIV3Schema")
    assert isinstance(schema, dict) and schema.get("type") == "object", entry["file"]
    assert crd["metadata"]["name"] == f"{crd['spec']['names']['plural']}.{entry['group']}"


@pytest.mark.slow
def test_files_equal_the_published_ones():
    if shutil.which("go") is None:
        if REQUIRED:
            pytest.fail("CHAINOPS_REQUIRE_SMOKE=1 but the go command is not on PATH (scripts/update_crds.py --check needs it)")
        pytest.skip("the go command is not on PATH: scripts/update_crds.py --check downloads the pinned Go modules")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--check"], cwd=ROOT, capture_output=True, text=True,
                          timeout=1800)
    assert proc.returncode == 0, proc.stdout + proc.stderr
