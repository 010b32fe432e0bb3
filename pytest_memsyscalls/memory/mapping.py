"""Mappings that clean up after themselves, and an arena for MAP_FIXED.

``Mapping`` wraps one mmap'd range with methods that each go through the libc
layer, so every failure is an errno-faithful ``OSError``. ``Arena`` reserves a
PROT_NONE range and hands out MAP_FIXED mappings inside it: a test may replace
pages there freely without ever touching memory the interpreter owns, because
every page of the arena is either ours or known to be a hole we made.
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from ..kernel import constants as C
from ..kernel import libc, procfs
from ..kernel.libc import PAGE_SIZE
from ..kernel.probe import Fault
from ..kernel.probe import read_value as _probe_read_value
from ..kernel.probe import write as _probe_write

_M = TypeVar("_M", bound="Mapping")


def pages_to_bytes(call: str, pages: object) -> int:
    number = libc._integer(call, "pages", pages)
    if number <= 0:
        raise ValueError(f"{call}: pages must be a positive number of pages, got {number}")
    if number > (1 << 36) // PAGE_SIZE * 1024:
        raise ValueError(f"{call}: {number} pages is more address space than any test needs")
    return number * PAGE_SIZE


@dataclass(frozen=True)
class VmaView:
    """What /proc/self/maps and smaps say about one VMA of a mapping."""

    maps: procfs.MapsEntry
    smaps: procfs.SmapsEntry | None

    @property
    def vmflags(self) -> frozenset[str]:
        return self.smaps.vmflags if self.smaps else frozenset()


class _PageRange:
    """What a Mapping and an Arena both are: ``length`` bytes of pages from ``addr``."""

    addr: int
    length: int

    @property
    def pages(self) -> int:
        return self.length // PAGE_SIZE

    @property
    def end(self) -> int:
        return self.addr + self.length


class Mapping(_PageRange):
    """One mapped range. ``unmap()`` is idempotent and runs at fixture teardown."""

    def __init__(self, addr: int, length: int, prot: int, flags: int, fd: int = -1, offset: int = 0,
                 *, owner: Arena | None = None) -> None:
        self.addr = addr
        self.length = length
        self.prot = prot
        self.flags = flags
        self.fd = fd
        self.offset = offset
        self._owner = owner
        self.unmapped = False
        # other ranges this mapping made and unmaps with itself: the new ranges of an
        # mremap(MREMAP_DONTUNMAP), (addr, length) each
        self.also_owned: list[tuple[int, int]] = []

    @classmethod
    def create(cls: type[_M], pages: int = 1, prot: int = C.PROT_READ | C.PROT_WRITE,
               flags: int = C.MAP_PRIVATE | C.MAP_ANONYMOUS, fd: int = -1, offset: int = 0,
               addr: int = 0) -> _M:
        length = pages_to_bytes("mapped_pages", pages)
        if addr and not flags & (C.MAP_FIXED | C.MAP_FIXED_NOREPLACE):
            pass  # a hint: the kernel may place it elsewhere
        elif flags & C.MAP_FIXED and not libc.owned.covers(addr, length):
            raise ValueError(
                f"mapped_pages: MAP_FIXED at {addr:#x} would replace memory this package does not own; "
                "use the arena fixture for MAP_FIXED")
        result = libc.mmap(addr, length, prot, flags, fd, offset)
        return cls(result, length, prot, flags, fd, offset)

    def __repr__(self) -> str:
        state = "unmapped" if self.unmapped else C.prot_name(self.prot)
        return f"<Mapping {self.addr:#x}+{self.length:#x} ({self.pages} pages) {state}>"

    def __enter__(self) -> Mapping:
        return self

    def __exit__(self, *exc: object) -> None:
        self.unmap()

    def page(self, index: int) -> int:
        """The address of page ``index`` (negative counts from the end)."""
        if not -self.pages <= index < self.pages:
            raise IndexError(f"page {index} is outside this {self.pages}-page mapping")
        return self.addr + (index % self.pages) * PAGE_SIZE

    def _check_range(self, call: str, offset: int, length: int | None) -> tuple[int, int]:
        length = self.length - offset if length is None else length
        if offset < 0 or length < 0 or offset + length > self.length:
            raise ValueError(f"{call}: range +{offset:#x} length {length:#x} is outside {self!r}")
        self._check_live(call)
        return self.addr + offset, length

    def _check_live(self, call: str) -> None:
        if self.unmapped:
            raise ValueError(f"{call}: {self!r} is already unmapped")

    @property
    def buffer(self) -> memoryview:
        """A writable view of the bytes. Touching a page the protection forbids crashes
        the process: use read()/write() for anything that may fault."""
        self._check_live("buffer")
        return memoryview((ctypes.c_char * self.length).from_address(self.addr)).cast("B")

    def read(self, index: int) -> int | Fault:
        """The byte at offset ``index``, or the Fault that reading it raised."""
        self._check_live("read")
        fault, value = _probe_read_value(self._address_of(index))
        return fault if fault is not None else int(value or 0)

    def write(self, index: int, value: int) -> Fault | None:
        """Store one byte at offset ``index``; the Fault if the store faulted."""
        self._check_live("write")
        return _probe_write(self._address_of(index), value)

    def _address_of(self, index: int) -> int:
        if not 0 <= index < self.length:
            raise IndexError(f"offset {index} is outside {self!r}")
        return self.addr + index

    def protect(self, prot: int, offset: int = 0, length: int | None = None) -> None:
        start, size = self._check_range("protect", offset, length)
        libc.mprotect(start, size, prot)
        if offset == 0 and size == self.length:
            self.prot = prot

    def advise(self, advice: int, offset: int = 0, length: int | None = None) -> None:
        start, size = self._check_range("advise", offset, length)
        libc.madvise(start, size, advice)

    def lock(self, flags: int = 0, offset: int = 0, length: int | None = None) -> None:
        """mlock, or mlock2 when flags (MLOCK_ONFAULT) are given."""
        start, size = self._check_range("lock", offset, length)
        if flags:
            libc.mlock2(start, size, flags)
        else:
            libc.mlock(start, size)

    def unlock(self, offset: int = 0, length: int | None = None) -> None:
        start, size = self._check_range("unlock", offset, length)
        libc.munlock(start, size)

    def sync(self, flags: int = C.MS_SYNC, offset: int = 0, length: int | None = None) -> None:
        start, size = self._check_range("sync", offset, length)
        libc.msync(start, size, flags)

    def remap(self, new_length: int, flags: int = C.MREMAP_MAYMOVE, new_addr: int = 0) -> int:
        """mremap this mapping; follows it to its new address and length.

        With MREMAP_DONTUNMAP the old range stays mapped (emptied) and the contents
        move to a new range: the Mapping stays on the old range, records the new one
        in ``also_owned`` and unmaps it too in ``unmap()``. Returns mremap's result."""
        self._check_live("remap")
        if self._owner is not None:
            raise ValueError("remap: mappings inside an arena cannot move; map a new one with arena.map")
        result = libc.mremap(self.addr, self.length, new_length, flags, new_addr)
        if flags & C.MREMAP_DONTUNMAP:
            self.also_owned.append((result, new_length))
        else:
            self.addr, self.length = result, new_length
        return result

    def residency(self) -> list[bool]:
        """mincore: for each page, whether it is resident."""
        self._check_live("residency")
        return [bool(byte & 1) for byte in libc.mincore(self.addr, self.length)]

    def vma(self) -> list[VmaView]:
        """The /proc/self/maps and smaps entries that overlap this mapping."""
        self._check_live("vma")
        return [VmaView(entry.maps, entry) for entry in procfs.smaps_overlapping(self.addr, self.end)]

    def unmap(self) -> None:
        """munmap (inside an arena: give the pages back to the PROT_NONE reservation)."""
        if self.unmapped:
            return
        self.unmapped = True
        if self._owner is not None:
            self._owner._release(self.addr, self.length)
            return
        first: OSError | None = None
        for addr, length in [(self.addr, self.length), *self.also_owned]:
            try:
                libc.munmap(addr, length)
            except OSError as error:  # still unmap the others
                first = first or error
        self.also_owned = []
        if first is not None:
            raise first


