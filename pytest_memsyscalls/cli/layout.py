"""``memsyscalls layout [PID] [--json]``: a process's memory layout drawn the way the tutorial draws it.

The tutorial ("Process Memory Layout") draws kernel space, the stack, the mmap area with
shared libraries and anonymous mappings, the heap with the program break, bss, data
and text, top = high addresses, with made-up addresses. This command draws the same
picture from the kernel's own account of a real process: /proc/PID/maps (the VMAs),
/proc/PID/smaps (Rss) and /proc/PID/stat (start_code, end_code, start_data, end_data,
start_brk, start_stack). Regions are listed strictly by address, so a system whose
layout differs from the tutorial's (gVisor puts [vvar] among the libraries; a legacy
bottom-up mmap layout puts libraries below the stack gap) shows the difference
instead of hiding it.

Without a PID it inspects a fresh process that shows the classic layout: the
package's brk helper (a small C program), started under ptrace, told to grow its
heap with sbrk(65536) and held at its exit stop, where its address space is still
complete and /proc/PID/stat still readable. The process is killed afterwards.

Classification (the issue's rules): text = the executable's r-x mapping
(start_code..end_code); data = its rw-p mapping; bss = the anonymous rw-p mapping
right after data (or, when .bss fits into the last data page, the tail of the data
VMA from end_data: said in a note); heap = [heap], whose end is the current program
break rounded up to a page (start_brk when there is no heap yet); mmap area =
everything else between heap and stack (libraries, other files, anonymous memory,
SysV segments); stack = [stack]; [vvar]/[vdso]/[vsyscall] by name. Linux prints 0 for
the stat address fields to readers without ptrace access and gVisor always does:
then text/data/bss are derived from the executable's mappings alone and a note says so.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import textwrap
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field

from ..kernel import constants as C
from ..kernel import libc, procfs
from ..kernel.procfs import MapsEntry, ProcStat

__all__ = ["Layout", "Region", "cmd_layout", "fresh_child", "read_layout", "render_text"]

# Where kernel space begins, by architecture (the canonical upper half).
KERNEL_SPACE_START = {
    "x86_64": 0xFFFF_8000_0000_0000,
    "aarch64": 0xFFFF_0000_0000_0000,  # 48-bit VA; 52-bit kernels start lower still
}
SPECIAL = {"[vvar]": "vvar", "[vvar_vclock]": "vvar", "[vdso]": "vdso", "[vsyscall]": "vsyscall"}
# Top to bottom, as the tutorial draws them; "image" is the rest of the executable file (ELF headers,
# .rodata, RELRO), which the tutorial folds into its text segment.
SECTION_TITLES = {
    "kernel": "KERNEL SPACE (not accessible from user space)",
    "vsyscall": "vsyscall page (legacy, in the kernel half, readable by user space)",
    "stack": "Stack (grows downward \u25bc)",
    "vdso": "vDSO / vvar (kernel-provided code and data)",
    "mmap": "Memory Mapped Region (mmap(): shared libraries, files, anonymous mappings)",
    "heap": "Heap (grows upward \u25b2, managed by brk/sbrk)",
    "bss": "BSS Segment (uninitialized data, zeroed by the kernel)",
    "data": "Data Segment (initialized data)",
    "text": "Text Segment (code, read-only, shareable)",
}
SEED_ORDER = ("kernel", "vsyscall", "stack", "vdso", "mmap", "heap", "bss", "data", "text")
FRESH_CHILD_STEPS = ("sbrk:65536",)


@dataclass(frozen=True)
class Region:
    """One VMA of the process (or the synthetic kernel-space range) and what it is."""

    start: int
    end: int
    perms: str
    offset: int
    path: str
    kind: str  # text, image, relro, data, bss, heap, stack, vvar, vdso, vsyscall, library, file, anon, shm, kernel
    section: str  # one of SEED_ORDER
    rss_kb: int | None = None
    note: str = ""

    @property
    def size(self) -> int:
        return self.end - self.start


@dataclass
class Layout:
    """A process's regions, highest address first, with the facts they were classified by."""

    pid: int
    arch: str
    exe: str
    stat: dict[str, int | None]
    program_break: int | None
    break_source: str
    regions: list[Region]  # highest first
    notes: list[str] = field(default_factory=list)
    subject: str = ""

    def sections(self) -> list[tuple[str, list[Region]]]:
        """Runs of consecutive regions (by address) that belong to the same section."""
        runs: list[tuple[str, list[Region]]] = []
        for region in self.regions:
            if runs and runs[-1][0] == region.section:
                runs[-1][1].append(region)
            else:
                runs.append((region.section, [region]))
        return runs

    def as_dict(self) -> dict[str, object]:
        return {
            "pid": self.pid,
            "subject": self.subject,
            "arch": self.arch,
            "exe": self.exe,
            "stat": self.stat,
            "program_break": self.program_break,
            "break_source": self.break_source,
            "sections": [{"section": name, "title": SECTION_TITLES[name],
                          "regions": [_region_dict(r) for r in regions]} for name, regions in self.sections()],
            "regions": [_region_dict(r) for r in self.regions],
            "notes": self.notes,
        }


