"""The tests' own YAML reader: libyaml's safe loader, independent of chainops' loader
(`pipelines.lib.yaml_io`), and fast enough to read every committed file in every test
(PyYAML's pure-Python `safe_load` was about 7% of the fast suite's profiled time)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import yaml


def read_yaml(text: str | bytes) -> Any:
    return yaml.load(text, Loader=yaml.CSafeLoader)


def read_yaml_all(text: str | bytes) -> Iterator[Any]:
    return yaml.load_all(text, Loader=yaml.CSafeLoader)
