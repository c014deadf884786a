"""Rendering throughput: chainops' sandboxed Jinja2 renderer against Helm's own engine.

The `ethstats` chart has a Go-template twin under benchmarks/helm_twin/ethstats, rendered
in-process by Helm v4 through PyPI `helm-python-sdk` (`pip install '.[bench]'`). Both
render the same values; the script first checks that both produce the same objects,
then times each (values schema validation included on both sides) and reports
microseconds per rendered object and the ratio.

    .venv/bin/python benchmarks/render_vs_helm.py [--iterations 2000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipelines.lib.render import deep_merge, load_chart, render_chart  # noqa: E402

TWIN = ROOT / "benchmarks" / "helm_twin" / "ethstats"
RELEASE = {"Name": "bench", "Namespace": "chain-bench", "Service": "chainops"}
COMPUTED = {
    "namespace": "chain-bench",
    "appVersion": "v0.0.1",
    "secret": "0123456789abcdef" * 4,
    "secretChecksum": "f" * 64,
}


def helm_objects(chart, values: dict) -> list[dict]:
    rendered = chart.render(values, name=RELEASE["Name"], namespace=RELEASE["Namespace"])
    return [doc for text in rendered.values() for doc in yaml.load_all(text, Loader=yaml.CSafeLoader) if doc]


def timed(fn, iterations: int) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(iterations):
        fn()
    return (time.perf_counter() - start) / iterations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=2000)
    args = parser.parse_args()
    try:
        from helm_python import Chart  # type: ignore[import-not-found]
    except ImportError:
        raise SystemExit("helm-python-sdk is not installed: .venv/bin/pip install '.[bench]'") from None

    ours = load_chart(ROOT / "chart_sources" / "ethstats")
    helm = Chart.load(TWIN)
    values = deep_merge(ours.defaults, COMPUTED)

    def key(obj: dict) -> tuple[str, str]:
        return obj["kind"], obj["metadata"]["name"]

    ours_objects = sorted((r.obj for r in render_chart(ours, RELEASE, COMPUTED)), key=key)
    helm_rendered = sorted(helm_objects(helm, values), key=key)
    if ours_objects != helm_rendered:
        raise SystemExit("the twin charts render different objects; fix the twin before comparing speed")
    count = len(ours_objects)

    ours_s = timed(lambda: render_chart(ours, RELEASE, COMPUTED), args.iterations)
    helm_s = timed(lambda: helm_objects(helm, values), args.iterations)
    helm_text_s = timed(lambda: helm.render(values, name=RELEASE["Name"], namespace=RELEASE["Namespace"]), args.iterations)
    print(f"chart ethstats, {count} objects, {args.iterations} renders each (identical objects checked)")
    print("| engine | µs per render | µs per object |")
    print("|---|---|---|")
    print(f"| chainops (Jinja2 sandbox, objects) | {ours_s * 1e6:.0f} | {ours_s * 1e6 / count:.0f} |")
    print(f"| Helm v4 in-process (objects: render + YAML parse) | {helm_s * 1e6:.0f} | {helm_s * 1e6 / count:.0f} |")
    print(f"| Helm v4 in-process (text only) | {helm_text_s * 1e6:.0f} | {helm_text_s * 1e6 / count:.0f} |")
    print(f"ratio Helm (objects) / chainops: {helm_s / ours_s:.2f}x")


if __name__ == "__main__":
    main()
