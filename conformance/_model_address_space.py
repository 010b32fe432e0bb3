"""Conformance by model: random programs of mmap(MAP_FIXED), munmap, mprotect, mremap,
madvise(MADV_DONTNEED), msync, writes, file writes and fork, run for real inside an
arena, against a pure-Python model of every page of the arena.

The model keeps, per page: mapped or a hole; protection; backing (private anonymous,
shared anonymous, shared file, private file with or without its own copy); the first
byte of its contents; and which call last decided each of these (the semantic an
assertion names when the kernel disagrees). After every step the pages the step
touched, plus one rotating page, are read, written and executed through the fault
probe as the model predicts (signal, si_code, si_addr, contents), and the arena's
range of /proc/self/maps must show exactly the model's pages and permissions
(the union of pages: VMA merging is not modelled, only what each page is).

Environment facts the model needs are probed on scratch objects before any program
runs: whether an execute-only page is readable (x86 protection keys make it fault
with SEGV_PKUERR), and whether a memfd may be mapped PROT_EXEC.

The test that runs it is test_model_address_space.py.
"""

from __future__ import annotations

import errno
import fcntl
import os
import signal
import struct
from dataclasses import dataclass
from typing import Any, NamedTuple

from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from pytest_memsyscalls.kernel import constants as C
from pytest_memsyscalls.kernel import libc, probe, procfs
from pytest_memsyscalls.kernel.libc import PAGE_SIZE as P
from pytest_memsyscalls.kernel.probe import Fault
from pytest_memsyscalls.memory.child import run_in_child
from pytest_memsyscalls.memory.mapping import Arena
from pytest_memsyscalls.memory.strategies import InvalidCall, invalid_calls, msync_flags, protections

N = 12  # arena pages the model covers
FILE_PAGES = 6  # the memfd's size: mappings at higher offsets reach past its end (SIGBUS)
MAX_RUN = 4  # pages one call touches at most
FORKS_PER_PROGRAM = 1  # fork costs milliseconds; a step costs ~0.3 ms
RET = probe.RET_INSTRUCTION[0] if len(probe.RET_INSTRUCTION) == 1 else None  # one-byte ret (x86)

ANON_PRIVATE, ANON_SHARED, FILE_SHARED, FILE_PRIVATE = "anon_private", "anon_shared", "file_shared", "file_private"
KINDS = (ANON_PRIVATE, ANON_SHARED, FILE_SHARED, FILE_PRIVATE)
KIND_FLAGS = {ANON_PRIVATE: C.MAP_PRIVATE | C.MAP_ANONYMOUS, ANON_SHARED: C.MAP_SHARED | C.MAP_ANONYMOUS,
              FILE_SHARED: C.MAP_SHARED, FILE_PRIVATE: C.MAP_PRIVATE}
PROT_WORDS = {0: "none", 1: "r", 2: "w", 3: "rw", 4: "x", 5: "rx", 6: "wx", 7: "rwx"}


# --- environment probes (scratch objects, before any assertion) ----------------------------

def _probe_exec_only() -> tuple[int | None, int | None]:
    """si_code of reading and of writing a PROT_EXEC-only page; None when the read works.
    x86 with protection keys gives such pages an execute-only key: SEGV_PKUERR."""
    addr = libc.mmap(0, P, C.PROT_EXEC, C.MAP_PRIVATE | C.MAP_ANONYMOUS)
    try:
        read, write = probe.read(addr), probe.write(addr, 0)
        return (read.code if read else None), (write.code if write else C.SEGV_ACCERR)
    finally:
        libc.munmap(addr, P)


def _probe_memfd_exec() -> bool:
    """Whether a memfd may be mapped PROT_EXEC (vm.memfd_noexec or a noexec policy forbids it)."""
    fd = os.memfd_create("memsys-probe", os.MFD_CLOEXEC)
    try:
        os.ftruncate(fd, P)
        addr = libc.mmap(0, P, C.PROT_READ | C.PROT_EXEC, C.MAP_SHARED, fd)
        libc.munmap(addr, P)
        return True
    except OSError as error:
        if error.errno in (errno.EPERM, errno.EACCES):
            return False
        raise
    finally:
        os.close(fd)


EXEC_ONLY_READ_CODE, EXEC_ONLY_WRITE_CODE = _probe_exec_only()
MEMFD_EXEC = _probe_memfd_exec()


