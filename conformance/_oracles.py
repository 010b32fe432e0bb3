"""The kernel's own answers that several conformance modules ask for.

Each reads the kernel directly (msync, mincore, /proc/self/smaps, CapEff) rather than
trusting a library, and each probe that decides whether an oracle can be believed at
all (mincore residency under gVisor) runs on a scratch mapping of its own, once.
"""

from __future__ import annotations

import errno
import functools
from dataclasses import dataclass

from pytest_memsyscalls import RunInChild
from pytest_memsyscalls.kernel import constants as C
from pytest_memsyscalls.kernel import libc, procfs
from pytest_memsyscalls.kernel.libc import PAGE_SIZE as PAGE


def is_mapped(addr: int, length: int = PAGE) -> bool:
    """Every page of the range is mapped: msync(MS_ASYNC) fails with ENOMEM on a hole."""
    try:
        libc.msync(addr, length, C.MS_ASYNC)
    except OSError as error:
        if error.errno == errno.ENOMEM:
            return False
        raise
    return True


def vmflags(addr: int) -> frozenset[str]:
    """The VmFlags of the VMA containing addr (empty if unmapped or not reported)."""
    entry = procfs.smaps_at(addr)
    return entry.vmflags if entry is not None else frozenset()


def resident(addr: int, length: int) -> list[bool]:
    """mincore: for each page of the range, whether it is resident."""
    return [bool(b & 1) for b in libc.mincore(addr, length)]


def effective_caps() -> frozenset[str]:
    """CapEff of this process now (a child may have dropped capabilities since detect())."""
    return procfs.decode_capabilities(procfs.read_status()["CapEff"])


@functools.cache
def mincore_sees_residency() -> bool:
    """Probe (once): does mincore report a fresh, untouched anonymous page as non-resident?
    gVisor reports every mapped page resident, which blinds the residency oracle."""
    scratch = libc.mmap(0, PAGE, C.PROT_READ | C.PROT_WRITE, C.MAP_PRIVATE | C.MAP_ANONYMOUS)
    try:
        return not libc.mincore(scratch, PAGE)[0] & 1
    finally:
        libc.munmap(scratch, PAGE)


# --- the map count at vm.max_map_count (mmap and munmap share one fill) ----------------

@dataclass(frozen=True)
class MapCountObservation:
    """What a child saw with its map count filled up to vm.max_map_count."""

    before: int  # VMAs in /proc/self/maps before the fill
    splits: int  # successful mprotect calls (two VMAs each)
    fill_errno: int | None  # the errno that stopped the fill (ENOMEM: split_vma at the limit)
    mmap_errnos: tuple[int | None, ...]  # three new one-page MAP_SHARED|MAP_ANONYMOUS mappings
    munmap_middle_errno: int | None  # munmap of the middle page of a three-page mapping
    middle_still_mapped: bool  # ... and whether that page was still mapped afterwards


def _fill_map_count(max_map_count: int) -> MapCountObservation:
    """Child: fill the map count with alternating-protection pages, then try what needs a
    new VMA. No Python allocation may need a new mapping after the fill (it would fail):
    results are plain ints until the filler range is unmapped again."""
    three = libc.mmap(0, 3 * PAGE, C.PROT_READ | C.PROT_WRITE, C.MAP_PRIVATE | C.MAP_ANONYMOUS)
    before = len(procfs.read_maps())
    pages = 2 * (max_map_count - before + 16) + 1
    filler = libc.mmap(0, pages * PAGE, C.PROT_NONE, C.MAP_PRIVATE | C.MAP_ANONYMOUS | C.MAP_NORESERVE)
    splits, error = libc.mprotect_alternate(filler, pages, C.PROT_READ)
    mmap_errnos: list[int | None] = [None, None, None]
    for index in range(3):
        try:
            libc.mmap(0, PAGE, C.PROT_READ, C.MAP_SHARED | C.MAP_ANONYMOUS)
        except OSError as failure:
            mmap_errnos[index] = failure.errno
    munmap_errno: int | None = None
    try:
        libc.munmap(three + PAGE, PAGE)
    except OSError as failure:
        munmap_errno = failure.errno
    middle_mapped = libc.is_mapped(three + PAGE)
    libc.munmap(filler, pages * PAGE)
    return MapCountObservation(before, splits, None if error is None else error.errno, tuple(mmap_errnos),
                               munmap_errno, middle_mapped)


_MAP_COUNT: dict[int, MapCountObservation] = {}


def map_count_observation(run_in_child: RunInChild, max_map_count: int) -> MapCountObservation:
    """The fill costs ~0.3 s (a VMA split is several µs), so one child per session does it
    and every semantic about the limit reads what that child saw."""
    if max_map_count not in _MAP_COUNT:
        outcome = run_in_child(_fill_map_count, max_map_count, timeout=60)
        result = outcome.result()
        assert isinstance(result, MapCountObservation)
        _MAP_COUNT[max_map_count] = result
    return _MAP_COUNT[max_map_count]
