"""Conformance: munmap(2) — its EINVAL cases, that unmapping a hole is not an error,
how partial unmaps and unaligned lengths behave, and the fault an access to
unmapped memory raises (the tutorial's "Segmentation faults - Accessing unmapped memory").

Every unmap of a range that could be reused by someone else happens inside the
``arena`` fixture, so that "unmapped" stays true while the test looks at it.
"""

from __future__ import annotations

import errno
import signal

import pytest

from pytest_memsyscalls import (
    Fault,
    LockedRegion,
    MappedFile,
    MappedPages,
    RunInChild,
    fails_with,
    faults_with,
    requires,
    semantic,
    succeeds,
)
from pytest_memsyscalls.environment.fingerprint import Environment
from pytest_memsyscalls.kernel import constants as C
from pytest_memsyscalls.kernel import libc, probe, procfs
from pytest_memsyscalls.kernel.libc import PAGE_SIZE as P
from pytest_memsyscalls.memory.mapping import Arena

from ._oracles import is_mapped, map_count_observation, vmflags


@semantic("munmap.einval.unaligned_addr", "munmap with an address that is not page-aligned fails with EINVAL "
          "and unmaps nothing.", source="munmap(2) ERRORS (mmap(2))", tier="posix")
def test_unaligned_addr_is_einval(mapped_pages: MappedPages) -> None:
    mapping = mapped_pages(2)
    fails_with(errno.EINVAL, libc.munmap, mapping.addr + 1, P)
    assert is_mapped(mapping.addr, mapping.length)


@semantic("munmap.einval.length_zero", "munmap with length 0 fails with EINVAL (since Linux 2.6.12).",
          source="munmap(2) ERRORS (mmap(2))", tier="linux")
def test_length_zero_is_einval(mapped_pages: MappedPages) -> None:
    mapping = mapped_pages(1)
    fails_with(errno.EINVAL, libc.munmap, mapping.addr, 0)
    assert is_mapped(mapping.addr)


# An address outside every user address space. Not 2**63 on arm64: the kernel removes a
# pointer's top byte (the tag, bits 63:56) before munmap looks at it (Top Byte Ignore;
# untagged_addr() in mm/mmap.c __vm_munmap), so 2**63 is address 0 there and munmap of
# that unmapped range succeeds. 2**55 keeps bit 55, which untagged_addr sign-extends:
# a kernel address (Documentation/arch/arm64/tagged-address-abi.rst).
BEYOND_USER = (1 << 55) if C.ARCH == "aarch64" else (1 << 63)


@semantic("munmap.einval.beyond_address_space", "munmap of a range outside the user address space "
          "(addr 2**63; on arm64 2**55, as the top byte is a tag the kernel ignores) fails with EINVAL "
          "('we don't like addr or length: too large').",
          source="munmap(2) ERRORS (mmap(2)); Documentation/arch/arm64/tagged-address-abi.rst", tier="linux")
def test_beyond_address_space_is_einval() -> None:
    fails_with(errno.EINVAL, libc.munmap, BEYOND_USER, P)


@semantic("munmap.arm64.tagged_address_ignored",
          "On arm64 the top byte of an address is a tag the kernel removes first: munmap of an unmapped range "
          "at 2**63 (tag 0x80, address 0) succeeds, like any munmap of a range with no mapping",
          source="Documentation/arch/arm64/tagged-address-abi.rst; mm/mmap.c __vm_munmap (untagged_addr)",
          tier="linux")
@requires("arch:aarch64")
def test_tagged_address_is_untagged_on_arm64() -> None:
    succeeds(libc.munmap, 1 << 63, P)


@semantic("munmap.unmapped_range_succeeds", "munmap of a range that contains no mapping is not an error.",
          source="munmap(2) DESCRIPTION", tier="posix")
def test_unmapping_a_hole_succeeds(arena: Arena) -> None:
    arena.hole(6, 3)
    succeeds(libc.munmap, arena.page(6), 3 * P)
    assert not is_mapped(arena.page(6), 3 * P)


@semantic("munmap.access_after_unmap_segv_maperr", "After munmap, an access to the range raises SIGSEGV with "
          "SEGV_MAPERR (no mapping) at the exact address.", source="munmap(2) DESCRIPTION; sigaction(2) "
                                                                   "si_code",
          tier="posix")
def test_access_after_unmap_faults(arena: Arena) -> None:
    mapping = arena.map(12, 2)
    mapping.buffer[P + 40] = 1
    arena.hole(12, 2)
    target = arena.page(13) + 40
    faults_with(probe.read(target), signal.SIGSEGV, C.SEGV_MAPERR, target)
    faults_with(probe.write(arena.page(12), 1), signal.SIGSEGV, C.SEGV_MAPERR, arena.page(12))


@semantic("munmap.length_rounded_up", "The length need not be a page multiple: every page containing part "
          "of the range is unmapped, and the next page is not.", source="munmap(2) DESCRIPTION", tier="posix")
def test_length_rounded_up(arena: Arena) -> None:
    arena.map(16, 3)
    libc.munmap(arena.page(16), P + 1)
    arena.hole(16, 2)  # record the hole so the arena never touches it again
    assert not is_mapped(arena.page(16)) and not is_mapped(arena.page(17))
    assert is_mapped(arena.page(18))


@semantic("munmap.partial_keeps_neighbours", "Unmapping pages in the middle of a mapping leaves the pages on "
          "either side mapped with their contents.", source="munmap(2) DESCRIPTION", tier="posix")
