"""Conformance: process_madvise(2) (Linux 5.10) and the pidfd it takes (pidfd_open(2)).

The target of a remote call is the pytest process itself: a forked child (run_in_child)
opens a pidfd of its parent and advises the parent's mappings, which the test made
and owns; the child returns the call's result or errno name. So the memory advised is
never the caller's, the permission rules of a remote call apply (PTRACE_MODE_READ on
the target, then CAP_SYS_NICE), and nothing outlives the test: the child is reaped
by run_in_child and the mappings are unmapped by the fixtures. Only the advice values
that cannot lose data (MADV_COLD, MADV_PAGEOUT, MADV_WILLNEED) are accepted remotely;
the parent's bytes are read back after each call to show that nothing was discarded.
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Callable
from typing import Any

import pytest

from pytest_memsyscalls import LockedRegion, MappedPages, RunInChild, fails_with, requires, semantic
from pytest_memsyscalls.environment.fingerprint import Environment
from pytest_memsyscalls.kernel import constants as C
from pytest_memsyscalls.kernel import libc, probe
from pytest_memsyscalls.kernel.libc import PAGE_SIZE as PAGE
from pytest_memsyscalls.memory.mapping import Arena, Mapping

from ._oracles import drop_capability, effective_caps

CAP_SYS_NICE = 23
OTHER_UID = 65534  # nobody: the "another user" of the permission tests


# --- helpers (the functions ending in _child run in the forked child) ------------------

def _outcome(fn: Callable[..., Any], *args: Any) -> int | str:
    """What fn(*args) returned, or the errno's name: what a child reports back."""
    try:
        return int(fn(*args))
    except OSError as error:
        return errno.errorcode.get(error.errno or 0, str(error.errno))


def _advise_parent_child(ranges: list[tuple[int, int]], advice: int, flags: int = 0) -> int | str:
    pidfd = libc.pidfd_open(os.getppid())
    return _outcome(libc.process_madvise, pidfd, ranges, advice, flags)


def _filled(mapped_pages: MappedPages, pages: int, value: int) -> Mapping:
    m = mapped_pages(pages)
    ctypes.memset(m.addr, value, m.length)
    return m


def _first_bytes(m: Mapping) -> list[int | None]:
    return [probe.read_value(m.page(i))[1] for i in range(m.pages)]


# =====================================================================================
# Success: what it returns and what it leaves
# =====================================================================================

@semantic("process_madvise.remote.returns_bytes_advised",
          "process_madvise on another process returns the total number of bytes advised over all iovec "
          "ranges (here MADV_COLD on two ranges), and the target's data is unchanged.",
          source="process_madvise(2) RETURN VALUE", tier="linux")
@requires("feature:PROCESS_MADVISE", "cap:CAP_SYS_NICE")
def test_returns_bytes(mapped_pages: MappedPages, run_in_child: RunInChild) -> None:
    first = _filled(mapped_pages, 2, 0x41)
    second = _filled(mapped_pages, 3, 0x42)
    ranges = [(first.addr, first.length), (second.addr, second.length)]
    assert run_in_child(_advise_parent_child, ranges, C.MADV_COLD).result() == 5 * PAGE
    assert _first_bytes(first) == [0x41] * 2 and _first_bytes(second) == [0x42] * 3


@semantic("process_madvise.remote.partial_count_on_later_failure",
          "When a later iovec range fails after earlier ones were advised, process_madvise returns the "
          "bytes advised so far instead of the error (MADV_COLD: an unlocked range, then a locked one).",
          source="process_madvise(2) RETURN VALUE (may be less than the total)", tier="linux")
@requires("feature:PROCESS_MADVISE", "cap:CAP_SYS_NICE")
def test_partial_count(mapped_pages: MappedPages, locked_region: LockedRegion, run_in_child: RunInChild) -> None:
    plain = _filled(mapped_pages, 2, 0x43)
    locked = locked_region(1)
    ranges = [(plain.addr, plain.length), (locked.addr, locked.length)]
    assert run_in_child(_advise_parent_child, ranges, C.MADV_COLD).result() == 2 * PAGE


@semantic("process_madvise.self.any_advice",
          "With a pidfd of the caller itself, process_madvise takes any advice madvise takes: "
          "MADV_DONTNEED returns the length and the private anonymous pages read back zero.",
          source="process_madvise(2) (Linux 6.13: the calling process may use any advice)", tier="linux")
@requires("feature:PROCESS_MADVISE_SELF")
def test_self_any_advice(arena: Arena) -> None:
    m = arena.map(1, 3)
    ctypes.memset(m.addr, 0x44, m.length)
    pidfd = libc.pidfd_open(os.getpid())
    try:
        assert libc.process_madvise(pidfd, [(m.page(1), 2 * PAGE)], C.MADV_DONTNEED) == 2 * PAGE
    finally:
        os.close(pidfd)
    assert _first_bytes(m) == [0x44, 0, 0]


# =====================================================================================
# Errors
# =====================================================================================

