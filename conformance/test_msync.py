"""Conformance: msync(2) — its ERRORS (EINVAL, ENOMEM, EBUSY), that MS_SYNC and
MS_ASYNC leave a MAP_SHARED store in the file, and the accurate Linux semantic
behind the tutorial's "Ensure changes are written to disk": Linux has one page cache,
so read(2) sees a store through a shared mapping before any msync; msync is about
the data reaching the file's storage, which a test in user space cannot observe
short of a crash. What is asserted here is what read(2) and the errnos show.
"""

from __future__ import annotations

import errno
import os

import pytest

from pytest_memsyscalls import LockedRegion, MappedFile, MappedPages, fails_with, semantic, succeeds
from pytest_memsyscalls.kernel import constants as C
from pytest_memsyscalls.kernel import libc
from pytest_memsyscalls.kernel.libc import PAGE_SIZE as P
from pytest_memsyscalls.memory.mapping import Arena


@semantic("msync.einval.unaligned_addr", "msync with an address that is not a multiple of the page size "
                                         "fails "
          "with EINVAL.", source="msync(2) ERRORS", tier="posix")
def test_unaligned_addr_is_einval(mapped_pages: MappedPages) -> None:
    mapping = mapped_pages(2)
    fails_with(errno.EINVAL, libc.msync, mapping.addr + 1, P, C.MS_SYNC)


@semantic("msync.einval.sync_and_async", "msync with both MS_SYNC and MS_ASYNC fails with EINVAL.",
          source="msync(2) ERRORS", tier="posix")
def test_sync_and_async_is_einval(mapped_pages: MappedPages) -> None:
    mapping = mapped_pages(1)
    fails_with(errno.EINVAL, libc.msync, mapping.addr, P, C.MS_SYNC | C.MS_ASYNC)


@semantic("msync.einval.unknown_flag", "msync with a flag bit other than MS_ASYNC|MS_INVALIDATE|MS_SYNC "
                                       "fails "
          "with EINVAL.", source="msync(2) ERRORS", tier="posix")
def test_unknown_flag_is_einval(mapped_pages: MappedPages) -> None:
    mapping = mapped_pages(1)
    fails_with(errno.EINVAL, libc.msync, mapping.addr, P, C.MS_SYNC | 8)


@semantic("msync.enomem.unmapped_range", "msync of a range that is not mapped fails with ENOMEM (which makes "
          "msync an is-mapped oracle).", source="msync(2) ERRORS", tier="posix")
def test_unmapped_range_is_enomem(arena: Arena) -> None:
    arena.hole(3, 2)
    fails_with(errno.ENOMEM, libc.msync, arena.page(3), 2 * P, C.MS_ASYNC)


@semantic("msync.enomem.hole_inside_range", "msync of a range with an unmapped hole inside it fails with "
                                            "ENOMEM "
          "even though both ends are mapped ('or part of it').", source="msync(2) ERRORS", tier="posix")
def test_hole_inside_range_is_enomem(arena: Arena) -> None:
    arena.map(8, 3)
    arena.hole(9, 1)
    succeeds(libc.msync, arena.page(8), P, C.MS_ASYNC)
    succeeds(libc.msync, arena.page(10), P, C.MS_ASYNC)
    fails_with(errno.ENOMEM, libc.msync, arena.page(8), 3 * P, C.MS_ASYNC)


@semantic("msync.ebusy.invalidate_locked", "MS_INVALIDATE on a range with a memory lock fails with EBUSY.",
          source="msync(2) ERRORS", tier="linux")
def test_invalidate_locked_is_ebusy(locked_region: LockedRegion) -> None:
    region = locked_region(2)
    fails_with(errno.EBUSY, libc.msync, region.addr, region.length, C.MS_INVALIDATE)


@semantic("msync.invalidate.unlocked_accepted", "MS_INVALIDATE on an unlocked shared file mapping succeeds "
                                                "and "
          "does not discard the mapping's own stores.", source="msync(2) DESCRIPTION", tier="posix")
def test_invalidate_unlocked_accepted(mapped_file: MappedFile) -> None:
    mapping = mapped_file(b"i" * P)
    mapping.buffer[0:4] = b"kept"
    succeeds(libc.msync, mapping.addr, mapping.length, C.MS_SYNC | C.MS_INVALIDATE)
    assert bytes(mapping.buffer[0:4]) == b"kept"
    assert os.pread(mapping.fd, 4, 0) == b"kept"


@pytest.mark.parametrize("flag", [C.MS_SYNC, C.MS_ASYNC], ids=["MS_SYNC", "MS_ASYNC"])
@semantic("msync.flush.data_in_file", "After msync(MS_SYNC) or msync(MS_ASYNC) of a MAP_SHARED file mapping "
          "returns, read(2) of the file returns the stored bytes, on every page of the range.",
          source="msync(2) DESCRIPTION; tutorial §2 Example: File Mapping", tier="posix")
def test_flush_puts_data_in_file(mapped_file: MappedFile, flag: int) -> None:
    mapping = mapped_file(b"\0" * (3 * P))
    for page in range(3):
        mapping.buffer[page * P + 1:page * P + 4] = bytes([0x61 + page]) * 3
    succeeds(libc.msync, mapping.addr, mapping.length, flag)
    with open(mapping.path, "rb") as reopened:
        data = reopened.read()
    assert [data[page * P + 1:page * P + 4] for page in range(3)] == [b"aaa", b"bbb", b"ccc"]


