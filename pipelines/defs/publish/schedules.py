"""Nightly reconcile: one run per registered environment that still has its file (new chart
versions, image bumps, drift).
"""


import dagster as dg

from pipelines.defs.environments.sensors import run_tags
from pipelines.defs.jobs import compile_environments
from pipelines.defs.partitions import environments_partitions
from pipelines.defs.resources import ChainopsResource


@dg.schedule(
    name="nightly_reconcile",
    job=compile_environments,
    cron_schedule="0 2 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Every night at 02:00 UTC, one compile run per registered environment (run key nightly-<day>-<env>).",
)
def nightly_reconcile(context: dg.ScheduleEvaluationContext, chainops: ChainopsResource) -> list[dg.RunRequest]:
    day = context.scheduled_execution_time.strftime("%Y-%m-%d")
    directory = chainops.paths().environments_dir
    requests = []
    for name in sorted(context.instance.get_dynamic_partitions(environments_partitions.name)):
        path = directory / f"{name}.yaml"
        if not path.is_file():  # a deleted file: reported by the sensor, kept until decommissioned
            context.log.warning(f"{name}: no environment file {path}; not reconciled")
            continue
        requests.append(dg.RunRequest(partition_key=name, run_key=f"nightly-{day}-{name}", tags=run_tags(path, name)))
    return requests
