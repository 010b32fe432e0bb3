"""System V shared memory: shmget(2), shmat(2)/shmdt(2), shmctl(2), and the tutorial's §4 example.

Every segment comes from the shm_segment fixture (IPC_PRIVATE or a random key created with
IPC_EXCL, mode 0600, removed at teardown). Process-global changes (another uid, another
IPC namespace, rlimits) happen only in forked children. MAP_FIXED-like attaches (an address
passed to shmat) only ever target pages of the arena fixture.
"""

from __future__ import annotations

import ctypes
import errno
import os
import resource
import signal
import time
from collections.abc import Callable
from typing import Any

import pytest

from pytest_memsyscalls import MappedPages, RunInChild, ShmSegmentFactory, fails_with, requires, semantic, succeeds
from pytest_memsyscalls.environment.fingerprint import Environment
from pytest_memsyscalls.kernel import constants as C
from pytest_memsyscalls.kernel import libc, pages, procfs
from pytest_memsyscalls.kernel.libc import PAGE_SIZE as PAGE
from pytest_memsyscalls.kernel.probe import Fault
from pytest_memsyscalls.kernel.probe import read as probe_read
from pytest_memsyscalls.kernel.probe import read_value as probe_read_value
from pytest_memsyscalls.kernel.probe import write as probe_write
from pytest_memsyscalls.memory.shm import ShmSegment, stat_segment, unique_key

from ._oracles import drop_capability, exec_held

SHMLBA = pages.shmlba()  # PAGE_SIZE on x86_64, arm64 and powerpc (asm/shmparam.h): see kernel/pages.py
SHMMIN = 1  # include/uapi/linux/shm.h; shmget(2) "SHMMIN ... is 1"
OTHER_UID = 65534  # nobody: the "another user" of the permission tests
CAP_IPC_LOCK = 14  # linux/capability.h
# The kernel stamps IPC times from its coarse clock, which can still show the previous
# second just after time.time() has moved on.
COARSE_CLOCK_SLACK = 1


# --- helpers that run in children ---------------------------------------------------

def _errno_of(fn: Callable[..., Any], *args: Any) -> int:
    """0 when fn(*args) succeeds, else its errno (children return this to the parent)."""
    try:
        fn(*args)
    except OSError as error:
        return error.errno or -1
    return 0


def _become(uid: int, gid: int) -> None:
    """Drop to uid/gid for good (all three ids): the capabilities go with uid 0."""
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)


def _as_user(uid: int, gid: int, fn: Callable[..., Any], *args: Any) -> Any:
    _become(uid, gid)
    return fn(*args)


def _proc_int(name: str) -> int:
    with open(f"/proc/sys/kernel/{name}") as handle:
        return int(handle.read())


def _enter_private_ipc_namespace() -> None:
    """unshare a new IPC namespace; unprivileged, through a new user namespace whose root
    maps to our uid (so the namespace's own /proc/sys/kernel/shm* are writable there)."""
    uid, gid = os.geteuid(), os.getegid()
    flags = (C.CLONE_NEWIPC if "CAP_SYS_ADMIN" in _effective_caps() and uid == 0
             else C.CLONE_NEWUSER | C.CLONE_NEWIPC)
    libc.unshare(flags)
    if flags & C.CLONE_NEWUSER:
        for path, text in (("/proc/self/setgroups", "deny"), ("/proc/self/uid_map", f"0 {uid} 1"),
                           ("/proc/self/gid_map", f"0 {gid} 1")):
            with open(path, "w") as handle:
                handle.write(text)


def _effective_caps() -> frozenset[str]:
    return procfs.decode_capabilities(procfs.read_status().get("CapEff", "0"))


def _write_sysctl(name: str, value: int) -> None:
    with open(f"/proc/sys/kernel/{name}", "w") as handle:
        handle.write(f"{value}\n")


def _describe_error(step: str, error: OSError) -> str:
    return f"{errno.errorcode.get(error.errno or 0, error.errno)} from {step}"


def _namespace_probe(write_limits: bool) -> str | None:
    """Child: can this environment make a private IPC namespace (and write its shm limits)?"""
    try:
        _enter_private_ipc_namespace()
    except OSError as error:
        return _describe_error(f"unshare or the id maps ({error.filename or error})", error)
    if write_limits:
        try:
            _write_sysctl("shmmni", _proc_int("shmmni"))
        except OSError as error:
            return _describe_error("writing /proc/sys/kernel/shmmni in the new namespace", error)
    return None


_namespace_reasons: dict[bool, str | None] = {}


def _skip_unless_namespace(run_in_child: RunInChild, write_limits: bool) -> None:
    if write_limits not in _namespace_reasons:
        outcome = run_in_child(_namespace_probe, write_limits)
        _namespace_reasons[write_limits] = outcome.value if outcome.returned else outcome.describe()
    reason = _namespace_reasons[write_limits]
    if reason:
        what = "writable shm sysctls in a new IPC namespace" if write_limits else "CLONE_NEWIPC"
        pytest.skip(f"unsupported:{what} ({reason} in a probe child)")


@pytest.fixture
def ipc_namespace(run_in_child: RunInChild) -> None:
    """Skip unless a child can unshare a private IPC namespace (probed once, in a scratch child)."""
    _skip_unless_namespace(run_in_child, write_limits=False)


@pytest.fixture
def ipc_namespace_limits(run_in_child: RunInChild) -> None:
    """Skip unless a child's private IPC namespace lets it set shmall/shmmni (probed once)."""
    _skip_unless_namespace(run_in_child, write_limits=True)


# --- shmget ---------------------------------------------------------------------------

@semantic("sysv.shmget.excl_existing_eexist",
          "shmget with IPC_CREAT|IPC_EXCL on a key that already has a segment fails with EEXIST",
          source="shmget(2) ERRORS EEXIST", tier="posix")
def test_shmget_excl_on_existing_key(shm_segment: ShmSegmentFactory) -> None:
    segment = shm_segment(key="unique")
    fails_with(errno.EEXIST, libc.shmget, segment.key, PAGE, C.IPC_CREAT | C.IPC_EXCL | 0o600)


@semantic("sysv.shmget.existing_key_same_id",
          "shmget on a key that has a segment, without IPC_CREAT and with size 0 or at most the "
          "segment's size, returns that segment's identifier",
          source="shmget(2) DESCRIPTION", tier="posix")
def test_shmget_existing_key_returns_same_id(shm_segment: ShmSegmentFactory) -> None:
    segment = shm_segment(2 * PAGE, key="unique")
    assert succeeds(libc.shmget, segment.key, 0, 0o600) == segment.shmid
    assert succeeds(libc.shmget, segment.key, PAGE, 0o600) == segment.shmid


@semantic("sysv.shmget.private_always_new",
          "IPC_PRIVATE always creates a new segment: two calls give two different identifiers",
          source="shmget(2) DESCRIPTION", tier="posix")
def test_ipc_private_always_creates(shm_segment: ShmSegmentFactory) -> None:
    first, second = shm_segment(), shm_segment()
    assert first.shmid != second.shmid
    assert first.stat().key == second.stat().key == C.IPC_PRIVATE


@semantic("sysv.shmget.size_below_shmmin_einval",
          "Creating a segment smaller than SHMMIN (size 0 with IPC_CREAT on a new key) fails with EINVAL",
          source="shmget(2) ERRORS EINVAL", tier="linux")
def test_shmget_size_zero_new_segment() -> None:
    assert SHMMIN > 0
    fails_with(errno.EINVAL, libc.shmget, C.IPC_PRIVATE, SHMMIN - 1, C.IPC_CREAT | 0o600)


