"""Conformance: mmap(2) — every provokable ERRORS entry, the effect of every flag,
the signals a mapping can raise, and the tutorial tutorial's claims about mmap.

Every expectation is computed from the environment (capabilities, rlimits,
overcommit mode, huge-page pool, mount options, kernel features probed on a
scratch object) before the call under test; MAP_FIXED only ever happens inside
the ``arena`` fixture.

The tutorial's claims deliberately not turned into tests: "More efficient than brk for large
sizes" (a performance opinion, not an observable semantic) and "Large allocations
-> mmap" (advice about glibc's malloc threshold, covered by the malloc/brk suite).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import resource
import secrets
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from pytest_memsyscalls import (
    MappedFile,
    MappedPages,
    RunInChild,
    fails_with,
    faults_with,
    requires,
    semantic,
    succeeds,
)
from pytest_memsyscalls.environment.features import NOT_PROMISED
from pytest_memsyscalls.environment.fingerprint import Environment
from pytest_memsyscalls.kernel import constants as C
from pytest_memsyscalls.kernel import libc, probe, procfs
from pytest_memsyscalls.kernel.constants import ANON, RW
from pytest_memsyscalls.kernel.libc import PAGE_SIZE as P
from pytest_memsyscalls.memory.mapping import Arena, Mapping

from ._noexec import mount_private_noexec_tmpfs, noexec_directory
from ._oracles import drop_capability, effective_caps, map_count_observation, mincore_sees_residency, resident

# A flag bit no kernel uapi header defines (between MAP_FIXED_NOREPLACE and the
# MAP_HUGE_* size field): MAP_SHARED must ignore it, MAP_SHARED_VALIDATE must refuse it.
UNKNOWN_MAP_FLAG = 0x200000
CAP_SYS_RAWIO = 17  # include/uapi/linux/capability.h: lifts vm.mmap_min_addr


# --- helpers -----------------------------------------------------------------------

@contextmanager
def opened(path: Path, flags: int) -> Iterator[int]:
    """A raw descriptor (os.open is a tool here, not the call under test), always closed."""
    fd = os.open(path, flags | os.O_CLOEXEC, 0o600)
    try:
        yield fd
    finally:
        os.close(fd)


def make_file(tmp_path: Path, content: bytes, name: str = "data.bin") -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    path.chmod(0o600)
    return path


@contextmanager
def mapped(addr: int, length: int, prot: int, flags: int, fd: int = -1, offset: int = 0) -> Iterator[int]:
    """libc.mmap whose result is always unmapped (for calls expected to succeed)."""
    result = succeeds(libc.mmap, addr, length, prot, flags, fd, offset)
    try:
        yield result
    finally:
        libc.munmap(result, length)


def vmflags_of(addr: int) -> frozenset[str]:
    """VmFlags of the VMA at addr; skips (naming the missing oracle) where smaps has none."""
    entry = procfs.smaps_at(addr)
    assert entry is not None, f"{addr:#x} is not in /proc/self/smaps"
    if not entry.vmflags:
        pytest.skip("unsupported:smaps VmFlags (no VmFlags line in /proc/self/smaps; the flag cannot be "
                    "observed)")
    return entry.vmflags


def errno_text(number: int | None) -> str:
    return "success" if number is None else errno.errorcode.get(number, str(number))


def fill_pattern(length: int) -> bytes:
    return bytes((i * 7 + i // P) & 0xFF for i in range(length))


def kernel_at_least(env: Environment, major: int, minor: int) -> bool:
    parts = env.kernel.release.split(".")
    try:
        return (int(parts[0]), int(parts[1].split("-")[0])) >= (major, minor)
    except (IndexError, ValueError):
        return False


def can_lock(env: Environment, length: int) -> str | None:
    """Why MAP_LOCKED of ``length`` bytes must fail here (an errno name), or None if it must succeed.

    mmap(2)/mlock(2): without CAP_IPC_LOCK, RLIMIT_MEMLOCK 0 refuses any lock (EPERM,
    can_do_mlock), and a lock past the limit fails with EAGAIN.
    """
    if env.capabilities.has("CAP_IPC_LOCK"):
        return None
    soft = env.rlimits.memlock.soft
    if soft is None:
        return None
    if soft == 0:
        return "EPERM"
    locked_kb = procfs.status_kb(procfs.read_status(), "VmLck") or 0
    return None if locked_kb * 1024 + length <= soft else "EAGAIN"


# --- ERRORS ------------------------------------------------------------------------

@semantic("mmap.einval.length_zero", "mmap with length 0 fails with EINVAL (since Linux 2.6.12).",
          source="mmap(2) ERRORS", tier="posix")
def test_length_zero_is_einval() -> None:
    fails_with(errno.EINVAL, libc.mmap, 0, 0, RW, ANON)


@semantic("mmap.einval.fixed_unaligned_addr",
          "MAP_FIXED with an address that is not page-aligned fails with EINVAL and maps nothing.",
          source="mmap(2) ERRORS", tier="posix")
def test_fixed_unaligned_addr_is_einval(arena: Arena) -> None:
    target = arena.page(3) + 1
    fails_with(errno.EINVAL, libc.mmap, target, P, RW, ANON | C.MAP_FIXED)
    entry = procfs.vma_at(arena.page(3))
    assert entry is not None and entry.perms.startswith("---"), \
        f"the arena's PROT_NONE reservation must be untouched by the failed call; maps says {entry}"


@semantic("mmap.einval.unaligned_offset", "A file offset that is not a multiple of the page size fails with "
                                          "EINVAL.",
          source="mmap(2) ERRORS", tier="posix")
def test_unaligned_offset_is_einval(tmp_path: Path) -> None:
    path = make_file(tmp_path, b"x" * (2 * P))
    with opened(path, os.O_RDONLY) as fd:
        fails_with(errno.EINVAL, libc.mmap, 0, P, C.PROT_READ, C.MAP_PRIVATE, fd, 1)


@pytest.mark.parametrize("file_backed", [False, True], ids=["anonymous", "file"])
@semantic("mmap.einval.no_mapping_type",
          "flags containing none of MAP_PRIVATE, MAP_SHARED or MAP_SHARED_VALIDATE fail with EINVAL.",
          source="mmap(2) ERRORS", tier="posix")
def test_missing_mapping_type_is_einval(tmp_path: Path, file_backed: bool) -> None:
    if not file_backed:
        fails_with(errno.EINVAL, libc.mmap, 0, P, RW, C.MAP_ANONYMOUS)
        return
    path = make_file(tmp_path, b"x" * P)
    with opened(path, os.O_RDWR) as fd:
        fails_with(errno.EINVAL, libc.mmap, 0, P, C.PROT_READ, 0, fd)


@semantic("mmap.eopnotsupp.shared_validate_unknown_flag",
          "MAP_SHARED_VALIDATE fails with EOPNOTSUPP when flags holds a bit the kernel does not know.",
          source="mmap(2) MAP_SHARED_VALIDATE", tier="linux")
@requires("feature:MAP_SHARED_VALIDATE")
def test_shared_validate_rejects_unknown_flag(tmp_path: Path) -> None:
    path = make_file(tmp_path, b"x" * P)
    with opened(path, os.O_RDWR) as fd:
        fails_with(errno.EOPNOTSUPP, libc.mmap, 0, P, RW, C.MAP_SHARED_VALIDATE | UNKNOWN_MAP_FLAG, fd)


@semantic("mmap.shared.ignores_unknown_flag",
          "Plain MAP_SHARED silently ignores an unknown flag bit (the reason MAP_SHARED_VALIDATE exists).",
          source="mmap(2) MAP_SHARED_VALIDATE", tier="linux")
def test_shared_ignores_unknown_flag(tmp_path: Path) -> None:
    path = make_file(tmp_path, b"x" * P)
    with opened(path, os.O_RDWR) as fd, mapped(0, P, RW, C.MAP_SHARED | UNKNOWN_MAP_FLAG, fd) as addr:
        entry = procfs.vma_at(addr)
        assert entry is not None and entry.shared


@semantic("mmap.shared_validate.accepts_known_flags",
          "MAP_SHARED_VALIDATE accepts known flags (MAP_POPULATE, MAP_NORESERVE, MAP_DENYWRITE, "
          "MAP_EXECUTABLE) and then behaves like MAP_SHARED: stores reach the file.",
          source="mmap(2) MAP_SHARED_VALIDATE", tier="linux")
@requires("feature:MAP_SHARED_VALIDATE")
def test_shared_validate_accepts_known_flags(tmp_path: Path) -> None:
    path = make_file(tmp_path, b"x" * P)
    flags = C.MAP_SHARED_VALIDATE | C.MAP_POPULATE | C.MAP_NORESERVE | C.MAP_DENYWRITE | C.MAP_EXECUTABLE
    with opened(path, os.O_RDWR) as fd, mapped(0, P, RW, flags, fd) as addr:
        ctypes.memmove(addr + 10, b"validated", 9)
        assert os.pread(fd, 9, 10) == b"validated"


@semantic("mmap.eopnotsupp.map_sync_without_dax",
          "MAP_SHARED_VALIDATE|MAP_SYNC on a file that does not support DAX fails with EOPNOTSUPP.",
          source="mmap(2) MAP_SYNC", tier="linux")
@requires("feature:MAP_SHARED_VALIDATE")
def test_map_sync_without_dax_is_eopnotsupp(tmp_path: Path) -> None:
    mounts = procfs.parse_mountinfo(procfs._read("/proc/self/mountinfo"))
    here = str(tmp_path.resolve())
    containing = [m for m in mounts
                  if here == m.mount_point or here.startswith(m.mount_point.rstrip("/") + "/")]
    owner = max(containing, key=lambda m: len(m.mount_point), default=None)
    if owner is not None and any(o.startswith("dax") for o in owner.mount_options + owner.super_options):
        pytest.skip(f"needs:non-DAX file system ({owner.mount_point} is mounted with DAX)")
    path = make_file(tmp_path, b"x" * P)
    with opened(path, os.O_RDWR) as fd:
        fails_with(errno.EOPNOTSUPP, libc.mmap, 0, P, RW, C.MAP_SHARED_VALIDATE | C.MAP_SYNC, fd)


@semantic("mmap.eexist.fixed_noreplace_over_mapping",
          "MAP_FIXED_NOREPLACE over a range that clashes with an existing mapping fails with EEXIST and "
          "leaves the existing mapping intact.", source="mmap(2) ERRORS", tier="linux")
@requires("feature:MAP_FIXED_NOREPLACE")
def test_fixed_noreplace_over_mapping_is_eexist(arena: Arena) -> None:
    existing = arena.map(5, 2)
    existing.write(0, 0x5A)
    fails_with(errno.EEXIST, libc.mmap, arena.page(4), 2 * P, RW, ANON | C.MAP_FIXED_NOREPLACE)
    assert existing.read(0) == 0x5A


@semantic("mmap.fixed_noreplace.maps_exactly_when_free",
          "MAP_FIXED_NOREPLACE over a free range maps exactly at the requested address.",
          source="mmap(2) MAP_FIXED_NOREPLACE", tier="linux")
@requires("feature:MAP_FIXED_NOREPLACE")
def test_fixed_noreplace_maps_free_range_exactly(arena: Arena) -> None:
    arena.hole(10, 2)
    addr = libc.mmap(arena.page(10), 2 * P, RW, ANON | C.MAP_FIXED_NOREPLACE)
    try:
        assert addr == arena.page(10)
    finally:
        libc.munmap(addr, 2 * P)  # the arena still records pages 10-11 as a hole


@semantic("mmap.eacces.shared_write_readonly_fd",
          "MAP_SHARED with PROT_WRITE of a file opened O_RDONLY fails with EACCES (even for root: it is "
          "the descriptor's mode that counts).", source="mmap(2) ERRORS", tier="posix")
def test_shared_write_on_readonly_fd_is_eacces(tmp_path: Path) -> None:
    path = make_file(tmp_path, b"x" * P)
    with opened(path, os.O_RDONLY) as fd:
        fails_with(errno.EACCES, libc.mmap, 0, P, RW, C.MAP_SHARED, fd)


@semantic("mmap.private.write_on_readonly_fd_allowed",
          "MAP_PRIVATE with PROT_WRITE of an O_RDONLY file succeeds: copy-on-write needs only read access, "
          "and the store does not reach the file.", source="mmap(2) ERRORS (EACCES applies to MAP_SHARED)",
          tier="posix")
def test_private_write_on_readonly_fd_allowed(tmp_path: Path) -> None:
    path = make_file(tmp_path, b"x" * P)
    with opened(path, os.O_RDONLY) as fd, mapped(0, P, RW, C.MAP_PRIVATE, fd) as addr:
        ctypes.memmove(addr, b"y", 1)
        assert os.pread(fd, 1, 0) == b"x"


@semantic("mmap.eacces.write_only_fd",
          "Mapping a file whose descriptor is open write-only fails with EACCES (a file mapping needs read "
          "access).",
          source="mmap(2) ERRORS", tier="posix")
def test_write_only_fd_is_eacces(tmp_path: Path) -> None:
    path = make_file(tmp_path, b"x" * P)
    with opened(path, os.O_WRONLY) as fd:
        fails_with(errno.EACCES, libc.mmap, 0, P, C.PROT_READ, C.MAP_PRIVATE, fd)


def _noexec_exec_mapping_errno(directory: str, make_mount: bool) -> int | None:
    """Child: (optionally mount a private noexec tmpfs on directory), map a file there PROT_EXEC."""
    if make_mount:
        mount_private_noexec_tmpfs(directory)
    path = os.path.join(directory, f"memsys-noexec-{os.getpid()}.bin")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.unlink(path)
        os.ftruncate(fd, P)
        try:
            addr = libc.mmap(0, P, C.PROT_READ | C.PROT_EXEC, C.MAP_PRIVATE, fd)
        except OSError as error:
            return error.errno
        libc.munmap(addr, P)
        return None
    finally:
        os.close(fd)


@semantic("mmap.eperm.exec_on_noexec_mount",
          "PROT_EXEC on a file of a file system mounted noexec fails with EPERM (not EACCES).",
          source="mmap(2) ERRORS", tier="linux")
def test_exec_on_noexec_mount_is_eperm(tmp_path: Path, memsys_env: Environment,
                                       run_in_child: RunInChild) -> None:
    directory, must_mount = noexec_directory(memsys_env, str(tmp_path), run_in_child)
    outcome = run_in_child(_noexec_exec_mapping_errno, directory, must_mount)
    observed = outcome.result()
    assert observed == errno.EPERM, (
        f"PROT_EXEC mapping of a file on a noexec mount ({directory}): expected EPERM, got "
        f"{errno_text(observed)}")


@semantic("mmap.ebadf.closed_fd", "A file mapping (no MAP_ANONYMOUS) of a descriptor that is not open fails "
          "with EBADF.", source="mmap(2) ERRORS", tier="posix")
def test_closed_fd_is_ebadf(tmp_path: Path) -> None:
    path = make_file(tmp_path, b"x" * P)
    with opened(path, os.O_RDONLY) as fd:
        closed = fd
    fails_with(errno.EBADF, libc.mmap, 0, P, C.PROT_READ, C.MAP_PRIVATE, closed)


@semantic("mmap.anonymous.ignores_fd", "With MAP_ANONYMOUS the fd argument is ignored (-1 is merely "
          "customary): an invalid descriptor does not cause EBADF.", source="mmap(2) MAP_ANONYMOUS",
          tier="linux")
def test_anonymous_ignores_fd(tmp_path: Path) -> None:
    path = make_file(tmp_path, b"x" * P)
    with opened(path, os.O_RDONLY) as fd:
        closed = fd
    with mapped(0, P, RW, ANON, closed) as addr:
        assert probe.read(addr) is None


@semantic("mmap.enodev.pipe", "Mapping a descriptor whose file system has no mmap support (a pipe) fails "
          "with ENODEV.", source="mmap(2) ERRORS", tier="linux")
def test_pipe_is_enodev() -> None:
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    try:
        fails_with(errno.ENODEV, libc.mmap, 0, P, C.PROT_READ, C.MAP_PRIVATE, read_end)
    finally:
        os.close(read_end)
        os.close(write_end)


@semantic("mmap.enomem.length_exceeds_address_space",
          "A length larger than the user address space (2**62 bytes) fails with ENOMEM.",
          source="mmap(2) ERRORS", tier="linux")
def test_huge_length_is_enomem() -> None:
    fails_with(errno.ENOMEM, libc.mmap, 0, 1 << 62, C.PROT_NONE, ANON | C.MAP_NORESERVE)


def _errno_of_mmap_under_limit(which: int, status_key: str, headroom: int, length: int,
                                prot: int) -> tuple[int | None, int | None]:
    """Child: set rlimit ``which`` to (current usage + headroom), then map ``length`` with
    ``prot`` and PROT_NONE; returns the errno of each (None = success)."""
    used = (procfs.status_kb(procfs.read_status(), status_key) or 0) * 1024
    _, hard = resource.getrlimit(which)
    limit = used + headroom if hard == resource.RLIM_INFINITY else min(used + headroom, hard)
    resource.setrlimit(which, (limit, hard))
    results: list[int | None] = []
    for protection in (prot, C.PROT_NONE):
        try:
            addr = libc.mmap(0, length, protection, ANON | C.MAP_NORESERVE)
        except OSError as error:
            results.append(error.errno)
        else:
            libc.munmap(addr, length)
            results.append(None)
    return results[0], results[1]


@semantic("mmap.enomem.rlimit_as", "A mapping that would take the address space past RLIMIT_AS fails with "
          "ENOMEM, whatever its protection (PROT_NONE counts too).", source="mmap(2) ERRORS; getrlimit(2)",
          tier="posix")
def test_rlimit_as_is_enomem(run_in_child: RunInChild) -> None:
    outcome = run_in_child(_errno_of_mmap_under_limit, resource.RLIMIT_AS, "VmSize", 16 << 20, 1 << 30, RW)
    rw_errno, none_errno = outcome.result()
    assert (rw_errno, none_errno) == (errno.ENOMEM, errno.ENOMEM), (
        f"1 GiB past RLIMIT_AS: RW mapping got {errno_text(rw_errno)}, PROT_NONE got "
        f"{errno_text(none_errno)}; "
        "both should be ENOMEM")


@semantic("mmap.enomem.rlimit_data",
          "A private writable mapping past RLIMIT_DATA fails with ENOMEM (since Linux 4.7), while a "
          "PROT_NONE "
          "mapping of the same size, which is not data, succeeds.", source="mmap(2) ERRORS", tier="linux")
def test_rlimit_data_is_enomem(run_in_child: RunInChild) -> None:
    outcome = run_in_child(_errno_of_mmap_under_limit, resource.RLIMIT_DATA, "VmData", 16 << 20, 1 << 30, RW)
    rw_errno, none_errno = outcome.result()
    assert (rw_errno, none_errno) == (errno.ENOMEM, None), (
        f"1 GiB past RLIMIT_DATA: private RW mapping got {errno_text(rw_errno)} (expected ENOMEM), "
        f"PROT_NONE mapping got {errno_text(none_errno)} (expected success)")


@semantic("mmap.eoverflow.offset_past_max_file_size",
          "On 64-bit Linux, an offset + length beyond the largest file offset (2**63-1) fails with EOVERFLOW "
          "(the man page documents EOVERFLOW only for 32-bit; the kernel's file_mmap_ok() applies it here "
          "too).",
          source="mm/mmap.c file_mmap_ok(); mmap(2) ERRORS", tier="impl")
@requires(lambda env: None if ctypes.sizeof(ctypes.c_long) == 8 else "needs:64-bit off_t and long")
def test_offset_past_max_file_size_is_eoverflow(tmp_path: Path) -> None:
    path = make_file(tmp_path, b"x" * P)
    offset = (1 << 63) - P  # the last page-aligned off_t
    with opened(path, os.O_RDONLY) as fd:
        fails_with(errno.EOVERFLOW, libc.mmap, 0, 2 * P, C.PROT_READ, C.MAP_PRIVATE, fd, offset)


@semantic("mmap.hugetlb.enomem_without_pool",
          "MAP_HUGETLB fails with ENOMEM when the huge page pool has no free page and no overcommit "
          "(HugePages_Free 0, nr_overcommit_hugepages 0).", source="mmap(2) ERRORS; hugetlbpage.rst",
          tier="linux")
@requires("feature:HUGETLB")
def test_hugetlb_without_pool_is_enomem(memsys_env: Environment) -> None:
    huge = memsys_env.hugepages
    if huge is None or huge.free is None or huge.size_kb is None:
        pytest.skip("unsupported:HugeTLB (no HugePages lines in /proc/meminfo)")
    try:
        overcommit = int(procfs._read("/proc/sys/vm/nr_overcommit_hugepages"))
    except (OSError, ValueError):
        pytest.skip("unsupported:HugeTLB (/proc/sys/vm/nr_overcommit_hugepages unreadable)")
    if huge.free or overcommit:
        pytest.skip(f"needs:empty huge page pool (HugePages_Free={huge.free}, "
                    f"nr_overcommit_hugepages={overcommit})")
    fails_with(errno.ENOMEM, libc.mmap, 0, huge.size_kb * 1024, RW, ANON | C.MAP_HUGETLB)


def _map_locked_errno(memlock: int, length: int) -> int | None:
    """Child: lower RLIMIT_MEMLOCK to ``memlock`` and map ``length`` bytes MAP_LOCKED."""
    _, hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    resource.setrlimit(resource.RLIMIT_MEMLOCK, (memlock, hard))
    try:
        addr = libc.mmap(0, length, RW, ANON | C.MAP_LOCKED)
    except OSError as error:
        return error.errno
    libc.munmap(addr, length)
    return None


@semantic("mmap.eagain.map_locked_over_rlimit",
          "Without CAP_IPC_LOCK, MAP_LOCKED of more than RLIMIT_MEMLOCK allows fails with EAGAIN.",
          source="mmap(2) ERRORS", tier="linux")
@requires(lambda env: None if not env.capabilities.has("CAP_IPC_LOCK") else
          "needs:without-CAP_IPC_LOCK (the capability lifts RLIMIT_MEMLOCK)",
          lambda env: None if env.rlimits.memlock.hard is None or env.rlimits.memlock.hard >= P else
          f"limit:RLIMIT_MEMLOCK hard={env.rlimits.memlock.hard} (a child cannot set a one-page soft limit)")
def test_map_locked_over_rlimit_is_eagain(run_in_child: RunInChild) -> None:
    observed = run_in_child(_map_locked_errno, P, 4 * P).result()
    assert observed == errno.EAGAIN, f"expected EAGAIN, got {errno_text(observed)}"


@semantic("mmap.eperm.map_locked_rlimit_zero",
          "Without CAP_IPC_LOCK and with RLIMIT_MEMLOCK 0, MAP_LOCKED fails with EPERM (no locking allowed "
          "at all, as for mlock).", source="mlock(2) ERRORS; mm/mmap.c do_mmap() can_do_mlock()", tier="impl")
@requires(lambda env: None if not env.capabilities.has("CAP_IPC_LOCK") else
          "needs:without-CAP_IPC_LOCK (the capability lifts RLIMIT_MEMLOCK)")
def test_map_locked_rlimit_zero_is_eperm(run_in_child: RunInChild) -> None:
    observed = run_in_child(_map_locked_errno, 0, P).result()
    assert observed == errno.EPERM, f"expected EPERM, got {errno_text(observed)}"


@semantic("mmap.map_denywrite.ignored",
          "MAP_DENYWRITE is ignored: mapping a file that is open for writing succeeds (no ETXTBSY) and the "
          "file stays writable through write(2).", source="mmap(2) MAP_DENYWRITE", tier="linux")
def test_map_denywrite_is_ignored(tmp_path: Path) -> None:
    path = make_file(tmp_path, b"x" * P)
    with opened(path, os.O_RDWR) as fd, mapped(0, P, C.PROT_READ, C.MAP_PRIVATE | C.MAP_DENYWRITE, fd):
        assert os.pwrite(fd, b"w", 0) == 1


# --- flags -------------------------------------------------------------------------

@semantic("mmap.shared.write_reaches_file_and_other_mappings",
          "A store through a MAP_SHARED file mapping is seen by another MAP_SHARED mapping of the file and "
          "by "
          "pread(2) of the file.", source="mmap(2) MAP_SHARED", tier="posix")
def test_shared_write_is_visible(mapped_file: MappedFile,
                                 mapped_pages: MappedPages) -> None:
    first = mapped_file(b"\0" * (2 * P))
    second = mapped_pages(2, RW, C.MAP_SHARED, first.fd)
    first.buffer[P + 5:P + 10] = b"abcde"
    assert bytes(second.buffer[P + 5:P + 10]) == b"abcde"
    assert os.pread(first.fd, 5, P + 5) == b"abcde"


@semantic("mmap.private.copy_on_write_file",
          "A store through a MAP_PRIVATE file mapping is visible neither in the file nor in another mapping "
          "of the same file.", source="mmap(2) MAP_PRIVATE", tier="posix")
def test_private_write_is_invisible(mapped_file: MappedFile,
                                    mapped_pages: MappedPages) -> None:
    private = mapped_file(b"o" * P, shared=False)
    other = mapped_pages(1, RW, C.MAP_SHARED, private.fd)
    private.buffer[0:4] = b"MINE"
    assert bytes(private.buffer[0:4]) == b"MINE"
    assert bytes(other.buffer[0:4]) == b"oooo"
    assert os.pread(private.fd, 4, 0) == b"oooo"


def _write_then_read_after_parent(addr: int, ready_fd: int, go_fd: int) -> tuple[int, int]:
    """Child: store 0xC1 at addr+1, tell the parent, wait until it has stored at addr, then
    return (byte at addr, byte at addr+1) as this child sees them."""
    buffer = (ctypes.c_ubyte * 2).from_address(addr)
    buffer[1] = 0xC1
    os.write(ready_fd, b"r")
    if os.read(go_fd, 1) != b"g":
        raise RuntimeError("the parent did not signal")
    return buffer[0], buffer[1]


def _run_with_parent_store(run_in_child: RunInChild, mapping: Mapping) -> tuple[object, int, int]:
    """Fork a child sharing ``mapping``; while it runs, the parent stores 0xB0 at byte 0.
    Returns (the child's view, parent's byte 0, parent's byte 1)."""
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    go_r, go_w = os.pipe2(os.O_CLOEXEC)

    def parent_side() -> None:
        if os.read(ready_r, 1) == b"r":
            mapping.buffer[0] = 0xB0
        os.write(go_w, b"g")

    helper = threading.Thread(target=parent_side, daemon=True)
    helper.start()
    try:
        outcome = run_in_child(_write_then_read_after_parent, mapping.addr, ready_w, go_r, timeout=10)
    finally:
        os.write(ready_w, b"x")  # release the helper if the child never got that far
        helper.join(10)
        for fd in (ready_r, ready_w, go_r, go_w):
            os.close(fd)
    child_view = outcome.result()
    return child_view, mapping.buffer[0], mapping.buffer[1]


@semantic("mmap.private.fork_isolated",
          "A MAP_PRIVATE mapping is copy-on-write across fork: the child's store is invisible to the parent "
          "and the parent's store after fork is invisible to the child.", source="mmap(2) MAP_PRIVATE; "
                                                                                 "fork(2)",
          tier="posix")
def test_private_mapping_isolated_across_fork(mapped_pages: MappedPages,
                                              run_in_child: RunInChild) -> None:
    private = mapped_pages(1, RW, ANON)
    private.buffer[0:2] = b"\x11\x22"
    child_view, parent0, parent1 = _run_with_parent_store(run_in_child, private)
    assert child_view == (0x11, 0xC1), "the child must see its own store and not the parent's"
    assert (parent0, parent1) == (0xB0, 0x22), "the parent must see its own store and not the child's"


@semantic("mmap.shared.fork_shared",
          "A MAP_SHARED|MAP_ANONYMOUS mapping is shared across fork: each side sees the other's stores.",
          source="mmap(2) MAP_SHARED; fork(2)", tier="posix")
def test_shared_mapping_shared_across_fork(mapped_pages: MappedPages,
                                           run_in_child: RunInChild) -> None:
    shared = mapped_pages(1, RW, C.MAP_SHARED | C.MAP_ANONYMOUS)
    shared.buffer[0:2] = b"\x11\x22"
    child_view, parent0, parent1 = _run_with_parent_store(run_in_child, shared)
    assert child_view == (0xB0, 0xC1)
    assert (parent0, parent1) == (0xB0, 0xC1)


@semantic("mmap.anonymous.zero_filled", "A MAP_ANONYMOUS mapping's contents are initialised to zero "
          "(tutorial: 'Returns: Large block of zeroed memory').", source="mmap(2) MAP_ANONYMOUS; tutorial §2",
          tier="posix")
@pytest.mark.parametrize("flags", [ANON, C.MAP_SHARED | C.MAP_ANONYMOUS], ids=["private", "shared"])
def test_anonymous_is_zero_filled(mapped_pages: MappedPages, flags: int) -> None:
    mapping = mapped_pages(16, RW, flags)
    assert bytes(mapping.buffer) == bytes(mapping.length)


@semantic("mmap.fixed.replaces_existing",
          "MAP_FIXED places the mapping exactly at addr and discards whatever was mapped there.",
          source="mmap(2) MAP_FIXED", tier="posix")
def test_fixed_replaces_existing_mapping(arena: Arena) -> None:
    old = arena.map(8, 2)
    old.buffer[:] = b"\xee" * old.length
    new = arena.map(8, 2)  # MAP_FIXED over the live mapping
    assert new.addr == arena.page(8)
    assert bytes(new.buffer) == bytes(new.length), "the replaced pages must be fresh zero pages"


@semantic("mmap.hint.honoured_when_free",
          "Without MAP_FIXED, addr is a hint: when the page-aligned range there is free the kernel places "
          "the mapping exactly there.", source="mmap(2) DESCRIPTION", tier="linux")
def test_hint_honoured_when_free(arena: Arena) -> None:
    arena.hole(20, 4)
    addr = libc.mmap(arena.page(20), 4 * P, RW, ANON)
    try:
        assert addr == arena.page(20)
    finally:
        libc.munmap(addr, 4 * P)  # pages 20-23 stay recorded as the arena's hole


@semantic("mmap.hint.never_replaces",
          "Without MAP_FIXED, a hint pointing at an existing mapping is not honoured: the kernel maps "
          "elsewhere and the existing mapping is untouched.", source="mmap(2) DESCRIPTION", tier="posix")
def test_hint_never_replaces(arena: Arena) -> None:
    existing = arena.map(30, 1)
    existing.write(0, 0x42)
    with mapped(arena.page(30), P, RW, ANON) as addr:
        assert addr != arena.page(30)
    assert existing.read(0) == 0x42


@semantic("mmap.map_locked.resident_and_locked",
          "MAP_LOCKED (within RLIMIT_MEMLOCK, or with CAP_IPC_LOCK) maps pages that are resident at once and "
          "locked like mlock: VmFlags 'lo', VmLck grows by the mapping's size.", source="mmap(2) MAP_LOCKED",
          tier="linux")
def test_map_locked_resident_and_locked(memsys_env: Environment) -> None:
    length = 4 * P
    refused = can_lock(memsys_env, length)
    if refused is not None:
        pytest.skip(f"limit:RLIMIT_MEMLOCK={memsys_env.rlimits.memlock.soft} (MAP_LOCKED of {length} bytes "
                    f"must fail with {refused} here; see mmap.eagain.map_locked_over_rlimit)")
    before = procfs.status_kb(procfs.read_status(), "VmLck")
    with mapped(0, length, RW, ANON | C.MAP_LOCKED) as addr:
        assert all(b & 1 for b in libc.mincore(addr, length)), "MAP_LOCKED pages must be resident"
        after = procfs.status_kb(procfs.read_status(), "VmLck")
        flags = vmflags_of(addr)
        assert "lo" in flags, f"VmFlags {sorted(flags)} lack 'lo'"
        if before is not None and after is not None:
            assert after - before == length // 1024


@semantic("mmap.map_populate.resident", "MAP_POPULATE prefaults the pages: mincore reports them resident "
          "right after mmap, before any access.", source="mmap(2) MAP_POPULATE", tier="linux")
@pytest.mark.parametrize("flags", [ANON, C.MAP_SHARED], ids=["anonymous", "shared-file"])
def test_map_populate_resident(tmp_path: Path, flags: int) -> None:
    path = make_file(tmp_path, b"p" * (8 * P))
    with opened(path, os.O_RDWR) as file_fd:
        fd = -1 if flags & C.MAP_ANONYMOUS else file_fd
        with mapped(0, 8 * P, RW, flags | C.MAP_POPULATE, fd) as addr:
            assert [b & 1 for b in libc.mincore(addr, 8 * P)] == [1] * 8


@semantic("mmap.map_noreserve.vmflags_nr",
          "MAP_NORESERVE marks the mapping VM_NORESERVE ('nr' in VmFlags) unless overcommit_memory is 2, "
          "where the flag is ignored; a private writable mapping without it is not marked.",
          source="mmap(2) MAP_NORESERVE; proc(5) VmFlags", tier="linux")
def test_map_noreserve_vmflags(memsys_env: Environment, mapped_pages: MappedPages) -> None:
    mode = memsys_env.overcommit.memory
    if mode is None:
        pytest.skip("unsupported:/proc/sys/vm/overcommit_memory (unreadable: the expectation is unknown)")
    plain = mapped_pages(2, RW, ANON)
    noreserve = mapped_pages(3, RW, ANON | C.MAP_NORESERVE)
    assert "nr" not in vmflags_of(plain.addr)
    assert ("nr" in vmflags_of(noreserve.addr)) == (mode != 2)


@semantic("mmap.map_growsdown.vmflags_gd", "MAP_GROWSDOWN creates a VMA marked VM_GROWSDOWN ('gd' in "
                                           "VmFlags).",
          source="mmap(2) MAP_GROWSDOWN; proc(5) VmFlags", tier="linux")
def test_map_growsdown_vmflags(mapped_pages: MappedPages) -> None:
    stack = mapped_pages(4, RW, ANON | C.MAP_GROWSDOWN)
    assert "gd" in vmflags_of(stack.addr)


@semantic("mmap.map_growsdown.not_shared", "MAP_GROWSDOWN with an anonymous MAP_SHARED mapping fails with "
          "EINVAL: only private mappings can grow.", source="mm/mmap.c do_mmap()", tier="impl")
def test_map_growsdown_shared_is_einval() -> None:
    fails_with(errno.EINVAL, libc.mmap, 0, P, RW, C.MAP_SHARED | C.MAP_ANONYMOUS | C.MAP_GROWSDOWN)


@semantic("mmap.map_stack.accepted", "MAP_STACK is accepted and yields an ordinary readable, writable, "
          "zero-filled private mapping.", source="mmap(2) MAP_STACK", tier="linux")
def test_map_stack_accepted(mapped_pages: MappedPages) -> None:
    stack = mapped_pages(4, RW, ANON | C.MAP_STACK)
    assert stack.write(3 * P + 1, 9) is None and stack.read(3 * P + 1) == 9
    assert stack.read(0) == 0


@semantic("mmap.map_stack.nohugepage", "Since Linux 6.7, MAP_STACK implies VM_NOHUGEPAGE ('nh' in VmFlags) "
          "where transparent huge pages exist.", source="mm: MAP_STACK implies VM_NOHUGEPAGE (Linux 6.7)",
          tier="impl")
@requires("feature:THP")
def test_map_stack_nohugepage(memsys_env: Environment, mapped_pages: MappedPages) -> None:
    if memsys_env.sandbox.kind == "gvisor" or not kernel_at_least(memsys_env, 6, 7):
        pytest.skip(f"needs:Linux>=6.7 (kernel {memsys_env.kernel.release}, sandbox "
                    f"{memsys_env.sandbox.kind})")
    stack = mapped_pages(4, RW, ANON | C.MAP_STACK)
    plain = mapped_pages(5, RW, ANON)
    assert "nh" in vmflags_of(stack.addr)
    assert "nh" not in vmflags_of(plain.addr)


@semantic("mmap.map_hugetlb.huge_page_mapping", "MAP_HUGETLB maps from the huge page pool: the VMA is "
          "marked 'ht' and its KernelPageSize is the huge page size.", source="mmap(2) MAP_HUGETLB",
          tier="linux")
@requires("hugepages")
def test_map_hugetlb(memsys_env: Environment) -> None:
    assert memsys_env.hugepages is not None and memsys_env.hugepages.size_kb
    length = memsys_env.hugepages.size_kb * 1024
    with mapped(0, length, RW, ANON | C.MAP_HUGETLB) as addr:
        assert addr % length == 0
        ctypes.memset(addr, 1, 1)
        entry = procfs.smaps_at(addr)
        assert entry is not None
        assert entry.get("KernelPageSize") == memsys_env.hugepages.size_kb
        assert "ht" in vmflags_of(addr)


@semantic("mmap.map_32bit.low_address", "On x86-64, MAP_32BIT places the mapping in the first 2 GiB of the "
          "address space.", source="mmap(2) MAP_32BIT", tier="linux")
@requires("arch:x86_64")
def test_map_32bit_low_address() -> None:
    with mapped(0, 4 * P, RW, ANON | C.MAP_32BIT) as addr:
        assert addr + 4 * P <= 1 << 31, f"{addr:#x} is above 2 GiB"


@semantic("mmap.alignment.page_aligned", "mmap returns a page-aligned address whatever the length "
          "(tutorial: 'mmap returns page-aligned addresses').", source="tutorial Best practices 4; mmap(2)",
          tier="posix")
@pytest.mark.parametrize("length", [1, P - 1, P + 1, 3 * P + 17])
def test_result_is_page_aligned(length: int) -> None:
    with mapped(0, length, RW, ANON) as addr:
        assert addr % P == 0


@semantic("mmap.length.rounded_to_pages", "A length that is not a page multiple maps whole pages: the rest "
          "of the last page is accessible and zero.", source="mmap(2) DESCRIPTION", tier="posix")
def test_length_rounded_up_to_page() -> None:
    with mapped(0, P + 1, RW, ANON) as addr:
        assert probe.read_value(addr + 2 * P - 1) == (None, 0)


@semantic("mmap.file.offset_shows_file_bytes", "A file mapping at a page-aligned offset shows the file's "
          "bytes from that offset.", source="mmap(2) DESCRIPTION", tier="posix")
def test_offset_shows_file_bytes(tmp_path: Path, mapped_pages: MappedPages) -> None:
    content = fill_pattern(4 * P)
    path = make_file(tmp_path, content)
    with opened(path, os.O_RDONLY) as fd:
        view = mapped_pages(2, C.PROT_READ, C.MAP_PRIVATE, fd, 2 * P)
        assert bytes(view.buffer) == content[2 * P:4 * P]


@semantic("mmap.fd_close_keeps_mapping", "Closing the file descriptor does not unmap the region: stores "
          "still reach the file.", source="mmap(2) DESCRIPTION", tier="posix")
def test_close_fd_keeps_mapping(tmp_path: Path) -> None:
    path = make_file(tmp_path, b"c" * P)
    with opened(path, os.O_RDWR) as fd:
        addr = libc.mmap(0, P, RW, C.MAP_SHARED, fd)
    try:
        ctypes.memmove(addr, b"after-close", 11)
    finally:
        libc.munmap(addr, P)
    assert path.read_bytes()[:11] == b"after-close"


# --- signals -----------------------------------------------------------------------

@semantic("mmap.sigbus.page_past_eof", "Touching a page of a file mapping that lies wholly past the end of "
          "the file raises SIGBUS (BUS_ADRERR) at the touched address.", source="mmap(2) SIGBUS",
          tier="posix")
def test_page_past_eof_raises_sigbus(mapped_file: MappedFile) -> None:
    mapping = mapped_file(b"e" * P, pages=3)
    target = mapping.page(2) + 123
    faults_with(probe.read(target), signal.SIGBUS, C.BUS_ADRERR, target)
    faults_with(probe.write(mapping.page(1)), signal.SIGBUS, C.BUS_ADRERR, mapping.page(1))


@semantic("mmap.file.partial_page_zero_past_eof", "The bytes of the last page beyond end of file read as "
          "zero, and stores there are not written to the file.", source="mmap(2) NOTES", tier="posix")
def test_partial_page_past_eof(mapped_file: MappedFile) -> None:
    mapping = mapped_file(b"t" * 100)
    assert bytes(mapping.buffer[:100]) == b"t" * 100
    assert bytes(mapping.buffer[100:]) == bytes(P - 100)
    mapping.buffer[200] = 0x77
    mapping.sync(C.MS_SYNC)
    assert os.fstat(mapping.fd).st_size == 100
    assert os.pread(mapping.fd, P, 0) == b"t" * 100


@semantic("mmap.readonly.write_segv_accerr", "A store into a mapping without PROT_WRITE raises SIGSEGV "
          "(SEGV_ACCERR) at the address, and the memory is unchanged.", source="mmap(2) SIGSEGV",
          tier="posix")
def test_write_to_readonly_mapping_faults(mapped_pages: MappedPages) -> None:
    mapping = mapped_pages(2, C.PROT_READ)
    target = mapping.page(1) + 7
    faults_with(probe.write(target, 1), signal.SIGSEGV, C.SEGV_ACCERR, target)
    assert mapping.read(P + 7) == 0


@semantic("mmap.prot_none.segv_accerr", "Any access to a PROT_NONE mapping raises SIGSEGV with SEGV_ACCERR "
          "(mapped, but forbidden) at the address.", source="mmap(2) PROT_NONE; sigaction(2) si_code",
          tier="posix")
def test_prot_none_access_faults(mapped_pages: MappedPages) -> None:
    mapping = mapped_pages(1, C.PROT_NONE)
    target = mapping.addr + 99
    faults_with(probe.read(target), signal.SIGSEGV, C.SEGV_ACCERR, target)


# --- the tutorial's example ------------------------------------------------------------

@semantic("mmap.seed.file_example_modifies_file",
          "The tutorial's file example: mapping 'Hello, mmap!\\n' MAP_SHARED, storing 'h' at data[0], "
          "msync(MS_SYNC) "
          "and munmap leave 'hello, mmap!\\n' in the file.", source="tutorial §2 Example: File Mapping",
          tier="posix")
def test_seed_file_example(tmp_path: Path) -> None:
    path = make_file(tmp_path, b"Hello, mmap!\n", "test_mmap.txt")
    with opened(path, os.O_RDWR) as fd:
        size = os.fstat(fd).st_size
        addr = succeeds(libc.mmap, 0, size, RW, C.MAP_SHARED, fd)
        try:
            assert ctypes.string_at(addr, size) == b"Hello, mmap!\n"
            ctypes.memset(addr, ord("h"), 1)
            succeeds(libc.msync, addr, size, C.MS_SYNC)
        finally:
            libc.munmap(addr, size)
    assert path.read_bytes() == b"hello, mmap!\n"


# --- more ERRORS and flags ---------------------------------------------------------

@semantic("mmap.einval.shared_validate_anonymous",
          "MAP_SHARED_VALIDATE|MAP_ANONYMOUS fails with EINVAL: for anonymous memory the kernel knows only "
          "the MAP_SHARED and MAP_PRIVATE types (MAP_SHARED_VALIDATE validates file mappings only).",
          source="mm/mmap.c do_mmap() (anonymous: switch on MAP_TYPE); mmap(2) MAP_SHARED_VALIDATE",
          tier="impl")
@requires("feature:MAP_SHARED_VALIDATE")
def test_shared_validate_anonymous_is_einval() -> None:
    fails_with(errno.EINVAL, libc.mmap, 0, P, RW, C.MAP_SHARED_VALIDATE | C.MAP_ANONYMOUS)


@semantic("mmap.enodev.directory", "Mapping a directory (its file operations have no mmap) fails with "
          "ENODEV.", source="mmap(2) ERRORS", tier="linux")
def test_directory_is_enodev(tmp_path: Path) -> None:
    with opened(tmp_path, os.O_RDONLY | os.O_DIRECTORY) as fd:
        fails_with(errno.ENODEV, libc.mmap, 0, P, C.PROT_READ, C.MAP_PRIVATE, fd)


@semantic("mmap.enomem.fixed_beyond_address_space",
          "MAP_FIXED at an address beyond the user address space (2**63) fails with ENOMEM ('we don't like "
          "addr, because it exceeds the virtual address space of the CPU').", source="mmap(2) ERRORS",
          tier="linux")
@requires(lambda env: None if ctypes.sizeof(ctypes.c_void_p) == 8 else "needs:64-bit address space")
def test_fixed_beyond_address_space_is_enomem() -> None:
    fails_with(errno.ENOMEM, libc.mmap, 1 << 63, P, RW, ANON | C.MAP_FIXED)


@semantic("mmap.hint.out_of_range_ignored",
          "Without MAP_FIXED, a hint beyond the user address space (2**63) is ignored: the mapping is placed "
          "elsewhere, below it, and is usable.", source="mmap(2) DESCRIPTION (addr is a hint)", tier="linux")
@requires(lambda env: None if ctypes.sizeof(ctypes.c_void_p) == 8 else "needs:64-bit address space")
def test_out_of_range_hint_ignored() -> None:
    with mapped(1 << 63, 2 * P, RW, ANON) as addr:
        assert addr < 1 << 63
        entry = procfs.vma_at(addr)
        assert entry is not None and entry.start <= addr and addr + 2 * P <= entry.end, \
            f"maps must show the mapping at {addr:#x}: {entry}"
        assert probe.write(addr + 2 * P - 1, 3) is None


@semantic("mmap.hint.unaligned_rounded_down_x86",
          "On x86-64 an unaligned hint is rounded down to its page: a free range there is mapped at the "
          "start of the page holding the hint.", source="arch/x86/kernel/sys_x86_64.c "
                                                        "arch_get_unmapped_area_topdown() (addr &= PAGE_MASK)",
          tier="impl")
@requires("arch:x86_64")
def test_unaligned_hint_rounded_down(arena: Arena) -> None:
    arena.hole(20, 4)
    addr = libc.mmap(arena.page(21) + P // 2, P, RW, ANON)
    try:
        assert addr == arena.page(21), f"hint page 21 + {P // 2}: mapped at arena offset {addr - arena.addr:#x}"
        assert not libc.is_mapped(arena.page(20)) and not libc.is_mapped(arena.page(22))
    finally:
        libc.munmap(addr, P)  # pages 20-23 stay recorded as the arena's hole


def _unsupported_huge_size_log() -> int:
    """A MAP_HUGE_* size (log2 of bytes) that no huge page pool of this kernel has: 1 MiB
    unless sysfs lists it, then the next unused power of two."""
    try:
        sizes = {int(name.split("-")[1].removesuffix("kB")) * 1024
                 for name in os.listdir("/sys/kernel/mm/hugepages")}
    except (OSError, ValueError, IndexError):
        sizes = set()
    log = 20
    while (1 << log) in sizes:
        log += 1
    return log


@semantic("mmap.einval.hugetlb_unsupported_size",
          "MAP_HUGETLB with a MAP_HUGE_* size field naming a huge page size the kernel has no pool for "
          "fails with EINVAL (before any pool or reservation is consulted).",
          source="mmap(2) MAP_HUGETLB (MAP_HUGE_SHIFT); mm/mmap.c ksys_mmap_pgoff() hstate_sizelog()",
          tier="linux")
@requires("feature:HUGETLB")
def test_hugetlb_unsupported_size_is_einval() -> None:
    log = _unsupported_huge_size_log()
    fails_with(errno.EINVAL, libc.mmap, 0, 1 << log, RW, ANON | C.MAP_HUGETLB | (log << C.MAP_HUGE_SHIFT))


@semantic("mmap.map_uninitialized.zero_filled",
          "MAP_UNINITIALIZED is ignored unless the kernel was built with CONFIG_MMAP_ALLOW_UNINITIALIZED "
          "(only no-MMU kernels): the anonymous pages still read as zero, first, inner and last, even "
          "right after the same range held data.", source="mmap(2) MAP_UNINITIALIZED", tier="linux")
def test_map_uninitialized_zero_filled(arena: Arena) -> None:
    dirty = arena.map(8, 4)
    dirty.buffer[:] = b"\xa5" * dirty.length
    arena.hole(8, 4)
    fresh = arena.map(8, 4, RW, ANON | C.MAP_UNINITIALIZED)
    assert [fresh.read(offset) for offset in (0, 2 * P + 5, 4 * P - 1)] == [0, 0, 0]
    assert bytes(fresh.buffer) == bytes(fresh.length)


@semantic("mmap.prot.write_implies_read_x86",
          "On x86-64, PROT_WRITE without PROT_READ can still be read (the hardware has no write-only pages): "
          "maps shows '-w-p', yet a read of the first and last page completes and returns what was stored.",
          source="mmap(2) DESCRIPTION (on some architectures PROT_WRITE implies PROT_READ)", tier="impl")
@requires("arch:x86_64")
def test_write_only_is_readable(mapped_pages: MappedPages) -> None:
    mapping = mapped_pages(3, C.PROT_WRITE)
    entry = procfs.vma_at(mapping.addr)
    assert entry is not None and entry.perms.startswith("-w-"), f"maps: {entry}"
    assert mapping.write(3 * P - 1, 0x5C) is None
    assert [mapping.read(0), mapping.read(P + 9), mapping.read(3 * P - 1)] == [0, 0, 0x5C]


@semantic("mmap.map_nonblock.cancels_populate",
          "MAP_NONBLOCK makes MAP_POPULATE do nothing (since Linux 2.6.23): right after mmap, mincore "
          "reports the first, an inner and the last page not resident.", source="mmap(2) MAP_NONBLOCK",
          tier="linux")
def test_map_nonblock_cancels_populate(arena: Arena) -> None:
    if not mincore_sees_residency():
        pytest.skip("unsupported:mincore residency (a fresh page is reported resident: the oracle is blind)")
    mapping = arena.map(10, 4, RW, ANON | C.MAP_POPULATE | C.MAP_NONBLOCK)
    assert resident(mapping.addr, mapping.length) == [False] * 4
    populated = arena.map(20, 4, RW, ANON | C.MAP_POPULATE)  # the same call without MAP_NONBLOCK
    assert resident(populated.addr, populated.length) == [True] * 4


@semantic("mmap.map_populate.private_writable_copies",
          "MAP_POPULATE of a private writable file mapping write-faults every page, so each becomes a private "
          "anonymous copy (smaps Anonymous equals the length), while a private read-only one maps the page "
          "cache (Rss the length, Anonymous 0).",
          source="mm/gup.c populate_vma_page_range() (FOLL_WRITE for private writable); mmap(2) MAP_POPULATE",
          tier="impl")
def test_map_populate_private_writable_copies(tmp_path: Path, mapped_pages: MappedPages) -> None:
    path = make_file(tmp_path, fill_pattern(4 * P))
    with opened(path, os.O_RDONLY) as fd:
        writable = mapped_pages(4, RW, C.MAP_PRIVATE | C.MAP_POPULATE, fd)
        readonly = mapped_pages(4, C.PROT_READ, C.MAP_PRIVATE | C.MAP_POPULATE, fd)
        counters = []
        for mapping in (writable, readonly):
            entry = procfs.smaps_at(mapping.addr)
            assert entry is not None
            if entry.get("Anonymous") is None or entry.get("Rss") is None:
                pytest.skip("unsupported:smaps Anonymous/Rss (not reported: the copies cannot be counted)")
            counters.append((entry.get("Rss"), entry.get("Anonymous")))
    kb = 4 * P // 1024
    assert counters == [(kb, kb), (kb, 0)], f"(Rss, Anonymous) kB of writable and read-only: {counters}"
    assert bytes(writable.buffer) == fill_pattern(4 * P)


@semantic("mmap.shared.o_append_not_append_only",
          "O_APPEND on the descriptor does not restrict a MAP_SHARED writable mapping (only the append-only "
          "inode attribute does): the store lands at its own offset and the file does not grow.",
          source="mmap(2) ERRORS (EACCES: the file is append-only); mm/mmap.c do_mmap() IS_APPEND()",
          tier="linux")
def test_o_append_fd_maps_shared_writable(tmp_path: Path) -> None:
    path = make_file(tmp_path, b"a" * (2 * P))
    with opened(path, os.O_RDWR | os.O_APPEND) as fd, mapped(0, 2 * P, RW, C.MAP_SHARED, fd) as addr:
        ctypes.memmove(addr + P + 3, b"mid", 3)
        assert os.pread(fd, 3, P + 3) == b"mid"
        assert os.fstat(fd).st_size == 2 * P
        assert os.pread(fd, 1, 0) == b"a" and os.pread(fd, 1, 2 * P - 1) == b"a"


# --- file seals --------------------------------------------------------------------

@contextmanager
def sealed_memfd(seals: int, pages: int = 2) -> Iterator[int]:
    """A memfd of ``pages`` pages of b'm' (os.memfd_create and fcntl are set-up tools here),
    sealed with ``seals``; always closed."""
    fd = os.memfd_create(f"memsys-seal-{secrets.token_hex(8)}", C.MFD_CLOEXEC | C.MFD_ALLOW_SEALING)
    try:
        os.write(fd, b"m" * (pages * P))
        if seals:
            fcntl.fcntl(fd, C.F_ADD_SEALS, seals)
        yield fd
    finally:
        os.close(fd)


_WRITE_SEALS = [pytest.param(C.F_SEAL_WRITE, id="F_SEAL_WRITE"),
                pytest.param(C.F_SEAL_FUTURE_WRITE, id="F_SEAL_FUTURE_WRITE",
                             marks=requires("feature:F_SEAL_FUTURE_WRITE"))]


@pytest.mark.parametrize("seal", _WRITE_SEALS)
@semantic("mmap.eperm.write_sealed_shared_writable",
          "A new MAP_SHARED PROT_WRITE mapping of a memfd sealed with F_SEAL_WRITE or F_SEAL_FUTURE_WRITE "
          "fails with EPERM.", source="mmap(2) ERRORS (EPERM: prevented by a file seal); fcntl(2) File "
                                      "Sealing", tier="linux")
def test_write_sealed_shared_writable_is_eperm(seal: int) -> None:
    with sealed_memfd(seal) as fd:
        fails_with(errno.EPERM, libc.mmap, 0, P, RW, C.MAP_SHARED, fd)


@pytest.mark.parametrize("seal", _WRITE_SEALS)
@semantic("mmap.seal.private_writable_allowed",
          "A write seal does not forbid a MAP_PRIVATE writable mapping: stores on its first and last page "
          "are private copies and the memfd's content is unchanged.", source="fcntl(2) File Sealing "
                                                                             "(F_SEAL_WRITE: shared writable)",
          tier="linux")
def test_write_sealed_private_writable_allowed(seal: int) -> None:
    with sealed_memfd(seal) as fd, mapped(0, 2 * P, RW, C.MAP_PRIVATE, fd) as addr:
        ctypes.memmove(addr, b"P", 1)
        ctypes.memmove(addr + 2 * P - 1, b"Q", 1)
        assert ctypes.string_at(addr, 1) + ctypes.string_at(addr + 2 * P - 1, 1) == b"PQ"
        assert os.pread(fd, 2 * P, 0) == b"m" * (2 * P)


@semantic("mmap.seal_future_write.mprotect_write_eacces",
          "A read-only MAP_SHARED mapping of an F_SEAL_FUTURE_WRITE memfd cannot gain PROT_WRITE: mprotect "
          "fails with EACCES, VmFlags lacks 'mw' (VM_MAYWRITE) and maps still shows 'r--s'.",
          source="fcntl(2) F_SEAL_FUTURE_WRITE; mm/shmem.c, mm/memfd.c memfd_check_seals_mmap()", tier="linux")
@requires("feature:F_SEAL_FUTURE_WRITE")
def test_future_write_sealed_mprotect_is_eacces() -> None:
    with sealed_memfd(C.F_SEAL_FUTURE_WRITE) as fd, mapped(0, 2 * P, C.PROT_READ, C.MAP_SHARED, fd) as addr:
        fails_with(errno.EACCES, libc.mprotect, addr, 2 * P, RW)
        entry = procfs.vma_at(addr)
        assert entry is not None and entry.perms == "r--s", f"maps: {entry}"
        assert "mw" not in vmflags_of(addr)


@semantic("mmap.seal_future_write.existing_mapping_keeps_writing",
          "F_SEAL_FUTURE_WRITE blocks new writers only: a shared writable mapping made before the seal still "
          "stores into the memfd (first and last page), while write(2) now fails with EPERM.",
          source="fcntl(2) F_SEAL_FUTURE_WRITE", tier="linux")
@requires("feature:F_SEAL_FUTURE_WRITE")
def test_future_write_seal_keeps_existing_mapping() -> None:
    with sealed_memfd(0) as fd, mapped(0, 2 * P, RW, C.MAP_SHARED, fd) as addr:
        fcntl.fcntl(fd, C.F_ADD_SEALS, C.F_SEAL_FUTURE_WRITE)
        ctypes.memmove(addr, b"first", 5)
        ctypes.memmove(addr + 2 * P - 4, b"last", 4)
        assert os.pread(fd, 5, 0) == b"first" and os.pread(fd, 4, 2 * P - 4) == b"last"
        with pytest.raises(PermissionError):
            os.pwrite(fd, b"x", 0)


@semantic("mmap.seal_write.readonly_shared_allowed",
          "Since Linux 6.7 a read-only MAP_SHARED mapping of an F_SEAL_WRITE memfd is allowed and shows the "
          "content, but it cannot gain PROT_WRITE: mprotect fails with EACCES and VmFlags lacks 'mw'.",
          source="fcntl(2) F_SEAL_WRITE; mm: perform the mapping_map_writable() check after call_mmap() "
                 "(Linux 6.7)", tier="linux")
@requires("feature:WRITE_SEALED_READONLY_SHARED")
def test_write_sealed_readonly_shared_allowed() -> None:
    with sealed_memfd(C.F_SEAL_WRITE) as fd, mapped(0, 2 * P, C.PROT_READ, C.MAP_SHARED, fd) as addr:
        assert ctypes.string_at(addr, 1) + ctypes.string_at(addr + 2 * P - 1, 1) == b"mm"
        fails_with(errno.EACCES, libc.mprotect, addr, 2 * P, RW)
        assert "mw" not in vmflags_of(addr)


def _before_6_7(env: Environment) -> str | None:
    promise = env.promise("WRITE_SEALED_READONLY_SHARED")
    if promise.state == NOT_PROMISED and kernel_at_least(env, 3, 17):
        return None
    return f"needs:Linux 3.17 to 6.6 (WRITE_SEALED_READONLY_SHARED: {promise.state}, {promise.why})"


@semantic("mmap.seal_write.readonly_shared_eperm_before_6_7",
          "Before Linux 6.7 any MAP_SHARED mapping of an F_SEAL_WRITE memfd, even a read-only one, fails with "
          "EPERM (mapping_map_writable() was checked for every shared mapping).",
          source="fcntl(2) F_SEAL_WRITE; mm/mmap.c mmap_region() before Linux 6.7", tier="impl")
@requires(_before_6_7)
def test_write_sealed_readonly_shared_eperm_before_6_7() -> None:
    with sealed_memfd(C.F_SEAL_WRITE) as fd:
        fails_with(errno.EPERM, libc.mmap, 0, P, C.PROT_READ, C.MAP_SHARED, fd)


# --- address-space limits ----------------------------------------------------------

def _needs_max_map_count(env: Environment) -> str | None:
    return None if env.vm.max_map_count else "unsupported:vm.max_map_count (unreadable: the limit is unknown)"


@semantic("mmap.enomem.max_map_count",
          "With the map count filled to vm.max_map_count (a VMA split there fails with ENOMEM), one more "
          "mmap still succeeds (do_mmap refuses only once the count exceeds the limit) and every further one "
          "fails with ENOMEM.", source="mmap(2) ERRORS (ENOMEM: maximum number of mappings); proc_sys_vm(5) "
                                       "max_map_count", tier="linux")
@requires(_needs_max_map_count)
def test_max_map_count_is_enomem(memsys_env: Environment, run_in_child: RunInChild) -> None:
    assert memsys_env.vm.max_map_count is not None
    seen = map_count_observation(run_in_child, memsys_env.vm.max_map_count)
    assert seen.fill_errno == errno.ENOMEM, f"the fill stopped with {errno_text(seen.fill_errno)}"
    assert seen.before + 2 * seen.splits >= memsys_env.vm.max_map_count - 2, seen
    assert seen.mmap_errnos == (None, errno.ENOMEM, errno.ENOMEM), (
        "three mmaps at the limit: " + ", ".join(errno_text(e) for e in seen.mmap_errnos))


def _map_page_zero(drop_rawio: bool) -> tuple[int | None, int | None, int | None]:
    """Child: (optionally drop CAP_SYS_RAWIO,) MAP_FIXED one page at address 0. Returns
    (errno or None, the start of the VMA maps shows at 0 or None, the byte read at 0)."""
    if drop_rawio:
        drop_capability(CAP_SYS_RAWIO)
        assert "CAP_SYS_RAWIO" not in effective_caps()
    try:
        addr = libc.mmap(0, P, RW, ANON | C.MAP_FIXED)
    except OSError as error:
        entry = procfs.vma_at(0)
        return error.errno, None if entry is None else entry.start, None
    entry = procfs.vma_at(0)
    fault, value = probe.read_value(addr)
    return None if addr == 0 else -1, None if entry is None else entry.start, None if fault else value


def _needs_min_addr(env: Environment) -> str | None:
    if env.vm.mmap_min_addr is None:
        return "unsupported:vm.mmap_min_addr (unreadable)"
    return None if env.vm.mmap_min_addr > 0 else "needs:vm.mmap_min_addr > 0 (0 lets anyone map page 0)"


@semantic("mmap.eperm.below_mmap_min_addr",
          "Without CAP_SYS_RAWIO, MAP_FIXED below vm.mmap_min_addr (page 0) fails with EPERM and maps "
          "nothing there (a root run checks it in a child that dropped the capability).",
          source="mmap(2) ERRORS (EPERM); proc_sys_vm(5) mmap_min_addr; security/commoncap.c cap_mmap_addr()",
          tier="linux")
@requires(_needs_min_addr)
def test_below_mmap_min_addr_is_eperm(memsys_env: Environment, run_in_child: RunInChild) -> None:
    drop = memsys_env.capabilities.has("CAP_SYS_RAWIO")
    observed, start, _ = run_in_child(_map_page_zero, drop).result()
    assert (observed, start) == (errno.EPERM, None), (
        f"MAP_FIXED at 0 without CAP_SYS_RAWIO: {errno_text(observed)}, maps shows a VMA at {start}")


@semantic("mmap.min_addr.cap_sys_rawio_maps_page_zero",
          "With CAP_SYS_RAWIO a process may map page 0 below vm.mmap_min_addr: MAP_FIXED at 0 returns 0, maps "
          "shows the VMA starting at 0 and address 0 reads as zero.",
          source="proc_sys_vm(5) mmap_min_addr; security/commoncap.c cap_mmap_addr()", tier="linux")
@requires("cap:CAP_SYS_RAWIO", _needs_min_addr)
def test_cap_sys_rawio_maps_page_zero(run_in_child: RunInChild) -> None:
    assert run_in_child(_map_page_zero, False).result() == (None, 0, 0)


# --- MAP_GROWSDOWN and MAP_DROPPABLE -----------------------------------------------

def _stack_guard_gap_pages() -> int:
    """The stack guard gap in pages: stack_guard_gap= on the kernel command line, else 256."""
    try:
        words = procfs._read("/proc/cmdline").split()
    except OSError:
        words = []
    for word in words:
        if word.startswith("stack_guard_gap="):
            try:
                return int(word.split("=", 1)[1], 0)
            except ValueError:
                break
    return 256


@contextmanager
def growsdown_layout(accessible_page: int) -> Iterator[tuple[Arena, int]]:
    """An arena (guard gap + 64 pages) with a readable page at ``accessible_page``, a
    4-page MAP_GROWSDOWN mapping at its top and holes between: yields (arena, index of
    the growsdown mapping's first page)."""
    gap = _stack_guard_gap_pages()
    with Arena(gap + 64) as space:
        top = space.pages - 4
        space.map(accessible_page, 1, C.PROT_READ)
        stack = space.map(top, 4, RW, ANON | C.MAP_GROWSDOWN)
        stack.buffer[0] = 0x5D
        space.hole(accessible_page + 1, top - accessible_page - 1)
        try:
            yield space, top
        finally:
            # the pages the mapping grew into lie in what the arena records as holes, which
            # Arena.close() leaves alone: unmap them here (only down to the VMA's start)
            grown = procfs.vma_at(space.page(top))
            if grown is not None and space.addr <= grown.start < space.page(top):
                libc.munmap(grown.start, space.page(top) - grown.start)


@semantic("mmap.map_growsdown.grows_on_touch",
          "Touching the page just below a MAP_GROWSDOWN mapping (with more than the stack guard gap free "
          "below) grows it: the access completes, maps shows the VMA starting one page lower, the new page "
          "reads zero, the old first page keeps its byte and the page below stays unmapped.",
          source="mmap(2) MAP_GROWSDOWN", tier="linux")
def test_map_growsdown_grows_on_touch() -> None:
    with growsdown_layout(0) as (space, top):
        below = space.page(top - 1)
        assert probe.read_value(below + P - 1) == (None, 0)
        entry = procfs.vma_at(below)
        assert entry is not None and entry.start == below and entry.end == space.end, \
            f"maps after the touch: {entry}"
        assert probe.read_value(space.page(top)) == (None, 0x5D)
        assert not libc.is_mapped(below - P)


@semantic("mmap.map_growsdown.guard_gap_refuses_growth",
          "A MAP_GROWSDOWN mapping does not grow to within the stack guard gap (256 pages unless "
          "stack_guard_gap= says otherwise) of an accessible mapping below it: touching the page below "
          "raises SIGSEGV (SEGV_MAPERR) there and the VMA keeps its start.",
          source="mmap(2) MAP_GROWSDOWN (guard gap); mm/mmap.c expand_downwards() stack_guard_gap",
          tier="linux")
def test_map_growsdown_guard_gap() -> None:
    gap = _stack_guard_gap_pages()
    with growsdown_layout(gap // 2) as (space, top):
        below = space.page(top - 1)
        faults_with(probe.read(below + 8), signal.SIGSEGV, C.SEGV_MAPERR, below + 8)
        entry = procfs.vma_at(space.page(top))
        assert entry is not None and entry.start == space.page(top), f"maps: {entry}"
        assert not libc.is_mapped(below)


@semantic("mmap.map_droppable.private_anonymous",
          "MAP_DROPPABLE|MAP_ANONYMOUS maps zero-filled, writable memory marked droppable and wipe-on-fork "
          "('dp' and 'wf' in VmFlags).", source="mmap(2) MAP_DROPPABLE; fs/proc/task_mmu.c ('dp')",
          tier="linux")
@requires("feature:MAP_DROPPABLE")
def test_map_droppable_private_anonymous(mapped_pages: MappedPages) -> None:
    mapping = mapped_pages(3, RW, C.MAP_DROPPABLE | C.MAP_ANONYMOUS)
    assert [mapping.read(0), mapping.read(P + 1), mapping.read(3 * P - 1)] == [0, 0, 0]
    assert mapping.write(3 * P - 1, 0x44) is None and mapping.read(3 * P - 1) == 0x44
    flags = vmflags_of(mapping.addr)
    assert {"dp", "wf"} <= flags, f"VmFlags {sorted(flags)}"


@pytest.mark.parametrize("variant", ["file", "shared", "growsdown"])
@semantic("mmap.einval.droppable_not_anonymous_private",
          "MAP_DROPPABLE is a mapping type of its own for private anonymous memory: with a file descriptor "
          "(no MAP_ANONYMOUS), with MAP_SHARED or with MAP_GROWSDOWN it fails with EINVAL.",
          source="mm/mmap.c do_mmap() (MAP_DROPPABLE)", tier="linux")
@requires("feature:MAP_DROPPABLE")
def test_droppable_not_anonymous_private_is_einval(tmp_path: Path, variant: str) -> None:
    if variant == "file":
        path = make_file(tmp_path, b"d" * P)
        with opened(path, os.O_RDWR) as fd:
            fails_with(errno.EINVAL, libc.mmap, 0, P, RW, C.MAP_DROPPABLE, fd)
        return
    extra = C.MAP_SHARED if variant == "shared" else C.MAP_GROWSDOWN
    fails_with(errno.EINVAL, libc.mmap, 0, P, RW, C.MAP_DROPPABLE | C.MAP_ANONYMOUS | extra)


def _bytes_at(addresses: tuple[int, ...]) -> list[int | None]:
    return [probe.read_value(addr)[1] for addr in addresses]


@semantic("mmap.map_droppable.wipes_on_fork",
          "A MAP_DROPPABLE mapping is wiped on fork: the child reads zero on its first, an inner and its last "
          "page where the parent stored, and the parent keeps its bytes.",
          source="mmap(2) MAP_DROPPABLE (VM_WIPEONFORK)", tier="linux")
@requires("feature:MAP_DROPPABLE")
def test_map_droppable_wipes_on_fork(mapped_pages: MappedPages, run_in_child: RunInChild) -> None:
    mapping = mapped_pages(3, RW, C.MAP_DROPPABLE | C.MAP_ANONYMOUS)
    points = (mapping.addr, mapping.addr + P + 7, mapping.addr + 3 * P - 1)
    for addr in points:
        ctypes.memset(addr, 0x66, 1)
    assert run_in_child(_bytes_at, points).result() == [0, 0, 0]
    assert _bytes_at(points) == [0x66, 0x66, 0x66]


# --- files: times, end of file, truncation -----------------------------------------

def _mount_of(path: Path) -> procfs.MountInfoEntry | None:
    """The mount holding ``path`` (the longest mount point that is a prefix of it)."""
    mounts = procfs.parse_mountinfo(procfs._read("/proc/self/mountinfo"))
    here = str(path.resolve())
    containing = [m for m in mounts if here == m.mount_point or here.startswith(m.mount_point.rstrip("/") + "/")]
    return max(containing, key=lambda m: len(m.mount_point), default=None)


def _coarse_now_after(timestamp_ns: int) -> int:
    """Wait (a jiffy at most) until the coarse clock the kernel stamps files with is past
    ``timestamp_ns``; returns its value."""
    now = time.clock_gettime_ns(C.CLOCK_REALTIME_COARSE)
    deadline = time.monotonic() + 1.0
    while now <= timestamp_ns and time.monotonic() < deadline:
        time.sleep(0.001)
        now = time.clock_gettime_ns(C.CLOCK_REALTIME_COARSE)
    return now


@semantic("mmap.shared.store_updates_mtime_ctime",
          "A store through a MAP_SHARED mapping marks st_mtime and st_ctime for update: after msync(MS_SYNC) "
          "both are at least the time of the store.", source="mmap(2) NOTES; msync(2)", tier="posix")
def test_shared_store_updates_mtime_ctime(tmp_path: Path) -> None:
    path = make_file(tmp_path, b"s" * (2 * P))
    an_hour_ago = time.time_ns() - 3600 * 10**9
    os.utime(path, ns=(an_hour_ago, an_hour_ago))
    with opened(path, os.O_RDWR) as fd, mapped(0, 2 * P, RW, C.MAP_SHARED, fd) as addr:
        before = os.fstat(fd)
        store_time = _coarse_now_after(max(before.st_ctime_ns, before.st_mtime_ns))
        ctypes.memmove(addr + 2 * P - 1, b"!", 1)
        succeeds(libc.msync, addr, 2 * P, C.MS_SYNC)
        after = os.fstat(fd)
    assert after.st_mtime_ns >= store_time, f"st_mtime {after.st_mtime_ns} < store time {store_time}"
    assert after.st_ctime_ns >= store_time, f"st_ctime {after.st_ctime_ns} < store time {store_time}"


def _atime_updated_here(path: Path) -> str | None:
    mount = _mount_of(path)
    if mount is None:
        return "unsupported:mountinfo (no mount holds the file: the atime rule is unknown)"
    options = set(mount.mount_options)
    if "noatime" in options or "ro" in options:
        return f"needs:a writable mount without noatime ({mount.mount_point}: {','.join(mount.mount_options)})"
    return None


@semantic("mmap.file.access_updates_atime",
          "Mapping a file and reading it updates st_atime (at mmap or at the first reference) on a mount "
          "without noatime: an atime two days old and older than mtime is renewed under relatime and "
          "strictatime alike.", source="mmap(2) NOTES (st_atime); mount(8) relatime", tier="posix")
def test_access_updates_atime(tmp_path: Path) -> None:
    path = make_file(tmp_path, b"r" * P)
    reason = _atime_updated_here(path)
    if reason is not None:
        pytest.skip(reason)
    now = time.time_ns()
    os.utime(path, ns=(now - 2 * 86400 * 10**9, now - 3600 * 10**9))
    start = _coarse_now_after(os.stat(path).st_ctime_ns)
    with opened(path, os.O_RDONLY) as fd, mapped(0, P, C.PROT_READ, C.MAP_SHARED, fd) as addr:
        assert probe.read_value(addr + P - 1) == (None, ord("r"))
        atime = os.fstat(fd).st_atime_ns
    assert atime >= start, f"st_atime {atime} is older than the mapping ({start})"


@semantic("mmap.file.partial_page_store_not_written_after_munmap",
          "A store into the partial last page beyond end of file never reaches the file: after munmap "
          "(no msync) and close the file keeps its size and read(2) returns only the original bytes.",
          source="mmap(2) NOTES; BUGS", tier="posix")
def test_partial_page_store_not_written_after_munmap(tmp_path: Path) -> None:
    path = make_file(tmp_path, b"t" * 100)
    with opened(path, os.O_RDWR) as fd:
        with mapped(0, P, RW, C.MAP_SHARED, fd) as addr:
            ctypes.memmove(addr + 100, b"X", 1)
            ctypes.memmove(addr + P - 1, b"Y", 1)
        assert os.fstat(fd).st_size == 100
        assert os.pread(fd, P, 0) == b"t" * 100
    assert path.read_bytes() == b"t" * 100


@semantic("mmap.file.extension_lifts_sigbus",
          "A page of a file mapping that lay past end of file (SIGBUS) becomes accessible once ftruncate "
          "extends the file over it: it reads zero and a store there reaches the file.",
          source="mmap(2) SIGBUS; ftruncate(2)", tier="posix")
def test_extension_lifts_sigbus(mapped_file: MappedFile) -> None:
    mapping = mapped_file(b"e" * P, pages=3)
    faults_with(probe.read(mapping.page(2)), signal.SIGBUS, C.BUS_ADRERR, mapping.page(2))
    os.ftruncate(mapping.fd, 3 * P)
    assert probe.read_value(mapping.page(2) + P - 1) == (None, 0)
    assert probe.write(mapping.page(1), 0x31) is None
    assert os.pread(mapping.fd, 1, P) == b"\x31"


@semantic("mmap.file.truncate_makes_sigbus",
          "After ftruncate shrinks a mapped file, its pages past the new end of file raise SIGBUS "
          "(BUS_ADRERR) at the touched address, while the pages still inside the file keep their content.",
          source="mmap(2) SIGBUS; ftruncate(2)", tier="posix")
def test_truncate_makes_sigbus(mapped_file: MappedFile) -> None:
    mapping = mapped_file(b"k" * (3 * P))
    assert mapping.read(2 * P) == ord("k")
    os.ftruncate(mapping.fd, P)
    target = mapping.page(1) + 17
    faults_with(probe.read(target), signal.SIGBUS, C.BUS_ADRERR, target)
    faults_with(probe.read(mapping.page(2)), signal.SIGBUS, C.BUS_ADRERR, mapping.page(2))
    assert mapping.read(P - 1) == ord("k")


@semantic("mmap.private.sees_file_changes_until_written",
          "A MAP_PRIVATE file mapping shows later changes to the file on pages it has not written (POSIX "
          "leaves this unspecified), while a page it wrote keeps its private copy.",
          source="mmap(2) MAP_PRIVATE ('unspecified whether changes made to the file after the mmap() call "
                 "are visible')", tier="impl")
def test_private_sees_file_changes_until_written(mapped_file: MappedFile) -> None:
    private = mapped_file(b"o" * (2 * P), shared=False)
    assert private.read(P) == ord("o")  # page 1 read (mapped from the page cache), not written
    private.buffer[0] = ord("p")
    os.pwrite(private.fd, b"N", 0)
    os.pwrite(private.fd, b"N", P)
    assert [private.read(0), private.read(P)] == [ord("p"), ord("N")]


@semantic("mmap.fixed.replaces_part_splits_vma",
          "MAP_FIXED over the middle pages of a mapping replaces only those: maps shows three VMAs (old, new, "
          "old), the old first and last pages keep their bytes and the new pages are fresh zeros with the new "
          "protection.", source="mmap(2) MAP_FIXED", tier="posix")
def test_fixed_replaces_part_splits_vma(arena: Arena) -> None:
    old = arena.map(30, 4)
    old.buffer[:] = b"\x7e" * old.length
    arena.map(31, 2, C.PROT_READ)
    entries = procfs.maps_overlapping(arena.page(30), arena.page(34))
    assert [(e.start, e.end, e.perms[:3]) for e in entries] == [
        (arena.page(30), arena.page(31), "rw-"), (arena.page(31), arena.page(33), "r--"),
        (arena.page(33), arena.page(34), "rw-")], "\n".join(map(str, entries))
    assert [probe.read_value(arena.page(p) + 5)[1] for p in (30, 31, 32, 33)] == [0x7E, 0, 0, 0x7E]
    assert probe.read(arena.page(29)) == probe.Fault(signal.SIGSEGV, C.SEGV_ACCERR, arena.page(29))
