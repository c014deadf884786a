"""The environment file as an asset: one partition per `environments/<env>.yaml`.
"""


import dagster as dg

from pipelines.defs.common import (
    ASSET_DEFAULTS,
    ENVIRONMENT_TAG,
    PROFILE_TAG,
)
from pipelines.defs.resources import ChainopsResource
from pipelines.lib.config import ConfigError, EnvironmentConfig, load_environment


@dg.asset(
    **ASSET_DEFAULTS,
    kinds={"yaml"},
    description=(
        "The validated environment file `environments/<env>.yaml` (chainops/v1). Also tags the run with "
        "`chainops/environment` and `chainops/profile`, whichever way it was launched."
    ),
)
def environment_config(context: dg.AssetExecutionContext, chainops: ChainopsResource) -> EnvironmentConfig:
    settings = chainops.settings()
    path = settings.environments_dir / f"{context.partition_key}.yaml"
    if not path.exists():
        raise dg.Failure(
            description=f"{path}: no such environment file for partition {context.partition_key}; add the file, or "
            "delete the partition (Partitions tab) if the environment is gone (decommission it first if it was published)"
        )
    try:
        config = load_environment(path)
    except ConfigError as exc:
        raise dg.Failure(description=str(exc)) from None
    context.instance.add_run_tags(context.run.run_id, {ENVIRONMENT_TAG: config.name, PROFILE_TAG: config.profile.name})
    context.add_output_metadata(
        {
            "profile": config.profile.name,
            "legacy": config.profile.legacy,
            "chain_id": config.spec.network.chainId,
            "validators": config.spec.nodes.validators,
            "review": chainops.review(config),
            "source": dg.MetadataValue.path(str(path)),
        }
    )
    return config
