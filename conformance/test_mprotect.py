"""mprotect(2): its ERRORS, what each protection lets a thread do, and what it does to VMAs.

Every access is made by the fault probe, so an access the protection forbids is seen
as the exact siginfo the kernel delivered (SIGSEGV, SEGV_ACCERR, the faulting address)
instead of a crashed test. The expected outcome of each access is computed from the
protection and from the facts of this machine that change it: the architecture (x86
page tables cannot express write-only, so PROT_WRITE implies read), protection keys
(with them Linux makes PROT_EXEC-only pages execute-only) and the READ_IMPLIES_EXEC
personality. MAP_FIXED only ever happens inside the ``arena``.
"""

from __future__ import annotations

import errno
import fcntl
import os
import signal
from pathlib import Path

import pytest

from pytest_memsyscalls import ExpectSignal, MappedFile, MappedPages, RunInChild, fails_with, requires, semantic
from pytest_memsyscalls.environment import fingerprint as environment
from pytest_memsyscalls.environment.fingerprint import Environment
from pytest_memsyscalls.kernel import constants as C
from pytest_memsyscalls.kernel import libc, probe, procfs
from pytest_memsyscalls.kernel.constants import RW
from pytest_memsyscalls.kernel.libc import PAGE_SIZE as PAGE
from pytest_memsyscalls.kernel.probe import Fault
from pytest_memsyscalls.memory.mapping import Arena, Mapping

from ._noexec import mount_private_noexec_tmpfs, noexec_directory

RET = probe.RET_INSTRUCTION
UNKNOWN_PROT_BIT = 0x40  # no PROT_* flag on x86_64, aarch64, powerpc or any other architecture


# --- facts of this machine that decide the expected outcome ----------------------------

X86_64 = C.ARCH == "x86_64"
# Facts of this process from the environment fingerprint (`memsyscalls env`): whether x86
# makes PROT_EXEC-only pages execute-only with a protection key, and READ_IMPLIES_EXEC.
_CPU = environment.detect().cpu
PKEY_EXEC_ONLY = bool(_CPU.pkey_exec_only)
READ_EXEC = bool(_CPU.read_implies_exec)


# Architectures whose page tables (or protection_map) have no write-only encoding, so
# PROT_WRITE implies read: x86_64; arm64 maps VM_WRITE to PAGE_READONLY (copy on write)
# and VM_SHARED|VM_WRITE to PAGE_SHARED (arch/arm64/mm/mmap.c protection_map); powerpc
# maps VM_WRITE to PAGE_COPY and VM_SHARED|VM_WRITE to PAGE_SHARED (mm/ protection_map,
# arch/powerpc/include/asm/pgtable.h). mmap(2) NOTES: "on some hardware architectures
# (e.g., i386), PROT_WRITE implies PROT_READ".
WRITE_IMPLIES_READ = C.ARCH in ("x86_64", "aarch64", "ppc64le", "ppc64")


def readable(prot: int) -> bool:
    """Whether a read of a page with ``prot`` completes on this machine."""
    if prot & C.PROT_READ:
        return True
    if WRITE_IMPLIES_READ and prot & C.PROT_WRITE:
        return True  # no write-only encoding (see WRITE_IMPLIES_READ)
    if X86_64 and prot & C.PROT_EXEC:
        return not PKEY_EXEC_ONLY
    return False


def executable(prot: int) -> bool:
    return bool(prot & C.PROT_EXEC) or (READ_EXEC and bool(prot & C.PROT_READ))


def _code_page(mapped_pages: MappedPages, prot: int) -> Mapping:
    """A page holding a return instruction, then given ``prot``."""
    page = mapped_pages(1, RW)
    page.buffer[: len(RET)] = RET
    page.protect(prot)
    return page


def _accerr(addr: int) -> Fault:
    return Fault(signal.SIGSEGV, C.SEGV_ACCERR, addr)


# --- ERRORS ------------------------------------------------------------------------------

@semantic("mprotect.errors.einval_unaligned_addr",
          "mprotect fails with EINVAL when addr is not a multiple of the page size",
          source="mprotect(2) ERRORS", tier="posix")
def test_unaligned_addr_is_einval(mapped_pages: MappedPages) -> None:
    region = mapped_pages(2)
    fails_with(errno.EINVAL, libc.mprotect, region.addr + 1, PAGE, C.PROT_READ)


@semantic("mprotect.errors.einval_unknown_prot_bits",
          "mprotect fails with EINVAL when prot contains a bit that is not a PROT_* flag of the architecture",
          source="mprotect(2) ERRORS (Invalid flags specified in prot)", tier="linux")
