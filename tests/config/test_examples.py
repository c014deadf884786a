"""The shipped example environments (environments/*.yaml), checked by what they are, never
by what they contain: a team replaces them with its own networks, and the rest of the
suite runs on its own copy (tests/fixtures/environments). Whatever the files say, each
must validate and compile through the CLI, and compile to the same bytes twice."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import SHIPPED_EXAMPLES, git

SHIPPED = sorted(p.stem for p in SHIPPED_EXAMPLES.glob("*.yaml"))


def copy_of_the_examples(tmp_path: Path) -> Path:
    target = tmp_path / "environments"
    shutil.copytree(SHIPPED_EXAMPLES, target)
    return target


def test_every_shipped_example_validates_and_compiles(run_cli, tmp_path):
    envs = copy_of_the_examples(tmp_path)
    validated = run_cli("validate", "--environments", envs)
    assert validated.code == 0, validated.err
    assert sorted(re.findall(r"^([a-z0-9-]+): ok", validated.out, re.M)) == SHIPPED
    assert "Dagster: a new file becomes a partition" in validated.out, "validate says how Dagster picks the file up"
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", "--initial-branch=main", str(remote)], check=True)
    compiled = run_cli("compile", "--home", tmp_path / "home", "--environments", envs, "--repo", remote)
    assert compiled.code == 0, compiled.err
    published = {p.split("/")[1] for p in git(remote, "ls-tree", "--name-only", "main", "rendered/").split()}
    assert published == {n for n in SHIPPED if "decommission: true" not in (envs / f"{n}.yaml").read_text()}
    again = run_cli("compile", "--home", tmp_path / "home", "--environments", envs, "--repo", remote, "--no-cache")
    assert again.code == 0 and again.out.count("unchanged") == len(published), "same inputs, same bytes"


def _edited(text: str) -> str:
    """What a team does to its files: one more RPC node."""
    return re.sub(r"(\brpc:\s*)(\d+)", lambda m: f"{m[1]}{int(m[2]) + 1}", text, count=1)


@pytest.mark.parametrize("name", SHIPPED)
def test_an_edited_example_still_compiles_and_the_suite_does_not_read_it(run_cli, tmp_path, name):
    """Editing an example changes nothing the rest of the suite reads: it uses its own copy."""
    envs = copy_of_the_examples(tmp_path)
    path = envs / f"{name}.yaml"
    path.write_text(_edited(path.read_text()))
    assert run_cli("validate", name, "--environments", envs).code == 0
    from tests import conftest

    assert conftest.EXAMPLES != SHIPPED_EXAMPLES and not conftest.EXAMPLES.is_relative_to(SHIPPED_EXAMPLES)