@semantic("sysv.shmget.size_above_shmmax_einval",
          "Creating a segment larger than SHMMAX (/proc/sys/kernel/shmmax) fails with EINVAL",
          source="shmget(2) ERRORS EINVAL; proc(5) shmmax", tier="linux")
def test_shmget_size_above_shmmax() -> None:
    shmmax = _proc_int("shmmax")
    if shmmax >= (1 << 64) - 1:
        pytest.skip(f"limit:shmmax={shmmax} (SIZE_MAX: no size exceeds it)")
    fails_with(errno.EINVAL, libc.shmget, C.IPC_PRIVATE, shmmax + 1, C.IPC_CREAT | 0o600)


@semantic("sysv.shmget.larger_than_existing_einval",
          "shmget on an existing key with a size greater than that segment's size fails with EINVAL",
          source="shmget(2) ERRORS EINVAL", tier="posix")
def test_shmget_existing_key_larger_size(shm_segment: ShmSegmentFactory) -> None:
    segment = shm_segment(PAGE, key="unique")
    fails_with(errno.EINVAL, libc.shmget, segment.key, PAGE + 1, 0o600)


@semantic("sysv.shmget.no_create_enoent",
          "shmget without IPC_CREAT on a key that has no segment fails with ENOENT",
          source="shmget(2) ERRORS ENOENT", tier="posix")
def test_shmget_missing_key_enoent() -> None:
    try:  # keys in use, so the random key is known to be free (without the file: 1 in 2**31 odds)
        used = {entry.key for entry in procfs.read_sysvipc_shm()}
    except FileNotFoundError:
        used = set()
    key = unique_key()
    while key in used:
        key = unique_key()
    fails_with(errno.ENOENT, libc.shmget, key, PAGE, 0o600)


@semantic("sysv.shmget.other_uid_eacces",
          "shmget asking for read/write on a key whose segment is mode 0600 fails with EACCES for "
          "another uid without CAP_IPC_OWNER",
          source="shmget(2) ERRORS EACCES", tier="posix")
@requires("setuid")
def test_shmget_other_uid_eacces(shm_segment: ShmSegmentFactory,
                                 run_in_child: RunInChild) -> None:
    segment = shm_segment(key="unique", mode=0o600)
    outcome = run_in_child(_as_user, OTHER_UID, OTHER_UID, _errno_of, libc.shmget, segment.key, 0, 0o600)
    assert outcome.result() == errno.EACCES


def _fill_shmall() -> tuple[int, int]:
    _enter_private_ipc_namespace()
    _write_sysctl("shmall", 1)  # pages; the new namespace has no segment yet
    return (_errno_of(libc.shmget, C.IPC_PRIVATE, 2 * PAGE, C.IPC_CREAT | 0o600),
            _errno_of(libc.shmget, C.IPC_PRIVATE, PAGE, C.IPC_CREAT | 0o600))


@semantic("sysv.shmget.shmall_enospc",
          "Creating a segment that would take the total of shared memory beyond SHMALL pages fails with "
          "ENOSPC (checked in a private IPC namespace whose shmall is 1 page: 2 pages fail, 1 page fits)",
          source="shmget(2) ERRORS ENOSPC; ipc_namespaces(7)", tier="linux")
def test_shmget_beyond_shmall_enospc(ipc_namespace_limits: None, run_in_child: RunInChild) -> None:
    assert run_in_child(_fill_shmall).result() == (errno.ENOSPC, 0)


def _fill_shmmni() -> tuple[int, int]:
    _enter_private_ipc_namespace()
    _write_sysctl("shmmni", 1)
    return (_errno_of(libc.shmget, C.IPC_PRIVATE, PAGE, C.IPC_CREAT | 0o600),
            _errno_of(libc.shmget, C.IPC_PRIVATE, PAGE, C.IPC_CREAT | 0o600))


@semantic("sysv.shmget.shmmni_enospc",
          "Once SHMMNI segments exist, creating another fails with ENOSPC (checked in a private IPC "
          "namespace whose shmmni is 1)",
          source="shmget(2) ERRORS ENOSPC; ipc_namespaces(7)", tier="linux")
def test_shmget_beyond_shmmni_enospc(ipc_namespace_limits: None, run_in_child: RunInChild) -> None:
    assert run_in_child(_fill_shmmni).result() == (0, errno.ENOSPC)


# --- shmat / shmdt ----------------------------------------------------------------------

@semantic("sysv.shmat.kernel_address_aligned",
          "shmat with a NULL address attaches at an unused address chosen by the system, aligned to SHMLBA",
          source="shmat(2) DESCRIPTION", tier="posix")
def test_shmat_null_address_is_aligned(shm_segment: ShmSegmentFactory) -> None:
    segment = shm_segment(3 * PAGE)
    addr = segment.attach()
    assert addr % SHMLBA == 0
    entry = procfs.vma_at(addr)
    assert entry is not None and entry.start == addr and entry.end == addr + 3 * PAGE
    assert entry.perms == "rw-s"


@semantic("sysv.shmat.shm_rnd_rounds_down",
          "shmat with SHM_RND and an unaligned address attaches at the address rounded down to SHMLBA",
          source="shmat(2) DESCRIPTION", tier="posix")
def test_shmat_shm_rnd(shm_segment: ShmSegmentFactory, arena: Any) -> None:
    segment = shm_segment()
    arena.hole(10)
    assert segment.attach(arena.page(10) + 100, C.SHM_RND) == arena.page(10)


@semantic("sysv.shmat.unaligned_einval",
          "shmat with an address that is not SHMLBA-aligned and without SHM_RND fails with EINVAL",
          source="shmat(2) ERRORS EINVAL", tier="posix")
def test_shmat_unaligned_without_rnd(shm_segment: ShmSegmentFactory, arena: Any) -> None:
    segment = shm_segment()
    arena.hole(10)
    fails_with(errno.EINVAL, libc.shmat, segment.shmid, arena.page(10) + 100, 0)


@semantic("sysv.shmat.rdonly_write_faults",
          "A segment attached with SHM_RDONLY is readable, and a write to it raises SIGSEGV with "
          "SEGV_ACCERR at the written address",
          source="shmat(2) DESCRIPTION SHM_RDONLY; sigaction(2) SEGV_ACCERR", tier="linux")
def test_shmat_readonly_write_faults(shm_segment: ShmSegmentFactory) -> None:
    segment = shm_segment()
    writable = segment.attach()
    ctypes.memmove(writable + 5, b"\x2a", 1)
    readonly = segment.attach(0, C.SHM_RDONLY)
    assert ctypes.string_at(readonly + 5, 1) == b"\x2a"
    assert probe_write(readonly + 5, 1) == Fault(signal.SIGSEGV, C.SEGV_ACCERR, readonly + 5)


@semantic("sysv.shmat.remap_replaces_mapping",
          "shmat with SHM_REMAP at an address range that is already mapped replaces that mapping with "
          "the segment",
          source="shmat(2) DESCRIPTION SHM_REMAP", tier="linux")
def test_shmat_remap_over_mapping(shm_segment: ShmSegmentFactory, arena: Any) -> None:
    segment = shm_segment()
    other = segment.attach()
    ctypes.memmove(other, b"segment", 7)
    arena.map(20, 1)
    try:
        addr = segment.attach(arena.page(20), C.SHM_REMAP)
        assert addr == arena.page(20)
        assert ctypes.string_at(addr, 7) == b"segment"
        assert segment.stat().nattch == 2
    finally:
        if arena.page(20) in segment.attachments:
            segment.detach(arena.page(20))
        arena.hole(20)  # the segment's pages are gone: record the page as a hole