def test_partial_unmap_keeps_neighbours(arena: Arena) -> None:
    mapping = arena.map(24, 5)
    for page in range(5):
        mapping.buffer[page * P] = 0x30 + page
    arena.hole(26, 1)
    assert probe.read(arena.page(26)) == Fault(signal.SIGSEGV, C.SEGV_MAPERR, arena.page(26))
    assert [mapping.read(page * P) for page in (0, 1, 3, 4)] == [0x30, 0x31, 0x33, 0x34]


@semantic("munmap.shared_file_data_persists", "Unmapping a MAP_SHARED file mapping keeps the stores made "
          "through it in the file.", source="munmap(2) DESCRIPTION; mmap(2) MAP_SHARED", tier="posix")
def test_unmap_keeps_shared_file_data(mapped_file: MappedFile) -> None:
    mapping = mapped_file(b"." * P)
    mapping.buffer[0:7] = b"persist"
    mapping.unmap()
    assert mapping.path.read_bytes()[:7] == b"persist"


@semantic("munmap.enomem.split_at_max_map_count",
          "With the map count at vm.max_map_count, munmap of a page in the middle of a mapping (which would "
          "split it in two) fails with ENOMEM and leaves the page mapped.",
          source="mmap(2) ERRORS (ENOMEM: unmapping a region in the middle of an existing mapping)",
          tier="linux")
@requires(lambda env: None if env.vm.max_map_count else
          "unsupported:vm.max_map_count (unreadable: the limit is unknown)")
def test_split_at_max_map_count_is_enomem(memsys_env: Environment, run_in_child: RunInChild) -> None:
    assert memsys_env.vm.max_map_count is not None
    seen = map_count_observation(run_in_child, memsys_env.vm.max_map_count)
    assert seen.fill_errno == errno.ENOMEM, f"the fill stopped with {seen.fill_errno}"
    assert (seen.munmap_middle_errno, seen.middle_still_mapped) == (errno.ENOMEM, True), seen


@semantic("munmap.middle.splits_vma", "munmap of pages in the middle of a mapping splits its VMA in two: maps "
          "shows one VMA ending at the hole and one starting after it, with the same protection.",
          source="munmap(2) DESCRIPTION; mmap(2) ERRORS (ENOMEM: splitting)", tier="linux")
def test_middle_unmap_splits_vma(arena: Arena) -> None:
    arena.map(40, 6)
    arena.hole(42, 2)
    entries = procfs.maps_overlapping(arena.page(40), arena.page(46))
    assert [(e.start, e.end, e.perms) for e in entries] == [
        (arena.page(40), arena.page(42), "rw-p"), (arena.page(44), arena.page(46), "rw-p")], \
        "\n".join(map(str, entries))


@semantic("munmap.partly_unmapped_range_succeeds",
          "munmap of a range only partly mapped succeeds and unmaps the mapped part (first and last page), "
          "leaving the pages just outside the range mapped.", source="munmap(2) DESCRIPTION", tier="posix")
def test_partly_unmapped_range(arena: Arena) -> None:
    arena.map(10, 6)
    arena.hole(12, 2)
    succeeds(libc.munmap, arena.page(11), 4 * P)  # pages 11-14: 12-13 already unmapped
    observed = [is_mapped(arena.page(p)) for p in (10, 11, 14, 15)]  # before arena.hole() unmaps too
    arena.hole(11, 4)
    assert observed == [True, False, False, True]


@semantic("munmap.spans_several_vmas",
          "One munmap unmaps every mapping in its range, whatever their protections and types (private, "
          "PROT_NONE, shared): each page then faults with SEGV_MAPERR.", source="munmap(2) DESCRIPTION",
          tier="posix")
def test_unmap_spans_several_vmas(arena: Arena) -> None:
    arena.map(50, 2)
    arena.map(52, 1, C.PROT_NONE)
    arena.map(53, 2, C.PROT_READ, C.MAP_SHARED | C.MAP_ANONYMOUS)
    succeeds(libc.munmap, arena.page(50), 5 * P)
    # observed before arena.hole(), which would unmap the range itself
    assert procfs.maps_overlapping(arena.page(50), arena.page(55)) == []
    for page in (50, 52, 54):
        assert probe.read(arena.page(page)) == Fault(signal.SIGSEGV, C.SEGV_MAPERR, arena.page(page))
    arena.hole(50, 5)
    assert is_mapped(arena.page(49)) and is_mapped(arena.page(55))


@semantic("munmap.einval.length_beyond_address_space",
          "munmap with a length reaching beyond the user address space (2**63) fails with EINVAL and unmaps "
          "nothing.", source="munmap(2) ERRORS (mmap(2) EINVAL: length too large)", tier="linux")
def test_length_beyond_address_space_is_einval(mapped_pages: MappedPages) -> None:
    mapping = mapped_pages(2)
    fails_with(errno.EINVAL, libc.munmap, mapping.addr, 1 << 63)
    assert is_mapped(mapping.addr, mapping.length)


@semantic("munmap.locked.releases_lock",
          "Unmapping a locked range removes its lock: VmLck drops by the range's size.",
          source="mlock(2) NOTES (memory locks are removed when the range is unmapped)", tier="posix")
def test_unmap_releases_lock(locked_region: LockedRegion) -> None:
    region = locked_region(3)
    before = procfs.status_kb(procfs.read_status(), "VmLck")
    if before is None:
        pytest.skip("unsupported:/proc/self/status VmLck (not reported: the lock cannot be counted)")
    assert procfs.smaps_at(region.addr) is not None and "lo" in vmflags(region.addr)
    region.unmap()
    after = procfs.status_kb(procfs.read_status(), "VmLck")
    assert after is not None and before - after == region.length // 1024, f"VmLck {before} -> {after} kB"
