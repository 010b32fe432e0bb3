"""Two reports' differences as text: the table ``memsyscalls diff`` and the baseline gate print."""

from __future__ import annotations

from .baseline import Comparison


def render_table(comparison: Comparison, include_same: bool = False) -> str:
    """A plain-text table of the differences."""
    rows = [d for d in comparison.differences if include_same or d.kind != "same"]
    header = ("semantic", "baseline", "now", "change")
    table = [header] + [(d.id, d.old or "-", d.new or "-", d.kind) for d in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in table]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)