@semantic("sysv.shmat.overlap_without_remap_einval",
          "shmat at an address whose range overlaps an existing mapping, without SHM_REMAP, fails with EINVAL",
          source="shmat(2) ERRORS EINVAL", tier="linux")
def test_shmat_overlap_without_remap(shm_segment: ShmSegmentFactory, arena: Any) -> None:
    segment = shm_segment()
    arena.map(20, 1)
    fails_with(errno.EINVAL, libc.shmat, segment.shmid, arena.page(20), 0)


@semantic("sysv.shmat.shm_exec_executable",
          "shmat with SHM_EXEC, by a caller with execute permission on the segment (mode 0700 owner), "
          "attaches it with execute permission (the mapping is rwxs)",
          source="shmat(2) DESCRIPTION SHM_EXEC", tier="linux")
def test_shmat_exec(shm_segment: ShmSegmentFactory) -> None:
    segment = shm_segment(mode=0o700)
    addr = segment.attach(0, C.SHM_EXEC)
    entry = procfs.vma_at(addr)
    assert entry is not None and entry.perms == "rwxs"


@semantic("sysv.shmat.shm_exec_needs_exec_permission",
          "shmat with SHM_EXEC on a segment whose mode gives the caller no execute permission (0600) fails "
          "with EACCES for a caller without CAP_IPC_OWNER",
          source="shmat(2) DESCRIPTION SHM_EXEC, ERRORS EACCES", tier="linux")
@requires("nocap:CAP_IPC_OWNER")
def test_shmat_exec_without_exec_permission(shm_segment: ShmSegmentFactory) -> None:
    segment = shm_segment(mode=0o600)
    fails_with(errno.EACCES, libc.shmat, segment.shmid, 0, C.SHM_EXEC)


@semantic("sysv.shmat.after_rmid_while_attached",
          "On Linux a segment marked for deletion (IPC_RMID) can still be attached while nattch > 0 "
          "(POSIX does not specify this)",
          source="shmat(2) NOTES; shmctl(2) IPC_RMID", tier="linux")
def test_shmat_after_rmid_linux(shm_segment: ShmSegmentFactory) -> None:
    segment = shm_segment()
    segment.attach()
    libc.shmctl(segment.shmid, C.IPC_RMID)
    second = succeeds(segment.attach)
    assert second % SHMLBA == 0
    assert segment.stat().nattch == 2


@semantic("sysv.shmdt.not_attach_address_einval",
          "shmdt of an address where no segment is attached fails with EINVAL",
          source="shmdt(2) ERRORS EINVAL", tier="posix")
def test_shmdt_not_attached(shm_segment: ShmSegmentFactory, mapped_pages: MappedPages) -> None:
    segment = shm_segment(2 * PAGE)
    addr = segment.attach()
    plain = mapped_pages(1)
    fails_with(errno.EINVAL, libc.shmdt, plain.addr)
    fails_with(errno.EINVAL, libc.shmdt, addr + PAGE)


# --- shmctl -----------------------------------------------------------------------------

@semantic("sysv.shmctl.ipc_stat_new_segment",
          "IPC_STAT of a new segment reports its key, owner and creator (the caller), mode, size, "
          "nattch 0, cpid = creator, lpid 0, atime = dtime = 0 and ctime = creation time",
          source="shmget(2) DESCRIPTION (initialization of shmid_ds); shmctl(2) IPC_STAT", tier="posix")
def test_ipc_stat_of_new_segment(shm_segment: ShmSegmentFactory) -> None:
    before = int(time.time())
    segment = shm_segment(3 * PAGE + 1, key="unique", mode=0o640)
    stat = segment.stat()
    assert (stat.key, stat.segsz, stat.nattch, stat.permissions) == (segment.key, 3 * PAGE + 1, 0, 0o640)
    assert (stat.uid, stat.cuid, stat.gid, stat.cgid) == (os.geteuid(), os.geteuid(), os.getegid(), os.getegid())
    assert (stat.cpid, stat.lpid, stat.atime, stat.dtime) == (os.getpid(), 0, 0, 0)
    assert before - COARSE_CLOCK_SLACK <= stat.ctime <= int(time.time())


@semantic("sysv.shmctl.attach_detach_update_stat",
          "shmat sets shm_atime and shm_lpid and increments shm_nattch; shmdt sets shm_dtime and "
          "shm_lpid and decrements shm_nattch",
          source="shmat(2) DESCRIPTION; shmdt(2) DESCRIPTION", tier="posix")
def test_attach_and_detach_update_stat(shm_segment: ShmSegmentFactory) -> None:
    segment = shm_segment()
    before = int(time.time())
    addr = segment.attach()
    attached = segment.stat()
    segment.detach(addr)
    detached = segment.stat()
    now = int(time.time())
    assert (attached.nattch, attached.lpid, attached.dtime) == (1, os.getpid(), 0)
    assert before - COARSE_CLOCK_SLACK <= attached.atime <= now
    assert (detached.nattch, detached.lpid) == (0, os.getpid())
    assert before - COARSE_CLOCK_SLACK <= detached.dtime <= now


def _attach_detach(shmid: int) -> int:
    libc.shmdt(libc.shmat(shmid))
    return os.getpid()


@semantic("sysv.shmctl.lpid_last_operator",
          "shm_lpid is the pid of the process that did the last shmat/shmdt: a child's attach and "
          "detach make it the child's pid, not the creator's",
          source="shmctl(2) shmid_ds shm_lpid", tier="posix")
def test_lpid_is_childs_pid(shm_segment: ShmSegmentFactory, run_in_child: RunInChild) -> None:
    segment = shm_segment()
    child_pid = run_in_child(_attach_detach, segment.shmid).result()
    stat = segment.stat()
    assert child_pid != os.getpid()
    assert (stat.lpid, stat.cpid, stat.nattch) == (child_pid, os.getpid(), 0)


@semantic("sysv.shmctl.ipc_set_mode",
          "IPC_SET by the owner changes the permission bits of shm_perm.mode and updates shm_ctime",
          source="shmctl(2) IPC_SET", tier="posix")
def test_ipc_set_changes_mode(shm_segment: ShmSegmentFactory) -> None:
    segment = shm_segment(mode=0o600)
    ds = libc.shm_stat(segment.shmid)
    ds.shm_perm.mode = 0o640
    before = int(time.time())
    succeeds(libc.shmctl, segment.shmid, C.IPC_SET, ds)
    stat = segment.stat()
    assert stat.permissions == 0o640
    assert before - COARSE_CLOCK_SLACK <= stat.ctime <= int(time.time())


def _other_mapped_uid(env: Environment) -> int:
    """A uid other than ours that this user namespace can name (IPC_SET refuses one it
    cannot map with EINVAL): 65534 or 0 outside a namespace, else one from uid_map."""
    me = os.geteuid()
    uid_map = env.namespaces.uid_map or ((0, 0, 1 << 32),)
    for candidate in (OTHER_UID, 0, *(inside for inside, _, count in uid_map if count)):
        if candidate != me and any(inside <= candidate < inside + count for inside, _, count in uid_map):
            return candidate
    pytest.skip(f"needs:a second uid mapped in this user namespace (uid_map {uid_map})")


@semantic("sysv.shmctl.ipc_set_uid",
          "IPC_SET by the owner changes shm_perm.uid (the owner) while shm_perm.cuid (the creator) stays",
          source="shmctl(2) IPC_SET", tier="posix")
