"""The kernel's own answers that several conformance modules ask for.

Each reads the kernel directly (msync, mincore, /proc/self/smaps, CapEff) rather than
trusting a library, and each probe that decides whether an oracle can be believed at
all (mincore residency under gVisor) runs on a scratch mapping of its own, once.
"""

from __future__ import annotations

import errno
import functools

from pytest_memsyscalls.kernel import constants as C
from pytest_memsyscalls.kernel import libc, procfs
from pytest_memsyscalls.kernel.libc import PAGE_SIZE as PAGE


def is_mapped(addr: int, length: int = PAGE) -> bool:
    """Every page of the range is mapped: msync(MS_ASYNC) fails with ENOMEM on a hole."""
    try:
        libc.msync(addr, length, C.MS_ASYNC)
    except OSError as error:
        if error.errno == errno.ENOMEM:
            return False
        raise
    return True


def vmflags(addr: int) -> frozenset[str]:
    """The VmFlags of the VMA containing addr (empty if unmapped or not reported)."""
    entry = procfs.smaps_at(addr)
    return entry.vmflags if entry is not None else frozenset()


def resident(addr: int, length: int) -> list[bool]:
    """mincore: for each page of the range, whether it is resident."""
    return [bool(b & 1) for b in libc.mincore(addr, length)]


def effective_caps() -> frozenset[str]:
    """CapEff of this process now (a child may have dropped capabilities since detect())."""
    return procfs.decode_capabilities(procfs.read_status()["CapEff"])


@functools.cache
def mincore_sees_residency() -> bool:
    """Probe (once): does mincore report a fresh, untouched anonymous page as non-resident?
    gVisor reports every mapped page resident, which blinds the residency oracle."""
    scratch = libc.mmap(0, PAGE, C.PROT_READ | C.PROT_WRITE, C.MAP_PRIVATE | C.MAP_ANONYMOUS)
    try:
        return not libc.mincore(scratch, PAGE)[0] & 1
    finally:
        libc.munmap(scratch, PAGE)
