"""The JSON report, the JUnit properties, the baseline gate and ``memsyscalls diff``.

Each test runs a small suite through pytester whose outcomes are fixed by construction
(a pass, an errno mismatch, an unmet need, a parametrized mix), so what the report must
say is known in advance; the gate tests then edit a saved report by hand.
"""

from __future__ import annotations

import errno
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from pytest_memsyscalls import Fault, libc
from pytest_memsyscalls.cli import diff as diff_cli
from pytest_memsyscalls.memory.expectations import ExpectationFailed, fails_with, faults_with, succeeds
from pytest_memsyscalls.report import baseline as rep_baseline
from pytest_memsyscalls.report import model as rep_model

SUITE = """
import errno
import pytest
from pytest_memsyscalls import libc, requires, semantic
from pytest_memsyscalls.memory.expectations import fails_with

@semantic("demo.pass.ok", "Passes.", source="demo(2)", tier="posix")
def test_pass():
    pass

@semantic("demo.fail.errno", "A deliberately wrong errno prediction.", source="munmap(2) ERRORS")
def test_fail():
    fails_with(errno.ENOMEM, libc.munmap, 0x10000000, 0)  # munmap with length 0 is EINVAL

@semantic("demo.skip.cap", "Needs a capability no process has.", source="demo(2)")
@requires("cap:CAP_MADE_UP")
def test_skip():
    pass

@semantic("demo.param.mixed", "One semantic, three parameters.", source="demo(2)", tier="impl")
@pytest.mark.parametrize("x", [1, 2, 3])
def test_param(x):
    if x == 3:
        pytest.skip("needs:three")
    assert x != 2, "expected x != 2; got 2"

@semantic("demo.param.skipped", "All parameters skip.", source="demo(2)")
@pytest.mark.parametrize("x", [1, 2])
def test_all_skip(x):
    pytest.skip(f"unsupported:param-{x}")

@semantic("demo.param.passed", "Passes where it can run.", source="demo(2)")
@pytest.mark.parametrize("x", [1, 2])
def test_pass_or_skip(x):
    if x == 2:
        pytest.skip("needs:two")

def test_unmarked():
    pass
"""

# Inner runs skip plugins they do not need: pytester restores sys.modules after each
# in-process run, so hypothesis' terminal summary would re-import (and re-rewrite) it every time.
QUIET = ("-p", "no:randomly", "-p", "no:hypothesispytest", "-p", "no:benchmark")

EXPECTED_OUTCOMES = {
    "demo.fail.errno": "failed",
    "demo.param.mixed": "failed",
    "demo.param.passed": "passed",
    "demo.param.skipped": "unsupported",
    "demo.pass.ok": "passed",
    "demo.skip.cap": "skipped",
}


def run_suite(pytester: pytest.Pytester, *args: str) -> tuple[pytest.RunResult, dict[str, Any]]:
    pytester.makepyfile(test_demo=SUITE)
    (pytester.path / "out").mkdir(exist_ok=True)  # a report's directory is never created for it
    result = pytester.runpytest(*QUIET, "--memsys-report=out/report.json", *args)
    return result, json.loads((pytester.path / "out" / "report.json").read_text())


def semantics_of(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["id"]: row for row in report["semantics"]}


# --- the report ----------------------------------------------------------------------


def test_report_records_every_semantic_outcome(pytester: pytest.Pytester) -> None:
    result, report = run_suite(pytester)
    result.assert_outcomes(passed=4, failed=2, skipped=5)
    assert report["schema"] == "pytest-memsyscalls/report/v1"
    assert [row["id"] for row in report["semantics"]] == sorted(EXPECTED_OUTCOMES)
    assert {sid: row["outcome"] for sid, row in semantics_of(report).items()} == EXPECTED_OUTCOMES
    assert report["summary"] == {"semantics": 6, "passed": 2, "failed": 2, "skipped": 1, "unsupported": 1}
    # one line reconciles the semantics with pytest's count: 4 passed + 2 failed + 5 skipped = 11 tests
    result.stdout.fnmatch_lines(["memsyscalls: 6 semantics: 2 passed, 2 failed, 1 skipped, 1 unsupported, "
                                 "from 11 tests (10 check a semantic, 1 checks none) (report: *report.json)"])


