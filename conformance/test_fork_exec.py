"""What fork(2) and execve(2) do to mappings.

fork: the child gets the parent's mappings at the same addresses with the same
protections; MAP_PRIVATE pages are copy-on-write in both directions; MAP_SHARED
anonymous pages are one memory for both. execve: the new program starts with a fresh
address space, so a mapping the old program had is gone.

A test that needs the parent to act while the child is alive (parent writes, child
then reads) uses a plain os.fork with two pipes (``_oracles.lockstep``) as the only synchronisation: the child
blocks in read() until the parent says "go", never sleeps, never returns into pytest,
and always ends in os._exit; the parent reaps it (killing it first if needed) whatever
happens. Everything else uses ``run_in_child``. MADV_DONTFORK is covered elsewhere.
What execve clears is read from the new program's /proc/PID files while it waits
(``_oracles.exec_held``: the child execs /bin/cat on a pipe the parent holds).
"""

from __future__ import annotations

import json
import os
import signal

import pytest

from pytest_memsyscalls import MappedPages, RunInChild, requires, semantic
from pytest_memsyscalls.kernel import constants as C
from pytest_memsyscalls.kernel import libc, probe, procfs
from pytest_memsyscalls.kernel.constants import RW
from pytest_memsyscalls.kernel.libc import PAGE_SIZE as PAGE
from pytest_memsyscalls.kernel.native import brk_helper_path
from pytest_memsyscalls.kernel.probe import Fault

from ._oracles import exec_held, lockstep, vmflags

HIGH_HINT = 0x6000_0000_0000  # between a PIE's heap (0x55..) and the top-down mmap area (0x7f..)


# --- copy-on-write and sharing -------------------------------------------------------------------

def _write_then_read(addr: int, value: int) -> int | Fault:
    assert probe.write(addr, value) is None
    fault, byte = probe.read_value(addr)
    return fault or int(byte or 0)


@semantic("fork.private.cow_child_writes_invisible_to_parent",
          "After fork, a write by the child to a MAP_PRIVATE page changes only the child's copy: the "
          "parent still reads its own value",
          source="fork(2) NOTES (copy-on-write); mmap(2) MAP_PRIVATE", tier="posix")
def test_private_child_write_not_seen_by_parent(mapped_pages: MappedPages,
                                                run_in_child: RunInChild) -> None:
    page = mapped_pages(1)
    page.write(0, 0xA1)
    assert run_in_child(_write_then_read, page.addr, 0xC1).result() == 0xC1
    assert page.read(0) == 0xA1


@semantic("fork.private.cow_parent_writes_invisible_to_child",
          "After fork, a write by the parent to a MAP_PRIVATE page is not seen by the child, which keeps "
          "the value the page had at fork time",
          source="fork(2) NOTES (copy-on-write); mmap(2) MAP_PRIVATE", tier="posix")
def test_private_parent_write_not_seen_by_child(mapped_pages: MappedPages) -> None:
    page = mapped_pages(1)
    page.write(0, 0xA2)
    with lockstep(lambda: page.buffer[0]) as child:
        assert page.write(0, 0xB2) is None  # after the fork, before the child reads
        assert child.go() == 0xA2
    assert page.read(0) == 0xB2


@semantic("fork.shared_anon.shared_both_ways",
          "A MAP_SHARED|MAP_ANONYMOUS page is the same memory in parent and child after fork: a write by "
          "either is read by the other",
          source="mmap(2) MAP_SHARED (shared with all other processes that map it); fork(2)", tier="posix")
def test_shared_anonymous_shared_both_ways(mapped_pages: MappedPages) -> None:
    page = mapped_pages(1, flags=C.MAP_SHARED | C.MAP_ANONYMOUS)
    page.write(0, 0xA3)

    def child_side() -> int:
        seen = page.buffer[0]
        page.buffer[1] = 0xC3
        return seen

    with lockstep(child_side) as child:
        assert page.write(0, 0xB3) is None  # after the fork
        assert child.go() == 0xB3           # the child read the parent's write
    assert page.read(1) == 0xC3             # and the parent reads the child's


# --- inheritance of addresses and protections ------------------------------------------------------

PROTECTIONS = {"read": C.PROT_READ, "read_write": RW, "read_exec": C.PROT_READ | C.PROT_EXEC}


