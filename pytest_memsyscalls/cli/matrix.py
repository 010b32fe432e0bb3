"""``memsyscalls matrix``: the suite in several environments, one table.

Why: a semantic that holds natively may be refused to an unprivileged user, capped by
RLIMIT_MEMLOCK, filtered by seccomp, or implemented differently by gVisor or another
kernel. Running the same suite in each environment this machine can reproduce and
merging the reports into one semantic x environment table shows, per semantic, where
the documented behaviour holds, where it differs (and how: documented versus
observed, from the report's reason) and where it could not be checked (and why).

    memsyscalls matrix [--targets native,unprivileged,...] [--out DIR] [--jobs N] [-- PYTEST ARGS]
    memsyscalls matrix --list                     which targets this machine can run
    memsyscalls matrix --merge A.json B.json ...  merge reports made elsewhere (e.g. CI jobs)

Writes DIR/<target>.json (each report), DIR/<target>.log, DIR/matrix.md, DIR/matrix.html
and DIR/matrix.json. Exit status: 0 when every available target produced a report, 1
when one crashed or timed out, 2 on bad usage. Differences are results, not errors.
For a fleet of machines, the CI system's own job matrix is the engine
(ci/github-workflow.yml); ``--merge`` builds the table from its reports.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from ..matrix import targets as T
from ..matrix.render import column_summary, write_outputs
from ..matrix.runner import baseline_name, check_targets, run_matrix, safe_label
from ..matrix.table import merge, results_from_reports


def _positive_int(text: str) -> int:
    """argparse type for --jobs: a count of targets at once (0 or less is a usage error)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def cmd_matrix(argv: Sequence[str]) -> int:
    args = list(argv)
    pytest_args: list[str] = []
    if "--" in args:
        cut = args.index("--")
        args, pytest_args = args[:cut], args[cut + 1:]
    parser = argparse.ArgumentParser(
        prog="memsyscalls matrix", description=__doc__.split("\n\n")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"Kernels, runsc builds, the rootfs and runs are cached in {T.cache_dir()} (MEMSYS_CACHE moves "
               "it); `memsyscalls prepare TARGET...` fills it, `memsyscalls prepare --cache` shows its size and "
               "`memsyscalls prepare --clear-cache` removes it.")
    parser.add_argument("--targets", default=",".join(T.DEFAULT_TARGETS),
                        help="comma-separated: native, unprivileged, memlock-64k, userns, seccomp, gvisor, "
                             "gvisor:RUNSC|trixie, podman, qemu:KERNEL (5.10, 6.1, 6.12, 7.2 or a path) "
                             "(default: all twelve)")
    parser.add_argument("--out", default="memsys-matrix", help="directory for reports, logs and the tables")
    parser.add_argument("--jobs", type=_positive_int, default=os.cpu_count() or 2,
                        help="targets run at once (default: cores)")
    parser.add_argument("--list", action="store_true", help="show the targets and whether each can run here")
    parser.add_argument("--merge", nargs="+", metavar="REPORT", help="only merge these reports into the tables")
    parser.add_argument("--baselines", metavar="DIR",
                        help="gate each target on DIR/<target>.json (qemu:6.1 -> qemu-6.1.json) with "
                             "--memsys-baseline; exit 1 when any target's gate fails")
    options = parser.parse_args(args)
    specs = [s.strip() for s in options.targets.split(",") if s.strip()]
    out_dir = Path(options.out)
    if not options.list:
        from ..report.paths import directory_problem

        problem = directory_problem(out_dir)
        if problem:
            parser.error(f"--out {options.out}: {problem}")
    try:
        for spec in specs:
            T.make_target(spec)
    except ValueError as error:
        parser.error(str(error))
    if options.list:
        for target, missing in check_targets(specs):
            state = "available" if missing is None else f"unavailable: {missing}"
            print(f"{target.spec:<16} {target.label:<18} {state}\n{'':<16} {target.description}")
        print("\nTo make a target available: memsyscalls prepare TARGET... (or: all). It ships with the\n"
              "package, so no checkout is needed; it may apt-get Debian packages and fetches kernels,\n"
              f"runsc and a rootfs into {T.cache_dir()}.")
        return 0
    if options.merge:
        table = merge(results_from_reports(options.merge))
        wall = None
        status = 0
    else:
        baselines = Path(options.baselines) if options.baselines else None
        results, wall = run_matrix(specs, out_dir, options.jobs, pytest_args, sys.stdout, baselines)
        table = merge(results)
        status = 1 if any(r.status == "error" for r in results) else 0
        if baselines is not None:
            for result in results:
                if not (baselines / baseline_name(result.spec)).exists():
                    continue
                if result.status != "ok" or result.exit_code != 0:
                    log = out_dir / f"{safe_label(result.label)}.log"
                    why = result.reason or f"pytest exit {result.exit_code}; see {log}"
                    print(f"baseline gate FAILED for {result.spec}: {why}")
                    status = 1
                else:
                    print(f"baseline gate passed for {result.spec}")
    written = write_outputs(table, out_dir, wall)
    print()
    for column in table.columns:
        print(f"{column.label:<18} {column_summary(column)}")
    differing = [r for r in table.rows if r.differs_in]
    print(f"{len(table.rows)} semantics, {len(differing)} differ somewhere"
          + (f"; wall time {wall:.0f} s" if wall is not None else ""))
    print("wrote " + ", ".join(str(p) for p in written))
    return status
