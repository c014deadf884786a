"""Published sites built once per test session and copied for each test that starts
from one.

Many tests start from "an environment chainops has already published": an
environments directory, a bare GitOps remote (`remote.git`) and a home (`home`) after one
successful `chainops compile`. Compiling that first state is the same work in every
test, so each distinct site is compiled once per worker process and each test gets its own
copy of all three directories. The copy is then what a user's site would be after a
publish: the home's cache clone is moved to the name chainops gives the copied remote
(the name is a hash of the remote URL), so the rewind guard knows the remote's tip, as it
would after a real publish. The fast-path memo (`<cache>.fingerprints.json`) names the old
remote and so never matches: the first compile in a test is a full one, which only costs
time (see `pipelines.lib.fingerprint`).
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from pipelines.lib.gitops import GitopsRepository
from tests.conftest import Workspace

Build = Callable[[Workspace], None]


def _site(root: Path) -> Workspace:
    """The layout `workspace_dirs` uses: environments/, remote.git, home/."""
    return Workspace(root / "environments", root / "remote.git", root / "home", root)


def _cache_path(site: Workspace) -> Path:
    return GitopsRepository(str(site.remote), "main", site.home).cache_path


class PublishedSites:
    """Site templates by name; `copy_into` builds a template on first use."""

    def __init__(self, root: Path):
        self._root = root
        self._built: dict[str, Path] = {}

    def copy_into(self, dest: Path, name: str, build: Build) -> Workspace:
        """Copy the site `name` (published by `build(template)` the first time) into `dest`."""
        template = self._built.get(name)
        if template is None:
            template = self._root / hashlib.sha256(name.encode()).hexdigest()[:12]
            template.mkdir()
            build(_site(template))
            self._built[name] = template
        source, site = _site(template), _site(dest)
        for part in (source.envs, source.remote, source.home):
            shutil.copytree(part, dest / part.name, symlinks=True)
        old = site.home / _cache_path(source).relative_to(source.home)
        new = _cache_path(site)
        for suffix in (".git", ".lock", ".fingerprints.json"):
            moved = old.with_suffix(suffix)
            if moved.exists():
                moved.rename(new.with_suffix(suffix))
        return site


@pytest.fixture(scope="session")
def published_sites(tmp_path_factory: pytest.TempPathFactory) -> PublishedSites:
    return PublishedSites(tmp_path_factory.mktemp("published-sites"))