def _observe(addr: int) -> tuple[str, Fault | None, Fault | None]:
    """Perms in maps at addr, then a read and a write probe (the write restores the byte)."""
    entry = procfs.vma_at(addr)
    fault, value = probe.read_value(addr)
    return (entry.perms if entry else "unmapped", fault, probe.write(addr, value if value is not None else 0))


@semantic("fork.inherit.same_address_same_protection",
          "The child inherits each mapping at the same address with the same protection: /proc/self/maps "
          "shows the same permissions and reads and writes succeed or fault exactly as in the parent",
          source="fork(2) DESCRIPTION (the child's virtual address space is a copy of the parent's)",
          tier="posix")
@pytest.mark.parametrize("name", list(PROTECTIONS))
def test_child_inherits_mapping_and_protection(mapped_pages: MappedPages,
                                               run_in_child: RunInChild, name: str) -> None:
    page = mapped_pages(1)
    page.write(0, 0xC3)  # a ret on x86_64; any byte will do elsewhere
    page.protect(PROTECTIONS[name])
    in_parent = _observe(page.addr)
    assert in_parent[0].startswith("r")
    assert run_in_child(_observe, page.addr).result() == in_parent


@semantic("fork.inherit.prot_none_stays_none",
          "A PROT_NONE mapping is still PROT_NONE in the child: a read there raises SIGSEGV with "
          "SEGV_ACCERR (not SEGV_MAPERR: the mapping is inherited)",
          source="fork(2) DESCRIPTION; mprotect(2) PROT_NONE", tier="posix")
def test_prot_none_inherited(mapped_pages: MappedPages,
                             run_in_child: RunInChild) -> None:
    page = mapped_pages(1, prot=C.PROT_NONE)
    assert run_in_child(_observe, page.addr).result() == (
        "---p", Fault(signal.SIGSEGV, C.SEGV_ACCERR, page.addr), Fault(signal.SIGSEGV, C.SEGV_ACCERR, page.addr))


# --- exec ----------------------------------------------------------------------------------------------

def _exec_helper(addr: int) -> None:
    """In the child: the mapping is there; then become the helper, which looks at addr."""
    assert probe.read_value(addr) == (None, 0x5A)
    helper = str(brk_helper_path())
    os.execv(helper, [helper, f"vma:{addr:#x}", f"read:{addr:#x}"])


@semantic("exec.replaces_address_space",
          "execve replaces the address space: a mapping the process had before exec is absent from the new "
          "program's /proc/self/maps and a read there raises SIGSEGV with SEGV_MAPERR",
          source="execve(2) DESCRIPTION (new, initialized stack, heap and data segments)", tier="posix")
def test_exec_replaces_mappings(mapped_pages: MappedPages,
                                run_in_child: RunInChild) -> None:
    page = mapped_pages(1, addr=HIGH_HINT)  # a hint, not MAP_FIXED: the kernel may place it elsewhere
    page.write(0, 0x5A)
    outcome = run_in_child(_exec_helper, page.addr)
    assert outcome.exit_status == 0 and outcome.exception is None, outcome.describe()
    report = json.loads(outcome.stdout)
    assert report["pid"] == outcome.pid  # the same process, now running the helper
    vma_step, read_step = report["steps"]
    assert vma_step["vma"] is None, f"the new image has a mapping at {page.addr:#x}: {vma_step['vma']}"
    fault = read_step["fault"]
    assert fault is not None and Fault(fault["signo"], fault["code"], fault["addr"]) == Fault(
        signal.SIGSEGV, C.SEGV_MAPERR, page.addr)


# --- what execve clears: locks, MCL_FUTURE, MADV_WIPEONFORK ------------------------------------

def _locked_kb(pid: int | str = "self") -> int | None:
    return procfs.status_kb(procfs.read_status(pid), "VmLck")


def _locked_entries(pid: int) -> list[str]:
    return [str(entry.maps) for entry in procfs.read_smaps(pid) if entry.locked]


def _lock_a_page() -> None:
    addr = libc.mmap(0, PAGE, RW, C.MAP_PRIVATE | C.MAP_ANONYMOUS)
    libc.mlock(addr, PAGE)
    if not _locked_kb():
        raise AssertionError(f"VmLck is {_locked_kb()} kB after mlock before exec")


@semantic("exec.mlock.locks_dropped",
          "execve drops the memory locks of the old program: a process that mlocked a page has VmLck 0 kB "
          "and no 'lo' mapping once it runs the new program",
          source="mlock(2) NOTES (memory locks are not preserved across execve)", tier="posix")
