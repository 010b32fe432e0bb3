"""Reports from several targets merged into one semantic x target table.

Why its own module: the same table is built from a run (``runner``) and from reports
made elsewhere (``memsyscalls matrix --merge``, e.g. CI jobs), and rendered by ``render``.
Each cell says where the documented behaviour holds, where it differs (documented versus
observed, from the report) and where it could not be checked (and why).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..report.classes import expectation, outcome_class
from ..report.model import ReportError, load_report
from .runner import Result

STATES = ("differs", "passed", "skipped", "unsupported", "absent", "unavailable", "error")


@dataclass
class Cell:
    state: str  # one of STATES
    text: str = ""  # the reason: documented versus observed, or what was missing
    # A differing cell's structured expectation data (None when the report had none) and
    # the report's own reason, for the page; ``text`` is what the Markdown and JSON show.
    expected: str | None = None
    observed: str | None = None
    reason: str | None = None


@dataclass
class Row:
    id: str
    statement: str
    source: str
    tier: str
    cells: dict[str, Cell] = field(default_factory=dict)

    @property
    def differs_in(self) -> list[str]:
        return [label for label, cell in self.cells.items() if cell.state == "differs"]


@dataclass
class Column:
    label: str
    status: str  # ok | unavailable | error
    reason: str | None
    environment: dict[str, Any]
    counts: dict[str, int]
    elapsed: float | None = None
    exit_code: int | None = None


@dataclass
class Table:
    columns: list[Column]
    rows: list[Row]


def differing_text(semantic: Mapping[str, Any]) -> str:
    """A failed semantic's cell: what the documentation predicts versus what was observed.

    The report's expected/observed when its failure message named them; otherwise the
    semantic's statement (what the documentation says) against the failure message."""
    expected, observed = expectation(semantic)
    reason = str(semantic.get("reason") or "").strip() or "no reason recorded"
    if expected and observed:
        return f"documented: {expected}; observed: {observed}"
    statement = str(semantic.get("statement") or "").strip()
    return f"documented: {statement}; observed: {reason}" if statement else f"observed: {reason}"


def merge(results: Sequence[Result]) -> Table:
    """The semantic x environment table; rows with differences first (most differing
    columns first), then by id."""
    columns: list[Column] = []
    rows: dict[str, Row] = {}
    for result in results:
        counts = {state: 0 for state in STATES}
        environment = dict((result.report or {}).get("environment") or {})
        columns.append(Column(result.label, result.status if result.report is not None or result.status != "ok"
                              else "error", result.reason, environment, counts, result.elapsed or None,
                              result.exit_code))
        for semantic in (result.report or {}).get("semantics", []):
            sid = str(semantic["id"])
            row = rows.setdefault(sid, Row(sid, str(semantic.get("statement") or ""),
                                           str(semantic.get("source") or ""), str(semantic.get("tier") or "")))
            kind = outcome_class(semantic)
            reason = str(semantic.get("reason") or "") or None
            if kind == "failed":
                expected, observed = expectation(semantic)
                cell = Cell("differs", differing_text(semantic), expected, observed, reason)
            elif kind in ("skipped", "unsupported"):
                cell = Cell(kind, reason or kind, reason=reason)
            elif kind == "passed":
                cell = Cell("passed")
            else:  # an outcome this version does not know: not checked here, say which
                cell = Cell("skipped", f"{kind}: {reason or 'no reason recorded'}", reason=reason)
            row.cells[result.label] = cell
    for row in rows.values():
        for column in columns:
            if column.label not in row.cells:
                if column.status == "ok":
                    row.cells[column.label] = Cell("absent", "not in this target's report")
                else:
                    row.cells[column.label] = Cell(column.status, column.reason or column.status)
            column.counts[row.cells[column.label].state] += 1
    ordered = sorted(rows.values(), key=lambda r: (-len(r.differs_in), r.id) if r.differs_in else (1, r.id))
    ordered = [r for r in ordered if r.differs_in] + [r for r in ordered if not r.differs_in]
    for row in ordered:
        row.cells = {c.label: row.cells[c.label] for c in columns}
    return Table(columns, ordered)


def results_from_reports(paths: Sequence[str]) -> list[Result]:
    """Results for ``--merge``: one column per report file, labelled by its file name."""
    results = []
    for path in paths:
        label = Path(path).name.removesuffix(".json")
        try:
            results.append(Result(label, label, "ok", None, load_report(path)))
        except ReportError as error:
            results.append(Result(label, label, "error", str(error)))
    return results


def environment_facts(env: Mapping[str, Any]) -> str:
    """The facts that decide most expectations, short: kernel, architecture and page size,
    uid, memlock, sandbox."""
    if not env:
        return ""
    kernel_facts = env.get("kernel") or {}
    kernel = kernel_facts.get("release", "?")
    page = kernel_facts.get("page_size")
    page_text = f"{page // 1024} KiB pages" if isinstance(page, int) else "? pages"
    identity = env.get("identity") or {}
    memlock = ((env.get("rlimits") or {}).get("memlock") or {}).get("soft")
    memlock_text = "unlimited" if memlock is None else (f"{memlock // 1024} KiB" if memlock < 1 << 20
                                                        else f"{memlock // (1 << 20)} MiB")
    caps = (env.get("capabilities") or {}).get("effective") or []
    sandbox = (env.get("sandbox") or {}).get("kind", "?")
    return (f"kernel {kernel} ({kernel_facts.get('arch', '?')}, {page_text}), uid {identity.get('euid', '?')}, "
            f"{len(caps)} caps, memlock {memlock_text}, "
            f"sandbox {sandbox}")


def to_json(table: Table, wall: float | None = None) -> dict[str, Any]:
    return {
        "schema": "pytest-memsyscalls/matrix/v1",
        "wall_seconds": None if wall is None else round(wall, 1),
        "columns": [{"label": c.label, "status": c.status, "reason": c.reason, "counts": c.counts,
                     "elapsed": None if c.elapsed is None else round(c.elapsed, 1), "exit_code": c.exit_code,
                     "facts": environment_facts(c.environment)} for c in table.columns],
        "rows": [{"id": r.id, "statement": r.statement, "source": r.source, "tier": r.tier,
                  "cells": {label: {"state": cell.state, "text": cell.text} for label, cell in r.cells.items()}}
                 for r in table.rows],
    }