def test_report_carries_the_semantic_and_the_environment(pytester: pytest.Pytester) -> None:
    from pytest_memsyscalls.environment.fingerprint import detect

    _, report = run_suite(pytester)
    row = semantics_of(report)["demo.pass.ok"]
    assert (row["statement"], row["source"], row["tier"], row["reason"]) == ("Passes.", "demo(2)", "posix", None)
    assert row["nodeids"] == ["test_demo.py::test_pass"]
    assert report["environment"]["kernel"] == detect().as_dict()["kernel"]


def test_failure_reason_says_what_was_predicted_and_observed(pytester: pytest.Pytester) -> None:
    _, report = run_suite(pytester)
    row = semantics_of(report)["demo.fail.errno"]
    assert row["reason"] == "munmap(0x10000000, 0) should fail with ENOMEM; it failed with EINVAL (Invalid argument)"
    assert row["expected"] == "munmap(0x10000000, 0) should fail with ENOMEM"
    assert row["observed"] == "failed with EINVAL (Invalid argument)"
    assert row["tests"][0]["phase"] == "call"


def test_skip_reason_names_what_is_missing(pytester: pytest.Pytester) -> None:
    _, report = run_suite(pytester)
    rows = semantics_of(report)
    assert rows["demo.skip.cap"]["reason"] == "needs:CAP_MADE_UP"
    assert rows["demo.skip.cap"]["tests"][0]["phase"] == "setup"
    assert rows["demo.param.skipped"]["reason"] == "unsupported:param-1; unsupported:param-2"


def test_parametrized_semantic_lists_every_test(pytester: pytest.Pytester) -> None:
    _, report = run_suite(pytester)
    row = semantics_of(report)["demo.param.mixed"]
    assert row["nodeids"] == [f"test_demo.py::test_param[{x}]" for x in (1, 2, 3)]
    assert [t["outcome"] for t in row["tests"]] == ["passed", "failed", "skipped"]
    assert row["reason"].startswith("expected x != 2; got 2")
    # A plain assert carries no structured expectation, whatever its message says: the
    # report never parses English.
    assert (row["expected"], row["observed"]) == (None, None)
    passed = semantics_of(report)["demo.param.passed"]
    assert (passed["outcome"], passed["reason"]) == ("passed", None)
    assert [t["reason"] for t in passed["tests"]] == [None, "needs:two"]