def _region_dict(region: Region) -> dict[str, object]:
    return {**asdict(region), "size": region.size}


class LayoutError(Exception):
    """A one-line reason the layout could not be read (exit status 1)."""


# --- reading and classifying ----------------------------------------------------------------------

def _strip_deleted(path: str) -> str:
    return path[: -len(" (deleted)")] if path.endswith(" (deleted)") else path


def _stat_fields(stat: ProcStat) -> dict[str, int | None]:
    return {"start_code": stat.start_code, "end_code": stat.end_code, "start_data": stat.start_data,
            "end_data": stat.end_data, "start_brk": stat.start_brk, "start_stack": stat.start_stack}


def _executable(pid: int, maps: list[MapsEntry], stat: ProcStat) -> str:
    """The executable's path as maps prints it: /proc/PID/exe, else the file holding start_code."""
    with contextlib.suppress(OSError):
        exe = os.readlink(f"/proc/{pid}/exe")
        return _strip_deleted(exe)
    for entry in maps:
        if stat.start_code and entry.contains(stat.start_code) and entry.path.startswith("/"):
            return _strip_deleted(entry.path)
    return ""


def _mmap_kind(entry: MapsEntry) -> str:
    if entry.is_sysv_shm:
        return "shm"
    if not entry.path:
        return "anon"
    name = os.path.basename(_strip_deleted(entry.path))
    if ".so" in name and (name.endswith(".so") or ".so." in name):
        return "library"
    return "file" if entry.path.startswith("/") else "anon"


def classify(maps: list[MapsEntry], stat: ProcStat, exe: str, smaps: dict[tuple[int, int], int] | None = None,
             arch: str = "") -> tuple[list[Region], list[str], int | None, str]:
    """Regions (highest first), notes, the program break and where it came from."""
    notes: list[str] = []
    ordered = sorted(maps, key=lambda e: e.start)
    image = [e for e in ordered if exe and _strip_deleted(e.path) == exe]
    stat_known = bool(stat.start_code or stat.end_code or stat.start_stack)
    if not stat_known:
        notes.append("/proc/PID/stat shows 0 for start_code..start_brk (gVisor always does; Linux does for "
                     "readers without ptrace access): text, data and bss are derived from the executable's "
                     "mappings in /proc/PID/maps alone")
    data_vmas = [e for e in image if e.perms.startswith("rw")]
    data_end = max((e.end for e in data_vmas), default=None)
    heap = next((e for e in ordered if e.path == "[heap]"), None)
    start_brk = stat.start_brk or None
    heap_floor = heap.start if heap else start_brk
    end_data = stat.end_data or None

    regions: list[Region] = []
    bss_seen = False
    for entry in ordered:
        path = entry.path
        kind, section, note = "", "", ""
        rss = smaps.get((entry.start, entry.end)) if smaps else None
        if path in SPECIAL:
            kind = SPECIAL[path]
            section = "vsyscall" if kind == "vsyscall" else "vdso"
        elif path == "[stack]":
            kind, section = "stack", "stack"
        elif path == "[heap]":
            kind, section = "heap", "heap"
            note = f"program break at the end (page-rounded); start_brk {start_brk:#x}" if start_brk else \
                "program break at the end (page-rounded)"
        elif entry in image:
            if entry.executable:
                kind, section = "text", "text"
                if stat_known and stat.start_code and not entry.contains(stat.start_code):
                    note = f"start_code {stat.start_code:#x} is not in this mapping"
            elif entry.writable:
                kind, section = "data", "data"
                if end_data and entry.start < end_data < entry.end:
                    note = (f".data ends at end_data {end_data:#x}; .bss starts there, in this VMA's tail "
                            f"({entry.end - end_data} bytes share the last data page)")
                    bss_seen = True
            elif stat.start_data and entry.contains(stat.start_data):
                kind, section = "relro", "data"
                note = (f"start_data {stat.start_data:#x}: the data segment begins here; ld.so made this part "
                        "(.got, .data.rel.ro) read-only after relocation (RELRO)")
            else:
                kind, section = "image", "text"
                note = "read-only part of the executable file (ELF headers, .rodata, .eh_frame)"
        elif (data_end is not None and entry.start == data_end and not path and entry.perms == "rw-p"
              and (heap_floor is None or entry.end <= heap_floor)):
            kind, section = "bss", "bss"
            note = "anonymous pages of .bss after the file-backed data"
            bss_seen = True
        else:
            kind, section = _mmap_kind(entry), "mmap"
        regions.append(Region(entry.start, entry.end, entry.perms, entry.offset, path, kind, section, rss, note))

    if data_vmas and not bss_seen:
        notes.append("no separate bss mapping: .bss (if any) fits into the data VMA's last page")

    if heap is not None:
        program_break, source = heap.end, "end of [heap] (the break rounded up to a page)"
    elif start_brk:
        program_break, source = start_brk, "start_brk from /proc/PID/stat (no heap yet)"
    else:
        program_break, source = None, "unknown (no [heap] and no start_brk)"
    if heap is None:
        notes.append("no [heap] yet: the break has not moved from start_brk")

    kernel_start = KERNEL_SPACE_START.get(arch)
    if kernel_start is not None:
        regions.append(Region(kernel_start, 1 << 64, "----", 0, "", "kernel", "kernel"))
        # A VMA in the kernel half ([vsyscall]) is drawn inside the kernel box's range but on its own.
    else:
        notes.append(f"kernel space: start address not known for {arch or 'this architecture'}")
    regions.sort(key=lambda r: (r.start, r.kind != "kernel"), reverse=True)
    # The synthetic kernel line goes on top even though [vsyscall] starts above it.
    regions.sort(key=lambda r: r.kind != "kernel")
    return regions, notes, program_break, source


