"""The environment file's blocking check: valid alone and with the other files (chainId and
namespace unique).
"""

from pathlib import Path

import dagster as dg

from pipelines.defs.common import (
    md_list,
)
from pipelines.defs.environments.assets import environment_config
from pipelines.defs.partitions import environments_partitions
from pipelines.defs.resources import ChainopsResource
from pipelines.lib.config import ConfigError, environment_files, load_all


def problems_for(environment: str, directory: Path) -> tuple[list[str], list[str]]:
    """(problems that involve this environment's file, problems of other files only).

    Cross-file rules (unique chainId and namespace) name both files, so a clash blocks
    both environments; a broken unrelated file does not block this one."""
    try:
        load_all(directory)
    except ConfigError as exc:
        problems = list(exc.problems)
    else:
        return [], []
    own_paths = [str(p) for p in environment_files(directory) if p.stem == environment]
    own = [p for p in problems if any(path in p for path in own_paths)]
    return own, [p for p in problems if p not in own]


@dg.asset_check(
    asset=environment_config,
    blocking=True,
    partitions_def=environments_partitions,
    description="The environment file is valid, and its chainId and namespace are not used by another file.",
)
def config_valid(context: dg.AssetCheckExecutionContext, chainops: ChainopsResource) -> dg.AssetCheckResult:
    directory = chainops.paths().environments_dir
    try:
        own, others = problems_for(context.partition_key, directory)
    except ConfigError as exc:  # the directory itself is missing
        own, others = list(exc.problems), []
    return dg.AssetCheckResult(
        passed=not own,
        metadata={"problems": md_list(own), "other_files_with_problems": md_list(others)},
    )