def test_ipc_set_changes_owner(shm_segment: ShmSegmentFactory, memsys_env: Environment) -> None:
    segment = shm_segment(mode=0o600)
    new_owner = _other_mapped_uid(memsys_env)
    ds = libc.shm_stat(segment.shmid)
    ds.shm_perm.uid = new_owner
    succeeds(libc.shmctl, segment.shmid, C.IPC_SET, ds)
    stat = segment.stat()
    assert (stat.uid, stat.cuid) == (new_owner, os.geteuid())


@semantic("sysv.shmctl.rmid_deferred_until_detach",
          "IPC_RMID on an attached segment only marks it: SHM_DEST is set, its key becomes IPC_PRIVATE, "
          "the attachment stays usable, and the segment is destroyed at the last detach (IPC_STAT then EINVAL)",
          source="shmctl(2) IPC_RMID; shmctl(2) SHM_DEST", tier="linux")
def test_ipc_rmid_deferred(shm_segment: ShmSegmentFactory) -> None:
    segment = shm_segment(key="unique")
    addr = segment.attach()
    ctypes.memmove(addr, b"still here", 10)
    libc.shmctl(segment.shmid, C.IPC_RMID)
    stat = segment.stat()
    assert stat.marked_for_destruction and stat.key == C.IPC_PRIVATE and stat.nattch == 1
    assert ctypes.string_at(addr, 10) == b"still here"
    fails_with(errno.ENOENT, libc.shmget, segment.key, 0, 0o600)
    segment.detach(addr)
    fails_with(errno.EINVAL, libc.shm_stat, segment.shmid)


@semantic("sysv.shmctl.ipc_info_matches_proc",
          "IPC_INFO fills struct shminfo with the system limits: shmmax, shmmni and shmall as in "
          "/proc/sys/kernel, shmmin 1, and returns a non-negative index (the highest in use; "
          "checked against SHM_STAT in sysv.shmctl.shm_stat_index_to_id)",
          source="shmctl(2) IPC_INFO, RETURN VALUE; proc(5)", tier="linux")
def test_ipc_info(shm_segment: ShmSegmentFactory) -> None:
    shm_segment()
    info = libc.ShmInfoLimits()
    highest = libc.shmctl(0, C.IPC_INFO, info)
    assert (info.shmmax, info.shmmni, info.shmall, info.shmmin) == (
        _proc_int("shmmax"), _proc_int("shmmni"), _proc_int("shmall"), SHMMIN)
    assert highest >= 0


def _index_of(segment: ShmSegment, highest: int | None = None) -> int:
    """The kernel-internal index of a segment, found with SHM_STAT over 0..highest
    (by default over every index SHMMNI allows, so a wrong IPC_INFO result cannot hide it)."""
    if highest is None:
        highest = max(_proc_int("shmmni"), libc.shmctl(0, C.IPC_INFO, libc.ShmInfoLimits()))
    for index in range(highest + 1):
        try:
            if libc.shmctl(index, C.SHM_STAT, libc.ShmidDs()) == segment.shmid:
                return index
        except OSError as error:
            if error.errno not in (errno.EINVAL, errno.EACCES):
                raise
    raise AssertionError(f"SHM_STAT over indexes 0..{highest} never returned {segment.shmid}")


@semantic("sysv.shmctl.shm_info_usage",
          "SHM_INFO fills struct shm_info: used_ids counts existing segments (ours included) and shm_tot "
          "the pages they hold; it returns the highest used index, as IPC_INFO does",
          source="shmctl(2) SHM_INFO, RETURN VALUE", tier="linux")
def test_shm_info(shm_segment: ShmSegmentFactory) -> None:
    shm_segment(5 * PAGE)
    usage = libc.ShmInfoUsage()
    highest = libc.shmctl(0, C.SHM_INFO, usage)
    assert highest == libc.shmctl(0, C.IPC_INFO, libc.ShmInfoLimits())
    assert usage.used_ids >= 1
    assert usage.shm_tot >= 5


@semantic("sysv.shmctl.shm_stat_index_to_id",
          "SHM_STAT takes an index into the kernel's segment table (not an id), fills shmid_ds and "
          "returns the identifier of the segment at that index, an index no higher than IPC_INFO's result",
          source="shmctl(2) SHM_STAT, RETURN VALUE", tier="linux")
def test_shm_stat_maps_index_to_id(shm_segment: ShmSegmentFactory) -> None:
    segment = shm_segment(2 * PAGE)
    index = _index_of(segment)
    ds = libc.ShmidDs()
    assert libc.shmctl(index, C.SHM_STAT, ds) == segment.shmid
    assert ds.shm_segsz == 2 * PAGE and ds.shm_cpid == os.getpid()
    assert index <= libc.shmctl(0, C.IPC_INFO, libc.ShmInfoLimits())


def _stat_by_index(index: int) -> tuple[int, int]:
    def call(cmd: int) -> int:
        try:
            return libc.shmctl(index, cmd, libc.ShmidDs())
        except OSError as error:
            return -(error.errno or 1)
    return call(C.SHM_STAT), call(C.SHM_STAT_ANY)


@semantic("sysv.shmctl.shm_stat_any_skips_read_check",
          "SHM_STAT_ANY returns the segment like SHM_STAT but without the read-permission check: "
          "another uid gets EACCES from SHM_STAT on a 0600 segment and its id from SHM_STAT_ANY",
          source="shmctl(2) SHM_STAT_ANY (Linux 4.17)", tier="linux")
@requires("setuid", "feature:SHM_STAT_ANY")
def test_shm_stat_any(shm_segment: ShmSegmentFactory, run_in_child: RunInChild) -> None:
    segment = shm_segment(mode=0o600)
    index = _index_of(segment)
    outcome = run_in_child(_as_user, OTHER_UID, OTHER_UID, _stat_by_index, index)
    assert outcome.result() == (-errno.EACCES, segment.shmid)


def _shm_lock_expectation(env: Environment) -> str | None:
    if env.capabilities.has("CAP_IPC_LOCK"):
        return None
    soft = env.rlimits.memlock.soft
    if soft is not None and soft < PAGE:
        return f"limit:RLIMIT_MEMLOCK={soft} (SHM_LOCK of one page needs {PAGE} bytes or CAP_IPC_LOCK)"
    return None


@semantic("sysv.shmctl.shm_lock_sets_locked",
          "SHM_LOCK by a process with CAP_IPC_LOCK, or by the owner within RLIMIT_MEMLOCK, sets SHM_LOCKED "
          "in shm_perm.mode; SHM_UNLOCK clears it",
          source="shmctl(2) SHM_LOCK, SHM_UNLOCK", tier="linux")
@requires(_shm_lock_expectation)
def test_shm_lock_and_unlock(shm_segment: ShmSegmentFactory) -> None:
    segment = shm_segment()
    succeeds(libc.shmctl, segment.shmid, C.SHM_LOCK)
    try:
        assert segment.stat().locked
    finally:
        libc.shmctl(segment.shmid, C.SHM_UNLOCK)
    assert not segment.stat().locked


def _lock_with_zero_memlock(shmid: int) -> int:
    resource.setrlimit(resource.RLIMIT_MEMLOCK, (0, resource.getrlimit(resource.RLIMIT_MEMLOCK)[1]))
    return _errno_of(libc.shmctl, shmid, C.SHM_LOCK)


