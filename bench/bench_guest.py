"""A guest in suites nobody here wrote: well-known projects' own test suites, from their
sdists, with and without pytest-memsyscalls installed.

Two virtual environments that differ only in this package: both have pytest,
pytest-xdist, pytest-forked, pytest-randomly, Hypothesis (a dependency of the plugin)
and each project's test dependencies; one also has pytest-memsyscalls (pip-installed
from this checkout on every run, so its pytest11 entry point autoloads what is checked
out now). Three measurements:

1. Outcomes. Each project's suite runs in both environments, plain, with ``-n 2``,
   ``--forked`` and ``-p randomly`` (a fixed seed, so both orders are the same); every
   test's outcome is read from the JUnit XML pytest writes and the two runs are compared
   test by test.
2. Overhead. Each project's suite runs in pairs (one run in each environment), the order
   alternating from pair to pair (ABBA...), so drift in the machine's load hits both
   sides alike; the figure is the median of the paired differences, beside the medians
   of each side, the CPU time of the whole process tree and the load average. Each timed
   run's outcomes are checked against the first run's too.
3. Import and session cost. The plugin's import (after pytest's) in fresh interpreters,
   with the modules it must not load; and a whole ``pytest --co`` of a one-test file,
   with and without the plugin installed, paired the same way.

    python bench/bench_guest.py [--projects cachetools,six,more-itertools] [--timing-modes plain]
                                [--pairs 5 --max-pairs 15 --budget 120] [--quiet-below 1.0 --wait 25]

``--wait`` polls /proc/loadavg for up to that many minutes before the timing until the
1-minute load average is below ``--quiet-below``; the section says whether it was.
Needs network access to PyPI the first time (sdists and wheels are cached in the
cache directory, ``MEMSYS_CACHE`` or ~/.cache/memsyscalls, under bench-guest/).
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from readme_section import machine_line, replace_section

REPO = Path(__file__).resolve().parent.parent
PLUGINS = ["pytest>=7.4,<9.2", "pytest-xdist", "pytest-forked", "pytest-randomly", "hypothesis>=6.80"]

# name on PyPI -> (test dependencies, arguments that select its tests inside the unpacked sdist)
PROJECTS: dict[str, tuple[list[str], list[str]]] = {
    "cachetools": ([], ["tests"]),
    "six": ([], ["test_six.py"]),
    "more-itertools": ([], ["tests"]),
    # idna (6,400 tests: ~100 s per --forked run here) and attrs (minutes per run on this
    # 2-core machine) on request: --projects idna,attrs
    "idna": ([], ["tests"]),
    "attrs": (["pympler", "cloudpickle"], ["tests"]),
}
DEFAULT_PROJECTS = ["cachetools", "six", "more-itertools"]
MODES = {
    "plain": ["-p", "no:randomly"],
    "-n 2": ["-p", "no:randomly", "-n", "2"],
    "--forked": ["-p", "no:randomly", "--forked"],
    "-p randomly": ["-p", "randomly", "--randomly-seed=1234"],
}
Outcomes = Counter[tuple[str, str]]  # (test id, outcome) -> how many times


def cache() -> Path:
    sys.path.insert(0, str(REPO))
    from pytest_memsyscalls.matrix.targets import cache_dir

    path = cache_dir() / "bench-guest"
    path.mkdir(parents=True, exist_ok=True)
    return path


def run(*args: str | Path, cwd: Path | None = None) -> None:
    subprocess.run([str(a) for a in args], check=True, cwd=cwd, stdout=subprocess.DEVNULL)


def venv(path: Path, packages: list[str], with_plugin: bool) -> Path:
    python = path / "bin" / "python"
    if not python.exists():
        run(sys.executable, "-m", "venv", path)
    run(python, "-m", "pip", "install", "-q", *packages)
    if with_plugin:  # what is checked out now, not what an earlier run installed
        run(python, "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", REPO)
    return python


def unpack(project: str, where: Path) -> Path:
    found = sorted(where.glob(f"{project.replace('-', '_')}-*.tar.gz")) + sorted(where.glob(f"{project}-*.tar.gz"))
    if not found:
        run(sys.executable, "-m", "pip", "download", "-q", "--no-binary", ":all:", "--no-deps", "-d", where, project)
        return unpack(project, where)
    sdist = found[-1]
    target = where / sdist.name.removesuffix(".tar.gz")
    if not target.exists():
        with tarfile.open(sdist) as archive:
            archive.extractall(where, filter="data")
    return target


def junit_outcomes(path: Path) -> Outcomes:
    """Every test case of a JUnit XML file with its outcome: passed, failed, error,
    skipped or xfailed (pytest writes xfail as a skip of type pytest.xfail)."""
    found: Outcomes = Counter()
    for case in ET.parse(path).iter("testcase"):
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error"):
                outcome = "failed" if child.tag == "failure" else "error"
            elif child.tag == "skipped":
                outcome = "xfailed" if child.get("type") == "pytest.xfail" else "skipped"
        found[(f"{case.get('classname')}::{case.get('name')}", outcome)] += 1
    return found


def session(python: Path, source: Path, args: list[str], select: list[str]) -> tuple[Outcomes, float, float]:
    """One pytest session: its outcomes, wall-clock seconds and the CPU seconds of its
    whole process tree (xdist workers and forked children are reaped inside it)."""
    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / "junit.xml"
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        done = subprocess.run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={xml}",
                               *args, *select], cwd=source, capture_output=True, text=True)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if not xml.exists():
            raise SystemExit(f"{source.name} {args}: no JUnit XML (exit {done.returncode}):\n"
                             f"{done.stdout[-3000:]}{done.stderr[-3000:]}")
        found = junit_outcomes(xml)
    if not found:
        raise SystemExit(f"{source.name} {args}: no outcomes (exit {done.returncode}):\n{done.stdout[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return found, wall, cpu


def describe_difference(with_plugin: Outcomes, without: Outcomes) -> str:
    only_with = sorted((with_plugin - without).elements())[:5]
    only_without = sorted((without - with_plugin).elements())[:5]
    return f"with only: {only_with}; without only: {only_without}"


def load() -> float:
    return os.getloadavg()[0]


def wait_for_quiet(below: float, minutes: float) -> str:
    """Poll the 1-minute load average until it is below `below`, for at most `minutes`."""
    deadline = time.monotonic() + minutes * 60
    start = time.monotonic()
    while load() >= below and time.monotonic() < deadline:
        time.sleep(15)
    waited = (time.monotonic() - start) / 60
    if load() < below:
        return f"the 1-minute load average was {load():.2f} (< {below}) when the timing began, after {waited:.0f} min"
    return (f"no quiet window: the 1-minute load average was still {load():.2f} (>= {below}) after waiting "
            f"{waited:.0f} min, so the timing ran on a busy machine")


def median_interval(values: list[float], resamples: int = 4000) -> tuple[float, float]:
    """A 95% bootstrap interval of the median (seeded, so a rerun on the same data agrees)."""
    rng = random.Random(19)
    medians = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(resamples))
    return medians[int(0.025 * resamples)], medians[int(0.975 * resamples) - 1]


def verdict(uppers: list[float]) -> str:
    if not uppers:
        return "Nothing was timed."
    if max(uppers) <= 3:
        return "The 3% bound is **shown**: every interval's upper end is at most +3%."
    return (f"The 3% bound is **not shown** by this run: an interval reaches {percent(max(uppers))} (a bootstrap "
            "interval of the median over the pairs, wide when the machine's load moves during the runs).")


def percent(value: float) -> str:
    return f"{value:+.1f}%"


@dataclass
class Paired:
    walls: dict[bool, list[float]] = field(default_factory=lambda: {True: [], False: []})
    cpus: dict[bool, list[float]] = field(default_factory=lambda: {True: [], False: []})
    loads: list[float] = field(default_factory=list)
    same: bool = True

    def median(self, installed: bool) -> float:
        return statistics.median(self.walls[installed])

    def differences(self) -> list[float]:
        return [w - wo for w, wo in zip(self.walls[True], self.walls[False], strict=True)]

    def relative(self, cpu: bool = False) -> list[float]:
        """Each pair's overhead in per cent of its run without the plugin."""
        times = self.cpus if cpu else self.walls
        return [(w - wo) / wo * 100 for w, wo in zip(times[True], times[False], strict=True)]


