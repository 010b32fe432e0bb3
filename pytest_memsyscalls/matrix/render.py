"""The merged table as Markdown, HTML and JSON files.

Why apart from the table: what a cell means is the table's business; how it looks on a
CI summary page or in a browser is this module's.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from .table import Column, Table, environment_facts, to_json


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ").strip()


def column_summary(column: Column) -> str:
    if column.status != "ok":
        return f"{column.status}: {column.reason}"
    counts = column.counts
    text = (f"{counts['passed']} passed, {counts['differs']} differ, {counts['skipped']} skipped, "
            f"{counts['unsupported']} unsupported")
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
    short = {"passed": "pass", "differs": "**DIFFERS**", "skipped": "skip", "unsupported": "unsupported",
             "absent": "absent", "unavailable": "n/a", "error": "error"}
    lines += ["## All semantics", "", "Cells: pass, **DIFFERS** (see above), skip and unsupported (reasons in "
              "the list below; unsupported: a probe found a feature missing where the promise was unknown), "
              "n/a (target unavailable).", ""]
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


_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:1em 0}
th,td{border:1px solid #ccc;padding:3px 6px;vertical-align:top;text-align:left}
thead th{position:sticky;top:0;background:#f4f4f4}
td.passed{background:#e6f4e6}td.differs{background:#fbd9d3}td.skipped{background:#f3f0d7}
td.unsupported{background:#e3dcf3}
td.unavailable,td.error,td.absent{background:#e8e8e8;color:#666}
td small{display:block;max-width:28em;font-size:12px;color:#333;white-space:pre-wrap}
tr.same td small{display:none}
code{font-size:12px}.stmt{font-size:12px;color:#555;max-width:30em}
label{margin-left:1em}
body.only-differs tr.same{display:none}
"""


def render_html(table: Table, wall: float | None = None) -> str:
    e = html.escape
    out = ["<!doctype html><html><head><meta charset='utf-8'>",
           "<title>pytest-memsyscalls environment matrix</title>", f"<style>{_CSS}</style></head><body>",
           "<h1>pytest-memsyscalls environment matrix</h1>"]
    if wall is not None:
        out.append(f"<p>Wall time: {wall:.0f} s for {len(table.columns)} targets.</p>")
    out.append("<table><thead><tr><th>target</th><th>result</th><th>time</th><th>environment</th></tr></thead>")
    for c in table.columns:
        took = "" if c.elapsed is None else f"{c.elapsed:.0f} s"
        out.append(f"<tr><td>{e(c.label)}</td><td>{e(column_summary(c))}</td><td>{took}</td>"
                   f"<td>{e(environment_facts(c.environment))}</td></tr>")
    out.append("</table>")
    differing = sum(1 for r in table.rows if r.differs_in)
    out.append(f"<p>{len(table.rows)} semantics; {differing} differ in at least one environment (listed first)."
               "<label><input type=checkbox onchange=\"document.body.classList.toggle('only-differs',this.checked)\">"
               " only differing semantics</label></p>")
    out.append("<table><thead><tr><th>semantic</th>" + "".join(f"<th>{e(c.label)}</th>" for c in table.columns)
               + "</tr></thead><tbody>")
    for row in table.rows:
        kind = "differs" if row.differs_in else "same"
        cells = []
        for cell in row.cells.values():
            detail = f"<small>{e(cell.text)}</small>" if cell.text and cell.state != "passed" else ""
            cells.append(f"<td class='{cell.state}' title='{e(cell.text)}'>{cell.state}{detail}</td>")
        out.append(f"<tr class='{kind}'><td><code>{e(row.id)}</code><div class=stmt>{e(row.statement)} "
                   f"({e(row.tier)}; {e(row.source)})</div></td>{''.join(cells)}</tr>")
    out.append("</tbody></table></body></html>")
    return "\n".join(out) + "\n"


def write_outputs(table: Table, out_dir: Path, wall: float | None) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in (("matrix.md", render_markdown(table, wall)), ("matrix.html", render_html(table, wall)),
                       ("matrix.json", json.dumps(to_json(table, wall), indent=2) + "\n")):
        (out_dir / name).write_text(text, encoding="utf-8")
        written.append(out_dir / name)
    return written