def _shm_lock_errno_at_zero_limit(env: Environment) -> int:
    """SHM_LOCK first asks for CAP_IPC_LOCK in the user namespace owning the IPC namespace
    (EPERM at RLIMIT_MEMLOCK 0 without it); past that, the lock is charged to RLIMIT_MEMLOCK
    unless CAP_IPC_LOCK holds in the initial namespace (ENOMEM): root in a container that
    owns its IPC namespace gets the second."""
    in_effective = "CAP_IPC_LOCK" in env.capabilities.effective
    owns_ipc_namespace = env.namespaces.ipc.initial is False and env.namespaces.user.initial is False
    return errno.ENOMEM if in_effective and owns_ipc_namespace else errno.EPERM


@semantic("sysv.shmctl.shm_lock_eperm_without_memlock",
          "Without CAP_IPC_LOCK, SHM_LOCK fails with EPERM when RLIMIT_MEMLOCK is 0, even for the owner "
          "(with the capability only inside its own user and IPC namespaces, the lock is charged to the "
          "limit instead: ENOMEM)",
          source="shmctl(2) SHM_LOCK; shmctl(2) ERRORS EPERM; ipc/shm.c", tier="linux")
@requires("nocap:CAP_IPC_LOCK")
def test_shm_lock_without_memlock(shm_segment: ShmSegmentFactory, memsys_env: Environment,
                                  run_in_child: RunInChild) -> None:
    segment = shm_segment()
    expected = _shm_lock_errno_at_zero_limit(memsys_env)
    assert run_in_child(_lock_with_zero_memlock, segment.shmid).result() == expected
    assert not segment.stat().locked


# --- sharing, fork, exec, exit --------------------------------------------------------

def _child_writes(addr: int, text: bytes) -> None:
    ctypes.memmove(addr, text, len(text))


@semantic("sysv.share.parent_sees_child_write",
          "The tutorial's example, synchronised by waiting for the child's exit instead of sleep(1): a "
          "child's write through the attachment it inherited is seen by the parent",
          source="tutorial §4 Example: Shared Memory; shmat(2)", tier="posix")
def test_seed_parent_child_sharing(shm_segment: ShmSegmentFactory,
                                   run_in_child: RunInChild) -> None:
    segment = shm_segment(1024)
    addr = segment.attach()
    message = b"Hello from child!\0"
    run_in_child(_child_writes, addr, message).result()
    assert ctypes.string_at(addr, len(message)) == message


def _nattch_in_child(shmid: int) -> int:
    return stat_segment(shmid).nattch


@semantic("sysv.fork.inherits_attachment",
          "A forked child inherits the parent's attachments, which counts in shm_nattch; its exit "
          "detaches them again",
          source="shmat(2) NOTES (fork)", tier="posix")
def test_fork_inherits_attachment(shm_segment: ShmSegmentFactory,
                                  run_in_child: RunInChild) -> None:
    segment = shm_segment()
    segment.attach()
    assert run_in_child(_nattch_in_child, segment.shmid).result() == 2
    assert segment.stat().nattch == 1


def _attach_and_exit(shmid: int) -> int:
    libc.shmat(shmid)
    return os.getpid()


@semantic("sysv.exit.detaches",
          "A process that exits while attached is detached: nattch drops back, dtime is set and lpid "
          "is the exiting process",
          source="shmat(2) NOTES (exit)", tier="posix")
def test_exit_detaches(shm_segment: ShmSegmentFactory, run_in_child: RunInChild) -> None:
    segment = shm_segment()
    child_pid = run_in_child(_attach_and_exit, segment.shmid).result()
    stat = segment.stat()
    assert (stat.nattch, stat.lpid) == (0, child_pid)
    assert stat.dtime > 0


@semantic("sysv.exec.detaches",
          "execve detaches every attached segment: once a forked child has exec'd, the segment's nattch "
          "is back to the parent's own attachment",
          source="shmat(2) NOTES (execve)", tier="posix")
def test_exec_detaches(shm_segment: ShmSegmentFactory) -> None:
    segment = shm_segment()
    segment.attach()
    exec_done_r, exec_done_w = os.pipe2(os.O_CLOEXEC)  # closes when exec succeeds
    hold_r, hold_w = os.pipe()  # the exec'd cat waits on it: the child is alive during the check
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            os.dup2(hold_r, 0)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.execv("/bin/cat", ["cat"])
        finally:
            os._exit(127)
    os.close(exec_done_w)
    os.close(hold_r)
    try:
        assert os.read(exec_done_r, 1) == b"", "the child did not exec"
        nattch = segment.stat().nattch
        alive = os.waitpid(pid, os.WNOHANG) == (0, 0)
    finally:
        os.close(hold_w)
        os.close(exec_done_r)
        os.waitpid(pid, 0)
    assert alive and nattch == 1


# --- permissions ------------------------------------------------------------------------

def _attach_modes(shmid: int) -> tuple[int, int]:
    """(errno of a read-write attach, errno of a read-only attach)."""
    return _errno_of(libc.shmat, shmid, 0, 0), _errno_of(libc.shmat, shmid, 0, C.SHM_RDONLY)


@semantic("sysv.perm.owner_only_0600",
          "A mode 0600 segment cannot be attached, read-write or read-only, by another uid without "
          "CAP_IPC_OWNER: EACCES",
          source="shmat(2) ERRORS EACCES; svipc(7)", tier="posix")
@requires("setuid")
def test_mode_0600_other_uid(shm_segment: ShmSegmentFactory, run_in_child: RunInChild) -> None:
    segment = shm_segment(mode=0o600)
    outcome = run_in_child(_as_user, OTHER_UID, OTHER_UID, _attach_modes, segment.shmid)
    assert outcome.result() == (errno.EACCES, errno.EACCES)


@semantic("sysv.perm.group_read_0640",
          "Mode 0640 lets a process of another uid in the segment's group attach read-only, but not "
          "read-write (EACCES)",
          source="shmat(2) ERRORS EACCES; svipc(7)", tier="posix")
@requires("setuid")
def test_mode_0640_group_member(shm_segment: ShmSegmentFactory,
                                run_in_child: RunInChild) -> None:
    segment = shm_segment(mode=0o640)
    outcome = run_in_child(_as_user, OTHER_UID, segment.stat().gid, _attach_modes, segment.shmid)
    assert outcome.result() == (errno.EACCES, 0)


@semantic("sysv.perm.other_read_0604",
          "Mode 0604 lets a process of another uid and another group attach read-only, but not "
          "read-write (EACCES)",
          source="shmat(2) ERRORS EACCES; svipc(7)", tier="posix")
@requires("setuid")
def test_mode_0604_other(shm_segment: ShmSegmentFactory, run_in_child: RunInChild) -> None:
    segment = shm_segment(mode=0o604)
    assert segment.stat().gid != OTHER_UID
    outcome = run_in_child(_as_user, OTHER_UID, OTHER_UID, _attach_modes, segment.shmid)
    assert outcome.result() == (errno.EACCES, 0)


def _find_and_write(key: int, text: bytes) -> int:
    shmid = libc.shmget(key, 0, 0o666)
    addr = libc.shmat(shmid)
    ctypes.memmove(addr, text, len(text))
    return shmid


@semantic("sysv.seed.key_0666_world_writable",
          "The tutorial creates its segment with a fixed key (1234) and mode 0666: that is unsafe, because any "
          "uid can look the key up and attach read-write; a 0666 segment is found and written by another uid",
          source="tutorial §4 Example: Shared Memory; svipc(7)", tier="posix")
@requires("setuid")
def test_seed_0666_segment_is_world_writable(shm_segment: ShmSegmentFactory,
                                             run_in_child: RunInChild) -> None:
    segment = shm_segment(key="unique", mode=0o666)  # random key, not 1234; removed below
    try:
        addr = segment.attach()
        outcome = run_in_child(_as_user, OTHER_UID, OTHER_UID, _find_and_write, segment.key, b"intruder")
        assert outcome.result() == segment.shmid
        assert ctypes.string_at(addr, 8) == b"intruder"
    finally:
        segment.close()


