"""mincore(2): the residency vector, page-cache residency of files, and the ERRORS.

Residency of private anonymous memory is decided by the kernel alone (there is no
page cache to share it with another process), so each expectation follows from what
the test did to the page: never touched, written, dropped with MADV_DONTNEED, or
pre-faulted with MAP_POPULATE. Unmapped addresses come from holes in the ``arena``.

File mappings report the page cache, which other processes share, so only deterministic
observations are asserted: a page just written with write(2) is cached, a hole nobody
read and a page beyond EOF are not. Since Linux 5.0 a caller that neither owns the file
nor could open it for writing is shown every page resident instead (a page beyond EOF
tells the two apart).
"""

from __future__ import annotations

import errno
import os
import sys

import pytest

from pytest_memsyscalls import (
    MappedFile,
    MappedPages,
    PosixShmFactory,
    RunInChild,
    fails_with,
    requires,
    semantic,
)
from pytest_memsyscalls.environment.fingerprint import Environment
from pytest_memsyscalls.kernel import constants as C
from pytest_memsyscalls.kernel import libc, procfs
from pytest_memsyscalls.kernel.libc import PAGE_SIZE as PAGE
from pytest_memsyscalls.memory.mapping import Arena

OTHER_UID = 65534  # nobody: the caller that owns none of the files


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


# --- the vector and the range --------------------------------------------------------------

@semantic("mincore.vector.reserved_bits_zero",
          "Every vector byte is 0 or 1: the bits other than bit 0 are reserved, and Linux leaves them clear "
          "for resident and non-resident, anonymous and file pages",
          source="mincore(2) DESCRIPTION (the other bits are reserved)", tier="impl")
def test_reserved_bits_are_zero(mapped_pages: MappedPages, mapped_file: MappedFile) -> None:
    anon = mapped_pages(2)
    anon.buffer[0] = 1
    file = mapped_file(b"x", pages=2)
    assert set(libc.mincore(anon.addr, anon.length)) | set(libc.mincore(file.addr, file.length)) == {0, 1}


@semantic("mincore.length_zero.succeeds_unmapped",
          "mincore with length 0 succeeds, even at an unmapped (aligned) address, and writes nothing to vec",
          source="Linux mm/mincore.c (no pages: nothing to look up); mincore(2) ERRORS", tier="impl")
def test_zero_length_succeeds_at_unmapped_address(mapped_pages: MappedPages, arena: Arena) -> None:
    arena.hole(12, 1)
    vector = mapped_pages(1)
    vector.buffer[0] = 0xEE
    libc.mincore_into(arena.page(12), 0, vector.addr)
    assert vector.buffer[0] == 0xEE


@semantic("mincore.prot_none.reports_residency",
          "mincore reports the residency of PROT_NONE pages (they are mapped): a page written before "
          "mprotect(PROT_NONE) is resident, an untouched one is not",
          source="mincore(2) DESCRIPTION; ERRORS (ENOMEM only for unmapped memory)", tier="linux")
def test_prot_none_pages_report_residency(mapped_pages: MappedPages) -> None:
    region = mapped_pages(3)
    region.buffer[PAGE] = 1
    region.protect(C.PROT_NONE)
    assert _resident(region.addr, region.length) == [False, True, False]


@semantic("mincore.residency.read_fault_zero_page_resident",
          "Reading an untouched private anonymous page maps the shared zero page, and mincore reports it "
          "resident (the pages around it stay non-resident)",
          source="Linux mm/mincore.c (a present PTE is resident); mincore(2) DESCRIPTION", tier="impl")
def test_read_faulted_page_is_resident(mapped_pages: MappedPages) -> None:
    region = mapped_pages(3, flags=C.MAP_PRIVATE | C.MAP_ANONYMOUS | C.MAP_NORESERVE)
    region.advise(C.MADV_NOHUGEPAGE)
    assert region.buffer[PAGE] == 0
    assert _resident(region.addr, region.length) == [False, True, False]
    entry = procfs.smaps_at(region.addr)
    assert entry is not None and entry.get("Anonymous") == 0  # the zero page: nothing was allocated


# --- files: page-cache residency ----------------------------------------------------------

@semantic("mincore.file.cached_page_resident_before_touch",
          "A file page in the page cache (just written with write(2)) is resident in a fresh mapping of the "
          "file before the mapping is touched: mincore reports the page cache, not this process's page "
          "tables (smaps Rss of the mapping is 0)",
          source="mincore(2) DESCRIPTION (resident in core: a reference will not cause a page fault... "
                 "page cache)", tier="linux")
def test_cached_file_page_resident_before_touch(mapped_file: MappedFile) -> None:
    region = mapped_file(b"\x5a" * (3 * PAGE))  # written through write(2): in the page cache
    assert _resident(region.addr, region.length) == [True, True, True]
    entry = procfs.smaps_at(region.addr)
    assert entry is not None and entry.get("Rss") == 0