class FileMapping(Mapping):
    """A Mapping of a file that also names the file (what the ``mapped_file`` fixture
    returns); ``path`` is set by whoever made it."""

    path: Path


class Arena(_PageRange):
    """A PROT_NONE reservation inside which MAP_FIXED is safe.

    ``map(page, pages, ...)`` places a mapping at a page of the arena with
    MAP_FIXED; ``hole(page, pages)`` unmaps pages, and a later ``map`` over a hole
    first makes sure nobody else put memory there in the meantime.

    The arena is placed with free address space above it, twice its size. The
    kernel gives a mapping without an address the highest free range it fits in, so
    one that another thread of the process makes while a test relies on a hole being
    unmapped lands there, not in the hole (without it, an 8 kB mapping made during
    ``mlock.errors.unmapped`` took its hole, and mlock succeeded: 2 in ~50 suite runs).

    A guard page stays mapped on each side (PROT_NONE, shared anonymous: it never
    merges with a private mapping at the arena's first or last page). Without them a
    hole at an edge page joined the free address space next to the arena, and a
    mapping too big for the space above (2 MB, made by another thread) was put at the
    top of the joined range, in the hole: ``mlock.errors.unmapped`` failed that way too.
    """

    FREE_ABOVE = 2  # times the arena's length: anything that fits in a hole fits above first
    GUARD = PAGE_SIZE  # mapped on each side, so that holes at the edges stay bounded

    def __init__(self, pages: int = 64) -> None:
        self.length = pages_to_bytes("arena", pages)
        free = self.FREE_ABOVE * self.length
        low_guard = libc.mmap(0, self.footprint, C.PROT_NONE, C.MAP_PRIVATE | C.MAP_ANONYMOUS | C.MAP_NORESERVE)
        self.addr = low_guard + self.GUARD
        libc.munmap(self.end + self.GUARD, free)
        for guard in (low_guard, self.end):
            libc.mmap(guard, self.GUARD, C.PROT_NONE, C.MAP_SHARED | C.MAP_ANONYMOUS | C.MAP_FIXED)
        self._holes: set[int] = set()  # page indexes we unmapped
        self.closed = False

    @property
    def footprint(self) -> int:
        """The address space an arena reserves when it is made: its pages, the two guard
        pages and the free space above (which it gives back at once)."""
        return self.length + 2 * self.GUARD + self.FREE_ABOVE * self.length

    def __repr__(self) -> str:
        return f"<Arena {self.addr:#x}+{self.length:#x} ({self.pages} pages)>"

    def __enter__(self) -> Arena:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def page(self, index: int) -> int:
        """The address of arena page ``index``, 0 <= index < pages (``end`` is the
        address just past the arena)."""
        if not 0 <= index < self.pages:
            raise IndexError(f"page {index} is outside this {self.pages}-page arena")
        return self.addr + index * PAGE_SIZE

    def contains(self, addr: int, length: int = 1) -> bool:
        return self.addr <= addr and addr + length <= self.end

    def _indexes(self, call: str, page: int, pages: int) -> range:
        if page < 0 or pages <= 0 or page + pages > self.pages:
            raise ValueError(f"{call}: pages {page}..{page + pages - 1} are outside {self!r}")
        if self.closed:
            raise ValueError(f"{call}: {self!r} is closed")
        return range(page, page + pages)

    def map(self, page: int, pages: int = 1, prot: int = C.PROT_READ | C.PROT_WRITE,
            flags: int = C.MAP_PRIVATE | C.MAP_ANONYMOUS, fd: int = -1, offset: int = 0) -> Mapping:
        """mmap with MAP_FIXED at arena page ``page``."""
        indexes = self._indexes("arena.map", page, pages)
        if flags & C.MAP_FIXED_NOREPLACE:
            raise ValueError("arena.map: the arena places mappings itself; drop MAP_FIXED_NOREPLACE")
        start, length = self.page(page), pages * PAGE_SIZE
        taken = self._holes.intersection(indexes)
        if taken:
            self._check_holes_free(sorted(taken))
        addr = libc.mmap(start, length, prot, flags | C.MAP_FIXED, fd, offset)
        self._holes.difference_update(indexes)
        return Mapping(addr, length, prot, flags | C.MAP_FIXED, fd, offset, owner=self)

    def _check_holes_free(self, holes: list[int]) -> None:
        """A hole we made may have been taken by someone else since (the interpreter maps
        memory too): MAP_FIXED must not replace it. Asked page by page of the kernel
        (msync's ENOMEM, one syscall per hole page) rather than with
        MAP_FIXED_NOREPLACE, which kernels before 4.17 and gVisor treat as a hint;
        /proc/self/maps is read only to name the intruder."""
        for index in holes:
            addr = self.page(index)
            if libc.is_mapped(addr) and not libc.owned.covers(addr, 1):
                intruder = procfs.vma_at(addr)
                where = f"{intruder.start:#x}-{intruder.end:#x} ({intruder.path or 'anonymous'})" if intruder \
                    else f"{addr:#x}"
                raise OSError(17, os.strerror(17), f"arena.map: {where} was mapped into an arena hole by someone else")

    def hole(self, page: int, pages: int = 1) -> None:
        """munmap arena pages, leaving a hole (tests of unmapped memory use it)."""
        indexes = self._indexes("arena.hole", page, pages)
        libc.munmap(self.page(page), pages * PAGE_SIZE)
        self._holes.update(indexes)

    def refill(self, page: int, pages: int = 1) -> None:
        """Put the PROT_NONE reservation back over the holes among these pages
        (MAP_FIXED_NOREPLACE, so a foreign mapping in a hole fails with EEXIST instead
        of being replaced); afterwards MAP_FIXED over the range is safe again."""
        indexes = self._indexes("arena.refill", page, pages)
        run: list[int] = []
        for index in [*indexes, None]:
            if index is not None and index in self._holes:
                run.append(index)
            elif run:
                self.map(run[0], len(run), C.PROT_NONE, C.MAP_PRIVATE | C.MAP_ANONYMOUS | C.MAP_NORESERVE)
                run = []

    def remap(self, page: int, pages: int, new_pages: int, new_page: int | None = None) -> int:
        """mremap arena pages and keep the arena's bookkeeping right.

        Without ``new_page``: in place (flags 0), so it shrinks, or grows only into
        arena holes (the kernel says ENOMEM when they are occupied). With ``new_page``:
        MREMAP_MAYMOVE|MREMAP_FIXED to that arena page, after refilling holes in the
        destination so the move replaces nothing but arena memory. Pages the call
        gives up become holes. Returns what mremap returned."""
        old = set(self._indexes("arena.remap", page, pages))
        if new_page is None:
            self._indexes("arena.remap", page, max(pages, new_pages))
            result = libc.mremap(self.page(page), pages * PAGE_SIZE, new_pages * PAGE_SIZE, 0)
            self._holes.difference_update(range(page, page + new_pages))
            self._holes.update(range(page + new_pages, page + pages))
            return result
        new = set(self._indexes("arena.remap", new_page, new_pages))
        self.refill(new_page, new_pages)
        result = libc.mremap(self.page(page), pages * PAGE_SIZE, new_pages * PAGE_SIZE,
                             C.MREMAP_MAYMOVE | C.MREMAP_FIXED, self.page(new_page))
        self._holes.update(old - new)
        return result

    def _release(self, addr: int, length: int) -> None:
        """Put PROT_NONE reservation back over pages a Mapping gave up."""
        if self.closed:
            return
        libc.mmap(addr, length, C.PROT_NONE, C.MAP_PRIVATE | C.MAP_ANONYMOUS | C.MAP_NORESERVE | C.MAP_FIXED)

    def close(self) -> None:
        """Unmap every page of the arena that is still ours; leave holes alone."""
        if self.closed:
            return
        self.closed = True
        libc.munmap(self.addr - self.GUARD, self.GUARD)
        libc.munmap(self.end, self.GUARD)
        run_start: int | None = None
        for index in range(self.pages + 1):
            ours = index < self.pages and index not in self._holes
            if ours and run_start is None:
                run_start = index
            elif not ours and run_start is not None:
                libc.munmap(self.page(run_start), (index - run_start) * PAGE_SIZE)
                run_start = None
