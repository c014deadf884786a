"""Markdown from sandboxed Jinja2 templates (`templates/`, StrictUndefined, no
autoescape: values go through the escaping filters here), shared by the review summary
and the network page."""

from __future__ import annotations

import re
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

TEMPLATES_DIR = Path(__file__).with_name("templates")


def md_code(value: Any) -> str:
    """Inline code that survives any backticks inside the value."""
    text = str(value).replace("\n", " ")
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def md_cell(value: Any) -> str:
    """Text safe inside a Markdown table cell."""
    return str(value).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def mermaid_label(value: Any) -> str:
    return str(value).replace('"', "#quot;").replace("\n", " ")


def ether(wei: int) -> str:
    """Exact decimal ether for a wei amount (no float rounding)."""
    text = format(Decimal(wei).scaleb(-18).normalize(), "f")
    return text


@lru_cache(maxsize=1)
def template_env() -> SandboxedEnvironment:
    env = SandboxedEnvironment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)),
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # Markdown, not HTML; values go through md_code / md_cell
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(code=md_code, cell=md_cell, mlabel=mermaid_label)
    return env
