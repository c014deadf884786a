"""The compile stages as partitioned assets (node_keys -> genesis -> rendered_manifests), thin
wrappers around pipelines.lib.stages. Outputs hold public data only: KeySet carries
private keys solely as an age ciphertext for the pipeline's identity, and rendered files
hold sealed Secrets.
"""


import dagster as dg

from pipelines.defs.common import (
    ASSET_DEFAULTS,
    decisions,
    genesis_change_allowed,
    lib_failures,
    rewind_accepted,
)
from pipelines.defs.resources import ChainopsResource
from pipelines.lib.config import EnvironmentConfig
from pipelines.lib.gitops import GitopsError
from pipelines.lib.keys import KeySet
from pipelines.lib.model import CompiledEnvironment, ExistingEnvironment, GenesisResult
from pipelines.lib.stages.genesis import check_transitions, check_validator_plan, compute_genesis
from pipelines.lib.stages.keys import compute_keys
from pipelines.lib.stages.render import render_environment
from pipelines.lib.stages.seal import sealed_secret_paths


def _snapshot(chainops: ChainopsResource, config: EnvironmentConfig, keys: KeySet, reset: bool = False) -> ExistingEnvironment:
    """The committed state node_keys planned on: the compile steps of a run share one snapshot
    (and do not fetch again), so a writer publishing mid-run is caught by gitops_commit's guard."""
    try:
        existing = chainops.existing_at(config.name, keys.based_on, chainops.review(config))
    except GitopsError as exc:
        raise dg.Failure(description=str(exc)) from None
    return existing.without_lock_if_damaged() if reset else existing


@dg.asset(
    **ASSET_DEFAULTS,
    description=(
        "Node and account identities: locked ones are reused (decrypted from the committed sealed Secrets), "
        "new ones generated once. Private keys travel only as an age ciphertext for the pipeline identity."
    ),
)
def node_keys(
    context: dg.AssetExecutionContext, chainops: ChainopsResource, environment_config: EnvironmentConfig
) -> KeySet:
    reset = genesis_change_allowed(context)
    with lib_failures():
        existing = chainops.guarded_existing(environment_config, reset, rewind_accepted(context))
        keys = compute_keys(environment_config, existing, chainops.identity(), reset=reset)
    context.add_output_metadata(
        {
            "validators": dg.MetadataValue.json([n.address for n in keys.validators]),
            "nodes": len(keys.nodes),
            "new_keys": dg.MetadataValue.json(list(keys.generated)),
        }
    )
    return keys


@dg.asset(
    **ASSET_DEFAULTS,
    description="The genesis block the nodes load and its block hash; a locked environment keeps its genesis validators.",
)
def genesis(
    context: dg.AssetExecutionContext,
    chainops: ChainopsResource,
    environment_config: EnvironmentConfig,
    node_keys: KeySet,
) -> GenesisResult:
    reset = genesis_change_allowed(context)
    existing = _snapshot(chainops, environment_config, node_keys, reset)
    with lib_failures():
        result = compute_genesis(environment_config, node_keys, existing=existing, allow_change=reset)
        check_validator_plan(environment_config, result.validator_plan, decisions(context))
        check_transitions(environment_config, result, decisions(context))
    context.add_output_metadata(
        {
            "genesis_hash": result.block_hash,
            "validator_count": len(node_keys.validators),
            "genesis_validator_count": len(result.validators),
            "genesis_validators": dg.MetadataValue.json(list(result.validators)),
            "transitions": dg.MetadataValue.json(list(result.transitions)),
        }
    )
    return result


@dg.asset(
    **ASSET_DEFAULTS,
    description="Plain Kubernetes manifests: rendered charts, sealed Secrets, network.lock.json, genesis.json, kustomization.",
)
def rendered_manifests(
    context: dg.AssetExecutionContext,
    chainops: ChainopsResource,
    environment_config: EnvironmentConfig,
    node_keys: KeySet,
    genesis: GenesisResult,
) -> CompiledEnvironment:
    existing = _snapshot(chainops, environment_config, node_keys, genesis_change_allowed(context))
    with lib_failures():
        compiled = render_environment(
            environment_config, node_keys, genesis, existing, chainops.compile_context()
        )
    context.add_output_metadata(
        {
            "genesis_hash": compiled.genesis_hash,
            "objects_written": compiled.object_count,
            "files": len(compiled.files),
            "sealed_secrets": len(sealed_secret_paths(compiled)),
        }
    )
    return compiled
