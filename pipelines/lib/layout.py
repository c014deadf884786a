"""Where an environment's files live in the GitOps repository (the DESIGN contract).

One place for the paths, so the compiler, the review, the guards and the front ends
agree on them.
"""

from __future__ import annotations

import re

LOCK_FILE = "network.lock.json"
GENESIS_FILE = "genesis.json"
README_FILE = "README.md"  # the network page, for people (not in the kustomization)
ESCROW_FILE = "keys.escrow.age"
SOPS_CONFIG_FILE = ".sops.yaml"  # shared by all environments: one creation rule each
RENDERED_DIR = "rendered"
BOOTSTRAP_DIR = "bootstrap"
# An environment name is a DNS label (the environment file's name, DESIGN).
ENV_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?$")
NAMESPACE_FILE_RE = re.compile(r"^rendered/(?P<env>[^/]+)/network/namespace-(?P<namespace>[^/]+)\.yaml$")


def env_dir(name: str) -> str:
    return f"{RENDERED_DIR}/{name}/"


def bootstrap_path(name: str) -> str:
    return f"{BOOTSTRAP_DIR}/{name}.yaml"


def lock_path(name: str) -> str:
    return env_dir(name) + LOCK_FILE


def escrow_path(name: str) -> str:
    """The environment's key escrow: private keys for the pipeline identity only (not applied)."""
    return env_dir(name) + ESCROW_FILE


def environment_paths(name: str) -> tuple[str, ...]:
    """The paths only this environment writes (its commit replaces everything under them).

    The shared `.sops.yaml` is not among them: an environment only edits its own creation
    rule in it (see gitops.EnvironmentChange.shared)."""
    if not ENV_NAME_RE.match(name):  # "" or ".." would name the whole rendered/ tree
        raise ValueError(f"{name!r} is not an environment name (a DNS label matching {ENV_NAME_RE.pattern})")
    return (env_dir(name).rstrip("/"), bootstrap_path(name))


def owned_paths(name: str) -> tuple[str, ...]:
    """The paths an environment's commit replaces."""
    return environment_paths(name)


def sops_path_regex(name: str) -> str:
    """The `.sops.yaml` creation rule path of one environment's Secrets."""
    return rf"^rendered/{name}/[^/]+/secret-[^/]+\.yaml$"  # a DNS label: nothing to escape
