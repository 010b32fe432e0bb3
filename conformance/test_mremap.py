"""mremap(2): growing in place or by moving, shrinking, MREMAP_FIXED, MREMAP_DONTUNMAP, ERRORS.

Whether a mapping can grow in place depends on its neighbours, so every test that
cares builds them in the ``arena``: a page the test turned into a hole is free, an
arena page still reserved (PROT_NONE) blocks. Pages a remap leaves unmapped inside
the arena are recorded as holes (``arena.hole``) so the arena never unmaps memory it
no longer owns; mappings that moved out of the arena are unmapped by the test.
"""

from __future__ import annotations

import errno
import resource
import signal
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from pytest_memsyscalls import LockedRegion, MappedFile, MappedPages, RunInChild, fails_with, requires, semantic
from pytest_memsyscalls.environment.features import PROMISED
from pytest_memsyscalls.environment.fingerprint import Environment
from pytest_memsyscalls.environment.needs import lockable_shortfall
from pytest_memsyscalls.kernel import constants as C
from pytest_memsyscalls.kernel import libc, probe, procfs
from pytest_memsyscalls.kernel.libc import PAGE_SIZE as PAGE
from pytest_memsyscalls.kernel.probe import Fault
from pytest_memsyscalls.memory.mapping import Arena

from ._oracles import drop_capability, resident, vmflags

MAYMOVE = C.MREMAP_MAYMOVE


def _maperr(addr: int) -> Fault:
    return Fault(signal.SIGSEGV, C.SEGV_MAPERR, addr)


def _accerr(addr: int) -> Fault:
    return Fault(signal.SIGSEGV, C.SEGV_ACCERR, addr)


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


# --- old_size 0: a second view of shared pages ------------------------------------------

SHARED_ANON = C.MAP_SHARED | C.MAP_ANONYMOUS


@semantic("mremap.old_size_zero.shared_second_view",
          "mremap with old_size 0 of a shared mapping creates a second mapping of the same pages and keeps "
          "the first: a store through either view, on its first, inner and last page, is seen through the "
          "other; the pages just outside the new view are untouched",
          source="mremap(2) DESCRIPTION (old_size zero: a new mapping of the same pages)", tier="linux")
def test_old_size_zero_shares_pages(arena: Arena) -> None:
    region = arena.map(4, 3, flags=SHARED_ANON)
    second = libc.mremap(region.addr, 0, 3 * PAGE, MAYMOVE | C.MREMAP_FIXED, arena.page(20))
    assert second == arena.page(20)
    _fill(region.addr, 3 * PAGE, 0x60)
    assert _contents(second, 3 * PAGE) == _contents(region.addr, 3 * PAGE) == [0x60, 0x67, 0x61, 0x68, 0x62, 0x69]
    _fill(second, 3 * PAGE, 0x90)
    assert _contents(region.addr, 3 * PAGE) == [0x90, 0x97, 0x91, 0x98, 0x92, 0x99]
    assert probe.read(arena.page(19)) == _accerr(arena.page(19))  # still the arena's PROT_NONE reservation
    assert probe.read(arena.page(23)) == _accerr(arena.page(23))
    entry = procfs.vma_at(second)
    assert entry is not None and (entry.start, entry.end, entry.perms) == (second, second + 3 * PAGE, "rw-s")


@semantic("mremap.old_size_zero.private_einval",
          "mremap with old_size 0 of a private mapping fails with EINVAL (since Linux 4.14; before, it made "
          "an unrelated private mapping)",
          source="mremap(2) ERRORS (EINVAL: old_size was zero and old_address is not shareable); BUGS",
          tier="linux")
def test_old_size_zero_private_is_einval(arena: Arena) -> None:
    region = arena.map(8, 1)
    fails_with(errno.EINVAL, libc.mremap, region.addr, 0, PAGE, MAYMOVE)


# --- MREMAP_DONTUNMAP: which mappings, which arguments, what the old range holds ---------

@semantic("mremap.dontunmap.requires_maymove_einval",
          "MREMAP_DONTUNMAP without MREMAP_MAYMOVE fails with EINVAL",
          source="mremap(2) ERRORS (EINVAL: MREMAP_DONTUNMAP without MREMAP_MAYMOVE)", tier="linux")
