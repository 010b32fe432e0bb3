"""What one ``run_in_child`` call costs, against the two alternatives a test writer has.

1. A bare ``os.fork()`` + ``os._exit(0)`` + ``os.waitpid`` from the same pytest
   process: the floor (the kernel's fork and exit of a process this size).
   Target: ``run_in_child(noop)`` within 1.5x of it.
2. pytest-forked's per-test overhead: the wall time of N trivial tests run with
   ``--forked`` minus the same N without, divided by N. Target: ``run_in_child``
   at least 3x cheaper.

Both calls are measured inside a real pytest session (this file re-runs itself
under ``pytest.main``) so the process has pytest's size, and in alternating rounds
so that drift (CPU frequency, other load) hits both alike. Medians are reported;
means are shown too, since a fork's cost has a long tail.

    python bench/bench_child.py                 # defaults: 400 calls, 300 forked tests
    python bench/bench_child.py --calls 1000 --ballast-mb 200   # a bigger process

Prints a table and writes the numbers as JSON with ``--json PATH``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULT_ENV = "MEMSYS_BENCH_CHILD_RESULT"
CALLS_ENV = "MEMSYS_BENCH_CHILD_CALLS"
BALLAST_ENV = "MEMSYS_BENCH_CHILD_BALLAST_MB"


def _noop() -> None:
    return None


def _bare_fork() -> None:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)


def _timed(fn: object, rounds: int) -> list[float]:
    out = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        out.append(time.perf_counter() - start)
    return out


def test_measure_run_in_child() -> None:
    """Runs inside pytest: the process being forked is a pytest process."""
    from pytest_memsyscalls.child import run_in_child

    calls = int(os.environ.get(CALLS_ENV, "400"))
    ballast_mb = int(os.environ.get(BALLAST_ENV, "0"))
    ballast = [bytearray(1 << 20) for _ in range(ballast_mb)]  # noqa: F841 - kept alive: a bigger heap
    ballast_objects = [str(i) for i in range(ballast_mb * 10_000)]  # noqa: F841 - many small objects

    def ric() -> None:
        outcome = run_in_child(_noop)
        assert outcome.returned, outcome.describe()

    for _ in range(20):  # warm both paths (imports, caches, the native library)
        _bare_fork()
        ric()
    bare: list[float] = []
    child: list[float] = []
    for _ in range(calls // 20):
        bare += _timed(_bare_fork, 20)
        child += _timed(ric, 20)
    result = {
        "calls": len(child),
        "ballast_mb": ballast_mb,
        "bare_fork_median_ms": statistics.median(bare) * 1e3,
        "bare_fork_mean_ms": statistics.fmean(bare) * 1e3,
        "run_in_child_median_ms": statistics.median(child) * 1e3,
        "run_in_child_mean_ms": statistics.fmean(child) * 1e3,
    }
    Path(os.environ[RESULT_ENV]).write_text(json.dumps(result))


FORKED_TESTS = """
import pytest

@pytest.mark.parametrize("i", range({n}))
def test_trivial(i):
    assert i >= 0
"""


def pytest_forked_per_test_ms(tests: int) -> dict[str, float]:
    """(wall with --forked - wall without) / tests, best of three runs each."""
    with tempfile.TemporaryDirectory(prefix="memsys-bench-") as tmp:
        Path(tmp, "test_trivial.py").write_text(FORKED_TESTS.format(n=tests))
        base = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
                "--memsys-leaks=off", "test_trivial.py"]

        def wall(extra: list[str]) -> float:
            best = float("inf")
            for _ in range(3):
                start = time.perf_counter()
                done = subprocess.run(base + extra, cwd=tmp, capture_output=True, text=True, check=False)
                elapsed = time.perf_counter() - start
                if done.returncode != 0:
                    raise SystemExit(f"pytest {' '.join(extra)} failed:\n{done.stdout}\n{done.stderr}")
                best = min(best, elapsed)
            return best

        plain = wall([])
        forked = wall(["--forked"])
    return {"tests": tests, "plain_s": plain, "forked_s": forked,
            "forked_per_test_ms": (forked - plain) / tests * 1e3}


def run_in_child_numbers(calls: int, ballast_mb: int) -> dict[str, float]:
    import pytest

    with tempfile.TemporaryDirectory(prefix="memsys-bench-") as tmp:
        out = Path(tmp, "result.json")
        os.environ[RESULT_ENV] = str(out)
        os.environ[CALLS_ENV] = str(calls)
        os.environ[BALLAST_ENV] = str(ballast_mb)
        code = pytest.main([f"{__file__}::test_measure_run_in_child", "-q", "-p", "no:cacheprovider",
                            "-p", "no:randomly", "--rootdir", tmp])
        if code != 0:
            raise SystemExit(f"the measuring test failed (exit {code})")
        return json.loads(out.read_text())  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=400, help="run_in_child calls (and as many bare forks)")
    parser.add_argument("--forked-tests", type=int, default=300, help="trivial tests for pytest-forked's cost")
    parser.add_argument("--ballast-mb", type=int, default=0, help="grow the pytest process by this many MB")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    parser.add_argument("--readme", action="store_true", help="rewrite this benchmark's section of bench/README.md")
    args = parser.parse_args(argv)

    numbers = run_in_child_numbers(args.calls, args.ballast_mb)
    numbers.update(pytest_forked_per_test_ms(args.forked_tests))
    ric = numbers["run_in_child_median_ms"]
    numbers["ratio_to_bare_fork"] = ric / numbers["bare_fork_median_ms"]
    numbers["pytest_forked_over_run_in_child"] = numbers["forked_per_test_ms"] / ric

    n = numbers
    print("\n".join([
        f"run_in_child cost per call ({n['calls']} calls, ballast {n['ballast_mb']} MB)",
        f"  bare fork+waitpid        median {n['bare_fork_median_ms']:.3f} ms   mean {n['bare_fork_mean_ms']:.3f} ms",
        f"  run_in_child(noop)       median {ric:.3f} ms   mean {n['run_in_child_mean_ms']:.3f} ms",
        f"  pytest-forked per test          {n['forked_per_test_ms']:.3f} ms   ({n['tests']} tests: "
        f"{n['forked_s']:.2f} s forked, {n['plain_s']:.2f} s plain)",
        f"  run_in_child / bare fork        {n['ratio_to_bare_fork']:.2f}x   (target <= 1.5x)",
        f"  pytest-forked / run_in_child    {n['pytest_forked_over_run_in_child']:.2f}x   (target >= 3x)",
    ]))
    if args.json:
        args.json.write_text(json.dumps(numbers, indent=2) + "\n")
    if args.readme:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from readme_section import machine_line, replace_section

        replace_section("child", "run_in_child against a bare fork and pytest-forked",
                        readme_body(numbers, machine_line()))
    return 0


# Measured on the same machine, same load, alternating with the current code, before
# the child runner was reworked (see readme_body); kept here because the old code is gone.
BEFORE = {"bare_fork_median_ms": (3.36, 3.79), "run_in_child_median_ms": (5.07, 6.17),
          "ratio_to_bare_fork": (1.51, 1.63), "forked_per_test_ms": (12.2, 13.0)}


def readme_body(n: dict[str, float], machine: str) -> str:
    ric, ratio = n["run_in_child_median_ms"], n["ratio_to_bare_fork"]
    forked, over, tests = n["forked_per_test_ms"], n["pytest_forked_over_run_in_child"], int(n["tests"])
    return f"""{machine} `python bench/bench_child.py --readme` ({n['calls']} calls each, alternating in rounds
of 20 inside one pytest process; medians; the machine was shared with other jobs, so absolute times move by
+-25% between runs while the ratios measured in one run are steadier).

