"""mincore(2): the residency vector, and the three ERRORS user space can provoke.

Residency of private anonymous memory is decided by the kernel alone (there is no
page cache to share it with another process), so each expectation follows from what
the test did to the page: never touched, written, dropped with MADV_DONTNEED, or
pre-faulted with MAP_POPULATE. Unmapped addresses come from holes in the ``arena``.
"""

from __future__ import annotations

import errno

from pytest_memsyscalls import MappedPages, fails_with, semantic
from pytest_memsyscalls.kernel import constants as C
from pytest_memsyscalls.kernel import libc
from pytest_memsyscalls.kernel.libc import PAGE_SIZE as PAGE
from pytest_memsyscalls.memory.mapping import Arena


def _resident(addr: int, length: int) -> list[bool]:
    """Bit 0 of each vector byte: the only bit mincore defines."""
    return [bool(byte & 1) for byte in libc.mincore(addr, length)]


@semantic("mincore.residency.untouched_anon_not_resident",
          "A private anonymous page that was never touched is not resident (bit 0 of its vector byte is 0)",
          source="mincore(2) DESCRIPTION", tier="linux")
def test_untouched_page_not_resident(mapped_pages: MappedPages) -> None:
    region = mapped_pages(3)
    assert _resident(region.addr, region.length) == [False, False, False]


@semantic("mincore.residency.written_page_resident",
          "Writing to a private anonymous page makes it resident",
          source="mincore(2) DESCRIPTION", tier="linux")
def test_written_page_resident(mapped_pages: MappedPages) -> None:
    region = mapped_pages(3)
    region.buffer[PAGE] = 1
    assert _resident(region.addr, region.length)[1] is True


@semantic("mincore.residency.dontneed_not_resident",
          "After MADV_DONTNEED a written private anonymous page is no longer resident",
          source="mincore(2) DESCRIPTION; madvise(2) MADV_DONTNEED", tier="linux")
def test_dontneed_drops_residency(mapped_pages: MappedPages) -> None:
    region = mapped_pages(2)
    region.buffer[0] = 1
    region.buffer[PAGE] = 1
    region.advise(C.MADV_DONTNEED, 0, PAGE)
    assert _resident(region.addr, region.length) == [False, True]


@semantic("mincore.residency.map_populate_resident",
          "Every page of a MAP_POPULATE private anonymous mapping is resident before it is touched",
          source="mincore(2) DESCRIPTION; mmap(2) MAP_POPULATE", tier="linux")
def test_map_populate_resident(mapped_pages: MappedPages) -> None:
    region = mapped_pages(4, flags=C.MAP_PRIVATE | C.MAP_ANONYMOUS | C.MAP_POPULATE)
    assert _resident(region.addr, region.length) == [True] * 4


@semantic("mincore.vector.length_rounds_up",
          "mincore writes one byte per page of [addr, addr+length) and no more: a length of one byte more "
          "than a page fills exactly two bytes of vec, each 0 or 1 for a private anonymous page",
          source="mincore(2) DESCRIPTION (vec must contain at least (length+PAGE_SIZE-1)/PAGE_SIZE bytes)",
          tier="linux")
def test_partial_page_length_rounds_up(mapped_pages: MappedPages) -> None:
    region = mapped_pages(2)
    region.buffer[0] = 1
    region.buffer[PAGE] = 1
    vector = mapped_pages(1)
    vector.buffer[:4] = b"\xee\xee\xee\xee"  # sentinels: the kernel must overwrite exactly two of them
    libc.mincore_into(region.addr, PAGE + 1, vector.addr)
    assert bytes(vector.buffer[:4]) == b"\x01\x01\xee\xee"


@semantic("mincore.errors.einval_unaligned_addr",
          "mincore fails with EINVAL when addr is not a multiple of the page size",
          source="mincore(2) ERRORS", tier="linux")
def test_unaligned_addr_is_einval(mapped_pages: MappedPages) -> None:
    region = mapped_pages(2)
    fails_with(errno.EINVAL, libc.mincore, region.addr + 1, PAGE)


@semantic("mincore.errors.enomem_unmapped_range",
          "mincore fails with ENOMEM when [addr, addr+length) contains unmapped memory",
          source="mincore(2) ERRORS", tier="linux")
def test_range_with_unmapped_page_is_enomem(arena: Arena) -> None:
    arena.map(4, 1)
    arena.hole(5, 1)
    fails_with(errno.ENOMEM, libc.mincore, arena.page(5), PAGE)
    fails_with(errno.ENOMEM, libc.mincore, arena.page(4), 2 * PAGE)


@semantic("mincore.errors.enomem_length_beyond_task_size",
          "mincore fails with ENOMEM when length is greater than TASK_SIZE - addr (e.g. a negative length "
          "taken as unsigned)",
          source="mincore(2) ERRORS", tier="linux")
def test_huge_length_is_enomem(mapped_pages: MappedPages) -> None:
    region = mapped_pages(1)
    vector = mapped_pages(1)  # never written: the kernel rejects the length first
    fails_with(errno.ENOMEM, libc.mincore_into, region.addr, (1 << 64) - PAGE, vector.addr)


@semantic("mincore.errors.efault_bad_vec",
          "mincore fails with EFAULT when vec points to an invalid (unmapped) address",
          source="mincore(2) ERRORS", tier="linux")
def test_unmapped_vector_is_efault(mapped_pages: MappedPages, arena: Arena) -> None:
    region = mapped_pages(1)
    region.buffer[0] = 1
    arena.hole(8, 1)
    fails_with(errno.EFAULT, libc.mincore_into, region.addr, PAGE, arena.page(8))
