"""What one ``run_in_child`` call costs, against the two alternatives a test writer has.

1. A bare ``os.fork()`` + ``os._exit(0)`` + ``os.waitpid`` from the same pytest
   process. Target: ``run_in_child(noop)`` within 1.5x of it. Shown beside it, the
   kernel's floor: the same round trip in C, the child exiting before it touches
   anything (what a fork and exit of a process this size cost).
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
import ctypes
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
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


def _kernel_floor() -> None:
    from pytest_memsyscalls.kernel import native

    if native.library().memsys_bench_fork_exit() != 0:
        raise OSError(ctypes.get_errno(), "fork round trip in C failed")


def _timed(fn: object, rounds: int, child_faults: list[float]) -> list[float]:
    """Wall time per call; appends the children's minor faults per call (from their rusage)."""
    out = []
    faults_before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_minflt
    for _ in range(rounds):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        out.append(time.perf_counter() - start)
    child_faults.append((resource.getrusage(resource.RUSAGE_CHILDREN).ru_minflt - faults_before) / rounds)
    return out


def test_measure_run_in_child() -> None:
    """Runs inside pytest: the process being forked is a pytest process."""
    from pytest_memsyscalls.memory.child import run_in_child

    calls = int(os.environ.get(CALLS_ENV, "400"))
    ballast_mb = int(os.environ.get(BALLAST_ENV, "0"))
    ballast = [bytearray(1 << 20) for _ in range(ballast_mb)]  # noqa: F841 - kept alive: a bigger heap
    ballast_objects = [str(i) for i in range(ballast_mb * 10_000)]  # noqa: F841 - many small objects

    def ric() -> None:
        outcome = run_in_child(_noop)
        assert outcome.returned, outcome.describe()

    for _ in range(20):  # warm all paths (imports, caches, the native library)
        _kernel_floor()
        _bare_fork()
        ric()
    floor: list[float] = []
    bare: list[float] = []
    child: list[float] = []
    faults: dict[str, list[float]] = {"kernel_floor": [], "bare_fork": [], "run_in_child": []}
    for _ in range(calls // 20):
        floor += _timed(_kernel_floor, 20, faults["kernel_floor"])
        bare += _timed(_bare_fork, 20, faults["bare_fork"])
        child += _timed(ric, 20, faults["run_in_child"])
    status = Path("/proc/self/status").read_text()
    # With another thread alive (an idle one here; importing numpy starts OpenBLAS's),
    # fork_child does os.fork()'s bookkeeping: measured apart, half as many calls.
    threaded: list[float] = []
    faults["run_in_child_threaded"] = []
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        for _ in range(calls // 40):
            threaded += _timed(ric, 20, faults["run_in_child_threaded"])
    finally:
        stop.set()
        other.join()
    result = {
        "calls": len(child),
        "ballast_mb": ballast_mb,
        "rss_anon_kb": int(status.split("RssAnon:")[1].split()[0]),
        **{f"{name}_child_faults": statistics.median(per_call) for name, per_call in faults.items()},
        "kernel_floor_median_ms": statistics.median(floor) * 1e3,
        "bare_fork_median_ms": statistics.median(bare) * 1e3,
        "bare_fork_mean_ms": statistics.fmean(bare) * 1e3,
        "run_in_child_median_ms": statistics.median(child) * 1e3,
        "run_in_child_mean_ms": statistics.fmean(child) * 1e3,
        "run_in_child_threaded_median_ms": statistics.median(threaded) * 1e3,
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
        f"run_in_child cost per call ({n['calls']} calls, ballast {n['ballast_mb']} MB, "
        f"RssAnon {n['rss_anon_kb'] / 1024:.0f} MB)",
        f"  fork+_exit+waitpid in C  median {n['kernel_floor_median_ms']:.3f} ms"
        f"                      child faults {n['kernel_floor_child_faults']:.0f}   (the kernel's floor)",
        f"  bare fork+waitpid        median {n['bare_fork_median_ms']:.3f} ms   mean {n['bare_fork_mean_ms']:.3f} ms"
        f"   child faults {n['bare_fork_child_faults']:.0f}",
        f"  run_in_child(noop)       median {ric:.3f} ms   mean {n['run_in_child_mean_ms']:.3f} ms"
        f"   child faults {n['run_in_child_child_faults']:.0f}",
        f"    ... with a 2nd thread  median {n['run_in_child_threaded_median_ms']:.3f} ms"
        f"                      child faults {n['run_in_child_threaded_child_faults']:.0f}   (os.fork()'s bookkeeping)",
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


# run_in_child on os.fork(), before _probe.fork_child (two runs at the start of the session
# that added it, same machine and command); kept here because that code path is gone.
BEFORE = {"bare_fork_median_ms": (3.37, 3.73), "run_in_child_median_ms": (4.61, 5.11),
          "ratio_to_bare_fork": (1.37, 1.37), "forked_over_run_in_child": (2.66, 2.81)}


def readme_body(n: dict[str, float], machine: str) -> str:
    ric, ratio = n["run_in_child_median_ms"], n["ratio_to_bare_fork"]
    forked, over, tests = n["forked_per_test_ms"], n["pytest_forked_over_run_in_child"], int(n["tests"])
    floor_faults, bare_faults = n["kernel_floor_child_faults"], n["bare_fork_child_faults"]
    floor_ms, bare_ms = n["kernel_floor_median_ms"], n["bare_fork_median_ms"]
    ric_faults = n["run_in_child_child_faults"]
    threaded, threaded_faults = n["run_in_child_threaded_median_ms"], n["run_in_child_threaded_child_faults"]
    return f"""{machine} `python bench/bench_child.py --readme` ({n['calls']} calls each, alternating in rounds
of 20 inside one pytest process with {n['rss_anon_kb'] / 1024:.0f} MB of anonymous memory; medians; absolute
times on this VM move by +-35% between runs, the ratios measured within one run much less).

| | per call / per test | child's minor faults |
|---|---|---|
| the kernel's floor: `fork()`, `_exit(0)` in the child, `waitpid()`, in C | {floor_ms:.2f} ms | {floor_faults:.0f} |
| bare `os.fork()` + `os._exit(0)` + `waitpid` | {bare_ms:.2f} ms | {bare_faults:.0f} |
| `run_in_child(noop)` | {ric:.2f} ms (**{ratio:.2f}x** the bare fork; target <= 1.5x) | {ric_faults:.0f} |
| `run_in_child(noop)` with another thread alive (bookkeeping) | {threaded:.2f} ms | {threaded_faults:.0f} |
| pytest-forked per test ({tests} trivial tests, forked minus plain) | {forked:.2f} ms (**{over:.2f}x**; >= 3x) | |

Where a fork round trip's time goes: fork() copying the page tables and the exit tearing the copy down are
the kernel's floor. Above it, the cost is the child's first touches: every page it writes is copied, and
every stretch of the interpreter's code it runs for the first time is faulted in (the kernel does not copy
the page tables of file mappings at fork), several microseconds each on this VM. `os.fork()`'s child runs
CPython's after-fork work: it rebuilds the GIL and the runtime's locks for threads lost in the fork and
runs every `os.register_at_fork` callback (threading, logging, random, concurrent.futures); that is the
bare fork's {bare_faults - floor_faults:.0f} extra faults.

`run_in_child` forks with `_probe.fork_child`. When the process has one thread and has not imported
asyncio (in a GIL build), no lock can be held by a lost thread and the child skips that work; the
callbacks do not run (tests/test_child.py shows when they do; asyncio's resets the child's event loop,
so with asyncio imported, or other threads alive, the fork does what `os.fork()` does). Any other thread
counts, a native one too: importing numpy starts OpenBLAS's pool, and a thread creating its Python
thread state at the moment of the fork could leave the runtime's locks held in a child that skipped
their rebuilding. The child also
starts with `sys.stdout`/`sys.stderr` already on the capture pipes (swapped in the parent across the
fork, with asynchronous signals blocked) as unbuffered streams, so it has nothing to flush; it calls the
function from C, and when that returns None with the streams untouched it writes the pickled None and
exits in C. Anything else (a value, an exception, `SystemExit`, replaced streams) goes through the
Python reporting, as before. The parent's side (pipes, pidfd wait, reaping, the process-group kill) is
unchanged.

Before `fork_child`, on `os.fork()` (two runs, same command and machine): run_in_child
{BEFORE['run_in_child_median_ms'][0]:.2f}-{BEFORE['run_in_child_median_ms'][1]:.2f} ms against a bare fork of
{BEFORE['bare_fork_median_ms'][0]:.2f}-{BEFORE['bare_fork_median_ms'][1]:.2f} ms
({BEFORE['ratio_to_bare_fork'][0]:.2f}x); pytest-forked
{BEFORE['forked_over_run_in_child'][0]:.2f}-{BEFORE['forked_over_run_in_child'][1]:.2f}x run_in_child.
"""

if __name__ == "__main__":
    sys.exit(main())