@semantic("mincore.file.hole_not_resident",
          "A page of a sparse file that was never written nor read is not resident",
          source="mincore(2) DESCRIPTION", tier="linux")
def test_sparse_file_page_not_resident(mapped_file: MappedFile) -> None:
    region = mapped_file(b"x", size=3 * PAGE)  # page 0 written; pages 1 and 2 are holes nobody read
    assert _resident(region.addr, region.length) == [True, False, False]


@semantic("mincore.file.beyond_eof_not_resident",
          "A page of a file mapping that lies wholly beyond the end of the file is reported not resident "
          "(mincore itself raises no SIGBUS)",
          source="mincore(2) DESCRIPTION; mmap(2) (pages beyond EOF)", tier="linux")
def test_page_beyond_eof_not_resident(mapped_file: MappedFile) -> None:
    region = mapped_file(b"x", pages=3)
    assert _resident(region.addr, region.length) == [True, False, False]


@semantic("mincore.shared.residency_seen_in_other_mapping",
          "A page written through one shared mapping of a POSIX shared memory object is resident in a second, "
          "untouched mapping of it, and only that page",
          source="mincore(2) DESCRIPTION; shm_overview(7)", tier="linux")
def test_shared_residency_seen_through_other_mapping(posix_shm: PosixShmFactory,
                                                     mapped_pages: MappedPages) -> None:
    shared = posix_shm(3 * PAGE)
    writer = mapped_pages(3, flags=C.MAP_SHARED, fd=shared.fd)
    reader = mapped_pages(3, flags=C.MAP_SHARED, fd=shared.fd)
    writer.buffer[2 * PAGE] = 1
    assert _resident(reader.addr, reader.length) == [False, False, True]


def _foreign_file() -> str | None:
    """A root-owned file nobody else may write, that this process can read."""
    for path in ("/etc/passwd", os.path.realpath(sys.executable)):
        try:
            info = os.stat(path)
        except OSError:
            continue
        if info.st_uid == 0 and not info.st_mode & 0o022 and os.access(path, os.R_OK):
            return path
    return None


def _residency_beyond_eof(path: str, uid: int | None) -> tuple[list[bool], int]:
    """Open ``path`` read-only, map it one page longer than the file and, as ``uid``
    (the check uses the caller's credentials at the time of mincore), ask mincore; the last
    page lies beyond EOF, so it is resident only if mincore pretends."""
    fd = os.open(path, os.O_RDONLY)
    if uid is not None:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    try:
        size = os.fstat(fd).st_size
        length = -(-size // PAGE) * PAGE + PAGE
        addr = libc.mmap(0, length, C.PROT_READ, C.MAP_PRIVATE, fd, 0)
        return _resident(addr + length - PAGE, PAGE), os.geteuid()
    finally:
        os.close(fd)


@semantic("mincore.file.unwritable_file_all_resident",
          "For a file mapping whose file the caller neither owns nor could open for writing (and without "
          "CAP_FOWNER), mincore reveals no page-cache state: every page reads resident, even one beyond EOF "
          "(checked as uid 65534 on a root-owned file)",
          source="Linux mm/mincore.c can_do_mincore (since 5.0: side-channel fix); mincore(2)", tier="linux")
@requires("feature:MINCORE_WRITABLE_FILES_ONLY")
def test_unwritable_file_reads_all_resident(memsys_env: Environment, run_in_child: RunInChild) -> None:
    path = _foreign_file()
    if path is None:
        pytest.skip("needs:a root-owned file not writable by group or others")
    if memsys_env.identity.euid == 0:
        if not (memsys_env.capabilities.has("CAP_SETUID") and memsys_env.capabilities.has("CAP_SETGID")):
            pytest.skip("needs:CAP_SETUID+CAP_SETGID (to run a child as uid 65534)")
        uid: int | None = OTHER_UID
    elif memsys_env.capabilities.has("CAP_FOWNER"):
        pytest.skip("needs:without-CAP_FOWNER (it lets mincore report any file's page cache)")
    else:
        uid = None
    resident, euid = run_in_child(_residency_beyond_eof, path, uid).result()
    assert euid != 0
    assert resident == [True]


@semantic("mincore.file.own_file_beyond_eof_not_resident",
          "For a file the caller owns, the same observation tells the truth: a page beyond EOF is not "
          "resident (the control of mincore.file.unwritable_file_all_resident)",
          source="Linux mm/mincore.c can_do_mincore (owner or writer sees the page cache)", tier="linux")
def test_own_file_beyond_eof_not_resident(mapped_file: MappedFile, run_in_child: RunInChild) -> None:
    region = mapped_file(b"x")
    os.chmod(region.path, 0o444)  # owned, and not even writable by the owner: ownership is enough
    resident, _euid = run_in_child(_residency_beyond_eof, str(region.path), None).result()
    assert resident == [False]
