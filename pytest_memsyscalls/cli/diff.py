"""``memsyscalls diff OLD NEW``: what changed between two conformance reports."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..report.baseline import compare
from ..report.diff import render_table
from ..report.model import OUTCOMES, ReportError, load_report
from ..report.page import render_diff_page


def cmd_diff(argv: Sequence[str]) -> int:
    """``memsyscalls diff OLD NEW``: 0 when every semantic has the same outcome in both,
    1 when any outcome differs (or a semantic is only in one), 2 when a report is unreadable."""
    parser = argparse.ArgumentParser(prog="memsyscalls diff",
                                     description="differences in outcome between two conformance reports")
    parser.add_argument("old", help="the earlier report (e.g. the baseline)")
    parser.add_argument("new", help="the later report")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--all", action="store_true", help="list unchanged semantics too")
    parser.add_argument("--html", metavar="PATH",
                        help="also write a self-contained page of the changes, grouped by family")
    options = parser.parse_args(list(argv))
    try:
        old, new = load_report(options.old), load_report(options.new)
    except ReportError as error:
        print(f"memsyscalls diff: {error}", file=sys.stderr)
        return 2
    comparison = compare(old, new)
    status = 1 if comparison.outcome_changes else 0
    if options.html:
        page = render_diff_page(old, new, comparison, Path(options.old).name.removesuffix(".json"),
                                Path(options.new).name.removesuffix(".json"))
        target = Path(options.html)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(page, encoding="utf-8")
        print(f"wrote {target}", file=sys.stderr)
    if options.json:
        document = comparison.as_dict()
        document.pop("failing")
        document["identical_outcomes"] = status == 0
        print(json.dumps(document, indent=2, sort_keys=True))
        return status
    shown = [d for d in comparison.differences if options.all or d.kind != "same"]
    if shown:
        print(render_table(comparison, include_same=options.all))
        print()
    counts = comparison.as_dict()["counts"]
    total = len(comparison.differences)
    parts = [f"{counts.get(kind, 0)} {kind}" for kind in ("changed", "new", "missing") if counts.get(kind)]
    extra = [f"{counts.get(kind, 0)} {kind}" for kind in ("changed-failure", "reason-changed") if counts.get(kind)]
    verdict = "outcomes differ: " + ", ".join(parts) if parts else "identical outcomes"
    for label, report in (("old", old), ("new", new)):
        print(f"{label}: {outcome_counts(report)}")
    print(f"{total} semantics compared; {verdict}" + (f" (also {', '.join(extra)})" if extra else ""))
    return status


def outcome_counts(report: dict[str, Any]) -> str:
    """'P passed, F failed, S skipped, U unsupported': unsupported counted apart from skips."""
    counts = dict.fromkeys(OUTCOMES, 0)
    for row in report.get("semantics", []):
        counts[str(row["outcome"])] += 1
    return ", ".join(f"{counts[outcome]} {outcome}" for outcome in OUTCOMES)
