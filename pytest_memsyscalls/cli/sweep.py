"""``memsyscalls sweep``: remove what killed runs recorded and left (SECURITY.md)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ..memory.records import UnsafeDirectory, records_dir, sweep


def cmd_sweep(argv: Sequence[str]) -> int:
    """``memsyscalls sweep [--dry-run] [--dir DIR]``."""
    parser = argparse.ArgumentParser(prog="memsyscalls sweep",
                                     description="remove what dead pytest-memsyscalls runs recorded and left")
    parser.add_argument("--dry-run", action="store_true", help="say what would be removed, remove nothing")
    parser.add_argument("--dir", default=None, help=f"records directory (default {records_dir()})")
    options = parser.parse_args(argv)
    try:
        result = sweep(options.dir, dry_run=options.dry_run)
    except UnsafeDirectory as error:
        print(f"memsyscalls sweep: refusing: {error}", file=sys.stderr)
        return 1
    verb = "would remove" if options.dry_run else "removed"
    for line in result.removed:
        print(f"{verb}: {line}")
    for line in result.kept:
        print(f"not touched: {line}")
    print(f"{result.files} record file(s) of dead runs, {len(result.removed)} object(s) "
          f"{'would be removed' if options.dry_run else 'removed'}, "
          f"{result.live} live run(s) left alone")
    return 0
