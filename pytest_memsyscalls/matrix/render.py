"""The merged table as Markdown, HTML and JSON files.

Why apart from the table: what a cell means is the table's business; how it looks on a
CI summary page or in a browser is this module's.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from ..report.classes import clip, family_of
from ..report.page import CLASSES, Entry, Head, Line, head_facts, head_title, render_page
from .table import Cell, Column, Table, environment_facts, to_json


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ").strip()


def column_summary(column: Column) -> str:
    if column.status != "ok":
        return f"{column.status}: {column.reason}"
    counts = column.counts
    text = f"{counts['passed']} passed, {counts['differs']} differ, {counts['skipped']} skipped"
    if counts.get("unsupported"):
        text += f", {counts['unsupported']} unsupported"
    if counts["absent"]:
        text += f", {counts['absent']} absent"
    return text


def render_markdown(table: Table, wall: float | None = None) -> str:
    lines = ["# pytest-memsyscalls environment matrix", ""]
    if wall is not None:
        lines += [f"Wall time: {wall:.0f} s for {len(table.columns)} targets.", ""]
    lines += ["| target | result | time | environment |", "|---|---|---|---|"]
    for c in table.columns:
        took = "" if c.elapsed is None else f"{c.elapsed:.0f} s"
        lines.append(f"| {c.label} | {_md(column_summary(c))} | {took} | {_md(environment_facts(c.environment))} |")
    differing = [r for r in table.rows if r.differs_in]
    lines += ["", f"## Semantics that differ somewhere ({len(differing)})", ""]
    for row in differing:
        lines += [f"### `{row.id}` ({row.tier}; {row.source})", "", _md(row.statement), ""]
        lines += ["| target | outcome | documented versus observed, or why not checked |", "|---|---|---|"]
        for label, cell in row.cells.items():
            shown = f"**{cell.state}**" if cell.state == "differs" else cell.state
            lines.append(f"| {label} | {shown} | {_md(cell.text)} |")
        lines.append("")
    short = {"passed": "pass", "differs": "**DIFFERS**", "skipped": "skip", "unsupported": "unsup", "absent": "absent",
             "unavailable": "n/a", "error": "error"}
    lines += ["## All semantics", "", "Cells: pass, **DIFFERS** (see above), skip and unsup (unsupported; reason "
              "in the list below), n/a (target unavailable).", ""]
    lines.append("| semantic | " + " | ".join(c.label for c in table.columns) + " |")
    lines.append("|---" * (len(table.columns) + 1) + "|")
    for row in table.rows:
        lines.append(f"| `{row.id}` | " + " | ".join(short[cell.state] for cell in row.cells.values()) + " |")
    skips: dict[str, list[str]] = {}
    for row in table.rows:
        for label, cell in row.cells.items():
            if cell.state in ("skipped", "unsupported"):
                skips.setdefault(f"`{row.id}`: {_md(cell.text)}", []).append(label)
    if skips:
        lines += ["", "## Skips and their reasons", ""]
        for text, labels in skips.items():
            lines.append(f"- {text} — {', '.join(labels)}")
    return "\n".join(lines) + "\n"


_PAGE_CLASS = {"differs": "differs", "passed": "pass", "skipped": "skip", "unsupported": "unsup",
               "absent": "absent", "unavailable": "na", "error": "error"}


def _entry(cell: Cell) -> Entry:
    css = _PAGE_CLASS.get(cell.state, "skip")
    word = CLASSES[css][0]
    if cell.state == "differs":
        if cell.expected and cell.observed:
            return Entry(css, word, cell.expected, cell.observed, flagged=True)
        return Entry(css, word, reason=clip(cell.reason or cell.text), flagged=True)
    return Entry(css, word, reason="" if css == "pass" else clip(cell.text, 240))


def _targets_html(table: Table) -> str:
    """The targets in detail (folded): counts, time and the environment facts in full."""
    e = html.escape
    rows = []
    for c in table.columns:
        took = "" if c.elapsed is None else f"{c.elapsed:.0f} s"
        rows.append(f"<tr><th>{e(c.label)}</th><td>{e(column_summary(c))}</td><td>{took}</td>"
                    f"<td>{e(environment_facts(c.environment))}</td></tr>")
    return (f"<details class=targets><summary>{len(table.columns)} targets: counts, time, environment</summary>"
            "<table><tr><th>target</th><th>result</th><th>time</th><th>environment</th></tr>"
            + "".join(rows) + "</table></details>")


def render_html(table: Table, wall: float | None = None) -> str:
    """matrix.html: the page (report.page) with one column per target."""
    heads = [Head(c.label, head_facts(c.environment) if c.status == "ok" else [c.status],
                  head_title(c.environment) if c.status == "ok" else f"{c.status}: {c.reason}",
                  c.status if c.status in ("ok", "unavailable") else "error") for c in table.columns]
    lines = [Line(row.id, row.statement, row.source, row.tier, [_entry(cell) for cell in row.cells.values()],
                  bool(row.differs_in)) for row in table.rows]
    differing = sum(1 for line in lines if line.flagged)
    families = len({family_of(row.id) for row in table.rows})
    intro = [f"{len(lines)} semantics in {families} families, {len(table.columns)} targets: {differing} differ "
             "from the documentation somewhere." + (f" Wall time {wall:.0f} s." if wall is not None else "")]
    down = [c for c in table.columns if c.status != "ok"]
    if down:
        intro.append("!Not checked: " + "; ".join(f"{c.label} ({c.status}: {c.reason})" for c in down))
    return render_page("pytest-memsyscalls environment matrix", "Memory-syscall semantics across targets", intro,
                       heads, lines, flagged_label="only differing semantics", targets_html=_targets_html(table),
                       footer="Generated by memsyscalls matrix. Each target's full record is its <label>.json; "
                              "matrix.md and matrix.json hold the same table.")


def write_outputs(table: Table, out_dir: Path, wall: float | None) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in (("matrix.md", render_markdown(table, wall)), ("matrix.html", render_html(table, wall)),
                       ("matrix.json", json.dumps(to_json(table, wall), indent=2) + "\n")):
        (out_dir / name).write_text(text, encoding="utf-8")
        written.append(out_dir / name)
    return written