@requires(f"memlock:{PAGE}")
def test_exec_drops_mlock() -> None:
    with exec_held(_lock_a_page) as pid:
        locked, entries = _locked_kb(pid), _locked_entries(pid)
    assert (locked, entries) == (0, [])


def _lock_future() -> None:
    """MCL_FUTURE, then a check that allocates next to nothing (every mapping the interpreter
    made from here on would be locked, and under a small RLIMIT_MEMLOCK refused): a page
    mapped now is populated at mmap time, so mincore says resident before any touch."""
    libc.mlockall(C.MCL_FUTURE)
    addr = libc.mmap(0, PAGE, RW, C.MAP_PRIVATE | C.MAP_ANONYMOUS)
    if not libc.mincore(addr, PAGE)[0] & 1:
        raise AssertionError("a page mapped after mlockall(MCL_FUTURE) was not populated")


@semantic("exec.mlockall.future_dropped",
          "execve clears mlockall(MCL_FUTURE): the new program's own mappings (its libraries, heap and "
          "stack) are not locked, so its VmLck is 0 kB and no smaps entry has 'lo'",
          source="mlock(2) NOTES (MCL_FUTURE is not preserved across execve)", tier="posix")
@requires(f"memlock:{PAGE}")
def test_exec_drops_mcl_future() -> None:
    with exec_held(_lock_future) as pid:
        locked, entries = _locked_kb(pid), _locked_entries(pid)
    assert (locked, entries) == (0, [])


def _wipe_a_page() -> None:
    addr = libc.mmap(0, PAGE, RW, C.MAP_PRIVATE | C.MAP_ANONYMOUS)
    libc.madvise(addr, PAGE, C.MADV_WIPEONFORK)
    if "wf" not in vmflags(addr):
        raise AssertionError(f"no 'wf' after MADV_WIPEONFORK: {sorted(vmflags(addr))}")


@semantic("exec.wipeonfork.cleared",
          "MADV_WIPEONFORK does not survive execve: no mapping of the new program has 'wf' in its smaps "
          "VmFlags, though the old program had one",
          source="madvise(2) MADV_WIPEONFORK (this setting is cleared during execve)", tier="linux")
@requires("feature:MADV_WIPEONFORK")
def test_exec_clears_wipeonfork() -> None:
    with exec_held(_wipe_a_page) as pid:
        flagged = [str(entry.maps) for entry in procfs.read_smaps(pid) if "wf" in entry.vmflags]
    assert flagged == []


# --- MADV_WIPEONFORK across generations ------------------------------------------------------

def _bytes_at(addrs: list[int]) -> bytes:
    return bytes(probe.read_value(addr)[1] or 0 for addr in addrs)


def _write_and_fork_again(addrs: list[int]) -> tuple[bytes, bytes, bool]:
    """In the child: what it sees, then its own writes, then what a grandchild sees."""
    inherited = _bytes_at(addrs)
    for addr in addrs:
        assert probe.write(addr, 0x77) is None
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - grandchild
        try:
            os.write(write_end, _bytes_at(addrs))
        finally:
            os._exit(0)
    os.close(write_end)
    seen = os.read(read_end, len(addrs))
    os.close(read_end)
    os.waitpid(pid, 0)
    return inherited, seen, "wf" in vmflags(addrs[0])


@semantic("fork.wipeonfork.inherited_by_child",
          "A fork child keeps MADV_WIPEONFORK on the range ('wf' in its VmFlags): the child reads zeros, and "
          "what the child then writes there is wiped again for its own child (first, inner and last page)",
          source="madvise(2) MADV_WIPEONFORK; mm/mmap.c dup_mmap", tier="linux")
@requires("feature:MADV_WIPEONFORK")
def test_wipeonfork_grandchild(mapped_pages: MappedPages, run_in_child: RunInChild) -> None:
    region = mapped_pages(5)
    region.buffer[:] = b"\x11" * region.length
    region.advise(C.MADV_WIPEONFORK)
    addrs = [region.page(0), region.page(2) + 5, region.page(4) + PAGE - 1]
    inherited, seen, flagged = run_in_child(_write_and_fork_again, addrs).result()
    assert (inherited, seen, flagged) == (bytes(3), bytes(3), True)
    assert _bytes_at(addrs) == b"\x11" * 3
