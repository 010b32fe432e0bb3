"""What /proc shows of a process's memory: pagemap(5) bits, smaps after fork, maps fields
and who may read them.

pagemap entries (Documentation/admin-guide/mm/pagemap.rst): bit 63 present, 62 swapped,
61 file page or shared anonymous, 56 exclusively mapped, 55 soft-dirty, 0-54 the frame
number, shown only to an opener with CAP_SYS_ADMIN in the initial user namespace (zero
otherwise, since 4.2). Pages are placed in the ``arena`` where the neighbours matter;
capabilities are dropped and uids changed in children only.
"""

from __future__ import annotations

import ctypes
import errno
import os
from typing import Any

from pytest_memsyscalls import MappedPages, RunInChild, requires, semantic
from pytest_memsyscalls.environment.fingerprint import Environment
from pytest_memsyscalls.kernel import constants as C
from pytest_memsyscalls.kernel import procfs
from pytest_memsyscalls.kernel.libc import PAGE_SIZE as PAGE

from ._oracles import (
    PM_FILE,
    PM_MMAP_EXCLUSIVE,
    PM_PFN_MASK,
    PM_PRESENT,
    PM_SOFT_DIRTY,
    drop_capability,
    effective_caps,
    lockstep,
    pagemap_entries,
    vmflags,
)

CAP_SYS_ADMIN = 21  # linux/capability.h
OTHER_UID = 65534  # nobody
KB = 1024


# --- pagemap: present, exclusive, file/shared ---------------------------------------------

@semantic("proc.pagemap.present_only_touched",
          "pagemap sets bit 63 (present) for the written pages of a mapping and not for a page never "
          "touched; an unmapped page has an all-zero entry, and an untouched page of the mapping or of its "
          "PROT_NONE neighbour has no bit but 55 (soft-dirty), which it has exactly when its VMA is "
          "soft-dirty ('sd' in VmFlags: every new VMA, where the kernel tracks soft-dirty bits)",
          source="proc(5) /proc/pid/pagemap, /proc/pid/smaps VmFlags (sd); "
                 "Documentation/admin-guide/mm/pagemap.rst; Documentation/admin-guide/mm/soft-dirty.rst "
                 "(new memory regions are marked soft-dirty); fs/proc/task_mmu.c pagemap_pte_hole",
          tier="linux")
@requires("path:/proc/self/pagemap")
def test_pagemap_present(arena: Any) -> None:
    region = arena.map(10, 3)
    arena.hole(13)
    region.buffer[0] = 1
    region.buffer[3 * PAGE - 1] = 1
    before, first, inner, last, hole = pagemap_entries(arena.page(9), 5)
    assert (bool(first & PM_PRESENT), bool(inner & PM_PRESENT), bool(last & PM_PRESENT)) == (True, False, True)
    # CONFIG_MEM_SOFT_DIRTY (x86_64, powerpc Book3S-64, s390; not arm64) marks a new VMA
    # VM_SOFTDIRTY, shown as 'sd', and pagemap reports its pages without a PTE as soft-dirty.
    soft_dirty = [PM_SOFT_DIRTY if "sd" in vmflags(addr) else 0 for addr in (arena.page(9), region.addr)]
    assert (before, inner, hole) == (*soft_dirty, 0)


@semantic("proc.pagemap.written_private_exclusive",
          "A written private anonymous page is present and exclusively mapped (bit 56), and not a file or "
          "shared page (bit 61 clear)",
          source="Documentation/admin-guide/mm/pagemap.rst (bit 56 since 4.2, bit 61 since 3.5)", tier="linux")
@requires("path:/proc/self/pagemap")
def test_pagemap_private_exclusive(mapped_pages: MappedPages) -> None:
    page = mapped_pages(1)
    page.buffer[0] = 1
    (entry,) = pagemap_entries(page.addr)
    assert entry & (PM_PRESENT | PM_MMAP_EXCLUSIVE | PM_FILE) == PM_PRESENT | PM_MMAP_EXCLUSIVE


@semantic("proc.pagemap.read_only_zero_page_not_exclusive",
          "Reading a never-written private anonymous page maps it present but not exclusively (the shared "
          "zero page: bit 56 clear); writing it then gives an exclusive page",
          source="Documentation/admin-guide/mm/pagemap.rst; mm/memory.c (zero page on read fault)", tier="impl")
