"""Conformance: memfd_create(2) with its file seals, and memfd_secret(2).

A memfd is an anonymous tmpfs file: /proc/self/fd shows it as ``/memfd:NAME (deleted)``.
Seals (fcntl F_ADD_SEALS/F_GET_SEALS) are checked by their effect on the calls they
forbid: ftruncate, write, a shared writable mmap, mprotect, and by what the file holds
afterwards (pread, an independent read). memfd_secret memory is removed from the
kernel's direct map: it is readable through its own mappings and nothing else (not
/proc/self/mem, not read(2)), and every mapping of it is locked memory, accounted in
VmLck and RLIMIT_MEMLOCK.

Every descriptor a test opens is closed by the ``memfd`` fixture; mappings come from
``mapped_pages`` (fd=...), so a call that should have failed and did not leaves nothing
behind.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import resource
import signal
from collections.abc import Callable, Iterator

import pytest

from pytest_memsyscalls import MappedPages, RunInChild, fails_with, requires, semantic, succeeds
from pytest_memsyscalls.environment.fingerprint import Environment
from pytest_memsyscalls.environment.needs import lockable_shortfall
from pytest_memsyscalls.kernel import constants as C
from pytest_memsyscalls.kernel import libc, probe, procfs
from pytest_memsyscalls.kernel.constants import RW
from pytest_memsyscalls.kernel.libc import PAGE_SIZE as PAGE
from pytest_memsyscalls.kernel.probe import Fault

from ._oracles import drop_capability, effective_caps, vmflags

SEALING = C.MFD_ALLOW_SEALING
CAP_IPC_LOCK = 14

Opener = Callable[..., int]


@pytest.fixture
def memfd() -> Iterator[Opener]:
    """``memfd(name, flags)``: memfd_create, closed at teardown."""
    opened: list[int] = []

    def create(name: str = "memsys-test", flags: int = 0) -> int:
        fd = libc.memfd_create(name, flags)
        opened.append(fd)
        return fd

    yield create
    for fd in opened:
        os.close(fd)


@pytest.fixture
def secret_fd() -> Iterator[Opener]:
    """``secret_fd(flags=0)``: memfd_secret, closed at teardown."""
    opened: list[int] = []

    def create(flags: int = 0) -> int:
        fd = libc.memfd_secret(flags)
        opened.append(fd)
        return fd

    yield create
    for fd in opened:
        os.close(fd)


def _sized(memfd: Opener, pages: int, content: int = 0x61, flags: int = SEALING) -> int:
    """A sealable memfd of ``pages`` pages, each byte ``content``."""
    fd = memfd("memsys-test", flags)
    os.write(fd, bytes([content]) * (pages * PAGE))
    return fd


def byte_at(addr: int) -> int | Fault:
    fault, value = probe.read_value(addr)
    return fault if fault is not None else int(value or 0)


# =====================================================================================
# memfd_create
# =====================================================================================

@semantic("memfd.create.fd_link_name",
          "memfd_create returns a descriptor of an empty file that /proc/self/fd shows as "
          "'/memfd:NAME (deleted)'.",
          source="memfd_create(2) DESCRIPTION", tier="linux")
def test_fd_link_name(memfd: Opener) -> None:
    fd = memfd("memsys-name-check")
    assert os.readlink(f"/proc/self/fd/{fd}") == "/memfd:memsys-name-check (deleted)"
    assert os.fstat(fd).st_size == 0


@semantic("memfd.create.name_too_long_einval",
          "A name of 249 bytes is accepted and one of 250 bytes (longer than NAME_MAX minus 'memfd:') "
          "fails with EINVAL.",
          source="memfd_create(2) ERRORS (EINVAL: name too long)", tier="linux")
def test_name_too_long(memfd: Opener) -> None:
    succeeds(memfd, "n" * C.MFD_NAME_MAX)
    fails_with(errno.EINVAL, memfd, "n" * (C.MFD_NAME_MAX + 1))


@pytest.mark.parametrize("flags", [0x100, 0x80000000], ids=["0x100", "high-bit"])
@semantic("memfd.create.unknown_flags_einval", "memfd_create with an unknown flag bit fails with EINVAL.",
          source="memfd_create(2) ERRORS (EINVAL: unknown bits in flags)", tier="linux")
def test_unknown_flags(memfd: Opener, flags: int) -> None:
    fails_with(errno.EINVAL, memfd, "memsys-test", flags)


@semantic("memfd.create.cloexec",
          "MFD_CLOEXEC sets FD_CLOEXEC on the new descriptor; without it the flag is clear.",
          source="memfd_create(2) MFD_CLOEXEC", tier="linux")
def test_cloexec(memfd: Opener) -> None:
    with_flag = memfd("memsys-test", C.MFD_CLOEXEC)
    without = memfd("memsys-test", 0)
    assert fcntl.fcntl(with_flag, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
    assert not fcntl.fcntl(without, fcntl.F_GETFD) & fcntl.FD_CLOEXEC


@semantic("memfd.seals.default_seal_seal",
          "Without MFD_ALLOW_SEALING the file starts with F_SEAL_SEAL set, so F_ADD_SEALS fails with EPERM.",
          source="memfd_create(2) MFD_ALLOW_SEALING; fcntl(2) File Sealing", tier="linux")
def test_default_seal_seal(memfd: Opener) -> None:
    fd = memfd("memsys-test", 0)
    assert libc.get_seals(fd) == C.F_SEAL_SEAL
    fails_with(errno.EPERM, libc.add_seals, fd, C.F_SEAL_WRITE)
    assert libc.get_seals(fd) == C.F_SEAL_SEAL


@semantic("memfd.seals.allow_sealing_starts_empty",
          "With MFD_ALLOW_SEALING the file starts with no seals and F_ADD_SEALS adds exactly the seals given.",
          source="memfd_create(2) MFD_ALLOW_SEALING; fcntl(2) F_ADD_SEALS", tier="linux")
def test_allow_sealing(memfd: Opener) -> None:
    fd = memfd("memsys-test", SEALING)
    assert libc.get_seals(fd) == 0
    succeeds(libc.add_seals, fd, C.F_SEAL_SHRINK | C.F_SEAL_GROW)
    assert libc.get_seals(fd) == C.F_SEAL_SHRINK | C.F_SEAL_GROW


@semantic("memfd.seals.unknown_einval", "F_ADD_SEALS with an unknown seal bit fails with EINVAL.",
          source="fcntl(2) F_ADD_SEALS; ERRORS (EINVAL)", tier="linux")
def test_unknown_seal(memfd: Opener) -> None:
    fd = memfd("memsys-test", SEALING)
    fails_with(errno.EINVAL, libc.add_seals, fd, 0x40)
    assert libc.get_seals(fd) == 0


@semantic("memfd.seal_seal.add_seals_eperm",
          "After F_SEAL_SEAL no seal can be added (EPERM) and the set stays as it was.",
          source="fcntl(2) F_SEAL_SEAL", tier="linux")
def test_seal_seal(memfd: Opener) -> None:
    fd = memfd("memsys-test", SEALING)
    libc.add_seals(fd, C.F_SEAL_SEAL | C.F_SEAL_SHRINK)
    fails_with(errno.EPERM, libc.add_seals, fd, C.F_SEAL_WRITE)
    assert libc.get_seals(fd) == C.F_SEAL_SEAL | C.F_SEAL_SHRINK


@semantic("memfd.seal_shrink.ftruncate_eperm",
          "Under F_SEAL_SHRINK ftruncate to a smaller size fails with EPERM (the size stays) while "
          "growing the file still works.",
          source="fcntl(2) F_SEAL_SHRINK", tier="linux")
def test_seal_shrink(memfd: Opener) -> None:
    fd = _sized(memfd, 2)
    libc.add_seals(fd, C.F_SEAL_SHRINK)
    fails_with(errno.EPERM, os.ftruncate, fd, PAGE)
    assert os.fstat(fd).st_size == 2 * PAGE
    succeeds(os.ftruncate, fd, 3 * PAGE)
    assert os.fstat(fd).st_size == 3 * PAGE


@semantic("memfd.seal_grow.eperm",
          "Under F_SEAL_GROW the file cannot grow: ftruncate to a larger size and a write past the end "
          "fail with EPERM, while a write inside the file works.",
          source="fcntl(2) F_SEAL_GROW", tier="linux")
def test_seal_grow(memfd: Opener) -> None:
    fd = _sized(memfd, 2)
    libc.add_seals(fd, C.F_SEAL_GROW)
    fails_with(errno.EPERM, os.ftruncate, fd, 3 * PAGE)
    fails_with(errno.EPERM, os.pwrite, fd, b"z", 2 * PAGE)
    assert os.fstat(fd).st_size == 2 * PAGE
    assert succeeds(os.pwrite, fd, b"z", 2 * PAGE - 1) == 1


@semantic("memfd.seal_write.write_eperm",
          "Under F_SEAL_WRITE write(2) fails with EPERM and the contents stay.",
          source="fcntl(2) F_SEAL_WRITE", tier="linux")
def test_seal_write_write(memfd: Opener) -> None:
    fd = _sized(memfd, 1)
    libc.add_seals(fd, C.F_SEAL_WRITE)
    fails_with(errno.EPERM, os.pwrite, fd, b"z", 0)
    assert os.pread(fd, 1, 0) == b"a"


@semantic("memfd.seal_write.mmap_shared_writable_eperm",
          "Under F_SEAL_WRITE a shared writable mmap of the file fails with EPERM; a shared read-only one "
          "works and reads the contents.",
          source="fcntl(2) F_SEAL_WRITE", tier="linux")
def test_seal_write_mmap(memfd: Opener, mapped_pages: MappedPages) -> None:
    fd = _sized(memfd, 1)
    libc.add_seals(fd, C.F_SEAL_WRITE)
    fails_with(errno.EPERM, mapped_pages, 1, RW, C.MAP_SHARED, fd)
    m = succeeds(mapped_pages, 1, C.PROT_READ, C.MAP_SHARED, fd)
    assert byte_at(m.addr + PAGE - 1) == ord("a")


@semantic("memfd.seal_write.busy_with_writable_mapping",
          "F_ADD_SEALS(F_SEAL_WRITE) fails with EBUSY while a shared writable mapping of the file exists, "
          "and no seal is added.",
          source="fcntl(2) F_SEAL_WRITE; ERRORS (EBUSY)", tier="linux")
def test_seal_write_busy(memfd: Opener, mapped_pages: MappedPages) -> None:
    fd = _sized(memfd, 1)
    mapped_pages(1, RW, C.MAP_SHARED, fd)
    fails_with(errno.EBUSY, libc.add_seals, fd, C.F_SEAL_WRITE)
    assert libc.get_seals(fd) == 0


@semantic("memfd.seal_future_write.existing_mapping_writes",
          "Under F_SEAL_FUTURE_WRITE a shared writable mapping made before the seal still writes (the file "
          "sees it), while write(2) and a new shared writable mmap fail with EPERM.",
          source="fcntl(2) F_SEAL_FUTURE_WRITE (Linux 5.1)", tier="linux")
def test_seal_future_write(memfd: Opener, mapped_pages: MappedPages) -> None:
    fd = _sized(memfd, 2)
    m = mapped_pages(2, RW, C.MAP_SHARED, fd)
    succeeds(libc.add_seals, fd, C.F_SEAL_FUTURE_WRITE)
    assert probe.write(m.page(1) + 7, 0x33) is None
    assert os.pread(fd, 1, PAGE + 7) == b"\x33"
    fails_with(errno.EPERM, os.pwrite, fd, b"z", 0)
    fails_with(errno.EPERM, mapped_pages, 1, RW, C.MAP_SHARED, fd)


@semantic("memfd.seal_future_write.mprotect_eacces",
          "A shared read-only mapping made under F_SEAL_FUTURE_WRITE cannot be made writable: mprotect "
          "fails with EACCES and a write through it still faults.",
          source="fcntl(2) F_SEAL_FUTURE_WRITE; mprotect(2) ERRORS (EACCES)", tier="linux")
def test_seal_future_write_mprotect(memfd: Opener, mapped_pages: MappedPages) -> None:
    fd = _sized(memfd, 1)
    libc.add_seals(fd, C.F_SEAL_FUTURE_WRITE)
    m = mapped_pages(1, C.PROT_READ, C.MAP_SHARED, fd)
    fails_with(errno.EACCES, libc.mprotect, m.addr, m.length, RW)
    assert probe.write(m.addr, 1) == Fault(signal.SIGSEGV, C.SEGV_ACCERR, m.addr)


@semantic("memfd.noexec_seal.not_executable",
          "MFD_NOEXEC_SEAL creates a file without execute bits (mode 0666) sealed with F_SEAL_EXEC: "
          "fchmod adding an execute bit fails with EPERM.",
          source="memfd_create(2) MFD_NOEXEC_SEAL (Linux 6.3); Documentation/userspace-api/mfd_noexec.rst",
          tier="linux")
@requires("feature:MFD_NOEXEC_SEAL")
def test_noexec_seal(memfd: Opener) -> None:
    fd = memfd("memsys-test", C.MFD_NOEXEC_SEAL)
    assert os.fstat(fd).st_mode & 0o777 == 0o666
    assert libc.get_seals(fd) & C.F_SEAL_EXEC
    fails_with(errno.EPERM, os.fchmod, fd, 0o766)
    assert os.fstat(fd).st_mode & 0o777 == 0o666


# =====================================================================================
# memfd_secret
# =====================================================================================

def _secret_mapping(secret_fd: Opener, mapped_pages: MappedPages, pages: int) -> tuple[int, int]:
    fd = secret_fd()
    os.ftruncate(fd, pages * PAGE)
    m = mapped_pages(pages, RW, C.MAP_SHARED, fd)
    return fd, m.addr


def need_lockable(memsys_env: Environment, length: int) -> None:
    reason = lockable_shortfall(memsys_env, length)
    if reason:
        pytest.skip(reason)


@semantic("memfd_secret.mapping.read_write",
          "A shared mapping of a memfd_secret file reads and writes like memory: the first, an inner and "
          "the last page keep what was written, and a second mapping of the file sees the same bytes.",
          source="memfd_secret(2) DESCRIPTION", tier="linux")
@requires("feature:MEMFD_SECRET")
def test_secret_read_write(secret_fd: Opener, mapped_pages: MappedPages, memsys_env: Environment) -> None:
    need_lockable(memsys_env, 6 * PAGE)
    fd, addr = _secret_mapping(secret_fd, mapped_pages, 3)
    assert [byte_at(addr + i * PAGE) for i in range(3)] == [0, 0, 0]
    for index in range(3):
        assert probe.write(addr + index * PAGE + index, 0x70 + index) is None
    other = mapped_pages(3, C.PROT_READ, C.MAP_SHARED, fd)
    assert [byte_at(other.addr + i * PAGE + i) for i in range(3)] == [0x70, 0x71, 0x72]


@semantic("memfd_secret.proc_mem.eio",
          "Secret memory cannot be read through /proc/self/mem: pread there fails with EIO, while an "
          "ordinary page next to it reads fine.",
          source="memfd_secret(2) DESCRIPTION (not accessible to the kernel); mm/gup.c (secretmem VMAs "
                 "refused); fs/proc/base.c mem_rw (EIO when nothing was copied)", tier="linux")
@requires("feature:MEMFD_SECRET")
def test_secret_proc_mem(secret_fd: Opener, mapped_pages: MappedPages, memsys_env: Environment) -> None:
    need_lockable(memsys_env, PAGE)
    _, addr = _secret_mapping(secret_fd, mapped_pages, 1)
    ctypes.memset(addr, 0x5E, PAGE)
    plain = mapped_pages(1)
    ctypes.memset(plain.addr, 0x5F, PAGE)
    mem = os.open("/proc/self/mem", os.O_RDONLY | os.O_CLOEXEC)
    try:
        assert os.pread(mem, 1, plain.addr) == b"\x5f"
        fails_with(errno.EIO, os.pread, mem, 1, addr)
    finally:
        os.close(mem)


@semantic("memfd_secret.read.einval",
          "read(2) on a memfd_secret descriptor fails with EINVAL: its contents are reachable only "
          "through a mapping.",
          source="memfd_secret(2) DESCRIPTION; mm/secretmem.c (no read_iter)", tier="impl")
@requires("feature:MEMFD_SECRET")
def test_secret_read(secret_fd: Opener, mapped_pages: MappedPages, memsys_env: Environment) -> None:
    need_lockable(memsys_env, PAGE)
    fd, addr = _secret_mapping(secret_fd, mapped_pages, 1)
    ctypes.memset(addr, 0x5E, PAGE)
    fails_with(errno.EINVAL, os.read, fd, 1)


@semantic("memfd_secret.pread.espipe",
          "pread(2) on a memfd_secret descriptor fails with ESPIPE: the file is not positionable.",
          source="mm/secretmem.c (a pseudo file opened without FMODE_PREAD); pread(2) ERRORS (ESPIPE)",
          tier="impl")
@requires("feature:MEMFD_SECRET")
def test_secret_pread(secret_fd: Opener, mapped_pages: MappedPages, memsys_env: Environment) -> None:
    need_lockable(memsys_env, PAGE)
    fd, _ = _secret_mapping(secret_fd, mapped_pages, 1)
    fails_with(errno.ESPIPE, os.pread, fd, 1, 0)


@semantic("memfd_secret.maps.name",
          "A memfd_secret mapping appears in /proc/self/maps as a shared mapping of '/secretmem (deleted)' "
          "covering exactly the mapped range.",
          source="proc(5) /proc/PID/maps; mm/secretmem.c (the 'secretmem' pseudo file)", tier="impl")
@requires("feature:MEMFD_SECRET")
def test_secret_maps_name(secret_fd: Opener, mapped_pages: MappedPages, memsys_env: Environment) -> None:
    need_lockable(memsys_env, 2 * PAGE)
    _, addr = _secret_mapping(secret_fd, mapped_pages, 2)
    entry = procfs.vma_at(addr)
    assert entry is not None
    assert (entry.start, entry.end, entry.perms, entry.path) == (addr, addr + 2 * PAGE, "rw-s", "/secretmem (deleted)")


@semantic("memfd_secret.mmap.locked_accounting",
          "Mapping a memfd_secret file locks the range at mmap time: VmLck grows by the mapping's size "
          "before any page is touched, and the VMA carries 'lo' in VmFlags.",
          source="memfd_secret(2) NOTES (the memory is locked); mm/secretmem.c secretmem_mmap (VM_LOCKED)",
          tier="linux")
@requires("feature:MEMFD_SECRET")
def test_secret_locked_accounting(secret_fd: Opener, mapped_pages: MappedPages, memsys_env: Environment) -> None:
    need_lockable(memsys_env, 4 * PAGE)
    before = procfs.status_kb(procfs.read_status(), "VmLck")
    if before is None:
        pytest.skip("unsupported:VmLck (no VmLck line in /proc/self/status)")
    _, addr = _secret_mapping(secret_fd, mapped_pages, 4)
    assert procfs.status_kb(procfs.read_status(), "VmLck") == before + 4 * PAGE // 1024
    assert "lo" in vmflags(addr)


@semantic("memfd_secret.mmap.private_einval",
          "A private (MAP_PRIVATE) mapping of a memfd_secret file fails with EINVAL.",
          source="memfd_secret(2) DESCRIPTION (shared mappings only); mm/secretmem.c", tier="linux")
@requires("feature:MEMFD_SECRET")
def test_secret_private(secret_fd: Opener, mapped_pages: MappedPages) -> None:
    fd = secret_fd()
    os.ftruncate(fd, PAGE)
    fails_with(errno.EINVAL, mapped_pages, 1, RW, C.MAP_PRIVATE, fd)


@semantic("memfd_secret.flags.einval",
          "memfd_secret accepts only O_CLOEXEC (which sets FD_CLOEXEC); any other flag fails with EINVAL.",
          source="memfd_secret(2) ERRORS (EINVAL)", tier="linux")
@requires("feature:MEMFD_SECRET")
def test_secret_flags(secret_fd: Opener) -> None:
    fails_with(errno.EINVAL, secret_fd, 1)
    fd = succeeds(secret_fd, os.O_CLOEXEC)
    assert fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC


def _secret_over_limit() -> tuple[str, str]:
    """In a child: RLIMIT_MEMLOCK of one page, no CAP_IPC_LOCK; map one and then two pages."""
    resource.setrlimit(resource.RLIMIT_MEMLOCK, (PAGE, PAGE))
    if "CAP_IPC_LOCK" in effective_caps():
        drop_capability(CAP_IPC_LOCK)
    fd = libc.memfd_secret(0)
    os.ftruncate(fd, 2 * PAGE)
    results = []
    for pages in (1, 2):
        try:
            addr = libc.mmap(0, pages * PAGE, RW, C.MAP_SHARED, fd)
        except OSError as error:
            results.append(errno.errorcode.get(error.errno or 0, "?"))
        else:
            results.append("OK")
            libc.munmap(addr, pages * PAGE)
    return results[0], results[1]


@semantic("memfd_secret.mmap.memlock_eagain",
          "Without CAP_IPC_LOCK, a memfd_secret mapping larger than what RLIMIT_MEMLOCK leaves fails with "
          "EAGAIN, while one within the limit succeeds.",
          source="memfd_secret(2) NOTES (subject to RLIMIT_MEMLOCK); mm/secretmem.c (mlock_future_ok)",
          tier="linux")
@requires("feature:MEMFD_SECRET")
def test_secret_memlock_limit(run_in_child: RunInChild) -> None:
    hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)[1]
    if hard != resource.RLIM_INFINITY and hard < PAGE:
        pytest.skip(f"limit:RLIMIT_MEMLOCK hard={hard} (the test needs to set {PAGE})")
    assert run_in_child(_secret_over_limit).result() == ("OK", "EAGAIN")
