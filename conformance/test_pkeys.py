"""Protection keys, pkeys(7): pkey_alloc, pkey_free, pkey_mprotect and SEGV_PKUERR.

Two promises decide what can be asserted. The system calls exist where the kernel was
built with CONFIG_ARCH_HAS_PKEYS (feature PKEY_SYSCALLS): there pkey_mprotect with key -1
is mprotect, and the argument checks (flags, access rights, unallocated keys) answer
EINVAL whether or not the CPU has keys, except pkey_free on powerpc, which answers EPERM
when the MMU has no keys. Keys themselves need the CPU (feature PKEYS: pku and ospke on
x86_64, the hash MMU on powerpc); without them the man page promises ENOSPC from
pkey_alloc, and x86_64 Linux answers EINVAL (a semantic of its own).

Keys are per process and their access rights per thread (PKRU on x86), so every test
that allocates one runs in a child: the pytest process never holds a key.
"""

from __future__ import annotations

import errno
import signal
from collections.abc import Callable

import pytest

from pytest_memsyscalls import RunInChild, fails_with, requires, semantic
from pytest_memsyscalls.environment.features import NOT_PROMISED, PROMISED
from pytest_memsyscalls.environment.fingerprint import Environment
from pytest_memsyscalls.kernel import constants as C
from pytest_memsyscalls.kernel import libc, probe, procfs
from pytest_memsyscalls.kernel.constants import ANON, RW
from pytest_memsyscalls.kernel.libc import PAGE_SIZE as PAGE
from pytest_memsyscalls.kernel.probe import Fault
from pytest_memsyscalls.memory.mapping import Arena

UNALLOCATED_KEY = 15  # the last x86 key: allocated only after 14 others, which no test here does
NOT_AN_ACCESS_RIGHT = 0x10  # beyond PKEY_DISABLE_{ACCESS,WRITE,EXECUTE,READ} of every architecture
HIGHEST_KEY = {"x86_64": 15, "aarch64": 7, "ppc64le": 31, "ppc64": 31}
POWERPC = ("ppc64le", "ppc64")


def _accerr(addr: int) -> Fault:
    return Fault(signal.SIGSEGV, C.SEGV_ACCERR, addr)


def _pkuerr(addr: int) -> Fault:
    return Fault(signal.SIGSEGV, C.SEGV_PKUERR, addr)


def _errno_of(fn: Callable[..., object], *args: object) -> int:
    """0 when fn(*args) succeeds, else its errno (children return this)."""
    try:
        fn(*args)
    except OSError as error:
        return error.errno or -1
    return 0


def _protection_key(addr: int) -> int | None:
    """The ProtectionKey: line of the VMA at addr in /proc/self/smaps (only where keys exist)."""
    entry = procfs.smaps_at(addr)
    return entry.get("ProtectionKey") if entry is not None else None


# --- pkey_mprotect with key -1, and the argument checks (no CPU keys needed) -------------

@semantic("pkeys.mprotect.minus_one_is_mprotect",
          "pkey_mprotect with pkey -1 changes the protection of exactly [addr, addr+len) like mprotect: "
          "its first, inner and last page refuse writes (SEGV_ACCERR) and stay readable, the pages just "
          "outside keep theirs",
          source="pkey_mprotect(2) DESCRIPTION (pkey -1: like mprotect); pkeys(7)", tier="linux")
@requires("feature:PKEY_SYSCALLS")
def test_pkey_minus_one_is_mprotect(arena: Arena) -> None:
    region = arena.map(10, 5)
    first, last = region.page(1), region.page(3)
    libc.pkey_mprotect(first, 3 * PAGE, C.PROT_READ, -1)
    for addr in (first, region.page(2), last + PAGE - 1):
        assert probe.write(addr, 1) == _accerr(addr)
        assert probe.read(addr) is None
    assert probe.write(region.page(0) + PAGE - 1, 1) is None
    assert probe.write(region.page(4), 1) is None
    assert [(e.start, e.end, e.perms) for e in procfs.maps_overlapping(region.addr, region.end)] == [
        (region.page(0), first, "rw-p"), (first, region.page(4), "r--p"), (region.page(4), region.end, "rw-p")]


@semantic("pkeys.mprotect.einval_unallocated_key",
          "pkey_mprotect with a key the process has not allocated fails with EINVAL and leaves the "
          "protection as it was",
          source="pkey_mprotect(2) ERRORS (EINVAL: pkey has not been allocated with pkey_alloc)", tier="linux")
@requires("feature:PKEY_SYSCALLS")
def test_pkey_mprotect_unallocated_key_einval(arena: Arena) -> None:
    region = arena.map(20, 1)
    fails_with(errno.EINVAL, libc.pkey_mprotect, region.addr, PAGE, C.PROT_READ, UNALLOCATED_KEY)
    assert probe.write(region.addr, 1) is None