def read_layout(pid: int) -> Layout:
    """The layout of a live process; LayoutError with a one-line reason otherwise."""
    try:
        maps_text = procfs._read(f"/proc/{pid}/maps")
        stat = procfs.read_proc_stat(pid)
    except FileNotFoundError:
        raise LayoutError(f"no such process: {pid}") from None
    except PermissionError:
        raise LayoutError(f"permission denied reading /proc/{pid}/maps (process {pid} belongs to another "
                          "user or is not dumpable)") from None
    except ProcessLookupError:
        raise LayoutError(f"no such process: {pid}") from None
    maps = procfs.parse_maps(maps_text)
    if not maps:
        raise LayoutError(f"process {pid} has no user address space (a kernel thread, or it is exiting)")
    rss: dict[tuple[int, int], int] | None = None
    notes: list[str] = []
    try:
        rss = {(e.maps.start, e.maps.end): e.fields["Rss"] for e in procfs.read_smaps(pid) if "Rss" in e.fields}
    except OSError as error:
        notes.append(f"Rss unavailable: /proc/{pid}/smaps: {error.strerror}")
    arch = os.uname().machine
    exe = _executable(pid, maps, stat)
    regions, more, program_break, source = classify(maps, stat, exe, rss, arch)
    return Layout(pid, arch, exe, _stat_fields(stat), program_break, source, regions, notes + more,
                  subject=f"pid {pid} ({stat.comm})")


# --- a fresh child held at its exit stop ----------------------------------------------------------

@contextlib.contextmanager
def fresh_child(steps: Sequence[str] = FRESH_CHILD_STEPS) -> Iterator[int]:
    """The brk helper (a small C program: the classic text/data/bss/heap/libraries/stack layout) run
    under ptrace with ``steps`` and held at its exit stop; yields its pid; always killed and reaped.

    The exit stop (PTRACE_O_TRACEEXIT) comes before the kernel tears the address space down, so
    maps, smaps and stat describe the process as it was after its last step."""
    from ..kernel.native import brk_helper_path

    helper = str(brk_helper_path())
    devnull = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # the child: system calls and exec only, never back into the caller
        try:
            os.dup2(devnull, 1)
            with contextlib.suppress(OSError):  # refused: the parent finds no exec stop and says so
                libc.ptrace(C.PTRACE_TRACEME, 0)
            os.execv(helper, [helper, *steps])
        finally:
            os._exit(127)
    os.close(devnull)
    reaped = False

    def wait() -> int:
        nonlocal reaped
        _, status = os.waitpid(pid, 0)
        reaped = reaped or os.WIFEXITED(status) or os.WIFSIGNALED(status)
        return status

    try:
        status = wait()
        if reaped or os.WSTOPSIG(status) != signal.SIGTRAP:
            raise LayoutError(f"the brk helper did not stop at its exec (status {status:#x}; is ptrace allowed?)")
        libc.ptrace(C.PTRACE_SETOPTIONS, pid, 0, C.PTRACE_O_TRACEEXIT | C.PTRACE_O_EXITKILL)
        deliver = 0
        while True:
            libc.ptrace(C.PTRACE_CONT, pid, 0, deliver)
            status = wait()
            if reaped:
                raise LayoutError(f"the brk helper ended before its exit stop (status {status:#x})")
            if status >> 8 == signal.SIGTRAP | (C.PTRACE_EVENT_EXIT << 8):
                break
            deliver = os.WSTOPSIG(status)
        yield pid
    finally:
        if not reaped:
            os.kill(pid, signal.SIGKILL)
            while not reaped:
                with contextlib.suppress(OSError):
                    libc.ptrace(C.PTRACE_CONT, pid)  # a tracee in a ptrace stop may need a nudge
                wait()


