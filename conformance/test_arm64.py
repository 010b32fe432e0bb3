"""arm64's own protections: PROT_BTI (branch target identification) and PROT_MTE (memory
tagging), and the signal a tag check fault delivers.

Both exist only where the CPU has them (the ``bti`` and ``mte`` flags of /proc/cpuinfo's
Features line, in the fingerprint's cpu flags); without them the kernel refuses the
protection bit with EINVAL (arch/arm64/include/asm/mman.h arch_validate_prot). Under
qemu, ``-cpu max`` has BTI and ``-M virt,mte=on`` adds MTE (the qemu-arm64 targets).
"""

from __future__ import annotations

import ctypes
import errno
import signal

from pytest_memsyscalls import MappedPages, expect_signal, fails_with, requires, semantic, succeeds
from pytest_memsyscalls.environment import fingerprint as environment
from pytest_memsyscalls.kernel import constants as C
from pytest_memsyscalls.kernel import libc

from ._oracles import vmflags

_FLAGS = frozenset(environment.detect().cpu.flags or ())
# linux/prctl.h: tagged-address ABI and MTE's tag check mode
PR_SET_TAGGED_ADDR_CTRL = 55
PR_TAGGED_ADDR_ENABLE = 1 << 0
PR_MTE_TCF_SYNC = 1 << 1
PR_MTE_TAG_SHIFT = 3
MTE_TAG_SHIFT = 56  # the logical tag sits in bits 59:56 of a pointer


@requires("arch:aarch64")
@semantic("mprotect.arm64.prot_bti_follows_cpu",
          "On arm64 mprotect accepts PROT_BTI for an executable mapping when the CPU has BTI, and the "
          "VMA then shows 'bt' in its VmFlags; without BTI the bit is unknown and mprotect fails with EINVAL",
          source="Documentation/arch/arm64/elf_hwcaps.rst HWCAP2_BTI; arch/arm64/include/asm/mman.h "
                 "arch_validate_prot; proc(5) VmFlags (bt: arm64 BTI guarded page)", tier="linux")
def test_prot_bti(mapped_pages: MappedPages) -> None:
    page = mapped_pages(1)
    prot = C.PROT_READ | C.PROT_EXEC | C.PROT_BTI
    if "bti" not in _FLAGS:
        fails_with(errno.EINVAL, libc.mprotect, page.addr, page.length, prot)
        return
    succeeds(libc.mprotect, page.addr, page.length, prot)
    assert "bt" in vmflags(page.addr)


@requires("arch:aarch64")
@semantic("mmap.arm64.prot_mte_follows_cpu",
          "On arm64 mmap accepts PROT_MTE for a private anonymous mapping when the CPU has MTE, and the "
          "VMA then shows 'mt' in its VmFlags; without MTE mmap fails with EINVAL",
          source="Documentation/arch/arm64/memory-tagging-extension.rst (PROT_MTE, MAP_ANONYMOUS); "
                 "arch/arm64/include/asm/mman.h arch_validate_prot; proc(5) VmFlags (mt)", tier="linux")
def test_prot_mte() -> None:
    prot = C.RW | C.PROT_MTE
    if "mte" not in _FLAGS:
        fails_with(errno.EINVAL, libc.mmap, 0, libc.PAGE_SIZE, prot, C.ANON)
        return
    addr = libc.mmap(0, libc.PAGE_SIZE, prot, C.ANON)
    try:
        assert "mt" in vmflags(addr)
    finally:
        libc.munmap(addr, libc.PAGE_SIZE)


def _tag_mismatch(addr: int) -> None:
    """With synchronous tag checking, read the (tag 0) page through a pointer tagged 1."""
    libc.prctl(PR_SET_TAGGED_ADDR_CTRL, PR_TAGGED_ADDR_ENABLE | PR_MTE_TCF_SYNC | (0xFFFE << PR_MTE_TAG_SHIFT))
    ctypes.c_uint8.from_address(addr | (1 << MTE_TAG_SHIFT)).value  # noqa: B018 - the access is the test


@requires("arch:aarch64")
@semantic("mmap.arm64.mte_sync_tag_check_fault",
          "With MTE and synchronous tag checking enabled (prctl PR_MTE_TCF_SYNC), an access to PROT_MTE "
          "memory through a pointer whose tag differs from the memory's raises SIGSEGV with si_code "
          "SEGV_MTESERR",
          source="Documentation/arch/arm64/memory-tagging-extension.rst (Tag Check Faults: SEGV_MTESERR)",
          tier="linux")
def test_mte_sync_tag_check_fault() -> None:
    if "mte" not in _FLAGS:
        fails_with(errno.EINVAL, libc.mmap, 0, libc.PAGE_SIZE, C.RW | C.PROT_MTE, C.ANON)
        return
    addr = libc.mmap(0, libc.PAGE_SIZE, C.RW | C.PROT_MTE, C.ANON)
    try:
        expect_signal(signal.SIGSEGV, _tag_mismatch, addr, code=C.SEGV_MTESERR)
    finally:
        libc.munmap(addr, libc.PAGE_SIZE)