@semantic("msync.unified_cache.read_before_msync", "On Linux (one page cache) a store through a MAP_SHARED "
          "mapping is visible to read(2) immediately, before any msync: msync is needed for durability, not "
          "for visibility (the tutorial's comment 'Ensure changes are written to disk' is about storage).",
          source="mmap(2) MAP_SHARED; msync(2) NOTES", tier="impl")
def test_read_sees_store_before_msync(mapped_file: MappedFile) -> None:
    mapping = mapped_file(b"-" * P)
    mapping.buffer[10:15] = b"early"
    assert os.pread(mapping.fd, 5, 10) == b"early"


@pytest.mark.parametrize("flag", [C.MS_SYNC, C.MS_ASYNC], ids=["MS_SYNC", "MS_ASYNC"])
@semantic("msync.anonymous.succeeds", "msync of a mapped anonymous range succeeds (there is nothing to "
          "write back, but the range is mapped).", source="msync(2) ERRORS (ENOMEM only for unmapped)",
          tier="linux")
def test_anonymous_msync_succeeds(mapped_pages: MappedPages, flag: int) -> None:
    mapping = mapped_pages(2)
    mapping.buffer[0] = 1
    succeeds(libc.msync, mapping.addr, mapping.length, flag)


@semantic("msync.length_zero.succeeds_anywhere",
          "msync with length 0 succeeds without looking at the address: even an unmapped one (no ENOMEM).",
          source="mm/msync.c do_msync() (end == start: return 0)", tier="impl")
def test_length_zero_succeeds(arena: Arena) -> None:
    arena.hole(5, 1)
    succeeds(libc.msync, arena.page(5), 0, C.MS_SYNC)
    fails_with(errno.ENOMEM, libc.msync, arena.page(5), 1, C.MS_SYNC)  # one byte is a page to check


@semantic("msync.enomem.range_wraps",
          "msync of a page-aligned range whose end wraps past the top of the address space fails with "
          "ENOMEM.", source="mm/msync.c do_msync() (end < start: -ENOMEM)", tier="impl")
def test_wrapping_range_is_enomem() -> None:
    fails_with(errno.ENOMEM, libc.msync, (1 << 64) - 4 * P, 8 * P, C.MS_SYNC)


@semantic("msync.flags_zero.accepted",
          "Linux accepts msync with flags 0 (neither MS_SYNC nor MS_ASYNC) on a mapped range, and still "
          "refuses it with ENOMEM on an unmapped one.", source="msync(2) DESCRIPTION/ERRORS; mm/msync.c",
          tier="linux")
def test_flags_zero_accepted(mapped_file: MappedFile, arena: Arena) -> None:
    mapping = mapped_file(b"f" * (2 * P))
    mapping.buffer[P] = ord("g")
    succeeds(libc.msync, mapping.addr, mapping.length, 0)
    assert os.pread(mapping.fd, 1, P) == b"g"
    arena.hole(7, 1)
    fails_with(errno.ENOMEM, libc.msync, arena.page(7), P, 0)


@semantic("msync.prot_none.succeeds",
          "msync of a mapped PROT_NONE range succeeds: msync asks whether the range is mapped, not whether "
          "it is accessible (what makes it the suite's is-mapped oracle).",
          source="msync(2) ERRORS (ENOMEM only for unmapped memory)", tier="linux")
def test_prot_none_succeeds(arena: Arena) -> None:
    arena.map(12, 3, C.PROT_NONE)
    for flag in (C.MS_ASYNC, C.MS_SYNC, C.MS_INVALIDATE):
        succeeds(libc.msync, arena.page(12), 3 * P, flag)


@semantic("msync.length_rounded_up",
          "msync's length is rounded up to whole pages: a length one byte into an unmapped page fails with "
          "ENOMEM, while the exact length of the mapped pages succeeds.", source="msync(2) ERRORS; "
                                                                            "mm/msync.c do_msync()",
          tier="linux")
def test_length_rounded_up(arena: Arena) -> None:
    arena.map(20, 2)
    arena.hole(22, 1)
    succeeds(libc.msync, arena.page(20), 2 * P, C.MS_ASYNC)
    fails_with(errno.ENOMEM, libc.msync, arena.page(20), 2 * P + 1, C.MS_ASYNC)


@pytest.mark.parametrize("flag", [C.MS_SYNC, C.MS_ASYNC], ids=["MS_SYNC", "MS_ASYNC"])
@semantic("msync.private.store_not_written",
          "msync of a MAP_PRIVATE file mapping succeeds but does not write its stores (first and last page) to "
          "the file.", source="msync(2) DESCRIPTION; mmap(2) MAP_PRIVATE", tier="posix")
def test_private_store_not_written(mapped_file: MappedFile, flag: int) -> None:
    mapping = mapped_file(b"v" * (2 * P), shared=False)
    mapping.buffer[0] = ord("w")
    mapping.buffer[2 * P - 1] = ord("w")
    succeeds(libc.msync, mapping.addr, mapping.length, flag)
    assert os.pread(mapping.fd, 2 * P, 0) == b"v" * (2 * P)
    assert mapping.path.read_bytes() == b"v" * (2 * P)
