"""Wall time of the whole conformance suite natively, pytest start-up included, and
where it goes: interpreter + pytest start-up, collection (imports, assertion
rewriting), and the tests themselves (with the slowest ones named).

Measured twice, both with PYTHONDONTWRITEBYTECODE=1 (as this project's machines set
it, so a run itself never caches anything): with the bytecode caches that
ci/setup.sh writes at set-up (the plugin byte-compiled, the conformance modules
assertion-rewritten by pytest once), and cold, with those caches removed first.

``python bench/bench_suite.py [--runs N]`` rewrites the ``suite`` section of
bench/README.md. Runs are sequential and the median is reported, because this
machine is shared and single runs move by +-20%.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from readme_section import machine_line, replace_section

import pytest_memsyscalls

RUN = [sys.executable, "-m", "pytest_memsyscalls", "run", "-q", "-p", "no:randomly"]


NO_BYTECODE = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
CACHED = [Path(pytest_memsyscalls.__file__).parent, Path(pytest_memsyscalls.__file__).parent.parent / "conformance"]


def drop_caches() -> None:
    for top in CACHED:
        for cache in top.rglob("__pycache__"):
            shutil.rmtree(cache, ignore_errors=True)


def warm_caches() -> None:
    """What ci/setup.sh does after installing: byte-compile, let pytest cache the rewritten
    conformance modules in this process, and once more in xdist workers, which import the
    plugin after pytest's rewrite hook is in place, and Hypothesis when a state machine
    runs (so the two machines run). Without the last step every "cached" run's workers
    compiled the plugin, or rewrote Hypothesis, again."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run([sys.executable, "-m", "compileall", "-q", *map(str, CACHED)], env=env, check=True,
                   capture_output=True)
    subprocess.run([*RUN, "--collect-only"], env=env, check=True, capture_output=True)
    worker = subprocess.run([*RUN, "-k", "matches_model"], env=env, check=False, capture_output=True)
    if worker.returncode not in (0, 1):
        raise SystemExit(f"warming the workers' caches exited {worker.returncode}:\n{worker.stdout[-2000:]!r}")


CPU_SECONDS: list[float] = []  # user + system time of the last timed command's processes


