"""``python -m pytest_memsyscalls`` (also the ``memsyscalls`` command).

  run [PYTEST ARGS...]      the conformance suite against this machine
  env [--json]              the environment fingerprint
  semantics [--json|--markdown]  every semantic the suite checks, from its markers
  diff OLD NEW              differences between two reports (non-zero when any)
  matrix [...]              the suite in several environments, merged into one table
  prepare TARGET...         install or fetch what matrix targets need; --cache, --clear-cache
  layout [PID] [--json]     the memory layout of a process, the way the tutorial draws it
  sweep [--dry-run]         remove what killed runs recorded and left (see SECURITY.md)

"The tutorial" is the memory-management tutorial this suite grew from (its memory
layout, mmap, mprotect, SysV shm and mlock chapters and practice exercises); semantic
ids with ".seed." check its claims and examples, and sources say "tutorial §N".
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable, Sequence

import pytest

from ..matrix.suite import conformance_dir
from ..plugin import crashes
from ..plugin.forked_workers import ForkedWorkers


def suite_args(extra: Sequence[str]) -> list[str]:
    """pytest arguments that run the shipped suite from anywhere, writing nothing into it."""
    args = [str(conformance_dir()), "-p", "no:cacheprovider", f"--rootdir={conformance_dir()}",
            "-rfEs",  # every failure and skip with its reason in the summary: the point of the run
            # Imported before pytest on purpose: Hypothesis (preimport_for_speed) and this
            # package, whose CLI is running; neither has assertions to rewrite.
            *(arg for module in ("hypothesis", "_hypothesis_globals", "pytest_memsyscalls") for arg in (
                "-W", f"ignore:Module already imported so cannot be rewritten; {module}:"
                      "pytest.PytestAssertRewriteWarning"))]
    if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        args += ["-p", "pytest_memsyscalls.plugin"]
    return [*args, *extra]


def preimport_for_speed(*, with_hypothesis: bool) -> None:
    """Import Hypothesis and this plugin before pytest starts.

    pytest assertion-rewrites every module of a distribution that registers a pytest
    plugin (Hypothesis and this package both do) when it is imported during the
    session, and with PYTHONDONTWRITEBYTECODE it cannot cache the result, so each run
    re-parses and rewrites them: ~80 Hypothesis modules cost 1.3-1.9 s of a ~4 s
    collection here, the plugin's own modules ~0.8 s more. Neither has assertions a
    test result depends on (the plugin's are internal invariants); the conformance
    modules, imported by pytest itself, are still rewritten. Not Hypothesis where the
    suite runs in workers: this process then runs no test, and only a worker that runs
    a state machine imports it (reading the rewritten modules ci/setup.sh caches)."""
    import importlib

    if with_hypothesis:
        import hypothesis.stateful
        import hypothesis.strategies  # noqa: F401 - imported ahead of pytest, for its side effect

    from .. import plugin

    for module in plugin.pytest_plugins:
        importlib.import_module(module)


class _RunCommandName:
    """pytest's usage lines and errors name the program as ``pytest.main()`` when it is
    started from Python; here it is ``memsyscalls run``."""

    @pytest.hookimpl(trylast=True)
    def pytest_addoption(self, parser: pytest.Parser) -> None:
        parser.prog = "memsyscalls run"


def hypothesis_home() -> str:
    """Hypothesis' example database for ``memsyscalls run``: in this package's cache
    directory (named by ``memsyscalls matrix --help``), never ``.hypothesis/`` in the
    user's working directory."""
    from ..matrix.targets import cache_dir

    return str(cache_dir() / "hypothesis")


def cmd_run(argv: Sequence[str]) -> int:
    workers = forked_workers(argv)
    preimport_for_speed(with_hypothesis=workers is None)
    # xdist's crash reports name semantic and signal (`run -n N`); Hypothesis' pytest plugin
    # is dropped (plugin/__init__.py); the workers inherit the variable
    os.environ[crashes.ENABLE_VARIABLE] = "1"
    # Hypothesis' database in the cache directory, in this process and in the workers the
    # suite runs in (the state machines read the variable: plugin/hypothesis_profiles.py)
    from ..plugin.settings import HYPOTHESIS_HOME_VARIABLE

    os.environ[HYPOTHESIS_HOME_VARIABLE] = hypothesis_home()
    plugins: list[object] = [_RunCommandName()] + ([] if workers is None else [workers])
    return int(pytest.main(suite_args(argv), plugins=plugins))


def forked_workers(argv: Sequence[str]) -> ForkedWorkers | None:
    """Run the suite in workers forked after collection, so a test that kills its process
    (a kernel that maps in the wrong place can make a direct access crash it) is one
    failed test naming the signal, and a new worker runs the rest
    (plugin/forked_workers.py). One worker per CPU this process may run on, up to
    MAX_WORKERS: the tests are independent (each observes its own process, its own
    objects and children, and the leak guard counts only those), so the workers that
    isolate the tests also share the cores. None where the caller chose pytest-xdist's
    distribution (``-n``, ``--dist``; ``-n 0`` runs the tests in the pytest process) or
    only collects."""
    chosen = any(arg in ("-n", "--numprocesses", "--dist", "--collect-only", "--co")
                 or re.match(r"-n\d|--numprocesses=|--dist=", arg) for arg in argv)
    return None if chosen else ForkedWorkers(worker_count(), MAX_CRASHES)


def worker_count() -> int:
    """The CPUs this process may run on (its affinity mask, which taskset, cpusets and
    most container runtimes narrow), at most MAX_WORKERS."""
    return max(1, min(MAX_WORKERS, len(os.sched_getaffinity(0))))


MAX_WORKERS = 4  # not measured beyond: this machine has 2 CPUs
MAX_CRASHES = 200  # workers that died replaced before a run gives up


def cmd_env(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="memsyscalls env", description="the environment fingerprint")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    options = parser.parse_args(argv)
    from ..environment.fingerprint import detect
    from ..memory.brk import with_helper_facts

    env = with_helper_facts(detect())
    if options.json:
        print(json.dumps(env.as_dict(), indent=2, sort_keys=True))
    else:
        print(env.describe())
    return 0


class _SemanticCollector:
    def __init__(self) -> None:
        self.semantics: dict[str, dict[str, str]] = {}
        self.tests: dict[str, set[str]] = {}
        self.needs: dict[str, set[str]] = {}

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        from ..plugin.semantics import REQUIRES_MARK, semantic_of

        for item in items:
            found = semantic_of(item)
            if found is None:
                continue
            self.semantics.setdefault(found.id, found.as_dict())
            self.tests.setdefault(found.id, set()).add(item.nodeid)
            needs = self.needs.setdefault(found.id, set())
            for mark in item.iter_markers(REQUIRES_MARK):
                needs.update(need if isinstance(need, str) else f"callable:{getattr(need, '__name__', repr(need))}"
                             for need in mark.args)

    def rows(self) -> list[dict[str, object]]:
        """One row a semantic, sorted, whatever order the items were collected in."""
        return [{**self.semantics[sid], "requires": sorted(self.needs[sid]), "tests": sorted(self.tests[sid])}
                for sid in sorted(self.semantics)]


def collect_semantics(extra: Sequence[str] = ()) -> list[dict[str, object]]:
    collector = _SemanticCollector()
    status = pytest.main([*suite_args(extra), "--collect-only", "-q"], plugins=[collector])
    if status not in (0, 5):
        raise SystemExit(f"collecting the conformance suite failed (pytest exit status {int(status)})")
    return collector.rows()


def cmd_semantics(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="memsyscalls semantics",
                                     description="list the semantics the conformance suite checks")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--json", action="store_true")
    group.add_argument("--markdown", action="store_true")
    options = parser.parse_args(argv)
    import contextlib
    import io

    preimport_for_speed(with_hypothesis=True)
    with contextlib.redirect_stdout(io.StringIO()):
        rows = collect_semantics()
    if options.json:
        print(json.dumps(rows, indent=2))
    elif options.markdown:
        print("| id | tier | statement | source |\n|---|---|---|---|")
        for row in rows:
            print(f"| `{row['id']}` | {row['tier']} | {row['statement']} | {row['source']} |")
    else:
        for row in rows:
            print(f"{row['id']} [{row['tier']}] {row['statement']} ({row['source']})")
        print(f"{len(rows)} semantics")
    return 0


def _lazy(module: str, function: str) -> Callable[[Sequence[str]], int]:
    def run(argv: Sequence[str]) -> int:
        import importlib

        return int(getattr(importlib.import_module(f"pytest_memsyscalls.{module}"), function)(argv))

    return run


COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {
    "run": cmd_run,
    "env": cmd_env,
    "semantics": cmd_semantics,
    "diff": _lazy("cli.diff", "cmd_diff"),
    "matrix": _lazy("cli.matrix", "cmd_matrix"),
    "layout": _lazy("cli.layout", "cmd_layout"),
    "sweep": _lazy("cli.sweep", "cmd_sweep"),
    "prepare": _lazy("cli.prepare", "cmd_prepare"),
}


def _usage() -> str:
    """The module's docstring as plain text: no reST markup in --help."""
    text = (__doc__ or "").replace("``", "")
    return "usage: memsyscalls COMMAND [ARGS...]  (also: python -m pytest_memsyscalls)\n" + text.split("\n", 1)[1]


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_usage())
        return 0 if args else 2
    command = COMMANDS.get(args[0])
    if command is None:
        print(f"memsyscalls: unknown command {args[0]!r}\n{_usage()}", file=sys.stderr)
        return 2
    try:
        return command(args[1:])
    except BrokenPipeError:
        # The reader went away (`memsyscalls diff A B | head`): not an error of ours. Point
        # stdout at /dev/null so the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as a shell reports a command a closed pipe killed
