"""Wall time of the local environment matrix, and where it goes, for bench/README.md.

    python bench/bench_matrix.py [--from DIR]   (DIR: an existing ``matrix --out DIR``;
                                                 otherwise runs the whole matrix into a temp dir)

Per target: its wall time (start to report), pytest's own session time (the "in N s"
of its summary line) and the difference, which is start-up: interpreter and plugin
import, the sandbox or the guest kernel's boot.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from readme_section import machine_line, replace_section

_SESSION = re.compile(r" in (\d+(?:\.\d+)?)s(?: \(|\s*=*\s*$)", re.M)


def pytest_seconds(log: Path) -> float | None:
    try:
        found = _SESSION.findall(log.read_text(errors="replace"))
    except OSError:
        return None
    return float(found[-1]) if found else None


def section(out: Path, jobs: int) -> str:
    data = json.loads((out / "matrix.json").read_text())
    rows = ["| target | result | wall | pytest session | start-up (sandbox, boot, imports) |",
            "|---|---|---|---|---|"]
    busy = 0.0
    slow: dict[str, float] = {}  # the emulated and sandboxed targets' wall times
    for column in data["columns"]:
        label, elapsed = column["label"], column["elapsed"]
        session = pytest_seconds(out / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', label)}.log")
        counts = column["counts"]
        result = (f"{counts['passed']} passed, {counts['differs']} differ, {counts['skipped']} skipped"
                  if column["status"] == "ok" else f"{column['status']}: {column['reason']}")
        busy += elapsed or 0.0
        if label.startswith(("qemu", "gvisor")) and elapsed is not None:
            slow[label] = elapsed
        startup = f"{elapsed - session:.0f} s" if elapsed is not None and session is not None else "-"
        rows.append(f"| {label} | {result} | {'-' if elapsed is None else f'{elapsed:.0f} s'} | "
                    f"{'-' if session is None else f'{session:.0f} s'} | {startup} |")
    wall = data["wall_seconds"]
    lines = [
        machine_line(),
        "",
        f"`python -m pytest_memsyscalls matrix` (all {len(data['columns'])} targets, --jobs {jobs}): "
        f"**{wall:.0f} s wall** ({wall / 60:.1f} min); the targets' own times add up to {busy:.0f} s, "
        f"so {jobs} at a time keep the cores {min(100.0, 100 * busy / (jobs * wall)):.0f}% busy.",
        "",
        *rows,
        "",
        f"Where the time goes: the {sum(k.startswith('qemu') for k in slow)} qemu guests and the "
        f"{sum(k.startswith('gvisor') for k in slow)} gVisor sandboxes are "
        f"{100 * sum(slow.values()) / busy:.0f}% of the summed target time. The guests run under TCG (KVM "
        "hangs on this machine; one vCPU each), where the suite is CPU-bound and 10-20x slower than "
        "natively; in gVisor every system call, and every fork of the many tests that fork, goes through "
        "its kernel in user space. The matrix starts these first (longest first), two at a time, and the "
        "short targets (each ~10 s) fill the cores at the end. A guest's start-up column is "
        "the kernel boot (~4 s to /init with the uncompressed kernel) plus Debian's python3 importing "
        "pytest and the plugin over the 9p root under emulation; the rest is the suite itself. "
        "Before the first target starts the matrix spends ~4 s building the site directory for "
        "/usr/bin/python3 (copying the package, byte-compiling it, letting pytest write its rewritten "
        "test modules once); pytest and Hypothesis themselves are cached by version.",
    ]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--from", dest="source", help="an existing matrix output directory")
    parser.add_argument("--jobs", type=int, default=2)
    options = parser.parse_args(argv)
    if options.source:
        out = Path(options.source)
    else:
        out = Path(tempfile.mkdtemp(prefix="memsys-bench-matrix-"))
        subprocess.run([sys.executable, "-m", "pytest_memsyscalls", "matrix", "--out", str(out),
                        "--jobs", str(options.jobs)], check=False)
    body = section(out, options.jobs)
    replace_section("matrix", "The environment matrix (local, all targets)", body)
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