@requires("feature:MREMAP_DONTUNMAP")
def test_dontunmap_without_maymove_is_einval(arena: Arena) -> None:
    region = arena.map(12, 1)
    fails_with(errno.EINVAL, libc.mremap, region.addr, PAGE, PAGE, C.MREMAP_DONTUNMAP)


@semantic("mremap.dontunmap.sizes_differ_einval",
          "MREMAP_DONTUNMAP with new_size different from old_size fails with EINVAL",
          source="mremap(2) ERRORS (EINVAL: MREMAP_DONTUNMAP and old_size was not equal to new_size)",
          tier="linux")
@requires("feature:MREMAP_DONTUNMAP")
def test_dontunmap_with_different_sizes_is_einval(arena: Arena) -> None:
    region = arena.map(14, 1)
    fails_with(errno.EINVAL, libc.mremap, region.addr, PAGE, 2 * PAGE, MAYMOVE | C.MREMAP_DONTUNMAP)


@semantic("mremap.dontunmap.shared_old_range_same_pages",
          "MREMAP_DONTUNMAP of a shared anonymous mapping (Linux 5.13+) moves it and leaves the old range "
          "mapping the same shared pages: the old view reads the contents on its first, inner and last page, "
          "and a store through the new view is seen through the old one",
          source="mremap(2) MREMAP_DONTUNMAP (since Linux 5.13 any mapping)", tier="linux")
@requires("feature:MREMAP_DONTUNMAP_ANY_MAPPING")
def test_dontunmap_shared_keeps_old_view(arena: Arena) -> None:
    region = arena.map(16, 3, flags=SHARED_ANON)
    moved: list[tuple[int, int]] = []
    with _unmapped_at_end(moved):
        _fill(region.addr, 3 * PAGE, 0x11)
        new = libc.mremap(region.addr, 3 * PAGE, 3 * PAGE, MAYMOVE | C.MREMAP_DONTUNMAP)
        moved.append((new, 3 * PAGE))
        expected = [0x11, 0x18, 0x12, 0x19, 0x13, 0x1A]
        assert _contents(new, 3 * PAGE) == expected
        assert _contents(region.addr, 3 * PAGE) == expected
        _fill(new, 3 * PAGE, 0x21)
        assert _contents(region.addr, 3 * PAGE) == [0x21, 0x28, 0x22, 0x29, 0x23, 0x2A]


@semantic("mremap.dontunmap.private_file_old_range_rereads_file",
          "MREMAP_DONTUNMAP of a private file mapping (Linux 5.13+) moves its pages, copy-on-write changes "
          "included, to the new range; the old range stays mapped to the file and reads the file's contents, "
          "not the private changes",
          source="mremap(2) MREMAP_DONTUNMAP (since Linux 5.13; the old range faults in again)", tier="linux")
@requires("feature:MREMAP_DONTUNMAP_ANY_MAPPING")
def test_dontunmap_private_file_old_range_rereads(mapped_file: MappedFile) -> None:
    region = mapped_file(b"".join(bytes([0x41 + page]) * PAGE for page in range(3)), shared=False)
    _fill(region.addr, 3 * PAGE, 0x70)  # private copies of every page
    new = region.remap(3 * PAGE, MAYMOVE | C.MREMAP_DONTUNMAP)
    assert _contents(new, 3 * PAGE) == [0x70, 0x77, 0x71, 0x78, 0x72, 0x79]
    assert _contents(region.addr, 3 * PAGE) == [0x41, 0x41, 0x42, 0x42, 0x43, 0x43]
    assert region.path.read_bytes()[::PAGE] == b"ABC"


@semantic("mremap.dontunmap.shared_einval_before_5_13",
          "Before Linux 5.13, MREMAP_DONTUNMAP of anything but a private anonymous mapping fails with EINVAL",
          source="mremap(2) ERRORS (EINVAL: MREMAP_DONTUNMAP and the range was not private anonymous)",
          tier="linux")
