"""Plot compile time against the number of environments on log-log axes (an SVG file).

    .venv/bin/python benchmarks/plot.py benchmarks/results/n*.json --out benchmarks/scaling.svg

Plain SVG so the plot needs no plotting library; a straight line of slope 1 means cost
grows linearly with the number of environments.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

WIDTH, HEIGHT, MARGIN = 640, 420, 70
SERIES = {"full compile": "#1f77b4", "no-change re-run": "#2ca02c"}


def _scale(value: float, low: float, high: float, start: float, end: float) -> float:
    span = math.log10(high) - math.log10(low)
    return start + (math.log10(value) - math.log10(low)) / span * (end - start)


def render(reports: list[dict]) -> str:
    reports = sorted(reports, key=lambda r: r["environments"])
    ns = [r["environments"] for r in reports]
    times = [x["seconds"] for r in reports for x in r["results"] if x["run"] in SERIES]
    x_low, x_high = 10 ** math.floor(math.log10(min(ns))), 10 ** math.ceil(math.log10(max(ns)))
    y_low, y_high = 10 ** math.floor(math.log10(max(min(times), 0.01))), 10 ** math.ceil(math.log10(max(times)))

    def x(n: float) -> float:
        return _scale(n, x_low, x_high, MARGIN, WIDTH - MARGIN)

    def y(t: float) -> float:
        return _scale(max(t, y_low), y_low, y_high, HEIGHT - MARGIN, MARGIN)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif" font-size="12">',
        '<rect width="100%" height="100%" fill="white"/>',
        f'<text x="{WIDTH / 2}" y="24" text-anchor="middle" font-size="14">chainops compile time vs environments '
        f"({reports[0]['nodes_per_environment']} nodes each, log-log)</text>",
    ]
    decade = x_low
    while decade <= x_high:
        parts.append(f'<line x1="{x(decade):.1f}" y1="{MARGIN}" x2="{x(decade):.1f}" y2="{HEIGHT - MARGIN}" stroke="#ddd"/>')
        parts.append(f'<text x="{x(decade):.1f}" y="{HEIGHT - MARGIN + 18}" text-anchor="middle">{decade:g}</text>')
        decade *= 10
    decade = y_low
    while decade <= y_high:
        parts.append(f'<line x1="{MARGIN}" y1="{y(decade):.1f}" x2="{WIDTH - MARGIN}" y2="{y(decade):.1f}" stroke="#ddd"/>')
        parts.append(f'<text x="{MARGIN - 8}" y="{y(decade) + 4:.1f}" text-anchor="end">{decade:g} s</text>')
        decade *= 10
    parts.append(f'<text x="{WIDTH / 2}" y="{HEIGHT - 20}" text-anchor="middle">environments</text>')
    for i, (name, colour) in enumerate(SERIES.items()):
        points = [(r["environments"], next(x["seconds"] for x in r["results"] if x["run"] == name)) for r in reports]
        path = " ".join(f"{x(n):.1f},{y(t):.1f}" for n, t in points)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for n, t in points:
            parts.append(f'<circle cx="{x(n):.1f}" cy="{y(t):.1f}" r="3.5" fill="{colour}"/>')
            parts.append(f'<text x="{x(n) + 6:.1f}" y="{y(t) - 6:.1f}" fill="{colour}">{t:g} s</text>')
        parts.append(f'<text x="{MARGIN + 10}" y="{MARGIN + 16 + 16 * i}" fill="{colour}">{name}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/scaling.svg"))
    args = parser.parse_args()
    args.out.write_text(render([json.loads(p.read_text()) for p in args.results]))


if __name__ == "__main__":
    main()
