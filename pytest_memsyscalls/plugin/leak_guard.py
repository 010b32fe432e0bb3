"""The leak guard's hooks (the guard itself is ``leaks``).

They act only for tests that use the plugin (activation.py); ``leaks``, which reads
/proc and SysV IPC through the kernel layer, is imported when the first such test is
set up, so that a session that never uses the plugin pays nothing for it.

PYTEST_DONT_REWRITE: loaded into every pytest session (plugin/activation.py says why).
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from typing import Any

import pytest

from .activation import native_problem, uses_memsys


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    # Without the C extension the test fails in activation's setup, with one line.
    if uses_memsys(item) and native_problem(item.config) is None:
        from . import leaks

        guard = leaks._guard(item.config)
        if guard is not None:
            baseline = leaks.snapshot()
            ranges = leaks._locked_ranges() if baseline.locked_kb else None
            state = leaks._ItemState(baseline, leaks._last_fork_serial(), ranges)
            item.stash[leaks.ITEM_KEY] = state
            guard.current = state
    yield


def _active_guard(config: pytest.Config) -> Any:
    """The session's guard, if a test that uses the plugin has made one (and it is not off)."""
    import sys

    leaks = sys.modules.get("pytest_memsyscalls.plugin.leaks")
    if leaks is None:
        return None
    guard = config.stash.get(leaks.GUARD_KEY, None)
    return None if guard is None or guard.mode == "off" else guard


@pytest.hookimpl(hookwrapper=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef[object], request: pytest.FixtureRequest) -> Iterator[None]:
    """Objects made by a fixture wider than a test belong to that fixture, not the test."""
    guard = _active_guard(request.config)
    if guard is None or guard.current is None or fixturedef.scope == "function":
        yield
        return
    from . import leaks

    before = leaks.snapshot()
    yield
    after = leaks.snapshot()
    label = f"{fixturedef.scope}-scoped fixture {fixturedef.argname!r}"
    for ident in after.idents() - before.idents():
        guard.held[ident] = label
    if before.locked_kb is not None and after.locked_kb is not None and after.locked_kb != before.locked_kb:
        delta = after.locked_kb - before.locked_kb
        guard.held_locked_kb[id(fixturedef)] = delta
        guard.current.locked_adjust_kb += delta


@pytest.hookimpl
def pytest_fixture_post_finalizer(fixturedef: pytest.FixtureDef[object], request: pytest.FixtureRequest) -> None:
    guard = _active_guard(request.config)
    if guard is None or fixturedef.scope == "function":
        return
    label = f"{fixturedef.scope}-scoped fixture {fixturedef.argname!r}"
    for ident in [ident for ident, holder in guard.held.items() if holder == label]:
        del guard.held[ident]
        guard.released.add(ident)
    delta = guard.held_locked_kb.pop(id(fixturedef), 0)
    if guard.current is not None:
        guard.current.locked_adjust_kb -= delta


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    outcome = yield
    if call.when != "teardown":
        return
    guard = _active_guard(item.config)
    if guard is None:
        return
    from . import leaks

    state = item.stash.get(leaks.ITEM_KEY, None)
    if state is None:
        return
    del item.stash[leaks.ITEM_KEY]
    if guard.current is state:
        guard.current = None
    leaked, locked = leaks.find_leaks(guard, state)
    if not leaked and locked is None:
        return
    lines = [item.nodeid + " left behind:"]
    lines += ["  " + obj.describe() for obj in leaked]
    if locked is not None:
        lines.append("  " + locked)
    problems = leaks.reclaim(leaked, state, locked is not None, guard)
    lines.append("The leak guard reclaimed them" + (" except:" if problems else "."))
    lines += ["  " + problem for problem in problems]
    lines.append("(pytest-memsyscalls --memsys-leaks=fail|warn|off; use the fixtures, which clean up.)")
    text = "\n".join(lines)
    if guard.mode == "warn":
        item.warn(leaks.MemsysLeakWarning(text))
        return
    report: pytest.TestReport = outcome.get_result()
    if report.failed:
        report.sections.append(("memsys leaks", text))
    else:
        report.outcome = "failed"
        report.longrepr = text
    report.user_properties.append(("memsys_leaks", text))