def test_report_matches_the_packaged_schema(pytester: pytest.Pytester) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    _, report = run_suite(pytester)
    schema = json.loads(rep_model.SCHEMA_FILE.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(report, schema)


def test_errors_and_xfail_count_as_failed(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest
        from pytest_memsyscalls import semantic

        @pytest.fixture
        def broken_teardown():
            yield
            raise RuntimeError("cleanup broke")

        @semantic("demo.error.teardown", "Teardown error.", source="demo(2)")
        def test_teardown(broken_teardown):
            pass

        @semantic("demo.xfail.known", "Known not to hold here.", source="demo(2)")
        @pytest.mark.xfail(reason="gVisor differs")
        def test_xfail():
            assert False, "expected EINVAL; got success"
        """
    )
    pytester.runpytest(*QUIET, "--memsys-report=r.json")
    rows = semantics_of(json.loads((pytester.path / "r.json").read_text()))
    teardown = rows["demo.error.teardown"]
    assert (teardown["outcome"], teardown["tests"][0]["phase"]) == ("failed", "teardown")
    assert teardown["reason"] == "error in teardown: RuntimeError: cleanup broke"
    xfail = rows["demo.xfail.known"]
    assert xfail["outcome"] == "failed"
    assert xfail["reason"].endswith("(marked xfail: gVisor differs)")


def test_no_summary_line_without_semantics(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest(*QUIET)
    result.assert_outcomes(passed=1)
    assert not [line for line in result.outlines if line.startswith("memsyscalls: ") and " semantics: " in line]


# --- JUnit XML -----------------------------------------------------------------------


def junit_properties(path: Path) -> dict[str, dict[str, str]]:
    cases = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        cases[case.get("name", "")] = {p.get("name", ""): p.get("value", "") for p in case.iter("property")}
    return cases


def test_junit_has_outcome_and_reason(pytester: pytest.Pytester) -> None:
    run_suite(pytester, "--junitxml=junit.xml")
    cases = junit_properties(pytester.path / "junit.xml")
    assert cases["test_pass"]["memsys_outcome"] == "passed"
    assert "memsys_reason" not in cases["test_pass"]
    assert cases["test_fail"]["memsys_semantic"] == "demo.fail.errno"
    assert cases["test_fail"]["memsys_outcome"] == "failed"
    assert cases["test_fail"]["memsys_expected"] == "munmap(0x10000000, 0) should fail with ENOMEM"
    assert cases["test_fail"]["memsys_observed"] == "failed with EINVAL (Invalid argument)"
    assert cases["test_skip"]["memsys_reason"] == "needs:CAP_MADE_UP"
    assert cases["test_param[3]"]["memsys_outcome"] == "skipped"
    assert "memsys_outcome" not in cases["test_unmarked"]


def test_junit_properties_are_not_duplicated(pytester: pytest.Pytester) -> None:
    run_suite(pytester, "--junitxml=junit.xml")
    root = ET.parse(pytester.path / "junit.xml").getroot()
    for case in root.iter("testcase"):
        names = [p.get("name") for p in case.iter("property")]
        assert len(names) == len(set(names)), (case.get("name"), names)


# --- the baseline gate ---------------------------------------------------------------


def make_baseline(pytester: pytest.Pytester, edit: dict[str, dict[str, Any]] | None = None,
                  drop: str | None = None) -> str:
    """A report of the demo suite, saved as the baseline, optionally edited by hand."""
    _, report = run_suite(pytester)
    rows = []
    for row in report["semantics"]:
        if row["id"] == drop:
            continue
        rows.append({**row, **(edit or {}).get(row["id"], {})})
    report["semantics"] = rows
    (pytester.path / "baseline.json").write_text(json.dumps(report))
    return "--memsys-baseline=baseline.json"


def test_identical_run_passes_the_gate_with_known_deviations(pytester: pytest.Pytester) -> None:
    baseline = make_baseline(pytester)
    result, _ = run_suite(pytester, baseline)
    result.assert_outcomes(passed=4, failed=2, skipped=5)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*memsyscalls baseline*", "known deviations:", "  demo.fail.errno: known deviation",
                                 "baseline gate passed*"])


def test_changed_outcome_fails_the_gate_and_is_named(pytester: pytest.Pytester) -> None:
    baseline = make_baseline(pytester, edit={"demo.pass.ok": {"outcome": "skipped", "reason": "needs:x"}})
    result, _ = run_suite(pytester, baseline)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["FAILING: outcome changed:", "  demo.pass.ok: skipped -> passed",
                                 "baseline gate FAILED: 1 semantic(s): demo.pass.ok"])


def test_gate_fails_a_green_run_whose_outcome_changed(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from pytest_memsyscalls import semantic

        @semantic("demo.only.pass", "Passes.", source="demo(2)")
        def test_x(): pass
        """
    )
    pytester.runpytest(*QUIET, "--memsys-report=base.json")
    data = json.loads((pytester.path / "base.json").read_text())
    data["semantics"][0].update(outcome="failed", reason="expected EINVAL; got success")
    (pytester.path / "base.json").write_text(json.dumps(data))
    result = pytester.runpytest(*QUIET, "--memsys-baseline=base.json")
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["  demo.only.pass: failed -> passed", "baseline gate FAILED*demo.only.pass"])


