"""A pytest plugin for bench_suite.py: when each process of a ``memsyscalls run`` (the
xdist controller and every worker) reached which point, and the CPU it had used by then.

Why: the suite's wall time is three processes sharing two cores, and which of them is on
the critical path (worker start-up, the tests, the controller's handling of ~1,700
reports, the end) is what decides where a saving would show. Loaded with
``-p timeline_plugin`` (bench/ on PYTHONPATH); each process appends one JSON line to the
file named by ``MEMSYS_BENCH_TIMELINE``. Times are wall-clock seconds since the epoch, so
the processes' lines share one axis.
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


def pytest_configure(config: pytest.Config) -> None:
    _mark("configured")


def pytest_collection_finish(session: pytest.Session) -> None:
    _mark("collected")


def pytest_runtest_logstart(nodeid: str, location: Any) -> None:
    _mark("first test starts")


def pytest_sessionfinish(session: pytest.Session) -> None:
    _mark("session finishes")


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    _mark("unconfigured")
    path = os.environ.get(_PATH_VARIABLE)
    if not path:
        return
    worker = getattr(config, "workerinput", {}).get("workerid", "controller")
    with open(path, "a", encoding="utf-8") as out:
        out.write(json.dumps({"process": worker, "marks": _MARKS}) + "\n")