def _probe_exec_past_eof() -> int:
    """The signal of an instruction fetch from a readable, non-executable page past the end
    of its file. x86 Linux faults a not-present page in before it looks at VM_EXEC (a fetch
    counts as a read), so the page-in fails first: SIGBUS, not SIGSEGV/SEGV_ACCERR."""
    fd = os.memfd_create("memsys-probe", os.MFD_CLOEXEC)
    try:
        addr = libc.mmap(0, P, C.PROT_READ, C.MAP_SHARED, fd)  # the memfd is empty: past its end
        try:
            fault = probe.execute(addr)
        finally:
            libc.munmap(addr, P)
    finally:
        os.close(fd)
    return fault.signo if fault else 0


EXEC_PAST_EOF_SIGNAL = _probe_exec_past_eof()


# --- the /proc/self/maps oracle ----------------------------------------------------------

_PROCMAP_QUERY_SIZE = 104
_PROCMAP_QUERY = (3 << 30) | (_PROCMAP_QUERY_SIZE << 16) | (ord("f") << 8) | 17  # _IOWR('f', 17, ...)
_COVERING_OR_NEXT = 0x10
_QUERY_HEAD = struct.Struct("QQQ")  # size, query_flags, query_addr
_QUERY_ANSWER = struct.Struct("QQQQQQ")  # vma_start, vma_end, vma_flags, page_size, vma_offset, inode
_QUERY_ZEROS = bytes(_PROCMAP_QUERY_SIZE - 24)


class Vma(NamedTuple):  # a tuple: built for every VMA after every step
    start: int
    end: int
    perms: str  # "rwxp" as in /proc/self/maps
    offset: int
    inode: int


#: PROCMAP_QUERY's vma_flags (read 1, write 2, exec 4, shared 8) as /proc/self/maps' "rwxp"
_QUERY_PERMS = tuple("".join(c if flags & bit else "-" for c, bit in (("r", 1), ("w", 2), ("x", 4)))
                     + ("s" if flags & 8 else "p") for flags in range(16))


class MapsOracle:
    """The VMAs overlapping a range, from /proc/self/maps: through its PROCMAP_QUERY
    ioctl (Linux 6.11+, ~10 µs a VMA) when a probe shows it works, else the text."""

    def __init__(self) -> None:
        self.buffer = bytearray(_PROCMAP_QUERY_SIZE)
        self.fd = os.open("/proc/self/maps", os.O_RDONLY | os.O_CLOEXEC)
        self.ioctl = os.environ.get("MEMSYS_MODEL_MAPS") != "text" and self._query_works()

    def close(self) -> None:
        os.close(self.fd)

    def _query(self, addr: int) -> Vma | None:
        buf = self.buffer
        _QUERY_HEAD.pack_into(buf, 0, _PROCMAP_QUERY_SIZE, _COVERING_OR_NEXT, addr)
        buf[24:] = _QUERY_ZEROS  # the kernel reads the name/build-id sizes and addresses too
        try:
            fcntl.ioctl(self.fd, _PROCMAP_QUERY, buf, True)
        except FileNotFoundError:  # ENOENT: no VMA at or after addr
            return None
        start, end, flags, _, offset, inode = _QUERY_ANSWER.unpack_from(buf, 24)
        return Vma(start, end, _QUERY_PERMS[flags & 15], offset, inode)

    def _query_works(self) -> bool:
        try:
            return self._query(0) is not None
        except OSError:  # ENOTTY/EINVAL: no PROCMAP_QUERY (older kernels, gVisor)
            return False

    def vmas(self, lo: int, hi: int, *, text: bool = False) -> list[Vma]:
        if self.ioctl and not text:
            found, addr = [], lo
            while addr < hi and (vma := self._query(addr)) is not None and vma.start < hi:
                found.append(vma)
                addr = vma.end
            return found
        return [Vma(e.start, e.end, e.perms, e.offset, e.inode) for e in procfs.maps_overlapping(lo, hi)]


# --- the model ----------------------------------------------------------------------------

@dataclass
class Backing:
    """A shared object behind pages: the memfd, or one MAP_SHARED|MAP_ANONYMOUS object."""

    size: int  # pages; a page at or past it raises SIGBUS
    data: list[int]
    why: list[str]


