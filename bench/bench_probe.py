"""The fault probe from Python against the same probe in a C loop, side by side.

Target (issue 2): a faulting probe from Python within 2x of the C round trip.
Run: python bench/bench_probe.py [--rounds N] [--write-readme]
"""

from __future__ import annotations

import argparse
import statistics
import time

from readme_section import machine_line, replace_section

from pytest_memsyscalls.kernel import constants as C
from pytest_memsyscalls.kernel import libc, native, probe
from pytest_memsyscalls.kernel.libc import PAGE_SIZE as PAGE


def python_ns(addr: int, calls: int) -> float:
    read = probe.read
    started = time.perf_counter_ns()
    for _ in range(calls):
        read(addr)
    return (time.perf_counter_ns() - started) / calls


def measure(rounds: int, calls: int) -> dict[str, tuple[float, float]]:
    base = libc.mmap(0, 2 * PAGE, C.PROT_READ | C.PROT_WRITE, C.MAP_PRIVATE | C.MAP_ANONYMOUS)
    libc.mprotect(base + PAGE, PAGE, C.PROT_NONE)
    c_loop = native.library().memsys_bench_probe_read_ns
    results: dict[str, tuple[float, float]] = {}
    try:
        for label, addr in (("no fault", base), ("fault (SEGV_ACCERR)", base + PAGE)):
            py_samples, c_samples = [], []
            for _ in range(rounds):  # interleaved, so both see the same machine load
                py_samples.append(python_ns(addr, calls))
                c_samples.append(c_loop(addr, calls))
            results[label] = (statistics.median(py_samples), statistics.median(c_samples))
    finally:
        libc.munmap(base, 2 * PAGE)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--write-readme", action="store_true")
    options = parser.parse_args()
    results = measure(options.rounds, options.calls)
    lines = [
        f"Median per call over {options.rounds} rounds of {options.calls} calls, "
        "Python and C interleaved in one process.",
        "",
        "| probe.read | Python | C loop | ratio |",
        "|---|---|---|---|",
    ]
    for label, (py, c) in results.items():
        lines.append(f"| {label} | {py / 1000:.2f} µs | {c / 1000:.2f} µs | {py / c:.2f}x |")
    text = "\n".join(lines)
    print(text)
    if options.write_readme:
        replace_section("probe", "The fault probe (issue 2: faulting probe within 2x of C)",
                        f"{machine_line()}\n\n`python bench/bench_probe.py`\n\n{text}")


if __name__ == "__main__":
    main()