def timed(cmd: list[str], *, cold: bool = False, cwd: Path | None = None) -> tuple[float, str]:
    if cold:
        drop_caches()
    before = os.times()
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, env=NO_BYTECODE, cwd=cwd)
    wall = time.perf_counter() - started
    after = os.times()
    CPU_SECONDS[:] = [(after.children_user - before.children_user) + (after.children_system - before.children_system)]
    if done.returncode not in (0, 1, 5):  # 1: a semantic fails here (see ci/baselines/README.md); timed all the same
        raise SystemExit(f"{' '.join(cmd)} exited {done.returncode}:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return wall, done.stdout


def machine_speed() -> float:
    """Seconds a fixed pure-Python loop takes in a fresh interpreter (best of three): this
    machine is a shared VM whose speed moves by a third within an hour (the same suite run
    took 6.9 s of CPU at one time and 9.2 s 40 minutes later), so a figure is only
    comparable with another taken at the same reference speed."""
    return min(timed([sys.executable, "-c", "sum(range(3 * 10**7))"])[0] for _ in range(3))


TIMELINE_MARKS = ("plugins loaded", "configured", "collected", "forked", "first test starts", "tests done",
                  "session finishes", "unconfigured")


def timeline() -> str:
    """One more cached run with bench/timeline_plugin.py: a Markdown table of when each
    process (the pytest process, each worker) reached each point, in seconds since the
    run was started, with the CPU seconds it had used by then; and the whole run's wall."""
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "timeline.jsonl"
        env = {**NO_BYTECODE, "MEMSYS_BENCH_TIMELINE": str(path),
               "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parent), os.environ.get("PYTHONPATH")]))}
        started = time.time()
        done = subprocess.run([*RUN, "-p", "timeline_plugin"], capture_output=True, text=True, check=False, env=env)
        ended = time.time()
        if done.returncode not in (0, 1) or not path.exists():
            raise SystemExit(f"the timeline run exited {done.returncode}:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
        rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows.sort(key=lambda row: (row["process"] != "controller", row["process"]))
    lines = ["| process | " + " | ".join(TIMELINE_MARKS) + " |", "|---" * (len(TIMELINE_MARKS) + 1) + "|"]
    for row in rows:
        cells = []
        for mark in TIMELINE_MARKS:
            at = row["marks"].get(mark)
            cells.append("" if at is None else f"{at[0] - started:.2f} s ({at[1]:.2f} CPU)")
        lines.append(f"| {row['process']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + f"\n\nThat run ended {ended - started:.2f} s after it was started."


def session_seconds(output: str) -> float:
    found = re.findall(r" in ([0-9.]+)s", output)
    return float(found[-1]) if found else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    options = parser.parse_args()
    speed_before = machine_speed()
    bare = statistics.median(timed([sys.executable, "-c", "import pytest"])[0] for _ in range(options.runs))
    hypo = statistics.median(timed([sys.executable, "-c", "import hypothesis.stateful, hypothesis.strategies"])[0]
                             for _ in range(options.runs))
    cold_collect = statistics.median(timed([*RUN, "--collect-only"], cold=True)[0] for _ in range(options.runs))
    cold = statistics.median(timed(RUN, cold=True)[0] for _ in range(options.runs))
    warm_caches()
    collect = statistics.median(timed([*RUN, "--collect-only"])[0] for _ in range(options.runs))
    walls, cpus, sessions, output = [], [], [], ""
    for _ in range(options.runs):
        wall, output = timed([*RUN, "--durations=8"])
        walls.append(wall)
        cpus.append(CPU_SECONDS[0])
        sessions.append(session_seconds(output))
    wall, session = statistics.median(walls), statistics.median(sessions)
    # The same suite in pytest-xdist workers (what `run` used before its forked workers)
    # and in the pytest process itself (-n 0): what each isolation costs; wall and CPU
    # (user + system) seconds, medians.
    from pytest_memsyscalls.cli.main import worker_count

    workers = worker_count()
    modes = {"default": (wall, statistics.median(cpus))}
    for label, extra in (("xdist", ["-n", str(workers), "--dist", "worksteal"]), ("inproc", ["-n", "0"])):
        runs = [(timed([*RUN, *extra])[0], CPU_SECONDS[0]) for _ in range(options.runs)]
        modes[label] = (statistics.median(w for w, _ in runs), statistics.median(c for _, c in runs))
    where = timeline()
    speed_after = machine_speed()
    summary = next((line for line in reversed(output.splitlines()) if " passed" in line), "")
    slow = [line.strip() for line in output.splitlines() if re.match(r"\s*[0-9.]+s (call|setup|teardown)", line)]
    body = f"""{machine_line()} Its speed (`python -c "sum(range(3 * 10**7))"`, best of 3):
{speed_before:.2f} s before these runs, {speed_after:.2f} s after. Compare figures only at like speeds, and
even then with care: a pure-Python loop does not see all that moves the suite's time (forks, page faults).
How far the suite's own figure moves with the machine (clean clones, 2026-12-07, before the forked
workers): batches of this benchmark gave medians of 3.89, 4.19 and 4.42 s in the afternoon; in the
evening 3.38 s, an hour later at the same loop speed (0.53 s) 3.93 s, then 3.44 s (loop 0.58/0.53 s)
and, 30 minutes after that with the same suite, 4.50 s (0.66/0.57 s), its runs using 8.03 s of CPU
against 6.02 s. The forked workers (bb720ca) took a quarter of the wall time and of the CPU off:
-1.00 s wall (4.34 -> 3.38 s) and -2.06 s CPU (7.84 -> 5.77 s), medians of 10 alternating pairs
(`python bench/bench_pairs.py CHECKOUT_OF_256aba8`). Batches of this benchmark with them (clean
clones, that evening): 3.73 s (loop 0.65/0.66 s; xdist 5.15 s in the same batch) and 3.50 s
(0.56/0.57 s; xdist 4.63 s).

`python -m pytest_memsyscalls run -q` (the whole conformance suite, natively as this user), median of
{options.runs} sequential runs each, PYTHONDONTWRITEBYTECODE=1: **{wall:.1f} s wall** (target <= 4 s) with the
bytecode caches ci/setup.sh writes, of which pytest reports {session:.1f} s as its session; **{cold:.1f} s**
cold, with those caches removed before each run. Last run: `{summary.strip("= ")}`.

Crash isolation and the cores: `memsyscalls run` collects the suite, then forks one worker per CPU it
may run on (at most 4; {workers} here; plugin/forked_workers.py), so a test that kills its process is
one failed test and a new worker runs the rest. A worker starts with what the pytest process has (the
collected tests, the environment fingerprint) and sends each test's reports back in one message a
phase. `-n N` selects pytest-xdist's workers instead, as `run` used until 2026-12-07: each a second
interpreter that imports pytest and the plugin and collects the whole suite again, with six events a
test through execnet:

| `memsyscalls run` | wall (median) | CPU, user + system (median) |
|---|---|---|
| default (forked workers) | {modes["default"][0]:.2f} s | {modes["default"][1]:.2f} s |
| pytest-xdist (`-n {workers} --dist worksteal`) | {modes["xdist"][0]:.2f} s | {modes["xdist"][1]:.2f} s |
| in the pytest process (`-n 0`, no isolation) | {modes["inproc"][0]:.2f} s | {modes["inproc"][1]:.2f} s |

| phase | with caches | cold |
|---|---|---|
| `python -c "import pytest"` (interpreter + pytest import) | {bare:.2f} | |
| `import hypothesis.stateful, hypothesis.strategies` alone | {hypo:.2f} | |
| start-up + collection (`run --collect-only`) | {collect:.2f} | {cold_collect:.2f} |
| the tests (wall minus collect-only) | {wall - collect:.2f} | {cold - cold_collect:.2f} |
| whole run | {wall:.2f} | {cold:.2f} |

Before issue 8's changes (commit e32ff68, single runs on this machine): 9.6 s wall, 4.1 s for
start-up + collection, ~118 modules assertion-rewritten per run (41 after).

Slowest tests of the last run:

```
{chr(10).join(slow)}
```

Where the time goes, process by process (one more run with the caches, with bench/timeline_plugin.py:
seconds since the run was started, and in brackets the CPU seconds that process had used by then; a
worker's CPU counts from its fork and leaves out the children its tests fork):

{where}

The pytest process starts, imports the plugin, collects and fingerprints the environment on its own,
then forks the workers; while they run the tests it turns their reports into terminal output and the
JSON report, on the same two cores, and at the end it writes the report. Hypothesis (~0.3 s of CPU to
import) is imported only by a worker that runs a state machine, when it runs it.
The two state machines are the largest single item: deselecting them saved 0.52 s wall and 0.99 s
of CPU (medians of 12 alternating pairs, 2026-12-07, under xdist). In the worker that runs them:
Hypothesis' import ~0.15 s, its digest of each machine class's source (its database key and,
derandomized, the programs' seed) ~0.1 s, its scan of the suite's modules for constants ~0.05 s, the
rest the programs themselves. Measured per test in an xdist worker (process CPU around each test's
protocol): ~1.1 ms for an empty test (pytest, xdist's events, this plugin's hooks), ~0.5-0.8 ms more
for one that uses the `arena` fixture (the arena, the leak guard's two snapshots of ~80 µs each); the
suite's median test is ~3.5 ms.
A caution about earlier comparisons of two checkouts: until bb720ca, bench_pairs.py started both
checkouts' `python -m pytest_memsyscalls` in the caller's working directory, and `python -m` imports
the package from there first, so a comparison started from inside a checkout ran that checkout's code
on both sides. Which of the day's earlier pair figures (Hypothesis imported only where a machine runs,
against 84065a8: -0.26 to -0.43 s; `gc.freeze()`; ending processes with `os._exit`) were taken that
way is not recorded; they are not evidence. What a run spends outside the tests' own code was spread
thin under xdist (cProfile and py-spy of whole runs, 2026-12-07): per worker ~0.3 s of CPU sending
its ~1,700 events to the controller, ~0.2 s in the plugin's per-test hooks (the leak guard's
snapshots, the report's phases), ~0.2 s reading /proc/self/smaps (~50 reads of ~4 ms), ~0.3 s
collecting; the forked workers do without the first and the last.
This environment sets `PYTHONDONTWRITEBYTECODE=1`, so a run caches nothing:
cold, every run recompiles the plugin and pytest re-parses and assertion-rewrites the ~6,400 lines of
conformance modules, about a quarter of a cold run. ci/setup.sh therefore writes those caches once at
set-up, as pip byte-compiles what it installs. pytest rewrites the modules of every distribution that
registers a plugin when they are imported inside the session, so the caches include the rewritten
Hypothesis that a worker imports (ci/setup.sh runs the state machines once for that), and
`python -m pytest_memsyscalls` imports the plugin (and, without workers, Hypothesis) before pytest
starts (neither has assertions a result depends on).
The tests proper are ~560 small items (median ~3 ms): the two state machines (`ci` profile, 6
programs x 20 steps; much of their time is importing Hypothesis and its one-off work in the first
test that uses it), the tests that fork (run_in_child: a fork of the ~50 MB pytest
process costs several ms here), the reads of /proc/self/smaps (the kernel takes ~2 ms to write it for
a pytest process), and pytest's own per-test protocol with the leak guard's snapshots. The mlockall
tests run in the small exec'd helper: mlockall(MCL_CURRENT) in a fork of pytest populated and
copied the whole process (~0.7 s for those tests before).
"""
    replace_section("suite", "The whole conformance suite, natively", body)
    print(body)


if __name__ == "__main__":
    main()
