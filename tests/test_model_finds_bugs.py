"""The address-space model finds a wrong model rule and shrinks it to a short program.

A subclass of the machine forgets that mprotect changes the protection.
Hypothesis must find that, shrink it to a handful of calls, print the calls as a
replayable program, and the assertion must name the semantic that broke. Run in a
subprocess: the machine forks and takes faults.
"""

from __future__ import annotations

import re

import pytest

BROKEN = '''
from hypothesis import settings, HealthCheck
from hypothesis.stateful import run_state_machine_as_test
from pytest_memsyscalls.conformance._model_address_space import AddressSpaceMachine


class ForgetsMprotect(AddressSpaceMachine):
    def model_mprotect(self, pg, prot, vma):
        pg.vma = vma  # wrong on purpose: the protection stays what it was


def test_broken_model():
    run_state_machine_as_test(ForgetsMprotect, settings=settings(
        max_examples=50, stateful_step_count=20, deadline=None, derandomize=True, database=None,
        report_multiple_bugs=False,
        suppress_health_check=[HealthCheck.too_slow]))
'''


def test_wrong_model_rule_is_found_and_shrunk(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_broken=BROKEN)
    result = pytester.runpytest_subprocess("-p", "no:randomly", "-p", "no:cacheprovider", timeout=600)
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "last step: mprotect.mapped_range.changes_protection" in out, out
    program = re.findall(r"^(?:E\s+)?state\.(\w+)\(", out, re.M)  # pytest puts notes on E lines
    calls = [c for c in program if c not in ("start", "kernel_agrees", "teardown")]
    assert calls and calls[-1] == "mprotect", out
    assert len(calls) <= 5, f"not shrunk to a short program: {calls}\n{out}"
    assert "state = ForgetsMprotect()" in out