@requires("feature:MREMAP_DONTUNMAP")
def test_dontunmap_shared_einval_before_5_13(memsys_env: Environment, arena: Arena) -> None:
    any_mapping = memsys_env.promise("MREMAP_DONTUNMAP_ANY_MAPPING")
    if any_mapping.state == PROMISED or any_mapping.works:
        pytest.skip(f"needs:a kernel without MREMAP_DONTUNMAP_ANY_MAPPING ({any_mapping.describe()})")
    region = arena.map(24, 1, flags=SHARED_ANON)
    fails_with(errno.EINVAL, libc.mremap, region.addr, PAGE, PAGE, MAYMOVE | C.MREMAP_DONTUNMAP)


@semantic("mremap.dontunmap.fixed_exact_address",
          "MREMAP_DONTUNMAP|MREMAP_FIXED moves the contents to exactly new_address and keeps the old range "
          "mapped (zero-filled for a private anonymous mapping)",
          source="mremap(2) MREMAP_DONTUNMAP (with MREMAP_FIXED)", tier="linux")
@requires("feature:MREMAP_DONTUNMAP")
def test_dontunmap_fixed(arena: Arena) -> None:
    region = arena.map(26, 2)
    _fill(region.addr, 2 * PAGE, 0x33)
    target = arena.page(30)
    assert libc.mremap(region.addr, 2 * PAGE, 2 * PAGE, MAYMOVE | C.MREMAP_FIXED | C.MREMAP_DONTUNMAP,
                       target) == target
    assert _contents(target, 2 * PAGE) == [0x33, 0x3A, 0x34, 0x3B]
    assert _contents(region.addr, 2 * PAGE) == [0, 0, 0, 0]
    assert probe.read(arena.page(32)) == _accerr(arena.page(32))


def _lo(addr: int) -> bool:
    return "lo" in vmflags(addr)


def _skip_unless_lockable(env: Environment, length: int) -> None:
    shortfall = lockable_shortfall(env, length)
    if shortfall:
        pytest.skip(shortfall)


def _dontunmap_locked() -> tuple[tuple[bool, list[bool]], tuple[bool, list[bool]], int, int, int]:
    """In a child (what this does to VmLck is process-wide): lock two pages, move them with
    MREMAP_DONTUNMAP; each range's (locked, residency), then VmLck before, after the move and
    after both ranges are unmapped, in kB."""
    before = _vmlck_kb()
    addr = libc.mmap(0, 2 * PAGE, C.RW, C.ANON)
    libc.mlock(addr, 2 * PAGE)
    new = libc.mremap(addr, 2 * PAGE, 2 * PAGE, MAYMOVE | C.MREMAP_DONTUNMAP)
    moved = (_lo(new), resident(new, 2 * PAGE))
    old = (_lo(addr), resident(addr, 2 * PAGE))
    after_move = _vmlck_kb()
    libc.munmap(new, 2 * PAGE)
    libc.munmap(addr, 2 * PAGE)
    return moved, old, before, after_move, _vmlck_kb()


@semantic("mremap.dontunmap.locked_old_range_unlocked",
          "MREMAP_DONTUNMAP of a locked mapping moves the lock with the pages: the new range is locked and "
          "resident, the old range stays mapped but is no longer locked (VmFlags) nor resident",
          source="Linux mm/mremap.c (VM_LOCKED cleared on the old VMA with MREMAP_DONTUNMAP)", tier="impl")
@requires("feature:MREMAP_DONTUNMAP")
def test_dontunmap_moves_the_lock(run_in_child: RunInChild, memsys_env: Environment) -> None:
    _skip_unless_lockable(memsys_env, 2 * PAGE)
    moved, old, _before, _after_move, _after_unmap = run_in_child(_dontunmap_locked).result()
    assert (moved, old) == ((True, [True, True]), (False, [False, False]))


@semantic("mremap.dontunmap.locked_accounting_restored",
          "After MREMAP_DONTUNMAP of a locked mapping, VmLck counts only the locked (new) range, and once "
          "both ranges are unmapped it is back where it was",
          source="proc(5) /proc/PID/status VmLck; mlock(2) (RLIMIT_MEMLOCK accounting)", tier="linux")
@requires("feature:MREMAP_DONTUNMAP")
def test_dontunmap_locked_accounting(run_in_child: RunInChild, memsys_env: Environment) -> None:
    _skip_unless_lockable(memsys_env, 2 * PAGE)
    _moved, _old, before, after_move, after_unmap = run_in_child(_dontunmap_locked).result()
    assert (after_move - before, after_unmap - before) == (2 * PAGE // 1024, 0), (
        f"VmLck {before} kB before, {after_move} kB after moving 2 locked pages, {after_unmap} kB after "
        f"unmapping both ranges")


