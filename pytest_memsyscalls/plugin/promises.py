"""A promised feature that fails is a failure that names the promise.

Why: ``@requires("feature:MADV_COLD")`` runs a test because the kernel promises the
feature (its version and configuration say so, environment/features.py). When the test
then fails, the reader should see at once that the kernel broke a promise, not only
that a call returned EINVAL: ``the kernel promises MADV_COLD (kernel 6.18 >= 5.4):
madvise(...) should succeed; it failed with EINVAL``. Under a seccomp filter the promise
is still the kernel's, and the message says a filter is active.
"""

from __future__ import annotations

import pytest

from ..environment.features import PROMISED, Promise
from ..environment.fingerprint import Environment
from ..memory.expectations import ExpectationFailed
from .semantics import REQUIRES_MARK


class PromiseBroken(ExpectationFailed):
    """A test of a promised feature failed; the message names the promise."""


def promised_by(item: pytest.Item, env: Environment) -> list[Promise]:
    """The promised features among the item's ``feature:`` needs."""
    found = []
    for mark in item.iter_markers(REQUIRES_MARK):
        for need in mark.args:
            if isinstance(need, str) and need.startswith("feature:"):
                promise = env.features.get(need.partition(":")[2])
                if promise is not None and promise.state == PROMISED:
                    found.append(promise)
    return found


def broken(error: Exception, promises: list[Promise], env: Environment) -> PromiseBroken:
    """The failure ``error`` of a test that relied on ``promises``, naming them."""
    names = "; ".join(f"the kernel promises {p.feature} ({p.why})" for p in promises)
    if env.security.seccomp == 2:
        names += " (a seccomp filter is active, and may be what refuses)"
    if isinstance(error, ExpectationFailed):
        return PromiseBroken(f"{names}: {error}", call=error.call, expected=error.expected,
                             observed=error.observed)
    text = f"{type(error).__name__}: {error}"
    # what was observed, as a page shows it: the first line (an assertion's explanation
    # goes on with the reprs of everything it compared)
    first = text.strip().splitlines()[0] if text.strip() else type(error).__name__
    observed = first if len(first) <= 200 else first[:199] + "…"
    return PromiseBroken(f"{names}: {text}", call=None, expected=f"{promises[0].feature} works as promised",
                         observed=observed)
