"""Page-size arithmetic: every length, alignment and vector size the suite computes.

Why a module of its own: Linux runs on 4 KiB pages on x86_64, on 4, 16 or 64 KiB on
arm64 and on 64 KiB on Debian's ppc64le, and page size is where memory code breaks
most often. Each function takes the page size (and, where it matters, the
architecture) as a parameter with the running system's as the default, so a test of
the plugin's own can compute what a 16 KiB or 64 KiB system must answer without
booting one (tests/test_pages.py).

PYTEST_DONT_REWRITE: loaded into every pytest session (plugin/activation.py says why).
"""

from __future__ import annotations

import os
from pathlib import Path

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
ARCH = os.uname().machine

# SHMLBA per architecture (the kernel's asm/shmparam.h): PAGE_SIZE on x86_64 and
# powerpc (arch/powerpc/include/asm/shmparam.h), and asm-generic's PAGE_SIZE on arm64
# (arch/arm64/include/asm/shmparam.h: only 32-bit compat tasks use COMPAT_SHMLBA 16 KiB).
# Multiples of the page size, for the architectures that alias caches: 4 pages on
# sparc64 and arm (32-bit, arch/arm/include/asm/shmparam.h: 4 * PAGE_SIZE).
_SHMLBA_PAGES = {"x86_64": 1, "aarch64": 1, "ppc64le": 1, "ppc64": 1, "riscv64": 1, "s390x": 1,
                 "loongarch64": 1, "armv7l": 4, "sparc64": 4}


def is_aligned(value: int, page_size: int = PAGE_SIZE) -> bool:
    return value % page_size == 0


def round_down(value: int, page_size: int = PAGE_SIZE) -> int:
    return value - value % page_size


def round_up(value: int, page_size: int = PAGE_SIZE) -> int:
    """The length the kernel actually maps, locks or attaches for ``value`` bytes."""
    return (value + page_size - 1) // page_size * page_size


def pages_in(length: int, page_size: int = PAGE_SIZE) -> int:
    """How many pages ``length`` bytes occupy from an aligned address (rounded up)."""
    return (length + page_size - 1) // page_size


def mincore_vector_size(length: int, page_size: int = PAGE_SIZE) -> int:
    """mincore(2): vec must hold (length + PAGE_SIZE - 1) / PAGE_SIZE bytes."""
    return pages_in(length, page_size)


def shm_segment_size(size: int, page_size: int = PAGE_SIZE) -> int:
    """shmget(2): the segment's memory is size rounded up to a multiple of PAGE_SIZE
    (shm_segsz still reports the size asked for)."""
    return round_up(size, page_size)


def shmlba(arch: str = ARCH, page_size: int = PAGE_SIZE) -> int:
    """The alignment shmat(2) requires of a caller's address (and rounds to with SHM_RND)."""
    return _SHMLBA_PAGES.get(arch, 1) * page_size


def pmd_size(arch: str = ARCH, page_size: int = PAGE_SIZE, radix: bool = True) -> int:
    """The size of a PMD-level (transparent) huge page, computed: one page table page of
    8-byte entries maps page_size * (page_size / 8) bytes at the PMD level on x86_64 and
    arm64 (4 KiB: 2 MiB, 16 KiB: 32 MiB, 64 KiB: 512 MiB; Documentation/arch/arm64/
    hugetlbpage.rst). ppc64 with 64 KiB pages: 2 MiB under the radix MMU, 16 MiB under
    the hash MMU (arch/powerpc/include/asm/book3s/64/radix-64k.h, hash-64k.h)."""
    if arch in ("ppc64le", "ppc64") and page_size == 65536:
        return (2 << 20) if radix else (16 << 20)
    return page_size * (page_size // 8)


def thp_pmd_size(arch: str = ARCH, page_size: int = PAGE_SIZE,
                 sysfs: Path = Path("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size")) -> int:
    """The running kernel's PMD huge page size (what it says in sysfs), else ``pmd_size``."""
    try:
        return int(sysfs.read_text().strip())
    except (OSError, ValueError):
        return pmd_size(arch, page_size)


def near(addr: int, start: int, end: int, page_size: int = PAGE_SIZE) -> bool:
    """Whether addr lies in [start, end) or within one page of it (a guard page, the page
    just past a mapping): what a failure's /proc/self/maps excerpt shows."""
    return start - page_size <= addr < end + page_size