| | per call / per test |
|---|---|
| bare `os.fork()` + `os._exit(0)` + `waitpid` | {n['bare_fork_median_ms']:.2f} ms |
| `run_in_child(noop)` | {ric:.2f} ms (**{ratio:.2f}x** the bare fork; target <= 1.5x) |
| pytest-forked per test ({tests} trivial tests, forked minus plain) | {forked:.2f} ms (**{over:.2f}x**; target >= 3x) |

Before the rework (two runs, same machine, interleaved with two runs of the new code): run_in_child
{BEFORE['run_in_child_median_ms'][0]:.2f}-{BEFORE['run_in_child_median_ms'][1]:.2f} ms against a bare fork of
{BEFORE['bare_fork_median_ms'][0]:.2f}-{BEFORE['bare_fork_median_ms'][1]:.2f} ms, i.e.
{BEFORE['ratio_to_bare_fork'][0]:.2f}-{BEFORE['ratio_to_bare_fork'][1]:.2f}x; pytest-forked
{BEFORE['forked_per_test_ms'][0]:.1f}-{BEFORE['forked_per_test_ms'][1]:.1f} ms per test (2.1-2.4x run_in_child).

Where the time went (child side, microseconds of the child's own CPU after fork, measured per step): most of
a call was not the fork but first touches after it. Every heap page the child writes is copied, and every
code path it runs for the first time faults its pages in, at ~4 us per fault on this VM. The child used to
build two new text files for stdout/stderr (~340 us), call `signal.signal` twice (~210 us, mostly the enum
wrapping), pickle `None` (~120 us); the parent slept in 1 ms steps between `waitpid(WNOHANG)` polls once the
pipes had closed (~0.7 ms per call on average). Now the parent builds the stdio objects once and decides
before the fork which signal dispositions and limits need changing; the child only assigns and makes the
syscalls (`_signal.signal`, skipped when already SIG_DFL); a `None` result is pickled once at import; the
parent waits on a pidfd (poll wakes the moment the child exits; kernels without pidfd_open keep the polling
loop) with `select.poll` instead of creating an epoll instance per call. Behaviour is unchanged
(stdout/stderr capture, siginfo report, pickled result, process-group kill, timeout; tests/test_child.py).
The child's set-up is one C call (`_probe.enter_child`), which also appends the child's own
process-group record for the sweep after a kill -9 (the parent used to read /proc/PID/stat for it after
the fork, ~70 copy-on-write faults per call).

Why the 3x target is out of reach here (getrusage around 300 calls, same process): a bare fork is
already ~1 ms for fork() copying the page tables of the ~40-50 MB pytest process, ~1 ms of the child's
own CPU in CPython's after-fork work (its at-fork hooks touch ~250 pages, each a copy-on-write fault at
several us in this VM), and ~1-2 ms for the exit that tears the copied address space down again, all
proportional to the process size; it moves between 3.7 and 7.7 ms from run to run on this VM.
run_in_child adds ~1.5-2.5 ms (its bookkeeping still writes ~150 pages of the parent after the fork and
the child pickles and writes its result), pytest-forked ~11-13 ms (a whole runtest protocol and report
serialisation in the child). With F the bare fork, the ratio is about (F + 12) / (F + 2): 3x needs F
under ~3 ms, which this machine gives only for processes much smaller than a pytest session. The
measured ratio is 1.75-2.9x across runs.
"""


if __name__ == "__main__":
    sys.exit(main())