def paired(python: dict[bool, Path], source: Path, args: list[str], select: list[str], pairs: int,
           reference: Outcomes | None) -> Paired:
    """`pairs` pairs of runs, alternating which goes first (ABBA...), so drift hits both sides."""
    result = Paired()
    for i in range(pairs):
        result.loads.append(load())
        for installed in ((False, True) if i % 2 == 0 else (True, False)):
            found, wall, cpu = session(python[installed], source, args, select)
            result.walls[installed].append(wall)
            result.cpus[installed].append(cpu)
            if reference is None:
                reference = found
            result.same &= found == reference
    result.loads.append(load())
    return result


IMPORT_CODE = """\
import sys, time, importlib, pytest, _pytest.pytester
cpu, wall = time.process_time(), time.perf_counter()
import pytest_memsyscalls.plugin as plugin
for name in plugin.pytest_plugins: importlib.import_module(name)
cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
heavy = sorted(m for m in sys.modules if m == 'hypothesis' or m.endswith('._probe'))
print(cpu * 1000, wall * 1000, ','.join(heavy) or '-')
"""


def import_cost(python: Path, runs: int) -> str:
    subprocess.run([str(python), "-c", IMPORT_CODE], check=True, capture_output=True)  # bytecode written once
    cpu, wall, heavy = [], [], set()
    for _ in range(runs):
        out = subprocess.run([str(python), "-c", IMPORT_CODE], check=True, capture_output=True, text=True).stdout
        c, w, h = out.split()
        cpu.append(float(c))
        wall.append(float(w))
        heavy.add(h)
    loaded = "neither was" if heavy == {"-"} else f"**loaded: {sorted(heavy)}**"
    return (f"Importing the plugin (`pytest_memsyscalls.plugin` and the modules it registers, after pytest), "
            f"{runs} fresh interpreters: median **{statistics.median(wall):.1f} ms wall**, "
            f"{statistics.median(cpu):.1f} ms CPU (best {min(wall):.1f} ms; target <= 20 ms); Hypothesis "
            f"and the C extension `_probe`: {loaded} imported.")