@requires("path:/proc/self/pagemap")
def test_pagemap_zero_page(mapped_pages: MappedPages) -> None:
    page = mapped_pages(1)
    assert page.read(0) == 0
    (read_entry,) = pagemap_entries(page.addr)
    page.buffer[0] = 1
    (written_entry,) = pagemap_entries(page.addr)
    assert read_entry & (PM_PRESENT | PM_MMAP_EXCLUSIVE) == PM_PRESENT
    assert written_entry & (PM_PRESENT | PM_MMAP_EXCLUSIVE) == PM_PRESENT | PM_MMAP_EXCLUSIVE


@semantic("proc.pagemap.cow_shared_not_exclusive",
          "While a fork child shares a written private page copy-on-write, the parent's entry is present "
          "but not exclusive (bit 56 clear); after the parent writes (its own copy) it is exclusive again",
          source="Documentation/admin-guide/mm/pagemap.rst (bit 56); fork(2) NOTES (copy-on-write)",
          tier="linux")
@requires("path:/proc/self/pagemap")
def test_pagemap_cow_shared(mapped_pages: MappedPages) -> None:
    page = mapped_pages(1)
    page.buffer[0] = 1
    with lockstep(lambda: page.buffer[0]) as child:
        (shared,) = pagemap_entries(page.addr)
        page.buffer[0] = 2
        (copied,) = pagemap_entries(page.addr)
        assert child.go() == 1
    assert shared & (PM_PRESENT | PM_MMAP_EXCLUSIVE) == PM_PRESENT
    assert copied & (PM_PRESENT | PM_MMAP_EXCLUSIVE) == PM_PRESENT | PM_MMAP_EXCLUSIVE


@semantic("proc.pagemap.shared_anon_file_bit",
          "A touched MAP_SHARED|MAP_ANONYMOUS page has bit 61 (file page or shared anonymous) set, where a "
          "private anonymous page has it clear",
          source="Documentation/admin-guide/mm/pagemap.rst (bit 61)", tier="linux")
@requires("path:/proc/self/pagemap")
def test_pagemap_shared_anon(mapped_pages: MappedPages) -> None:
    shared = mapped_pages(1, flags=C.MAP_SHARED | C.MAP_ANONYMOUS)
    private = mapped_pages(1)
    shared.buffer[0] = private.buffer[0] = 1
    (shared_entry,) = pagemap_entries(shared.addr)
    (private_entry,) = pagemap_entries(private.addr)
    assert (shared_entry & (PM_PRESENT | PM_FILE), private_entry & PM_FILE) == (PM_PRESENT | PM_FILE, 0)


# --- pagemap: the frame number and CAP_SYS_ADMIN ---------------------------------------------

def _entry_without_cap_sys_admin(addr: int) -> tuple[int, bool]:
    drop_capability(CAP_SYS_ADMIN)
    return pagemap_entries(addr)[0], "CAP_SYS_ADMIN" in effective_caps()


@semantic("proc.pagemap.pfn_hidden_without_cap_sys_admin",
          "A reader without CAP_SYS_ADMIN sees a present page's entry with the frame number bits (0-54) "
          "zero, its present bit still set",
          source="Documentation/admin-guide/mm/pagemap.rst (PFNs zeroed without CAP_SYS_ADMIN since 4.2)",
          tier="linux")
@requires("path:/proc/self/pagemap")
def test_pagemap_pfn_hidden(mapped_pages: MappedPages, run_in_child: RunInChild) -> None:
    page = mapped_pages(1)
    page.buffer[0] = 1
    entry, still_capable = run_in_child(_entry_without_cap_sys_admin, page.addr).result()
    assert not still_capable
    assert (entry & PM_PRESENT, entry & PM_PFN_MASK) == (PM_PRESENT, 0)


def _pfn_visible(env: Environment) -> str | None:
    if not env.capabilities.has("CAP_SYS_ADMIN"):
        return "needs:CAP_SYS_ADMIN"
    if env.namespaces.user.initial is not True:
        return "needs:CAP_SYS_ADMIN in the initial user namespace (pagemap asks init_user_ns)"
    return None


def _pfn_of(addr: int) -> int:
    return pagemap_entries(addr)[0] & PM_PFN_MASK


def _touch_then_pfn(addr: int) -> int:
    """In a fork child: fork copies no page table entry of a shared mapping, so fault it in first."""
    ctypes.c_char.from_address(addr).value  # noqa: B018 - the read is the point
    return _pfn_of(addr)


