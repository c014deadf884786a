"""The Dagster code location `pipelines.definitions` (see workspace.yaml).

Runs use the in-process executor: a run compiles one environment whose steps form a
chain, so a process per step would only add start-up time (about 3 s each); parallelism
comes from running environments as separate runs.
"""

import dagster as dg

from pipelines.defs.assets.environment import (
    environment_config,
    genesis,
    gitops_commit,
    node_keys,
    rendered_manifests,
)
from pipelines.defs.checks.environment import (
    config_valid,
    genesis_lock,
    manifests_valid,
    no_plaintext_secrets,
    render_deterministic,
)
from pipelines.defs.jobs.compile import compile_environments
from pipelines.defs.resources.chainops import default_resource
from pipelines.defs.schedules.nightly import nightly_reconcile
from pipelines.defs.sensors.environment_files import environment_files_sensor

defs = dg.Definitions(
    assets=[environment_config, node_keys, genesis, rendered_manifests, gitops_commit],
    asset_checks=[config_valid, genesis_lock, manifests_valid, no_plaintext_secrets, render_deterministic],
    jobs=[compile_environments],
    sensors=[environment_files_sensor],
    schedules=[nightly_reconcile],
    resources={"chainops": default_resource()},
    executor=dg.in_process_executor,
)
