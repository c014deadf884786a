"""The stage order of one compile, written once: keys -> genesis (+ lock and vote-plan
guards) -> render. Also a dry compile (every check, no repository) and many
environments in worker processes.
"""


from __future__ import annotations

import multiprocessing
import sys
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

from pipelines.lib import genesis as genesis_lib
from pipelines.lib.config import ConfigError, EnvironmentConfig
from pipelines.lib.errors import GuardError
from pipelines.lib.keys import (
    KeyPolicyError,
    KeySet,
)
from pipelines.lib.model import (
    CompileContext,
    CompiledEnvironment,
    Decisions,
    ExistingEnvironment,
    GenesisResult,
    StageTimes,
)
from pipelines.lib.processes import prepare_child
from pipelines.lib.render import RenderError
from pipelines.lib.sealing import (
    SealingError,
)
from pipelines.lib.stages.genesis import check_genesis_lock, check_transitions, check_validator_plan, compute_genesis
from pipelines.lib.stages.keys import compute_keys
from pipelines.lib.stages.render import render_environment
from pipelines.lib.stages.validate import ManifestValidationError


@dataclass(frozen=True)
class Compilation:
    """One environment through every stage: what each stage produced."""

    keys: KeySet
    genesis: GenesisResult
    compiled: CompiledEnvironment


def compile_stages(
    config: EnvironmentConfig,
    existing: ExistingEnvironment,
    ctx: CompileContext,
    decisions: Decisions | bool = False,
    mnemonic: str | None = None,
    rotate: Collection[str] = (),
) -> Compilation:
    """The stage order, written once: keys -> genesis (with the lock and validator-plan
    guards) -> rendered, sealed, validated files; all in memory. `decisions`: the
    operator's explicit choices (a bool is --allow-genesis-change alone); `rotate`: nodes
    whose p2p key is replaced (`chainops keys rotate`)."""
    times = StageTimes()
    decisions = Decisions.of(decisions)
    allow_genesis_change = decisions.allow_genesis_change
    if allow_genesis_change:
        existing = existing.without_lock_if_damaged()
    with times.stage("keys"):
        keys = compute_keys(config, existing, ctx.identity, rotate=rotate, mnemonic=mnemonic, reset=allow_genesis_change)
    with times.stage("genesis"):
        genesis = compute_genesis(config, keys, existing, allow_genesis_change)
        check_genesis_lock(config, existing.lock, genesis, allow_genesis_change)
        check_validator_plan(config, genesis.validator_plan, decisions)
        check_transitions(config, genesis, decisions)
    return Compilation(keys, genesis, render_environment(config, keys, genesis, existing, ctx, times))


def compile_environment(
    config: EnvironmentConfig,
    existing: ExistingEnvironment,
    ctx: CompileContext,
    decisions: Decisions | bool = False,
    mnemonic: str | None = None,
) -> CompiledEnvironment:
    """:func:`compile_stages`, the files only (what compile workers return)."""
    return compile_stages(config, existing, ctx, decisions, mnemonic).compiled


def nondeterministic_files(
    config: EnvironmentConfig, keys: KeySet, genesis: GenesisResult, compiled: CompiledEnvironment, ctx: CompileContext
) -> list[str]:
    """Paths whose bytes differ when the same inputs are rendered again, with the first
    render's files as the committed state (so sealed Secrets keep their ciphertext, as a
    re-run does). Empty for a deterministic render: a re-run with nothing changed must
    write the same bytes and make no commit (run by `chainops validate` and by Dagster's
    render_deterministic check)."""
    again = render_environment(config, keys, genesis, ExistingEnvironment(compiled.name, dict(compiled.files), keys.based_on), ctx)
    return sorted(p for p in set(again.files) | set(compiled.files) if again.files.get(p) != compiled.files.get(p))


# Problems that are the environment file's (or its charts' values'), reported per environment.
ENVIRONMENT_PROBLEMS = (ConfigError, GuardError, ManifestValidationError, KeyPolicyError, RenderError)


# What else a dry compile of one file can raise without any repository involved.
_DRY_COMPILE_PROBLEMS = (*ENVIRONMENT_PROBLEMS, SealingError, genesis_lib.GenesisError)


def dry_compile_problem(config: EnvironmentConfig, ctx: CompileContext) -> str | None:
    """Compile ``config`` as a new environment with throwaway keys and keep nothing: every
    check a compile makes on the file, its values and the rendered objects, without the
    GitOps repository. The problem in one message, or None. (``chainops validate``)"""
    throwaway_words = None
    if config.spec.keys.source == "mnemonic" and not config.spec.production:
        from eth_account.hdaccount import Language, generate_mnemonic  # lazy: only for development-mode files

        throwaway_words = generate_mnemonic(12, Language.ENGLISH)
    try:
        done = compile_stages(config, ExistingEnvironment(config.name), ctx, mnemonic=throwaway_words)
        differing = nondeterministic_files(config, done.keys, done.genesis, done.compiled, ctx)
    except _DRY_COMPILE_PROBLEMS as exc:
        message = str(exc)
        return message if message.startswith(config.source_path) else f"{config.source_path}: {message}"
    if differing:
        return f"{config.source_path}: rendering the same inputs twice gave different bytes in {', '.join(differing)}"
    return None


def _compile_task(task: tuple[EnvironmentConfig, ExistingEnvironment, CompileContext, bool]) -> CompiledEnvironment:
    return compile_environment(*task)


def _dry_compile_task(task: tuple[EnvironmentConfig, CompileContext]) -> str | None:
    return dry_compile_problem(*task)


def _in_processes(function: Callable[[Any], Any], tasks: Sequence[Any], jobs: int) -> list[Any]:
    """``function`` over ``tasks`` in `jobs` worker processes, results in input order."""
    if jobs <= 1 or len(tasks) < 2:
        return [function(task) for task in tasks]
    context = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
    with ProcessPoolExecutor(max_workers=min(jobs, len(tasks)), mp_context=context, initializer=prepare_child) as pool:
        return list(pool.map(function, tasks, chunksize=max(1, len(tasks) // (jobs * 8))))


def compile_many(
    tasks: Sequence[tuple[EnvironmentConfig, ExistingEnvironment, CompileContext, Decisions | bool]], jobs: int
) -> list[CompiledEnvironment]:
    """Compile environments in `jobs` worker processes (CPU-bound rendering scales with
    cores). Results keep the input order; the first error stops everything, before
    anything is published. Workers return public or sealed bytes only."""
    return _in_processes(_compile_task, tasks, jobs)


def dry_compile_many(configs: Sequence[EnvironmentConfig], ctx: CompileContext, jobs: int) -> list[str | None]:
    """:func:`dry_compile_problem` for every environment, in worker processes."""
    return _in_processes(_dry_compile_task, [(config, ctx) for config in configs], jobs)
