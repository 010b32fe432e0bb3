"""What fork(2) and execve(2) do to mappings.

fork: the child gets the parent's mappings at the same addresses with the same
protections; MAP_PRIVATE pages are copy-on-write in both directions; MAP_SHARED
anonymous pages are one memory for both. execve: the new program starts with a fresh
address space, so a mapping the old program had is gone.

A test that needs the parent to act while the child is alive (parent writes, child
then reads) uses a plain os.fork with two pipes as the only synchronisation: the child
blocks in read() until the parent says "go", never sleeps, never returns into pytest,
and always ends in os._exit; the parent reaps it (killing it first if needed) whatever
happens. Everything else uses ``run_in_child``. MADV_DONTFORK is covered elsewhere.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from pytest_memsyscalls import MappedPages, RunInChild, semantic
from pytest_memsyscalls.kernel import constants as C
from pytest_memsyscalls.kernel import probe, procfs
from pytest_memsyscalls.kernel.constants import RW
from pytest_memsyscalls.kernel.native import brk_helper_path
from pytest_memsyscalls.kernel.probe import Fault

HIGH_HINT = 0x6000_0000_0000  # between a PIE's heap (0x55..) and the top-down mmap area (0x7f..)


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