def test_unknown_prot_bit_is_einval(mapped_pages: MappedPages) -> None:
    region = mapped_pages(1)
    fails_with(errno.EINVAL, libc.mprotect, region.addr, PAGE, C.PROT_READ | UNKNOWN_PROT_BIT)


@semantic("mprotect.errors.einval_growsdown_and_growsup",
          "mprotect fails with EINVAL when both PROT_GROWSDOWN and PROT_GROWSUP are given",
          source="mprotect(2) ERRORS", tier="linux")
def test_growsdown_with_growsup_is_einval(mapped_pages: MappedPages) -> None:
    region = mapped_pages(1)
    fails_with(errno.EINVAL, libc.mprotect, region.addr, PAGE,
               C.PROT_READ | C.PROT_GROWSDOWN | C.PROT_GROWSUP)


@semantic("mprotect.errors.enomem_unmapped_range",
          "mprotect fails with ENOMEM when the range is not mapped at all",
          source="mprotect(2) ERRORS", tier="posix")
def test_unmapped_range_is_enomem(arena: Arena) -> None:
    arena.hole(4, 2)
    fails_with(errno.ENOMEM, libc.mprotect, arena.page(4), 2 * PAGE, C.PROT_READ)


@semantic("mprotect.errors.enomem_range_with_hole",
          "mprotect fails with ENOMEM when one or more pages of the range are not mapped",
          source="mprotect(2) ERRORS", tier="posix")
def test_range_with_a_hole_is_enomem(arena: Arena) -> None:
    arena.map(8, 1)
    arena.hole(9, 1)
    arena.map(10, 1)
    fails_with(errno.ENOMEM, libc.mprotect, arena.page(8), 3 * PAGE, C.PROT_READ)


@semantic("mprotect.errors.eacces_write_on_shared_readonly_file",
          "mprotect(PROT_WRITE) of a MAP_SHARED mapping of a file opened O_RDONLY fails with EACCES, "
          "whatever the caller's privileges",
          source="mprotect(2) ERRORS", tier="posix")