@semantic("pkeys.free.einval_unallocated_key",
          "pkey_free of a key the process has not allocated fails with EINVAL; on powerpc whose MMU has no "
          "protection keys (the radix MMU) it fails with EPERM, before any check of the key",
          source="pkey_free(2) via pkey_alloc(2) ERRORS (EINVAL); mm/mprotect.c pkey_free and mm_pkey_free; "
                 "arch/powerpc/include/asm/pkeys.h mm_pkey_free (returns -1, i.e. -EPERM, without "
                 "MMU_FTR_PKEY); arch/powerpc/mm/book3s64/pkeys.c (no keys under the radix MMU)", tier="linux")
@requires("feature:PKEY_SYSCALLS")
def test_pkey_free_unallocated_key_einval(memsys_env: Environment) -> None:
    expected = errno.EINVAL
    if memsys_env.arch in POWERPC:
        keys = memsys_env.promise("PKEYS")
        if keys.state == NOT_PROMISED:
            expected = errno.EPERM
        elif keys.state != PROMISED and not keys.works:
            pytest.skip(f"needs:a known answer to whether the MMU has protection keys ({keys.describe()})")
    fails_with(expected, libc.pkey_free, UNALLOCATED_KEY)


@semantic("pkeys.alloc.einval_flags",
          "pkey_alloc with non-zero flags (none are defined) fails with EINVAL",
          source="pkey_alloc(2) ERRORS (EINVAL: flags or access_rights is invalid)", tier="linux")
@requires("feature:PKEY_SYSCALLS")
def test_pkey_alloc_flags_einval(run_in_child: RunInChild) -> None:
    # In a child: were the check missing, the call would allocate a key.
    assert run_in_child(_errno_of, libc.pkey_alloc, 1, 0).result() == errno.EINVAL


@semantic("pkeys.alloc.einval_access_rights",
          "pkey_alloc with an access_rights bit that is no PKEY_DISABLE_* flag fails with EINVAL",
          source="pkey_alloc(2) ERRORS (EINVAL: flags or access_rights is invalid)", tier="linux")
@requires("feature:PKEY_SYSCALLS")
def test_pkey_alloc_access_rights_einval(run_in_child: RunInChild) -> None:
    assert run_in_child(_errno_of, libc.pkey_alloc, 0, NOT_AN_ACCESS_RIGHT).result() == errno.EINVAL


@semantic("pkeys.alloc.no_cpu_keys_einval_x86_64",
          "Divergence from the man page's ENOSPC: where x86_64 Linux has the pkey system calls but the CPU "
          "has no protection keys (no ospke), pkey_alloc fails with EINVAL: the key it finds free is refused "
          "when its access rights are set",
          source="pkey_alloc(2) ERRORS (ENOSPC: also returned if the processor does not support protection "
                 "keys); arch/x86 arch_set_user_pkey_access (EINVAL without OSPKE)", tier="impl")
@requires("feature:PKEY_SYSCALLS", "arch:x86_64")
def test_pkey_alloc_without_cpu_keys_einval(memsys_env: Environment, run_in_child: RunInChild) -> None:
    keys = memsys_env.promise("PKEYS")
    if keys.state == PROMISED or keys.works:
        pytest.skip(f"needs:a CPU without protection keys ({keys.describe()})")
    # In a child: on a CPU with keys the call would allocate one.
    assert run_in_child(_errno_of, libc.pkey_alloc, 0, 0).result() == errno.EINVAL


# --- keys (CPU support needed): run in children ---------------------------------------------

def _alloc_and_access(rights: int) -> tuple[int, int, Fault | None, Fault | None, Fault | None]:
    key = libc.pkey_alloc(0, rights)
    addr = libc.mmap(0, 2 * PAGE, RW, ANON)
    libc.pkey_mprotect(addr, PAGE, RW, key)
    # Reads before writes: the fault handler runs with the default PKRU, which the
    # probe's siglongjmp does not undo, so nothing after a fault tells about `rights`.
    read = probe.read(addr + PAGE - 1)
    write = probe.write(addr, 1)
    neighbour = probe.write(addr + PAGE, 1)
    return key, addr, read, write, neighbour


@semantic("pkeys.alloc.returns_key",
          "pkey_alloc returns a key between 1 and the architecture's highest (key 0 is the default every "
          "mapping starts with)",
          source="pkey_alloc(2) RETURN VALUE; pkeys(7)", tier="linux")
@requires("feature:PKEYS")
def test_pkey_alloc_returns_key(memsys_env: Environment, run_in_child: RunInChild) -> None:
    key = run_in_child(libc.pkey_alloc, 0, 0).result()
    assert 1 <= key <= HIGHEST_KEY[memsys_env.arch]


@semantic("pkeys.access.disable_access_pkuerr",
          "With a key allocated PKEY_DISABLE_ACCESS, a read or write of a page given that key raises SIGSEGV "
          "with si_code SEGV_PKUERR at the address; the next page, still key 0, is writable",
          source="pkeys(7) (PKEY_DISABLE_ACCESS; SEGV_PKUERR); sigaction(2) si_code", tier="linux")
