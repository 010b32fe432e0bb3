"""Conformance: mlock, mlock2, munlock, mlockall, munlockall.

Every expectation is computed from the environment before the call: who we are
(CAP_IPC_LOCK), RLIMIT_MEMLOCK, and how much this process has locked already
(VmLck). Tests whose point is the limit or the privilege run in a forked child
that sets its own limit (lowering is always allowed) and drops CAP_IPC_LOCK
with capset(2), so they assert the documented error in every environment.
mlockall and munlockall are process-wide: they run in memsys-brk-helper, a small
exec'd process of its own (mlockall(MCL_CURRENT) there locks a few MB, not a copy
of pytest), except where a forked child must first lower its limit and drop
CAP_IPC_LOCK; never in the pytest process.

Oracles: mincore(2) for residency, /proc/self/status VmLck for the locked
amount, /proc/self/smaps VmFlags ``lo`` (VM_LOCKED) and ``lf`` (VM_LOCKONFAULT)
and the ``Locked:`` counter for the VMA.
"""

from __future__ import annotations

import ctypes
import errno
import resource
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from pytest_memsyscalls import LockedRegion, MappedPages, RunInChild, fails_with, requires, semantic, succeeds
from pytest_memsyscalls.environment import fingerprint as environment
from pytest_memsyscalls.environment.needs import lockable_shortfall
from pytest_memsyscalls.kernel import constants as C
from pytest_memsyscalls.kernel import libc, procfs
from pytest_memsyscalls.kernel.constants import ANON, RW
from pytest_memsyscalls.kernel.libc import PAGE_SIZE as PAGE
from pytest_memsyscalls.memory import brk

from ._oracles import drop_capability, effective_caps, mincore_sees_residency, resident, vmflags

CAP_IPC_LOCK = 14
SECRET = b"SecretPassword123\0"


# --- environment facts (computed locally; see the report about `environment`) ------

def vmlck_kb() -> int | None:
    """VmLck of this process in kB; None where the line is missing (gVisor)."""
    return procfs.status_kb(procfs.read_status(), "VmLck")


def has_ipc_lock() -> bool:
    """CAP_IPC_LOCK that mlock honours: in CapEff now (a child may have dropped it) and
    not merely inside a user namespace, where mlock still enforces RLIMIT_MEMLOCK."""
    return "CAP_IPC_LOCK" in effective_caps() and environment.detect().capabilities.has("CAP_IPC_LOCK")


def memlock_soft() -> int | None:
    """RLIMIT_MEMLOCK soft limit in bytes, None when unlimited."""
    soft, _ = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    return None if soft == resource.RLIM_INFINITY else soft


def memlock_hard() -> int | None:
    _, hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    return None if hard == resource.RLIM_INFINITY else hard


def smaps_field(addr: int, name: str) -> int | None:
    entry = procfs.smaps_at(addr)
    return entry.get(name) if entry is not None else None


def need_residency_oracle() -> None:
    if not mincore_sees_residency():
        pytest.skip("unsupported:mincore residency (a probe saw an untouched anonymous page reported resident)")


def need_lockable(memsys_env: Any, length: int) -> None:
    """Skip, naming the limit, when this process cannot lock `length` more bytes."""
    reason = lockable_shortfall(memsys_env, length)
    if reason:
        pytest.skip(reason)


# --- privilege changes, for children only ------------------------------------------

def become_unprivileged_locker(limit: int) -> None:
    """In a child: RLIMIT_MEMLOCK = limit (soft and hard, a lowering), no CAP_IPC_LOCK."""
    resource.setrlimit(resource.RLIMIT_MEMLOCK, (limit, limit))
    if has_ipc_lock():
        drop_capability(CAP_IPC_LOCK)


def settable_limit(wanted: int) -> int:
    """`wanted` if the hard limit allows lowering to it (it always does unless hard < wanted)."""
    hard = memlock_hard()
    if hard is not None and hard < wanted:
        pytest.skip(f"limit:RLIMIT_MEMLOCK hard={hard} (the test needs to set {wanted})")
    return wanted


def call_errno(fn: Callable[..., Any], *args: Any) -> int:
    """0 on success, else the errno; for use in children, whose result is pickled."""
    try:
        fn(*args)
    except OSError as error:
        return error.errno or -1
    return 0


def map_anon(pages: int) -> int:
    return libc.mmap(0, pages * PAGE, RW, ANON)


# Locked memory a test leaves behind is the leak guard's to report (plugin/leaks.py
# checks VmLck around every test and honours --memsys-leaks).

# =====================================================================================
# mlock / munlock
# =====================================================================================

@semantic("mlock.lock.pages_resident",
          "All pages containing part of the range are resident in RAM when mlock returns.",
          source="mlock(2) DESCRIPTION; POSIX mlock", tier="posix")
def test_mlock_makes_pages_resident(mapped_pages: MappedPages, memsys_env: Any) -> None:
    need_residency_oracle()
    m = mapped_pages(4)
    assert resident(m.addr, m.length) == [False] * 4, "a fresh anonymous mapping starts non-resident"
    need_lockable(memsys_env, m.length)
    succeeds(libc.mlock, m.addr, m.length)
    assert resident(m.addr, m.length) == [True] * 4
    libc.munlock(m.addr, m.length)


