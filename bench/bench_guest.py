"""A guest in suites nobody here wrote: well-known projects' own test suites, from their
sdists, with and without pytest-memsyscalls installed.

Two virtual environments that differ only in this package: both have pytest,
pytest-xdist, pytest-forked, pytest-randomly and each project's test dependencies;
one also has pytest-memsyscalls (pip-installed from this checkout, so its pytest11
entry point autoloads). Each project's suite runs in both, plain, with ``-n 2``,
``--forked`` and ``-p randomly`` (a fixed seed, so both orders are the same), and
each test's outcome is compared; wall clock is the minimum over the repetitions,
with and without alternating, so the machine's other work hits both alike.

    python bench/bench_guest.py [--reps 3] [--projects attrs,more-itertools,cachetools] [--modes ...]

Needs network access to PyPI the first time (sdists and wheels are cached in the
cache directory, ``MEMSYS_CACHE`` or ~/.cache/memsyscalls, under bench-guest/).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tarfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from readme_section import machine_line, replace_section

REPO = Path(__file__).resolve().parent.parent
PLUGINS = ["pytest>=7.4,<9.2", "pytest-xdist", "pytest-forked", "pytest-randomly"]

# name on PyPI -> (test dependencies, arguments that select its tests inside the unpacked sdist)
PROJECTS: dict[str, tuple[list[str], list[str]]] = {
    "more-itertools": ([], ["tests"]),
    "cachetools": ([], ["tests"]),
    "six": ([], ["test_six.py"]),
    "idna": ([], ["tests"]),
    # attrs' suite takes minutes per run on a loaded 2-core machine: run it on its own with
    # --projects attrs when there is time.
    "attrs": (["hypothesis", "pympler", "cloudpickle"], ["tests"]),
}
DEFAULT_PROJECTS = ["more-itertools", "cachetools", "six", "idna"]
MODES = {
    "plain": ["-p", "no:randomly"],
    "-n 2": ["-p", "no:randomly", "-n", "2"],
    "--forked": ["-p", "no:randomly", "--forked"],
    "-p randomly": ["-p", "randomly", "-p", "no:cacheprovider", "--randomly-seed=1234"],
}
OUTCOME = re.compile(r"^(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS) (\S+)", re.M)


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
        if with_plugin:
            run(python, "-m", "pip", "install", "-q", "--no-deps", REPO)
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


def outcomes_and_time(python: Path, source: Path, args: list[str], select: list[str]) -> tuple[dict[str, str], float]:
    start = time.perf_counter()
    done = subprocess.run([str(python), "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", *args, *select],
                          cwd=source, capture_output=True, text=True)
    wall = time.perf_counter() - start
    found = {nodeid: outcome for outcome, nodeid in OUTCOME.findall(done.stdout)}
    if not found:
        raise SystemExit(f"{source.name} {args}: no outcomes (exit {done.returncode}):\n{done.stdout[-3000:]}"
                         f"{done.stderr[-3000:]}")
    return found, wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--projects", default=",".join(DEFAULT_PROJECTS))
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--no-readme", action="store_true", help="print, do not rewrite bench/README.md")
    options = parser.parse_args()
    where = cache()
    projects = [p for p in options.projects.split(",") if p]
    modes = [m for m in options.modes.split(",") if m]
    deps = sorted({dep for p in projects for dep in PROJECTS[p][0]})
    pythons = {True: venv(where / "with", PLUGINS + deps, True), False: venv(where / "without", PLUGINS + deps, False)}
    versions = subprocess.run([str(pythons[True]), "-m", "pip", "list", "--format=freeze"], capture_output=True,
                              text=True, check=True).stdout
    pinned = [line for line in versions.splitlines()
              if line.split("==")[0].lower() in ("pytest", "pytest-xdist", "pytest-forked", "pytest-randomly")]
    rows = []
    identical = True
    for project in projects:
        source = unpack(project, where)
        select = PROJECTS[project][1]
        for python in pythons.values():  # the project itself, from its sdist, in both
            run(python, "-m", "pip", "install", "-q", "--no-deps", source)
        for mode in modes:
            walls: dict[bool, list[float]] = {True: [], False: []}
            seen: dict[bool, dict[str, str]] = {}
            for _ in range(options.reps):
                for installed in (False, True):
                    found, wall = outcomes_and_time(pythons[installed], source, MODES[mode], select)
                    walls[installed].append(wall)
                    if installed in seen and seen[installed] != found:
                        print(f"{project} {mode}: outcomes differ between repetitions", file=sys.stderr)
                    seen[installed] = found
            same = seen[True] == seen[False]
            identical &= same
            counts = {k: list(seen[True].values()).count(k) for k in ("PASSED", "FAILED", "SKIPPED", "ERROR")}
            best_with, best_without = min(walls[True]), min(walls[False])
            overhead = (best_with / best_without - 1) * 100
            rows.append(f"| {source.name} | `{mode}` | {len(seen[True])} | "
                        f"{counts['PASSED']}/{counts['FAILED']}/{counts['SKIPPED']}/{counts['ERROR']} | "
                        f"{'yes' if same else '**no**'} | {best_without:.2f} | {best_with:.2f} | {overhead:+.1f}% |")
            print(rows[-1], flush=True)
    body = "\n".join([
        "`python bench/bench_guest.py` (issue 19): each project's own test suite from its sdist, in two",
        "virtual environments that differ only in whether pytest-memsyscalls is installed (its `pytest11`",
        "entry point then autoloads). Outcomes are compared test by test; times are the minimum of",
        f"{options.reps} runs each, with and without alternating. {machine_line()}",
        "Versions: " + ", ".join(pinned) + ".",
        "",
        "| sdist | mode | tests | passed/failed/skipped/error | identical outcomes "
        "| without (s) | with (s) | overhead |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        "The machine is shared (other sessions run at the same time), so single runs vary by several",
        "per cent either way; the minimum is the least disturbed run. A negative overhead is noise.",
    ])
    if options.no_readme:
        print(body)
    else:
        replace_section("guest", "A guest in other projects' test suites", body)
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