@pytest.mark.parametrize("advice", [C.MADV_DONTNEED, C.MADV_FREE, C.MADV_NORMAL], ids=["dontneed", "free", "normal"])
@semantic("process_madvise.remote.unsupported_advice_einval",
          "For another process only MADV_COLD, MADV_PAGEOUT, MADV_WILLNEED and MADV_COLLAPSE are accepted: "
          "any other advice fails with EINVAL and the target's data stays.",
          source="process_madvise(2) ERRORS (EINVAL); DESCRIPTION (the advice values)", tier="linux")
@requires("feature:PROCESS_MADVISE")
def test_remote_unsupported_advice(mapped_pages: MappedPages, run_in_child: RunInChild, advice: int) -> None:
    m = _filled(mapped_pages, 2, 0x45)
    assert run_in_child(_advise_parent_child, [(m.addr, m.length)], advice).result() == "EINVAL"
    assert _first_bytes(m) == [0x45, 0x45]


@semantic("process_madvise.errors.flags_einval", "process_madvise with flags other than 0 fails with EINVAL.",
          source="process_madvise(2) ERRORS (EINVAL: flags is not 0)", tier="linux")
@requires("feature:PROCESS_MADVISE")
def test_flags_einval(mapped_pages: MappedPages, run_in_child: RunInChild) -> None:
    m = mapped_pages(1)
    assert run_in_child(_advise_parent_child, [(m.addr, m.length)], C.MADV_COLD, 1).result() == "EINVAL"


@semantic("process_madvise.errors.bad_pidfd_ebadf",
          "process_madvise with a descriptor that is not open, or that is open but not a pidfd, fails "
          "with EBADF.",
          source="process_madvise(2) ERRORS (EBADF)", tier="linux")
@requires("feature:PROCESS_MADVISE")
def test_bad_pidfd(mapped_pages: MappedPages) -> None:
    m = mapped_pages(1)
    plain = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
    os.close(plain)
    fails_with(errno.EBADF, libc.process_madvise, plain, [(m.addr, m.length)], C.MADV_COLD)
    not_a_pidfd = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
    try:
        fails_with(errno.EBADF, libc.process_madvise, not_a_pidfd, [(m.addr, m.length)], C.MADV_COLD)
    finally:
        os.close(not_a_pidfd)


@semantic("process_madvise.errors.unmapped_enomem",
          "process_madvise over a range the target has not mapped fails with ENOMEM.",
          source="process_madvise(2) ERRORS (ENOMEM)", tier="linux")
@requires("feature:PROCESS_MADVISE", "cap:CAP_SYS_NICE")
def test_unmapped(arena: Arena, run_in_child: RunInChild) -> None:
    arena.hole(5, 2)
    assert run_in_child(_advise_parent_child, [(arena.page(5), 2 * PAGE)], C.MADV_COLD).result() == "ENOMEM"


def _without_sys_nice_child(ranges: list[tuple[int, int]]) -> int | str:
    if "CAP_SYS_NICE" in effective_caps():
        drop_capability(CAP_SYS_NICE)
    if "CAP_SYS_NICE" in effective_caps():
        return "CAP_SYS_NICE still effective: refused to call"
    return _advise_parent_child(ranges, C.MADV_COLD)


@semantic("process_madvise.privilege.cap_sys_nice_eperm",
          "Advising another process (of the same user, so PTRACE_MODE_READ passes) without CAP_SYS_NICE "
          "fails with EPERM; checked in a child that dropped the capability.",
          source="process_madvise(2) ERRORS (EPERM: CAP_SYS_NICE); Linux 5.12 permission rules", tier="linux")
@requires("feature:PROCESS_MADVISE")
def test_needs_cap_sys_nice(mapped_pages: MappedPages, run_in_child: RunInChild) -> None:
    m = _filled(mapped_pages, 1, 0x46)
    assert run_in_child(_without_sys_nice_child, [(m.addr, m.length)]).result() == "EPERM"
    assert _first_bytes(m) == [0x46]


def _as_other_user_child(ranges: list[tuple[int, int]]) -> int | str:
    pidfd = libc.pidfd_open(os.getppid())  # opening needs no permission; using it does
    os.setgroups([])
    os.setresgid(OTHER_UID, OTHER_UID, OTHER_UID)
    os.setresuid(OTHER_UID, OTHER_UID, OTHER_UID)
    return _outcome(libc.process_madvise, pidfd, ranges, C.MADV_COLD, 0)


@semantic("process_madvise.privilege.ptrace_read_eacces",
          "Advising a process the caller may not inspect (PTRACE_MODE_READ fails: another user's "
          "process) fails with EACCES from the ptrace check, although the man page lists EPERM.",
          source="process_madvise(2) ERRORS (EPERM) vs mm/madvise.c (mm_access: EACCES)", tier="impl")
@requires("feature:PROCESS_MADVISE", "setuid")
def test_ptrace_read_needed(mapped_pages: MappedPages, run_in_child: RunInChild,
                            memsys_env: Environment) -> None:
    if memsys_env.identity.euid == OTHER_UID:
        pytest.skip(f"needs:another uid than {OTHER_UID} (the test process runs as it)")
    m = _filled(mapped_pages, 1, 0x47)
    assert run_in_child(_as_other_user_child, [(m.addr, m.length)]).result() == "EACCES"
    assert _first_bytes(m) == [0x47]
