"""The Dagster code location `pipelines.definitions` (see workspace.yaml), assembled from its
domains (environments, compile, publish; as dagster-open-platform does): each domain lists
its own assets, checks, sensors and schedules once, here they are only merged.

Runs use the in-process executor: a run compiles one environment whose steps form a
chain, so a process per step would only add start-up time (about 3 s each); parallelism
comes from running environments as separate runs.
"""

import dagster as dg

from pipelines.defs import compile as compile_domain
from pipelines.defs import environments, publish
from pipelines.defs.jobs import compile_environments
from pipelines.defs.resources import default_resource

defs = dg.Definitions.merge(
    environments.defs,
    compile_domain.defs,
    publish.defs,
    dg.Definitions(
        jobs=[compile_environments],
        resources={"chainops": default_resource()},
        executor=dg.in_process_executor,
    ),
)
