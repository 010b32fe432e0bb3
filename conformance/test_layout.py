"""The process layout the tutorial draws, checked in fresh processes.

The pytest process is a poor subject (the interpreter, the arena and other tests' mappings
live in it), so every claim is checked in a new process of the compiled helper
(memsys-brk-helper, a small C program): it is started under ptrace and inspected twice,
at the exec stop (the image exactly as the kernel mapped it, before any user code ran) and
at the exit stop (after the dynamic loader and the helper's own steps, with the address
space still intact). /proc/PID/maps, /proc/PID/stat and PTRACE_PEEKDATA are the oracles;
the helper's ELF headers say where its text, data and bss must be. Expectations that
depend on the system (PIE or not, randomize_va_space, the ADDR_NO_RANDOMIZE personality,
the legacy mmap layout) are computed from it.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import struct
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pytest_memsyscalls import requires, semantic
from pytest_memsyscalls.environment.fingerprint import Environment
from pytest_memsyscalls.kernel import constants as C
from pytest_memsyscalls.kernel import libc
from pytest_memsyscalls.kernel.libc import PAGE_SIZE as PAGE
from pytest_memsyscalls.kernel.native import brk_helper_path
from pytest_memsyscalls.kernel.probe import Fault
from pytest_memsyscalls.kernel.procfs import MapsEntry, ProcStat, read_maps, read_proc_stat
from pytest_memsyscalls.memory.brk import run as run_helper

HELPER = str(brk_helper_path())
HEAP_STEPS = ("sbrk:65536", "vma:cur-1")
NON_PIE_LINK_ADDRESS_X86_64 = 0x400000
KERNEL_HALF_X86_64 = 0xFFFF_8000_0000_0000
USER_TOP_X86_64 = 1 << 47  # the default user address-space window, also with 5-level paging
ABOVE_STACK_SPECIAL = {"[vvar]", "[vvar_vclock]", "[vdso]", "[vsyscall]"}

ET_EXEC, ET_DYN = 2, 3
PT_LOAD, PT_GNU_RELRO = 1, 0x6474E552
PF_X, PF_W = 1, 2


def _page_down(addr: int) -> int:
    return addr - addr % PAGE


def _page_up(addr: int) -> int:
    return _page_down(addr + PAGE - 1)


# --- the ELF file: where the kernel must put things ------------------------------------------

@dataclass(frozen=True)
class Segment:
    type: int
    flags: int
    offset: int
    vaddr: int
    filesz: int
    memsz: int


@dataclass(frozen=True)
class Elf:
    """The few ELF64 header facts the layout follows from."""

    type: int
    entry: int
    segments: tuple[Segment, ...]

    @classmethod
    def read(cls, path: str) -> Elf:
        data = Path(path).read_bytes()
        if data[:4] != b"\x7fELF" or data[4] != 2:
            raise ValueError(f"{path} is not a 64-bit ELF file")
        e_type, _, _, entry, phoff = struct.unpack_from("<HHIQQ", data, 16)
        phentsize, phnum = struct.unpack_from("<HH", data, 54)
        segments = tuple(Segment(*struct.unpack_from("<IIQQ8xQQ", data, phoff + i * phentsize))
                         for i in range(phnum))
        return cls(e_type, entry, segments)

    @property
    def pie(self) -> bool:
        return self.type == ET_DYN

    @property
    def loads(self) -> list[Segment]:
        return [s for s in self.segments if s.type == PT_LOAD]

    @property
    def data_segment(self) -> Segment:
        """The writable PT_LOAD: .data in its file-backed part, .bss after it."""
        (segment,) = [s for s in self.loads if s.flags & PF_W]
        return segment

    @property
    def relro_end(self) -> int:
        """End of the part of the data segment ld.so makes read-only after relocation."""
        return max((s.vaddr + s.memsz for s in self.segments if s.type == PT_GNU_RELRO), default=0)


HELPER_ELF = Elf.read(HELPER)


# --- a fresh process under ptrace --------------------------------------------------------------

class Traced:
    """A program started with PTRACE_TRACEME: stopped at its exec, then at its exit."""

    def __init__(self, path: str, args: tuple[str, ...]) -> None:
        self.path = path
        self._out_r, out_w = os.pipe2(os.O_CLOEXEC)
        self.pid = os.fork()
        if self.pid == 0:  # the child: only system calls, then exec; never back into pytest
            try:
                os.dup2(out_w, 1)
                with suppress(OSError):  # refused: no exec stop, which __init__ reports
                    libc.ptrace(C.PTRACE_TRACEME, 0)
                os.execv(path, [path, *args])
            finally:
                os._exit(127)
        os.close(out_w)
        self.reaped = False
        status = self._wait()
        if not (os.WIFSTOPPED(status) and os.WSTOPSIG(status) == signal.SIGTRAP):
            raise RuntimeError(f"{path} did not stop at its exec (status {status:#x})")
        libc.ptrace(C.PTRACE_SETOPTIONS, self.pid, 0, C.PTRACE_O_TRACEEXIT | C.PTRACE_O_EXITKILL)

    def _wait(self) -> int:
        _, status = os.waitpid(self.pid, 0)
        if os.WIFEXITED(status) or os.WIFSIGNALED(status):
            self.reaped = True
        return status

    def maps(self) -> list[MapsEntry]:
        return read_maps(self.pid)

    def stat(self) -> ProcStat:
        return read_proc_stat(self.pid)

    def peek(self, addr: int) -> int:
        """The 8-byte word at addr in the tracee (PTRACE_PEEKDATA)."""
        return libc.ptrace(C.PTRACE_PEEKDATA, self.pid, addr) & ((1 << 64) - 1)

    def run_to_exit(self) -> None:
        """Let it run to its exit stop (its address space is still there), passing signals on."""
        deliver = 0
        while True:
            libc.ptrace(C.PTRACE_CONT, self.pid, 0, deliver)
            status = self._wait()
            if self.reaped:
                raise RuntimeError(f"{self.path} ended before its exit stop (status {status:#x})")
            if status >> 8 == signal.SIGTRAP | (C.PTRACE_EVENT_EXIT << 8):
                return
            deliver = os.WSTOPSIG(status)

    def finish(self) -> dict[str, Any]:
        """Let it exit; its JSON report."""
        libc.ptrace(C.PTRACE_CONT, self.pid, 0, 0)
        while not self.reaped:
            self._wait()
        chunks = []
        while chunk := os.read(self._out_r, 65536):
            chunks.append(chunk)
        report: dict[str, Any] = json.loads(b"".join(chunks))
        return report

    def close(self) -> None:
        if not self.reaped:
            os.kill(self.pid, signal.SIGKILL)
            self._resume_quietly()  # a tracee sitting in a ptrace stop may not wake for SIGKILL alone
            while not self.reaped:
                if os.WIFSTOPPED(self._wait()):  # the exit stop may still be reported: let it go
                    self._resume_quietly()
        os.close(self._out_r)

    def _resume_quietly(self) -> None:
        try:
            libc.ptrace(C.PTRACE_CONT, self.pid, 0, 0)
        except ProcessLookupError:
            pass  # not in a ptrace stop (ESRCH)


@contextmanager
def traced(path: str, *args: str) -> Iterator[Traced]:
    process = Traced(path, args)
    try:
        yield process
    finally:
        process.close()


def _image(maps: list[MapsEntry], path: str) -> list[MapsEntry]:
    real = os.path.realpath(path)
    return [e for e in maps if e.path == real]


def _load_base(maps: list[MapsEntry], path: str, elf: Elf) -> int:
    """Where the kernel put the file: 0 for ET_EXEC, the randomized bias for PIE."""
    first = min(_image(maps, path), key=lambda e: e.start)
    assert first.offset == 0, f"the lowest mapping of {path} does not map its first page: {first}"
    return first.start - _page_down(elf.loads[0].vaddr)


def _vma_at(maps: list[MapsEntry], addr: int) -> MapsEntry:
    for entry in maps:
        if entry.contains(addr):
            return entry
    raise AssertionError(f"no VMA contains {addr:#x}:\n" + "\n".join(map(str, maps)))


def _named(maps: list[MapsEntry], name: str) -> MapsEntry:
    found = [e for e in maps if e.path == name]
    assert len(found) == 1, f"expected one {name} VMA:\n" + "\n".join(map(str, maps))
    return found[0]


@dataclass(frozen=True)
class HelperLayout:
    """One helper process seen at its exit stop, with its ELF-derived addresses."""

    maps: list[MapsEntry]
    base: int
    report: dict[str, Any]
    bss_zero_words: list[int]

    def at(self, vaddr: int) -> int:
        return self.base + vaddr


@pytest.fixture(scope="module")
def helper_layout() -> HelperLayout:
    data = HELPER_ELF.data_segment
    with traced(HELPER, *HEAP_STEPS) as process:
        base = _load_base(process.maps(), HELPER, HELPER_ELF)
        bss_start = base + data.vaddr + data.filesz
        bss_end = base + data.vaddr + data.memsz
        words = [process.peek(addr) for addr in (bss_start, _page_up(bss_start), bss_end - 8)]
        process.run_to_exit()
        maps = process.maps()
        report = process.finish()
    return HelperLayout(maps, base, report, words)


def _randomize_va_space() -> int | None:
    try:
        return int(Path("/proc/sys/kernel/randomize_va_space").read_text())
    except (OSError, ValueError):
        return None


def _personality() -> int:
    """The current persona; -1 where the query is refused (gVisor answers EINVAL)."""
    try:
        return libc.personality(C.PERSONALITY_QUERY)
    except OSError:
        return -1


def _legacy_mmap_layout() -> str | None:
    """Why mmap would grow bottom-up (below the program) here, or None (arch/x86/mm/mmap.c)."""
    try:
        if Path("/proc/sys/vm/legacy_va_layout").read_text().strip() != "0":
            return "vm.legacy_va_layout is set"
    except OSError:
        pass
    if resource.getrlimit(resource.RLIMIT_STACK)[0] == resource.RLIM_INFINITY:
        return "RLIMIT_STACK is unlimited"
    return None


def _need_classic_mmap_layout(env: Environment) -> str | None:
    """Linux's top-down layout puts the mmap area just below the stack gap; gVisor
    randomises the mmap base and the stack independently, so there the stack lies
    below the libraries in some runs and above them in others."""
    if env.sandbox.kind == "gvisor":
        return "unsupported:gvisor (mmap base and stack are placed independently, in either order)"
    reason = _legacy_mmap_layout()
    return f"unsupported:top-down mmap layout ({reason}: mmap grows up from TASK_SIZE/3)" if reason else None


def _need_stat_addresses(_: object) -> str | None:
    """Probe the oracle on this process first: gVisor prints 0 for every address field."""
    if read_proc_stat().start_code == 0:
        return "unsupported:/proc/PID/stat address fields (start_code is 0 in /proc/self/stat)"
    return None


# --- the order of the regions ------------------------------------------------------------------

@semantic("layout.order.text_data_bss_heap_mmap_stack",
          "In a fresh process the regions lie in the tutorial's order from low to high addresses: text, "
          "data, bss, heap, the mmap area (shared libraries), stack",
          source="tutorial (Process Memory Layout); proc(5) /proc/PID/maps", tier="linux")
@requires(_need_classic_mmap_layout)
@requires("ptrace")
def test_region_order(helper_layout: HelperLayout) -> None:
    maps, data = helper_layout.maps, HELPER_ELF.data_segment
    text = _vma_at(maps, helper_layout.at(HELPER_ELF.entry))
    data_vma = _vma_at(maps, helper_layout.at(data.vaddr + data.filesz - 1))
    bss = _vma_at(maps, helper_layout.at(data.vaddr + data.memsz - 1))
    heap = _named(maps, "[heap]")
    libc_vma = min((e for e in maps if os.path.basename(e.path).startswith("libc.so")), key=lambda e: e.start)
    stack = _named(maps, "[stack]")
    starts = [text.start, data_vma.start, bss.start, heap.start, libc_vma.start, stack.start]
    assert starts == sorted(starts) and len(set(starts)) == 6, "\n".join(map(str, maps))


@semantic("layout.text.read_exec_not_writable",
          "The text (the code at the entry point) is mapped from the executable readable and executable, "
          "not writable",
          source="tutorial (Text Segment: read-only, shareable)", tier="posix")
@requires("ptrace")
def test_text_is_read_exec(helper_layout: HelperLayout) -> None:
    text = _vma_at(helper_layout.maps, helper_layout.at(HELPER_ELF.entry))
    assert text.perms[:3] == "r-x" and text.path == os.path.realpath(HELPER)


@semantic("layout.data.writable_not_executable",
          "Initialized data is mapped from the executable read-write, not executable (the RELRO part ld.so "
          "made read-only after relocation aside)",
          source="tutorial (Data Segment); ELF PT_LOAD/PT_GNU_RELRO", tier="linux")
@requires("ptrace")
def test_data_is_read_write(helper_layout: HelperLayout) -> None:
    data = HELPER_ELF.data_segment
    last_data_byte = data.vaddr + data.filesz - 1
    assert last_data_byte >= HELPER_ELF.relro_end  # precondition: .data reaches past RELRO
    vma = _vma_at(helper_layout.maps, helper_layout.at(last_data_byte))
    assert vma.perms == "rw-p" and vma.path == os.path.realpath(HELPER)


@semantic("layout.bss.anonymous_zero_filled",
          "The bss past the last file-backed page of data is an anonymous read-write mapping directly after "
          "the data, and the whole bss (including the tail of the data's last page) is zero when the "
          "program starts",
          source="tutorial (BSS Segment: initialized to 0 by kernel); ELF p_memsz > p_filesz", tier="posix")
@requires("ptrace")
def test_bss_is_anonymous_and_zero(helper_layout: HelperLayout) -> None:
    data = HELPER_ELF.data_segment
    vma = _vma_at(helper_layout.maps, helper_layout.at(data.vaddr + data.memsz - 1))
    assert vma.start == _page_up(helper_layout.at(data.vaddr + data.filesz))
    assert vma.perms == "rw-p" and vma.inode == 0 and vma.path in ("", "[heap]")
    assert helper_layout.bss_zero_words == [0, 0, 0]


@semantic("layout.heap.above_image_break_at_end",
          "The heap ([heap]) lies above the program image, and the program break is inside it at its "
          "page-rounded end",
          source="tutorial (Heap, Program break); brk(2)", tier="linux")
@requires("ptrace")
def test_heap_above_image_with_break_at_end(helper_layout: HelperLayout) -> None:
    heap = _named(helper_layout.maps, "[heap]")
    image_end = max(e.end for e in _image(helper_layout.maps, HELPER))
    data = HELPER_ELF.data_segment
    assert heap.start >= max(image_end, _page_up(helper_layout.at(data.vaddr + data.memsz)))
    brk = helper_layout.report["steps"][-1]["brk_after"]
    assert heap.start < brk <= heap.end == _page_up(brk)
    assert helper_layout.report["steps"][-1]["vma"]["path"] == "[heap]"  # the helper saw it too


@semantic("layout.stack.top_below_kernel_half",
          "The stack ([stack]) is the highest region of user space (only the kernel-provided [vvar]/[vdso] "
          "pages and the legacy [vsyscall] page lie above it) and ends below the kernel half",
          source="tutorial (Stack at high addresses, 0x7FFF... on x86-64)", tier="linux")
@requires(_need_classic_mmap_layout)
@requires("ptrace")
def test_stack_on_top(helper_layout: HelperLayout) -> None:
    stack = _named(helper_layout.maps, "[stack]")
    above = [e for e in helper_layout.maps if e.start > stack.start and e.path not in ABOVE_STACK_SPECIAL]
    assert above == [], "\n".join(map(str, above))
    assert stack.end <= (USER_TOP_X86_64 if C.ARCH == "x86_64" else 1 << 63)


@semantic("layout.kernel.not_accessible",
          "Kernel space (0xffff800000000000 and up on x86-64) is not accessible from user space: a read "
          "there raises SIGSEGV (SEGV_MAPERR at the address)",
          source="tutorial (KERNEL SPACE: not accessible from user space)", tier="linux")
@requires("arch:x86_64")
def test_kernel_half_not_readable() -> None:
    # The helper parses numbers with strtoll: an address >= 2**63 is given as its negative.
    result = run_helper(f"read:-{(1 << 64) - KERNEL_HALF_X86_64:#x}")
    assert result[0].addr == KERNEL_HALF_X86_64
    assert result[0].fault == Fault(signal.SIGSEGV, C.SEGV_MAPERR, KERNEL_HALF_X86_64)


# --- where the text is: PIE, ASLR ------------------------------------------------------------------

def _text_base(path: str, elf: Elf) -> int:
    with traced(path) as process:
        maps = process.maps()
    return min(e.start for e in _image(maps, path)) if not elf.pie else _load_base(maps, path, elf)


@semantic("layout.text.pie_not_at_0x400000",
          "Accurate where the tutorial says text starts at 0x400000: a position-independent executable (ELF "
          "ET_DYN) is loaded at a page-aligned base chosen by the kernel, at or above vm.mmap_min_addr and "
          "not at 0x400000",
          source="tutorial (Low Addresses 0x400000 on x86-64); execve(2), ELF ET_DYN", tier="linux")
@requires(f"path:{HELPER}", lambda env: None if HELPER_ELF.pie else "needs:PIE helper (it is ET_EXEC)")
@requires("ptrace")
def test_pie_text_not_at_0x400000(memsys_env: Any) -> None:
    base = _text_base(HELPER, HELPER_ELF)
    minimum = memsys_env.vm.mmap_min_addr or PAGE
    assert base % PAGE == 0 and base >= minimum and base != NON_PIE_LINK_ADDRESS_X86_64


def _non_pie_executable() -> tuple[str, Elf] | None:
    for candidate in ("/usr/bin/python3", sys.executable, "/bin/bash", "/usr/bin/perl"):
        path = os.path.realpath(candidate)
        try:
            elf = Elf.read(path)
        except (OSError, ValueError, struct.error):
            continue
        if elf.type == ET_EXEC and os.access(path, os.X_OK):
            return path, elf
    return None


@semantic("layout.text.non_pie_at_link_address",
          "A non-PIE executable (ELF ET_EXEC) is mapped at its link address whatever the ASLR setting: "
          "0x400000 with the default x86-64 linker script, the tutorial's picture",
          source="tutorial (Low Addresses 0x400000 on x86-64); ELF ET_EXEC", tier="linux")
@requires("path:/proc/self/maps", lambda env: None if _non_pie_executable() else "needs:a non-PIE (ET_EXEC) executable")
@requires("ptrace")
def test_non_pie_text_at_link_address() -> None:
    found = _non_pie_executable()
    assert found is not None
    path, elf = found
    assert _text_base(path, elf) == _page_down(elf.loads[0].vaddr)


def _need_aslr(_: object) -> str | None:
    value = _randomize_va_space()
    if value is None:
        return "unsupported:/proc/sys/kernel/randomize_va_space (missing: ASLR setting unknown)"
    if value == 0:
        return "needs:ASLR (kernel.randomize_va_space is 0)"
    if _personality() & C.ADDR_NO_RANDOMIZE:
        return "needs:ASLR (the ADDR_NO_RANDOMIZE personality is set)"
    return None


@semantic("layout.aslr.pie_base_differs_between_runs",
          "With ASLR on (randomize_va_space > 0), two runs of the same PIE executable get different text bases",
          source="proc(5) /proc/sys/kernel/randomize_va_space", tier="linux")
@requires(lambda env: None if HELPER_ELF.pie else "needs:PIE helper", _need_aslr)
@requires("ptrace")
def test_pie_base_randomized() -> None:
    assert _text_base(HELPER, HELPER_ELF) != _text_base(HELPER, HELPER_ELF)


# --- /proc/PID/stat ------------------------------------------------------------------------------------

@semantic("layout.procstat.addresses_in_order",
          "/proc/PID/stat places the regions in the same order: start_code < end_code <= start_data < "
          "end_data <= start_brk; start_data..end_data is the file-backed data of the ELF data segment, "
          "start_brk is where [heap] starts and start_stack lies inside [stack]",
          source="proc(5) /proc/PID/stat fields 26-28, 45-47", tier="linux")
@requires("path:/proc/self/stat", _need_stat_addresses)
@requires("ptrace")
def test_proc_stat_addresses() -> None:
    with traced(HELPER, *HEAP_STEPS) as process:
        process.run_to_exit()
        stat, maps = process.stat(), process.maps()
    heap, stack = _named(maps, "[heap]"), _named(maps, "[stack]")
    text = [e for e in _image(maps, HELPER) if e.executable]
    assert stat.start_data is not None and stat.end_data is not None and stat.start_brk is not None
    assert stat.start_code < stat.end_code <= stat.start_data < stat.end_data <= stat.start_brk
    assert stat.start_brk == heap.start
    base, data = _load_base(maps, HELPER, HELPER_ELF), HELPER_ELF.data_segment
    assert (stat.start_data, stat.end_data) == (base + data.vaddr, base + data.vaddr + data.filesz)
    assert any(e.start <= stat.start_code < e.end or stat.start_code <= e.start < stat.end_code for e in text)
    assert stack.contains(stat.start_stack)


# --- mmap addresses ----------------------------------------------------------------------------------

@semantic("layout.mmap.page_aligned",
          "mmap returns page-aligned addresses whatever the length asked for",
          source="tutorial (Best Practices 4: mmap returns page-aligned addresses); mmap(2)", tier="posix")
@pytest.mark.parametrize("length", [1, PAGE - 1, PAGE, PAGE + 1, 3 * PAGE + 17])
def test_mmap_page_aligned(length: int) -> None:
    addr = libc.mmap(0, length, C.PROT_READ, C.MAP_PRIVATE | C.MAP_ANONYMOUS)
    try:
        assert addr % PAGE == 0
    finally:
        libc.munmap(addr, length)
