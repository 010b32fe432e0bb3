"""Copy-on-write snapshots with mprotect (seed exercise 4).

``Snapshot(addr, length)`` freezes a page-aligned range of memory this process mapped:
the range becomes read-only (mprotect), and the first write to each page goes
write -> fault (SEGV_ACCERR) -> copy the page's old contents aside -> mprotect the page
read-write -> retry the write. Only pages that are written are ever copied, which is
how incremental checkpointing (and fork's copy-on-write, in the kernel) saves memory.
``snapshot.read(offset)`` gives the byte as it was when the snapshot was taken,
``restore()`` rolls the range back, ``close()`` makes it writable again and frees the copies.

Writes go through pytest-memsyscalls' fault probe, because the fault handler has to
be native: a Python SIGSEGV handler cannot resume a faulting instruction. Python runs
signal handlers later, between bytecodes, after the C-level handler has returned; on
return the kernel restarts the faulting store, which faults again, forever (and the
faulthandler module only reports and dies). The probe is a native handler that jumps
back out of the fault with the siginfo, so the copy and the retry happen in Python.
"""

from __future__ import annotations

import ctypes
import signal

from pytest_memsyscalls.kernel import constants as C
from pytest_memsyscalls.kernel import libc, probe
from pytest_memsyscalls.kernel.libc import PAGE_SIZE as PAGE

PROTECT_ON_SNAPSHOT = True  # the mechanism; the example's tests switch it off to show the check failing


class Snapshot:
    """A copy-on-write snapshot of ``length`` bytes at ``addr`` (page-aligned, mapped by this package)."""

    def __init__(self, addr: int, length: int) -> None:
        if addr % PAGE or length <= 0 or length % PAGE:
            raise ValueError("a snapshot covers whole pages")
        self.addr, self.length = addr, length
        self.copies: dict[int, int] = {}  # page index -> address of the saved old page
        self.faults = 0
        self.closed = False
        if PROTECT_ON_SNAPSHOT:
            libc.mprotect(addr, length, C.PROT_READ)

    def __enter__(self) -> Snapshot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _page_of(self, offset: int) -> int:
        if not 0 <= offset < self.length:
            raise IndexError(f"offset {offset} is outside the {self.length}-byte snapshot")
        return offset // PAGE

    def write(self, offset: int, value: int) -> None:
        """Store one byte in the live memory, copying its page aside on the first write."""
        target = self.addr + offset
        fault = probe.write(target, value)
        if fault is None:
            return
        index = self._page_of(offset)
        if fault != probe.Fault(signal.SIGSEGV, C.SEGV_ACCERR, target) or index in self.copies:
            raise RuntimeError(f"write at {target:#x} faulted unexpectedly: {fault}")
        self.faults += 1
        page = self.addr + index * PAGE
        saved = libc.mmap(0, PAGE, C.PROT_READ | C.PROT_WRITE, C.MAP_PRIVATE | C.MAP_ANONYMOUS)
        ctypes.memmove(saved, page, PAGE)  # the page is readable: copy the old contents
        libc.mprotect(saved, PAGE, C.PROT_READ)  # the copy itself is never written again
        self.copies[index] = saved
        libc.mprotect(page, PAGE, C.PROT_READ | C.PROT_WRITE)
        retry = probe.write(target, value)
        if retry is not None:
            raise RuntimeError(f"write at {target:#x} faulted again after mprotect: {retry}")

    def read(self, offset: int) -> int:
        """The byte at ``offset`` as it was when the snapshot was taken."""
        index = self._page_of(offset)
        base = self.copies.get(index, self.addr + index * PAGE)
        return ctypes.c_ubyte.from_address(base + offset % PAGE).value

    def restore(self) -> None:
        """Put every copied page back; the range is read-only again, as at the snapshot."""
        for index, saved in sorted(self.copies.items()):
            page = self.addr + index * PAGE
            ctypes.memmove(page, saved, PAGE)
            libc.mprotect(page, PAGE, C.PROT_READ)
            libc.munmap(saved, PAGE)
        self.copies.clear()

    def close(self) -> None:
        """End the snapshot: the range is writable again and the copies are freed."""
        if self.closed:
            return
        self.closed = True
        libc.mprotect(self.addr, self.length, C.PROT_READ | C.PROT_WRITE)
        for saved in self.copies.values():
            libc.munmap(saved, PAGE)
        self.copies.clear()
