"""Plain-text rendering shared by the commands: aligned tables, dollars, numbers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Columns aligned on their widest cell, with a rule under the header."""
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=False)]
    lines = [
        "  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=False)).rstrip()
        for row in (header, *rows)
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def usd(value: float | None) -> str:
    """Dollars to the micro-dollar; an unknown cost reads 'unknown', never $0."""
    return "unknown" if value is None else f"${value:.6f}"


def num(value: Any) -> str:
    """A catalog figure for a table: '-' when missing, yes/no for flags."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