def test_failing_with_another_message_is_still_a_known_deviation(pytester: pytest.Pytester) -> None:
    """The gate is on outcomes: messages carry addresses, pids and timings, so a recorded
    failure that reads differently now is shown, not failed."""
    baseline = make_baseline(pytester, edit={"demo.fail.errno": {"reason": "expected EFAULT; got EINVAL"}})
    result, _ = run_suite(pytester, baseline)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["known deviations, failing with another message:",
                                 "  demo.fail.errno: known deviation, failing with another message",
                                 "    baseline: expected EFAULT; got EINVAL", "baseline gate passed*"])


def test_new_skip_is_reported_and_fails_only_when_strict(pytester: pytest.Pytester) -> None:
    baseline = make_baseline(pytester, drop="demo.skip.cap")
    result, _ = run_suite(pytester, baseline)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["new:", "  demo.skip.cap: new in this run (skipped)", "baseline gate passed*"])
    strict, _ = run_suite(pytester, baseline, "--memsys-strict")
    assert strict.ret == pytest.ExitCode.TESTS_FAILED
    strict.stdout.fnmatch_lines(["FAILING (strict):", "  demo.skip.cap: new in this run (skipped)",
                                 "baseline gate FAILED: 1 semantic(s): demo.skip.cap"])


def test_new_failure_is_not_excused(pytester: pytest.Pytester) -> None:
    baseline = make_baseline(pytester, drop="demo.fail.errno")
    result, _ = run_suite(pytester, baseline)
    result.stdout.fnmatch_lines(["  demo.fail.errno: new in this run (failed)", "baseline gate passed"])
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_missing_semantic_is_reported_and_fails_only_when_strict(pytester: pytest.Pytester) -> None:
    baseline = make_baseline(pytester)
    result, _ = run_suite(pytester, baseline, "-k", "not test_skip")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["missing:", "  demo.skip.cap: in the baseline (skipped) but not in this run"])
    strict, _ = run_suite(pytester, baseline, "-k", "not test_skip", "--memsys-strict")
    assert strict.ret == pytest.ExitCode.TESTS_FAILED


def test_unreadable_baseline_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x(): pass")
    (pytester.path / "wrong.json").write_text(json.dumps({"schema": "something/else"}))
    result = pytester.runpytest(*QUIET, "--memsys-baseline=wrong.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--memsys-baseline*schema 'something/else'*pytest-memsyscalls/report/v1*"])
    result = pytester.runpytest(*QUIET, "--memsys-baseline=absent.json")
    result.stderr.fnmatch_lines(["*cannot read report 'absent.json'*"])


# --- pure comparison -----------------------------------------------------------------


def fake(*rows: tuple[str, str, str | None]) -> dict[str, Any]:
    return {"schema": rep_model.SCHEMA, "semantics": [{"id": i, "outcome": o, "reason": r} for i, o, r in rows]}


def test_compare_ignores_addresses_in_failure_reasons() -> None:
    old = fake(("a.b", "failed", "mprotect(0x7f0000001000, 4096, 1) should fail with EINVAL; it succeeded"))
    new = fake(("a.b", "failed", "mprotect(0x7f1234567000, 4096, 1) should fail with EINVAL; it succeeded"))
    [difference] = rep_baseline.compare(old, new).differences
    assert (difference.kind, difference.failing) == ("known", False)


def test_compare_kinds() -> None:
    old = fake(("a.same", "passed", None), ("a.changed", "passed", None), ("a.gone", "skipped", "needs:x"),
               ("a.why", "skipped", "needs:x"))
    new = fake(("a.same", "passed", None), ("a.changed", "failed", "boom"), ("a.new", "passed", None),
               ("a.why", "skipped", "needs:y"))
    kinds = {d.id: (d.kind, d.failing) for d in rep_baseline.compare(old, new).differences}
    assert kinds == {"a.same": ("same", False), "a.changed": ("changed", True), "a.gone": ("missing", False),
                     "a.new": ("new", False), "a.why": ("reason-changed", False)}
    strict = {d.id: d.failing for d in rep_baseline.compare(old, new, strict=True).differences}
    assert strict["a.gone"] and not strict["a.new"]


