"""Conformance: mseal(2) (Linux 6.10), memory sealing.

Sealed memory can never be unmapped by its process, so no test seals anything in the
pytest process: the test builds the mappings in its ``arena`` (PROT_NONE neighbours on
both sides, so the sealed VMA is exactly the range) and a forked child (run_in_child)
seals its copy of them and makes the calls; the child's address space goes away with
it. Each child returns what it saw (errno names, bytes read through the fault probe,
VmFlags) and the parent compares that with the documentation.

The blocked operations are those of Documentation/userspace-api/mseal.rst: munmap,
mremap, mmap(MAP_FIXED) over the range, mprotect/pkey_mprotect, and the destructive
madvise advice on anonymous memory the caller cannot write. Oracles: the probe (the
bytes survive), /proc/self/maps (the protection did not change) and smaps VmFlags
``sl`` (VM_SEALED).
"""

from __future__ import annotations

import ctypes
import errno
from collections.abc import Callable
from typing import Any

from pytest_memsyscalls import RunInChild, requires, semantic
from pytest_memsyscalls.kernel import constants as C
from pytest_memsyscalls.kernel import libc, probe, procfs
from pytest_memsyscalls.kernel.constants import ANON, RW
from pytest_memsyscalls.kernel.libc import PAGE_SIZE as PAGE
from pytest_memsyscalls.memory.mapping import Arena

from ._oracles import vmflags

OK = "OK"


# --- helpers (the functions ending in _child run in the forked child) ------------------

def _outcome(fn: Callable[..., Any], *args: Any) -> str:
    """'OK' when fn(*args) succeeds, else the errno's name: what a child reports back."""
    try:
        fn(*args)
    except OSError as error:
        return errno.errorcode.get(error.errno or 0, str(error.errno))
    return OK


def _bytes(addr: int, pages: int) -> list[int | str]:
    """The first byte of each page, or the fault's name."""
    found: list[int | str] = []
    for index in range(pages):
        fault, value = probe.read_value(addr + index * PAGE)
        found.append(fault.code_name if fault is not None else int(value or 0))
    return found


def _prot(addr: int) -> str:
    entry = procfs.vma_at(addr)
    return entry.perms if entry is not None else "unmapped"


def _sealed_range(arena: Arena, prot: int = RW, fill: int = 0x5A) -> tuple[int, int]:
    """Arena pages 1..3 mapped private anonymous with ``prot`` and filled (before the
    protection is applied), between PROT_NONE arena pages 0 and 4."""
    m = arena.map(1, 3)
    ctypes.memset(m.addr, fill, m.length)
    if prot != RW:
        libc.mprotect(m.addr, m.length, prot)
    return m.addr, m.length


# =====================================================================================
# What a seal blocks
# =====================================================================================

def _mprotect_sealed_child(addr: int, length: int) -> tuple[str, str]:
    libc.mseal(addr, length)
    return _outcome(libc.mprotect, addr, length, C.PROT_READ), _prot(addr)


@semantic("mseal.mprotect.eperm",
          "mprotect of a sealed range fails with EPERM and the protection stays what it was.",
          source="mseal(2); Documentation/userspace-api/mseal.rst (blocked operations)", tier="linux")
@requires("feature:MSEAL")
def test_mprotect_sealed(arena: Arena, run_in_child: RunInChild) -> None:
    addr, length = _sealed_range(arena)
    assert run_in_child(_mprotect_sealed_child, addr, length).result() == ("EPERM", "rw-p")