@semantic("proc.pagemap.pfn_shown_with_cap_sys_admin",
          "With CAP_SYS_ADMIN in the initial user namespace, pagemap shows frame numbers: two written "
          "private pages have different non-zero frames, and a MAP_SHARED page has the same frame in a fork "
          "child as in the parent",
          source="Documentation/admin-guide/mm/pagemap.rst (bits 0-54 page frame number)", tier="linux")
@requires(_pfn_visible)
@requires("path:/proc/self/pagemap")
def test_pagemap_pfn_shown(mapped_pages: MappedPages, run_in_child: RunInChild) -> None:
    private = mapped_pages(2)
    shared = mapped_pages(1, flags=C.MAP_SHARED | C.MAP_ANONYMOUS)
    private.buffer[0] = private.buffer[PAGE] = shared.buffer[0] = 1
    first, second = (entry & PM_PFN_MASK for entry in pagemap_entries(private.addr, 2))
    assert first and second and first != second
    parent_frame = _pfn_of(shared.addr)
    assert parent_frame and run_in_child(_touch_then_pfn, shared.addr).result() == parent_frame


# --- smaps after fork --------------------------------------------------------------------------

def _counters(addr: int) -> dict[str, int | None]:
    entry = procfs.smaps_at(addr)
    assert entry is not None
    return {name: entry.get(name) for name in ("Rss", "Pss", "Private_Dirty", "Shared_Dirty")}


@semantic("proc.smaps.cow_page_shared_pss_halved",
          "A written private page counts as Private_Dirty with Pss = Rss; while a fork child shares it "
          "copy-on-write it is Shared_Dirty and the parent's Pss is half its Rss",
          source="proc(5) /proc/pid/smaps (Pss: proportional share; Shared/Private)", tier="linux")
def test_smaps_after_fork(arena: Any) -> None:
    page = arena.map(20, 1)  # PROT_NONE neighbours: the smaps record is this page alone, never a merged VMA
    page.buffer[0] = 1
    size_kb = PAGE // KB
    alone = _counters(page.addr)
    with lockstep(lambda: page.buffer[0]) as child:
        shared = _counters(page.addr)
        assert child.go() == 1
    assert alone == {"Rss": size_kb, "Pss": size_kb, "Private_Dirty": size_kb, "Shared_Dirty": 0}
    assert shared == {"Rss": size_kb, "Pss": size_kb // 2, "Private_Dirty": 0, "Shared_Dirty": size_kb}


# --- maps: the fields, and who may read them ----------------------------------------------------

@semantic("proc.maps.anonymous_fields",
          "/proc/self/maps shows a private anonymous mapping with its exact range and permissions, offset 0, "
          "device 00:00, inode 0 and no path",
          source="proc(5) /proc/pid/maps", tier="linux")
def test_maps_anonymous_line(arena: Any) -> None:
    region = arena.map(10, 2, prot=C.PROT_READ)
    entry = procfs.vma_at(region.addr)
    assert entry is not None
    assert (entry.start, entry.end, entry.perms, entry.offset, entry.dev, entry.inode, entry.path) == (
        arena.page(10), arena.page(12), "r--p", 0, "00:00", 0, "")


def _open_errnos(pid: int) -> tuple[int, ...]:
    os.setgroups([])
    os.setresgid(OTHER_UID, OTHER_UID, OTHER_UID)
    os.setresuid(OTHER_UID, OTHER_UID, OTHER_UID)
    results = []
    for name in ("maps", "smaps", "pagemap"):
        try:
            with open(f"/proc/{pid}/{name}", "rb") as handle:
                handle.read(1)
        except OSError as error:
            results.append(error.errno or -1)
        else:
            results.append(0)
    return tuple(results)


@semantic("proc.maps.other_uid_eacces",
          "Another uid without capabilities cannot read this process's maps, smaps or pagemap: opening them "
          "fails with EACCES (the ptrace access mode check)",
          source="proc(5) /proc/pid/maps (PTRACE_MODE_READ_FSCREDS); ptrace(2) access mode checks",
          tier="linux")
@requires("setuid")
def test_maps_other_uid(run_in_child: RunInChild) -> None:
    assert run_in_child(_open_errnos, os.getpid()).result() == (errno.EACCES,) * 3
