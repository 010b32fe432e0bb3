"""Conformance: madvise(2), every advice value, with its user-visible effect.

Where an advice changes a VMA flag the oracle is /proc/self/smaps VmFlags
(``rr`` random, ``sr`` sequential, ``dd`` dontdump, ``hg``/``nh`` huge/no-huge,
``mg`` mergeable, ``lo`` locked); where it changes contents, the bytes read back
(through the fault probe, never by touching memory blindly); residency through
mincore(2); inheritance through a forked child. For advice values that not every kernel has,
what the environment promises decides whether an advice is asserted
(``requires("feature:MADV_X")``, environment/features.py): a promised advice that fails is
a failure naming the promise; one not promised skips as ``needs:``; only where the
promise is unknown (gVisor) does a probe decide, and a missing one is ``unsupported:``.
"""

from __future__ import annotations

import ctypes
import errno
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from pytest_memsyscalls import (
    Fault,
    LockedRegion,
    MappedFile,
    MappedPages,
    Mapping,
    PosixShmFactory,
    RunInChild,
    fails_with,
    requires,
    semantic,
    succeeds,
)
from pytest_memsyscalls.environment import fingerprint as environment
from pytest_memsyscalls.environment.features import PROMISED, UNKNOWN
from pytest_memsyscalls.environment.fingerprint import Environment
from pytest_memsyscalls.environment.needs import lockable_shortfall
from pytest_memsyscalls.kernel import constants as C
from pytest_memsyscalls.kernel import libc, pages, probe, procfs
from pytest_memsyscalls.kernel.constants import ANON, RW
from pytest_memsyscalls.kernel.libc import PAGE_SIZE as PAGE
from pytest_memsyscalls.memory.mapping import Arena

from ._oracles import drop_capability, effective_caps, mincore_sees_residency, resident, vmflags

SHARED_ANON = C.MAP_SHARED | C.MAP_ANONYMOUS
CAP_SYS_ADMIN = 21


# --- helpers -----------------------------------------------------------------------

def fill(m: Mapping, value: int, offset: int = 0, length: int | None = None) -> None:
    ctypes.memset(m.addr + offset, value, m.length - offset if length is None else length)


def byte_at(addr: int) -> int | Fault:
    fault, value = probe.read_value(addr)
    return fault if fault is not None else int(value or 0)


def need_lockable(memsys_env: Any, length: int) -> None:
    reason = lockable_shortfall(memsys_env, length)
    if reason:
        pytest.skip(reason)


# =====================================================================================
# Access-pattern advice: NORMAL, RANDOM, SEQUENTIAL
# =====================================================================================

@semantic("madvise.random.vmflag", "MADV_RANDOM marks the VMA for random access ('rr' in VmFlags).",
          source="madvise(2) MADV_RANDOM; proc(5) VmFlags", tier="linux")
def test_random_sets_rr(mapped_pages: MappedPages) -> None:
    m = mapped_pages(2)
    succeeds(libc.madvise, m.addr, m.length, C.MADV_RANDOM)
    assert "rr" in vmflags(m.addr)


@semantic("madvise.sequential.vmflag", "MADV_SEQUENTIAL marks the VMA for sequential access ('sr').",
          source="madvise(2) MADV_SEQUENTIAL; proc(5) VmFlags", tier="linux")
def test_sequential_sets_sr(mapped_pages: MappedPages) -> None:
    m = mapped_pages(2)
    succeeds(libc.madvise, m.addr, m.length, C.MADV_SEQUENTIAL)
    assert "sr" in vmflags(m.addr)


@semantic("madvise.access_pattern.exclusive",
          "RANDOM and SEQUENTIAL exclude each other: the later advice replaces the earlier one.",
          source="madvise(2); mm/madvise.c madvise_update_vma", tier="impl")
def test_random_replaces_sequential(mapped_pages: MappedPages) -> None:
    m = mapped_pages(2)
    libc.madvise(m.addr, m.length, C.MADV_SEQUENTIAL)
    libc.madvise(m.addr, m.length, C.MADV_RANDOM)
    flags = vmflags(m.addr)
    assert "rr" in flags and "sr" not in flags


@pytest.mark.parametrize("advice", [C.MADV_RANDOM, C.MADV_SEQUENTIAL], ids=["after-random", "after-sequential"])
@semantic("madvise.normal.clears_access_pattern",
          "MADV_NORMAL restores the default: neither 'rr' nor 'sr' remains.",
          source="madvise(2) MADV_NORMAL", tier="linux")
def test_normal_clears_pattern(mapped_pages: MappedPages, advice: int) -> None:
    m = mapped_pages(2)
    libc.madvise(m.addr, m.length, advice)
    assert {"rr", "sr"} & vmflags(m.addr), "precondition: the first advice set a flag"
    succeeds(libc.madvise, m.addr, m.length, C.MADV_NORMAL)
    assert not {"rr", "sr"} & vmflags(m.addr)


# =====================================================================================
# WILLNEED
# =====================================================================================

@semantic("madvise.willneed.file_mapping",
          "MADV_WILLNEED on a file mapping succeeds and does not change what the mapping reads "
          "(it only schedules read-ahead; residency right after the call is not promised).",
          source="madvise(2) MADV_WILLNEED; conventional advice does not influence semantics", tier="linux")
