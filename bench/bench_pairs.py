"""Whether a change makes the whole suite faster: alternating pairs of `memsyscalls run`
runs of two checkouts, each with its own .venv (``ci/setup.sh``), on this machine.

This machine's speed drifts by a third within an hour, far more than most changes
move the suite, so two batches run at different times cannot be compared. Runs of
the two checkouts alternate (A B, B A, A B, ...) and the medians of the per-pair
differences of wall and CPU (user + system of all processes) are reported.
bench/README.md quotes its figures for the changes it names.

    python bench/bench_pairs.py [--pairs N] BASELINE_CHECKOUT [CHANGED_CHECKOUT] [-- RUN ARGS...]

The changed checkout defaults to this one. Both run with PYTHONDONTWRITEBYTECODE=1 and the
caches their ci/setup.sh wrote, as bench_suite's "with caches" figure.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from bench_suite import CPU_SECONDS, timed

HERE = Path(__file__).resolve().parent.parent


def run_once(checkout: Path, extra: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds of one whole run of the checkout's suite (bench_suite's timing).
    In the checkout: ``python -m`` imports the package from the working directory first,
    so from another checkout both sides would run that one's code (as they did here until
    2026-12-07, for every comparison made from inside a checkout)."""
    python = checkout / ".venv" / "bin" / "python"
    wall, _ = timed([str(python), "-m", "pytest_memsyscalls", "run", "-q", "-p", "no:randomly", *extra], cwd=checkout)
    return wall, CPU_SECONDS[0]


def main() -> None:
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("baseline", type=Path)
    parser.add_argument("changed", type=Path, nargs="?", default=HERE)
    options = parser.parse_args(argv)
    for checkout in (options.baseline, options.changed):
        if not (checkout / ".venv" / "bin" / "python").exists():
            parser.error(f"{checkout} has no .venv: run ci/setup.sh there first")
    runs: dict[str, list[tuple[float, float]]] = {"A": [], "B": []}
    for pair in range(options.pairs):
        for label in ("A", "B") if pair % 2 == 0 else ("B", "A"):
            runs[label].append(run_once(options.baseline if label == "A" else options.changed, extra))
        (a_wall, a_cpu), (b_wall, b_cpu) = runs["A"][-1], runs["B"][-1]
        print(f"pair {pair + 1}: A {a_wall:.2f} s ({a_cpu:.2f} CPU)  B {b_wall:.2f} s ({b_cpu:.2f} CPU)", flush=True)
    for label, checkout in (("A", options.baseline), ("B", options.changed)):
        wall = statistics.median(w for w, _ in runs[label])
        cpu = statistics.median(c for _, c in runs[label])
        print(f"{label} {checkout}: median {wall:.2f} s wall, {cpu:.2f} s CPU")
    pairs = list(zip(runs["A"], runs["B"], strict=True))
    wall_delta = statistics.median(b[0] - a[0] for a, b in pairs)
    cpu_delta = statistics.median(b[1] - a[1] for a, b in pairs)
    print(f"B - A, median of {options.pairs} pairs: {wall_delta:+.2f} s wall, {cpu_delta:+.2f} s CPU")


if __name__ == "__main__":
    main()