@semantic("mlock.lock.vmlck_accounting",
          "VmLck in /proc/self/status grows by the locked length and shrinks back after munlock.",
          source="mlock(2) Linux notes; proc(5) VmLck", tier="linux")
def test_mlock_vmlck_grows_and_shrinks(mapped_pages: MappedPages, memsys_env: Any) -> None:
    m = mapped_pages(4)
    need_lockable(memsys_env, m.length)
    before = vmlck_kb()
    assert before is not None, "no VmLck line in /proc/self/status"
    libc.mlock(m.addr, m.length)
    assert vmlck_kb() == before + m.length // 1024
    libc.munlock(m.addr, m.length)
    assert vmlck_kb() == before


@semantic("mlock.lock.smaps_locked",
          "A locked VMA shows 'lo' in smaps VmFlags and its Locked: counter equals its resident size.",
          source="proc(5) /proc/pid/smaps VmFlags", tier="linux")
def test_mlock_shows_in_smaps(locked_region: LockedRegion) -> None:
    m = locked_region(4)
    entry = procfs.smaps_at(m.addr)
    assert entry is not None
    assert "lo" in entry.vmflags
    assert entry.maps.start <= m.addr and entry.maps.end >= m.end
    assert entry.get("Locked") == entry.get("Rss") == entry.maps.length // 1024


@semantic("munlock.unlock.clears_lock",
          "After munlock the range is no longer locked: no 'lo' flag and a Locked: counter of 0.",
          source="mlock(2) DESCRIPTION; proc(5)", tier="linux")
def test_munlock_clears_lock(locked_region: LockedRegion) -> None:
    m = locked_region(2)
    assert "lo" in vmflags(m.addr)
    succeeds(libc.munlock, m.addr, m.length)
    assert "lo" not in vmflags(m.addr)
    assert smaps_field(m.addr, "Locked") == 0


@semantic("mlock.lock.no_nesting",
          "Locks do not stack: two mlock calls are undone by a single munlock.",
          source="mlock(2) NOTES; POSIX mlock", tier="posix")
def test_mlock_does_not_nest(mapped_pages: MappedPages, memsys_env: Any) -> None:
    m = mapped_pages(2)
    need_lockable(memsys_env, m.length)
    before = vmlck_kb()
    libc.mlock(m.addr, m.length)
    libc.mlock(m.addr, m.length)
    if before is not None:
        assert vmlck_kb() == before + m.length // 1024, "a second mlock must not count twice"
    libc.munlock(m.addr, m.length)
    assert "lo" not in vmflags(m.addr)
    assert vmlck_kb() == before


def _child_lock_view(addr: int) -> tuple[int | None, bool, bool]:
    """In the child: (VmLck kB, 'lo' on the inherited range, page still readable)."""
    from pytest_memsyscalls.kernel import probe

    return vmlck_kb(), "lo" in vmflags(addr), probe.read(addr) is None


@semantic("mlock.fork.not_inherited",
          "A child created by fork does not inherit memory locks: its VmLck is 0 and the range has no 'lo'.",
          source="mlock(2) NOTES; fork(2)", tier="posix")
def test_mlock_not_inherited_by_fork(locked_region: LockedRegion,
                                     run_in_child: RunInChild) -> None:
    m = locked_region(2)
    child_vmlck, child_locked, readable = run_in_child(_child_lock_view, m.addr).result()
    assert readable, "the range itself is inherited"
    assert child_locked is False
    assert child_vmlck in (0, None)
    assert "lo" in vmflags(m.addr), "the parent keeps its lock"


@semantic("mlock.munmap.removes_lock",
          "Unmapping a locked range removes its lock (VmLck drops by the unmapped length).",
          source="mlock(2) NOTES", tier="linux")
def test_munmap_removes_lock(memsys_env: Any) -> None:
    need_lockable(memsys_env, 3 * PAGE)
    before = vmlck_kb()
    addr = map_anon(3)
    try:
        libc.mlock(addr, 3 * PAGE)
        libc.munmap(addr + PAGE, PAGE)
        if before is not None:
            assert vmlck_kb() == before + 2 * PAGE // 1024
        libc.munmap(addr, 3 * PAGE)
        assert vmlck_kb() == before
    finally:
        libc.munmap(addr, 3 * PAGE)


@semantic("mlock.addr.rounded_down",
          "Linux rounds an unaligned addr down to its page: mlock(addr+1, 1) locks exactly that page.",
          source="mlock(2) Linux notes", tier="linux")
def test_mlock_unaligned_address_rounds_down(mapped_pages: MappedPages, memsys_env: Any) -> None:
    m = mapped_pages(2)
    need_lockable(memsys_env, PAGE)
    before = vmlck_kb()
    succeeds(libc.mlock, m.addr + 1, 1)
    if before is not None:
        assert vmlck_kb() == before + PAGE // 1024
    assert "lo" in vmflags(m.addr)
    assert "lo" not in vmflags(m.page(1))
    assert resident(m.addr, PAGE) == [True]
    libc.munlock(m.addr + 1, 1)
    assert "lo" not in vmflags(m.addr)


