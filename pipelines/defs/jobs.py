"""The job sensors, schedules and operators launch: every chainops asset and check for one
environment (its partitioning, `environments`, comes from the selected assets)."""

import dagster as dg

compile_environments = dg.define_asset_job(
    name="compile_environments",
    selection=dg.AssetSelection.groups("chainops"),
    description="Compile one environment (one partition) and publish it to the GitOps repository.",
)
