"""The conformance report and the baseline gate.

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
      "environment": {...},                      # get_environment(config).as_dict()
      "summary": {"semantics": N, "passed": P, "failed": F, "skipped": S},
      "semantics": [                             # sorted by id
        {
          "id": "mprotect.readonly.write_faults",
          "statement": "...", "source": "mprotect(2)", "tier": "posix",
          "outcome": "passed" | "failed" | "skipped",
          "reason": null | "what the documentation predicts and what was observed" | "needs:CAP_IPC_LOCK",
          "expected": null | "...", "observed": null | "...",   # when a failure message names them
          "nodeids": ["conformance/test_x.py::test_y[a]", ...], # sorted
          "tests": [{"nodeid": ..., "outcome": ..., "phase": "setup"|"call"|"teardown", "reason": ...,
                     "expected": ..., "observed": ...}, ...]      # sorted by nodeid
        }, ...
      ]
    }

Outcome of one test: a failure or error in any phase is ``failed`` (``phase`` says where);
an xfail is ``failed`` too (the documented behaviour did not hold; the reason says it was
expected to fail); otherwise a skip is ``skipped``; otherwise ``passed``. A semantic checked
by several tests is ``failed`` if any failed, ``skipped`` if all skipped, ``passed`` otherwise.

The gate compares outcomes by semantic id. Changed outcome: fails. Failed in both with the
same reason (addresses and long numbers normalised): known deviation, passes. Failed in both
with a different reason: fails. New semantics are reported; a new skip fails with
``--memsys-strict``. Semantics the baseline had but this run lacks are reported; they fail
with ``--memsys-strict``. When the gate passes and every failed test belongs to a known
deviation, the session's exit status becomes 0.

Pure functions (``test_outcome``, ``aggregate``, ``build_report``, ``compare``, ``diff``)
work on plain dicts, so they are testable without pytest.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from . import settings
from .semantics import semantic_of

SCHEMA = "pytest-memsyscalls/report/v1"
SCHEMA_FILE = Path(__file__).with_name("report-v1.schema.json")
OUTCOMES = ("passed", "failed", "skipped")
MAX_REASON = 2000

# user_properties this module adds to the teardown report (and so to JUnit XML)
PROP_SEMANTIC = "memsys_semantic"
PROP_TIER = "memsys_tier"
PROP_SOURCE = "memsys_source"
PROP_STATEMENT = "memsys_statement"
PROP_OUTCOME = "memsys_outcome"
PROP_REASON = "memsys_reason"
PROP_PHASE = "memsys_phase"
PROP_EXPECTED = "memsys_expected"
PROP_OBSERVED = "memsys_observed"


# --- one test's outcome -------------------------------------------------------------


@dataclass(frozen=True)
class Phase:
    """What one phase (setup, call, teardown) of a test reported."""

    when: str
    outcome: str  # passed | failed | skipped (pytest's report.outcome)
    message: str | None = None  # crash message or skip reason
    xfail: str | None = None  # the xfail reason when the phase xfailed/xpassed


def test_outcome(phases: Sequence[Phase]) -> dict[str, str | None]:
    """The outcome of one test from its phases, as the report records it."""
    for phase in phases:
        if phase.outcome == "failed":
            prefix = "" if phase.when == "call" else f"error in {phase.when}: "
            return _result("failed", phase.when, prefix + (phase.message or "failed"))
    for phase in phases:
        if phase.outcome == "skipped" and phase.xfail is not None:
            why = f" (marked xfail: {phase.xfail})" if phase.xfail else " (marked xfail)"
            return _result("failed", phase.when, (phase.message or "failed") + why)
    for phase in phases:
        if phase.outcome == "skipped":
            return _result("skipped", phase.when, phase.message or "skipped")
    return _result("passed", "call", None)


def _result(outcome: str, phase: str, reason: str | None) -> dict[str, str | None]:
    expected, observed = split_expected_observed(reason) if outcome == "failed" else (None, None)
    return {"outcome": outcome, "phase": phase, "reason": _clip(reason), "expected": expected,
            "observed": observed}


_SHOULD = re.compile(r"^(?:error in \w+: )?(?P<call>.*?) should (?P<expected>[^;]+); (?:it )?(?P<observed>.+)$")
_EXPECTED = re.compile(r"^(?:error in \w+: )?expected (?P<expected>[^;]+); (?:got )?(?P<observed>.+)$",
                       re.IGNORECASE)


def split_expected_observed(message: str | None) -> tuple[str | None, str | None]:
    """What the documentation predicts and what was observed, from a failure message.

    Understands the assertion helpers' wording: "CALL should fail with EINVAL; it
    succeeded" and "expected SIGSEGV (SEGV_ACCERR); got ...". (None, None) otherwise.
    """
    if not message:
        return None, None
    first = message.strip().splitlines()[0]
    found = _SHOULD.match(first)
    if found:
        call = found.group("call").strip()
        return f"{call} should {found.group('expected').strip()}".strip(), found.group("observed").strip()
    found = _EXPECTED.match(first)
    if found:
        return found.group("expected").strip(), found.group("observed").strip()
    return None, None


def _clip(text: str | None) -> str | None:
    if text is None:
        return None
    text = text.strip()
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 1] + "…"


def _crash_message(report: pytest.TestReport) -> str:
    """The crash line of a failure: the assertion message, without 'AssertionError: '."""
    longrepr = report.longrepr
    crash = getattr(longrepr, "reprcrash", None)
    message = getattr(crash, "message", None)
    if not message:
        text = str(longrepr or "").strip()
        lines = [line for line in text.splitlines() if line.strip()]
        errors = [line[1:].strip() for line in lines if line.startswith("E ")]
        message = errors[0] if errors else (lines[-1] if lines else "failed")
    message = str(message)
    for prefix in ("AssertionError: ", "E   "):
        message = message.removeprefix(prefix)
    return message.strip() or "failed"


def _skip_message(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        message = str(longrepr[2])
    else:
        message = str(getattr(getattr(longrepr, "reprcrash", None), "message", None) or longrepr or "skipped")
    return message.removeprefix("Skipped: ").strip() or "skipped"


def phase_of(report: pytest.TestReport) -> Phase:
    """The Phase one pytest report describes."""
    xfail = getattr(report, "wasxfail", None)
    if report.failed:
        return Phase(report.when, "failed", _crash_message(report))
    if report.skipped:
        if xfail is not None:
            return Phase(report.when, "skipped", _crash_message(report), xfail=str(xfail))
        return Phase(report.when, "skipped", _skip_message(report))
    return Phase(report.when, "passed", xfail=None if xfail is None else str(xfail))


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
        elif all(o == "skipped" for o in outcomes):
            outcome = "skipped"
            deciding = members
        else:
            outcome = "passed"
            deciding = []
        reason = None
        if outcome == "skipped":
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
    counts = {"semantics": len(semantics), "passed": 0, "failed": 0, "skipped": 0}
    for row in semantics:
        counts[str(row["outcome"])] += 1
    return counts


def build_report(tests: Iterable[Mapping[str, Any]], environment: Mapping[str, Any],
                 created: str | None = None) -> dict[str, Any]:
    """The v1 report document."""
    from importlib import metadata

    try:
        version = metadata.version("pytest-memsyscalls")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a checkout
        version = "unknown"
    semantics = aggregate(tests)
    if created is None:
        created = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "schema": SCHEMA,
        "generator": {"name": "pytest-memsyscalls", "version": version, "pytest": pytest.__version__},
        "created": created,
        "environment": dict(environment),
        "summary": summarize(semantics),
        "semantics": semantics,
    }


def dumps(report: Mapping[str, Any]) -> str:
    return json.dumps(report, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_report(report: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write atomically (a reader never sees half a report)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
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


# --- comparison ---------------------------------------------------------------------

_HEX = re.compile(r"0x[0-9a-fA-F]+")
# pytest shortens long reprs in crash lines ("Faul...7f7a74106000)"): bare hex runs too.
_BARE_HEX = re.compile(r"(?<![0-9A-Za-z])[0-9a-fA-F]{8,}(?![0-9A-Za-z])|(?<=\.\.\.)[0-9a-fA-F]+")
_LONG_NUMBER = re.compile(r"\b\d{6,}\b")


def normalize_reason(reason: str | None) -> str:
    """A reason with run-specific numbers (addresses, pids, long counts) blanked."""
    if not reason:
        return ""
    return _LONG_NUMBER.sub("N", _BARE_HEX.sub("?", _HEX.sub("0x?", reason))).strip()


@dataclass(frozen=True)
class Difference:
    """One semantic compared between a baseline (old) and this run (new)."""

    id: str
    kind: str  # changed | changed-failure | known | new | missing | reason-changed | same
    old: str | None  # outcome in the baseline (None: absent)
    new: str | None  # outcome in this run (None: absent)
    old_reason: str | None = None
    new_reason: str | None = None
    failing: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "old": self.old, "new": self.new,
                "old_reason": self.old_reason, "new_reason": self.new_reason, "failing": self.failing}

    def describe(self) -> str:
        old, new = self.old or "absent", self.new or "absent"
        text = {
            "changed": f"{self.id}: {old} -> {new}",
            "changed-failure": f"{self.id}: known deviation, failing with another message",
            "known": f"{self.id}: known deviation",
            "new": f"{self.id}: new in this run ({new})",
            "missing": f"{self.id}: in the baseline ({old}) but not in this run",
            "reason-changed": f"{self.id}: still {new}, reason changed",
            "same": f"{self.id}: {new}",
        }[self.kind]
        details = []
        if self.kind in ("changed", "changed-failure", "reason-changed", "missing") and self.old_reason:
            details.append(f"baseline: {self.old_reason}")
        if self.new_reason and self.kind != "missing":
            details.append(f"now: {self.new_reason}" if self.kind != "known" else self.new_reason)
        return text + "".join("\n    " + line.replace("\n", "\n      ") for line in details)


@dataclass
class Comparison:
    differences: list[Difference] = field(default_factory=list)

    def of_kind(self, *kinds: str) -> list[Difference]:
        return [d for d in self.differences if d.kind in kinds]

    @property
    def failing(self) -> list[Difference]:
        return [d for d in self.differences if d.failing]

    @property
    def outcome_changes(self) -> list[Difference]:
        """Differences in outcome (including presence): what `diff` exits non-zero for."""
        return self.of_kind("changed", "new", "missing")

    def as_dict(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for d in self.differences:
            counts[d.kind] = counts.get(d.kind, 0) + 1
        return {"differences": [d.as_dict() for d in self.differences if d.kind != "same"],
                "counts": dict(sorted(counts.items())), "failing": [d.id for d in self.failing]}


def _by_id(report: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {str(row["id"]): row for row in report.get("semantics", [])}


def compare(baseline: Mapping[str, Any], current: Mapping[str, Any], strict: bool = False) -> Comparison:
    """Compare this run with a baseline report, semantic by semantic (sorted by id)."""
    old_rows, new_rows = _by_id(baseline), _by_id(current)
    result = Comparison()
    for sid in sorted(set(old_rows) | set(new_rows)):
        old, new = old_rows.get(sid), new_rows.get(sid)
        old_outcome = None if old is None else str(old["outcome"])
        new_outcome = None if new is None else str(new["outcome"])
        old_reason = None if old is None else old.get("reason")
        new_reason = None if new is None else new.get("reason")
        if old is None:
            kind = "new"
            # A new failure is not a recorded deviation: its test failure stands either way.
            failing = strict and new_outcome == "skipped"
        elif new is None:
            kind, failing = "missing", strict
        elif old_outcome != new_outcome:
            kind, failing = "changed", True
        elif new_outcome == "failed":
            # A recorded deviation passes as known however its message reads now: messages
            # carry addresses, pids and timings that no normalisation makes stable.
            same_way = normalize_reason(old_reason) == normalize_reason(new_reason)
            kind, failing = ("known" if same_way else "changed-failure"), False
        elif normalize_reason(old_reason) != normalize_reason(new_reason):
            kind, failing = "reason-changed", False
        else:
            kind, failing = "same", False
        result.differences.append(Difference(sid, kind, old_outcome, new_outcome, old_reason, new_reason, failing))
    return result


def render_table(comparison: Comparison, include_same: bool = False) -> str:
    """A plain-text table of the differences."""
    rows = [d for d in comparison.differences if include_same or d.kind != "same"]
    header = ("semantic", "baseline", "now", "change")
    table = [header] + [(d.id, d.old or "-", d.new or "-", d.kind) for d in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in table]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


# --- the diff command ---------------------------------------------------------------


def cmd_diff(argv: Sequence[str]) -> int:
    """``memsyscalls diff OLD NEW``: 0 when every semantic has the same outcome in both,
    1 when any outcome differs (or a semantic is only in one), 2 when a report is unreadable."""
    parser = argparse.ArgumentParser(prog="memsyscalls diff",
                                     description="differences in outcome between two conformance reports")
    parser.add_argument("old", help="the earlier report (e.g. the baseline)")
    parser.add_argument("new", help="the later report")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--all", action="store_true", help="list unchanged semantics too")
    options = parser.parse_args(list(argv))
    try:
        old, new = load_report(options.old), load_report(options.new)
    except ReportError as error:
        print(f"memsyscalls diff: {error}", file=__import__("sys").stderr)
        return 2
    comparison = compare(old, new)
    status = 1 if comparison.outcome_changes else 0
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
    print(f"{total} semantics compared; {verdict}" + (f" (also {', '.join(extra)})" if extra else ""))
    return status


# --- pytest hooks -------------------------------------------------------------------

_PHASES_KEY = pytest.StashKey[list[Phase]]()


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Record each phase; on teardown, put the test's outcome into the report's properties
    (they travel to the xdist controller and into JUnit XML)."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    found = semantic_of(item)
    if found is None:
        return
    phases = item.stash.setdefault(_PHASES_KEY, [])
    phases.append(phase_of(report))
    if report.when != "teardown":
        return
    result = test_outcome(phases)
    present = {name for name, _ in report.user_properties}
    props: list[tuple[str, object]] = [
        (PROP_SEMANTIC, found.id), (PROP_TIER, found.tier), (PROP_SOURCE, found.source),
        (PROP_STATEMENT, found.statement), (PROP_OUTCOME, result["outcome"]), (PROP_PHASE, result["phase"]),
        (PROP_REASON, result["reason"]), (PROP_EXPECTED, result["expected"]), (PROP_OBSERVED, result["observed"]),
    ]
    report.user_properties.extend((name, value) for name, value in props
                                  if value is not None and name not in present)
    item.stash[_PHASES_KEY] = []


class Collector:
    """Gathers test outcomes from teardown reports (on the xdist controller: all workers')."""

    def __init__(self) -> None:
        self.tests: dict[str, dict[str, Any]] = {}
        self.failed_nodeids: set[str] = set()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.failed:
            self.failed_nodeids.add(report.nodeid)
        if report.when != "teardown":
            return
        props = dict(report.user_properties)
        if PROP_SEMANTIC not in props or PROP_OUTCOME not in props:
            return
        self.tests[report.nodeid] = {
            "nodeid": report.nodeid,
            "id": props[PROP_SEMANTIC],
            "statement": props.get(PROP_STATEMENT),
            "source": props.get(PROP_SOURCE),
            "tier": props.get(PROP_TIER),
            "outcome": props[PROP_OUTCOME],
            "phase": props.get(PROP_PHASE),
            "reason": props.get(PROP_REASON),
            "expected": props.get(PROP_EXPECTED),
            "observed": props.get(PROP_OBSERVED),
        }


_COLLECTOR_KEY = pytest.StashKey[Collector]()
_BASELINE_KEY = pytest.StashKey["dict[str, Any] | None"]()
_STATE_KEY = pytest.StashKey[dict[str, Any]]()


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    collector = Collector()
    config.stash[_COLLECTOR_KEY] = collector
    config.pluginmanager.register(collector, "memsyscalls-report-collector")
    config.stash[_STATE_KEY] = {}
    baseline = None
    chosen = settings.get(config)
    if chosen.baseline and not _is_worker(config):
        try:
            baseline = load_report(chosen.baseline)
        except ReportError as error:
            raise pytest.UsageError(f"pytest-memsyscalls: --memsys-baseline: {error}") from None
    config.stash[_BASELINE_KEY] = baseline


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    if _is_worker(config):
        return
    collector = config.stash.get(_COLLECTOR_KEY, None)
    if collector is None:
        return
    chosen = settings.get(config)
    baseline = config.stash.get(_BASELINE_KEY, None)
    if not collector.tests and not chosen.report and baseline is None:
        return
    from . import get_environment

    report = build_report(collector.tests.values(), get_environment(config).as_dict())
    state = config.stash[_STATE_KEY]
    state["report"] = report
    if chosen.report:
        state["path"] = str(write_report(report, chosen.report))
    if baseline is None:
        return
    comparison = compare(baseline, report, strict=chosen.strict)
    state["comparison"] = comparison
    if comparison.failing:
        if session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        return
    if session.exitstatus == pytest.ExitCode.TESTS_FAILED:
        known = {d.id for d in comparison.differences if d.kind in ("known", "changed-failure")}
        known_nodeids = {n for row in report["semantics"] if row["id"] in known for n in row["nodeids"]}
        if collector.failed_nodeids and collector.failed_nodeids <= known_nodeids:
            session.exitstatus = pytest.ExitCode.OK
            state["excused"] = sorted(collector.failed_nodeids)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    state = config.stash.get(_STATE_KEY, {})
    report = state.get("report")
    if report is None:
        return
    write = terminalreporter.write_line
    comparison: Comparison | None = state.get("comparison")
    if comparison is not None:
        chosen = settings.get(config)
        terminalreporter.write_sep("=", f"memsyscalls baseline ({chosen.baseline})")
        groups = [
            ("FAILING: outcome changed", [d for d in comparison.failing if d.kind == "changed"]),
            ("FAILING (strict)", [d for d in comparison.failing if d.kind in ("new", "missing")]),
            ("known deviations", comparison.of_kind("known")),
            ("known deviations, failing with another message", comparison.of_kind("changed-failure")),
            ("new", [d for d in comparison.of_kind("new") if not d.failing]),
            ("missing", [d for d in comparison.of_kind("missing") if not d.failing]),
            ("reason changed", comparison.of_kind("reason-changed")),
        ]
        for title, items in groups:
            if not items:
                continue
            write(f"{title}:", red=title.startswith("FAILING"), bold=True)
            for d in items:
                write("  " + d.describe())
        verdict = (f"baseline gate FAILED: {len(comparison.failing)} semantic(s): "
                   + ", ".join(d.id for d in comparison.failing)) if comparison.failing else "baseline gate passed"
        if state.get("excused"):
            verdict += f" ({len(state['excused'])} failing test(s) are known deviations; exit status 0)"
        write(verdict, red=bool(comparison.failing), green=not comparison.failing)
    summary = report["summary"]
    where = f" (report: {state['path']})" if state.get("path") else ""
    write(f"memsyscalls: {summary['semantics']} semantics: {summary['passed']} passed, "
          f"{summary['failed']} failed, {summary['skipped']} skipped{where}")