# --- mlock2 ---------------------------------------------------------------------------

@semantic("mlock2.flags.zero_same_as_mlock",
          "mlock2 with flags 0 behaves exactly as mlock: the range is locked and resident.",
          source="mlock(2) DESCRIPTION", tier="linux")
def test_mlock2_zero_flags(mapped_pages: MappedPages, memsys_env: Any) -> None:
    m = mapped_pages(2)
    need_lockable(memsys_env, m.length)
    succeeds(libc.mlock2, m.addr, m.length, 0)
    assert "lo" in vmflags(m.addr) and "lf" not in vmflags(m.addr)
    assert resident(m.addr, m.length) == [True, True]
    libc.munlock(m.addr, m.length)


@semantic("mlock2.onfault.not_populated",
          "mlock2(MLOCK_ONFAULT) does not fault in non-resident pages.",
          source="mlock(2) MLOCK_ONFAULT", tier="linux")
@requires("feature:MLOCK_ONFAULT")
def test_mlock2_onfault_does_not_populate(mapped_pages: MappedPages, memsys_env: Any) -> None:
    need_residency_oracle()
    m = mapped_pages(4)
    need_lockable(memsys_env, m.length)
    succeeds(libc.mlock2, m.addr, m.length, C.MLOCK_ONFAULT)
    assert resident(m.addr, m.length) == [False] * 4
    libc.munlock(m.addr, m.length)


@semantic("mlock2.onfault.vmflags",
          "A range locked with MLOCK_ONFAULT shows both 'lo' and 'lf' (lock on fault) in VmFlags.",
          source="mlock(2) MLOCK_ONFAULT; proc(5) VmFlags", tier="linux")
@requires("feature:MLOCK_ONFAULT")
def test_mlock2_onfault_vmflags(locked_region: LockedRegion) -> None:
    m = locked_region(2, onfault=True)
    assert {"lo", "lf"} <= vmflags(m.addr)


@semantic("mlock2.onfault.touched_pages_locked",
          "With MLOCK_ONFAULT a page becomes resident and locked when touched; untouched pages stay out.",
          source="mlock(2) MLOCK_ONFAULT", tier="linux")
@requires("feature:MLOCK_ONFAULT")
def test_mlock2_onfault_locks_on_touch(locked_region: LockedRegion) -> None:
    m = locked_region(4, onfault=True)
    assert m.write(0, 0x5A) is None
    if mincore_sees_residency():
        assert resident(m.addr, m.length) == [True, False, False, False]
    assert smaps_field(m.addr, "Locked") == PAGE // 1024


@semantic("mlock2.onfault.vmlck_counts_range",
          "Linux accounts the whole MLOCK_ONFAULT range in VmLck at once, resident or not.",
          source="mm/mlock.c mlock_fixup (locked_vm += range)", tier="impl")
@requires("feature:MLOCK_ONFAULT")
def test_mlock2_onfault_vmlck(mapped_pages: MappedPages, memsys_env: Any) -> None:
    m = mapped_pages(4)
    need_lockable(memsys_env, m.length)
    before = vmlck_kb()
    assert before is not None, "no VmLck line in /proc/self/status"
    libc.mlock2(m.addr, m.length, C.MLOCK_ONFAULT)
    assert vmlck_kb() == before + m.length // 1024
    libc.munlock(m.addr, m.length)


# --- errors ---------------------------------------------------------------------------

@semantic("mlock2.errors.unknown_flags",
          "mlock2 with a flag other than MLOCK_ONFAULT fails with EINVAL.",
          source="mlock(2) ERRORS", tier="linux")
def test_mlock2_unknown_flags(mapped_pages: MappedPages) -> None:
    m = mapped_pages(1)
    fails_with(errno.EINVAL, libc.mlock2, m.addr, m.length, 0x2)
    assert "lo" not in vmflags(m.addr)


def _expected_lock_errno(length_exceeds_limit: bool, other: int) -> int:
    """The errno mlock gives here, per mm/mlock.c's order: EPERM (limit 0, no cap),
    then ENOMEM (over RLIMIT_MEMLOCK, no cap), then `other` (the range check)."""
    soft = memlock_soft()
    if has_ipc_lock():
        return other
    if soft == 0:
        return errno.EPERM
    if soft is not None and length_exceeds_limit:
        return errno.ENOMEM
    return other


@semantic("mlock.errors.overflow",
          "addr+len overflowing fails: EINVAL per the man page, but a caller under RLIMIT_MEMLOCK "
          "(no CAP_IPC_LOCK) gets ENOMEM (EPERM at limit 0) because Linux checks the limit first.",
          source="mlock(2) ERRORS; mm/mlock.c do_mlock", tier="linux")
def test_mlock_overflow(mapped_pages: MappedPages) -> None:
    m = mapped_pages(1)
    length = (1 << 64) - m.addr + PAGE
    fails_with(_expected_lock_errno(True, errno.EINVAL), libc.mlock, m.addr, length)


@semantic("mlock.errors.unmapped",
          "mlock of a range that is not mapped fails with ENOMEM (EPERM first at RLIMIT_MEMLOCK 0 "
          "without CAP_IPC_LOCK).",
          source="mlock(2) ERRORS", tier="linux")