@pytest.mark.parametrize(("make", "message", "predicted", "observed"), [
    (lambda: fails_with(errno.EINVAL, libc.munmap, 0x10000000, 3 * libc.PAGE_SIZE),  # unmapping a hole succeeds
     f"munmap(0x10000000, {3 * libc.PAGE_SIZE:#x}) should fail with EINVAL; it succeeded",
     f"munmap(0x10000000, {3 * libc.PAGE_SIZE:#x}) should fail with EINVAL", "succeeded"),
    (lambda: succeeds(libc.munmap, 0x10000000, 0),
     "munmap(0x10000000, 0) should succeed; it failed with EINVAL (Invalid argument)",
     "munmap(0x10000000, 0) should succeed", "failed with EINVAL (Invalid argument)"),
    (lambda: faults_with(Fault(11, 1, 0x1000), 11, 2, 0x1000),
     "expected SIGSEGV (SEGV_ACCERR) at 0x1000; got SIGSEGV (SEGV_MAPERR) at 0x1000",
     "SIGSEGV (SEGV_ACCERR) at 0x1000", "SIGSEGV (SEGV_MAPERR) at 0x1000"),
    (lambda: faults_with(None, 11),
     "expected SIGSEGV; the access completed", "SIGSEGV", "the access completed"),
])
def test_failed_expectations_carry_their_parts(make: Any, message: str, predicted: str, observed: str) -> None:
    with pytest.raises(ExpectationFailed) as caught:
        make()
    assert str(caught.value) == message
    assert (caught.value.predicted(), caught.value.observed) == (predicted, observed)


# --- the diff command ----------------------------------------------------------------


def write(path: Path, report: dict[str, Any]) -> str:
    path.write_text(json.dumps(report))
    return str(path)


def test_diff_identical_outcomes_exit_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    one = write(tmp_path / "one.json", fake(("a.b", "passed", None), ("a.c", "skipped", "needs:x")))
    two = write(tmp_path / "two.json", fake(("a.b", "passed", None), ("a.c", "skipped", "needs:y")))
    assert diff_cli.cmd_diff([one, two]) == 0
    out = capsys.readouterr().out
    assert "a.c" in out and "reason-changed" in out
    assert out.rstrip().endswith("2 semantics compared; identical outcomes (also 1 reason-changed)")