def session_cost(python: dict[bool, Path], where: Path, pairs: int) -> str:
    empty = where / "one-test"
    empty.mkdir(exist_ok=True)
    (empty / "test_one.py").write_text("def test_one():\n    pass\n")
    result = paired(python, empty, ["-p", "no:randomly"], [], pairs, None)
    return (f"A whole session of one trivial test (`pytest -q test_one.py`), {pairs} pairs: median "
            f"{result.median(False) * 1000:.0f} ms without, {result.median(True) * 1000:.0f} ms with the plugin "
            f"installed; median paired difference {statistics.median(result.differences()) * 1000:+.0f} ms "
            f"({percent(statistics.median(result.relative()))}; CPU "
            f"{percent(statistics.median(result.relative(cpu=True)))}).")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--projects", default=",".join(DEFAULT_PROJECTS))
    parser.add_argument("--modes", default=",".join(MODES), help="modes whose outcomes are compared")
    parser.add_argument("--timing-modes", default="plain", help="modes that are timed in pairs")
    parser.add_argument("--pairs", type=int, default=5, help="at least this many timed pairs per project and mode")
    parser.add_argument("--max-pairs", type=int, default=15)
    parser.add_argument("--budget", type=float, default=120,
                        help="seconds of timing per project and mode: more pairs (up to --max-pairs) for short suites")
    parser.add_argument("--quiet-below", type=float, default=1.0)
    parser.add_argument("--wait", type=float, default=0.0, help="minutes to wait for a quiet machine before timing")
    parser.add_argument("--no-readme", action="store_true", help="print, do not rewrite bench/README.md")
    options = parser.parse_args()
    where = cache()
    projects = [p for p in options.projects.split(",") if p]
    modes = [m for m in options.modes.split(",") if m]
    timing_modes = [m for m in options.timing_modes.split(",") if m]
    deps = sorted({dep for p in projects for dep in PROJECTS[p][0]})
    python = {False: venv(where / "without", PLUGINS + deps, False), True: venv(where / "with", PLUGINS + deps, True)}
    versions = subprocess.run([str(python[True]), "-m", "pip", "list", "--format=freeze"], capture_output=True,
                              text=True, check=True).stdout
    pinned = [line for line in versions.splitlines()
              if line.split("==")[0].lower() in ("pytest", "pytest-xdist", "pytest-forked", "pytest-randomly")]
    commit = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"], capture_output=True,
                            text=True).stdout.strip() or "unknown"

    sources = {}
    for project in projects:
        sources[project] = unpack(project, where)
        for interpreter in python.values():  # the project itself, from its sdist, in both
            run(interpreter, "-m", "pip", "install", "-q", "--no-deps", sources[project])

    outcome_rows, references, seconds = [], {}, {}
    identical = True
    for project in projects:
        source, select = sources[project], PROJECTS[project][1]
        for mode in modes:
            without, wall_without, _ = session(python[False], source, MODES[mode], select)
            with_plugin, wall_with, _ = session(python[True], source, MODES[mode], select)
            references[(project, mode)] = without
            seconds[(project, mode)] = wall_without
            same = with_plugin == without
            identical &= same
            counts = Counter(outcome for (_, outcome), n in without.items() for _ in range(n))
            note = "yes" if same else f"**no** ({describe_difference(with_plugin, without)})"
            outcome_rows.append(
                f"| {source.name} | `{mode}` | {sum(without.values())} | {counts['passed']}/{counts['failed']}/"
                f"{counts['skipped'] + counts['xfailed']}/{counts['error']} | {note} | {wall_without:.1f} | "
                f"{wall_with:.1f} |")
            print(outcome_rows[-1], flush=True)

    imports = import_cost(python[True], 21)
    print(imports, flush=True)
    quiet = wait_for_quiet(options.quiet_below, options.wait)
    print(quiet, flush=True)
    started = time.strftime("%Y-%m-%d %H:%M")
    loads = [load()]
    sessions = session_cost(python, where, 21)
    print(sessions, flush=True)
    timing_rows, uppers = [], []
    for project in projects:
        source, select = sources[project], PROJECTS[project][1]
        for mode in timing_modes:
            estimate = seconds.get((project, mode)) or session(python[False], source, MODES[mode], select)[1]
            pairs = max(options.pairs, min(options.max_pairs, int(options.budget / (2 * estimate))))
            result = paired(python, source, MODES[mode], select, pairs, references.get((project, mode)))
            identical &= result.same
            loads += result.loads
            rel = result.relative()
            low, high = median_interval(rel)
            uppers.append(high)
            timing_rows.append(
                f"| {source.name} | `{mode}` | {pairs} | {result.median(False):.2f} | "
                f"{result.median(True):.2f} | {statistics.median(result.differences()):+.2f} | "
                f"**{percent(statistics.median(rel))}** | {percent(low)} .. {percent(high)} | "
                f"{percent(min(rel))} .. {percent(max(rel))} | "
                f"{percent(statistics.median(result.relative(cpu=True)))} | "
                f"{min(result.loads):.2f}-{max(result.loads):.2f} | {'yes' if result.same else '**no**'} |")
            print(timing_rows[-1], flush=True)
    with open("/proc/loadavg") as f:
        loadavg_end = " ".join(f.read().split()[:3])

    command = "python bench/bench_guest.py " + " ".join(sys.argv[1:])
    body = "\n".join([
        f"`{command.strip()}` (issue 19; plugin at {commit}, {started}): each project's own test suite from its",
        "sdist, in two virtual environments that differ only in whether pytest-memsyscalls is installed (its",
        "`pytest11` entry point then autoloads). " + machine_line(),
        "Versions: " + ", ".join(pinned) + ".",
        "",
        "**Outcomes**, test by test from pytest's JUnit XML (one run in each environment; the times are those",
        "single runs, not a timing):",
        "",
        "| sdist | mode | tests | passed/failed/skipped/error | identical outcomes | without (s) | with (s) |",
        "|---|---|---|---|---|---|---|",
        *outcome_rows,
        "",
        f"**Overhead**: {quiet}. Pairs of runs, one in each environment, the order alternating (ABBA...;",
        f"at least {options.pairs} pairs, more for short suites: about {options.budget:.0f} s each, at most "
        f"{options.max_pairs}); medians of each side, and the median of the paired differences (with minus",
        "without, in per cent of without), which is the figure; the range shows the spread of single pairs.",
        "CPU is user+system time of the whole process tree, which the machine's other work disturbs less than",
        "wall clock. The load column is the 1-minute load average sampled before each pair.",
        "",
        "| sdist | mode | pairs | without (s, median) | with (s, median) | paired difference (s) "
        "| **overhead** (median) | its 95% interval | single pairs | CPU overhead | 1-min load | outcomes as above |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
        *timing_rows,
        "",
        verdict(uppers),
        "",
        f"Load average (1 min) while timing: {min(loads):.2f} to {max(loads):.2f}; /proc/loadavg at the end: "
        f"{loadavg_end}.",
        "",
        sessions,
        "",
        imports,
    ])
    if options.no_readme:
        print(body)
    else:
        replace_section("guest", "A guest in other projects' test suites", body)
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
