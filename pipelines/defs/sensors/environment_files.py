"""Watch environments/: new files become partitions, changed files request a run.

The cursor holds content hashes, so an unchanged file requests nothing. A deleted file is
only reported: its committed output needs `decommission: true` or the CLI flag.
"""


import hashlib
import json

import dagster as dg

from pipelines.defs.jobs.compile import compile_environments
from pipelines.defs.partitions import environments_partitions
from pipelines.defs.resources.chainops import ChainopsResource
from pipelines.lib.config import ENV_NAME_RE, environment_files, environment_name


@dg.sensor(
    name="environment_files",
    job=compile_environments, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.STOPPED)
def environment_files_sensor(context: dg.SensorEvaluationContext, chainops: ChainopsResource) -> dg.SensorResult:
    settings = chainops.settings()
    previous: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    current: dict[str, str] = {}
    for path in environment_files(settings.environments_dir):
        name = environment_name(path)
        if path.suffix == ".yaml" and ENV_NAME_RE.match(name):
            current[name] = hashlib.sha256(path.read_bytes()).hexdigest()
    registered = set(context.instance.get_dynamic_partitions(environments_partitions.name))
    new = sorted(set(current) - registered)
    runs = [
        dg.RunRequest(partition_key=name, run_key=f"{name}:{digest}", tags={"chainops/environment": name})
        for name, digest in sorted(current.items())
        if previous.get(name) != digest
    ]
    for name in sorted(set(previous) - set(current)):
        context.log.warning(f"environment file {name}.yaml was deleted; its output stays until decommissioned")
    return dg.SensorResult(
        run_requests=runs,
        dynamic_partitions_requests=[environments_partitions.build_add_request(new)] if new else [],
        cursor=json.dumps(current, sort_keys=True),
    )

