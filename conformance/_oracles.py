"""The kernel's own answers that several conformance modules ask for.

Each reads the kernel directly (msync, mincore, /proc/self/smaps, CapEff) rather than
trusting a library, and each probe that decides whether an oracle can be believed at
all (mincore residency under gVisor) runs on a scratch mapping of its own, once.
"""

from __future__ import annotations

import errno
import functools
import os
import signal
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

from pytest_memsyscalls import RunInChild
from pytest_memsyscalls.kernel import constants as C
from pytest_memsyscalls.kernel import libc, procfs
from pytest_memsyscalls.kernel.libc import PAGE_SIZE as PAGE


def is_mapped(addr: int, length: int = PAGE) -> bool:
    """Every page of the range is mapped: msync(MS_ASYNC) fails with ENOMEM on a hole."""
    try:
        libc.msync(addr, length, C.MS_ASYNC)
    except OSError as error:
        if error.errno == errno.ENOMEM:
            return False
        raise
    return True


def vmflags(addr: int) -> frozenset[str]:
    """The VmFlags of the VMA containing addr (empty if unmapped or not reported)."""
    entry = procfs.smaps_at(addr)
    return entry.vmflags if entry is not None else frozenset()


def resident(addr: int, length: int) -> list[bool]:
    """mincore: for each page of the range, whether it is resident."""
    return [bool(b & 1) for b in libc.mincore(addr, length)]


def effective_caps() -> frozenset[str]:
    """CapEff of this process now (a child may have dropped capabilities since detect())."""
    return procfs.decode_capabilities(procfs.read_status()["CapEff"])


@functools.cache
def mincore_sees_residency() -> bool:
    """Probe (once): does mincore report a fresh, untouched anonymous page as non-resident?
    gVisor reports every mapped page resident, which blinds the residency oracle."""
    scratch = libc.mmap(0, PAGE, C.PROT_READ | C.PROT_WRITE, C.MAP_PRIVATE | C.MAP_ANONYMOUS)
    try:
        return not libc.mincore(scratch, PAGE)[0] & 1
    finally:
        libc.munmap(scratch, PAGE)


# --- /proc/PID/pagemap (Documentation/admin-guide/mm/pagemap.rst) ------------------------------

PM_PFN_MASK = (1 << 55) - 1  # bits 0-54: the page frame number (zero unless CAP_SYS_ADMIN)
PM_SOFT_DIRTY = 1 << 55
PM_MMAP_EXCLUSIVE = 1 << 56  # the page is mapped exclusively (since 4.2)
PM_FILE = 1 << 61  # a file page or shared anonymous page (since 3.5)
PM_SWAP = 1 << 62
PM_PRESENT = 1 << 63