# --- IPC namespaces -----------------------------------------------------------------------

def _look_from_new_namespace(shmid: int) -> tuple[int, int]:
    _enter_private_ipc_namespace()
    return _errno_of(libc.shm_stat, shmid), _errno_of(libc.shmat, shmid, 0, 0)


@semantic("sysv.ipcns.segments_isolated",
          "A process in a new IPC namespace cannot see the segments of its parent's namespace: "
          "IPC_STAT and shmat on the parent's id fail with EINVAL",
          source="ipc_namespaces(7); shmctl(2) ERRORS EINVAL", tier="linux")
def test_ipc_namespace_isolation(ipc_namespace: None, shm_segment: ShmSegmentFactory,
                                 run_in_child: RunInChild) -> None:
    segment = shm_segment(mode=0o600)
    assert run_in_child(_look_from_new_namespace, segment.shmid).result() == (errno.EINVAL, errno.EINVAL)
    assert segment.stat().nattch == 0


# --- what others may do: IPC_RMID, IPC_SET, IPC_STAT, SHM_LOCK -----------------------------

def _control_errnos(shmid: int, cmd: int) -> int:
    if cmd == C.IPC_SET:
        ds = libc.shm_stat(shmid)
        return _errno_of(libc.shmctl, shmid, C.IPC_SET, ds)
    return _errno_of(libc.shmctl, shmid, cmd)


@semantic("sysv.shmctl.rmid_other_uid_eperm",
          "IPC_RMID by a process that is neither the owner nor the creator, without CAP_SYS_ADMIN, fails "
          "with EPERM even on a mode 0666 segment, which stays (not SHM_DEST)",
          source="shmctl(2) ERRORS EPERM; shmctl(2) IPC_RMID", tier="posix")
@requires("setuid")
def test_rmid_by_other_uid(shm_segment: ShmSegmentFactory, run_in_child: RunInChild) -> None:
    segment = shm_segment(mode=0o666)
    outcome = run_in_child(_as_user, OTHER_UID, OTHER_UID, _control_errnos, segment.shmid, C.IPC_RMID)
    assert outcome.result() == errno.EPERM
    assert not segment.stat().marked_for_destruction


@semantic("sysv.shmctl.ipc_set_other_uid_eperm",
          "IPC_SET by a process that is neither the owner nor the creator, without CAP_SYS_ADMIN, fails "
          "with EPERM (read permission from mode 0666 is not enough)",
          source="shmctl(2) ERRORS EPERM; shmctl(2) IPC_SET", tier="posix")
@requires("setuid")
def test_ipc_set_by_other_uid(shm_segment: ShmSegmentFactory, run_in_child: RunInChild) -> None:
    segment = shm_segment(mode=0o666)
    outcome = run_in_child(_as_user, OTHER_UID, OTHER_UID, _control_errnos, segment.shmid, C.IPC_SET)
    assert outcome.result() == errno.EPERM
    assert segment.stat().ctime <= int(time.time())


@semantic("sysv.shmctl.rmid_by_owner_not_creator",
          "The owner (shm_perm.uid, set with IPC_SET) may IPC_RMID a segment it did not create: the "
          "segment is gone (IPC_STAT then fails with EINVAL)",
          source="shmctl(2) IPC_RMID (owner or creator)", tier="posix")
@requires("setuid")
def test_rmid_by_new_owner(shm_segment: ShmSegmentFactory, run_in_child: RunInChild) -> None:
    segment = shm_segment(mode=0o600)
    ds = libc.shm_stat(segment.shmid)
    ds.shm_perm.uid = OTHER_UID
    libc.shmctl(segment.shmid, C.IPC_SET, ds)
    outcome = run_in_child(_as_user, OTHER_UID, OTHER_UID, _control_errnos, segment.shmid, C.IPC_RMID)
    assert outcome.result() == 0
    fails_with(errno.EINVAL, libc.shm_stat, segment.shmid)


def _stat_errno(shmid: int) -> int:
    return _errno_of(libc.shm_stat, shmid)


@semantic("sysv.shmctl.ipc_stat_other_uid_eacces",
          "IPC_STAT on a mode 0600 segment by another uid without CAP_IPC_OWNER fails with EACCES (no read "
          "permission)",
          source="shmctl(2) ERRORS EACCES", tier="posix")
@requires("setuid")
def test_ipc_stat_other_uid(shm_segment: ShmSegmentFactory, run_in_child: RunInChild) -> None:
    segment = shm_segment(mode=0o600)
    assert run_in_child(_as_user, OTHER_UID, OTHER_UID, _stat_errno, segment.shmid).result() == errno.EACCES


@semantic("sysv.shmctl.shm_lock_other_uid_eperm",
          "SHM_LOCK and SHM_UNLOCK by a process that is neither owner nor creator, without CAP_IPC_LOCK, "
          "fail with EPERM, and the segment is not locked",
          source="shmctl(2) ERRORS EPERM (SHM_LOCK, SHM_UNLOCK)", tier="linux")
@requires("setuid")
def test_shm_lock_other_uid(shm_segment: ShmSegmentFactory, run_in_child: RunInChild) -> None:
    segment = shm_segment(mode=0o666)

    def both(shmid: int) -> tuple[int, int]:
        return _errno_of(libc.shmctl, shmid, C.SHM_LOCK), _errno_of(libc.shmctl, shmid, C.SHM_UNLOCK)

    outcome = run_in_child(_as_user, OTHER_UID, OTHER_UID, both, segment.shmid)
    assert outcome.result() == (errno.EPERM, errno.EPERM)
    assert not segment.stat().locked


@semantic("sysv.shmctl.ipc_stat_bad_buffer_efault",
          "IPC_STAT into a buffer the caller cannot write (a PROT_NONE page) fails with EFAULT",
          source="shmctl(2) ERRORS EFAULT", tier="posix")
def test_ipc_stat_efault(shm_segment: ShmSegmentFactory, mapped_pages: MappedPages) -> None:
    segment = shm_segment()
    inaccessible = mapped_pages(1, prot=C.PROT_NONE)
    fails_with(errno.EFAULT, libc.shmctl, segment.shmid, C.IPC_STAT, inaccessible.addr)


@semantic("sysv.shmctl.invalid_cmd_einval",
          "shmctl with a cmd that is not a valid command fails with EINVAL",
          source="shmctl(2) ERRORS EINVAL", tier="posix")
def test_shmctl_invalid_cmd(shm_segment: ShmSegmentFactory) -> None:
    segment = shm_segment()
    fails_with(errno.EINVAL, libc.shmctl, segment.shmid, 0x7FFF, libc.ShmidDs())


@semantic("sysv.shmat.removed_id_einval",
          "Once a segment without attachments is removed (IPC_RMID), its identifier is invalid: shmat and "
          "IPC_STAT fail with EINVAL",
          source="shmat(2) ERRORS EINVAL; shmctl(2) ERRORS EINVAL", tier="posix")
def test_removed_id_invalid(shm_segment: ShmSegmentFactory) -> None:
    segment = shm_segment()
    segment.remove()
    fails_with(errno.EINVAL, libc.shmat, segment.shmid, 0, 0)
    fails_with(errno.EINVAL, libc.shm_stat, segment.shmid)


