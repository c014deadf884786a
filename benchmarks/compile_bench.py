"""Compile benchmark: N synthetic environments into a fresh bare repository.

Reports seconds per stage, environments/second and peak RSS for a full compile, a
no-change re-run, a re-run without the fingerprint cache and a one-environment change.
Per-environment stages (keys, genesis, render, validate, seal, review) are the compile
workers' own timings, summed over environments: with several workers they add up to more
than the wall time. config, read and commit run in the main process and are wall time.

    .venv/bin/python benchmarks/compile_bench.py --n 200 [--validators 4 --rpc 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipelines import cli  # noqa: E402
from pipelines.lib import (
    gitops,  # noqa: E402
    pipeline,  # noqa: E402
)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


PROFILES = (("besu", "qbft"), ("besu", "ibft2"), ("geth", "clique"), ("geth", "ethash"))
STAGES = ("config", "read", "keys", "genesis", "render", "validate", "seal", "review", "commit")


def environment_file(i: int, validators: int, rpc: int) -> str:
    client, consensus = PROFILES[i % len(PROFILES)]
    bootnodes = "\n  bootnodes: 1" if client == "geth" else ""
    return f"""apiVersion: chainops/v1
network:
  chainId: {100000 + i}
  client: {client}
  consensus: {consensus}
nodes:
  validators: {validators}
  rpc: {rpc}{bootnodes}
accounts:
  - address: "0x8ba1f109551bD432803012645Ac136ddd64DBA72"
    balance: 1000 ether
kubernetes:
  namespace: bench-{i:05d}
"""


class StageClock:
    """Main-process stages by wrapping module attributes (restored on exit); worker stages
    from the ``stage_seconds`` that every compiled environment carries back."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._patches: list[tuple[Any, str, Any]] = []
        self._inside = False

    def wrap(self, owner: Any, name: str, stage: str) -> None:
        original = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            if self._inside:  # only the outermost timed call counts (read_files calls read_blobs)
                return original(*args, **kwargs)
            self._inside = True
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self._inside = False
                self.seconds[stage] += time.perf_counter() - start

        self._patches.append((owner, name, original))
        setattr(owner, name, timed)

    def collect_worker_stages(self) -> None:
        original = pipeline.compile_many

        def collected(*args: Any, **kwargs: Any) -> Any:
            results = original(*args, **kwargs)
            for item in results:
                for stage, seconds in item.stage_seconds.items():
                    self.seconds[stage] += seconds
            return results

        self._patches.append((pipeline, "compile_many", original))
        pipeline.compile_many = collected

    def __enter__(self) -> StageClock:
        self.wrap(cli, "load_all", "config")
        self.wrap(gitops.GitopsRepository, "read_files", "read")
        self.wrap(gitops.GitopsRepository, "read_blobs", "read")
        self.wrap(gitops.GitopsRepository, "publish", "commit")
        self.collect_worker_stages()
        return self

    def __exit__(self, *exc: object) -> None:
        for owner, name, original in reversed(self._patches):
            setattr(owner, name, original)


def peak_rss_mib() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024


def commits(repo: Path) -> int:
    out = subprocess.run(["git", "--git-dir", str(repo), "rev-list", "--count", "main"], capture_output=True, text=True)
    return int(out.stdout.strip() or 0)


def run(
    label: str, argv: list[str], repo: Path, expected_commits: int, fn: Callable[[list[str]], int] = cli.main
) -> dict[str, Any]:
    """One chainops run; a failed run or an unexpected number of commits stops the benchmark."""
    before = commits(repo) if (repo / "HEAD").exists() else 0
    with StageClock() as clock, contextlib.redirect_stdout(io.StringIO()):
        start = time.perf_counter()
        code = fn(argv)
        total = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"{label}: chainops exited {code}")
    made = commits(repo) - before
    if made != expected_commits:
        raise SystemExit(f"{label}: {made} commits, expected {expected_commits}")
    stages = {s: round(clock.seconds.get(s, 0.0), 2) for s in STAGES}
    return {"run": label, "seconds": round(total, 2), "commits": made, "stages": stages}


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="number of environments")
    parser.add_argument("--validators", type=int, default=4)
    parser.add_argument("--rpc", type=int, default=2)
    parser.add_argument("--jobs", type=int, default=0, help="worker processes (default: CPU count; 1 = stage breakdown)")
    parser.add_argument("--json", type=Path, help="write the results here as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="chainops-bench-") as tmp:
        root = Path(tmp)
        envs = root / "environments"
        envs.mkdir()
        for i in range(args.n):
            (envs / f"env-{i:05d}.yaml").write_text(environment_file(i, args.validators, args.rpc))
        home = root / "home"
        repo = home / "gitops.git"
        common = ["--environments", str(envs), "--home", str(home), "--jobs", str(args.jobs)]
        results = [run("full compile", ["compile", *common], repo, args.n)]
        results.append(run("no-change re-run", ["compile", *common], repo, 0))
        results.append(run("no-change re-run, cold cache", ["compile", "--no-cache", *common], repo, 0))
        changed_name = f"env-{min(7, args.n - 1):05d}"
        changed = envs / f"{changed_name}.yaml"
        changed.write_text(changed.read_text().replace(f"rpc: {args.rpc}", f"rpc: {args.rpc + 1}"))
        results.append(run("one environment changed", ["compile", changed_name, *common], repo, 1))
        report = {
            "environments": args.n,
            "jobs": args.jobs or os.cpu_count(),
            "nodes_per_environment": args.validators + args.rpc,
            "machine": machine(),
            "date": time.strftime("%Y-%m-%d"),
            "peak_rss_mib": round(peak_rss_mib(), 1),
            "results": results,
        }
    print_table(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


def print_table(report: dict[str, Any]) -> None:
    n = report["environments"]
    print(
        f"{n} environments x {report['nodes_per_environment']} nodes, {report['jobs']} worker(s), "
        f"on {report['machine']} ({report['date']})"
    )
    header = f"| run | total s | env/s | commits | {' | '.join(STAGES)} |"
    print(header)
    print("|" + "---|" * (4 + len(STAGES)))
    for r in report["results"]:
        count = 1 if r["run"].startswith("one") else n
        rate = count / r["seconds"] if r["seconds"] else float("inf")
        stages = " | ".join(f"{r['stages'][s]:.2f}" for s in STAGES)
        print(f"| {r['run']} | {r['seconds']:.2f} | {rate:.1f} | {r['commits']} | {stages} |")
    print(f"peak RSS: {report['peak_rss_mib']} MiB")


if __name__ == "__main__":
    main()