def pagemap_entries(addr: int, pages: int = 1, pid: int | str = "self") -> list[int]:
    """The 64-bit pagemap entries of ``pages`` pages from ``addr`` (opened afresh: whether the
    frame numbers show is decided by the opener's CAP_SYS_ADMIN at open time)."""
    with open(f"/proc/{pid}/pagemap", "rb", buffering=0) as handle:
        data = os.pread(handle.fileno(), 8 * pages, (addr // PAGE) * 8)
    if len(data) != 8 * pages:
        raise AssertionError(f"/proc/{pid}/pagemap gave {len(data)} bytes for {pages} entries at {addr:#x}")
    return list(struct.unpack(f"<{pages}Q", data))


# --- a process that has exec'd and waits ------------------------------------------------------

CAT = "/bin/cat"


@contextmanager
def exec_held(prepare: Callable[[], None] | None = None) -> Iterator[int]:
    """Fork a child that runs ``prepare()`` and then execs /bin/cat, which reads a pipe the
    parent holds: inside the block the new program is alive and its /proc/PID files can be
    read; yields its pid. The child never returns into pytest; it is reaped at the end."""
    if not os.access(CAT, os.X_OK):
        pytest.skip(f"needs:{CAT} (an executable to exec)")
    exec_done_r, exec_done_w = os.pipe2(os.O_CLOEXEC)  # EOF once exec succeeded
    hold_r, hold_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            os.dup2(hold_r, 0)
            devnull = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
            os.dup2(devnull, 1)
            if prepare is not None:
                prepare()
            os.execv(CAT, ["cat"])
        except BaseException as error:  # noqa: BLE001 - reported to the parent, then exit
            os.write(exec_done_w, f"{type(error).__name__}: {error}".encode()[:4000])
        finally:
            os._exit(127)
    os.close(exec_done_w)
    os.close(hold_r)
    try:
        failure = os.read(exec_done_r, 4096)
        if failure:
            raise AssertionError(f"the child failed before exec: {failure.decode(errors='replace')}")
        yield pid
    finally:
        os.close(hold_w)
        os.close(exec_done_r)
        os.waitpid(pid, 0)


# --- a fork child that acts on cue (moved from test_fork_exec.py) -------------------------------

class Lockstep:
    """A forked child that waits for "go", runs one function, and sends back one byte."""

    def __init__(self, fn: Callable[[], int]) -> None:
        go_r, self._go_w = os.pipe2(os.O_CLOEXEC)
        self._back_r, back_w = os.pipe2(os.O_CLOEXEC)
        self.pid = os.fork()
        if self.pid == 0:
            status = 1
            try:
                os.close(self._go_w)
                os.close(self._back_r)
                if os.read(go_r, 1) == b"g":
                    os.write(back_w, bytes([fn() & 0xFF]))
                    status = 0
            finally:
                os._exit(status)
        os.close(go_r)
        os.close(back_w)
        self.reaped = False

    def go(self) -> int:
        """Let the child run its function; the byte it sent back."""
        os.write(self._go_w, b"g")
        answer = os.read(self._back_r, 1)
        _, status = os.waitpid(self.pid, 0)
        self.reaped = True
        assert answer and os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, f"child status {status:#x}"
        return answer[0]

    def close(self) -> None:
        os.close(self._go_w)  # EOF: a child still waiting exits
        os.close(self._back_r)
        if not self.reaped:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)


@contextmanager
def lockstep(fn: Callable[[], int]) -> Iterator[Lockstep]:
    child = Lockstep(fn)
    try:
        yield child
    finally:
        child.close()


# --- the map count at vm.max_map_count (mmap and munmap share one fill) ----------------

@dataclass(frozen=True)
class MapCountObservation:
    """What a child saw with its map count filled up to vm.max_map_count."""

    before: int  # VMAs in /proc/self/maps before the fill
    splits: int  # successful mprotect calls (two VMAs each)
    fill_errno: int | None  # the errno that stopped the fill (ENOMEM: split_vma at the limit)
    mmap_errnos: tuple[int | None, ...]  # three new one-page MAP_SHARED|MAP_ANONYMOUS mappings
    munmap_middle_errno: int | None  # munmap of the middle page of a three-page mapping
    middle_still_mapped: bool  # ... and whether that page was still mapped afterwards


def _fill_map_count(max_map_count: int) -> MapCountObservation:
    """Child: fill the map count with alternating-protection pages, then try what needs a
    new VMA. No Python allocation may need a new mapping after the fill (it would fail):
    results are plain ints until the filler range is unmapped again."""
    three = libc.mmap(0, 3 * PAGE, C.PROT_READ | C.PROT_WRITE, C.MAP_PRIVATE | C.MAP_ANONYMOUS)
    before = len(procfs.read_maps())
    pages = 2 * (max_map_count - before + 16) + 1
    filler = libc.mmap(0, pages * PAGE, C.PROT_NONE, C.MAP_PRIVATE | C.MAP_ANONYMOUS | C.MAP_NORESERVE)
    splits, error = libc.mprotect_alternate(filler, pages, C.PROT_READ)
    mmap_errnos: list[int | None] = [None, None, None]
    for index in range(3):
        try:
            libc.mmap(0, PAGE, C.PROT_READ, C.MAP_SHARED | C.MAP_ANONYMOUS)
        except OSError as failure:
            mmap_errnos[index] = failure.errno
    munmap_errno: int | None = None
    try:
        libc.munmap(three + PAGE, PAGE)
    except OSError as failure:
        munmap_errno = failure.errno
    middle_mapped = libc.is_mapped(three + PAGE)
    libc.munmap(filler, pages * PAGE)
    return MapCountObservation(before, splits, None if error is None else error.errno, tuple(mmap_errnos),
                               munmap_errno, middle_mapped)


_MAP_COUNT: dict[int, MapCountObservation] = {}


def map_count_observation(run_in_child: RunInChild, max_map_count: int) -> MapCountObservation:
    """The fill costs ~0.3 s (a VMA split is several µs), so one child per session does it
    and every semantic about the limit reads what that child saw."""
    if max_map_count not in _MAP_COUNT:
        outcome = run_in_child(_fill_map_count, max_map_count, timeout=60)
        result = outcome.result()
        assert isinstance(result, MapCountObservation)
        _MAP_COUNT[max_map_count] = result
    return _MAP_COUNT[max_map_count]


# --- privilege changes, for children only ----------------------------------------------

def drop_capability(number: int) -> None:
    """capset(2) in a child: clear capability ``number`` from the effective, permitted and
    inheritable sets, and check it is gone (never in the pytest process)."""
    caps = libc.capget()
    mask = ~(1 << number)
    libc.capset(caps.effective & mask, caps.permitted & mask, caps.inheritable & mask)
    if libc.capget().effective >> number & 1:
        raise RuntimeError(f"capability {number} is still effective after capset")
