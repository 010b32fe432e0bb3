"""The report's pytest side: each test's outcome into its JUnit properties, the JSON
report at the end of the session, and the baseline gate's verdict and summary.

Why here and not in ``report``: these hooks read pytest's reports and the session's
settings; the document they build and the gate's rules are plain data in ``report``.
On xdist the workers record properties and the controller builds the report.

PYTEST_DONT_REWRITE: loaded into every pytest session (plugin/activation.py says why).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import pytest

from . import settings
from .semantics import semantic_of
from .session import session_environment

# The report's modules are imported when a test with a semantic reports, or a report or
# baseline is asked for: pytest loads this module into every session (activation.py).
if TYPE_CHECKING:
    from ..report import baseline as baseline_gate
    from ..report import model


def _crash_message(report: pytest.TestReport) -> str:
    """The crash line of a failure: the assertion message, without 'AssertionError: '.
    A plain-text longrepr was composed as a message by a plugin (the leak guard's list of
    what a test left behind): it is the message, whole."""
    longrepr = report.longrepr
    if isinstance(longrepr, str):
        return longrepr.strip() or "failed"
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


def phase_of(report: pytest.TestReport, excinfo: pytest.ExceptionInfo[BaseException] | None = None) -> model.Phase:
    """The Phase one pytest report describes; a failed expectation (``excinfo``) gives
    what was expected and what was observed."""
    from ..memory.expectations import ExpectationFailed  # on first use: it loads the fault probe
    from ..report import model

    xfail = getattr(report, "wasxfail", None)
    failure = excinfo.value if excinfo is not None else None
    parts: dict[str, str] = {}
    message = None
    if isinstance(failure, ExpectationFailed):
        parts = {"expected": failure.predicted(), "observed": failure.observed}
        message = str(failure)
    if report.failed:
        return model.Phase(report.when, "failed", message or _crash_message(report), **parts)
    if report.skipped:
        if xfail is not None:
            return model.Phase(report.when, "skipped", message or _crash_message(report), xfail=str(xfail), **parts)
        return model.Phase(report.when, "skipped", _skip_message(report))
    return model.Phase(report.when, "passed", xfail=None if xfail is None else str(xfail))


_PHASES_KEY = pytest.StashKey["list[model.Phase]"]()


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
    from ..report import junit, model

    phases = item.stash.setdefault(_PHASES_KEY, [])
    phases.append(phase_of(report, call.excinfo))
    if report.when != "teardown":
        return
    semantic = {"id": found.id, "tier": found.tier, "source": found.source, "statement": found.statement}
    present = {name for name, _ in report.user_properties}
    report.user_properties.extend(prop for prop in junit.properties(semantic, model.test_outcome(phases))
                                  if prop[0] not in present)
    item.stash[_PHASES_KEY] = []


class Collector:
    """Gathers test outcomes from teardown reports (on the xdist controller: all workers').
    Not on an xdist worker: its reports travel to the controller, which writes the report.

    With ``--memsys-report`` it also rewrites the report, marked incomplete, at most once
    a second as tests finish (and once at the start), so a run that dies on the way still
    leaves a valid report of what it had."""

    FLUSH_EVERY = 1.0  # seconds

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.tests: dict[str, dict[str, Any]] = {}
        self.failed_nodeids: set[str] = set()
        self.items = 0  # every test that ran, with a semantic or not
        self.flushed = 0.0

    def flush(self, force: bool = False) -> None:
        path = settings.get(self.config).report
        now = time.monotonic()
        if path is None or (not force and now - self.flushed < self.FLUSH_EVERY):
            return
        self.flushed = now
        from ..report import model

        partial = model.build_report(self.tests.values(), session_environment(self.config).as_dict(), complete=False)
        model.write_report(partial, path)

    def pytest_sessionstart(self) -> None:
        self.flush(force=True)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.failed:
            self.failed_nodeids.add(report.nodeid)
        # teardown ends a test; a crash report (xdist: when "???", plugin/crashes.py) ends
        # one whose process died
        if report.when in ("setup", "call"):
            return
        self.items += 1
        if not any(name == "memsys_semantic" for name, _ in report.user_properties):
            return
        from ..report import junit

        record = junit.record_from(report.nodeid, dict(report.user_properties))
        if record is not None:
            if not self.tests:
                self._prepare_the_end()
            self.tests[report.nodeid] = record
            self.flush()

    def _prepare_the_end(self) -> None:
        """What the end of the session needs, done at the first test with a semantic: an
        xdist controller waits for its workers then, where after the last test every
        step would lengthen the run. The report needs the fingerprint; Hypothesis' own
        pytest plugin, where it is loaded, imports Hypothesis in its terminal summary
        (``memsyscalls run`` drops it from its controller and workers, plugin/__init__.py)."""
        session_environment(self.config)
        if self.config.pluginmanager.has_plugin("hypothesispytest"):
            import hypothesis  # noqa: F401


_COLLECTOR_KEY = pytest.StashKey[Collector]()
_BASELINE_KEY = pytest.StashKey["dict[str, Any] | None"]()
_STATE_KEY = pytest.StashKey[dict[str, Any]]()


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    config.stash[_STATE_KEY] = {}
    if _is_worker(config):
        return
    collector = Collector(config)
    config.stash[_COLLECTOR_KEY] = collector
    config.pluginmanager.register(collector, "memsyscalls-report-collector")
    baseline = None
    chosen = settings.get(config)
    if chosen.baseline:
        from ..report import model

        try:
            baseline = model.load_report(chosen.baseline)
        except model.ReportError as error:
            raise pytest.UsageError(f"pytest-memsyscalls: --memsys-baseline: {error}") from None
    config.stash[_BASELINE_KEY] = baseline


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    collector = config.stash.get(_COLLECTOR_KEY, None)
    if collector is None:  # an xdist worker
        return
    chosen = settings.get(config)
    baseline = config.stash.get(_BASELINE_KEY, None)
    if not collector.tests and not chosen.report and baseline is None:
        return
    from ..report import baseline as baseline_gate
    from ..report import model

    report = model.build_report(collector.tests.values(), session_environment(config).as_dict())
    state = config.stash[_STATE_KEY]
    state["report"] = report
    if chosen.report:
        state["path"] = str(model.write_report(report, chosen.report))
    if baseline is None:
        return
    comparison = baseline_gate.compare(baseline, report, strict=chosen.strict)
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
    comparison: baseline_gate.Comparison | None = state.get("comparison")
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
          f"{summary['failed']} failed, {summary['skipped']} skipped, {summary['unsupported']} unsupported"
          f"{_tests_line(report, config)}{where}")


def _tests_line(report: dict[str, Any], config: pytest.Config) -> str:
    """How the semantics add up to pytest's count of tests: a parametrized semantic has
    several tests, and a test without a marker checks none."""
    collector = config.stash.get(_COLLECTOR_KEY, None)
    ran = collector.items if collector is not None else 0
    checking = sum(len(row["nodeids"]) for row in report["semantics"])
    if not ran:
        return ""
    rest = ran - checking
    return (f", from {ran} test{'s' if ran != 1 else ''} ({checking} check a semantic"
            + (f", {rest} check{'s' if rest == 1 else ''} none" if rest else "") + ")")
