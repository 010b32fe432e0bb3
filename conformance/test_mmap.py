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
import os
import resource
import signal
import threading
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
from pytest_memsyscalls.environment.fingerprint import Environment
from pytest_memsyscalls.kernel import constants as C
from pytest_memsyscalls.kernel import libc, probe, procfs
from pytest_memsyscalls.kernel.constants import ANON, RW
from pytest_memsyscalls.kernel.libc import PAGE_SIZE as P
from pytest_memsyscalls.memory.mapping import Arena, Mapping

from ._noexec import mount_private_noexec_tmpfs, noexec_directory

# A flag bit no kernel uapi header defines (between MAP_FIXED_NOREPLACE and the
# MAP_HUGE_* size field): MAP_SHARED must ignore it, MAP_SHARED_VALIDATE must refuse it.
UNKNOWN_MAP_FLAG = 0x200000


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


def shared_validate_supported(tmp_path: Path) -> None:
    """Probe (on a scratch file) that the kernel knows MAP_SHARED_VALIDATE (Linux 4.15)."""
    path = make_file(tmp_path, b"\0" * P, "probe-validate.bin")
    with opened(path, os.O_RDWR) as fd:
        try:
            addr = libc.mmap(0, P, C.PROT_READ, C.MAP_SHARED_VALIDATE, fd)
        except OSError as error:
            pytest.skip(f"unsupported:MAP_SHARED_VALIDATE ({errno.errorcode.get(error.errno or 0)} from a "
                        "plain MAP_SHARED_VALIDATE mapping of a scratch file)")
        libc.munmap(addr, P)


def fixed_noreplace_supported() -> None:
    """Probe on a scratch mapping: a kernel before 4.17 treats MAP_FIXED_NOREPLACE as a hint
    and returns another address instead of EEXIST (mmap(2) NOTES)."""
    scratch = Mapping.create(1, C.PROT_NONE)
    try:
        try:
            other = libc.mmap(scratch.addr, P, C.PROT_NONE, ANON | C.MAP_FIXED_NOREPLACE)
        except OSError:
            return
        libc.munmap(other, P)
        pytest.skip(f"unsupported:MAP_FIXED_NOREPLACE (treated as a hint: a scratch request for "
                    f"{scratch.addr:#x} returned {other:#x})")
    finally:
        scratch.unmap()


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
def test_shared_validate_rejects_unknown_flag(tmp_path: Path) -> None:
    shared_validate_supported(tmp_path)
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
def test_shared_validate_accepts_known_flags(tmp_path: Path) -> None:
    shared_validate_supported(tmp_path)
    path = make_file(tmp_path, b"x" * P)
    flags = C.MAP_SHARED_VALIDATE | C.MAP_POPULATE | C.MAP_NORESERVE | C.MAP_DENYWRITE | C.MAP_EXECUTABLE
    with opened(path, os.O_RDWR) as fd, mapped(0, P, RW, flags, fd) as addr:
        ctypes.memmove(addr + 10, b"validated", 9)
        assert os.pread(fd, 9, 10) == b"validated"


@semantic("mmap.eopnotsupp.map_sync_without_dax",
          "MAP_SHARED_VALIDATE|MAP_SYNC on a file that does not support DAX fails with EOPNOTSUPP.",
          source="mmap(2) MAP_SYNC", tier="linux")
def test_map_sync_without_dax_is_eopnotsupp(tmp_path: Path) -> None:
    shared_validate_supported(tmp_path)
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
def test_fixed_noreplace_over_mapping_is_eexist(arena: Arena) -> None:
    fixed_noreplace_supported()
    existing = arena.map(5, 2)
    existing.write(0, 0x5A)
    fails_with(errno.EEXIST, libc.mmap, arena.page(4), 2 * P, RW, ANON | C.MAP_FIXED_NOREPLACE)
    assert existing.read(0) == 0x5A


@semantic("mmap.fixed_noreplace.maps_exactly_when_free",
          "MAP_FIXED_NOREPLACE over a free range maps exactly at the requested address.",
          source="mmap(2) MAP_FIXED_NOREPLACE", tier="linux")
def test_fixed_noreplace_maps_free_range_exactly(arena: Arena) -> None:
    fixed_noreplace_supported()
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
def test_map_stack_nohugepage(memsys_env: Environment, mapped_pages: MappedPages) -> None:
    if memsys_env.sandbox.kind == "gvisor" or not kernel_at_least(memsys_env, 6, 7):
        pytest.skip(f"needs:Linux>=6.7 (kernel {memsys_env.kernel.release}, sandbox "
                    f"{memsys_env.sandbox.kind})")
    if memsys_env.thp.enabled is None:
        pytest.skip("unsupported:transparent huge pages (no /sys/kernel/mm/transparent_hugepage/enabled)")
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
