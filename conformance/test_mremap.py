"""mremap(2): growing in place or by moving, shrinking, MREMAP_FIXED, MREMAP_DONTUNMAP, ERRORS.

Whether a mapping can grow in place depends on its neighbours, so every test that
cares builds them in the ``arena``: a page the test turned into a hole is free, an
arena page still reserved (PROT_NONE) blocks. Pages a remap leaves unmapped inside
the arena are recorded as holes (``arena.hole``) so the arena never unmaps memory it
no longer owns; mappings that moved out of the arena are unmapped by the test.
"""

from __future__ import annotations

import errno
import signal
from collections.abc import Iterator
from contextlib import contextmanager

from pytest_memsyscalls import MappedPages, fails_with, requires, semantic
from pytest_memsyscalls.kernel import constants as C
from pytest_memsyscalls.kernel import libc, probe, procfs
from pytest_memsyscalls.kernel.libc import PAGE_SIZE as PAGE
from pytest_memsyscalls.kernel.probe import Fault
from pytest_memsyscalls.memory.mapping import Arena

MAYMOVE = C.MREMAP_MAYMOVE


def _maperr(addr: int) -> Fault:
    return Fault(signal.SIGSEGV, C.SEGV_MAPERR, addr)


def _fill(addr: int, length: int, seed: int) -> None:
    """Distinct bytes at the first and last byte of every page."""
    for offset in range(0, length, PAGE):
        assert probe.write(addr + offset, (seed + offset // PAGE) & 0xFF) is None
        assert probe.write(addr + offset + PAGE - 1, (seed + 7 + offset // PAGE) & 0xFF) is None


def _contents(addr: int, length: int) -> list[int | Fault | None]:
    values: list[int | Fault | None] = []
    for offset in range(0, length, PAGE):
        for at in (addr + offset, addr + offset + PAGE - 1):
            fault, value = probe.read_value(at)
            values.append(fault or value)
    return values


@contextmanager
def _arena_pages_given_back(arena: Arena, page: int, pages: int) -> Iterator[None]:
    """Whatever a remap did to arena pages page..page+pages-1, unmap them at the end and
    record them as holes, so the arena neither leaks nor double-frees them."""
    try:
        yield
    finally:
        arena.hole(page, pages)


@contextmanager
def _unmapped_at_end(addresses: list[tuple[int, int]]) -> Iterator[None]:
    """munmap the (addr, length) ranges appended to ``addresses`` (mappings that left the arena)."""
    try:
        yield
    finally:
        for addr, length in addresses:
            libc.munmap(addr, length)


# --- growing -----------------------------------------------------------------------------

@semantic("mremap.grow.in_place_when_free",
          "mremap grows a mapping in place, without MREMAP_MAYMOVE, when the pages after it are free; "
          "the old contents stay and the new page is zero-filled",
          source="mremap(2) DESCRIPTION", tier="linux")
def test_grow_in_place(arena: Arena) -> None:
    region = arena.map(10, 1)
    arena.hole(11, 1)
    with _arena_pages_given_back(arena, 10, 2):
        _fill(region.addr, PAGE, 0x40)
        assert libc.mremap(region.addr, PAGE, 2 * PAGE, 0) == region.addr
        assert _contents(region.addr, PAGE) == [0x40, 0x47]
        assert probe.read_value(arena.page(11)) == (None, 0)
        assert probe.write(arena.page(11), 1) is None


@semantic("mremap.grow.maymove_moves_when_blocked",
          "With MREMAP_MAYMOVE, a mapping that cannot grow in place is moved to a new address with its "
          "contents preserved",
          source="mremap(2) DESCRIPTION (MREMAP_MAYMOVE)", tier="linux")
def test_grow_blocked_moves(arena: Arena) -> None:
    region = arena.map(20, 1)  # page 21 is still reserved by the arena: growth is blocked
    moved: list[tuple[int, int]] = []
    with _arena_pages_given_back(arena, 20, 1), _unmapped_at_end(moved):
        _fill(region.addr, PAGE, 0x10)
        new = libc.mremap(region.addr, PAGE, 2 * PAGE, MAYMOVE)
        moved.append((new, 2 * PAGE))
        assert new != region.addr
        assert _contents(new, PAGE) == [0x10, 0x17]
        assert probe.read_value(new + PAGE) == (None, 0)


@semantic("mremap.move.old_range_unmapped",
          "After mremap moves a mapping, the old range is unmapped: an access there raises SIGSEGV with "
          "SEGV_MAPERR at the address",
          source="mremap(2) DESCRIPTION (the mapping is moved)", tier="linux")
def test_moved_mapping_leaves_old_range_unmapped(arena: Arena) -> None:
    region = arena.map(24, 1)
    moved: list[tuple[int, int]] = []
    with _arena_pages_given_back(arena, 24, 1), _unmapped_at_end(moved):
        moved.append((libc.mremap(region.addr, PAGE, 2 * PAGE, MAYMOVE), 2 * PAGE))
        assert procfs.vma_at(region.addr) is None
        assert probe.read(region.addr) == _maperr(region.addr)


@semantic("mremap.grow.blocked_without_maymove_enomem",
          "Without MREMAP_MAYMOVE, growing a mapping whose next page is in use fails with ENOMEM and "
          "leaves the mapping as it was",
          source="mremap(2) ERRORS (ENOMEM)", tier="linux")
def test_grow_blocked_without_maymove_is_enomem(arena: Arena) -> None:
    region = arena.map(30, 1)
    fails_with(errno.ENOMEM, libc.mremap, region.addr, PAGE, 2 * PAGE, 0)
    entry = procfs.vma_at(region.addr)
    assert entry is not None and (entry.start, entry.end, entry.perms) == (region.addr, region.end, "rw-p")


# --- shrinking ---------------------------------------------------------------------------

@semantic("mremap.shrink.tail_unmapped",
          "Shrinking a mapping keeps its address and contents and unmaps the tail: an access there raises "
          "SIGSEGV with SEGV_MAPERR",
          source="mremap(2) DESCRIPTION", tier="linux")
def test_shrink_unmaps_tail(arena: Arena) -> None:
    region = arena.map(36, 3)
    with _arena_pages_given_back(arena, 36, 3):
        _fill(region.addr, 3 * PAGE, 0x20)
        assert libc.mremap(region.addr, 3 * PAGE, PAGE, 0) == region.addr
        assert _contents(region.addr, PAGE) == [0x20, 0x27]
        assert probe.read(region.page(1)) == _maperr(region.page(1))
        assert probe.read(region.page(2)) == _maperr(region.page(2))


# --- MREMAP_FIXED and MREMAP_DONTUNMAP ---------------------------------------------------------

@semantic("mremap.fixed.moves_to_new_address",
          "MREMAP_MAYMOVE|MREMAP_FIXED moves the mapping to exactly new_address, replacing what was "
          "mapped there, with its contents; the old range is unmapped",
          source="mremap(2) DESCRIPTION (MREMAP_FIXED)", tier="linux")
def test_fixed_moves_to_new_address(arena: Arena) -> None:
    region = arena.map(40, 2)
    target = arena.page(44)  # reserved by the arena: MREMAP_FIXED replaces that reservation
    with _arena_pages_given_back(arena, 40, 2):
        _fill(region.addr, 2 * PAGE, 0x30)
        assert libc.mremap(region.addr, 2 * PAGE, 2 * PAGE, MAYMOVE | C.MREMAP_FIXED, target) == target
        assert _contents(target, 2 * PAGE) == [0x30, 0x37, 0x31, 0x38]
        assert probe.read(region.addr) == _maperr(region.addr)
        entry = procfs.vma_at(target)
        assert entry is not None and (entry.start, entry.end, entry.perms) == (target, target + 2 * PAGE, "rw-p")
    # pages 44-45 now hold the moved mapping: the arena unmaps them when it closes


@semantic("mremap.fixed.requires_maymove_einval",
          "MREMAP_FIXED without MREMAP_MAYMOVE fails with EINVAL",
          source="mremap(2) ERRORS (EINVAL)", tier="linux")
def test_fixed_without_maymove_is_einval(arena: Arena) -> None:
    region = arena.map(46, 1)
    fails_with(errno.EINVAL, libc.mremap, region.addr, PAGE, PAGE, C.MREMAP_FIXED, arena.page(48))


@semantic("mremap.dontunmap.old_range_stays_mapped_empty",
          "With MREMAP_DONTUNMAP the contents move to the new address while the old range stays mapped; "
          "for a private anonymous mapping it reads back zero-filled",
          source="mremap(2) DESCRIPTION (MREMAP_DONTUNMAP, since Linux 5.7)", tier="linux")
@requires("feature:MREMAP_DONTUNMAP")
def test_dontunmap_keeps_old_range_empty(arena: Arena) -> None:
    region = arena.map(50, 1)
    moved: list[tuple[int, int]] = []
    with _unmapped_at_end(moved):
        _fill(region.addr, PAGE, 0x50)
        new = libc.mremap(region.addr, PAGE, PAGE, MAYMOVE | C.MREMAP_DONTUNMAP)
        moved.append((new, PAGE))
        assert new != region.addr
        assert _contents(new, PAGE) == [0x50, 0x57]
        entry = procfs.vma_at(region.addr)
        assert entry is not None and entry.perms == "rw-p"
        assert _contents(region.addr, PAGE) == [0, 0]


# --- ERRORS ------------------------------------------------------------------------------

@semantic("mremap.errors.einval_unaligned_old_address",
          "mremap fails with EINVAL when old_address is not page aligned",
          source="mremap(2) ERRORS (EINVAL)", tier="linux")
def test_unaligned_old_address_is_einval(mapped_pages: MappedPages) -> None:
    region = mapped_pages(1)
    fails_with(errno.EINVAL, libc.mremap, region.addr + 1, PAGE, PAGE, MAYMOVE)


@semantic("mremap.errors.einval_new_size_zero",
          "mremap fails with EINVAL when new_size is zero",
          source="mremap(2) ERRORS (EINVAL)", tier="linux")
def test_zero_new_size_is_einval(mapped_pages: MappedPages) -> None:
    region = mapped_pages(1)
    fails_with(errno.EINVAL, libc.mremap, region.addr, PAGE, 0, MAYMOVE)


@semantic("mremap.errors.einval_unknown_flags",
          "mremap fails with EINVAL when flags contain a bit other than MREMAP_MAYMOVE, MREMAP_FIXED or "
          "MREMAP_DONTUNMAP",
          source="mremap(2) ERRORS (EINVAL)", tier="linux")
def test_unknown_flag_is_einval(mapped_pages: MappedPages) -> None:
    region = mapped_pages(1)
    fails_with(errno.EINVAL, libc.mremap, region.addr, PAGE, PAGE, MAYMOVE | 0x80)


@semantic("mremap.errors.einval_fixed_overlap",
          "mremap with MREMAP_FIXED fails with EINVAL when the new range overlaps the old one",
          source="mremap(2) ERRORS (EINVAL)", tier="linux")
def test_overlapping_fixed_ranges_are_einval(arena: Arena) -> None:
    region = arena.map(54, 2)
    fails_with(errno.EINVAL, libc.mremap, region.addr, 2 * PAGE, 2 * PAGE, MAYMOVE | C.MREMAP_FIXED,
               region.page(1))


@semantic("mremap.errors.efault_unmapped_old_range",
          "Growing an old range that is not mapped fails with EFAULT, the errno the man page documents for an "
          "invalid address in old_address..old_address+old_size (not ENOMEM as for mprotect or mincore)",
          source="mremap(2) ERRORS (EFAULT)", tier="linux")
def test_unmapped_old_range_is_efault(arena: Arena) -> None:
    arena.hole(58, 2)
    fails_with(errno.EFAULT, libc.mremap, arena.page(58), PAGE, 2 * PAGE, MAYMOVE)


@semantic("mremap.errors.efault_old_range_runs_into_hole",
          "Growing a range that starts in a mapping and runs into unmapped pages fails with EFAULT",
          source="mremap(2) ERRORS (EFAULT)", tier="linux")
def test_old_range_running_into_hole_is_efault(arena: Arena) -> None:
    region = arena.map(60, 1)
    arena.hole(61, 1)
    fails_with(errno.EFAULT, libc.mremap, region.addr, 2 * PAGE, 3 * PAGE, MAYMOVE)


@semantic("mremap.same_size.range_not_checked",
          "Divergence from the man page's EFAULT: mremap without flags and with old_size == new_size "
          "has nothing to do, and returns old_address even when the old range runs into unmapped pages",
          source="Linux mm/mremap.c (no-op resize returns before the range check); mremap(2) ERRORS",
          tier="impl")
def test_same_size_without_flags_skips_range_check(arena: Arena) -> None:
    region = arena.map(62, 1)
    arena.hole(63, 1)
    assert libc.mremap(region.addr, 2 * PAGE, 2 * PAGE, 0) == region.addr
    assert procfs.vma_at(arena.page(63)) is None  # and it did not map the hole either