def test_mlock_unmapped_range(arena: Any) -> None:
    arena.hole(0, 2)
    fails_with(_expected_lock_errno(False, errno.ENOMEM), libc.mlock, arena.page(0), 2 * PAGE)


@semantic("mlock.length.zero_noop",
          "mlock and munlock with length 0 succeed without looking at the range (an unmapped page here) "
          "and lock nothing; only mlock's privilege check comes first (EPERM at RLIMIT_MEMLOCK 0 without "
          "CAP_IPC_LOCK).",
          source="mlock(2); mm/mlock.c do_mlock (can_do_mlock, then an empty range)", tier="impl")
def test_mlock_zero_length(arena: Any) -> None:
    arena.hole(0)
    before = vmlck_kb()
    expected = _expected_lock_errno(False, 0)
    if expected:
        fails_with(expected, libc.mlock, arena.page(0), 0)
    else:
        succeeds(libc.mlock, arena.page(0), 0)
    succeeds(libc.munlock, arena.page(0), 0)
    assert vmlck_kb() == before


@semantic("munlock.errors.unmapped",
          "munlock of a range that is not mapped fails with ENOMEM (no privilege is involved).",
          source="mlock(2) ERRORS", tier="linux")
def test_munlock_unmapped_range(arena: Any) -> None:
    arena.hole(0, 2)
    fails_with(errno.ENOMEM, libc.munlock, arena.page(0), 2 * PAGE)


@semantic("mlock.errors.hole_partially_applied",
          "mlock over mapped pages followed by a hole fails with ENOMEM, but Linux has already set "
          "VM_LOCKED on the pages before the hole, although mlock(2) says no change is made.",
          source="mlock(2) RETURN VALUE vs mm/mlock.c apply_vma_lock_flags", tier="impl")
def test_mlock_hole_partially_applied(arena: Any, memsys_env: Any) -> None:
    need_lockable(memsys_env, 4 * PAGE)
    first = arena.map(0, 2)
    last = arena.map(3, 1)
    arena.hole(2)
    fails_with(errno.ENOMEM, libc.mlock, first.addr, 4 * PAGE)
    assert "lo" in vmflags(first.addr)
    assert "lo" not in vmflags(last.addr)
    libc.munlock(first.addr, first.length)


# --- limits and privilege (children set their own limit) -----------------------------

