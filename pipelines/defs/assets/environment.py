"""The compile pipeline as partitioned assets: thin wrappers around pipelines.lib.

Outputs hold public data only: KeySet carries private keys solely as an age ciphertext
for the pipeline's identity, and rendered files hold sealed Secrets.
"""


import dagster as dg

from pipelines.defs.partitions import environments_partitions
from pipelines.defs.resources.chainops import ChainopsResource
from pipelines.lib import compiler
from pipelines.lib.config import ConfigError, EnvironmentConfig, load_environment
from pipelines.lib.keys import KeyPolicyError, KeySet

OWNERS = ["team:platform"]
GROUP = "chainops"
PUBLISH_POOL = "gitops_publish"


@dg.asset(
    partitions_def=environments_partitions,
    group_name=GROUP,
    owners=OWNERS,
    kinds={"yaml"},
    description="The validated environment file (environments/<env>.yaml).",
)
def environment_config(context: dg.AssetExecutionContext, chainops: ChainopsResource) -> EnvironmentConfig:
    settings = chainops.settings()
    path = settings.environments_dir / f"{context.partition_key}.yaml"
    try:
        config = load_environment(path)
    except ConfigError as exc:
        raise dg.Failure(description=str(exc)) from None
    context.add_output_metadata(
        {
            "profile": config.profile.name,
            "legacy": config.profile.legacy,
            "chain_id": config.spec.network.chainId,
            "validators": config.spec.nodes.validators,
            "source": dg.MetadataValue.path(str(path)),
        }
    )
    return config


@dg.asset(
    partitions_def=environments_partitions,
    group_name=GROUP,
    owners=OWNERS,
    description="Node and account identities: locked ones reused, new ones generated once (public data only).",
)
def node_keys(
    context: dg.AssetExecutionContext, chainops: ChainopsResource, environment_config: EnvironmentConfig
) -> KeySet:
    existing = chainops.existing(environment_config.name)
    try:
        keys = compiler.compute_keys(environment_config, existing, chainops.identity())
    except (KeyPolicyError, compiler.GuardError) as exc:
        raise dg.Failure(description=str(exc)) from None
    context.add_output_metadata(
        {
            "validators": dg.MetadataValue.json([n.address for n in keys.validators]),
            "nodes": len(keys.nodes),
            "new_keys": dg.MetadataValue.json(list(keys.generated)),
        }
    )
    return keys


@dg.asset(
    partitions_def=environments_partitions,
    group_name=GROUP,
    owners=OWNERS,
    description="The genesis block the nodes load, with its block hash.",
)
def genesis(
    context: dg.AssetExecutionContext, environment_config: EnvironmentConfig, node_keys: KeySet
) -> compiler.GenesisResult:
    result = compiler.compute_genesis(environment_config, node_keys)
    context.add_output_metadata(
        {
            "genesis_hash": result.block_hash,
            "validator_count": len(result.validators),
            "validators": dg.MetadataValue.json(list(result.validators)),
        }
    )
    return result


@dg.asset(
    partitions_def=environments_partitions,
    group_name=GROUP,
    owners=OWNERS,
    description="Plain Kubernetes manifests: rendered charts, sealed Secrets, lock, genesis, kustomization.",
)
def rendered_manifests(
    context: dg.AssetExecutionContext,
    chainops: ChainopsResource,
    environment_config: EnvironmentConfig,
    node_keys: KeySet,
    genesis: compiler.GenesisResult,
) -> compiler.CompiledEnvironment:
    existing = chainops.existing(environment_config.name)
    compiled = compiler.render_environment(environment_config, node_keys, genesis, existing, chainops.compile_context())
    context.add_output_metadata(
        {
            "genesis_hash": compiled.genesis_hash,
            "objects_written": compiled.object_count,
            "files": len(compiled.files),
            "sealed_secrets": len(compiler.sealed_secret_paths(compiled)),
        }
    )
    return compiled


@dg.asset(
    partitions_def=environments_partitions,
    group_name=GROUP,
    owners=OWNERS,
    pool=PUBLISH_POOL,
    description="The environment's commit in the GitOps repository (none when nothing changed).",
)
def gitops_commit(
    context: dg.AssetExecutionContext,
    chainops: ChainopsResource,
    environment_config: EnvironmentConfig,
    rendered_manifests: compiler.CompiledEnvironment,
) -> dg.MaterializeResult:
    settings = chainops.settings()
    source = compiler.source_commit(settings.environments_dir)
    change = compiler.to_change(rendered_manifests, environment_config.profile.name, source)
    with chainops.repository() as repo:
        base = repo.fetch()
        before = repo.tree_entries(base, change.prefixes)
        result = repo.publish([change], base)
    summary = compiler.change_summary(before, rendered_manifests.files)
    commit = result.commits.get(rendered_manifests.name)
    return dg.MaterializeResult(
        metadata={
            "commit": commit or "unchanged",
            "genesis_hash": rendered_manifests.genesis_hash,
            "objects_written": rendered_manifests.object_count,
            "push_attempts": result.attempts,
            "summary": dg.MetadataValue.md(summary),
        }
    )
