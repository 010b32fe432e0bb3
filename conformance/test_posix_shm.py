"""POSIX shared memory: shm_open(3), shm_unlink(3), ftruncate and mmap of the object.

Objects come from the posix_shm fixture (O_CREAT|O_EXCL, mode 0600, unlinked at teardown);
every other name is built from pytest_memsyscalls.memory.names.unique_name(), and any object a test
creates by hand is unlinked in a ``finally``. On Linux the objects are files in the tmpfs
at /dev/shm, which glibc's shm_open opens with O_NOFOLLOW|O_CLOEXEC.
"""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import stat as st
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from pytest_memsyscalls import PosixShmFactory, fails_with, requires, run_in_child, semantic, succeeds
from pytest_memsyscalls.kernel import constants as C
from pytest_memsyscalls.kernel import libc, procfs
from pytest_memsyscalls.kernel.constants import RW
from pytest_memsyscalls.kernel.libc import PAGE_SIZE as PAGE
from pytest_memsyscalls.kernel.probe import Fault
from pytest_memsyscalls.kernel.probe import read as probe_read
from pytest_memsyscalls.memory.names import unique_name

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
