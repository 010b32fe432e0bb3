"""brk(2)/sbrk(2): the program break, through the raw syscall and through glibc's wrappers.

Every experiment runs in memsys-brk-helper (pytest_memsyscalls.memory.brk), a process of its
own: CPython moves the break by itself, and moving it from the pytest process would
corrupt the interpreter's heap. Expectations are computed from the break the helper
reports before each step, so they hold wherever the kernel puts the heap.
"""

from __future__ import annotations

import errno
import resource
import signal

import pytest

from pytest_memsyscalls import semantic
from pytest_memsyscalls.kernel import constants as C
from pytest_memsyscalls.kernel.libc import PAGE_SIZE as PAGE
from pytest_memsyscalls.kernel.probe import Fault
from pytest_memsyscalls.memory.brk import BrkRun, run

HUGE = 1 << 46  # 64 TiB: more than any test machine can back or the address space leaves above the heap


def _page_up(addr: int, page: int) -> int:
    return (addr + page - 1) // page * page


def _before(result: BrkRun, index: int) -> int:
    """The break just before step ``index``."""
    return result.start if index == 0 else result[index - 1].brk_after


@semantic("brk.sbrk.zero_reports_break",
          "sbrk(0) returns the current program break without moving it; it equals what the raw brk(0) "
          "system call reports",
          source="sbrk(2) DESCRIPTION; brk(2) NOTES (C library/kernel differences)", tier="linux")
def test_sbrk_zero_reports_the_break() -> None:
    result = run("sbrk:0", "rawbrk:0", "sbrk:0")
    assert result[0].ret == result[1].ret == result.start
    assert [step.brk_after for step in result.steps] == [result.start] * 3


@semantic("brk.sbrk.returns_old_break",
          "sbrk(n) returns the previous program break and moves the break up by exactly n bytes",
          source="sbrk(2) RETURN VALUE", tier="linux")
def test_sbrk_returns_old_break_and_moves_by_n() -> None:
    result = run("sbrk:1024", "sbrk:3000", "sbrk:0")
    assert result[0].ret == result.start and result[0].errno == 0
    assert result[0].brk_after == result.start + 1024
    assert result[1].ret == result.start + 1024
    assert result[1].brk_after == result.start + 4024
    assert result[2].ret == result.start + 4024


@semantic("brk.sbrk.new_memory_zero_filled",
          "Memory added to the data segment by moving the break up is readable, writable and "
          "initially zero-filled",
          source="brk(2) DESCRIPTION; Linux mm/mmap.c (brk pages are anonymous zero pages)", tier="linux")
def test_new_break_memory_is_zero_filled_and_writable() -> None:
    page = run().page_size
    steps = ["sbrk:" + str(4 * page)]
    offsets = [0, page - 1, page, 2 * page + 17, 4 * page - 1]
    steps += [f"read:start+{o}" for o in offsets]
    steps += [f"write:start+{o}=165" for o in offsets]
    steps += [f"read:start+{o}" for o in offsets]
    result = run(*steps)
    n = len(offsets)
    assert result[0].ret == result.start
    assert [(s.fault, s.value) for s in result.steps[1:1 + n]] == [(None, 0)] * n
    assert [s.fault for s in result.steps[1 + n:1 + 2 * n]] == [None] * n
    assert [s.value for s in result.steps[1 + 2 * n:]] == [165] * n


@semantic("brk.sbrk.seed_example",
          "The tutorial's example: sbrk(0), then sbrk(1024) returns the old break, a string copied there "
          "reads back, and the break has increased by exactly 1024 bytes",
          source="tutorial §1 Example", tier="linux")
def test_seed_sbrk_example() -> None:
    text = b"Hello from heap!\0"
    steps = ["sbrk:0", "sbrk:1024"]
    steps += [f"write:start+{i}={b}" for i, b in enumerate(text)]
    steps += [f"read:start+{i}" for i in range(len(text))]
    steps += ["sbrk:0"]
    result = run(*steps)
    current, buffer = result[0].ret, result[1].ret
    assert buffer == current == result.start
    writes = result.steps[2:2 + len(text)]
    assert [w.fault for w in writes] == [None] * len(text)
    reads = result.steps[2 + len(text):-1]
    assert bytes(r.value or 0 for r in reads) == text
    last = result[-1].ret
    assert last is not None and current is not None and last - current == 1024


