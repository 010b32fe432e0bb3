"""The conformance report as a document: what one test and one semantic record.

Why: a conformance run is only useful to CI when its verdict is a document. Every
semantic's outcome goes into one JSON report (``--memsys-report=PATH``) and into the
JUnit XML properties (``--junitxml``), and a saved report can gate later runs
(``--memsys-baseline=PATH``): a semantic whose outcome changed fails the session,
while deviations the baseline already recorded pass as known.

Report schema ``pytest-memsyscalls/report/v1`` (JSON Schema: ``report-v1.schema.json``
next to this module)::

    {
      "schema": "pytest-memsyscalls/report/v1",
      "generator": {"name": "pytest-memsyscalls", "version": "0.1.0", "pytest": "9.0.3"},
      "created": "2024-01-01T00:00:00Z",          # UTC; ignored by comparisons
      "environment": {...},                      # the environment fingerprint's as_dict()
      "summary": {"semantics": N, "passed": P, "failed": F, "skipped": S, "unsupported": U},
      "semantics": [                             # sorted by id
        {
          "id": "mprotect.readonly.write_faults",
          "statement": "...", "source": "mprotect(2)", "tier": "posix",
          "outcome": "passed" | "failed" | "skipped" | "unsupported",
          "reason": null | "what the documentation predicts and what was observed" | "needs:CAP_IPC_LOCK",
          "expected": null | "...", "observed": null | "...",   # from a failed expectation's fields
          "nodeids": ["conformance/test_x.py::test_y[a]", ...], # sorted
          "tests": [{"nodeid": ..., "outcome": ..., "phase": "setup"|"call"|"teardown", "reason": ...,
                     "expected": ..., "observed": ...}, ...]      # sorted by nodeid
        }, ...
      ]
    }

Outcome of one test: a failure or error in any phase is ``failed`` (``phase`` says where);
an xfail is ``failed`` too (the documented behaviour did not hold; the reason says it was
expected to fail); otherwise a skip whose reason starts ``unsupported:`` is ``unsupported``
(the environment's promise of a feature is unknown and a probe found it missing,
environment/features.py), any other skip ``skipped``; otherwise ``passed``. A semantic
checked by several tests is ``failed`` if any failed; if none ran, ``unsupported`` if any
test was unsupported, else ``skipped``; ``passed`` otherwise.

The functions here work on plain dicts and dataclasses, so they are testable without pytest.
``expected`` and ``observed`` come from the failed expectation itself
(``memory.expectations.ExpectationFailed``), never from its message.
"""

from __future__ import annotations

import datetime
import json
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

SCHEMA = "pytest-memsyscalls/report/v1"
SCHEMA_FILE = Path(__file__).with_name("report-v1.schema.json")
OUTCOMES = ("passed", "failed", "skipped", "unsupported")
UNSUPPORTED_PREFIX = "unsupported:"
MAX_REASON = 2000



@dataclass(frozen=True)
class Phase:
    """What one phase (setup, call, teardown) of a test reported."""

    when: str
    outcome: str  # passed | failed | skipped (pytest's report.outcome)
    message: str | None = None  # crash message or skip reason
    xfail: str | None = None  # the xfail reason when the phase xfailed/xpassed
    expected: str | None = None  # what the documentation predicts, from a failed expectation
    observed: str | None = None  # what happened instead, from the same


def test_outcome(phases: Sequence[Phase]) -> dict[str, str | None]:
    """The outcome of one test from its phases, as the report records it."""
    for phase in phases:
        if phase.outcome == "failed":
            prefix = "" if phase.when == "call" else f"error in {phase.when}: "
            return _result("failed", phase, prefix + (phase.message or "failed"))
    for phase in phases:
        if phase.outcome == "skipped" and phase.xfail is not None:
            why = f" (marked xfail: {phase.xfail})" if phase.xfail else " (marked xfail)"
            return _result("failed", phase, (phase.message or "failed") + why)
    for phase in phases:
        if phase.outcome == "skipped":
            message = phase.message or "skipped"
            return _result("unsupported" if message.startswith(UNSUPPORTED_PREFIX) else "skipped", phase, message)
    return _result("passed", Phase("call", "passed"), None)


