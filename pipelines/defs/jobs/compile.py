import dagster as dg

compile_environments = dg.define_asset_job(
    name="compile_environments",
    selection=dg.AssetSelection.groups("chainops"),
    description="Compile one environment and publish it to the GitOps repository.",
)