@semantic("brk.shrink.released_pages_fault",
          "Moving the break down releases the whole pages above the new break: touching one raises "
          "SIGSEGV with SEGV_MAPERR at the page address, while the page holding the new break stays",
          source="brk(2) DESCRIPTION; sigaction(2) SEGV_MAPERR", tier="linux")
def test_shrinking_the_break_unmaps_pages() -> None:
    page = run().page_size
    result = run(f"sbrk:{3 * page}", "write:start=1", f"write:start+{2 * page}=2", f"sbrk:-{2 * page}",
                 "read:start", f"read:start+{2 * page}")
    released = _page_up(result.start + page, page)  # first page wholly above the new break
    assert result[3].ret == result.start + 3 * page
    assert result[3].brk_after == result.start + page
    assert result[4].fault is None and result[4].value == 1
    probe_addr = result.start + 2 * page
    assert probe_addr >= released
    assert result[5].fault == Fault(signal.SIGSEGV, C.SEGV_MAPERR, probe_addr)


@semantic("brk.raw.returns_new_break",
          "The raw brk system call returns the new program break when it succeeds",
          source="brk(2) NOTES (C library/kernel differences)", tier="linux")
def test_raw_brk_success_returns_new_break() -> None:
    page = run().page_size
    result = run(f"rawbrk:cur+{2 * page}")
    assert result[0].ret == result.start + 2 * page == result[0].brk_after


@semantic("brk.raw.failure_returns_current_break",
          "On failure the raw brk system call returns the unchanged current break (never -1 and no "
          "errno): asking for an unbackable break, or one below the heap's start, leaves it where it was",
          source="brk(2) NOTES (C library/kernel differences)", tier="linux")
def test_raw_brk_failure_returns_current_break() -> None:
    result = run(f"rawbrk:cur+{HUGE}", f"rawbrk:start-{PAGE}", "rawbrk:1")
    assert [s.ret for s in result.steps] == [result.start] * 3
    assert [s.brk_after for s in result.steps] == [result.start] * 3


@semantic("brk.glibc.success_returns_zero",
          "glibc's brk(addr) returns 0 on success and the break is then addr",
          source="brk(2) RETURN VALUE", tier="linux")
def test_glibc_brk_success_returns_zero() -> None:
    page = run().page_size
    result = run(f"brk:start+{page + 100}")
    assert (result[0].ret, result[0].errno) == (0, 0)
    assert result[0].brk_after == result.start + page + 100


@semantic("brk.glibc.failure_enomem",
          "glibc's brk(addr) returns -1 with errno ENOMEM when the kernel cannot move the break up "
          "to addr, and sbrk(n) then returns (void *) -1 with ENOMEM; the break is unchanged",
          source="brk(2) RETURN VALUE, ERRORS", tier="linux")
def test_glibc_brk_failure_is_enomem() -> None:
    result = run(f"brk:cur+{HUGE}", f"sbrk:{HUGE}")
    assert (result[0].ret, result[0].errno) == (-1, errno.ENOMEM)
    assert result[1].sbrk_failed and result[1].errno == errno.ENOMEM
    assert result.final_break == result.start


@semantic("brk.glibc.below_start_returns_zero",
          "glibc's brk(addr) with addr below the heap start returns 0 without moving the break: glibc "
          "only reports ENOMEM when the break the kernel returns is below addr, and the kernel refused "
          "by returning the (higher) current break",
          source="brk(2) NOTES; glibc misc/brk.c (verified behaviour)", tier="impl")
def test_glibc_brk_below_start_returns_zero_without_moving() -> None:
    result = run(f"brk:start-{PAGE}", "brk:1")
    assert [(s.ret, s.errno) for s in result.steps] == [(0, 0), (0, 0)]
    assert [s.brk_after for s in result.steps] == [result.start] * 2


