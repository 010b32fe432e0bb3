"""The libc layer: errno fidelity and argument checking."""

from __future__ import annotations

import errno
import signal
from collections.abc import Callable

import pytest

from pytest_memsyscalls.kernel import constants as C
from pytest_memsyscalls.kernel import libc
from pytest_memsyscalls.kernel.probe import Fault, read

RW = C.PROT_READ | C.PROT_WRITE
ANON = C.MAP_PRIVATE | C.MAP_ANONYMOUS


def test_failure_is_oserror_with_errno_and_call() -> None:
    addr = libc.mmap(0, libc.PAGE_SIZE, RW, ANON)
    try:
        with pytest.raises(OSError) as caught:
            libc.mprotect(addr + 1, libc.PAGE_SIZE, C.PROT_READ)
        assert caught.value.errno == errno.EINVAL
        assert caught.value.filename.startswith("mprotect(")
        assert vars(caught.value)["syscall"] == "mprotect"  # an attribute libc adds to the OSError
    finally:
        libc.munmap(addr, libc.PAGE_SIZE)


def test_errno_maps_to_python_subclasses() -> None:
    with pytest.raises(FileNotFoundError):
        libc.shm_unlink("/memsys-test-does-not-exist-" + "0" * 16)


def test_errno_is_reset_before_each_call() -> None:
    """A success after a failure must not carry the failure's errno into the next check."""
    with pytest.raises(OSError):
        libc.munmap(1, libc.PAGE_SIZE)
    addr = libc.mmap(0, libc.PAGE_SIZE, RW, ANON)
    libc.munmap(addr, libc.PAGE_SIZE)


def test_high_addresses_are_not_truncated() -> None:
    addr = libc.mmap(0, libc.PAGE_SIZE, RW, ANON)
    try:
        assert addr > 1 << 32, "the kernel places anonymous mappings above 4 GiB on 64-bit"
        assert read(addr) is None
    finally:
        libc.munmap(addr, libc.PAGE_SIZE)


@pytest.mark.parametrize(
    ("call", "args", "error", "words"),
    [
        (libc.mmap, (0, -1, RW, ANON), ValueError, "length must be >= 0"),
        (libc.mmap, ("0", 4096, RW, ANON), TypeError, "addr must be an integer"),
        (libc.mmap, (0, 4096, 1 << 40, ANON), ValueError, "prot must fit in a C int"),
        (libc.mprotect, (-1, 4096, RW), ValueError, "addr must be an address"),
        (libc.mprotect, (1 << 64, 4096, RW), ValueError, "addr must be an address"),
        (libc.munmap, (0, 1.5), TypeError, "length must be an integer"),
        (libc.madvise, (True, 4096, 0), TypeError, "got bool"),
        (libc.shm_open, (b"/a\0b", 0), ValueError, "NUL"),
        (libc.shm_open, (3, 0), TypeError, "name must be str or bytes"),
        (libc.sbrk, (1 << 70,), ValueError, "intptr_t"),
    ],
)
def test_bad_arguments_raise_before_reaching_c(call: Callable[..., object], args: tuple[object, ...], error: type,
                                               words: str) -> None:
    with pytest.raises(error, match=words):
        call(*args)


def test_owned_ranges_follow_map_unmap_and_remap() -> None:
    addr = libc.mmap(0, 3 * libc.PAGE_SIZE, RW, ANON)
    assert libc.owned.contains(addr + 2 * libc.PAGE_SIZE)
    libc.munmap(addr + libc.PAGE_SIZE, libc.PAGE_SIZE)
    assert not libc.owned.contains(addr + libc.PAGE_SIZE)
    assert libc.owned.contains(addr) and libc.owned.contains(addr + 2 * libc.PAGE_SIZE)
    moved = libc.mremap(addr, libc.PAGE_SIZE, 4 * libc.PAGE_SIZE, C.MREMAP_MAYMOVE)
    assert libc.owned.contains(moved + 3 * libc.PAGE_SIZE)
    libc.munmap(moved, 4 * libc.PAGE_SIZE)
    libc.munmap(addr + 2 * libc.PAGE_SIZE, libc.PAGE_SIZE)
    assert not libc.owned.contains(moved)


def test_raw_brk_reports_the_break_and_never_fails() -> None:
    current = libc.raw_brk(0)
    assert current > 0
    assert libc.raw_brk(1) == current, "an impossible break leaves the break where it is"


def test_shmid_ds_is_decoded_with_the_kernel_layout() -> None:
    shmid = libc.shmget(C.IPC_PRIVATE, 3 * libc.PAGE_SIZE, C.IPC_CREAT | 0o600)
    try:
        ds = libc.shm_stat(shmid)
        assert ds.shm_segsz == 3 * libc.PAGE_SIZE
        assert ds.shm_perm.mode & 0o777 == 0o600
        assert ds.shm_nattch == 0
        import os

        assert ds.shm_cpid == os.getpid()
        assert ds.shm_perm.cuid == os.geteuid()
    finally:
        libc.shmctl(shmid, C.IPC_RMID)


def test_unmapped_read_is_a_maperr_fault() -> None:
    addr = libc.mmap(0, libc.PAGE_SIZE, RW, ANON)
    libc.munmap(addr, libc.PAGE_SIZE)
    assert read(addr) == Fault(signal.SIGSEGV, C.SEGV_MAPERR, addr)
