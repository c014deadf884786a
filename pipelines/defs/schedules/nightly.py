"""Nightly reconcile: one run per registered environment (new chart versions, image bumps, drift)."""


import dagster as dg

from pipelines.defs.jobs.compile import compile_environments
from pipelines.defs.partitions import environments_partitions


@dg.schedule(
    name="nightly_reconcile",
    job=compile_environments,
    cron_schedule="0 2 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
)
def nightly_reconcile(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest]:
    day = context.scheduled_execution_time.strftime("%Y-%m-%d")
    return [
        dg.RunRequest(partition_key=name, run_key=f"nightly-{day}-{name}", tags={"chainops/environment": name})
        for name in sorted(context.instance.get_dynamic_partitions(environments_partitions.name))
    ]
