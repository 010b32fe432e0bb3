"""POSIX shared memory: shm_open(3), shm_unlink(3), ftruncate and mmap of the object.

Objects come from the posix_shm fixture (O_CREAT|O_EXCL, mode 0600, unlinked at teardown);
every other name is built from pytest_memsyscalls.memory.names.unique_name(), and any object a test
creates by hand is unlinked in a ``finally``. On Linux the objects are files in the tmpfs
at /dev/shm, which glibc's shm_open opens with O_NOFOLLOW|O_CLOEXEC.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import signal
import stat as st
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from pytest_memsyscalls import PosixShmFactory, RunInChild, fails_with, requires, run_in_child, semantic, succeeds
from pytest_memsyscalls.kernel import constants as C
from pytest_memsyscalls.kernel import libc, procfs
from pytest_memsyscalls.kernel.constants import RW
from pytest_memsyscalls.kernel.libc import PAGE_SIZE as PAGE
from pytest_memsyscalls.kernel.probe import Fault
from pytest_memsyscalls.kernel.probe import read as probe_read
from pytest_memsyscalls.kernel.probe import read_value as probe_read_value
from pytest_memsyscalls.kernel.probe import write as probe_write
from pytest_memsyscalls.memory.names import unique_name

from ._oracles import exec_held

NAME_MAX = 255  # limits.h; tmpfs file names
PATH_MAX = 4096


def _umask() -> int:
    """The process umask, from /proc/self/status; where that lacks the field, from a child
    (os.umask can only be read by changing it, which the pytest process must not do)."""
    found = procfs.read_status().get("Umask")
    if found is not None:
        return int(found, 8)
    return int(run_in_child(os.umask, 0).result())


@contextmanager
def _opened(name: str, oflag: int, mode: int = 0o600) -> Iterator[int]:
    """shm_open a name this test made; close the fd and unlink the name afterwards."""
    fd = libc.shm_open(name, oflag, mode)
    try:
        yield fd
    finally:
        os.close(fd)
        try:
            libc.shm_unlink(name)
        except FileNotFoundError:
            pass


@semantic("posix_shm.open.creat_new_empty",
          "shm_open with O_CREAT on a new name creates an object of length 0 with the given mode "
          "(less the umask), owned by the caller's effective uid",
          source="shm_open(3) DESCRIPTION O_CREAT", tier="posix")
def test_shm_open_creates_empty_object() -> None:
    name = unique_name()
    with _opened(name, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o640) as fd:
        info = os.fstat(fd)
        assert info.st_size == 0
        assert st.S_IMODE(info.st_mode) == 0o640 & ~_umask()
        assert info.st_uid == os.geteuid()


@semantic("posix_shm.open.excl_existing_eexist",
          "shm_open with O_CREAT|O_EXCL on a name that exists fails with EEXIST",
          source="shm_open(3) ERRORS EEXIST", tier="posix")
def test_shm_open_excl_existing(posix_shm: PosixShmFactory) -> None:
    shared = posix_shm()
    fails_with(errno.EEXIST, libc.shm_open, shared.name, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)


@semantic("posix_shm.open.missing_enoent",
          "shm_open without O_CREAT on a name that does not exist fails with ENOENT",
          source="shm_open(3) ERRORS ENOENT", tier="posix")
def test_shm_open_missing_name() -> None:
    fails_with(errno.ENOENT, libc.shm_open, unique_name(), os.O_RDWR, 0o600)


@semantic("posix_shm.open.rdonly_shared_write_map_eacces",
          "An object opened O_RDONLY cannot be mapped PROT_WRITE with MAP_SHARED: mmap fails with EACCES",
          source="mmap(2) ERRORS EACCES; shm_open(3)", tier="posix")
def test_rdonly_object_cannot_map_shared_writable(posix_shm: PosixShmFactory) -> None:
    shared = posix_shm(PAGE)
    fd = libc.shm_open(shared.name, os.O_RDONLY, 0)
    try:
        fails_with(errno.EACCES, libc.mmap, 0, PAGE, RW, C.MAP_SHARED, fd, 0)
        readable = succeeds(libc.mmap, 0, PAGE, C.PROT_READ, C.MAP_SHARED, fd, 0)
        libc.munmap(readable, PAGE)
    finally:
        os.close(fd)


@semantic("posix_shm.open.trunc_to_zero",
          "shm_open with O_RDWR|O_TRUNC on an existing object truncates it to length 0",
          source="shm_open(3) DESCRIPTION O_TRUNC", tier="posix")
def test_shm_open_trunc(posix_shm: PosixShmFactory) -> None:
    shared = posix_shm(3 * PAGE)
    fd = libc.shm_open(shared.name, os.O_RDWR | os.O_TRUNC, 0)
    try:
        assert os.fstat(fd).st_size == 0
        assert os.fstat(shared.fd).st_size == 0
    finally:
        os.close(fd)


@semantic("posix_shm.name.leading_slash_optional_glibc",
          "glibc accepts a name without the leading slash and strips leading slashes, so 'name' and "
          "'/name' are the same object (POSIX leaves names without a leading slash implementation-defined)",
          source="shm_open(3) DESCRIPTION; glibc posix/shm-directory.c (verified)", tier="impl")
def test_name_without_leading_slash(posix_shm: PosixShmFactory) -> None:
    shared = posix_shm()
    fd = succeeds(libc.shm_open, shared.name.lstrip("/"), os.O_RDWR, 0)
    try:
        assert os.fstat(fd).st_ino == os.fstat(shared.fd).st_ino
    finally:
        os.close(fd)


@semantic("posix_shm.name.inner_slash_einval",
          "A name with a slash after its leading slash is invalid: shm_open fails with EINVAL",
          source="shm_open(3) DESCRIPTION, ERRORS EINVAL", tier="linux")
def test_name_with_inner_slash() -> None:
    fails_with(errno.EINVAL, libc.shm_open, unique_name() + "/part", os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)


@pytest.mark.parametrize("name", ["", "/", "//"], ids=["empty", "slash", "slashes"])
@semantic("posix_shm.name.empty_einval",
          "A name that is empty once its leading slashes are removed is invalid: shm_open fails with EINVAL",
          source="shm_open(3) ERRORS EINVAL", tier="linux")
def test_empty_name(name: str) -> None:
    fails_with(errno.EINVAL, libc.shm_open, name, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)


def _name_of_length(length: int) -> str:
    """A unique name of exactly ``length`` characters after the slash."""
    base = unique_name()
    return base + "a" * (length - len(base) + 1)


@semantic("posix_shm.name.over_name_max_enametoolong",
          "A name longer than NAME_MAX (255) but within glibc's buffer reaches the kernel, whose open fails "
          "with ENAMETOOLONG (the man page's 'exceeds PATH_MAX' is not the limit that applies)",
          source="shm_open(3) ERRORS ENAMETOOLONG; glibc 2.36 (verified)", tier="impl")
def test_name_just_over_name_max() -> None:
    name = _name_of_length(NAME_MAX + 1)
    fails_with(errno.ENAMETOOLONG, libc.shm_open, name, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    allowed = _name_of_length(NAME_MAX)
    with _opened(allowed, os.O_CREAT | os.O_EXCL | os.O_RDWR):
        pass


@semantic("posix_shm.name.path_max_einval_glibc",
          "glibc rejects a name of PATH_MAX characters itself with EINVAL (it does not fit glibc's "
          "/dev/shm path buffer), not with the ENAMETOOLONG the man page lists",
          source="shm_open(3) ERRORS; glibc posix/shm-directory.c (verified)", tier="impl")
def test_name_of_path_max() -> None:
    fails_with(errno.EINVAL, libc.shm_open, _name_of_length(PATH_MAX), os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)


@semantic("posix_shm.ftruncate_then_shared_mapping",
          "After ftruncate sets the object's size, MAP_SHARED mappings of it share the bytes: a write through "
          "one mapping is seen through another mapping and through read() on the descriptor",
          source="shm_open(3) DESCRIPTION; mmap(2) MAP_SHARED", tier="posix")
def test_ftruncate_and_shared_mappings(posix_shm: PosixShmFactory) -> None:
    shared = posix_shm(0)
    os.ftruncate(shared.fd, 2 * PAGE)
    assert os.fstat(shared.fd).st_size == 2 * PAGE
    first, second = shared.map(2), shared.map(2)
    try:
        assert first.addr != second.addr
        ctypes.memmove(first.page(1) + 3, b"posix", 5)
        assert ctypes.string_at(second.page(1) + 3, 5) == b"posix"
        assert os.pread(shared.fd, 5, PAGE + 3) == b"posix"
    finally:
        first.unmap()
        second.unmap()


@semantic("posix_shm.mmap.past_size_sigbus",
          "Touching a page of a mapping that lies wholly beyond the object's size raises SIGBUS with "
          "BUS_ADRERR at the touched address",
          source="mmap(2) ERRORS SIGBUS; sigaction(2) BUS_ADRERR", tier="linux")
def test_access_past_object_size_sigbus(posix_shm: PosixShmFactory) -> None:
    shared = posix_shm(PAGE)
    mapping = shared.map(3)
    try:
        assert probe_read(mapping.addr + PAGE - 1) is None
        address = mapping.page(2) + 123
        assert probe_read(address) == Fault(signal.SIGBUS, C.BUS_ADRERR, address)
    finally:
        mapping.unmap()


@semantic("posix_shm.devshm.visible_file",
          "On Linux a POSIX shm object is a regular file /dev/shm/<name> with the object's mode "
          "(0600 less the umask), owner and size",
          source="shm_overview(7) Accessing shared memory objects via the filesystem", tier="linux")
@requires("path:/dev/shm")
def test_object_visible_in_dev_shm(posix_shm: PosixShmFactory) -> None:
    shared = posix_shm(3 * PAGE + 5, mode=0o600)
    info = os.stat(shared.path)
    assert shared.path == "/dev/shm" + shared.name
    assert st.S_ISREG(info.st_mode)
    assert st.S_IMODE(info.st_mode) == 0o600 & ~_umask()
    assert (info.st_size, info.st_uid) == (3 * PAGE + 5, os.geteuid())
    assert info.st_ino == os.fstat(shared.fd).st_ino


@semantic("posix_shm.unlink.name_gone_mappings_stay",
          "After shm_unlink the name is gone (shm_open without O_CREAT fails with ENOENT) but existing "
          "mappings stay valid and keep the object's contents until unmapped",
          source="shm_unlink(3) DESCRIPTION; shm_open(3) ERRORS ENOENT", tier="posix")
def test_unlink_removes_name_keeps_mapping(posix_shm: PosixShmFactory) -> None:
    shared = posix_shm(PAGE)
    mapping = shared.map(1)
    try:
        ctypes.memmove(mapping.addr, b"survives", 8)
        succeeds(libc.shm_unlink, shared.name)
        shared.unlinked = True
        fails_with(errno.ENOENT, libc.shm_open, shared.name, os.O_RDWR, 0)
        assert not os.path.exists(shared.path)
        assert ctypes.string_at(mapping.addr, 8) == b"survives"
        ctypes.memmove(mapping.addr + 8, b"!", 1)
        assert os.pread(shared.fd, 9, 0) == b"survives!"
    finally:
        mapping.unmap()


@semantic("posix_shm.unlink.missing_enoent",
          "shm_unlink of a name that does not exist fails with ENOENT",
          source="shm_unlink(3) ERRORS ENOENT", tier="posix")
def test_unlink_missing_name() -> None:
    fails_with(errno.ENOENT, libc.shm_unlink, unique_name())


# --- the descriptor: FD_CLOEXEC and exec ------------------------------------------------

O_CLOEXEC_FDINFO = 0o2000000  # the O_CLOEXEC bit in /proc/PID/fdinfo's octal "flags:"


def _fdinfo_flags(fd: int, pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/fdinfo/{fd}") as handle:
        for line in handle:
            if line.startswith("flags:"):
                return int(line.split()[1], 8)
    raise AssertionError(f"/proc/{pid}/fdinfo/{fd} has no flags: line")


@semantic("posix_shm.open.fd_cloexec",
          "The descriptor shm_open returns has FD_CLOEXEC set (fcntl F_GETFD), and the kernel's "
          "/proc/self/fdinfo shows it was opened O_CLOEXEC",
          source="shm_open(3) DESCRIPTION (FD_CLOEXEC)", tier="posix")
def test_shm_open_fd_cloexec(posix_shm: PosixShmFactory) -> None:
    shared = posix_shm()
    assert fcntl.fcntl(shared.fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
    assert _fdinfo_flags(shared.fd) & O_CLOEXEC_FDINFO


@semantic("posix_shm.exec.fd_closed",
          "The shm_open descriptor does not survive execve: the exec'd program's /proc/PID/fd lacks it, "
          "while a duplicate without FD_CLOEXEC of the same object is still there",
          source="shm_open(3) DESCRIPTION (FD_CLOEXEC); execve(2) (file descriptors)", tier="posix")
def test_shm_fd_closed_across_exec(posix_shm: PosixShmFactory) -> None:
    shared = posix_shm()
    inherited = fcntl.fcntl(shared.fd, fcntl.F_DUPFD, 100)  # F_DUPFD: no FD_CLOEXEC
    try:
        assert not fcntl.fcntl(inherited, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
        with exec_held() as pid:
            left = set(os.listdir(f"/proc/{pid}/fd"))
            assert os.stat(f"/proc/{pid}/fd/{inherited}").st_ino == os.fstat(shared.fd).st_ino
    finally:
        os.close(inherited)
    assert str(inherited) in left
    assert str(shared.fd) not in left, f"fd {shared.fd} is still open in the exec'd program"


# --- another uid --------------------------------------------------------------------------

OTHER_UID = 65534  # nobody


def _errno_of(fn: Callable[..., Any], *args: Any) -> int:
    """0 when fn(*args) succeeds (closing a returned descriptor), else its errno."""
    try:
        result = fn(*args)
    except OSError as error:
        return error.errno or -1
    if fn is libc.shm_open:
        os.close(result)
    return 0


def _as_other_user(fn: Callable[..., Any], *args: Any) -> Any:
    """In a child: drop to OTHER_UID (uid, gid, no groups: the capabilities go), then call."""
    os.setgroups([])
    os.setresgid(OTHER_UID, OTHER_UID, OTHER_UID)
    os.setresuid(OTHER_UID, OTHER_UID, OTHER_UID)
    return fn(*args)


def _open_modes(name: str) -> tuple[int, int]:
    return _errno_of(libc.shm_open, name, os.O_RDWR, 0), _errno_of(libc.shm_open, name, os.O_RDONLY, 0)


@semantic("posix_shm.open.other_uid_0600_eacces",
          "Another uid without capabilities cannot open a mode 0600 object, read-write or read-only: "
          "shm_open fails with EACCES",
          source="shm_open(3) ERRORS EACCES", tier="posix")
@requires("setuid")
def test_shm_open_other_uid_denied(posix_shm: PosixShmFactory, run_in_child: RunInChild) -> None:
    shared = posix_shm(mode=0o600)
    assert run_in_child(_as_other_user, _open_modes, shared.name).result() == (errno.EACCES, errno.EACCES)


@semantic("posix_shm.open.other_uid_0644_read_only",
          "A mode 0644 object can be opened O_RDONLY by another uid, but not O_RDWR (EACCES): the "
          "permission bits are checked against the requested access",
          source="shm_open(3) ERRORS EACCES", tier="posix")
@requires("setuid")
def test_shm_open_other_uid_read_only(posix_shm: PosixShmFactory, run_in_child: RunInChild) -> None:
    shared = posix_shm(mode=0o600)
    os.fchmod(shared.fd, 0o644)  # the fixture's umask-free way to a world-readable mode
    assert run_in_child(_as_other_user, _open_modes, shared.name).result() == (errno.EACCES, 0)


def _unlink_errnos(name: str, path: str) -> tuple[int, int]:
    return _errno_of(libc.shm_unlink, name), _errno_of(os.unlink, path)


@semantic("posix_shm.unlink.other_uid_eacces",
          "shm_unlink of another uid's object in the sticky /dev/shm fails with EACCES: the kernel refuses "
          "the unlink with EPERM (as unlink(2) on the path shows) and glibc reports it as EACCES; the "
          "object stays",
          source="shm_unlink(3) ERRORS EACCES; unlink(2) ERRORS EPERM (sticky directory); "
                 "glibc posix/shm_unlink.c", tier="linux")
@requires("setuid", "path:/dev/shm")
def test_shm_unlink_other_uid(posix_shm: PosixShmFactory, run_in_child: RunInChild) -> None:
    shared = posix_shm(mode=0o600)
    directory = os.stat("/dev/shm")
    if not directory.st_mode & st.S_ISVTX or directory.st_uid == OTHER_UID:
        pytest.skip(f"needs:/dev/shm sticky and not owned by uid {OTHER_UID} (mode {directory.st_mode:#o})")
    assert run_in_child(_as_other_user, _unlink_errnos, shared.name, shared.path).result() == (
        errno.EACCES, errno.EPERM)
    assert os.stat(shared.path).st_ino == os.fstat(shared.fd).st_ino


# --- O_CREAT on an existing name, O_RDONLY -----------------------------------------------

@semantic("posix_shm.open.creat_existing_opens_unchanged",
          "shm_open with O_CREAT (without O_EXCL) on an existing name opens that object: same inode, "
          "and its mode and size are not changed by the mode argument",
          source="shm_open(3) DESCRIPTION O_CREAT", tier="posix")
def test_shm_open_creat_existing(posix_shm: PosixShmFactory) -> None:
    shared = posix_shm(2 * PAGE, mode=0o600)
    fd = succeeds(libc.shm_open, shared.name, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        info = os.fstat(fd)
        assert info.st_ino == os.fstat(shared.fd).st_ino
        assert (st.S_IMODE(info.st_mode), info.st_size) == (0o600 & ~_umask(), 2 * PAGE)
    finally:
        os.close(fd)


@semantic("posix_shm.open.rdonly_ftruncate_einval",
          "ftruncate on a descriptor shm_open returned for O_RDONLY fails with EINVAL (not open for "
          "writing) and the size stays",
          source="ftruncate(2) ERRORS EINVAL; shm_open(3)", tier="linux")
def test_rdonly_fd_cannot_ftruncate(posix_shm: PosixShmFactory) -> None:
    shared = posix_shm(PAGE)
    fd = libc.shm_open(shared.name, os.O_RDONLY, 0)
    try:
        fails_with(errno.EINVAL, os.ftruncate, fd, 2 * PAGE)
        assert os.fstat(shared.fd).st_size == PAGE
    finally:
        os.close(fd)


@semantic("posix_shm.open.rdonly_private_write_cow",
          "An object opened O_RDONLY can be mapped PROT_WRITE with MAP_PRIVATE: stores go to private "
          "copies, and the object (read through the descriptor) is unchanged",
          source="mmap(2) ERRORS EACCES (only MAP_SHARED needs O_RDWR); shm_open(3)", tier="posix")
def test_rdonly_object_private_writable(posix_shm: PosixShmFactory) -> None:
    shared = posix_shm(3 * PAGE)
    os.pwrite(shared.fd, b"O" * 3 * PAGE, 0)
    fd = libc.shm_open(shared.name, os.O_RDONLY, 0)
    try:
        addr = succeeds(libc.mmap, 0, 3 * PAGE, RW, C.MAP_PRIVATE, fd, 0)
    finally:
        os.close(fd)
    try:
        for offset in (0, PAGE + 7, 3 * PAGE - 1):
            assert probe_write(addr + offset, ord("p")) is None
            assert ctypes.string_at(addr + offset, 1) == b"p"
        assert os.pread(shared.fd, 3 * PAGE, 0) == b"O" * 3 * PAGE
    finally:
        libc.munmap(addr, 3 * PAGE)


# --- ftruncate under existing mappings -------------------------------------------------------

def _sigbus(addr: int) -> Fault:
    return Fault(signal.SIGBUS, C.BUS_ADRERR, addr)


@semantic("posix_shm.ftruncate.grow_under_mapping",
          "ftruncate growing an object under an existing MAP_SHARED mapping makes the new pages readable "
          "as zeros and shared (a store through one mapping is seen through another and by pread); a page "
          "beyond the new size still raises SIGBUS",
          source="ftruncate(2) DESCRIPTION (extended part reads as null bytes); mmap(2) SIGBUS", tier="posix")
def test_ftruncate_grow_under_mapping(posix_shm: PosixShmFactory) -> None:
    shared = posix_shm(PAGE)
    first, second = shared.map(4), shared.map(4)
    assert probe_read(first.page(1)) == _sigbus(first.page(1))
    os.ftruncate(shared.fd, 3 * PAGE)
    for addr in (first.page(1), first.page(1) + PAGE // 2, first.page(2) + PAGE - 1):
        assert probe_read_value(addr) == (None, 0)
    assert probe_write(first.page(2) + 9, 0x47) is None
    assert second.read(2 * PAGE + 9) == 0x47
    assert os.pread(shared.fd, 1, 2 * PAGE + 9) == b"\x47"
    assert probe_read(first.page(3)) == _sigbus(first.page(3))


@semantic("posix_shm.ftruncate.shrink_under_mapping_sigbus",
          "ftruncate shrinking an object under an existing mapping keeps the pages below the new size and "
          "makes a touch of any page past it (the first and the last) raise SIGBUS with BUS_ADRERR at the "
          "touched address",
          source="mmap(2) ERRORS SIGBUS; ftruncate(2); sigaction(2) BUS_ADRERR", tier="linux")
def test_ftruncate_shrink_under_mapping(posix_shm: PosixShmFactory) -> None:
    shared = posix_shm(3 * PAGE)
    mapping = shared.map(3)
    mapping.buffer[:] = b"s" * (3 * PAGE)
    os.ftruncate(shared.fd, PAGE)
    assert probe_read_value(mapping.addr + PAGE - 1) == (None, ord("s"))
    for addr in (mapping.page(1) + 5, mapping.page(2) + PAGE - 1):
        assert probe_read(addr) == _sigbus(addr)
        assert probe_write(addr, 1) == _sigbus(addr)


@semantic("posix_shm.ftruncate.regrow_reads_zeros",
          "Growing an object again after shrinking it does not bring back the old data: the pages past the "
          "shrunk size read zeros through the existing mapping and through read()",
          source="ftruncate(2) DESCRIPTION (truncated data is lost; extended part reads as null bytes)",
          tier="posix")
def test_ftruncate_regrow_zeros(posix_shm: PosixShmFactory) -> None:
    shared = posix_shm(3 * PAGE)
    mapping = shared.map(3)
    mapping.buffer[:] = b"r" * (3 * PAGE)
    os.ftruncate(shared.fd, PAGE)
    os.ftruncate(shared.fd, 3 * PAGE)
    assert probe_read_value(mapping.addr) == (None, ord("r"))
    for addr in (mapping.page(1), mapping.page(1) + 77, mapping.page(2) + PAGE - 1):
        assert probe_read_value(addr) == (None, 0)
    assert os.pread(shared.fd, 2 * PAGE, PAGE) == bytes(2 * PAGE)


@semantic("posix_shm.mmap.partial_last_page",
          "With a size that is not a page multiple, the whole last page is accessible: its bytes past the "
          "size read zero and stores there do not reach the object (pread at that offset is end of file); "
          "the next page raises SIGBUS",
          source="mmap(2) NOTES (remaining bytes of a partial page are zeroed, modifications not written)",
          tier="posix")
def test_partial_last_page(posix_shm: PosixShmFactory) -> None:
    shared = posix_shm(PAGE + 100)
    mapping = shared.map(3)
    assert probe_read_value(mapping.page(1) + 100) == (None, 0)
    assert probe_read_value(mapping.page(1) + PAGE - 1) == (None, 0)
    assert probe_write(mapping.page(1) + 200, 0x33) is None
    assert os.pread(shared.fd, 1, PAGE + 200) == b""
    assert os.fstat(shared.fd).st_size == PAGE + 100
    assert probe_read(mapping.page(2)) == _sigbus(mapping.page(2))


# --- the object seen from /proc and from another process --------------------------------------

@semantic("posix_shm.maps.dev_shm_path",
          "/proc/self/maps names a mapping of a POSIX shm object by its file /dev/shm/<name>, shared "
          "('s'), with the object's inode",
          source="proc(5) /proc/pid/maps; shm_overview(7)", tier="linux")
def test_maps_names_object(posix_shm: PosixShmFactory) -> None:
    shared = posix_shm(2 * PAGE)
    mapping = shared.map(2)
    entry = procfs.vma_at(mapping.addr)
    assert entry is not None and (entry.start, entry.end) == (mapping.addr, mapping.addr + 2 * PAGE)
    assert (entry.path, entry.perms, entry.inode) == (
        "/dev/shm" + shared.name, "rw-s", os.fstat(shared.fd).st_ino)


@semantic("posix_shm.maps.deleted_after_unlink",
          "After shm_unlink, /proc/self/maps shows a remaining mapping's file as '/dev/shm/<name> (deleted)'",
          source="proc(5) /proc/pid/maps (deleted); shm_unlink(3)", tier="linux")
def test_maps_marks_unlinked_object(posix_shm: PosixShmFactory) -> None:
    shared = posix_shm(PAGE)
    mapping = shared.map(1)
    shared.unlink()
    entry = procfs.vma_at(mapping.addr)
    assert entry is not None and entry.path == f"/dev/shm{shared.name} (deleted)"


def _open_map_swap(name: str) -> bytes:
    """In another process: open the object by name, read its first bytes, write ours."""
    fd = libc.shm_open(name, os.O_RDWR, 0)
    try:
        addr = libc.mmap(0, PAGE, RW, C.MAP_SHARED, fd, 0)
    finally:
        os.close(fd)
    seen = ctypes.string_at(addr + PAGE - 6, 6)
    ctypes.memmove(addr + 3, b"child", 5)
    libc.munmap(addr, PAGE)
    return seen


@semantic("posix_shm.name.other_process_same_object",
          "Another process that opens the same name and maps it shares the memory: it reads what this "
          "process stored and this process reads its store",
          source="shm_overview(7); shm_open(3) DESCRIPTION", tier="posix")
def test_other_process_opens_same_object(posix_shm: PosixShmFactory, run_in_child: RunInChild) -> None:
    shared = posix_shm(PAGE)
    mapping = shared.map(1)
    ctypes.memmove(mapping.addr + PAGE - 6, b"parent", 6)
    assert run_in_child(_open_map_swap, shared.name).result() == b"parent"
    assert ctypes.string_at(mapping.addr + 3, 5) == b"child"