def _lock_under_limit(limit: int, first: int, second: int) -> tuple[int, int, int | None]:
    become_unprivileged_locker(limit)
    a = map_anon(first // PAGE + second // PAGE)
    return call_errno(libc.mlock, a, first), call_errno(libc.mlock, a + first, second), vmlck_kb()


@semantic("mlock.limit.enomem_over_rlimit",
          "Without CAP_IPC_LOCK, locking past the RLIMIT_MEMLOCK soft limit (counting what is already "
          "locked) fails with ENOMEM.",
          source="mlock(2) ERRORS (ENOMEM, Linux 2.6.9+)", tier="linux")
def test_mlock_enomem_over_rlimit(run_in_child: RunInChild) -> None:
    limit = settable_limit(2 * PAGE)
    first, second, locked = run_in_child(_lock_under_limit, limit, 2 * PAGE, PAGE).result()
    assert first == 0, f"locking exactly the limit should succeed, got {errno.errorcode.get(first)}"
    assert second == errno.ENOMEM, f"one page past the limit should be ENOMEM, got {errno.errorcode.get(second)}"
    assert locked in (2 * PAGE // 1024, None)


@semantic("mlock.limit.process_budget",
          "In this process, locking one page more than RLIMIT_MEMLOCK minus VmLck fails with ENOMEM "
          "(EPERM at limit 0) unless the caller has CAP_IPC_LOCK, which lifts the limit.",
          source="mlock(2) ERRORS; Limits and permissions", tier="linux")
def test_mlock_process_budget(mapped_pages: MappedPages) -> None:
    soft = memlock_soft()
    if soft is None:
        pytest.skip("limit:RLIMIT_MEMLOCK=unlimited (there is no limit to exceed)")
    if soft > 256 << 20:
        pytest.skip(f"limit:RLIMIT_MEMLOCK={soft} (too large to exceed cheaply in a test)")
    available = soft - (vmlck_kb() or 0) * 1024
    pages = max(available, 0) // PAGE + 1
    m = mapped_pages(pages)
    if has_ipc_lock():
        succeeds(libc.mlock, m.addr, m.length)
        libc.munlock(m.addr, m.length)
    else:
        fails_with(errno.EPERM if soft == 0 else errno.ENOMEM, libc.mlock, m.addr, m.length)
        assert "lo" not in vmflags(m.addr)


def _lock_with_zero_limit(call: str) -> int:
    become_unprivileged_locker(0)
    a = map_anon(1)
    if call == "mlock":
        return call_errno(libc.mlock, a, PAGE)
    return call_errno(libc.mlock2, a, PAGE, C.MLOCK_ONFAULT)


@pytest.mark.parametrize("call", ["mlock", "mlock2"])
@semantic("mlock.privilege.eperm_zero_limit",
          "With RLIMIT_MEMLOCK 0 and no CAP_IPC_LOCK, locking is refused with EPERM.",
          source="mlock(2) ERRORS (EPERM)", tier="linux")
def test_mlock_eperm_zero_limit(run_in_child: RunInChild, call: str) -> None:
    assert run_in_child(_lock_with_zero_limit, call).result() == errno.EPERM


def _mlockall_with_zero_limit() -> int:
    become_unprivileged_locker(0)
    return call_errno(libc.mlockall, C.MCL_CURRENT)


@semantic("mlockall.privilege.eperm_zero_limit",
          "With RLIMIT_MEMLOCK 0 and no CAP_IPC_LOCK, mlockall is refused with EPERM.",
          source="mlock(2) ERRORS (EPERM)", tier="linux")
def test_mlockall_eperm_zero_limit(run_in_child: RunInChild) -> None:
    assert run_in_child(_mlockall_with_zero_limit).result() == errno.EPERM


def _munlock_with_zero_limit() -> int:
    become_unprivileged_locker(0)
    a = map_anon(1)
    return call_errno(libc.munlock, a, PAGE)


@semantic("munlock.privilege.none_needed",
          "munlock needs no privilege: it succeeds with RLIMIT_MEMLOCK 0 and no CAP_IPC_LOCK.",
          source="mlock(2) ERRORS (munlockall EPERM only in Linux <= 2.6.8)", tier="linux")
def test_munlock_needs_no_privilege(run_in_child: RunInChild) -> None:
    assert run_in_child(_munlock_with_zero_limit).result() == 0


def _lock_with_cap(limit: int, pages: int) -> tuple[int, int | None]:
    resource.setrlimit(resource.RLIMIT_MEMLOCK, (limit, limit))
    a = map_anon(pages)
    return call_errno(libc.mlock, a, pages * PAGE), vmlck_kb()


@requires("cap:CAP_IPC_LOCK")
@semantic("mlock.privilege.cap_bypasses_zero_limit",
          "A caller with CAP_IPC_LOCK may lock memory although RLIMIT_MEMLOCK is 0.",
          source="mlock(2) Limits and permissions", tier="linux")
def test_cap_ipc_lock_bypasses_zero_limit(run_in_child: RunInChild) -> None:
    result, locked = run_in_child(_lock_with_cap, 0, 4).result()
    assert result == 0, f"mlock failed with {errno.errorcode.get(result)}"
    assert locked in (4 * PAGE // 1024, None)


@requires("cap:CAP_IPC_LOCK")
@semantic("mlock.privilege.cap_bypasses_limit",
          "A caller with CAP_IPC_LOCK may lock more than its RLIMIT_MEMLOCK.",
          source="mlock(2) ERRORS (ENOMEM: not enforced with CAP_IPC_LOCK)", tier="linux")
def test_cap_ipc_lock_bypasses_limit(run_in_child: RunInChild) -> None:
    result, locked = run_in_child(_lock_with_cap, PAGE, 4).result()
    assert result == 0, f"mlock failed with {errno.errorcode.get(result)}"
    assert locked in (4 * PAGE // 1024, None)


# =====================================================================================
# mlockall / munlockall (in memsys-brk-helper, or in children that drop privileges)
# =====================================================================================
#
# mlockall is process-wide, and mlockall(MCL_CURRENT) locks (so populates) every mapping
# of its caller: in a fork of pytest that is tens of MB to copy. memsys-brk-helper is a
# separate, exec'd process of a few MB that runs the calls and reads its own /proc files,
# so these tests ask it. Only the tests that must first lower RLIMIT_MEMLOCK and drop
# CAP_IPC_LOCK run in a forked child (they fail fast, before touching any page).

def helper_vmsize(pages: int) -> int | None:
    """The helper's VmSize with ``pages`` pages of its own mapped: its size before any
    experiment (in the fingerprint, ``memsyscalls env``) plus the pages."""
    base = brk.helper_facts().vmsize
    return None if base is None else base + pages * PAGE


def need_helper_mlockall_current(pages: int) -> None:
    """Skip, naming both numbers, when mlockall(MCL_CURRENT) cannot succeed in the helper
    with ``pages`` mapped: RLIMIT_MEMLOCK below its VmSize (EPERM at 0) and no CAP_IPC_LOCK."""
    soft = memlock_soft()
    if soft is None:
        return
    if brk.helper_facts().ipc_lock:
        return
    vmsize = helper_vmsize(pages)
    if soft == 0:
        pytest.skip("limit:RLIMIT_MEMLOCK=0 (no CAP_IPC_LOCK: mlockall is refused with EPERM)")
    if vmsize is None:
        pytest.skip(f"unsupported:VmSize (RLIMIT_MEMLOCK={soft} and no CAP_IPC_LOCK, but the helper's "
                    f"/proc/self/status has no VmSize to compare it with)")
    if vmsize > soft:
        pytest.skip(f"limit:RLIMIT_MEMLOCK={soft} (mlockall(MCL_CURRENT) needs the helper's whole VmSize "
                    f"{vmsize} bytes, its {pages} mapped pages included, lockable; no CAP_IPC_LOCK)")


def need_future_lock(pages: int) -> None:
    """Skip when the helper cannot lock ``pages`` new pages after mlockall(MCL_FUTURE)
    (which checks nothing but RLIMIT_MEMLOCK 0 itself; each later mmap is checked)."""
    soft = memlock_soft()
    if soft is None or brk.helper_facts().ipc_lock:
        return
    if soft == 0:
        pytest.skip("limit:RLIMIT_MEMLOCK=0 (no CAP_IPC_LOCK: mlockall is refused with EPERM)")
    if soft < pages * PAGE:
        pytest.skip(f"limit:RLIMIT_MEMLOCK={soft} (the MCL_FUTURE test maps {pages * PAGE} bytes "
                    f"locked, no CAP_IPC_LOCK)")


def errno_name(step: brk.Step) -> str:
    return "success" if step.errno == 0 else errno.errorcode.get(step.errno or -1, str(step.errno))


@pytest.mark.parametrize("flags", [0x8, 0x10 | C.MCL_CURRENT], ids=["bit3", "bit4-with-current"])
@semantic("mlockall.flags.unknown_einval", "mlockall with an unknown flag bit fails with EINVAL.",
          source="mlock(2) ERRORS", tier="linux")
def test_mlockall_unknown_flags(flags: int) -> None:
    call = brk.run(f"mlockall:{flags}")[0]
    assert call.errno == errno.EINVAL, f"mlockall({flags:#x}): {errno_name(call)}"


@semantic("mlockall.flags.zero_einval",
          "mlockall(0) fails with EINVAL: flags must name MCL_CURRENT, MCL_FUTURE or both.",
          source="mlock(2) DESCRIPTION (one or more of) and mm/mlock.c", tier="linux")
def test_mlockall_zero_flags() -> None:
    call = brk.run("mlockall:0")[0]
    assert call.errno == errno.EINVAL, f"mlockall(0): {errno_name(call)}"


@semantic("mlockall.flags.onfault_alone_einval",
          "MCL_ONFAULT without MCL_CURRENT or MCL_FUTURE fails with EINVAL.",
          source="mlock(2) ERRORS", tier="linux")
def test_mlockall_onfault_alone() -> None:
    call = brk.run(f"mlockall:{C.MCL_ONFAULT}")[0]
    assert call.errno == errno.EINVAL, f"mlockall(MCL_ONFAULT): {errno_name(call)}"


CURRENT_PAGES = 4


@dataclass(frozen=True)
class CurrentView:
    """The helper around mlockall(flags) with MCL_CURRENT: a mapping made before it, seen
    after mlockall and again after munlockall."""

    vmsize: brk.Step
    mlockall: brk.Step
    flags: brk.Step
    residency: brk.Step
    vmlck: brk.Step
    munlockall: brk.Step
    after_flags: brk.Step
    after_vmlck: brk.Step


def mlockall_current(flags: int) -> CurrentView:
    run = brk.run(f"mmap:{CURRENT_PAGES}", "status:VmSize", f"mlockall:{flags}", "vmflags:slot0",
                  f"mincore:slot0,{CURRENT_PAGES}", "status:VmLck", "munlockall", "vmflags:slot0",
                  "status:VmLck")
    assert run[0].errno == 0, f"the helper's mmap failed: {run[0]}"
    view = CurrentView(*run.steps[1:])
    assert view.mlockall.errno == 0, (f"mlockall({flags:#x}) failed with {errno_name(view.mlockall)} "
                                      f"(helper VmSize {view.vmsize.status}, RLIMIT_MEMLOCK {memlock_soft()})")
    return view


@semantic("mlockall.current.locks_existing",
          "mlockall(MCL_CURRENT) locks every current mapping and makes its pages resident.",
          source="mlock(2) MCL_CURRENT; POSIX mlockall", tier="posix")
def test_mlockall_current() -> None:
    need_helper_mlockall_current(CURRENT_PAGES)
    view = mlockall_current(C.MCL_CURRENT)
    assert view.flags.vmflags is not None and "lo" in view.flags.vmflags
    assert view.residency.resident == (True,) * CURRENT_PAGES
    locked_kb, vmsize_kb = view.vmlck.status_kb, view.vmsize.status_kb
    if locked_kb is not None:  # gVisor prints no VmLck
        assert locked_kb >= CURRENT_PAGES * PAGE // 1024, "VmLck must cover at least the mapping made before"
        assert vmsize_kb is None or locked_kb <= vmsize_kb, f"VmLck {locked_kb} kB > VmSize {vmsize_kb} kB"


@semantic("munlockall.unlocks_everything",
          "munlockall removes every lock: no 'lo' remains and VmLck returns to 0.",
          source="mlock(2) DESCRIPTION", tier="linux")
def test_munlockall() -> None:
    need_helper_mlockall_current(CURRENT_PAGES)
    view = mlockall_current(C.MCL_CURRENT)
    assert view.flags.vmflags is not None and "lo" in view.flags.vmflags, "precondition: mlockall locked it"
    assert view.munlockall.errno == 0, f"munlockall: {errno_name(view.munlockall)}"
    assert view.after_flags.vmflags is not None and "lo" not in view.after_flags.vmflags
    assert view.after_vmlck.status in ("0 kB", None)


@semantic("mlockall.onfault.current_not_populated",
          "mlockall(MCL_CURRENT|MCL_ONFAULT) marks current mappings 'lo'+'lf' without faulting pages in.",
          source="mlock(2) MCL_ONFAULT", tier="linux")
@requires("feature:MCL_ONFAULT")
def test_mlockall_current_onfault() -> None:
    need_helper_mlockall_current(CURRENT_PAGES)
    view = mlockall_current(C.MCL_CURRENT | C.MCL_ONFAULT)
    assert view.flags.vmflags is not None and {"lo", "lf"} <= view.flags.vmflags
    if mincore_sees_residency():
        assert view.residency.resident == (False,) * CURRENT_PAGES


def vmsize_bytes() -> int:
    return (procfs.status_kb(procfs.read_status(), "VmSize") or 0) * 1024


def _mlockall_over_limit() -> tuple[int, int]:
    become_unprivileged_locker(PAGE)
    return call_errno(libc.mlockall, C.MCL_CURRENT), vmsize_bytes()


@semantic("mlockall.current.enomem_over_limit",
          "Without CAP_IPC_LOCK, mlockall(MCL_CURRENT) fails with ENOMEM when the address space "
          "exceeds RLIMIT_MEMLOCK.",
          source="mlock(2) ERRORS (ENOMEM, Linux 2.6.9+)", tier="linux")
def test_mlockall_current_over_limit(run_in_child: RunInChild) -> None:
    settable_limit(PAGE)
    result, vmsize = run_in_child(_mlockall_over_limit).result()
    assert vmsize > PAGE, "the test needs an address space larger than one page"
    assert result == errno.ENOMEM, f"got {errno.errorcode.get(result, result)}"


@dataclass(frozen=True)
class FutureView:
    """The helper around mlockall(flags) with MCL_FUTURE: a mapping made before it
    (``existing``), one made after it (``new``), and one made after munlockall (``later``)."""

    mlockall: brk.Step
    new_mmap: brk.Step
    existing_flags: brk.Step
    new_flags: brk.Step
    new_residency: brk.Step
    new_msync_invalidate: brk.Step
    munlockall: brk.Step
    later_mmap: brk.Step
    later_flags: brk.Step


FUTURE_PAGES = 2  # locked by MCL_FUTURE in the new mapping


def mlockall_future(flags: int) -> FutureView:
    run = brk.run(f"mmap:{FUTURE_PAGES}", f"mlockall:{flags}", f"mmap:{FUTURE_PAGES}", "vmflags:slot0",
                  "vmflags:slot1", f"mincore:slot1,{FUTURE_PAGES}",
                  f"msync:slot1,{FUTURE_PAGES},{C.MS_INVALIDATE}", "munlockall", "mmap:1", "vmflags:slot2")
    assert run[0].errno == 0, f"the helper's mmap failed: {run[0]}"
    view = FutureView(*run.steps[1:])
    assert view.mlockall.errno == 0, f"mlockall({flags:#x}) failed with {errno_name(view.mlockall)}"
    assert view.new_mmap.errno == 0, f"mmap after mlockall({flags:#x}) failed with {errno_name(view.new_mmap)}"
    return view


@semantic("mlockall.future.locks_new_mappings",
          "After mlockall(MCL_FUTURE) a new mapping is locked ('lo', msync MS_INVALIDATE gives EBUSY) "
          "and populated at mmap time.",
          source="mlock(2) MCL_FUTURE; msync(2) EBUSY", tier="linux")
def test_mlockall_future() -> None:
    need_future_lock(FUTURE_PAGES)
    view = mlockall_future(C.MCL_FUTURE)
    assert view.new_flags.vmflags is not None and "lo" in view.new_flags.vmflags
    assert view.new_residency.resident == (True,) * FUTURE_PAGES
    assert view.new_msync_invalidate.errno == errno.EBUSY, \
        f"msync(MS_INVALIDATE) on the locked mapping: {errno_name(view.new_msync_invalidate)}"


@semantic("mlockall.future.spares_existing",
          "mlockall(MCL_FUTURE) alone does not lock mappings that already exist.",
          source="mlock(2) MCL_FUTURE", tier="linux")
def test_mlockall_future_spares_existing() -> None:
    need_future_lock(FUTURE_PAGES)
    view = mlockall_future(C.MCL_FUTURE)
    assert view.new_flags.vmflags is not None and "lo" in view.new_flags.vmflags, \
        "precondition: MCL_FUTURE locked the new mapping, so 'lo' is observable"
    assert view.existing_flags.vmflags is not None and "lo" not in view.existing_flags.vmflags


@semantic("munlockall.clears_future",
          "munlockall cancels MCL_FUTURE: a mapping created afterwards is not locked.",
          source="mlock(2) DESCRIPTION", tier="linux")
def test_munlockall_clears_future() -> None:
    need_future_lock(FUTURE_PAGES)
    view = mlockall_future(C.MCL_FUTURE)
    assert view.new_flags.vmflags is not None and "lo" in view.new_flags.vmflags, \
        "precondition: MCL_FUTURE locked the new mapping"
    assert view.munlockall.errno == 0, f"munlockall: {errno_name(view.munlockall)}"
    assert view.later_mmap.errno == 0, f"mmap after munlockall: {errno_name(view.later_mmap)}"
    assert view.later_flags.vmflags is not None and "lo" not in view.later_flags.vmflags


@semantic("mlockall.onfault.future_not_populated",
          "With MCL_FUTURE|MCL_ONFAULT new mappings are marked 'lo'+'lf' but not populated at mmap time.",
          source="mlock(2) MCL_ONFAULT", tier="linux")
def test_mlockall_future_onfault() -> None:
    need_future_lock(FUTURE_PAGES)
    view = mlockall_future(C.MCL_FUTURE | C.MCL_ONFAULT)
    assert view.new_flags.vmflags is not None and {"lo", "lf"} <= view.new_flags.vmflags
    if mincore_sees_residency():
        assert view.new_residency.resident == (False,) * FUTURE_PAGES


def _future_over_limit() -> tuple[int, int]:
    become_unprivileged_locker(4 * PAGE)
    result = call_errno(libc.mlockall, C.MCL_FUTURE)
    if result:
        return result, 0
    try:
        outcome = call_errno(map_anon, 8)
    finally:
        libc.munlockall()
    return 0, outcome


@semantic("mlockall.future.mmap_eagain_over_limit",
          "After mlockall(MCL_FUTURE), without CAP_IPC_LOCK, an mmap that would exceed RLIMIT_MEMLOCK "
          "fails with EAGAIN.",
          source="mlock(2) MCL_FUTURE; mmap(2) ERRORS (EAGAIN)", tier="linux")
def test_mlockall_future_mmap_over_limit(run_in_child: RunInChild) -> None:
    settable_limit(4 * PAGE)
    mlockall_result, mmap_result = run_in_child(_future_over_limit).result()
    assert mlockall_result == 0, f"mlockall(MCL_FUTURE) failed with {errno.errorcode.get(mlockall_result)}"
    assert mmap_result == errno.EAGAIN, f"mmap gave {errno.errorcode.get(mmap_result, mmap_result)}"


@semantic("mlockall.fork.future_not_inherited",
          "The MCL_FUTURE setting is not inherited by a child created by fork.",
          source="mlock(2) NOTES", tier="linux")
def test_mlockall_future_not_inherited() -> None:
    need_future_lock(1)
    run = brk.run(f"mlockall:{C.MCL_FUTURE}", "fork:mmap:1;vmflags:slot0", "mmap:1", "vmflags:slot0")
    locked, forked, parent_mmap, parent_flags = run.steps
    assert locked.errno == 0, f"mlockall(MCL_FUTURE) failed with {errno_name(locked)}"
    assert forked.errno == 0 and forked.child is not None, f"fork failed with {errno_name(forked)}"
    assert forked.child_exit_code == 0, f"the helper's child: wait status {forked.wait_status:#x}"
    child_mmap, child_flags = forked.child
    assert child_mmap.errno == 0, f"the child's mmap: {errno_name(child_mmap)}"
    assert parent_mmap.errno == 0, f"the parent's mmap after fork: {errno_name(parent_mmap)}"
    assert parent_flags.vmflags is not None and "lo" in parent_flags.vmflags, \
        "precondition: the parent's MCL_FUTURE still locks its own new mappings"
    assert child_flags.vmflags is not None and "lo" not in child_flags.vmflags


# =====================================================================================
# The tutorial's example (tutorial §5): a password in locked memory
# =====================================================================================

@semantic("mlock.seed.secret_buffer_lifecycle",
          "The tutorial's pattern holds: while the secret is stored the page is resident and locked; "
          "memset clears it; after munlock it is no longer locked.",
          source="tutorial §5 mlock example", tier="linux")
def test_seed_secret_buffer(locked_region: LockedRegion) -> None:
    m = locked_region(1)
    ctypes.memmove(m.addr, SECRET, len(SECRET))
    assert bytes(m.buffer[: len(SECRET)]) == SECRET
    assert resident(m.addr, m.length) == [True]
    assert "lo" in vmflags(m.addr)
    ctypes.memset(m.addr, 0, m.length)
    assert bytes(m.buffer) == bytes(m.length)
    libc.munlock(m.addr, m.length)
    assert "lo" not in vmflags(m.addr)


@semantic("mlock.seed.locked_memory_still_dumped",
          "mlock only keeps pages out of swap (not out of hibernation images or core dumps): a locked "
          "VMA is not marked 'dd'; MADV_DONTDUMP adds 'dd' and leaves the lock in place.",
          source="mlock(2) NOTES (suspend); madvise(2) MADV_DONTDUMP; tutorial §5 oversimplifies", tier="linux")
def test_locked_memory_is_still_dumpable(locked_region: LockedRegion) -> None:
    m = locked_region(1)
    assert "dd" not in vmflags(m.addr)
    succeeds(libc.madvise, m.addr, m.length, C.MADV_DONTDUMP)
    assert {"dd", "lo"} <= vmflags(m.addr)
