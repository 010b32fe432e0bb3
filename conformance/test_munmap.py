"""Conformance: munmap(2) — its EINVAL cases, that unmapping a hole is not an error,
how partial unmaps and unaligned lengths behave, and the fault an access to
unmapped memory raises (the tutorial's "Segmentation faults - Accessing unmapped memory").

Every unmap of a range that could be reused by someone else happens inside the
``arena`` fixture, so that "unmapped" stays true while the test looks at it.
"""

from __future__ import annotations

import errno
import signal

from pytest_memsyscalls import Fault, MappedFile, MappedPages, fails_with, faults_with, semantic, succeeds
from pytest_memsyscalls.kernel import constants as C
from pytest_memsyscalls.kernel import libc, probe
from pytest_memsyscalls.kernel.libc import PAGE_SIZE as P
from pytest_memsyscalls.memory.mapping import Arena

from ._oracles import is_mapped


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


@semantic("munmap.einval.beyond_address_space", "munmap of a range outside the user address space "
          "(addr 2**63) fails with EINVAL ('we don't like addr or length: too large').",
          source="munmap(2) ERRORS (mmap(2))", tier="linux")
def test_beyond_address_space_is_einval() -> None:
    fails_with(errno.EINVAL, libc.munmap, 1 << 63, P)


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