@requires("feature:PKEYS")
def test_disable_access_faults_pkuerr(run_in_child: RunInChild) -> None:
    _key, addr, read, write, neighbour = run_in_child(_alloc_and_access, C.PKEY_DISABLE_ACCESS).result()
    assert (read, write, neighbour) == (_pkuerr(addr + PAGE - 1), _pkuerr(addr), None)


@semantic("pkeys.access.disable_write_reads",
          "With a key allocated PKEY_DISABLE_WRITE, a page given that key (and PROT_READ|PROT_WRITE) can be "
          "read, and a write raises SIGSEGV with SEGV_PKUERR at the address",
          source="pkeys(7) (PKEY_DISABLE_WRITE)", tier="linux")
@requires("feature:PKEYS")
def test_disable_write_allows_reads(run_in_child: RunInChild) -> None:
    _key, addr, read, write, neighbour = run_in_child(_alloc_and_access, C.PKEY_DISABLE_WRITE).result()
    assert (read, write, neighbour) == (None, _pkuerr(addr), None)


def _key_in_smaps() -> tuple[int, int | None, int | None]:
    key = libc.pkey_alloc(0, 0)
    addr = libc.mmap(0, PAGE, RW, ANON)
    before = _protection_key(addr)
    libc.pkey_mprotect(addr, PAGE, RW, key)
    return key, before, _protection_key(addr)


@semantic("pkeys.smaps.protection_key_reported",
          "After pkey_mprotect(key), /proc/self/smaps reports the VMA's ProtectionKey as that key "
          "(0 before)",
          source="proc(5) /proc/PID/smaps (ProtectionKey); pkey_mprotect(2)", tier="linux")
@requires("feature:PKEYS")
def test_smaps_reports_the_key(run_in_child: RunInChild) -> None:
    key, before, after = run_in_child(_key_in_smaps).result()
    assert (before, after) == (0, key)


def _mprotect_keeps_key() -> tuple[int, int | None, int | None]:
    key = libc.pkey_alloc(0, 0)
    addr = libc.mmap(0, PAGE, RW, ANON)
    libc.pkey_mprotect(addr, PAGE, RW, key)
    libc.mprotect(addr, PAGE, C.PROT_READ)
    after_mprotect = _protection_key(addr)
    libc.pkey_mprotect(addr, PAGE, RW, -1)
    return key, after_mprotect, _protection_key(addr)


@semantic("pkeys.mprotect.keeps_key",
          "mprotect, and pkey_mprotect with key -1, change the protection of a page but keep the key it was "
          "given (smaps ProtectionKey unchanged)",
          source="pkeys(7) (mprotect leaves the key); mm/mprotect.c arch_override_mprotect_pkey", tier="linux")
@requires("feature:PKEYS")
def test_mprotect_keeps_the_key(run_in_child: RunInChild) -> None:
    key, after_mprotect, after_minus_one = run_in_child(_mprotect_keeps_key).result()
    assert (after_mprotect, after_minus_one) == (key, key)


def _freed_key_refused() -> tuple[int, int]:
    key = libc.pkey_alloc(0, 0)
    libc.pkey_free(key)
    addr = libc.mmap(0, PAGE, RW, ANON)
    return _errno_of(libc.pkey_mprotect, addr, PAGE, RW, key), _errno_of(libc.pkey_free, key)


@semantic("pkeys.free.freed_key_einval",
          "After pkey_free, the key is no longer allocated: pkey_mprotect with it and a second pkey_free "
          "fail with EINVAL",
          source="pkey_alloc(2) (pkey_free); pkey_mprotect(2) ERRORS (EINVAL)", tier="linux")
@requires("feature:PKEYS")
def test_freed_key_is_refused(run_in_child: RunInChild) -> None:
    assert run_in_child(_freed_key_refused).result() == (errno.EINVAL, errno.EINVAL)


def _allocate_all() -> tuple[list[int], int]:
    keys: list[int] = []
    while len(keys) < 64:
        try:
            keys.append(libc.pkey_alloc(0, 0))
        except OSError as error:
            return keys, error.errno or -1
    return keys, 0


@semantic("pkeys.alloc.exhausted_enospc",
          "pkey_alloc hands out distinct keys, none of them 0, until the architecture's keys are used up; "
          "then it fails with ENOSPC",
          source="pkey_alloc(2) ERRORS (ENOSPC: all protection keys available have been allocated)", tier="linux")
@requires("feature:PKEYS")
def test_alloc_until_enospc(memsys_env: Environment, run_in_child: RunInChild) -> None:
    keys, error = run_in_child(_allocate_all).result()
    assert error == errno.ENOSPC
    assert len(set(keys)) == len(keys) and keys
    assert all(1 <= key <= HIGHEST_KEY[memsys_env.arch] for key in keys)