@dataclass
class Page:
    """What the model says about one mapped page (holes are None)."""

    prot: int
    kind: str
    obj: Backing | None  # None for private anonymous
    idx: int  # page index in obj
    own: int | None  # a private copy's first byte (private anonymous pages always have one)
    vma: int  # pages with the same id lie in one VMA
    origin: str  # the call that set prot and backing: mmap, mprotect, mremap, arena
    why: str = ""  # the semantic that decided ``own``

    def copy(self, **changes: Any) -> Page:
        return Page(**{**self.__dict__, **changes})


#: /proc/self/maps' "rwx" part for each protection (checked after every step: a table, not a loop)
PERMS = {prot: "".join(c if prot & bit else "-" for c, bit in (("r", C.PROT_READ), ("w", C.PROT_WRITE),
                                                                 ("x", C.PROT_EXEC)))
         for prot in range(8)}


def prot_id(prot: int) -> str:
    return "prot_" + PROT_WORDS[prot & 7]


class AddressSpaceMachine(RuleBasedStateMachine):
    """Drives real calls in a fresh Arena per program and checks them against the model."""

    PAGE = st.integers(0, N - 1)
    COUNT = st.integers(1, MAX_RUN)

    def __init__(self) -> None:
        super().__init__()
        self.arena: Arena | None = None
        self.maps: MapsOracle | None = None
        self.fd = -1
        self.pages: list[Page | None] = []
        self.touched: set[int] = set()
        self.steps = 0
        self.step = ""  # the semantic of the last step, named by every invariant failure
        self.forks = 0
        self.next_vma = 1

    # ---- set-up and tear-down ----

    @initialize()
    def start(self) -> None:
        self.arena = Arena(N)
        self.maps = MapsOracle()
        self.fd = os.memfd_create("memsys-model", os.MFD_CLOEXEC)
        self.inode = os.fstat(self.fd).st_ino
        initial = [(0x10 + i) if RET is None or i % 2 else RET for i in range(FILE_PAGES)]
        os.ftruncate(self.fd, FILE_PAGES * P)
        for i, byte in enumerate(initial):
            os.pwrite(self.fd, bytes([byte]), i * P)
        self.file = Backing(FILE_PAGES, initial, ["pwrite.file_contents"] * FILE_PAGES)
        self.pages = [Page(C.PROT_NONE, ANON_PRIVATE, None, 0, 0, 0, "arena", "mmap.anonymous.zero_filled")
                      for _ in range(N)]
        self.touched = set(range(N))
        self.step = "arena.reserved_prot_none"

    def teardown(self) -> None:
        try:
            if self.maps is not None and self.arena is not None and not self.arena.closed:
                self.check_maps(text=True)
        finally:
            if self.arena is not None:
                self.arena.close()
            if self.maps is not None:
                self.maps.close()
            if self.fd >= 0:
                os.close(self.fd)

    # ---- model helpers ----

    def addr(self, page: int) -> int:
        assert self.arena is not None
        return self.arena.addr + page * P

    def new_vma(self) -> int:
        self.next_vma += 1
        return self.next_vma

    def clip(self, page: int, pages: int) -> range:
        return range(page, min(page + pages, N))

    def reservation(self, vma: int) -> Page:
        """What arena.refill puts into a hole: the arena's PROT_NONE reservation."""
        return Page(C.PROT_NONE, ANON_PRIVATE, None, 0, 0, vma, "arena", "mmap.anonymous.zero_filled")

    def refill_model(self, span: range) -> None:
        vma = self.new_vma()
        for i in span:
            if self.pages[i] is None:
                self.pages[i] = self.reservation(vma)

    def content(self, pg: Page) -> tuple[int | None, str]:
        """(first byte, semantic) of a page; None when it lies past the end of its object."""
        if pg.own is not None:
            return pg.own, pg.why
        assert pg.obj is not None
        if pg.idx >= pg.obj.size:
            return None, f"{pg.origin}.beyond_object.sigbus"
        return pg.obj.data[pg.idx], pg.obj.why[pg.idx]

    def expect(self, page: int, access: str) -> tuple[Fault | None, str]:
        """The fault an access ('r', 'w', 'x') to byte 0 of a page raises, and why."""
        addr = self.addr(page)
        pg = self.pages[page]
        if pg is None:
            return Fault(signal.SIGSEGV, C.SEGV_MAPERR, addr), f"munmap.unmapped.{access}_faults_maperr"
        prot = pg.prot
        ident = f"{pg.origin}.{prot_id(prot)}"
        if access == "r":
            allowed = bool(prot & (C.PROT_READ | C.PROT_WRITE)) or (
                bool(prot & C.PROT_EXEC) and EXEC_ONLY_READ_CODE is None)
            code = EXEC_ONLY_READ_CODE if prot == C.PROT_EXEC else C.SEGV_ACCERR
        elif access == "w":
            allowed = bool(prot & C.PROT_WRITE)
            code = EXEC_ONLY_WRITE_CODE if prot == C.PROT_EXEC else C.SEGV_ACCERR
        else:
            allowed, code = bool(prot & C.PROT_EXEC), C.SEGV_ACCERR
            if (not allowed and prot and EXEC_PAST_EOF_SIGNAL == signal.SIGBUS and pg.own is None
                    and pg.obj is not None and pg.idx >= pg.obj.size):
                return Fault(signal.SIGBUS, C.BUS_ADRERR, addr), f"{ident}.x_past_eof_sigbus_before_prot_check"
        if not allowed:
            return Fault(signal.SIGSEGV, code or C.SEGV_ACCERR, addr), f"{ident}.{access}_faults"
        if pg.own is None and pg.obj is not None and pg.idx >= pg.obj.size:
            return Fault(signal.SIGBUS, C.BUS_ADRERR, addr), f"{pg.origin}.beyond_object.{access}_sigbus"
        return None, f"{ident}.{access}_succeeds"

    def perms(self, pg: Page) -> str:
        return PERMS[pg.prot & 7] + ("s" if pg.kind in (ANON_SHARED, FILE_SHARED) else "p")

    def store(self, pg: Page, value: int, why: str) -> None:
        """The model of a successful one-byte store through a page."""
        if pg.kind in (ANON_SHARED, FILE_SHARED):
            assert pg.obj is not None
            pg.obj.data[pg.idx], pg.obj.why[pg.idx] = value, why
        else:  # private: the write makes (or updates) the private copy
            pg.own, pg.why = value, why

    def outcome(self, call: Any, *args: Any) -> int | None:
        """Run a libc call: None on success, the errno on failure."""
        try:
            call(*args)
        except OSError as error:
            return error.errno
        return None

    def dump(self) -> str:
        assert self.maps is not None and self.arena is not None
        lines = [f"  {v.start:#x}-{v.end:#x} {v.perms} off={v.offset:#x} ino={v.inode}"
                 for v in self.maps.vmas(self.arena.addr, self.arena.end)]
        model = " ".join("." if pg is None else self.perms(pg)[:3] for pg in self.pages)
        return (f"\nlast step: {self.step}\narena {self.arena.addr:#x}, model pages: {model}\n"
                "kernel VMAs in the arena:\n" + "\n".join(lines))

    # ---- rules ----

    @rule(page=PAGE, pages=COUNT, prot=protections(), kind=st.sampled_from(KINDS),
          offset=st.integers(0, FILE_PAGES - 1))
    def mmap_fixed(self, page: int, pages: int, prot: int, kind: str, offset: int) -> None:
        """mmap(MAP_FIXED) replaces whatever was there (mmap(2) MAP_FIXED)."""
        assert self.arena is not None
        span = self.clip(page, pages)
        if kind in (FILE_SHARED, FILE_PRIVATE) and not MEMFD_EXEC:
            prot &= ~C.PROT_EXEC
        holes = [self.pages[i] is None for i in span]
        if any(holes) and not all(holes):
            self.arena.refill(page, len(span))
            self.refill_model(span)
        if kind in (ANON_PRIVATE, ANON_SHARED):
            offset = 0
        fd = self.fd if kind in (FILE_SHARED, FILE_PRIVATE) else -1
        self.arena.map(page, len(span), prot, KIND_FLAGS[kind], fd, offset * P)
        obj = {ANON_PRIVATE: None, ANON_SHARED: Backing(len(span), [0] * len(span),
                                                        ["mmap.shared_anonymous.zero_filled"] * len(span)),
               FILE_SHARED: self.file, FILE_PRIVATE: self.file}[kind]
        vma = self.new_vma()
        for j, i in enumerate(span):
            own = 0 if kind == ANON_PRIVATE else None
            self.pages[i] = Page(prot, kind, obj, offset + j, own, vma, "mmap",
                                 "mmap.anonymous.zero_filled" if own == 0 else "")
        self.touched.update((span[0], span[-1]))
        self.step = "mmap.fixed.replaces_range"

    @rule(page=PAGE, pages=COUNT)
    def munmap(self, page: int, pages: int) -> None:
        """munmap leaves a hole; unmapping a hole is not an error (munmap(2))."""
        assert self.arena is not None
        span = self.clip(page, pages)
        self.arena.hole(page, len(span))
        for i in span:
            self.pages[i] = None
        self.touched.update((span[0], span[-1]))
        self.step = "munmap.range.unmapped"

    @rule(page=PAGE, pages=COUNT, prot=protections())
    def mprotect(self, page: int, pages: int, prot: int) -> None:
        """mprotect changes each page's protection; a hole in the range is ENOMEM, and Linux
        has already changed the pages before the hole (mprotect(2) ERRORS; mm/mprotect.c)."""
        span = self.clip(page, pages)
        if not MEMFD_EXEC and prot & C.PROT_EXEC and any(
                pg is not None and pg.kind in (FILE_SHARED, FILE_PRIVATE) for pg in self.pages[span[0]:span[-1] + 1]):
            prot &= ~C.PROT_EXEC
        first_hole = next((i for i in span if self.pages[i] is None), None)
        expected = None if first_hole is None else errno.ENOMEM
        got = self.outcome(libc.mprotect, self.addr(page), len(span) * P, prot)
        ident = "mprotect.unmapped_in_range.enomem" if expected else "mprotect.mapped_range.succeeds"
        assert got == expected, (f"{ident}: mprotect(page {page}, {len(span)} pages, {C.prot_name(prot)}) gave "
                                 f"{errno.errorcode.get(got or 0, 'success')}; the model predicts "
                                 f"{errno.errorcode.get(expected or 0, 'success')}{self.dump()}")
        # A split VMA's pages stay apart from other VMAs' pages: mprotect merges only
        # compatible neighbours (mm/mprotect.c), and the arena's MAP_NORESERVE
        # reservation is not compatible with an accounted mapping of the same protection.
        renamed: dict[int, int] = {}
        for i in span:
            if i == first_hole:
                break
            pg = self.pages[i]
            assert pg is not None
            self.model_mprotect(pg, prot, renamed.setdefault(pg.vma, self.new_vma()))
        self.touched.update((span[0], span[-1]))
        self.step = ident if expected else "mprotect.mapped_range.changes_protection"

    def model_mprotect(self, pg: Page, prot: int, vma: int) -> None:
        pg.prot, pg.origin, pg.vma = prot, "mprotect", vma

    def run_of(self, page: int, want: int) -> range:
        """Up to ``want`` pages from ``page`` with one VMA id: inside one kernel VMA."""
        pg = self.pages[page]
        assert pg is not None
        end = page + 1
        while end < min(page + want, N) and (nxt := self.pages[end]) is not None and nxt.vma == pg.vma:
            end += 1
        return range(page, end)

    def grown(self, pg: Page, j: int, vma: int) -> Page:
        """The j-th page past the end of ``pg``'s range when mremap grows it."""
        if pg.kind == ANON_PRIVATE:
            return pg.copy(own=0, vma=vma, origin="mremap", why="mremap.grow.anonymous_zero_filled")
        return pg.copy(idx=pg.idx + j, own=None, vma=vma, origin="mremap", why="")

    @rule(page=PAGE, want=COUNT, new_pages=st.integers(1, MAX_RUN + 1))
    def mremap_in_place(self, page: int, want: int, new_pages: int) -> None:
        """mremap without MREMAP_MAYMOVE: shrinking unmaps the tail; growing needs free pages
        after the range (else ENOMEM); an old_address with no mapping is EFAULT (mremap(2))."""
        assert self.arena is not None
        if self.pages[page] is None:
            if page + 2 > N:
                return
            got = self.outcome(self.arena.remap, page, 1, 2)
            assert got == errno.EFAULT, (f"mremap.unmapped.efault: growing a hole at page {page} gave "
                                         f"{errno.errorcode.get(got or 0, 'success')}{self.dump()}")
            self.touched.add(page)
            return
        run = self.run_of(page, want)
        new_pages = min(new_pages, N - page)
        grow = range(run.stop, page + new_pages)
        fits = all(self.pages[i] is None for i in grow)
        expected = None if fits else errno.ENOMEM
        got = self.outcome(self.arena.remap, page, len(run), new_pages)
        ident = "mremap.grow_in_place.enomem_when_occupied" if expected else "mremap.in_place.succeeds"
        assert got == expected, (f"{ident}: mremap(page {page}, {len(run)} -> {new_pages} pages) gave "
                                 f"{errno.errorcode.get(got or 0, 'success')}{self.dump()}")
        if got is None:
            last = self.pages[run.stop - 1]
            assert last is not None
            for j, i in enumerate(grow, start=1):
                self.pages[i] = self.grown(last, j, last.vma)
            for i in range(page + new_pages, run.stop):
                self.pages[i] = None
        self.touched.update((page, max(run.stop, page + new_pages) - 1))
        self.step = ident

    @rule(page=PAGE, want=COUNT, new_pages=COUNT, dest=PAGE)
    def mremap_move(self, page: int, want: int, new_pages: int, dest: int) -> None:
        """mremap(MREMAP_MAYMOVE|MREMAP_FIXED) moves the pages (contents, backing, protection)
        to new_address, replacing what was there, and unmaps the old range; overlapping old
        and new ranges are EINVAL (mremap(2))."""
        assert self.arena is not None
        if self.pages[page] is None:
            return
        run = self.run_of(page, want)
        new_pages = min(new_pages, N - dest)
        dest_span = range(dest, dest + new_pages)
        self.refill_model(dest_span)  # Arena.remap refills holes at the destination first
        overlap = dest < run.stop and run.start < dest_span.stop
        expected = errno.EINVAL if overlap else None
        moved = [self.pages[i] for i in run]
        got = self.outcome(self.arena.remap, page, len(run), new_pages, dest)
        ident = "mremap.fixed.overlap_einval" if overlap else "mremap.fixed.moves"
        assert got == expected, (f"{ident}: mremap(page {page}, {len(run)} pages -> page {dest}, {new_pages} pages, "
                                 f"MAYMOVE|FIXED) gave {errno.errorcode.get(got or 0, 'success')}{self.dump()}")
        if got is None:
            vma = self.new_vma()
            for i in run:
                self.pages[i] = None
            last = moved[-1]
            assert last is not None
            for j, i in enumerate(dest_span):
                src = moved[j] if j < len(moved) else self.grown(last, j - len(moved) + 1, vma)
                assert src is not None
                self.pages[i] = src.copy(vma=vma, origin="mremap")
        self.touched.update((run.start, dest_span[0], dest_span[-1]))
        self.step = ident

    @rule(page=PAGE, pages=COUNT)
    def madvise_dontneed(self, page: int, pages: int) -> None:
        """MADV_DONTNEED: private anonymous pages read zero afterwards, private file pages
        read the file again, shared pages keep their contents; a hole in the range is
        ENOMEM, after the mapped pages were advised (madvise(2))."""
        span = self.clip(page, pages)
        expected = errno.ENOMEM if any(self.pages[i] is None for i in span) else None
        got = self.outcome(libc.madvise, self.addr(page), len(span) * P, C.MADV_DONTNEED)
        ident = "madvise.unmapped_in_range.enomem" if expected else "madvise.dontneed.succeeds"
        assert got == expected, (f"{ident}: madvise(page {page}, {len(span)} pages, MADV_DONTNEED) gave "
                                 f"{errno.errorcode.get(got or 0, 'success')}{self.dump()}")
        for i in span:
            pg = self.pages[i]
            if pg is not None:
                self.model_dontneed(pg)
        self.touched.update((span[0], span[-1]))
        self.step = ident if expected else "madvise.dontneed.discards_private_pages"

    def model_dontneed(self, pg: Page) -> None:
        if pg.kind == ANON_PRIVATE:
            pg.own, pg.why = 0, "madvise.dontneed.private_anonymous_zero_fills"
        elif pg.kind == FILE_PRIVATE:
            pg.own, pg.why = None, "madvise.dontneed.private_file_rereads_file"

    @rule(page=PAGE, pages=COUNT, flags=msync_flags())
    def msync(self, page: int, pages: int, flags: int) -> None:
        """msync succeeds on mapped ranges and is ENOMEM when the range has a hole; afterwards
        the file holds what was stored through shared file pages (msync(2))."""
        span = self.clip(page, pages)
        expected = errno.ENOMEM if any(self.pages[i] is None for i in span) else None
        got = self.outcome(libc.msync, self.addr(page), len(span) * P, flags)
        ident = "msync.unmapped_in_range.enomem" if expected else "msync.mapped_range.succeeds"
        assert got == expected, (f"{ident}: msync(page {page}, {len(span)} pages, {flags:#x}) gave "
                                 f"{errno.errorcode.get(got or 0, 'success')}{self.dump()}")
        for i in span:
            pg = self.pages[i]
            if pg is not None and pg.kind == FILE_SHARED and pg.idx < self.file.size:
                on_disk = os.pread(self.fd, 1, pg.idx * P)[0]
                assert on_disk == self.file.data[pg.idx], (
                    f"msync.shared_file.contents_in_file: file page {pg.idx} holds {on_disk:#x}, the model "
                    f"{self.file.data[pg.idx]:#x} ({self.file.why[pg.idx]})")

    @rule(page=PAGE, value=st.one_of(st.just(RET if RET is not None else 0xC3), st.integers(0, 255)))
    def write(self, page: int, value: int) -> None:
        """A store faults as the page's protection and backing say, else it is stored."""
        expected, ident = self.expect(page, "w")
        if self.pages[page] is None:  # a hole: nothing can be corrupted (checked by the read first)
            assert probe.read(self.addr(page)) == expected, f"{ident}: page {page}{self.dump()}"
            got = probe.write(self.addr(page), value, foreign=True)
        else:
            got = probe.write(self.addr(page), value)
        assert got == expected, (f"{ident}: write of {value:#x} to page {page} gave {got or 'no fault'}; "
                                 f"the model predicts {expected or 'no fault'}{self.dump()}")
        pg = self.pages[page]
        if got is None and pg is not None:
            self.store(pg, value, f"write.{pg.kind}.stores")
        self.touched.add(page)
        self.step = ident

    @rule(index=st.integers(0, FILE_PAGES - 1), value=st.integers(0, 255))
    def pwrite_file(self, index: int, value: int) -> None:
        """A write(2) to the file shows through its shared mappings and through private
        mappings of pages not yet copied on write (Linux; POSIX leaves it unspecified)."""
        os.pwrite(self.fd, bytes([value]), index * P)
        self.file.data[index], self.file.why[index] = value, "mmap.file.sees_file_writes_until_copied"
        self.touched.update(i for i, pg in enumerate(self.pages)
                            if pg is not None and pg.obj is self.file and pg.idx == index)
        self.step = "mmap.file.sees_file_writes_until_copied"

    @rule(relative=invalid_calls(0, N))
    def invalid_call(self, relative: InvalidCall) -> None:
        """Arguments the ERRORS sections reject fail with their errno and change nothing."""
        assert self.arena is not None
        case = relative.at(self.arena.addr)
        try:
            result = getattr(libc, case.call)(*case.args)
        except OSError as error:
            got = error.errno
        else:
            got = None
            if case.call == "mmap" and isinstance(result, int) and not case.args[3] & C.MAP_FIXED:
                libc.munmap(result, max(case.args[1], P))
        assert got == case.errno, (f"{case.call}.einval.{case.why.split()[0].lower()}: {case!r} gave "
                                   f"{errno.errorcode.get(got or 0, 'success')}{self.dump()}")
        self.touched.add(0)

    @precondition(lambda self: self.forks < FORKS_PER_PROGRAM)
    @rule(page=PAGE, value=st.integers(0, 255))
    def fork_and_check(self, page: int, value: int) -> None:
        """fork(2): the child sees the parent's pages as they are; its store to a private
        page stays in the child (copy-on-write) and to a shared page reaches the parent."""
        self.forks += 1
        expected, _ = self.expect(page, "w")
        addrs = [self.addr(i) for i in range(N)]
        target = self.addr(page) if expected is None else None
        outcome = run_in_child(_child_reads_and_writes, addrs, target, value, timeout=30)
        assert outcome.returned, f"fork.child_runs: the child {outcome.describe()}"
        for i, (fault, byte) in enumerate(outcome.value):
            want_fault, ident = self.expect(i, "r")
            pg = self.pages[i]
            want_byte, why = (self.content(pg) if pg is not None and want_fault is None else (None, ident))
            got_fault = Fault(*fault) if fault else None
            assert (got_fault, byte) == (want_fault, want_byte), (
                f"fork.child_sees_parent_memory ({why}): page {i} in the child read {got_fault or byte}; the model "
                f"predicts {want_fault or want_byte}{self.dump()}")
        pg = self.pages[page]
        if target is not None and pg is not None and pg.kind in (ANON_SHARED, FILE_SHARED):
            self.store(pg, value, "fork.shared_page_store_reaches_parent")
        self.touched.add(page)
        self.step = "fork.private_copied_shared_shared"

    # ---- invariants ----

    @invariant()
    def kernel_agrees(self) -> None:
        """After every step: the touched pages and one rotating page behave as modelled, and
        /proc/self/maps shows the model's pages."""
        if self.arena is None:
            return
        self.steps += 1
        self.touched.add(self.steps % N)
        for page in sorted(self.touched):
            self.check_page(page)
        self.touched.clear()
        self.check_maps()
        self.step = "(no call: a later check)"

    def check_page(self, page: int) -> None:
        addr = self.addr(page)
        pg = self.pages[page]
        want, ident = self.expect(page, "r")
        fault, byte = probe.read_value(addr)
        if want is None:
            assert pg is not None
            value, why = self.content(pg)
            assert fault is None and byte == value, (
                f"{why or ident}: page {page} reads {fault or hex(byte or 0)}; the model predicts {value:#x}"
                f"{self.dump()}")
        else:
            assert fault == want, f"{ident}: page {page} read gave {fault or 'no fault'}, not {want}{self.dump()}"
        foreign = pg is None  # a hole (the read just proved it): nothing there to corrupt
        want_w, ident_w = self.expect(page, "w")
        if want_w is not None:
            got = probe.write(addr, 0, foreign=foreign)
            assert got == want_w, f"{ident_w}: page {page} write gave {got or 'no fault'}, not {want_w}{self.dump()}"
        want_x, ident_x = self.expect(page, "x")
        if want_x is not None:
            got = probe.execute(addr, foreign=foreign)
            assert got == want_x, f"{ident_x}: page {page} execute gave {got or 'no fault'}, not {want_x}{self.dump()}"
        elif RET is not None and fault is None and byte == RET:  # the read showed a ret: safe to run
            got = probe.execute(addr)
            assert got is None, f"{ident_x}: page {page} (a ret) execute gave {got}{self.dump()}"

    def check_maps(self, *, text: bool = False) -> None:
        assert self.arena is not None and self.maps is not None
        lo = self.arena.addr
        seen: list[Vma | None] = [None] * N
        for entry in self.maps.vmas(lo, lo + N * P, text=text):
            for i in range(max(0, (entry.start - lo) // P), min(N, (entry.end - lo) // P)):
                seen[i] = entry
        for i, (pg, vma) in enumerate(zip(self.pages, seen, strict=True)):
            want = None if pg is None else self.perms(pg)
            got = None if vma is None else vma.perms
            assert got == want, (  # the message (and the semantic it names) is built only on failure
                f"{'munmap.unmapped.not_in_maps' if pg is None else f'{pg.origin}.{prot_id(pg.prot)}.shown_in_maps'}"
                f": /proc/self/maps shows page {i} as {got or 'unmapped'}, the model as "
                f"{want or 'unmapped'}{' (text)' if text else ''}{self.dump()}")
            if pg is not None and vma is not None and pg.kind in (FILE_SHARED, FILE_PRIVATE, ANON_SHARED):
                offset = vma.offset + (self.addr(i) - vma.start)
                assert offset == pg.idx * P, (
                    f"{pg.origin}.{pg.kind}.offset_in_maps: page {i} maps offset {offset:#x}, the model "
                    f"{pg.idx * P:#x}{self.dump()}")
                if pg.kind != ANON_SHARED:
                    assert vma.inode == self.inode, (
                        f"{pg.origin}.{pg.kind}.file_in_maps: page {i} maps inode {vma.inode}, the memfd is "
                        f"{self.inode}{self.dump()}")


def _child_reads_and_writes(addrs: list[int], target: int | None, value: int) -> list[tuple[Any, int | None]]:
    """In the forked child: read byte 0 of every page, then store ``value`` at ``target``."""
    reads = []
    for addr in addrs:
        fault, byte = probe.read_value(addr)
        reads.append((tuple(fault) if fault else None, byte))
    if target is not None:
        probe.write(target, value)
    return reads