# --- locked ranges -------------------------------------------------------------------------

def _vmlck_kb() -> int:
    return procfs.status_kb(procfs.read_status(), "VmLck") or 0


@semantic("mremap.locked.grow_stays_locked_populated",
          "A locked mapping that grows stays locked over its whole new length and the grown pages are "
          "populated at once: VmFlags 'lo', mincore resident on every page, VmLck up by the growth",
          source="mremap(2) NOTES; mlock(2) (locked pages are resident)", tier="linux")
def test_locked_grow_stays_locked(locked_region: LockedRegion, memsys_env: Environment) -> None:
    _skip_unless_lockable(memsys_env, 4 * PAGE)
    region = locked_region(2)
    before = _vmlck_kb()
    new = region.remap(4 * PAGE)
    assert _lo(new) and _lo(new + 3 * PAGE)
    assert resident(new, 4 * PAGE) == [True] * 4
    assert _vmlck_kb() - before == 2 * PAGE // 1024


@semantic("mremap.locked.move_stays_locked",
          "A locked mapping moved with MREMAP_FIXED is locked and resident at its new address, with its "
          "contents, and VmLck does not change",
          source="mremap(2) DESCRIPTION; mlock(2)", tier="linux")
def test_locked_move_stays_locked(arena: Arena, memsys_env: Environment) -> None:
    _skip_unless_lockable(memsys_env, 3 * PAGE)
    region = arena.map(34, 3)
    region.lock()
    with _arena_pages_given_back(arena, 34, 3):
        _fill(region.addr, 3 * PAGE, 0x44)
        before = _vmlck_kb()
        target = arena.page(40)
        assert libc.mremap(region.addr, 3 * PAGE, 3 * PAGE, MAYMOVE | C.MREMAP_FIXED, target) == target
        assert (_lo(target), resident(target, 3 * PAGE)) == (True, [True] * 3)
        assert _contents(target, 3 * PAGE) == [0x44, 0x4B, 0x45, 0x4C, 0x46, 0x4D]
        assert _vmlck_kb() == before


CAP_IPC_LOCK = 14


def _grow_locked_past_limit() -> tuple[int, int, bool, int]:
    """In a child without CAP_IPC_LOCK and with RLIMIT_MEMLOCK one page: lock one page, grow it."""
    drop_capability(CAP_IPC_LOCK)
    _soft, hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    resource.setrlimit(resource.RLIMIT_MEMLOCK, (PAGE, PAGE if hard == resource.RLIM_INFINITY else min(hard, PAGE)))
    addr = libc.mmap(0, PAGE, C.RW, C.ANON)
    libc.mlock(addr, PAGE)
    try:
        libc.mremap(addr, PAGE, 2 * PAGE, MAYMOVE)
    except OSError as error:
        entry = procfs.vma_at(addr)
        return error.errno or -1, entry.length if entry else 0, _lo(addr), _vmlck_kb()
    return 0, 0, False, _vmlck_kb()


@semantic("mremap.locked.grow_past_memlock_eagain",
          "Growing a locked mapping beyond RLIMIT_MEMLOCK without CAP_IPC_LOCK fails with EAGAIN and leaves "
          "it locked at its old size (checked in a child that drops CAP_IPC_LOCK and sets the limit to one page)",
          source="mremap(2) ERRORS (EAGAIN)", tier="linux")
