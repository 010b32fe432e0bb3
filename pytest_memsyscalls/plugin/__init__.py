"""The pytest plugin (the ``pytest11`` entry point): options, markers and requirement
checks. Fixtures live in ``fixtures``, settings in ``settings``, markers in
``semantics``, the session's fingerprint in ``session``, the leak guard in ``leaks``
(its hooks in ``leak_guard``), the records of what a session made in ``records``, the
report's hooks in ``reporting``, and when any of them acts (only for tests that use
the plugin; the header lines too) in ``activation``.

PYTEST_DONT_REWRITE: loaded into every pytest session (plugin/activation.py says why).
"""

from __future__ import annotations

import re
from collections.abc import Generator
from typing import TYPE_CHECKING

import pluggy
import pytest

from ..kernel import pages
from . import crashes, settings
from . import hookspecs as hooks
from .semantics import REQUIRES_MARK, SEMANTIC_MARK, semantic_of
from .session import session_environment

if TYPE_CHECKING:
    from ..kernel import procfs

# Importing these costs little and loads neither the C extension nor Hypothesis: what a
# test uses is imported when it first runs (activation.py says when the plugin acts).
pytest_plugins = ["pytest_memsyscalls.plugin.activation", "pytest_memsyscalls.plugin.records",
                  "pytest_memsyscalls.plugin.fixtures",
                  "pytest_memsyscalls.plugin.leak_guard", "pytest_memsyscalls.plugin.reporting"]

def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hooks)


def pytest_addoption(parser: pytest.Parser) -> None:
    settings.add_options(parser)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{SEMANTIC_MARK}(semantic): the documented semantic this test verifies; "
        "use pytest_memsyscalls.semantic(id, statement, source=..., tier=...)",
    )
    config.addinivalue_line(
        "markers",
        f"{REQUIRES_MARK}(*needs): what the environment must offer, else the test is skipped with the "
        "unmet need as reason; use pytest_memsyscalls.requires('root', 'cap:CAP_IPC_LOCK', ...)",
    )
    config.stash[settings.SETTINGS_KEY] = settings.resolve(config)
    _register_hypothesis_profiles(config)
    _isolate_crashes(config)
    _without_hypothesis_plugin(config)


def _distributes(config: pytest.Config) -> bool:
    """This process is an xdist controller: it hands the tests to workers and runs none."""
    return (config.pluginmanager.hasplugin("xdist") and getattr(config.option, "dist", "no") != "no"
            and not hasattr(config, "workerinput"))


def _isolate_crashes(config: pytest.Config) -> None:
    """Under xdist a worker that dies is replaced; name the semantic and the signal
    (plugin/crashes.py). A worker records; the controller reports."""
    if _distributes(config) and crashes.enabled():
        config.pluginmanager.register(crashes.CrashReports(config), "memsyscalls-crash-reports")


def _without_hypothesis_plugin(config: pytest.Config) -> None:
    """Under ``memsyscalls run`` (which runs the suite in workers and says so in the
    environment, plugin/crashes.py) Hypothesis' pytest plugin has nothing to do unless a
    ``--hypothesis-*`` option asks for something: the controller runs no test, and the
    shipped suite's Hypothesis tests are state machines run from plain test functions,
    which the plugin leaves alone. Yet its terminal summary imports Hypothesis, ~0.3 s of
    CPU in the controller and in every worker (whose summaries nobody reads), on the
    cores the tests need; so each process drops it, and only a worker that runs a state
    machine imports Hypothesis. The plugin would have ended Hypothesis' initialization
    when the session starts (``_hypothesis_globals``, shared by the plugin and Hypothesis,
    counts it); it is ended here instead, or every strategy a state machine builds would
    warn that it was built while plugins were still loading."""
    if not crashes.enabled():
        return
    if any(value for name, value in vars(config.option).items() if name.startswith("hypothesis_")):
        return
    plugin = config.pluginmanager.get_plugin("hypothesispytest")
    if plugin is not None:
        config.pluginmanager.unregister(plugin)
        import _hypothesis_globals

        _hypothesis_globals.in_initialization -= 1


def pytest_sessionstart(session: pytest.Session) -> None:
    # not at configure: pytest's own faulthandler plugin enables itself there, to stderr
    crashes.worker_faults_to_file(session.config)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    crashes.worker_collected(config, items)


def _register_hypothesis_profiles(config: pytest.Config) -> None:
    """``--hypothesis-profile=ci|deep`` is resolved in Hypothesis' own pytest_configure,
    so the profiles must exist before it runs (hence tryfirst). Without that option
    Hypothesis is not imported here: a session that never uses it (most of the
    projects that install this plugin for its fixtures) should not pay for importing
    it, nor fork a process made larger by it; the suite's state machines register the
    profiles themselves (``hypothesis_profiles.machine_settings``)."""
    try:
        chosen = config.getoption("hypothesis_profile")
    except ValueError:  # Hypothesis' pytest plugin is disabled (-p no:hypothesispytest)
        return
    if chosen:
        from .hypothesis_profiles import register_profiles

        register_profiles()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    found = semantic_of(item)
    if found is not None:
        item.user_properties.extend([
            ("memsys_semantic", found.id),
            ("memsys_tier", found.tier),
            ("memsys_source", found.source),
        ])
    needs: list[object] = []
    for mark in item.iter_markers(REQUIRES_MARK):
        needs.extend(mark.args)
    if needs:
        from ..environment.needs import unmet_needs

        reasons = unmet_needs(tuple(needs), session_environment(item.config))
        if reasons:
            from .activation import skip_at_test  # here: imported earlier, pytest could not rewrite it

            raise skip_at_test("; ".join(reasons))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, pluggy.Result[None], None]:
    """A test that relied on a promised feature and failed: the failure names the promise."""
    outcome = yield
    error = outcome.exception
    if not isinstance(error, Exception):
        return
    if item.get_closest_marker(REQUIRES_MARK) is None:
        return
    from . import promises  # on first use: it imports the expectations (and the fault probe)

    env = session_environment(item.config)
    relied_on = promises.promised_by(item, env)
    if relied_on:
        try:
            raise promises.broken(error, relied_on, env) from error
        except promises.PromiseBroken as named:
            outcome.force_exception(named)


_ADDRESS = re.compile(r"0x[0-9a-fA-F]{6,16}")


def maps_near(text: str, maps: list[procfs.MapsEntry], page_size: int = pages.PAGE_SIZE) -> list[str]:
    """The /proc/self/maps lines at or next to every address a failure message names:
    what the kernel's own selftests print when a memory check fails."""
    addresses = {int(found, 16) for found in _ADDRESS.findall(text)}
    return [str(entry) for entry in maps
            if any(pages.near(addr, entry.start, entry.end, page_size) for addr in addresses)]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
        item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, pluggy.Result[pytest.TestReport], None]:
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed or semantic_of(item) is None:
        return
    from ..kernel import procfs

    try:
        lines = maps_near(str(report.longrepr), procfs.read_maps())
    except OSError:
        return
    if lines:
        report.sections.append(("memsys: /proc/self/maps near the addresses above", "\n".join(lines)))
