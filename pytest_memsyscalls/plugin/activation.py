"""When the plugin acts: only for tests that use it.

pytest loads this plugin (``pytest11``) into every session of every environment it is
installed in, most of which never asked for it. So the parts that change how a test
runs (the leak guard, the session records, the SIGTERM/SIGINT handlers) and the
header lines act only for a test that *uses* pytest-memsyscalls: it requests one of
the package's fixtures (the fixture pytest resolved must be ours, not a project's own
``arena``), or carries a ``memsys_semantic``/``memsys_requires`` marker.
``--memsys-all-tests`` (``MEMSYS_ALL_TESTS``, ``memsys_all_tests``) turns them on for
every test. A session that uses nothing of it imports neither the C extension nor
Hypothesis, creates no file and sees no handler of ours.

Also here: the one-line error for a missing or broken C extension, given to the first
test that uses the package (and to no other session).

PYTEST_DONT_REWRITE: the modules a session loads whether it uses the package or not say
this in their docstrings. pytest assertion-rewrites every module of a distribution that
registers a ``pytest11`` plugin, and where it cannot cache the result (a read-only
site-packages, ``PYTHONDONTWRITEBYTECODE``) it parses, rewrites and compiles them again
in every session: 34 ms for these 19 modules here, against 13 ms to compile them as
they are (bench/README.md has the cost in whole sessions). Their asserts are internal
invariants, whose plain AssertionError is enough. tests/test_guest.py checks that each
module an unrelated session loads carries the mark.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from . import settings
from .semantics import REQUIRES_MARK, SEMANTIC_MARK

FIXTURES_MODULE = "pytest_memsyscalls.plugin.fixtures"
# The fixtures a project gets; a test checks this equals what fixtures.py defines.
FIXTURES = frozenset({
    "_memsys_cleanup", "arena", "expect_signal", "fault_probe", "locked_region", "mapped_file", "mapped_pages",
    "memsys_env", "page_size", "posix_shm", "run_in_child", "shm_segment",
})
_MARKS = (SEMANTIC_MARK, REQUIRES_MARK)

_USES_KEY = pytest.StashKey[bool]()
_HEADER_SHOWN_KEY = pytest.StashKey[bool]()
_NATIVE_KEY = pytest.StashKey["str | None"]()
_SEEN_SEMANTIC_KEY = pytest.StashKey[bool]()


def _ours(item: pytest.Item, name: str) -> bool:
    """Whether the fixture ``name`` that pytest resolved for the item is this package's."""
    info = getattr(item, "_fixtureinfo", None)
    defs = getattr(info, "name2fixturedefs", {}).get(name) if info is not None else None
    if not defs:
        return True  # cannot tell (another pytest): the name alone decides
    func = getattr(defs[-1], "func", None)
    return getattr(func, "__module__", FIXTURES_MODULE) == FIXTURES_MODULE


def uses_memsys(item: pytest.Item) -> bool:
    """Whether the plugin acts for this test (see the module's docstring)."""
    found = item.stash.get(_USES_KEY, None)
    if found is None:
        found = (settings.get(item.config).all_tests
                 or any(item.get_closest_marker(mark) is not None for mark in _MARKS)
                 or any(_ours(item, name) for name in FIXTURES.intersection(getattr(item, "fixturenames", ()))))
        item.stash[_USES_KEY] = found
    return found


def native_problem(config: pytest.Config) -> str | None:
    """One line naming what is wrong with the compiled part and the command that rebuilds
    it; None when it loads. Checked once per session."""
    found = config.stash.get(_NATIVE_KEY, "")
    if found == "":
        from ..kernel.native import NativeBuildMissing, load_probe

        try:
            load_probe()
        except NativeBuildMissing as error:
            found = f"pytest-memsyscalls: {error}"
        else:
            found = None
        config.stash[_NATIVE_KEY] = found
    return found


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if uses_memsys(item):
        problem = native_problem(item.config)
        if problem is not None:
            pytest.fail(problem, pytrace=False)


def skip_at_test(reason: str) -> BaseException:
    """The exception that skips a test and is reported at the test (``file.py:LINE``),
    as a ``skip`` marker is, not at the plugin's hook that raised it: pytest takes a
    skip's location from its traceback unless ``_use_item_location`` is set (pytest 7.0+)."""
    try:
        return pytest.skip.Exception(reason, _use_item_location=True)  # type: ignore[call-arg,unused-ignore]
    except TypeError:  # a pytest without it: the hook's location, as before
        return pytest.skip.Exception(reason)


def _header(config: pytest.Config) -> list[str]:
    config.stash[_HEADER_SHOWN_KEY] = True
    from .session import session_environment

    return session_environment(config).header_lines()


def forced(config: pytest.Config) -> bool:
    """The user asked for the plugin before any test was collected."""
    chosen = settings.get(config)
    return chosen.all_tests or bool(chosen.report) or bool(chosen.baseline)


def pytest_report_header(config: pytest.Config) -> list[str]:
    return _header(config) if forced(config) else []


def pytest_report_collectionfinish(config: pytest.Config, items: Sequence[pytest.Item]) -> list[str]:
    """The header lines, once it is known that a collected test uses the plugin."""
    if config.stash.get(_HEADER_SHOWN_KEY, False) or not any(uses_memsys(item) for item in items):
        return []
    return _header(config)


class _SemanticSeen:
    """Under xdist, notes (on the controller) that a worker ran a test with a semantic."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "teardown" and any(name == "memsys_semantic" for name, _ in report.user_properties):
            self.config.stash[_SEEN_SEMANTIC_KEY] = True


def pytest_configure(config: pytest.Config) -> None:
    if config.pluginmanager.hasplugin("xdist") and not hasattr(config, "workerinput"):
        config.pluginmanager.register(_SemanticSeen(config), "memsyscalls-semantic-seen")


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """Under xdist the controller collects nothing itself: the header lines come at the end,
    when a worker ran a test that used the plugin."""
    if config.stash.get(_HEADER_SHOWN_KEY, False) or not config.stash.get(_SEEN_SEMANTIC_KEY, False):
        return
    terminalreporter.write_sep("-", "memsyscalls environment")
    for line in _header(config):
        terminalreporter.write_line(line)