def test_locked_grow_past_memlock_is_eagain(run_in_child: RunInChild) -> None:
    assert run_in_child(_grow_locked_past_limit).result() == (errno.EAGAIN, PAGE, True, PAGE // 1024)


# --- MREMAP_FIXED over what is there -------------------------------------------------------

@semantic("mremap.fixed.replaces_existing_mapping",
          "MREMAP_FIXED onto part of an existing mapping replaces exactly those pages: they hold the moved "
          "contents (the old ones are gone), the target mapping's pages on either side keep theirs",
          source="mremap(2) DESCRIPTION (MREMAP_FIXED: any previous mapping at the address range is unmapped)",
          tier="linux")
def test_fixed_replaces_existing_mapping(arena: Arena) -> None:
    source = arena.map(2, 2)
    target = arena.map(44, 4)
    with _arena_pages_given_back(arena, 2, 2):
        _fill(source.addr, 2 * PAGE, 0x30)
        _fill(target.addr, 4 * PAGE, 0xA0)
        assert libc.mremap(source.addr, 2 * PAGE, 2 * PAGE, MAYMOVE | C.MREMAP_FIXED, target.page(1)) == target.page(1)
        assert _contents(target.addr, 4 * PAGE) == [0xA0, 0xA7, 0x30, 0x37, 0x31, 0x38, 0xA3, 0xAA]
        assert all(e.perms == "rw-p" for e in procfs.maps_overlapping(target.addr, target.end))
        assert sum(e.end - e.start for e in procfs.maps_overlapping(target.addr, target.end)) == 4 * PAGE
        assert probe.read(source.addr) == _maperr(source.addr)


@semantic("mremap.fixed.einval_unaligned_new_address",
          "MREMAP_FIXED with a new_address that is not page aligned fails with EINVAL",
          source="mremap(2) ERRORS (EINVAL: new_address was not page aligned)", tier="linux")
def test_fixed_unaligned_new_address_is_einval(arena: Arena) -> None:
    region = arena.map(50, 1)
    fails_with(errno.EINVAL, libc.mremap, region.addr, PAGE, PAGE, MAYMOVE | C.MREMAP_FIXED, arena.page(52) + 1)
    assert probe.write(region.addr, 1) is None


@semantic("mremap.fixed.grows_while_moving",
          "MREMAP_FIXED with new_size larger than old_size moves and grows: the contents at new_address, "
          "zero-filled pages after them up to the last new page, and the page after the new range untouched",
          source="mremap(2) DESCRIPTION (MREMAP_FIXED)", tier="linux")
def test_fixed_grows_while_moving(arena: Arena) -> None:
    region = arena.map(54, 1)
    with _arena_pages_given_back(arena, 54, 1):
        _fill(region.addr, PAGE, 0x55)
        target = arena.page(57)
        assert libc.mremap(region.addr, PAGE, 3 * PAGE, MAYMOVE | C.MREMAP_FIXED, target) == target
        assert _contents(target, 3 * PAGE) == [0x55, 0x5C, 0, 0, 0, 0]
        assert probe.read(arena.page(60)) == _accerr(arena.page(60))


@semantic("mremap.move.keeps_protection",
          "A moved mapping keeps its protection: a read-only mapping moved with MREMAP_FIXED is readable "
          "and refuses writes (SEGV_ACCERR) at its new address",
          source="mremap(2) DESCRIPTION (the mapping is moved)", tier="linux")
def test_move_keeps_protection(arena: Arena) -> None:
    region = arena.map(61, 1)
    with _arena_pages_given_back(arena, 61, 1):
        _fill(region.addr, PAGE, 0x66)
        region.protect(C.PROT_READ)
        target = arena.page(63)
        assert libc.mremap(region.addr, PAGE, PAGE, MAYMOVE | C.MREMAP_FIXED, target) == target
        assert probe.read_value(target) == (None, 0x66)
        assert probe.write(target + PAGE - 1, 1) == _accerr(target + PAGE - 1)
        entry = procfs.vma_at(target)
        assert entry is not None and entry.perms == "r--p"


@semantic("mremap.grow.shared_anon_beyond_object_sigbus",
          "A shared anonymous mapping that grows keeps the size of its shared memory object: the old pages "
          "keep their contents, and an access to a grown page raises SIGBUS (BUS_ADRERR) at the address",
          source="Linux mm/shmem.c (a fault beyond the object's size is SIGBUS); mremap(2) DESCRIPTION",
          tier="impl")
def test_shared_anon_grow_beyond_object_sigbus(mapped_pages: MappedPages) -> None:
    region = mapped_pages(1, flags=SHARED_ANON)
    _fill(region.addr, PAGE, 0x77)
    new = region.remap(3 * PAGE)
    assert _contents(new, PAGE) == [0x77, 0x7E]
    for addr in (new + PAGE, new + 3 * PAGE - 1):
        assert probe.read(addr) == Fault(signal.SIGBUS, C.BUS_ADRERR, addr)
