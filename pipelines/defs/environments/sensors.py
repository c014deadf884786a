"""Watch environments/: new files become partitions, changed files request a run.

The cursor holds content hashes, so an unchanged file requests nothing. A deleted file is
only reported: its committed output needs `decommission: true` or the CLI flag, and its
partition stays. The sensor only reads and hashes files: all Git work happens in run
workers (GitPython leaks processes in long-lived ones such as the daemon).
"""

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from pipelines.defs.common import (
    ENVIRONMENT_TAG,
    PROFILE_TAG,
)
from pipelines.defs.jobs import compile_environments
from pipelines.defs.partitions import environments_partitions
from pipelines.defs.resources import ChainopsResource
from pipelines.lib.config import (
    ENV_NAME_RE,
    ConfigError,
    environment_files,
    environment_name,
    load_environment,
)


@dataclass(frozen=True)
class Cursor:
    """Content hash per environment file, and a counter that makes run keys unique when a
    file returns to an earlier content (A -> B -> A must compile A again)."""

    hashes: dict[str, str] = field(default_factory=dict)
    generation: int = 0

    @classmethod
    def parse(cls, raw: str | None) -> "Cursor":
        if not raw:
            return cls()
        data = json.loads(raw)
        return cls(dict(data.get("hashes", {})), int(data.get("generation", 0)))

    def dump(self) -> str:
        return json.dumps({"generation": self.generation, "hashes": self.hashes}, sort_keys=True)


def hash_environment_files(directory: Path) -> tuple[dict[str, str], list[str]]:
    """(environment name -> sha256 of its file, files skipped with the reason)."""
    hashes: dict[str, str] = {}
    skipped: list[str] = []
    for path in environment_files(directory):
        name = environment_name(path)
        if path.suffix != ".yaml" or not ENV_NAME_RE.match(name):
            skipped.append(f"{path}: not an environment file name (<dns-label>.yaml)")
            continue
        hashes[name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return hashes, skipped


def run_tags(path: Path, name: str) -> dict[str, str]:
    """Run tags for the UI; the profile only when the file parses (the run reports the errors)."""
    tags = {ENVIRONMENT_TAG: name}
    try:
        tags[PROFILE_TAG] = load_environment(path).profile.name
    except ConfigError:
        pass
    return tags


@dg.sensor(
    name="environment_files",
    job=compile_environments,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Registers new environment files as partitions and requests a compile run for every new or changed file.",
)
def environment_files_sensor(context: dg.SensorEvaluationContext, chainops: ChainopsResource) -> dg.SensorResult:
    directory = chainops.paths().environments_dir
    previous = Cursor.parse(context.cursor)
    current, skipped = hash_environment_files(directory)
    for reason in skipped:
        context.log.warning(reason)
    registered = set(context.instance.get_dynamic_partitions(environments_partitions.name))
    new = sorted(set(current) - registered)
    changed = [name for name, digest in sorted(current.items()) if previous.hashes.get(name) != digest]
    generation = previous.generation + 1 if changed else previous.generation
    runs = [
        dg.RunRequest(
            partition_key=name,
            run_key=f"{name}:{current[name]}:{generation}",
            tags=run_tags(directory / f"{name}.yaml", name),
        )
        for name in changed
    ]
    for name in sorted(set(previous.hashes) - set(current)):
        context.log.warning(
            f"environment file {name}.yaml was deleted; partition {name} and its committed output stay "
            f"until it is decommissioned (decommission: true, or chainops compile --decommission {name})"
        )
    return dg.SensorResult(
        run_requests=runs,
        dynamic_partitions_requests=[environments_partitions.build_add_request(new)] if new else [],
        cursor=Cursor(current, generation).dump(),
    )
