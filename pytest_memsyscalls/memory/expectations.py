"""Assertions in gVisor's style: one call, one expected errno, a message that shows
the call with its arguments, the errno expected by name, and what came back.

Why a class of its own: a failed expectation carries its parts (the call, what the
documentation predicts, what was observed) as fields, so the report and the matrix
read them from the exception instead of parsing English messages.
"""

from __future__ import annotations

import errno as errno_names
import os
from collections.abc import Callable
from typing import Any

from ..kernel.contract import ExpectationFailed
from ..kernel.probe import Fault

__all__ = ["ExpectationFailed", "errno_name", "fails_with", "faults_with", "succeeds"]


def errno_name(number: int) -> str:
    return errno_names.errorcode.get(number, str(number))


def _call_text(fn: Callable[..., Any], args: tuple[Any, ...]) -> str:
    name = getattr(fn, "__name__", repr(fn))
    shown = ", ".join(hex(a) if isinstance(a, int) and not isinstance(a, bool) and a > 4096 else repr(a)
                      for a in args)
    return f"{name}({shown})"


def fails_with(expected: int, fn: Callable[..., Any], *args: Any) -> OSError:
    """Call ``fn(*args)`` and assert it fails with errno ``expected``; returns the error."""
    try:
        result = fn(*args)
    except OSError as error:
        if error.errno != expected:
            raise ExpectationFailed.of_call(_call_text(fn, args), f"fail with {errno_name(expected)}",
                                            f"failed with {_errno_text(error)}") from error
        return error
    raise ExpectationFailed.of_call(_call_text(fn, args), f"fail with {errno_name(expected)}",
                                    "succeeded" + ("" if result is None else f" and returned {_show(result)}"))


def succeeds(fn: Callable[..., Any], *args: Any) -> Any:
    """Call ``fn(*args)`` and assert it does not fail; returns its result."""
    try:
        return fn(*args)
    except OSError as error:
        raise ExpectationFailed.of_call(_call_text(fn, args), "succeed", f"failed with {_errno_text(error)}") from error


def faults_with(observed: Fault | int | None, signo: int, code: int | None = None,
                addr: int | None = None) -> Fault:
    """Assert a probe result is the fault expected (signal, and si_code/si_addr when given)."""
    expected = Fault(signo, code if code is not None else 0, addr if addr is not None else 0)
    wanted = expected.signal_name + (f" ({expected.code_name})" if code is not None else "") + (
        f" at {addr:#x}" if addr is not None else "")
    if not isinstance(observed, Fault):
        raise ExpectationFailed.of_event(wanted, "the access completed"
                                         + ("" if observed is None else f" (read {observed!r})"), joiner="")
    if (observed.signo != signo or (code is not None and observed.code != code)
            or (addr is not None and observed.addr != addr)):
        raise ExpectationFailed.of_event(wanted, str(observed))
    return observed


def _errno_text(error: OSError) -> str:
    return f"{errno_name(error.errno or 0)} ({os.strerror(error.errno or 0)})"


def _show(value: Any) -> str:
    return hex(value) if isinstance(value, int) and value > 4096 else repr(value)
