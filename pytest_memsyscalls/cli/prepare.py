"""``memsyscalls prepare``: install or fetch what matrix targets need, and the cache.

The preparation (pytest_memsyscalls/matrix/prepare.sh) ships inside the package, so a
pip-installed copy prepares targets without a checkout; ``ci/prepare.sh`` in a checkout
runs the same script. Everything fetched goes to the cache directory: ``MEMSYS_CACHE``,
else /var/cache/memsyscalls as root, else ~/.cache/memsyscalls.

    memsyscalls prepare TARGET...     e.g. unprivileged gvisor qemu:6.1 (or: all)
    memsyscalls prepare --cache       the cache directory and its size, per entry
    memsyscalls prepare --clear-cache remove it (kernels, runsc, rootfs, runs, Hypothesis' database)
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from ..matrix.targets import cache_dir

SCRIPT = Path(__file__).resolve().parent.parent / "matrix" / "prepare.sh"


def disk_usage(path: Path) -> int:
    """Bytes the tree uses on disk (st_blocks), symlinks not followed."""
    total = 0
    stack = [path]
    while stack:
        current = stack.pop()
        try:
            info = current.lstat()
        except OSError:
            continue
        total += info.st_blocks * 512
        if current.is_dir() and not current.is_symlink():
            try:
                stack.extend(current.iterdir())
            except OSError:
                continue
    return total


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def cmd_prepare(argv: Sequence[str]) -> int:
    cache = cache_dir()
    parser = argparse.ArgumentParser(
        prog="memsyscalls prepare", description="install or fetch what matrix targets need (no checkout needed)",
        epilog=f"cache directory: {cache} (set MEMSYS_CACHE to move it)")
    parser.add_argument("targets", nargs="*", metavar="TARGET",
                        help="unprivileged, memlock-64k, userns, seccomp, gvisor, gvisor:trixie, podman, "
                             "qemu:5.10, qemu:6.1, qemu:6.12, qemu:7.2, qemu:all or all")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--cache", action="store_true", help="show the cache directory and its size")
    group.add_argument("--clear-cache", action="store_true", help="remove the cache directory and everything in it")
    options = parser.parse_args(argv)
    if options.cache or options.clear_cache:
        if options.targets:
            parser.error("targets and --cache/--clear-cache do not go together")
        if not cache.exists():
            print(f"{cache}: does not exist (nothing cached)")
            return 0
        if options.clear_cache:
            if "memsyscalls" not in cache.name:
                parser.error(f"refusing to remove {cache}: MEMSYS_CACHE does not name a memsyscalls directory")
            size = disk_usage(cache)
            shutil.rmtree(cache)
            print(f"removed {cache} ({_human(size)})")
            return 0
        entries = sorted(cache.iterdir()) if cache.is_dir() else []
        for entry in entries:
            print(f"{_human(disk_usage(entry)):>10}  {entry.name}")
        print(f"{_human(disk_usage(cache)):>10}  {cache} (total)")
        return 0
    if not options.targets:
        parser.error("name at least one target, or all (memsyscalls matrix --list shows them)")
    if not os.access(SCRIPT, os.R_OK):
        parser.error(f"the preparation script is missing from the installation: {SCRIPT}")
    return subprocess.call(["bash", str(SCRIPT), *options.targets])