def _munmap_sealed_child(addr: int, length: int) -> tuple[str, list[int | str]]:
    libc.mseal(addr, length)
    return _outcome(libc.munmap, addr, length), _bytes(addr, length // PAGE)


@semantic("mseal.munmap.eperm",
          "munmap of a sealed range fails with EPERM: every page stays mapped with its contents.",
          source="mseal(2); Documentation/userspace-api/mseal.rst (blocked operations)", tier="linux")
@requires("feature:MSEAL")
def test_munmap_sealed(arena: Arena, run_in_child: RunInChild) -> None:
    addr, length = _sealed_range(arena)
    assert run_in_child(_munmap_sealed_child, addr, length).result() == ("EPERM", [0x5A] * 3)


def _mremap_sealed_child(addr: int, length: int) -> tuple[str, str, str, list[int | str]]:
    libc.mseal(addr, length)
    return (_outcome(libc.mremap, addr, length, PAGE, 0),
            _outcome(libc.mremap, addr, length, 2 * length, C.MREMAP_MAYMOVE),
            _outcome(libc.mremap, addr, PAGE, PAGE, C.MREMAP_MAYMOVE | C.MREMAP_FIXED, addr + 16 * PAGE),
            _bytes(addr, length // PAGE))


@semantic("mseal.mremap.eperm",
          "mremap of a sealed range fails with EPERM whether it shrinks, grows by moving or moves to a "
          "fixed address; the range stays in place with its contents.",
          source="mseal(2); Documentation/userspace-api/mseal.rst (blocked operations)", tier="linux")
@requires("feature:MSEAL")
def test_mremap_sealed(arena: Arena, run_in_child: RunInChild) -> None:
    addr, length = _sealed_range(arena)
    assert run_in_child(_mremap_sealed_child, addr, length).result() == ("EPERM", "EPERM", "EPERM", [0x5A] * 3)


def _mmap_fixed_sealed_child(addr: int, length: int) -> tuple[str, list[int | str]]:
    libc.mseal(addr, length)
    return _outcome(libc.mmap, addr + PAGE, PAGE, RW, ANON | C.MAP_FIXED), _bytes(addr, length // PAGE)


@semantic("mseal.mmap_fixed.eperm",
          "mmap(MAP_FIXED) over part of a sealed range fails with EPERM and replaces nothing.",
          source="mseal(2); Documentation/userspace-api/mseal.rst (blocked operations)", tier="linux")
@requires("feature:MSEAL")
def test_mmap_fixed_over_sealed(arena: Arena, run_in_child: RunInChild) -> None:
    addr, length = _sealed_range(arena)
    assert run_in_child(_mmap_fixed_sealed_child, addr, length).result() == ("EPERM", [0x5A] * 3)


def _dontneed_sealed_child(addr: int, length: int, advice: int) -> tuple[str, list[int | str]]:
    libc.mseal(addr, length)
    return _outcome(libc.madvise, addr, length, advice), _bytes(addr, length // PAGE)


@semantic("mseal.madvise.discard_readonly_anon_eperm",
          "MADV_DONTNEED on sealed private anonymous memory the caller cannot write (PROT_READ) fails "
          "with EPERM and the pages keep their contents.",
          source="Documentation/userspace-api/mseal.rst (destructive madvise for anonymous memory "
                 "without write permission)", tier="linux")
@requires("feature:MSEAL")
def test_dontneed_sealed_readonly(arena: Arena, run_in_child: RunInChild) -> None:
    addr, length = _sealed_range(arena, prot=C.PROT_READ)
    outcome = run_in_child(_dontneed_sealed_child, addr, length, C.MADV_DONTNEED).result()
    assert outcome == ("EPERM", [0x5A] * 3)


@semantic("mseal.madvise.discard_writable_anon_allowed",
          "MADV_DONTNEED on sealed private anonymous memory that is writable is not blocked: it succeeds "
          "and the pages read back zero (the caller could have zeroed them by writing).",
          source="Documentation/userspace-api/mseal.rst (only without write permission is it blocked)",
          tier="linux")
@requires("feature:MSEAL")
def test_dontneed_sealed_writable(arena: Arena, run_in_child: RunInChild) -> None:
    addr, length = _sealed_range(arena)
    assert run_in_child(_dontneed_sealed_child, addr, length, C.MADV_DONTNEED).result() == (OK, [0, 0, 0])


# =====================================================================================
# The sealed range: exactly the pages asked for
# =====================================================================================

def _edges_child(addr: int, length: int) -> tuple[str, str, str, str, str]:
    libc.mseal(addr, length)
    last = addr + length - PAGE
    return (_outcome(libc.mprotect, last, PAGE, C.PROT_READ),
            _outcome(libc.mprotect, addr - PAGE, PAGE, C.PROT_READ),
            _outcome(libc.mprotect, addr + length, PAGE, C.PROT_READ),
            _prot(addr - PAGE), _prot(addr + length))


@semantic("mseal.range.whole_range_and_nothing_else",
          "The seal covers every page of the range: mprotect of only its last page fails with EPERM, "
          "while the pages just outside it stay unsealed (mprotect on them succeeds).",
          source="mseal(2); Documentation/userspace-api/mseal.rst", tier="linux")
@requires("feature:MSEAL")
def test_seal_covers_exactly_the_range(arena: Arena, run_in_child: RunInChild) -> None:
    addr, length = _sealed_range(arena)
    result = run_in_child(_edges_child, addr, length).result()
    assert result == ("EPERM", OK, OK, "r--p", "r--p")


def _vmflags_child(addr: int, length: int) -> tuple[bool, bool, bool]:
    libc.mseal(addr, length)
    return "sl" in vmflags(addr), "sl" in vmflags(addr - PAGE), "sl" in vmflags(addr + length)


@semantic("mseal.smaps.vmflag_sl",
          "A sealed VMA shows 'sl' in /proc/self/smaps VmFlags; its unsealed neighbours do not.",
          source="proc(5) VmFlags 'sl'; Documentation/filesystems/proc.rst", tier="linux")
@requires("feature:MSEAL")
def test_sealed_vmflag(arena: Arena, run_in_child: RunInChild) -> None:
    addr, length = _sealed_range(arena)
    assert "sl" not in vmflags(addr), "precondition: nothing is sealed in the pytest process"
    assert run_in_child(_vmflags_child, addr, length).result() == (True, False, False)


# =====================================================================================
# Errors
# =====================================================================================

def _seal_then_mprotect_child(addr: int, length: int, seal_at: int, seal_length: int,
                              flags: int) -> tuple[str, str]:
    """mseal(seal_at, seal_length, flags), then whether the range is still unsealed."""
    sealed = _outcome(libc.mseal, seal_at, seal_length, flags)
    return sealed, _outcome(libc.mprotect, addr, PAGE, C.PROT_READ)


@semantic("mseal.errors.flags_einval",
          "mseal with flags other than 0 fails with EINVAL and seals nothing.",
          source="mseal(2) ERRORS; Documentation/userspace-api/mseal.rst (flags: reserved)", tier="linux")
@requires("feature:MSEAL")
def test_flags_einval(arena: Arena, run_in_child: RunInChild) -> None:
    addr, length = _sealed_range(arena)
    assert run_in_child(_seal_then_mprotect_child, addr, length, addr, length, 1).result() == ("EINVAL", OK)


@semantic("mseal.errors.unaligned_einval",
          "mseal with a start address that is not page-aligned fails with EINVAL and seals nothing.",
          source="mseal(2) ERRORS; Documentation/userspace-api/mseal.rst", tier="linux")
@requires("feature:MSEAL")
def test_unaligned_einval(arena: Arena, run_in_child: RunInChild) -> None:
    addr, length = _sealed_range(arena)
    assert run_in_child(_seal_then_mprotect_child, addr, length, addr + 1, PAGE, 0).result() == ("EINVAL", OK)


@semantic("mseal.errors.unmapped_enomem",
          "mseal of a range that is not mapped fails with ENOMEM.",
          source="mseal(2) ERRORS; Documentation/userspace-api/mseal.rst", tier="linux")
@requires("feature:MSEAL")
def test_unmapped_enomem(arena: Arena, run_in_child: RunInChild) -> None:
    arena.hole(8, 2)
    assert run_in_child(_outcome, libc.mseal, arena.page(8), 2 * PAGE, 0).result() == "ENOMEM"


@semantic("mseal.errors.hole_enomem_nothing_sealed",
          "mseal over mapped pages with a hole among them fails with ENOMEM before sealing anything: "
          "the mapped part stays unsealed (mprotect on it succeeds).",
          source="mseal(2) ERRORS; Documentation/userspace-api/mseal.rst (the range is checked first)",
          tier="linux")
@requires("feature:MSEAL")
def test_hole_enomem(arena: Arena, run_in_child: RunInChild) -> None:
    addr, length = _sealed_range(arena)
    arena.hole(4)
    outcome = run_in_child(_seal_then_mprotect_child, addr, length, addr, length + PAGE, 0).result()
    assert outcome == ("ENOMEM", OK)


@semantic("mseal.length.zero_noop",
          "mseal with length 0 succeeds and seals nothing.",
          source="Documentation/userspace-api/mseal.rst; mm/mseal.c do_mseal", tier="impl")
@requires("feature:MSEAL")
def test_zero_length(arena: Arena, run_in_child: RunInChild) -> None:
    addr, length = _sealed_range(arena)
    assert run_in_child(_seal_then_mprotect_child, addr, length, addr, 0, 0).result() == (OK, OK)
