"""Wall time of the whole conformance suite natively, pytest start-up included, and
where it goes: interpreter + pytest start-up, collection (imports, assertion
rewriting), and the tests themselves (with the slowest ones named).

``python bench/bench_suite.py [--runs N]`` rewrites the ``suite`` section of
bench/README.md. Runs are sequential and the median is reported, because this
machine is shared and single runs move by +-20%.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time

from readme_section import machine_line, replace_section

RUN = [sys.executable, "-m", "pytest_memsyscalls", "run", "-q", "-p", "no:randomly"]


def timed(cmd: list[str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if done.returncode not in (0, 5):
        raise SystemExit(f"{' '.join(cmd)} exited {done.returncode}:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return wall, done.stdout


def session_seconds(output: str) -> float:
    found = re.findall(r" in ([0-9.]+)s", output)
    return float(found[-1]) if found else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    options = parser.parse_args()
    bare = statistics.median(timed([sys.executable, "-c", "import pytest"])[0] for _ in range(options.runs))
    hypo = statistics.median(timed([sys.executable, "-c", "import hypothesis.stateful, hypothesis.strategies"])[0]
                             for _ in range(options.runs))
    collect = statistics.median(timed([*RUN, "--collect-only"])[0] for _ in range(options.runs))
    walls, sessions, output = [], [], ""
    for _ in range(options.runs):
        wall, output = timed([*RUN, "--durations=8"])
        walls.append(wall)
        sessions.append(session_seconds(output))
    wall, session = statistics.median(walls), statistics.median(sessions)
    summary = next((line for line in reversed(output.splitlines()) if " passed" in line), "")
    slow = [line.strip() for line in output.splitlines() if re.match(r"\s*[0-9.]+s (call|setup|teardown)", line)]
    body = f"""{machine_line()}

`python -m pytest_memsyscalls run -q` (the whole conformance suite, natively as this user), median of
{options.runs} sequential runs: **{wall:.1f} s wall** (target < 5 s), of which pytest reports {session:.1f} s
as its session. Last run: `{summary.strip("= ")}`.

| phase | seconds |
|---|---|
| `python -c "import pytest"` (interpreter + pytest import) | {bare:.2f} |
| `import hypothesis.stateful, hypothesis.strategies` alone | {hypo:.2f} |
| start-up + collection (`run --collect-only`) | {collect:.2f} |
| the tests (wall minus collect-only) | {wall - collect:.2f} |
| whole run | {wall:.2f} |

Before issue 8's changes (commit e32ff68, single runs on this machine): 9.6 s wall, 4.1 s for
start-up + collection, ~118 modules assertion-rewritten per run (41 after).

Slowest tests of the last run:

```
{chr(10).join(slow)}
```

Where the time goes (profiled with `-X importtime`, cProfile of `run --collect-only`, and `--durations`):
this environment sets `PYTHONDONTWRITEBYTECODE=1`, so pytest can never cache the assertion-rewritten
modules and re-parses every rewritten module on each run. pytest rewrites all modules of any
distribution that registers a plugin, Hypothesis included: importing Hypothesis inside the session
made ~120 modules go through the rewriter (~1.5-2 s of a 3.5-4 s collection). `python -m
pytest_memsyscalls` now imports Hypothesis before pytest starts (its internals need no rewriting), so
~40 modules are rewritten (the suite's 18 and the plugin's). What remains of collection is the
interpreter and pytest (~0.5 s), Hypothesis itself (~0.6-1 s), the environment fingerprint at configure
and rewriting the suite. The tests proper are many small ones (~340 items, mostly < 20 ms); the per-test
overhead (the leak guard's snapshot of SysV segments, /dev/shm and children before and after each
test, fixture set-up) is a larger share than any single test. The two state machines run the `ci`
profile (6 programs x 20 steps).
"""
    replace_section("suite", "The whole conformance suite, natively", body)
    print(body)


if __name__ == "__main__":
    main()