def test_diff_names_changes_and_exits_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = write(tmp_path / "old.json", fake(("a.b", "passed", None), ("a.gone", "passed", None)))
    new = write(tmp_path / "new.json", fake(("a.b", "failed", "expected X; got Y"), ("a.new", "skipped", "needs:z")))
    assert diff_cli.cmd_diff([old, new]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["semantic", "baseline", "now", "change"]
    assert lines[2].split() == ["a.b", "passed", "failed", "changed"]
    assert lines[3].split() == ["a.gone", "passed", "-", "missing"]
    assert lines[4].split() == ["a.new", "-", "skipped", "new"]
    assert lines[-1] == "3 semantics compared; outcomes differ: 1 changed, 1 new, 1 missing"
    assert diff_cli.cmd_diff([old, new, "--json"]) == 1
    document = json.loads(capsys.readouterr().out)
    assert document["identical_outcomes"] is False
    assert [(d["id"], d["kind"], d["old"], d["new"]) for d in document["differences"]] == [
        ("a.b", "changed", "passed", "failed"), ("a.gone", "missing", "passed", None),
        ("a.new", "new", None, "skipped")]


def test_diff_rejects_a_file_that_is_not_a_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write(tmp_path / "good.json", fake(("a.b", "passed", None)))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert diff_cli.cmd_diff([good, str(bad)]) == 2
    assert "is not JSON" in capsys.readouterr().err


def test_diff_through_the_module_entry_point(pytester: pytest.Pytester) -> None:
    baseline = make_baseline(pytester, edit={"demo.pass.ok": {"outcome": "failed", "reason": "expected x"}})
    del baseline
    command = [sys.executable, "-m", "pytest_memsyscalls", "diff"]
    same = subprocess.run([*command, "out/report.json", "out/report.json"], cwd=pytester.path,
                          capture_output=True, text=True, check=False)
    assert same.returncode == 0, same.stderr
    changed = subprocess.run([*command, "baseline.json", "out/report.json"], cwd=pytester.path,
                             capture_output=True, text=True, check=False)
    assert changed.returncode == 1, changed.stderr
    rows = {line.split()[0]: line.split()[1:] for line in changed.stdout.splitlines()[2:] if line.strip()}
    assert rows["demo.pass.ok"] == ["failed", "passed", "changed"]
    assert rows["demo.fail.errno"] == ["failed", "failed", "known"]
    assert changed.stdout.splitlines()[-1] == "6 semantics compared; outcomes differ: 1 changed"


# --- xdist ---------------------------------------------------------------------------


def test_xdist_report_is_complete_and_written_by_the_controller_only(pytester: pytest.Pytester,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("xdist")
    # When this suite itself runs under xdist, the inner controller must not inherit
    # the outer worker's identity (the conftest below labels writes by it).
    for name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
        monkeypatch.delenv(name, raising=False)
    pytester.makeconftest(
        """
        import os
        from pytest_memsyscalls.report import model as report

        _write = report.write_report

        def counting_write(data, path):
            with open("writes.log", "a") as log:
                log.write(os.environ.get("PYTEST_XDIST_WORKER", "controller") + "\\n")
            return _write(data, path)

        report.write_report = counting_write
        """
    )
    pytester.makepyfile(test_demo=SUITE)
    result = pytester.runpytest_subprocess(*QUIET, "-n", "2", "--memsys-report=r.json",
                                           "--junitxml=junit.xml")
    result.assert_outcomes(passed=4, failed=2, skipped=5)
    # the controller alone writes it: at the start, on the way (incomplete) and at the end
    assert set((pytester.path / "writes.log").read_text().split()) == {"controller"}
    report = json.loads((pytester.path / "r.json").read_text())
    assert {sid: row["outcome"] for sid, row in semantics_of(report).items()} == EXPECTED_OUTCOMES
    assert sum(len(row["nodeids"]) for row in report["semantics"]) == 10
    assert semantics_of(report)["demo.fail.errno"]["observed"] == "failed with EINVAL (Invalid argument)"
    assert junit_properties(pytester.path / "junit.xml")["test_skip"]["memsys_reason"] == "needs:CAP_MADE_UP"
    result.stdout.fnmatch_lines(["memsyscalls: 6 semantics: 2 passed, 2 failed, 1 skipped, 1 unsupported, "
                                 "from 11 tests (10 check a semantic, 1 checks none) (report: r.json)"])


@pytest.mark.parametrize("strict", [False, True], ids=["default", "strict"])
def test_passed_to_skipped_fails_with_and_without_strict(pytester: pytest.Pytester, strict: bool) -> None:
    """What the README promises: a semantic that passed in the baseline and is skipped now
    is a changed outcome, which fails the gate whether or not --memsys-strict is given."""
    baseline = make_baseline(pytester, edit={"demo.skip.cap": {"outcome": "passed", "reason": None}})
    result, _ = run_suite(pytester, baseline, *(["--memsys-strict"] if strict else []))
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["FAILING: outcome changed:", "  demo.skip.cap: passed -> skipped*",
                                 "baseline gate FAILED: 1 semantic(s): demo.skip.cap*"])
