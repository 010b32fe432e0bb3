"""Run every benchmark and rewrite its section of bench/README.md.

``python bench/run_all.py``: probe, run_in_child, the state machine, the whole suite's
wall time, the environment matrix (~6 min), the foreign architectures one at a time (~7 min)
and fault injection (~20 min).
``python bench/run_all.py --quick``: everything but the matrix, the foreign architectures and
fault injection, whose
last sections in bench/README.md are kept as they are.
Benchmarks run one after another (never in parallel: they time each other otherwise).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

BENCHMARKS: list[tuple[str, list[str]]] = [
    ("probe", ["bench_probe.py", "--write-readme"]),
    ("child", ["bench_child.py", "--readme"]),
    ("state_machine", ["bench_state_machine.py"]),
    ("suite", ["bench_suite.py"]),
    ("matrix", ["bench_matrix.py"]),
    ("foreign", ["bench_foreign.py"]),
    ("faults", ["bench_faults.py"]),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="skip the matrix (~6 min), the foreign architectures (~7 min) and fault injection "
                             "(~20 min); keep their last sections")
    parser.add_argument("--only", help="comma-separated keys: " + ",".join(k for k, _ in BENCHMARKS))
    options = parser.parse_args()
    chosen = set(options.only.split(",")) if options.only else {k for k, _ in BENCHMARKS}
    if options.quick:
        chosen -= {"matrix", "foreign", "faults"}
    failed = []
    for key, argv in BENCHMARKS:
        if key not in chosen:
            print(f"== {key}: skipped (its section of bench/README.md is kept)", flush=True)
            continue
        started = time.perf_counter()
        print(f"== {key}: python bench/{' '.join(argv)}", flush=True)
        done = subprocess.run([sys.executable, *argv], cwd=HERE, check=False)
        print(f"== {key}: exit {done.returncode} after {time.perf_counter() - started:.0f} s", flush=True)
        if done.returncode:
            failed.append(key)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
