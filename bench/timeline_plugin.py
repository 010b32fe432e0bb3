"""A pytest plugin for bench_suite.py: when each process of a ``memsyscalls run`` (the
pytest process and every worker it forks, or xdist's controller and workers) reached
which point, and the CPU it had used by then.

Why: the suite's wall time is several processes sharing two cores, and which of them is
on the critical path (start-up and collection, the tests, the handling of the workers'
reports, the end) is what decides where a saving would show. Loaded with
``-p timeline_plugin`` (bench/ on PYTHONPATH); each process appends one JSON line to the
file named by ``MEMSYS_BENCH_TIMELINE``: at unconfigure, or in a forked worker (which
ends without one) when its session-scoped fixtures are torn down. Times are wall-clock
seconds since the epoch, so the processes' lines share one axis; a forked worker's CPU
counts from its fork.
"""

from __future__ import annotations

import json
import os
import resource
import time
from typing import Any

import pytest

_PATH_VARIABLE = "MEMSYS_BENCH_TIMELINE"
_MARKS: dict[str, tuple[float, float]] = {}


def _mark(name: str) -> None:
    if name not in _MARKS:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        _MARKS[name] = (time.time(), usage.ru_utime + usage.ru_stime)


_mark("plugins loaded")  # this module is imported while pytest loads its plugins
_CONFIGURED_IN: list[int] = []  # the pid of the process pytest configured


def _forked() -> None:
    _MARKS.clear()
    _mark("forked")


os.register_at_fork(after_in_child=_forked)  # a test's own forks write nothing


def pytest_configure(config: pytest.Config) -> None:
    _CONFIGURED_IN.append(os.getpid())
    _mark("configured")


@pytest.fixture(scope="session", autouse=True)
def _timeline_forked_worker_ends() -> Any:
    yield
    if _CONFIGURED_IN and os.getpid() != _CONFIGURED_IN[0]:
        _mark("tests done")
        _write(f"worker {os.getpid()}")


def pytest_collection_finish(session: pytest.Session) -> None:
    _mark("collected")


def pytest_runtest_logstart(nodeid: str, location: Any) -> None:
    _mark("first test starts")


def pytest_sessionfinish(session: pytest.Session) -> None:
    _mark("session finishes")


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    _mark("unconfigured")
    _write(getattr(config, "workerinput", {}).get("workerid", "controller"))


def _write(process: str) -> None:
    path = os.environ.get(_PATH_VARIABLE)
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps({"process": process, "marks": _MARKS}) + "\n")