@semantic("sysv.shmat.remap_null_address_einval",
          "shmat with SHM_REMAP and a NULL address fails with EINVAL",
          source="shmat(2) ERRORS EINVAL (SHM_REMAP with shmaddr NULL)", tier="linux")
def test_shmat_remap_null(shm_segment: ShmSegmentFactory) -> None:
    segment = shm_segment()
    fails_with(errno.EINVAL, libc.shmat, segment.shmid, 0, C.SHM_REMAP)
    assert segment.stat().nattch == 0


# --- what an attachment looks like -------------------------------------------------------

@semantic("sysv.shmget.new_segment_zeroed",
          "A new segment's memory is initialized to zero: its first, an inner and its last byte read 0",
          source="shmget(2) DESCRIPTION (initialized to zero)", tier="posix")
def test_new_segment_zero(shm_segment: ShmSegmentFactory) -> None:
    segment = shm_segment(3 * PAGE)
    addr = segment.attach()
    assert ctypes.string_at(addr, 3 * PAGE) == bytes(3 * PAGE)


@semantic("sysv.shmat.size_rounded_up_to_pages",
          "A segment whose size is not a page multiple is attached as whole pages: the rest of its last "
          "page is usable and reads zero, the page after is not mapped, and shm_segsz keeps the size asked",
          source="shmget(2) DESCRIPTION (size rounded up to a multiple of PAGE_SIZE)", tier="linux")
def test_attach_rounds_to_pages(shm_segment: ShmSegmentFactory, arena: Any) -> None:
    segment = shm_segment(PAGE + 1)
    arena.hole(10, 3)
    addr = segment.attach(arena.page(10))
    assert probe_read_value(addr + PAGE + 1) == (None, 0)
    assert probe_write(addr + 2 * PAGE - 1, 7) is None
    assert probe_read(arena.page(12)) == Fault(signal.SIGSEGV, C.SEGV_MAPERR, arena.page(12))
    assert probe_read(arena.page(9)) == Fault(signal.SIGSEGV, C.SEGV_ACCERR, arena.page(9))
    assert segment.stat().segsz == PAGE + 1


@semantic("sysv.shmdt.unmaps_whole_attachment",
          "shmdt removes the whole attachment, first to last page, and nothing around it: the pages are "
          "unmapped (SEGV_MAPERR) and the neighbouring mappings stay",
          source="shmdt(2) DESCRIPTION", tier="posix")
def test_shmdt_unmaps_all(shm_segment: ShmSegmentFactory, arena: Any) -> None:
    segment = shm_segment(3 * PAGE)
    arena.hole(10, 3)
    addr = segment.attach(arena.page(10))
    segment.detach(addr)
    for page in (10, 11, 12):
        assert probe_read(arena.page(page)) == Fault(signal.SIGSEGV, C.SEGV_MAPERR, arena.page(page))
    for page in (9, 13):
        assert probe_read(arena.page(page)) == Fault(signal.SIGSEGV, C.SEGV_ACCERR, arena.page(page))


@semantic("sysv.shmat.rdonly_mprotect_write_eacces",
          "An SHM_RDONLY attachment is mapped 'r--s' and cannot be made writable: mprotect with PROT_WRITE "
          "fails with EACCES",
          source="shmat(2) SHM_RDONLY; mprotect(2) ERRORS EACCES", tier="linux")
def test_rdonly_attachment_mprotect(shm_segment: ShmSegmentFactory) -> None:
    segment = shm_segment()
    addr = segment.attach(0, C.SHM_RDONLY)
    entry = procfs.vma_at(addr)
    assert entry is not None and entry.perms == "r--s"
    fails_with(errno.EACCES, libc.mprotect, addr, PAGE, C.PROT_READ | C.PROT_WRITE)
    assert probe_write(addr, 1) == Fault(signal.SIGSEGV, C.SEGV_ACCERR, addr)


@semantic("sysv.procfs.maps_names_key_and_id",
          "/proc/self/maps names an attachment '/SYSV<key as 8 hex digits> (deleted)' with the segment's "
          "identifier as its inode number",
          source="proc(5) /proc/pid/maps; ipc/shm.c (i_ino = shmid)", tier="linux")
def test_maps_sysv_name(shm_segment: ShmSegmentFactory) -> None:
    segment = shm_segment(2 * PAGE, key="unique")
    addr = segment.attach()
    entry = procfs.vma_at(addr)
    assert entry is not None and (entry.start, entry.end) == (addr, addr + 2 * PAGE)
    assert (entry.path, entry.inode) == (f"/SYSV{segment.key:08x} (deleted)", segment.shmid)


def _sysvipc_row(shmid: int) -> procfs.SysvShmEntry:
    rows = [row for row in procfs.read_sysvipc_shm() if row.shmid == shmid]
    assert len(rows) == 1, f"/proc/sysvipc/shm has {len(rows)} rows for id {shmid}"
    return rows[0]


@semantic("sysv.procfs.sysvipc_matches_ipc_stat",
          "/proc/sysvipc/shm lists the segment with the values IPC_STAT reports: key, id, mode, size, "
          "cpid, lpid, nattch, uid, gid, cuid, cgid and the three times",
          source="proc(5) /proc/sysvipc; shmctl(2) IPC_STAT", tier="linux")
@requires("path:/proc/sysvipc/shm")
def test_sysvipc_matches_stat(shm_segment: ShmSegmentFactory) -> None:
    segment = shm_segment(3 * PAGE + 1, key="unique", mode=0o640)
    segment.attach()
    stat, row = segment.stat(), _sysvipc_row(segment.shmid)
    assert (row.key, row.perms, row.size, row.cpid, row.lpid, row.nattch) == (
        stat.key, stat.mode, stat.segsz, stat.cpid, stat.lpid, stat.nattch)
    assert (row.uid, row.gid, row.cuid, row.cgid) == (stat.uid, stat.gid, stat.cuid, stat.cgid)
    assert (row.atime, row.dtime, row.ctime) == (stat.atime, stat.dtime, stat.ctime)


@semantic("sysv.procfs.sysvipc_rss_counts_touched_pages",
          "/proc/sysvipc/shm's rss column counts the bytes of the segment's pages in memory: 0 for a new "
          "segment, two pages once two of its pages were written",
          source="proc(5) /proc/sysvipc; ipc/shm.c sysvipc_shm_proc_show", tier="linux")
@requires("path:/proc/sysvipc/shm")
def test_sysvipc_rss(shm_segment: ShmSegmentFactory) -> None:
    segment = shm_segment(4 * PAGE)
    addr = segment.attach()
    before = _sysvipc_row(segment.shmid).rss
    if before is None:
        pytest.skip("needs:an rss column in /proc/sysvipc/shm")
    ctypes.memset(addr, 1, 1)
    ctypes.memset(addr + 3 * PAGE + 5, 1, 1)
    assert (before, _sysvipc_row(segment.shmid).rss) == (0, 2 * PAGE)


@semantic("sysv.procfs.sysvipc_shows_dest",
          "After IPC_RMID on an attached segment, /proc/sysvipc/shm shows it with key 0 and SHM_DEST in its "
          "perms column, as IPC_STAT's mode",
          source="proc(5) /proc/sysvipc; shmctl(2) SHM_DEST", tier="linux")
@requires("path:/proc/sysvipc/shm")
def test_sysvipc_dest(shm_segment: ShmSegmentFactory) -> None:
    segment = shm_segment(key="unique")
    segment.attach()
    segment.remove()
    row = _sysvipc_row(segment.shmid)
    assert row.key == C.IPC_PRIVATE and row.perms & C.SHM_DEST
    assert row.perms == segment.stat().mode


