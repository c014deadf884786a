"""Asset checks. The blocking ones guard the commit: gitops_commit does not run when they fail."""


import tempfile
from pathlib import Path

import dagster as dg

from pipelines.defs.assets.environment import (
    environment_config,
    genesis,
    rendered_manifests,
)
from pipelines.defs.partitions import environments_partitions
from pipelines.defs.resources.chainops import ChainopsResource
from pipelines.lib import compiler
from pipelines.lib.config import ConfigError, EnvironmentConfig, load_all
from pipelines.lib.keys import KeySet
from pipelines.lib.manifests import ManifestError, kustomize_build, validator_for
from pipelines.lib.sealing import is_sops_encrypted

ALLOW_GENESIS_CHANGE_TAG = "chainops/allow-genesis-change"


@dg.asset_check(asset=environment_config, blocking=True, partitions_def=environments_partitions, description="All environment files valid, chainIds and namespaces unique.")
def config_valid(context: dg.AssetCheckExecutionContext, chainops: ChainopsResource) -> dg.AssetCheckResult:
    try:
        configs = load_all(chainops.settings().environments_dir)
    except ConfigError as exc:
        return dg.AssetCheckResult(passed=False, metadata={"problems": dg.MetadataValue.md("\n".join(f"- {p}" for p in exc.problems))})
    return dg.AssetCheckResult(passed=True, metadata={"environments": len(configs)})


@dg.asset_check(
    asset=genesis,
    blocking=True,
    partitions_def=environments_partitions,
    additional_ins={"environment_config": dg.AssetIn("environment_config")},
    description="The genesis hash equals the one locked in network.lock.json (unless the run is tagged to allow a reset).",
)
def genesis_lock(
    context: dg.AssetCheckExecutionContext,
    chainops: ChainopsResource,
    genesis: compiler.GenesisResult,
    environment_config: EnvironmentConfig,
) -> dg.AssetCheckResult:
    lock = chainops.existing(environment_config.name).lock
    allowed = context.run.tags.get(ALLOW_GENESIS_CHANGE_TAG) == "true"
    try:
        compiler.check_genesis_lock(environment_config, lock, genesis, allowed)
    except compiler.GuardError as exc:
        return dg.AssetCheckResult(passed=False, description=str(exc), metadata={"locked": lock["genesisHash"], "computed": genesis.block_hash})
    return dg.AssetCheckResult(passed=True, metadata={"genesis_hash": genesis.block_hash, "locked": bool(lock)})


@dg.asset_check(asset=rendered_manifests, blocking=True, partitions_def=environments_partitions, description="Every object validates against the Kubernetes schemas and kubectl kustomize builds the directory.")
def manifests_valid(rendered_manifests: compiler.CompiledEnvironment) -> dg.AssetCheckResult:
    validator = validator_for()
    problems = []
    for path, obj in compiler.parse_files(rendered_manifests).items():
        problems += [f"{p.path}: {p.message}" for p in validator.validate(obj, path)]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for path, data in rendered_manifests.files.items():
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            (root / path).write_bytes(data)
        try:
            built = kustomize_build(root / compiler.env_dir(rendered_manifests.name))
        except ManifestError as exc:
            problems.append(str(exc))
            built = ""
    return dg.AssetCheckResult(
        passed=not problems,
        metadata={"problems": dg.MetadataValue.md("\n".join(f"- {p}" for p in problems) or "none"), "built_documents": built.count("\n---\n") + 1 if built else 0},
    )


@dg.asset_check(asset=rendered_manifests, blocking=True, partitions_def=environments_partitions, description="No Secret is committed unsealed.")
def no_plaintext_secrets(rendered_manifests: compiler.CompiledEnvironment) -> dg.AssetCheckResult:
    unsealed = [
        path
        for path, obj in compiler.parse_files(rendered_manifests).items()
        if obj.get("kind") == "Secret" and not is_sops_encrypted(rendered_manifests.files[path])
    ]
    return dg.AssetCheckResult(passed=not unsealed, metadata={"unsealed": dg.MetadataValue.json(unsealed)})


@dg.asset_check(
    asset=rendered_manifests,
    blocking=False,
    partitions_def=environments_partitions,
    additional_ins={
        "environment_config": dg.AssetIn("environment_config"),
        "node_keys": dg.AssetIn("node_keys"),
        "genesis": dg.AssetIn("genesis"),
    },
    description="Rendering the same inputs again gives the same bytes.",
)
def render_deterministic(
    chainops: ChainopsResource,
    rendered_manifests: compiler.CompiledEnvironment,
    environment_config: EnvironmentConfig,
    node_keys: KeySet,
    genesis: compiler.GenesisResult,
) -> dg.AssetCheckResult:
    again = compiler.render_environment(
        environment_config,
        node_keys,
        genesis,
        compiler.ExistingEnvironment(rendered_manifests.name, dict(rendered_manifests.files)),
        chainops.compile_context(),
    )
    differing = sorted(p for p in set(again.files) | set(rendered_manifests.files) if again.files.get(p) != rendered_manifests.files.get(p))
    return dg.AssetCheckResult(passed=not differing, metadata={"differing_files": dg.MetadataValue.json(differing)})
