"""The page-size arithmetic with page sizes other than this machine's, without a guest:
arm64 with 16 KiB pages (Android 15, Asahi) and ppc64le / arm64 with 64 KiB pages."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_memsyscalls.kernel import constants as C
from pytest_memsyscalls.kernel import pages
from pytest_memsyscalls.plugin import maps_near

SIZES = (4096, 16384, 65536)


@pytest.mark.parametrize("page", SIZES)
def test_rounding_and_alignment(page: int) -> None:
    assert pages.round_up(1, page) == page
    assert pages.round_up(page, page) == page
    assert pages.round_up(page + 1, page) == 2 * page
    assert pages.round_down(2 * page - 1, page) == page
    assert pages.is_aligned(3 * page, page)
    # 4096 is aligned only when the page is 4 KiB: nothing else may treat it as a page
    assert pages.is_aligned(4096, page) == (page == 4096)


@pytest.mark.parametrize(("page", "length", "vector"), [
    (4096, 4096 + 1, 2), (16384, 4096 + 1, 1), (65536, 4096 + 1, 1),
    (16384, 16384 + 1, 2), (65536, 3 * 65536, 3), (65536, 0, 0), (16384, 8 * 4096, 2),
])
def test_mincore_vector_size(page: int, length: int, vector: int) -> None:
    """mincore(2): vec holds (length + PAGE_SIZE - 1) / PAGE_SIZE bytes."""
    assert pages.mincore_vector_size(length, page) == vector


@pytest.mark.parametrize("page", SIZES)
def test_shm_sizes_and_shmlba(page: int) -> None:
    assert pages.shm_segment_size(1, page) == page
    assert pages.shm_segment_size(page + 1, page) == 2 * page
    # SHMLBA is PAGE_SIZE on the three 64-bit architectures of the matrix (asm/shmparam.h)
    for arch in ("x86_64", "aarch64", "ppc64le"):
        assert pages.shmlba(arch, page) == page
    assert pages.shmlba("armv7l", page) == 4 * page


def test_the_libc_door_rounds_shm_rnd_to_the_same_shmlba() -> None:
    """libc.shmat checks an SHM_RND attach against SHMLBA: it must be pages.shmlba (an own
    copy of 4 pages on arm64 failed sysv.shmat.shm_rnd_rounds_down on arm64 guests)."""
    from pytest_memsyscalls.kernel import libc

    assert pages.shmlba(C.ARCH, libc.PAGE_SIZE) == libc.SHMLBA


def test_pmd_huge_page_sizes() -> None:
    assert pages.pmd_size("x86_64", 4096) == 2 << 20
    assert pages.pmd_size("aarch64", 4096) == 2 << 20
    assert pages.pmd_size("aarch64", 16384) == 32 << 20
    assert pages.pmd_size("aarch64", 65536) == 512 << 20
    assert pages.pmd_size("ppc64le", 65536) == 2 << 20  # radix
    assert pages.pmd_size("ppc64le", 65536, radix=False) == 16 << 20  # hash


def test_thp_pmd_size_reads_sysfs_first(tmp_path: Path) -> None:
    sysfs = tmp_path / "hpage_pmd_size"
    sysfs.write_text("33554432\n")
    assert pages.thp_pmd_size("aarch64", 16384, sysfs) == 32 << 20
    assert pages.thp_pmd_size("aarch64", 16384, sysfs.with_name("absent")) == 32 << 20


@pytest.mark.parametrize("page", SIZES)
def test_near_is_one_page_either_side(page: int) -> None:
    start, end = 0x7F0000000000, 0x7F0000000000 + 4 * page
    assert pages.near(start - page, start, end, page)
    assert not pages.near(start - page - 1, start, end, page)
    assert pages.near(end + page - 1, start, end, page)
    assert not pages.near(end + page, start, end, page)


@pytest.mark.parametrize("page", SIZES)
def test_maps_near_uses_the_page_size(page: int) -> None:
    from pytest_memsyscalls.kernel import procfs

    entry = procfs.parse_maps("7f0000000000-7f0000100000 rw-p 00000000 00:00 0")[0]
    end = 0x7F0000100000
    assert maps_near(f"fault at {end + page - 1:#x}", [entry], page)
    assert not maps_near(f"fault at {end + page:#x}", [entry], page)


def test_powerpc_constants_differ() -> None:
    """arch/powerpc/include/uapi/asm/mman.h has values of its own for these."""
    ppc, x86, arm = C.arch_constants("ppc64le"), C.arch_constants("x86_64"), C.arch_constants("aarch64")
    assert (ppc["MAP_LOCKED"], ppc["MAP_NORESERVE"]) == (0x80, 0x40)
    assert (ppc["MCL_CURRENT"], ppc["MCL_FUTURE"], ppc["MCL_ONFAULT"]) == (0x2000, 0x4000, 0x8000)
    assert x86["MAP_LOCKED"] == arm["MAP_LOCKED"] == 0x2000
    assert ppc["SYS_mmap"] == 90 and arm["SYS_mmap"] == 222 and x86["SYS_mmap"] == 9