# --- drawing ----------------------------------------------------------------------------------------

WIDTH = 100


def format_size(size: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            value = size / scale
            return f"{value:.0f} {unit}" if value >= 10 or value == int(value) else f"{value:.1f} {unit}"
    return f"{size} B"


def _line(text: str, inner: int) -> str:
    if len(text) > inner:
        text = text[: inner - 1] + "\u2026"
    return "\u2502 " + text.ljust(inner) + " \u2502"


def _region_line(region: Region) -> str:
    if region.kind == "kernel":
        return f"{region.start:016x}-{(region.end - 1):016x} the upper half of the address space"
    rss = "" if region.rss_kb is None else f" rss {format_size(region.rss_kb * 1024)}"
    label = region.path or f"[{region.kind}]"
    if region.kind not in ("heap", "stack", "vvar", "vdso", "vsyscall") and region.path:
        label = f"{region.kind}: {os.path.basename(region.path) if region.path.startswith('/') else region.path}"
    return f"{region.start:016x}-{region.end:016x} {region.perms} {format_size(region.size):>9}{rss:<14} {label}"


def render_text(layout: Layout) -> str:
    """Boxes in the tutorial's style, top = high addresses, one box per run of one section."""
    inner = WIDTH - 4
    out = [f"Memory layout of {layout.subject or f'pid {layout.pid}'}  [{layout.arch}]  exe {layout.exe or '?'}"]
    previous_start, previous_name = 0, None
    for name, regions in layout.sections():
        top = regions[0].end
        if previous_name not in (None, "kernel", "vsyscall") and previous_start > top:
            gap = previous_start - top
            out.append(f"{'':22}\u2591\u2591 unmapped {format_size(gap)} \u2591\u2591")
        out.append("\u250c" + "\u2500" * (WIDTH - 2) + "\u2510")
        out.append(_line(SECTION_TITLES[name], inner))
        for region in regions:
            out.append(_line("  " + _region_line(region), inner))
            if region.note:
                out.extend(_line("      " + part, inner) for part in textwrap.wrap(region.note, inner - 6))
            if region.kind == "heap" and layout.program_break is not None:
                out.append(_line(f"      \u25b2 program break {layout.program_break:#x}", inner))
        out.append("\u2514" + "\u2500" * (WIDTH - 2) + "\u2518")
        previous_start, previous_name = regions[-1].start, name
    if layout.program_break is not None and not any(r.kind == "heap" for r in layout.regions):
        out.append(f"program break: {layout.program_break:#x} ({layout.break_source})")
    stat = ", ".join(f"{k}={v:#x}" if v else f"{k}=0" for k, v in layout.stat.items())
    out.append(f"/proc/{layout.pid}/stat: {stat}")
    out.extend(f"note: {note}" for note in layout.notes)
    return "\n".join(out)


# --- the command --------------------------------------------------------------------------------------

def cmd_layout(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="memsyscalls layout",
                                     description="the memory layout of a process, drawn the way the tutorial draws it")
    parser.add_argument("pid", nargs="?", type=int,
                        help="process to inspect (default: a fresh brk-helper child held at its exit)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    options = parser.parse_args(list(argv))
    if options.pid is not None and options.pid <= 0:
        parser.error(f"pid must be a positive process id, got {options.pid}")  # exit 2: a bad argument
    try:
        if options.pid is None:
            with fresh_child() as pid:
                layout = read_layout(pid)
            layout.subject = (f"a fresh child, pid {pid} (memsys-brk-helper after sbrk(65536), "
                              "held at its exit stop; killed since)")
        else:
            layout = read_layout(options.pid)
    except LayoutError as error:
        print(f"memsyscalls layout: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"memsyscalls layout: {error.strerror or error}", file=sys.stderr)
        return 1
    if options.json:
        print(json.dumps(layout.as_dict(), indent=2))
    else:
        print(render_text(layout))
    return 0
