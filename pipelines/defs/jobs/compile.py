import dagster as dg

from pipelines.defs.partitions import environments_partitions

compile_environments = dg.define_asset_job(
    name="compile_environments",
    selection=dg.AssetSelection.groups("chainops"),
    partitions_def=environments_partitions,
    description="Compile one environment and publish it to the GitOps repository.",
)
