"""A suite whose tests crash their process, and what its JSON report must say: shared by
the crash tests under xdist (test_crashes.py) and under ``memsyscalls run``'s forked
workers (test_forked_workers.py)."""

from __future__ import annotations

from pathlib import Path

from pytest_memsyscalls.report.model import load_report

SUITE = """
import ctypes, os, signal
from pytest_memsyscalls import semantic

@semantic("demo.before.fine", "Runs before the crash.", source="demo(2)")
def test_a_before():
    pass

@semantic("demo.crash.segv", "Touches an unmapped page directly.", source="demo(2)")
def test_b_segv():
    ctypes.string_at(8, 1)

@semantic("demo.crash.kill", "Is killed outright.", source="demo(2)")
def test_c_kill():
    os.kill(os.getpid(), signal.SIGKILL)

@semantic("demo.after.fine", "Runs after the crashes, in a new process.", source="demo(2)")
def test_d_after():
    pass
"""


def check_crash_report(path: Path) -> None:
    """SUITE's JSON report: complete, the two crashes failed (one naming SIGSEGV), the
    tests around them passed."""
    report = load_report(path)
    assert report["complete"] is True
    rows = {row["id"]: row for row in report["semantics"]}
    assert {sid: row["outcome"] for sid, row in rows.items()} == {
        "demo.before.fine": "passed", "demo.crash.segv": "failed", "demo.crash.kill": "failed",
        "demo.after.fine": "passed"}
    assert "SIGSEGV" in rows["demo.crash.segv"]["reason"]