def test_write_on_shared_mapping_of_readonly_file_is_eacces(mapped_file: MappedFile) -> None:
    region = mapped_file(b"read-only", shared=True, prot=C.PROT_READ)  # the fixture opens it O_RDONLY
    assert fcntl.fcntl(region.fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY  # precondition
    fails_with(errno.EACCES, libc.mprotect, region.addr, PAGE, C.PROT_READ | C.PROT_WRITE)


def _mprotect_exec_on_noexec_file(directory: str, must_mount: bool) -> int:
    """In a child: map a file of a noexec mount PROT_READ, ask for PROT_EXEC; the errno."""
    if must_mount:
        mount_private_noexec_tmpfs(directory)
    path = os.path.join(directory, f"memsys-noexec-{os.getpid()}")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.unlink(path)
        os.ftruncate(fd, PAGE)
        addr = libc.mmap(0, PAGE, C.PROT_READ, C.MAP_PRIVATE, fd, 0)
        try:
            libc.mprotect(addr, PAGE, C.PROT_READ | C.PROT_EXEC)
        except OSError as error:
            return error.errno or 0
        return 0
    finally:
        os.close(fd)


@semantic("mprotect.errors.eacces_exec_on_noexec_mount",
          "mprotect(PROT_EXEC) of a mapping of a file on a noexec mount fails with EACCES (the mapping "
          "never gets VM_MAYEXEC)",
          source="mprotect(2) ERRORS (EACCES: the memory cannot be given the specified access)", tier="linux")
def test_exec_on_noexec_mount_file_is_eacces(tmp_path: Path, memsys_env: Environment,
                                             run_in_child: RunInChild) -> None:
    directory, must_mount = noexec_directory(memsys_env, str(tmp_path), run_in_child)
    outcome = run_in_child(_mprotect_exec_on_noexec_file, directory, must_mount)
    got = outcome.result()
    assert got == errno.EACCES, f"mprotect(PROT_READ|PROT_EXEC) returned errno {errno.errorcode.get(got, got)}"


# --- what each protection allows ----------------------------------------------------------

PROTS = {
    "none": C.PROT_NONE,
    "read": C.PROT_READ,
    "write": C.PROT_WRITE,
    "read_write": RW,
    "exec": C.PROT_EXEC,
    "read_exec": C.PROT_READ | C.PROT_EXEC,
    "write_exec": C.PROT_WRITE | C.PROT_EXEC,
    "read_write_exec": RW | C.PROT_EXEC,
}
# Reads where the granted bit is not PROT_READ are their own semantics (below).
_IMPLIED_READ = {"write", "write_exec", "exec"}
MATRIX = [pytest.param(name, access, id=f"{name}-{access}")
          for name in PROTS for access in ("read", "write", "execute")
          if not (access == "read" and name in _IMPLIED_READ)
          and name != "exec"]  # PROT_EXEC alone may allocate a protection key: child-only, below


@semantic("mprotect.prot.access_follows_protection",
          "After mprotect(prot), a read, write or instruction fetch that prot grants completes and one it "
          "does not grant raises SIGSEGV with SEGV_ACCERR at the accessed address",
          source="mprotect(2) DESCRIPTION; tutorial §3 (Protection Flags)", tier="posix")
@pytest.mark.parametrize(("name", "access"), MATRIX)
def test_protection_decides_access(mapped_pages: MappedPages, name: str, access: str) -> None:
    prot = PROTS[name]
    page = _code_page(mapped_pages, prot)
    if access == "read":
        granted = readable(prot)
        observed = probe.read(page.addr)
    elif access == "write":
        granted = bool(prot & C.PROT_WRITE)
        observed = probe.write(page.addr, RET[0])  # rewrites the ret's first byte: the page stays runnable
    else:
        granted = executable(prot)
        observed = probe.execute(page.addr)
    assert observed == (None if granted else _accerr(page.addr)), (
        f"{access} of a {C.prot_name(prot)} page: expected {'success' if granted else _accerr(page.addr)}, "
        f"got {observed or 'success'}")


@semantic("mprotect.prot.write_only_readable_x86_64",
          "PROT_WRITE without PROT_READ may allow reads on x86_64 (its page tables cannot express "
          "write-only), so a read of a PROT_WRITE or PROT_WRITE|PROT_EXEC page completes",
          source="mmap(2) NOTES (on some architectures PROT_WRITE implies PROT_READ)", tier="linux")
@requires("arch:x86_64")
@pytest.mark.parametrize("name", ["write", "write_exec"])
def test_write_only_page_is_readable_on_x86_64(mapped_pages: MappedPages, name: str) -> None:
    page = _code_page(mapped_pages, PROTS[name])
    assert probe.read(page.addr) is None


@semantic("mprotect.prot.write_only_readable_arm64_ppc64",
          "PROT_WRITE without PROT_READ allows reads on arm64 and powerpc too: their protection maps have no "
          "write-only entry (arm64: VM_WRITE is PAGE_READONLY until the copy-on-write fault, VM_SHARED|VM_WRITE "
          "is PAGE_SHARED; powerpc: PAGE_COPY and PAGE_SHARED), so a read of a PROT_WRITE or "
          "PROT_WRITE|PROT_EXEC page completes",
          source="mmap(2) NOTES (on some architectures PROT_WRITE implies PROT_READ); arch/arm64/mm/mmap.c "
                 "protection_map; arch/powerpc/include/asm/pgtable.h (__P010 PAGE_COPY)", tier="linux")
@requires("arch:aarch64|ppc64le|ppc64")
@pytest.mark.parametrize("name", ["write", "write_exec"])
def test_write_only_page_is_readable_on_arm64_and_ppc64(mapped_pages: MappedPages, name: str) -> None:
    page = _code_page(mapped_pages, PROTS[name])
    assert probe.read(page.addr) is None


def _exec_only_accesses(addr: int) -> tuple[Fault | None, Fault | None, Fault | None]:
    libc.mprotect(addr, PAGE, C.PROT_EXEC)
    return probe.read(addr), probe.write(addr, RET[0]), probe.execute(addr)


@semantic("mprotect.prot.exec_only_read_x86_64",
          "A PROT_EXEC-only page runs code and refuses writes (SEGV_ACCERR); on x86_64 it is also readable, "
          "except that where protection keys are enabled (cpu flags pku+ospke) Linux makes it execute-only: "
          "reads and writes then raise SIGSEGV with SEGV_PKUERR at the address",
          source="mmap(2) NOTES; pkeys(7) (execute-only memory)", tier="linux")
@requires("arch:x86_64")
def test_exec_only_page(mapped_pages: MappedPages, run_in_child: RunInChild) -> None:
    page = _code_page(mapped_pages, RW)
    # In a child: the execute-only protection key the kernel may allocate is per process.
    read, write, execute = run_in_child(_exec_only_accesses, page.addr).result()
    pkuerr = Fault(signal.SIGSEGV, C.SEGV_PKUERR, page.addr)
    expected = (pkuerr, pkuerr, None) if PKEY_EXEC_ONLY else (None, _accerr(page.addr), None)
    assert (read, write, execute) == expected


# --- the tutorial's stages and example ----------------------------------------------------------

@semantic("mprotect.seed.rw_to_read_keeps_data",
          "After mprotect(PROT_READ) of a read-write buffer, the data written before can still be read "
          "and a write raises SIGSEGV (SEGV_ACCERR at the address)",
          source="tutorial §3 (Memory Protection Stages 1-2)", tier="posix")
def test_seed_stage_read_only(mapped_pages: MappedPages) -> None:
    buf = mapped_pages(1)
    assert buf.write(0, ord("A")) is None
    buf.protect(C.PROT_READ)
    assert buf.read(0) == ord("A")
    assert buf.write(0, ord("B")) == _accerr(buf.addr)
    assert buf.read(0) == ord("A")


@semantic("mprotect.seed.read_to_none_blocks_all",
          "After mprotect(PROT_NONE) of a read-only buffer, both a read and a write raise SIGSEGV "
          "(SEGV_ACCERR at the address)",
          source="tutorial §3 (Memory Protection Stages 2-3)", tier="posix")
def test_seed_stage_none(mapped_pages: MappedPages) -> None:
    buf = mapped_pages(1)
    buf.write(0, ord("A"))
    buf.protect(C.PROT_READ)
    buf.protect(C.PROT_NONE)
    assert buf.read(0) == _accerr(buf.addr)
    assert buf.write(0, ord("a")) == _accerr(buf.addr)


@semantic("mprotect.seed.example_write_sigsegv",
          "The tutorial's example: after strcpy into a read-write page and mprotect(PROT_READ), the string is "
          "still readable and a plain store to memory[0] delivers SIGSEGV (SEGV_ACCERR at memory) to the "
          "process; the tutorial's handler only turns that signal into _exit(0)",
          source="tutorial §3 (Example)", tier="posix")
def test_seed_example(mapped_pages: MappedPages, expect_signal: ExpectSignal) -> None:
    memory = mapped_pages(1)
    memory.buffer[:6] = b"Hello\0"
    memory.protect(C.PROT_READ)
    assert bytes(memory.buffer[:5]) == b"Hello"

    def store() -> None:
        memory.buffer[0] = ord("h")

    expect_signal(signal.SIGSEGV, store, code=C.SEGV_ACCERR, addr=memory.addr)


# --- VMAs and lengths -----------------------------------------------------------------------

def _vmas(start: int, end: int) -> list[tuple[int, int, str]]:
    return [(e.start, e.end, e.perms) for e in procfs.read_maps() if e.start < end and e.end > start]


@semantic("mprotect.vma.split_middle_page",
          "mprotect of the middle page of a read-write mapping splits it into three mappings: read-write, "
          "the new protection, read-write, as /proc/self/maps shows",
          source="mprotect(2) ERRORS (ENOMEM: the three-mapping example); proc(5) /proc/PID/maps",
          tier="linux")
def test_middle_page_splits_vma(arena: Arena) -> None:
    region = arena.map(1, 3)  # PROT_NONE arena pages on both sides: no merging with neighbours
    region.protect(C.PROT_READ, PAGE, PAGE)
    assert _vmas(region.addr, region.end) == [
        (region.page(0), region.page(1), "rw-p"),
        (region.page(1), region.page(2), "r--p"),
        (region.page(2), region.end, "rw-p"),
    ]


@semantic("mprotect.vma.restore_merges",
          "Giving the middle page its old protection back merges the three mappings into one again",
          source="Linux mm/mprotect.c (vma_merge in mprotect_fixup)", tier="impl")
def test_restoring_protection_merges_vmas(arena: Arena) -> None:
    region = arena.map(1, 3)
    region.protect(C.PROT_READ, PAGE, PAGE)
    region.protect(RW, PAGE, PAGE)
    assert _vmas(region.addr, region.end) == [(region.addr, region.end, "rw-p")]


@semantic("mprotect.length.rounds_up_to_page",
          "mprotect with a length of one byte changes the protection of the whole page containing it, "
          "and only that page",
          source="mprotect(2) DESCRIPTION (containing any part of the address range)", tier="posix")
def test_partial_length_protects_whole_page(mapped_pages: MappedPages) -> None:
    region = mapped_pages(2)
    libc.mprotect(region.addr, 1, C.PROT_READ)
    last_of_first = region.addr + PAGE - 1
    assert probe.write(last_of_first, 1) == _accerr(last_of_first)
    assert probe.write(region.page(1), 1) is None


# --- ranges with holes, empty and wrapping ranges ---------------------------------------------

@semantic("mprotect.hole.applied_up_to_hole",
          "mprotect of a range that runs into a hole fails with ENOMEM after changing the pages before the "
          "hole: they refuse writes (maps r--p), while the mapping after the hole keeps its protection",
          source="Linux mm/mprotect.c (do_mprotect_pkey applies VMA by VMA, stops at the first gap)", tier="impl")
def test_protection_applied_up_to_the_hole(arena: Arena) -> None:
    before = arena.map(8, 2)
    arena.hole(10, 1)
    after = arena.map(11, 1)
    fails_with(errno.ENOMEM, libc.mprotect, before.addr, 4 * PAGE, C.PROT_READ)
    for addr in (before.addr, before.end - 1):
        assert probe.write(addr, 1) == _accerr(addr)
    assert _vmas(before.addr, before.end) == [(before.addr, before.end, "r--p")]
    assert probe.write(after.addr, 1) is None


@semantic("mprotect.hole.leading_hole_changes_nothing",
          "mprotect of a range that starts in a hole fails with ENOMEM and changes nothing after it",
          source="mprotect(2) ERRORS (ENOMEM); Linux mm/mprotect.c", tier="linux")
def test_leading_hole_changes_nothing(arena: Arena) -> None:
    arena.hole(8, 1)
    region = arena.map(9, 2)
    fails_with(errno.ENOMEM, libc.mprotect, arena.page(8), 3 * PAGE, C.PROT_READ)
    assert probe.write(region.addr, 1) is None and probe.write(region.end - 1, 1) is None


@semantic("mprotect.length_zero.succeeds_unmapped",
          "mprotect with length 0 succeeds, even at an unmapped (aligned) address, and changes nothing",
          source="Linux mm/mprotect.c (if (!len) return 0); mprotect(2)", tier="impl")
def test_zero_length_succeeds(arena: Arena) -> None:
    arena.hole(4, 1)
    region = arena.map(5, 1)
    libc.mprotect(arena.page(4), 0, C.PROT_READ)
    libc.mprotect(region.addr, 0, C.PROT_READ)
    assert probe.write(region.addr, 1) is None
    assert procfs.vma_at(arena.page(4)) is None


@semantic("mprotect.errors.enomem_range_wraps",
          "mprotect fails with ENOMEM when addr+len wraps around the end of the address space",
          source="Linux mm/mprotect.c (end <= start: -ENOMEM); mprotect(2) ERRORS (ENOMEM)", tier="linux")
def test_wrapping_range_is_enomem(mapped_pages: MappedPages) -> None:
    region = mapped_pages(1)
    fails_with(errno.ENOMEM, libc.mprotect, region.addr, (1 << 64) - region.addr + PAGE, C.PROT_READ)
    assert probe.write(region.addr, 1) is None


# --- PROT_SEM, PROT_GROWSDOWN, PROT_GROWSUP -------------------------------------------------

@semantic("mprotect.prot_sem.accepted_ignored",
          "PROT_SEM is accepted on x86_64 and aarch64 and changes nothing: PROT_READ|PROT_SEM gives the pages "
          "exactly PROT_READ (writes SEGV_ACCERR, maps r--p)",
          source="asm-generic/mman-common.h PROT_SEM; arch_validate_prot", tier="linux")
def test_prot_sem_is_accepted_and_ignored(mapped_pages: MappedPages) -> None:
    region = mapped_pages(2)
    libc.mprotect(region.addr, region.length, C.PROT_READ | C.PROT_SEM)
    for addr in (region.addr, region.end - 1):
        assert probe.read(addr) is None
        assert probe.write(addr, 1) == _accerr(addr)
    assert _vmas(region.addr, region.end) == [(region.addr, region.end, "r--p")]


@semantic("mprotect.growsdown.einval_without_growsdown_mapping",
          "PROT_GROWSDOWN on a mapping not made with MAP_GROWSDOWN fails with EINVAL and changes nothing",
          source="mprotect(2) PROT_GROWSDOWN; ERRORS (EINVAL)", tier="linux")
def test_growsdown_on_plain_mapping_is_einval(mapped_pages: MappedPages) -> None:
    region = mapped_pages(1)
    fails_with(errno.EINVAL, libc.mprotect, region.addr, PAGE, C.PROT_READ | C.PROT_GROWSDOWN)
    assert probe.write(region.addr, 1) is None


@semantic("mprotect.growsdown.extends_to_mapping_start",
          "PROT_GROWSDOWN on a MAP_GROWSDOWN mapping extends the change down to the start of the mapping: "
          "every page from its first to the one asked for refuses writes, the page above keeps its protection",
          source="mprotect(2) PROT_GROWSDOWN (extends to the start of a grow-down mapping)", tier="linux")
def test_growsdown_extends_to_the_start(arena: Arena) -> None:
    region = arena.map(20, 4, flags=C.MAP_PRIVATE | C.MAP_ANONYMOUS | C.MAP_GROWSDOWN)
    libc.mprotect(region.page(2), PAGE, C.PROT_READ | C.PROT_GROWSDOWN)
    for addr in (region.addr, region.page(1), region.page(2) + PAGE - 1):
        assert probe.write(addr, 1) == _accerr(addr)
    assert probe.write(region.page(3), 1) is None
    assert [perms for _s, _e, perms in _vmas(region.addr, region.end)] == ["r--p", "rw-p"]


@semantic("mprotect.growsup.einval_without_growsup_mapping",
          "PROT_GROWSUP fails with EINVAL on architectures without upward-growing mappings (all but parisc), "
          "even on a MAP_GROWSDOWN mapping",
          source="mprotect(2) PROT_GROWSUP; Linux mm/mprotect.c (VM_GROWSUP is 0 there)", tier="impl")
def test_growsup_is_einval(arena: Arena) -> None:
    region = arena.map(30, 2, flags=C.MAP_PRIVATE | C.MAP_ANONYMOUS | C.MAP_GROWSDOWN)
    fails_with(errno.EINVAL, libc.mprotect, region.addr, PAGE, C.PROT_READ | C.PROT_GROWSUP)
    assert probe.write(region.addr, 1) is None


# --- file mappings and program text ---------------------------------------------------------

@semantic("mprotect.private_readonly_file.write_is_private",
          "mprotect(PROT_READ|PROT_WRITE) of a MAP_PRIVATE mapping of a file opened O_RDONLY succeeds (unlike "
          "MAP_SHARED): a write lands in a private copy, the file stays unchanged",
          source="mprotect(2) ERRORS (EACCES only for MAP_SHARED); mmap(2) MAP_PRIVATE (copy-on-write)",
          tier="posix")
def test_write_on_private_mapping_of_readonly_file(tmp_path: Path, mapped_pages: MappedPages) -> None:
    path = tmp_path / "readonly.bin"
    path.write_bytes(b"\x11" * (2 * PAGE))
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        region = mapped_pages(2, C.PROT_READ, C.MAP_PRIVATE, fd=fd)
        region.protect(RW)
        for addr in (region.addr, region.end - 1):
            assert probe.write(addr, 0x22) is None
        assert (region.buffer[0], region.buffer[region.length - 1], region.buffer[PAGE]) == (0x22, 0x22, 0x11)
        assert os.pread(fd, 2 * PAGE, 0) == b"\x11" * (2 * PAGE)
    finally:
        os.close(fd)


def _make_text_writable() -> tuple[str, str, bool]:
    """In a child: the first r-xp mapping of the running program, made PROT_READ|PROT_WRITE|PROT_EXEC."""
    exe = os.readlink("/proc/self/exe")
    text = next(e for e in procfs.read_maps() if e.path == exe and e.perms == "r-xp")
    smaps = procfs.smaps_at(text.start)
    may_write = smaps is not None and "mw" in smaps.vmflags
    libc.mprotect(text.start, text.end - text.start, RW | C.PROT_EXEC)
    after = procfs.vma_at(text.start)
    return text.perms, after.perms if after else "", may_write


@semantic("mprotect.text.private_text_can_become_writable",
          "The program's own text (a private mapping of its executable, which the kernel opened read-only) "
          "has VM_MAYWRITE, so mprotect(PROT_READ|PROT_WRITE|PROT_EXEC) of it succeeds: maps shows rwxp "
          "(checked in a child)",
          source="mprotect(2) (EACCES only for a MAP_SHARED file opened read-only); mmap(2) MAP_PRIVATE",
          tier="linux")
def test_program_text_can_become_writable(run_in_child: RunInChild) -> None:
    assert run_in_child(_make_text_writable).result() == ("r-xp", "rwxp", True)