@semantic("brk.rlimit_data.enomem",
          "With RLIMIT_DATA set to L, growing the break so that the heap plus the initialised data "
          "segment would exceed L fails with ENOMEM, while growth well within L still succeeds",
          source="getrlimit(2) RLIMIT_DATA; brk(2) ERRORS", tier="linux")
def test_rlimit_data_limits_the_break() -> None:
    page = run().page_size
    limit = 256 * page
    hard = resource.getrlimit(resource.RLIMIT_DATA)[1]
    if hard != resource.RLIM_INFINITY and hard < limit:
        pytest.skip(f"limit:RLIMIT_DATA hard={hard} (the helper cannot set a soft limit of {limit})")
    result = run(f"rlimit-data:{limit}", f"sbrk:{limit + page}", f"sbrk:{page}")
    assert (result[0].ret, result[0].errno) == (0, 0), "setrlimit(RLIMIT_DATA) below the hard limit"
    assert result[1].sbrk_failed and result[1].errno == errno.ENOMEM
    assert result[1].brk_after == result.start
    assert result[2].ret == result.start and result[2].brk_after == result.start + page


# --- growing into a mapping (the helper maps just above the break: mmapat) ----------------

def _mapping_above_break(*steps: str) -> BrkRun:
    """A run whose first step maps 2 pages 4 pages above the initial break (MAP_FIXED_NOREPLACE,
    so nothing is replaced) and writes 7 at its start; then ``steps``."""
    page = PAGE
    result = run(f"mmapat:start+{4 * page},2", "write:slot0=7", *steps)
    if result[0].mmap_failed:
        pytest.skip(f"unsupported:mmapat (the pages above the break are taken: errno {result[0].errno})")
    assert result[0].ret == result.start + 4 * page and result[1].fault is None
    return result


@semantic("brk.raw.grow_into_mapping_unchanged",
          "The raw brk system call asked to grow the heap over an existing mapping fails by returning the "
          "unchanged break; the mapping and its data stay",
          source="brk(2) NOTES (C library/kernel differences); mm/mmap.c brk (checks the next mapping)",
          tier="linux")
def test_raw_brk_into_mapping() -> None:
    page = PAGE
    result = _mapping_above_break(f"rawbrk:start+{8 * page}", "read:slot0", "vma:slot0")
    assert (result[2].ret, result[2].brk_after) == (result.start, result.start)
    assert result[3].fault is None and result[3].value == 7
    vma = result[4].vma
    assert vma is not None and (vma.start, vma.length) == (result.start + 4 * page, 2 * page)


@semantic("brk.glibc.grow_into_mapping_enomem",
          "glibc's brk() asked to grow the heap over an existing mapping returns -1 with ENOMEM, and sbrk "
          "returns (void *) -1 with ENOMEM; the break is unchanged",
          source="brk(2) RETURN VALUE, ERRORS (ENOMEM)", tier="linux")
def test_glibc_brk_into_mapping() -> None:
    page = PAGE
    result = _mapping_above_break(f"brk:start+{8 * page}", f"sbrk:{8 * page}")
    assert (result[2].ret, result[2].errno) == (-1, errno.ENOMEM)
    assert result[3].sbrk_failed and result[3].errno == errno.ENOMEM
    assert result.final_break == result.start


@semantic("brk.grow.page_gap_below_mapping",
          "Linux keeps at least one free page between the heap and the next mapping: the break may grow "
          "to one page below that mapping, not up to its start",
          source="mm/mmap.c brk (newbrk + PAGE_SIZE > vm_start_gap(next) fails)", tier="impl")
def test_brk_keeps_a_page_below_the_next_mapping() -> None:
    page = PAGE
    result = _mapping_above_break(f"rawbrk:start+{4 * page}", f"rawbrk:start+{3 * page}", f"read:start+{3 * page - 1}")
    assert result[2].brk_after == result.start
    assert result[3].ret == result[3].brk_after == result.start + 3 * page
    assert result[4].fault is None and result[4].value == 0