# --- fork and exec stamp the segment -------------------------------------------------------

def _stat_in_child(shmid: int) -> tuple[int, int, int]:
    stat = stat_segment(shmid)
    return stat.nattch, stat.lpid, os.getppid()


@semantic("sysv.fork.lpid_is_forking_parent",
          "The attachment a fork child inherits is counted in the parent's name: right after fork, "
          "shm_lpid is the parent's pid (the fork ran in the parent), not the child's",
          source="shmctl(2) shm_lpid; ipc/shm.c shm_open (called by fork for each attachment)", tier="impl")
def test_fork_stamps_parent(shm_segment: ShmSegmentFactory, run_in_child: RunInChild) -> None:
    segment = shm_segment()
    segment.attach()
    other = run_in_child(_attach_detach, segment.shmid).result()
    assert segment.stat().lpid == other
    nattch, lpid, parent = run_in_child(_stat_in_child, segment.shmid).result()
    assert (nattch, lpid) == (2, parent) and parent == os.getpid()


@semantic("sysv.exec.detach_stamps_exec_pid",
          "The detach at execve is the exec'ing process's: while the new program runs, shm_lpid is its pid, "
          "shm_dtime is set and nattch is back to the parent's attachment",
          source="shmat(2) NOTES (execve); shmctl(2) shm_lpid, shm_dtime", tier="posix")
def test_exec_detach_stamps(shm_segment: ShmSegmentFactory) -> None:
    segment = shm_segment()
    segment.attach()
    before = int(time.time())
    with exec_held() as pid:
        stat = segment.stat()
    assert (stat.nattch, stat.lpid) == (1, pid)
    assert before - COARSE_CLOCK_SLACK <= stat.dtime <= int(time.time())


# --- SHM_HUGETLB without privilege -------------------------------------------------------

def _hugetlb_group() -> int:
    with open("/proc/sys/vm/hugetlb_shm_group") as handle:
        return int(handle.read())


def _hugetlb_unprivileged(size: int) -> int | str:
    """In a child: give up CAP_IPC_LOCK (as another uid when we are root), then shmget SHM_HUGETLB."""
    if os.geteuid() == 0:
        _become(OTHER_UID, OTHER_UID)
    elif "CAP_IPC_LOCK" in _effective_caps():
        drop_capability(CAP_IPC_LOCK)
    group = _hugetlb_group()
    if "CAP_IPC_LOCK" in _effective_caps() or group == os.getegid() or group in os.getgroups():
        return f"needs:a caller without CAP_IPC_LOCK outside vm.hugetlb_shm_group={group}"
    try:
        shmid = libc.shmget(C.IPC_PRIVATE, size, C.IPC_CREAT | C.SHM_HUGETLB | 0o600)
    except OSError as error:
        return error.errno or -1
    libc.shmctl(shmid, C.IPC_RMID)
    return 0


@semantic("sysv.shmget.hugetlb_unprivileged_eperm",
          "shmget with SHM_HUGETLB by a caller without CAP_IPC_LOCK that is not in vm.hugetlb_shm_group "
          "fails with EPERM (RLIMIT_MEMLOCK no longer grants it)",
          source="shmget(2) ERRORS EPERM; proc(5) /proc/sys/vm/hugetlb_shm_group; "
                 "fs/hugetlbfs/inode.c hugetlb_file_setup", tier="linux")
@requires("feature:HUGETLB")
def test_hugetlb_without_privilege(run_in_child: RunInChild, memsys_env: Environment) -> None:
    if os.geteuid() == 0 and not memsys_env.capabilities.has("CAP_SETUID"):
        pytest.skip("needs:CAP_SETUID (root gives up CAP_IPC_LOCK by changing uid)")
    result = run_in_child(_hugetlb_unprivileged, PAGE).result()
    if isinstance(result, str):
        pytest.skip(result)
    assert result == errno.EPERM


# --- kernel.shm_rmid_forced in a private IPC namespace -------------------------------------

def _create_in_grandchild() -> int:
    """Fork a process that creates a segment (nattch 0) and exits; its id."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - grandchild
        try:
            os.close(read_end)
            os.write(write_end, str(libc.shmget(C.IPC_PRIVATE, PAGE, C.IPC_CREAT | 0o600)).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    text = os.read(read_end, 64)
    os.close(read_end)
    os.waitpid(pid, 0)
    return int(text)


def _forced_creator_exit() -> tuple[int, int]:
    _enter_private_ipc_namespace()
    _write_sysctl("shm_rmid_forced", 1)
    own = libc.shmget(C.IPC_PRIVATE, PAGE, C.IPC_CREAT | 0o600)
    orphan = _create_in_grandchild()
    return _errno_of(libc.shm_stat, own), _errno_of(libc.shm_stat, orphan)


@semantic("sysv.ipcns.rmid_forced_creator_exit_destroys",
          "With kernel.shm_rmid_forced = 1, a segment with no attachment is destroyed when its creator exits "
          "(IPC_STAT then EINVAL), while one whose creator lives stays (checked in a private IPC namespace)",
          source="proc(5) /proc/sys/kernel/shm_rmid_forced; ipc/shm.c exit_shm", tier="linux")
def test_rmid_forced_creator_exit(ipc_namespace_limits: None, run_in_child: RunInChild) -> None:
    assert run_in_child(_forced_creator_exit).result() == (0, errno.EINVAL)


def _forced_setting_destroys_orphans() -> tuple[int, int, int]:
    _enter_private_ipc_namespace()
    _write_sysctl("shm_rmid_forced", 0)
    own = libc.shmget(C.IPC_PRIVATE, PAGE, C.IPC_CREAT | 0o600)
    orphan = _create_in_grandchild()
    survived = _errno_of(libc.shm_stat, orphan)
    _write_sysctl("shm_rmid_forced", 1)
    return survived, _errno_of(libc.shm_stat, orphan), _errno_of(libc.shm_stat, own)


@semantic("sysv.ipcns.rmid_forced_setting_destroys_orphans",
          "With kernel.shm_rmid_forced = 0 a segment outlives its creator; setting it to 1 destroys at once "
          "every such orphan without attachments, but not a segment whose creator lives (checked in a private "
          "IPC namespace)",
          source="proc(5) /proc/sys/kernel/shm_rmid_forced; ipc/shm.c shm_destroy_orphaned", tier="linux")
def test_rmid_forced_setting(ipc_namespace_limits: None, run_in_child: RunInChild) -> None:
    assert run_in_child(_forced_setting_destroys_orphans).result() == (0, errno.EINVAL, 0)


def _forced_last_detach() -> tuple[int, int]:
    _enter_private_ipc_namespace()
    results = []
    for forced in (0, 1):
        _write_sysctl("shm_rmid_forced", forced)
        shmid = libc.shmget(C.IPC_PRIVATE, PAGE, C.IPC_CREAT | 0o600)
        libc.shmdt(libc.shmat(shmid))
        results.append(_errno_of(libc.shm_stat, shmid))
    return results[0], results[1]


@semantic("sysv.ipcns.rmid_forced_last_detach_destroys",
          "With kernel.shm_rmid_forced = 1 a segment is destroyed when its last attachment goes, as if "
          "IPC_RMID had been called (with 0 it stays) (checked in a private IPC namespace)",
          source="proc(5) /proc/sys/kernel/shm_rmid_forced; ipc/shm.c shm_close", tier="linux")
def test_rmid_forced_last_detach(ipc_namespace_limits: None, run_in_child: RunInChild) -> None:
    assert run_in_child(_forced_last_detach).result() == (0, errno.EINVAL)