def test_willneed_file(mapped_file: MappedFile) -> None:
    content = bytes(range(256)) * (4 * PAGE // 256)
    m = mapped_file(content, shared=True, prot=C.PROT_READ)
    succeeds(libc.madvise, m.addr, m.length, C.MADV_WILLNEED)
    assert [byte_at(m.addr + i * PAGE + 7) for i in range(4)] == [7] * 4


@semantic("madvise.willneed.anonymous",
          "MADV_WILLNEED on anonymous memory succeeds when the kernel has swap support "
          "(CONFIG_SWAP, /proc/swaps exists) and fails with EBADF ('not a file') otherwise.",
          source="madvise(2) ERRORS (EBADF); mm/madvise.c madvise_willneed", tier="linux")
def test_willneed_anonymous(mapped_pages: MappedPages) -> None:
    m = mapped_pages(2)
    if os.path.exists("/proc/swaps"):
        succeeds(libc.madvise, m.addr, m.length, C.MADV_WILLNEED)
    else:
        fails_with(errno.EBADF, libc.madvise, m.addr, m.length, C.MADV_WILLNEED)


# =====================================================================================
# DONTNEED, DONTNEED_LOCKED
# =====================================================================================

@semantic("madvise.dontneed.private_anon_zero_fill",
          "After MADV_DONTNEED, private anonymous pages are freed and read back zero-filled.",
          source="madvise(2) MADV_DONTNEED", tier="linux")
def test_dontneed_private_anonymous(mapped_pages: MappedPages) -> None:
    m = mapped_pages(2)
    fill(m, 0xAB)
    succeeds(libc.madvise, m.addr, m.length, C.MADV_DONTNEED)
    if mincore_sees_residency():
        assert resident(m.addr, m.length) == [False, False]
    assert byte_at(m.addr) == 0 and byte_at(m.page(1) + 5) == 0


@semantic("madvise.dontneed.private_file_rereads_file",
          "After MADV_DONTNEED a MAP_PRIVATE file mapping re-reads the file: private writes are lost.",
          source="madvise(2) MADV_DONTNEED", tier="linux")
def test_dontneed_private_file(mapped_file: MappedFile) -> None:
    m = mapped_file(b"F" * PAGE, shared=False)
    assert m.write(0, ord("p")) is None
    assert byte_at(m.addr) == ord("p")
    succeeds(libc.madvise, m.addr, m.length, C.MADV_DONTNEED)
    assert byte_at(m.addr) == ord("F")
    assert Path(m.path).read_bytes()[:1] == b"F"


@pytest.mark.parametrize("kind", ["shared-file", "shared-anon", "posix-shm"])
@semantic("madvise.dontneed.shared_keeps_data",
          "MADV_DONTNEED on a shared mapping keeps the data: later reads see the up-to-date contents.",
          source="madvise(2) MADV_DONTNEED", tier="linux")
def test_dontneed_shared(kind: str, mapped_file: MappedFile,
                         mapped_pages: MappedPages, posix_shm: PosixShmFactory) -> None:
    m: Mapping
    if kind == "shared-file":
        m = mapped_file(bytes(PAGE), shared=True)
    elif kind == "shared-anon":
        m = mapped_pages(1, flags=SHARED_ANON)
    else:
        shm = posix_shm(PAGE)
        m = mapped_pages(1, flags=C.MAP_SHARED, fd=shm.fd)
    assert m.write(10, 0x77) is None
    succeeds(libc.madvise, m.addr, m.length, C.MADV_DONTNEED)
    assert byte_at(m.addr + 10) == 0x77


@semantic("madvise.dontneed.locked_einval", "MADV_DONTNEED on locked pages fails with EINVAL.",
          source="madvise(2) ERRORS", tier="linux")
def test_dontneed_locked(locked_region: LockedRegion) -> None:
    m = locked_region(1)
    fill(m, 0x42)
    fails_with(errno.EINVAL, libc.madvise, m.addr, m.length, C.MADV_DONTNEED)
    assert byte_at(m.addr) == 0x42


@semantic("madvise.dontneed_locked.locked_zero_fill",
          "MADV_DONTNEED_LOCKED applies to locked pages: they read back zero and the range stays locked.",
          source="madvise(2) (Linux 5.18+) MADV_DONTNEED_LOCKED", tier="linux")
@requires("feature:MADV_DONTNEED_LOCKED")
def test_dontneed_locked_advice(locked_region: LockedRegion) -> None:
    m = locked_region(1)
    fill(m, 0x42)
    succeeds(libc.madvise, m.addr, m.length, C.MADV_DONTNEED_LOCKED)
    assert byte_at(m.addr) == 0
    assert "lo" in vmflags(m.addr)


# =====================================================================================
# FREE
# =====================================================================================

@semantic("madvise.free.private_anon_lazy",
          "MADV_FREE on private anonymous memory succeeds; each page then reads either its old data "
          "(not yet freed: freeing may be lazy) or zeros, and a write after it sticks.",
          source="madvise(2) MADV_FREE", tier="linux")
@requires("feature:MADV_FREE")
def test_free_private_anonymous(mapped_pages: MappedPages) -> None:
    m = mapped_pages(2)
    fill(m, 0x5C)
    succeeds(libc.madvise, m.addr, m.length, C.MADV_FREE)
    for page in range(2):
        assert byte_at(m.page(page) + 3) in (0x5C, 0)
    assert m.write(PAGE, 0x11) is None
    assert byte_at(m.page(1)) == 0x11


@pytest.mark.parametrize("kind", ["shared-anon", "private-file"])
@semantic("madvise.free.non_private_anon_einval",
          "MADV_FREE on a shared or file-backed mapping fails with EINVAL.",
          source="madvise(2) ERRORS", tier="linux")
@requires("feature:MADV_FREE")
def test_free_shared_einval(kind: str, mapped_pages: MappedPages,
                            mapped_file: MappedFile) -> None:
    m = mapped_pages(1, flags=SHARED_ANON) if kind == "shared-anon" else mapped_file(b"x" * PAGE, shared=False)
    fails_with(errno.EINVAL, libc.madvise, m.addr, m.length, C.MADV_FREE)


# =====================================================================================
# REMOVE
# =====================================================================================

@semantic("madvise.remove.shared_punches_hole",
          "MADV_REMOVE on a shared writable tmpfs mapping makes the range read zeros and frees the "
          "file's blocks (a hole is punched), leaving the rest of the file intact.",
          source="madvise(2) MADV_REMOVE", tier="linux")
@requires("feature:MADV_REMOVE")
def test_remove_shared(posix_shm: PosixShmFactory, mapped_pages: MappedPages) -> None:
    shm = posix_shm(2 * PAGE)
    m = mapped_pages(2, flags=C.MAP_SHARED, fd=shm.fd)
    fill(m, 0x99)
    blocks_before = os.fstat(shm.fd).st_blocks
    succeeds(libc.madvise, m.addr, PAGE, C.MADV_REMOVE)
    # before touching the mapping again: a read fault on tmpfs would allocate a new page
    assert os.fstat(shm.fd).st_blocks < blocks_before
    assert os.pread(shm.fd, 1, 0) == b"\0"
    assert byte_at(m.addr) == 0
    assert byte_at(m.page(1)) == 0x99


@semantic("madvise.remove.private_anon_einval",
          "MADV_REMOVE on private anonymous memory (no backing file) fails with EINVAL.",
          source="mm/madvise.c madvise_remove; madvise(2) MADV_REMOVE", tier="linux")
@requires("feature:MADV_REMOVE")
def test_remove_private_anonymous(mapped_pages: MappedPages) -> None:
    m = mapped_pages(1)
    fails_with(errno.EINVAL, libc.madvise, m.addr, m.length, C.MADV_REMOVE)


@semantic("madvise.remove.private_file_eacces",
          "MADV_REMOVE on a file mapping that is not shared and writable fails with EACCES.",
          source="madvise(2) ERRORS (EACCES)", tier="linux")
@requires("feature:MADV_REMOVE")
def test_remove_private_file(mapped_file: MappedFile) -> None:
    m = mapped_file(b"x" * PAGE, shared=False)
    fails_with(errno.EACCES, libc.madvise, m.addr, m.length, C.MADV_REMOVE)


@semantic("madvise.remove.locked_einval", "MADV_REMOVE on locked pages fails with EINVAL.",
          source="madvise(2) ERRORS", tier="linux")
@requires("feature:MADV_REMOVE")
def test_remove_locked(posix_shm: PosixShmFactory, mapped_pages: MappedPages,
                       memsys_env: Any) -> None:
    shm = posix_shm(PAGE)
    m = mapped_pages(1, flags=C.MAP_SHARED, fd=shm.fd)
    need_lockable(memsys_env, PAGE)
    libc.mlock(m.addr, m.length)
    try:
        fill(m, 0x31)
        fails_with(errno.EINVAL, libc.madvise, m.addr, m.length, C.MADV_REMOVE)
        assert byte_at(m.addr) == 0x31
    finally:
        libc.munlock(m.addr, m.length)


# =====================================================================================
# Fork-related: DONTFORK/DOFORK, WIPEONFORK/KEEPONFORK
# =====================================================================================

def _child_reads(addr: int) -> int | Fault:
    return byte_at(addr)


@semantic("madvise.dontfork.child_unmapped",
          "A MADV_DONTFORK range is absent in a fork child: reading it faults with SEGV_MAPERR there.",
          source="madvise(2) MADV_DONTFORK", tier="linux")
def test_dontfork(mapped_pages: MappedPages, run_in_child: RunInChild) -> None:
    m = mapped_pages(1)
    fill(m, 0x21)
    succeeds(libc.madvise, m.addr, m.length, C.MADV_DONTFORK)
    assert run_in_child(_child_reads, m.addr).result() == Fault(signal.SIGSEGV, C.SEGV_MAPERR, m.addr)
    assert byte_at(m.addr) == 0x21, "the parent keeps the range"


@semantic("madvise.dofork.restores_inheritance",
          "MADV_DOFORK undoes MADV_DONTFORK: a later fork child sees the range and its data.",
          source="madvise(2) MADV_DOFORK", tier="linux")
def test_dofork(mapped_pages: MappedPages, run_in_child: RunInChild) -> None:
    m = mapped_pages(1)
    fill(m, 0x22)
    libc.madvise(m.addr, m.length, C.MADV_DONTFORK)
    succeeds(libc.madvise, m.addr, m.length, C.MADV_DOFORK)
    assert run_in_child(_child_reads, m.addr).result() == 0x22


@semantic("madvise.wipeonfork.child_sees_zeros",
          "A MADV_WIPEONFORK range reads zeros in a fork child while the parent keeps its data.",
          source="madvise(2) MADV_WIPEONFORK", tier="linux")
@requires("feature:MADV_WIPEONFORK")
def test_wipeonfork(mapped_pages: MappedPages, run_in_child: RunInChild) -> None:
    m = mapped_pages(1)
    fill(m, 0x23)
    succeeds(libc.madvise, m.addr, m.length, C.MADV_WIPEONFORK)
    assert run_in_child(_child_reads, m.addr).result() == 0
    assert byte_at(m.addr) == 0x23


@semantic("madvise.keeponfork.restores_inheritance",
          "MADV_KEEPONFORK undoes MADV_WIPEONFORK: a later fork child sees the data.",
          source="madvise(2) MADV_KEEPONFORK", tier="linux")
@requires("feature:MADV_WIPEONFORK", "feature:MADV_KEEPONFORK")
def test_keeponfork(mapped_pages: MappedPages, run_in_child: RunInChild) -> None:
    m = mapped_pages(1)
    fill(m, 0x24)
    libc.madvise(m.addr, m.length, C.MADV_WIPEONFORK)
    succeeds(libc.madvise, m.addr, m.length, C.MADV_KEEPONFORK)
    assert run_in_child(_child_reads, m.addr).result() == 0x24


@pytest.mark.parametrize("kind", ["shared-anon", "private-file"])
@semantic("madvise.wipeonfork.non_private_anon_einval",
          "MADV_WIPEONFORK on a shared or file-backed mapping fails with EINVAL.",
          source="madvise(2) ERRORS", tier="linux")
@requires("feature:MADV_WIPEONFORK")
def test_wipeonfork_shared(kind: str, mapped_pages: MappedPages,
                           mapped_file: MappedFile) -> None:
    m = mapped_pages(1, flags=SHARED_ANON) if kind == "shared-anon" else mapped_file(b"x" * PAGE, shared=False)
    fails_with(errno.EINVAL, libc.madvise, m.addr, m.length, C.MADV_WIPEONFORK)


# =====================================================================================
# DONTDUMP / DODUMP
# =====================================================================================

@semantic("madvise.dontdump.vmflag", "MADV_DONTDUMP excludes the range from core dumps ('dd' in VmFlags).",
          source="madvise(2) MADV_DONTDUMP; proc(5) VmFlags", tier="linux")
def test_dontdump(mapped_pages: MappedPages) -> None:
    m = mapped_pages(1)
    assert "dd" not in vmflags(m.addr)
    succeeds(libc.madvise, m.addr, m.length, C.MADV_DONTDUMP)
    assert "dd" in vmflags(m.addr)


@semantic("madvise.dodump.clears_dd", "MADV_DODUMP undoes MADV_DONTDUMP: 'dd' disappears.",
          source="madvise(2) MADV_DODUMP", tier="linux")
def test_dodump(mapped_pages: MappedPages) -> None:
    m = mapped_pages(1)
    libc.madvise(m.addr, m.length, C.MADV_DONTDUMP)
    succeeds(libc.madvise, m.addr, m.length, C.MADV_DODUMP)
    assert "dd" not in vmflags(m.addr)


# =====================================================================================
# HUGEPAGE / NOHUGEPAGE / COLLAPSE (CONFIG_TRANSPARENT_HUGEPAGE)
# =====================================================================================

def _configured(env: Environment, feature: str) -> bool:
    """Whether this environment has ``feature`` (promised, or probed working where the
    promise is unknown); skips as unsupported where a probe found it missing."""
    promise = env.promise(feature)
    if promise.state == UNKNOWN and not promise.works:
        pytest.skip(f"unsupported:{feature} ({promise.why})")
    return promise.state == PROMISED or bool(promise.works)


@pytest.mark.parametrize("advice,flag", [(C.MADV_HUGEPAGE, "hg"), (C.MADV_NOHUGEPAGE, "nh")],
                         ids=["hugepage", "nohugepage"])
@semantic("madvise.hugepage.vmflag",
          "With THP configured (CONFIG_TRANSPARENT_HUGEPAGE) MADV_HUGEPAGE sets 'hg' and "
          "MADV_NOHUGEPAGE sets 'nh'; without CONFIG_TRANSPARENT_HUGEPAGE both fail with EINVAL.",
          source="madvise(2) MADV_HUGEPAGE/MADV_NOHUGEPAGE", tier="linux")
def test_hugepage_flags(mapped_pages: MappedPages, advice: int, flag: str, memsys_env: Environment) -> None:
    m = mapped_pages(2)
    if not _configured(memsys_env, "THP"):
        fails_with(errno.EINVAL, libc.madvise, m.addr, m.length, advice)
        return
    succeeds(libc.madvise, m.addr, m.length, advice)
    assert flag in vmflags(m.addr)


@semantic("madvise.hugepage.exclusive", "MADV_NOHUGEPAGE replaces an earlier MADV_HUGEPAGE ('nh', no 'hg').",
          source="madvise(2) MADV_NOHUGEPAGE", tier="linux")
@requires("feature:THP")
def test_nohugepage_replaces_hugepage(mapped_pages: MappedPages) -> None:
    m = mapped_pages(2)
    libc.madvise(m.addr, m.length, C.MADV_HUGEPAGE)
    libc.madvise(m.addr, m.length, C.MADV_NOHUGEPAGE)
    flags = vmflags(m.addr)
    assert "nh" in flags and "hg" not in flags


HPAGE = pages.thp_pmd_size()  # 2 MiB on x86_64 with 4 KiB pages; computed for others (kernel/pages.py)


@requires("arch:x86_64")
@semantic("madvise.collapse.private_anon",
          "MADV_COLLAPSE synchronously collapses a populated, PMD-aligned private anonymous range into "
          "a transparent huge page (AnonHugePages counts it) and keeps its data.",
          source="madvise(2) MADV_COLLAPSE (Linux 6.1+)", tier="linux")
@requires("feature:MADV_COLLAPSE")
def test_collapse(mapped_pages: MappedPages) -> None:
    m = mapped_pages(2 * HPAGE // PAGE)
    start = (m.addr + HPAGE - 1) // HPAGE * HPAGE
    libc.madvise(m.addr, m.length, C.MADV_NOHUGEPAGE)  # fault in small pages only
    libc.madvise(m.addr, m.length, C.MADV_NORMAL)
    libc.madvise(start, HPAGE, C.MADV_HUGEPAGE)  # undo NOHUGEPAGE, which COLLAPSE respects
    ctypes.memset(start, 0x3D, HPAGE)
    succeeds(libc.madvise, start, HPAGE, C.MADV_COLLAPSE)
    entry = procfs.smaps_at(start)
    assert entry is not None and (entry.get("AnonHugePages") or 0) >= HPAGE // 1024
    assert byte_at(start + HPAGE - 1) == 0x3D


# =====================================================================================
# MERGEABLE / UNMERGEABLE (CONFIG_KSM)
# =====================================================================================

@semantic("madvise.mergeable.vmflag",
          "With CONFIG_KSM MADV_MERGEABLE sets 'mg'; without it, EINVAL.",
          source="madvise(2) MADV_MERGEABLE; ERRORS", tier="linux")
def test_mergeable(mapped_pages: MappedPages, memsys_env: Environment) -> None:
    m = mapped_pages(2)
    if not _configured(memsys_env, "MADV_MERGEABLE"):
        fails_with(errno.EINVAL, libc.madvise, m.addr, m.length, C.MADV_MERGEABLE)
        return
    succeeds(libc.madvise, m.addr, m.length, C.MADV_MERGEABLE)
    assert "mg" in vmflags(m.addr)


@semantic("madvise.unmergeable.clears_mg", "MADV_UNMERGEABLE undoes MADV_MERGEABLE: 'mg' disappears.",
          source="madvise(2) MADV_UNMERGEABLE", tier="linux")
@requires("feature:MADV_MERGEABLE", "feature:MADV_UNMERGEABLE")
def test_unmergeable(mapped_pages: MappedPages) -> None:
    m = mapped_pages(2)
    libc.madvise(m.addr, m.length, C.MADV_MERGEABLE)
    assert "mg" in vmflags(m.addr), "precondition: MADV_MERGEABLE set 'mg'"
    succeeds(libc.madvise, m.addr, m.length, C.MADV_UNMERGEABLE)
    assert "mg" not in vmflags(m.addr)


# =====================================================================================
# COLD / PAGEOUT
# =====================================================================================

@pytest.mark.parametrize("advice,name", [
    pytest.param(C.MADV_COLD, "MADV_COLD", id="cold", marks=requires("feature:MADV_COLD")),
    pytest.param(C.MADV_PAGEOUT, "MADV_PAGEOUT", id="pageout", marks=requires("feature:MADV_PAGEOUT")),
])
@semantic("madvise.cold_pageout.nondestructive",
          "MADV_COLD and MADV_PAGEOUT only influence reclaim: the data reads back unchanged "
          "(an anonymous page is swapped out, not discarded; without swap it simply stays).",
          source="madvise(2) MADV_COLD, MADV_PAGEOUT (Linux 5.4+)", tier="linux")
def test_cold_pageout_keep_data(mapped_pages: MappedPages, advice: int, name: str) -> None:
    m = mapped_pages(2)
    fill(m, 0x6E)
    succeeds(libc.madvise, m.addr, m.length, advice)
    assert byte_at(m.addr) == 0x6E and byte_at(m.page(1) + 9) == 0x6E


@pytest.mark.parametrize("advice,name", [
    pytest.param(C.MADV_COLD, "MADV_COLD", id="cold", marks=requires("feature:MADV_COLD")),
    pytest.param(C.MADV_PAGEOUT, "MADV_PAGEOUT", id="pageout", marks=requires("feature:MADV_PAGEOUT")),
])
@semantic("madvise.cold_pageout.locked_einval",
          "MADV_COLD and MADV_PAGEOUT on locked pages fail with EINVAL.",
          source="madvise(2) ERRORS", tier="linux")
def test_cold_pageout_locked(locked_region: LockedRegion, advice: int, name: str) -> None:
    m = locked_region(1)
    fails_with(errno.EINVAL, libc.madvise, m.addr, m.length, advice)


# =====================================================================================
# POPULATE_READ / POPULATE_WRITE
# =====================================================================================

@semantic("madvise.populate_read.resident",
          "MADV_POPULATE_READ prefaults the range readable: every page is resident afterwards.",
          source="madvise(2) MADV_POPULATE_READ (Linux 5.14+)", tier="linux")
@requires("feature:MADV_POPULATE_READ")
def test_populate_read(mapped_pages: MappedPages) -> None:
    if not mincore_sees_residency():
        pytest.skip("unsupported:mincore residency (a probe saw an untouched anonymous page reported resident)")
    m = mapped_pages(4)
    assert resident(m.addr, m.length) == [False] * 4
    succeeds(libc.madvise, m.addr, m.length, C.MADV_POPULATE_READ)
    assert resident(m.addr, m.length) == [True] * 4


@semantic("madvise.populate_write.private_pages",
          "MADV_POPULATE_WRITE prefaults writable, as if each page were written: every page is resident "
          "and backed by its own anonymous page (smaps Anonymous covers the range).",
          source="madvise(2) MADV_POPULATE_WRITE (Linux 5.14+)", tier="linux")
@requires("feature:MADV_POPULATE_WRITE")
def test_populate_write(arena: Any) -> None:
    m = arena.map(1, 4)  # PROT_NONE neighbours: the VMA is exactly this mapping
    succeeds(libc.madvise, m.addr, m.length, C.MADV_POPULATE_WRITE)
    assert resident(m.addr, m.length) == [True] * 4
    entry = procfs.smaps_at(m.addr)
    assert entry is not None and entry.maps.length == m.length
    assert entry.get("Anonymous") == m.length // 1024


@pytest.mark.parametrize("advice,prot,name", [
    pytest.param(C.MADV_POPULATE_WRITE, C.PROT_READ, "MADV_POPULATE_WRITE", id="write-on-readonly",
                 marks=requires("feature:MADV_POPULATE_WRITE")),
    pytest.param(C.MADV_POPULATE_READ, C.PROT_NONE, "MADV_POPULATE_READ", id="read-on-none",
                 marks=requires("feature:MADV_POPULATE_READ")),
    pytest.param(C.MADV_POPULATE_WRITE, C.PROT_NONE, "MADV_POPULATE_WRITE", id="write-on-none",
                 marks=requires("feature:MADV_POPULATE_WRITE")),
])
@semantic("madvise.populate.insufficient_permissions_einval",
          "MADV_POPULATE_READ/WRITE on a range without read/write permission fails with EINVAL.",
          source="madvise(2) ERRORS", tier="linux")
def test_populate_permissions(mapped_pages: MappedPages, advice: int, prot: int, name: str) -> None:
    m = mapped_pages(1, prot=prot)
    fails_with(errno.EINVAL, libc.madvise, m.addr, m.length, advice)


@semantic("madvise.populate.sigbus_efault",
          "MADV_POPULATE_READ over file pages past EOF (where an access would raise SIGBUS) fails "
          "with EFAULT instead of signalling.",
          source="madvise(2) ERRORS (EFAULT)", tier="linux")
@requires("feature:MADV_POPULATE_READ")
def test_populate_past_eof(mapped_file: MappedFile) -> None:
    m = mapped_file(b"y" * PAGE, shared=True, pages=2)
    fails_with(errno.EFAULT, libc.madvise, m.page(1), PAGE, C.MADV_POPULATE_READ)


# =====================================================================================
# HWPOISON / SOFT_OFFLINE
# =====================================================================================

@pytest.mark.parametrize("name", ["MADV_HWPOISON", "MADV_SOFT_OFFLINE"])
@semantic("madvise.inject_error.effect",
          "MADV_HWPOISON poisons pages (SIGBUS on access); MADV_SOFT_OFFLINE migrates and retires them.",
          source="madvise(2) MADV_HWPOISON, MADV_SOFT_OFFLINE", tier="linux")
def test_inject_error_effect(name: str) -> None:
    pytest.skip(f"destructive:{name} retires physical pages of the host; never run by this suite")


def _inject_error_child(advice: int) -> int | str:
    """In a child: drop CAP_SYS_ADMIN, verify it is gone, then ask. Without the cap
    the kernel refuses before touching any page, so the call is only an error."""
    drop_capability(CAP_SYS_ADMIN)
    if "CAP_SYS_ADMIN" in effective_caps() and environment.detect().capabilities.has("CAP_SYS_ADMIN"):
        return "CAP_SYS_ADMIN still effective: refused to call"
    addr = libc.mmap(0, PAGE, RW, ANON)
    ctypes.memset(addr, 1, PAGE)
    try:
        libc.madvise(addr, PAGE, advice)
    except OSError as error:
        return error.errno or -1
    return 0


@pytest.mark.parametrize("advice", [
    pytest.param(C.MADV_HWPOISON, id="hwpoison", marks=requires("feature:MADV_HWPOISON")),
    pytest.param(C.MADV_SOFT_OFFLINE, id="soft-offline", marks=requires("feature:MADV_SOFT_OFFLINE")),
])
@semantic("madvise.inject_error.eperm_without_cap_sys_admin",
          "MADV_HWPOISON/MADV_SOFT_OFFLINE without CAP_SYS_ADMIN fail with EPERM (kernels with "
          "CONFIG_MEMORY_FAILURE); checked in a child that dropped the capability.",
          source="madvise(2) ERRORS (EPERM)", tier="linux")
def test_inject_error_eperm(run_in_child: RunInChild, advice: int) -> None:
    assert run_in_child(_inject_error_child, advice).result() == errno.EPERM


# =====================================================================================
# Errors and edge cases
# =====================================================================================

@semantic("madvise.errors.unknown_advice", "An advice value the kernel does not know fails with EINVAL.",
          source="madvise(2) ERRORS", tier="linux")
def test_unknown_advice(mapped_pages: MappedPages) -> None:
    m = mapped_pages(1)
    fails_with(errno.EINVAL, libc.madvise, m.addr, m.length, 999)


@semantic("madvise.errors.unaligned", "An addr that is not page-aligned fails with EINVAL.",
          source="madvise(2) ERRORS; Linux notes", tier="linux")
def test_unaligned(mapped_pages: MappedPages) -> None:
    m = mapped_pages(2)
    fails_with(errno.EINVAL, libc.madvise, m.addr + 1, PAGE, C.MADV_NORMAL)


@pytest.mark.parametrize("length", [(1 << 64) - PAGE, (1 << 64) - 1], ids=["minus-page", "minus-one"])
@semantic("madvise.errors.negative_length",
          "A 'negative' length (a size_t that wraps the address space or rounds up to 0) fails with EINVAL.",
          source="madvise(2) ERRORS", tier="linux")
def test_negative_length(mapped_pages: MappedPages, length: int) -> None:
    m = mapped_pages(1)
    fails_with(errno.EINVAL, libc.madvise, m.addr, length, C.MADV_NORMAL)


@semantic("madvise.errors.unmapped", "Advice on a range that is not mapped fails with ENOMEM.",
          source="madvise(2) ERRORS", tier="linux")
def test_unmapped(arena: Any) -> None:
    arena.hole(0, 2)
    fails_with(errno.ENOMEM, libc.madvise, arena.page(0), 2 * PAGE, C.MADV_DONTNEED)


@semantic("madvise.errors.hole_applies_rest",
          "Over a range with a hole, Linux applies the advice to the mapped parts and still returns ENOMEM.",
          source="madvise(2) NOTES (Linux notes)", tier="linux")
def test_hole_applies_rest(arena: Any) -> None:
    first = arena.map(0, 1)
    last = arena.map(2, 1)
    arena.hole(1)
    fill(first, 0x44)
    fill(last, 0x55)
    fails_with(errno.ENOMEM, libc.madvise, first.addr, 3 * PAGE, C.MADV_DONTNEED)
    assert byte_at(first.addr) == 0
    assert byte_at(last.addr) == 0


@semantic("madvise.length.zero_noop",
          "Linux allows length 0: madvise(addr, 0, advice) succeeds without looking at the range.",
          source="madvise(2) NOTES (Linux notes)", tier="linux")
def test_zero_length(arena: Any) -> None:
    arena.hole(0)
    succeeds(libc.madvise, arena.page(0), 0, C.MADV_DONTNEED)


@semantic("madvise.errors.eagain",
          "EAGAIN: a kernel resource was temporarily unavailable.",
          source="madvise(2) ERRORS (EAGAIN)", tier="linux")
def test_eagain() -> None:
    pytest.skip("unprovokable:EAGAIN (no documented way to make a kernel resource temporarily unavailable)")


# =====================================================================================
# GUARD_INSTALL / GUARD_REMOVE (Linux 6.13): lightweight guard regions
# =====================================================================================
#
# Guard regions are page-table markers, not VMAs: an access faults with SIGSEGV
# SEGV_MAPERR at the address, and /proc/self/maps does not change. Each test guards arena
# pages 2..4 of a private anonymous mapping of pages 1..5, so the guarded range has a
# first, an inner and a last page and a mapped, filled neighbour on each side.

def _guarded(arena: Arena, fill_value: int = 0x6B) -> tuple[Mapping, int, int]:
    """(the mapping of arena pages 1..5, filled; the guarded range's start; its length)."""
    m = arena.map(1, 5)
    fill(m, fill_value)
    start, length = m.page(1), 3 * PAGE
    succeeds(libc.madvise, start, length, C.MADV_GUARD_INSTALL)
    return m, start, length


def _edges(start: int, length: int) -> list[int]:
    """The first, an inner and the last page of a range."""
    return [start, start + (length // PAGE // 2) * PAGE, start + length - PAGE]


@semantic("madvise.guard_install.access_faults_maperr",
          "After MADV_GUARD_INSTALL every page of the range faults on read and on write with SIGSEGV "
          "SEGV_MAPERR at the address accessed, while the pages just outside keep their data.",
          source="madvise(2) MADV_GUARD_INSTALL (Linux 6.13); Documentation/mm/process_addrs.rst", tier="linux")
@requires("feature:MADV_GUARD_INSTALL")
def test_guard_install_faults(arena: Arena) -> None:
    m, start, length = _guarded(arena)
    for addr in _edges(start, length):
        assert byte_at(addr + 5) == Fault(signal.SIGSEGV, C.SEGV_MAPERR, addr + 5)
        assert probe.write(addr + 9, 1) == Fault(signal.SIGSEGV, C.SEGV_MAPERR, addr + 9)
    assert byte_at(m.addr + PAGE - 1) == 0x6B and byte_at(start + length) == 0x6B


@semantic("madvise.guard_install.no_new_vma",
          "Installing guard pages inside a mapping splits no VMA: /proc/self/maps still shows one "
          "mapping over the whole range with its protection.",
          source="madvise(2) MADV_GUARD_INSTALL (guard regions are page-table entries, not VMAs)", tier="linux")
@requires("feature:MADV_GUARD_INSTALL")
def test_guard_install_no_new_vma(arena: Arena) -> None:
    m = arena.map(1, 5)
    before = procfs.maps_overlapping(m.addr, m.end)
    succeeds(libc.madvise, m.page(1), 3 * PAGE, C.MADV_GUARD_INSTALL)
    after = procfs.maps_overlapping(m.addr, m.end)
    assert [(e.start, e.end, e.perms) for e in after] == [(e.start, e.end, e.perms) for e in before]
    assert len(after) == 1 and (after[0].start, after[0].end, after[0].perms) == (m.addr, m.end, "rw-p")


@semantic("madvise.guard_install.survives_dontneed",
          "Guard pages survive MADV_DONTNEED over the range: they still fault with SEGV_MAPERR, while "
          "unguarded pages read back zero-filled.",
          source="madvise(2) MADV_GUARD_INSTALL (guards are kept by MADV_DONTNEED/MADV_FREE)", tier="linux")
@requires("feature:MADV_GUARD_INSTALL")
def test_guard_survives_dontneed(arena: Arena) -> None:
    m, start, length = _guarded(arena)
    succeeds(libc.madvise, m.addr, m.length, C.MADV_DONTNEED)
    for addr in _edges(start, length):
        assert byte_at(addr) == Fault(signal.SIGSEGV, C.SEGV_MAPERR, addr)
    assert byte_at(m.addr) == 0 and byte_at(start + length) == 0


@semantic("madvise.guard_remove.zero_fill",
          "MADV_GUARD_REMOVE makes a guarded range accessible again: its pages read zeros (installing "
          "the guards discarded the data) and take writes; the neighbours keep their data.",
          source="madvise(2) MADV_GUARD_REMOVE (Linux 6.13)", tier="linux")
@requires("feature:MADV_GUARD_INSTALL", "feature:MADV_GUARD_REMOVE")
def test_guard_remove_zero_fill(arena: Arena) -> None:
    m, start, length = _guarded(arena)
    succeeds(libc.madvise, start, length, C.MADV_GUARD_REMOVE)
    assert [byte_at(addr + 3) for addr in _edges(start, length)] == [0, 0, 0]
    assert probe.write(start + length - 1, 0x12) is None and byte_at(start + length - 1) == 0x12
    assert byte_at(m.addr) == 0x6B and byte_at(start + length) == 0x6B


@semantic("madvise.guard_remove.unguarded_keeps_data",
          "MADV_GUARD_REMOVE over pages that hold no guard succeeds and leaves their data alone.",
          source="madvise(2) MADV_GUARD_REMOVE (removes guard markers only)", tier="linux")
@requires("feature:MADV_GUARD_REMOVE")
def test_guard_remove_unguarded(arena: Arena) -> None:
    m = arena.map(1, 3)
    fill(m, 0x4C)
    succeeds(libc.madvise, m.addr, m.length, C.MADV_GUARD_REMOVE)
    assert [byte_at(m.page(i)) for i in range(3)] == [0x4C] * 3


def _child_reads_all(addresses: list[int]) -> list[int | Fault]:
    return [byte_at(addr) for addr in addresses]


@semantic("madvise.guard_install.fork_inherited",
          "Guard pages of private anonymous memory are inherited by a fork child: there they fault "
          "with SEGV_MAPERR, and the neighbours read the parent's data.",
          source="madvise(2) MADV_GUARD_INSTALL (guard regions are preserved across fork)", tier="linux")
@requires("feature:MADV_GUARD_INSTALL")
def test_guard_fork_inherited(arena: Arena, run_in_child: RunInChild) -> None:
    m, start, length = _guarded(arena)
    addresses = [m.addr, *_edges(start, length), start + length]
    seen = run_in_child(_child_reads_all, addresses).result()
    assert seen == [0x6B, *(Fault(signal.SIGSEGV, C.SEGV_MAPERR, a) for a in _edges(start, length)), 0x6B]


@semantic("madvise.guard_install.locked_einval",
          "MADV_GUARD_INSTALL on locked (mlocked) memory fails with EINVAL and installs no guard.",
          source="madvise(2) MADV_GUARD_INSTALL ERRORS (EINVAL: VM_LOCKED); Documentation/mm/process_addrs.rst",
          tier="linux")
@requires("feature:MADV_GUARD_INSTALL")
def test_guard_install_locked(locked_region: LockedRegion) -> None:
    m = locked_region(2)
    fill(m, 0x3E)
    fails_with(errno.EINVAL, libc.madvise, m.addr, m.length, C.MADV_GUARD_INSTALL)
    assert byte_at(m.addr) == 0x3E and byte_at(m.page(1)) == 0x3E


@semantic("madvise.guard_install.populate_efault",
          "MADV_POPULATE_READ over a range with guard pages fails with EFAULT (a guard cannot be faulted in).",
          source="madvise(2) MADV_POPULATE_READ ERRORS (EFAULT); MADV_GUARD_INSTALL", tier="linux")
@requires("feature:MADV_GUARD_INSTALL", "feature:MADV_POPULATE_READ")
def test_guard_populate_efault(arena: Arena) -> None:
    m, start, _length = _guarded(arena)
    fails_with(errno.EFAULT, libc.madvise, m.addr, m.length, C.MADV_POPULATE_READ)
    assert byte_at(start) == Fault(signal.SIGSEGV, C.SEGV_MAPERR, start)


# =====================================================================================
# POPULATE and COLLAPSE: what was missing
# =====================================================================================

@pytest.mark.parametrize("advice", [
    pytest.param(C.MADV_POPULATE_READ, id="read", marks=requires("feature:MADV_POPULATE_READ")),
    pytest.param(C.MADV_POPULATE_WRITE, id="write", marks=requires("feature:MADV_POPULATE_WRITE")),
])
@semantic("madvise.populate.unmapped_enomem",
          "MADV_POPULATE_READ/WRITE over a range that is not mapped fails with ENOMEM.",
          source="madvise(2) ERRORS (ENOMEM)", tier="linux")
def test_populate_unmapped(arena: Arena, advice: int) -> None:
    arena.hole(3, 2)
    fails_with(errno.ENOMEM, libc.madvise, arena.page(3), 2 * PAGE, advice)


@semantic("madvise.populate_write.shared_file_dirty",
          "MADV_POPULATE_WRITE on a shared file mapping faults the file's own pages in writable and "
          "dirty (smaps: dirty = the whole range, nothing anonymous) without changing the file's bytes.",
          source="madvise(2) MADV_POPULATE_WRITE (as if each page were written)", tier="linux")
@requires("feature:MADV_POPULATE_WRITE")
def test_populate_write_shared_file(mapped_file: MappedFile) -> None:
    m = mapped_file(bytes(4 * PAGE), shared=True)
    entry = procfs.smaps_at(m.addr)
    assert entry is not None and (entry.get("Rss") or 0) == 0, "precondition: nothing faulted in yet"
    succeeds(libc.madvise, m.addr, m.length, C.MADV_POPULATE_WRITE)
    entry = procfs.smaps_at(m.addr)
    assert entry is not None and entry.maps.length == m.length
    dirty = (entry.get("Shared_Dirty") or 0) + (entry.get("Private_Dirty") or 0)
    assert (dirty, entry.get("Anonymous")) == (m.length // 1024, 0)
    assert Path(m.path).read_bytes() == bytes(4 * PAGE)


@requires("arch:x86_64")
@semantic("madvise.collapse.nohugepage_einval",
          "MADV_COLLAPSE on a range marked MADV_NOHUGEPAGE fails with EINVAL: collapse honours the "
          "VMA's 'no huge pages' advice.",
          source="madvise(2) MADV_COLLAPSE ERRORS (EINVAL: VM_NOHUGEPAGE)", tier="linux")
@requires("feature:MADV_COLLAPSE")
def test_collapse_nohugepage(mapped_pages: MappedPages) -> None:
    m = mapped_pages(2 * HPAGE // PAGE)
    start = (m.addr + HPAGE - 1) // HPAGE * HPAGE
    libc.madvise(m.addr, m.length, C.MADV_NOHUGEPAGE)
    ctypes.memset(start, 0x2A, HPAGE)
    fails_with(errno.EINVAL, libc.madvise, start, HPAGE, C.MADV_COLLAPSE)
    entry = procfs.smaps_at(start)
    assert entry is not None and (entry.get("AnonHugePages") or 0) == 0


@requires("arch:x86_64")
@semantic("madvise.collapse.unmapped_enomem",
          "MADV_COLLAPSE over a range that is not mapped fails with ENOMEM.",
          source="madvise(2) ERRORS (ENOMEM)", tier="linux")
@requires("feature:MADV_COLLAPSE")
def test_collapse_unmapped(arena: Arena) -> None:
    arena.hole(0, 8)
    fails_with(errno.ENOMEM, libc.madvise, arena.page(0), 8 * PAGE, C.MADV_COLLAPSE)