def _result(outcome: str, phase: Phase, reason: str | None) -> dict[str, str | None]:
    failed = outcome == "failed"
    return {"outcome": outcome, "phase": phase.when, "reason": _clip(reason),
            "expected": _clip(phase.expected) if failed else None,
            "observed": _clip(phase.observed) if failed else None}


def _clip(text: str | None) -> str | None:
    if text is None:
        return None
    text = text.strip()
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 1] + "…"


# --- aggregation --------------------------------------------------------------------


def aggregate(tests: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Semantics from per-test records (each: nodeid, id, statement, source, tier,
    outcome, phase, reason, expected, observed), sorted by id."""
    grouped: dict[str, list[Mapping[str, Any]]] = {}
    for test in tests:
        grouped.setdefault(str(test["id"]), []).append(test)
    semantics = []
    for sid in sorted(grouped):
        members = sorted(grouped[sid], key=lambda t: str(t["nodeid"]))
        outcomes = [t["outcome"] for t in members]
        if "failed" in outcomes:
            outcome = "failed"
            deciding = [t for t in members if t["outcome"] == "failed"]
        elif all(o in ("skipped", "unsupported") for o in outcomes):
            outcome = "unsupported" if "unsupported" in outcomes else "skipped"
            deciding = members
        else:
            outcome = "passed"
            deciding = []
        reason = None
        if outcome in ("skipped", "unsupported"):
            reason = "; ".join(dict.fromkeys(str(t["reason"]) for t in deciding))
        elif outcome == "failed":
            reason = str(deciding[0]["reason"])
            if len(deciding) > 1:
                reason += f" (and {len(deciding) - 1} more failing test{'s' if len(deciding) > 2 else ''})"
        head = members[0]
        semantics.append({
            "id": sid,
            "statement": head.get("statement"),
            "source": head.get("source"),
            "tier": head.get("tier"),
            "outcome": outcome,
            "reason": _clip(reason),
            "expected": deciding[0].get("expected") if outcome == "failed" else None,
            "observed": deciding[0].get("observed") if outcome == "failed" else None,
            "nodeids": [str(t["nodeid"]) for t in members],
            "tests": [{key: t.get(key) for key in ("nodeid", "outcome", "phase", "reason", "expected", "observed")}
                      for t in members],
        })
    return semantics


def summarize(semantics: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    counts = {"semantics": len(semantics), "passed": 0, "failed": 0, "skipped": 0, "unsupported": 0}
    for row in semantics:
        counts[str(row["outcome"])] += 1
    return counts


def build_report(tests: Iterable[Mapping[str, Any]], environment: Mapping[str, Any],
                 created: str | None = None, complete: bool = True) -> dict[str, Any]:
    """The v1 report document."""
    try:
        version = metadata.version("pytest-memsyscalls")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a checkout
        version = "unknown"
    semantics = aggregate(tests)
    if created is None:
        created = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "schema": SCHEMA,
        "generator": {"name": "pytest-memsyscalls", "version": version, "pytest": metadata.version("pytest")},
        "created": created,
        "complete": complete,  # False: written while the run went on, so a run that dies leaves what it has
        "environment": dict(environment),
        "summary": summarize(semantics),
        "semantics": semantics,
    }


def dumps(report: Mapping[str, Any]) -> str:
    return json.dumps(report, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_report(report: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write atomically (a reader never sees half a report)."""
    target = Path(path)  # its directory must exist (report.paths): a typo is not a new tree
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(dumps(report))
        os.replace(tmp, target)
    except BaseException:
        os.unlink(tmp)
        raise
    return target


class ReportError(ValueError):
    """A file is not a readable v1 report."""


def load_report(path: str | os.PathLike[str]) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise ReportError(f"cannot read report {os.fspath(path)!r}: {error.strerror or error}") from None
    except ValueError as error:
        raise ReportError(f"report {os.fspath(path)!r} is not JSON: {error}") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        found = data.get("schema") if isinstance(data, dict) else type(data).__name__
        raise ReportError(f"report {os.fspath(path)!r} has schema {found!r}, expected {SCHEMA!r}")
    rows = data.get("semantics")
    if not isinstance(rows, list) or not all(isinstance(r, dict) and "id" in r and r.get("outcome") in OUTCOMES
                                             for r in rows):
        raise ReportError(f"report {os.fspath(path)!r}: 'semantics' must be a list of "
                          f"{{id, outcome in {OUTCOMES}, ...}}")
    return data
