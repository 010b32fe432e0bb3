"""``memsyscalls layout``: the seed's process-layout picture drawn from a real process.

The oracle is the kernel's own /proc/PID/maps of the same process, read while it still
lives: the fresh brk helper is held at its ptrace exit stop (layout.fresh_child) and a
Python child waits on its stdin. The seed's top-to-bottom order is expected only where
the environment lays memory out the classic way (top-down mmap; not gVisor, whose stack
may lie below the mmap area), which is computed, not inferred from the output.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import resource
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_memsyscalls.cli import layout
from pytest_memsyscalls.environment.fingerprint import detect
from pytest_memsyscalls.environment.needs import unmet_needs
from pytest_memsyscalls.kernel.procfs import MapsEntry, parse_maps, parse_proc_stat, read_maps, read_proc_stat

DATA = Path(__file__).parent / "data" / "proc"


def run_layout(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = layout.cmd_layout(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def layout_json(capsys: pytest.CaptureFixture[str], pid: int) -> dict[str, Any]:
    status, out, err = run_layout(capsys, str(pid), "--json")
    assert (status, err) == (0, ""), err
    result: dict[str, Any] = json.loads(out)
    return result


def vmas(document: dict[str, Any]) -> list[tuple[int, int, str, str]]:
    return [(r["start"], r["end"], r["perms"], r["path"]) for r in document["regions"] if r["kind"] != "kernel"]


def maps_rows(entries: list[MapsEntry]) -> list[tuple[int, int, str, str]]:
    return sorted(((e.start, e.end, e.perms, e.path) for e in entries), reverse=True)


def skip_unless_ptrace() -> None:
    """The fresh child is started under ptrace: under strace -f or gdb, or with Yama's
    ptrace_scope 3, that is an environment fact, not a failure."""
    reasons = unmet_needs(("ptrace",), detect())
    if reasons:
        pytest.skip("; ".join(reasons))


@pytest.fixture
def helper_pid() -> Iterator[int]:
    skip_unless_ptrace()
    with layout.fresh_child() as pid:
        yield pid


@pytest.fixture
def python_child() -> Iterator[int]:
    """Another kind of process: an interpreter blocked reading its stdin (its maps stay still)."""
    child = subprocess.Popen([sys.executable, "-c", "import sys; print('ready', flush=True); sys.stdin.read()"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
        yield child.pid
    finally:
        child.kill()
        child.wait()
        for stream in (child.stdin, child.stdout):
            if stream is not None:
                stream.close()


# --- the regions are the kernel's -------------------------------------------------------------------

def test_json_regions_are_exactly_the_maps_of_the_same_process(helper_pid: int,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    document = layout_json(capsys, helper_pid)
    assert vmas(document) == maps_rows(read_maps(helper_pid))


def test_any_readable_process_is_drawn_from_its_maps(python_child: int, capsys: pytest.CaptureFixture[str]) -> None:
    document = layout_json(capsys, python_child)
    assert vmas(document) == maps_rows(read_maps(python_child))
    assert document["exe"] == os.path.realpath(sys.executable)


def test_fresh_child_is_classified_as_the_seed_draws_it(helper_pid: int,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    document = layout_json(capsys, helper_pid)
    maps = read_maps(helper_pid)
    stat = read_proc_stat(helper_pid)
    kinds = {r["kind"] for r in document["regions"]}
    assert {"text", "data", "heap", "stack", "library", "kernel"} <= kinds
    (heap,) = [e for e in maps if e.path == "[heap]"]
    assert document["program_break"] == heap.end  # the helper's sbrk(65536) made the heap
    (text,) = [r for r in document["regions"] if r["kind"] == "text"]
    if stat.start_code:  # gVisor prints 0: the text is then the executable's r-x mapping
        assert text["start"] <= stat.start_code < text["end"]
        assert heap.start == stat.start_brk
    assert text["perms"][:3] == "r-x" and text["path"] == document["exe"]
    (kernel,) = [r for r in document["regions"] if r["kind"] == "kernel"]
    if os.uname().machine == "x86_64":
        assert kernel["start"] == 0xFFFF_8000_0000_0000


def _classic_layout_reason() -> str | None:
    """Why this environment does not lay memory out as the seed draws it, or None."""
    if detect().sandbox.kind == "gvisor":
        return "gvisor"
    with contextlib.suppress(OSError):
        if Path("/proc/sys/vm/legacy_va_layout").read_text().strip() != "0":
            return "unsupported:top-down mmap layout (vm.legacy_va_layout is set)"
    if resource.getrlimit(resource.RLIMIT_STACK)[0] == resource.RLIM_INFINITY:
        return "unsupported:top-down mmap layout (RLIMIT_STACK is unlimited: mmap grows up from TASK_SIZE/3)"
    return None


def _rank(section: str) -> int:
    return layout.SEED_ORDER.index(section)


def test_sections_come_in_the_seed_order(helper_pid: int, capsys: pytest.CaptureFixture[str]) -> None:
    reason = _classic_layout_reason()
    if reason and reason != "gvisor":
        pytest.skip(reason)
    document = layout_json(capsys, helper_pid)
    # The seed does not draw the vDSO/vvar pages; Linux puts them among the libraries or above the stack.
    # gVisor may put the stack below the mmap area: there only the rest of the order is expected.
    ignored = {"vdso", "vsyscall"} | ({"stack"} if reason == "gvisor" else set())
    sections = [s["section"] for s in document["sections"] if s["section"] not in ignored]
    assert sections == sorted(sections, key=_rank), sections
    assert [s for s in dict.fromkeys(sections)] == [s for s in layout.SEED_ORDER if s in sections]


def test_text_form_draws_boxes_top_down_in_address_order(helper_pid: int,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    document = layout_json(capsys, helper_pid)
    status, text, _ = run_layout(capsys, str(helper_pid))
    assert status == 0
    titles = [line.strip("│ ").rstrip() for line in text.splitlines()
              if line.startswith("│ ") and line.strip("│ ").rstrip() in layout.SECTION_TITLES.values()]
    assert titles == [s["title"] for s in document["sections"]]
    positions = [text.index(f"{start:016x}-{end:016x} {perms}") for start, end, perms, _ in vmas(document)]
    assert positions == sorted(positions)  # each maps line once, highest address first
    assert f"program break {document['program_break']:#x}" in text


def test_default_command_inspects_a_fresh_child_and_leaves_none() -> None:
    skip_unless_ptrace()
    result = subprocess.run([sys.executable, "-m", "pytest_memsyscalls", "layout", "--json"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert (result.returncode, result.stderr) == (0, "")
    document = json.loads(result.stdout)
    assert Path(document["exe"]).name == "memsys-brk-helper"
    with contextlib.suppress(FileNotFoundError):  # gone, or the pid was reused by another program
        assert not read_proc_stat(document["pid"]).comm.startswith("memsys-brk")
    assert "[heap]" in {r["path"] for r in document["regions"]}


# --- classification without stat addresses (gVisor), on a recorded text -------------------------------

def test_zero_stat_fields_are_derived_from_the_executable_mappings() -> None:
    maps = parse_maps((DATA / "gvisor" / "maps").read_text())
    stat = parse_proc_stat((DATA / "gvisor" / "stat").read_text())
    exe = "/root/.pyenv/versions/3.11.7/bin/python3.11"
    regions, notes, program_break, _ = layout.classify(maps, stat, exe, None, "x86_64")
    kinds = {(r.start, r.kind) for r in regions}
    assert (0x55F14BA9B000, "text") in kinds and (0x55F14BA9E000, "data") in kinds
    assert (0x55F14BA9F000, "heap") in kinds and program_break == 0x55F14BC92000
    assert (0x7FCA8AAC7000, "shm") in kinds
    assert any("stat shows 0" in note for note in notes)


# --- errors: one line, exit status 1 ----------------------------------------------------------------

def _missing_pid() -> int:
    """A pid no process can have: above pid_max (or PID_MAX_LIMIT, 2**22, where pid_max is not
    exposed, as in gVisor)."""
    try:
        return int(Path("/proc/sys/kernel/pid_max").read_text()) + 1
    except OSError:
        return (1 << 22) + 1


def test_no_such_process(capsys: pytest.CaptureFixture[str]) -> None:
    pid = _missing_pid()
    assert run_layout(capsys, str(pid)) == (1, "", f"memsyscalls layout: no such process: {pid}\n")


def test_error_through_the_command_line_has_no_traceback() -> None:
    result = subprocess.run([sys.executable, "-m", "pytest_memsyscalls", "layout", str(_missing_pid())],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1 and result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and "no such process" in result.stderr


def _layout_as_nobody(pid: int) -> tuple[bool, int, str]:
    """As uid 65534: may this user open the maps (the environment's rule, probed first)? And
    what does the command do?"""
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)
    try:
        with open(f"/proc/{pid}/maps", "rb"):
            readable = True
    except PermissionError:
        readable = False
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        status = layout.cmd_layout([str(pid)])
    return readable, status, err.getvalue()


def test_permission_denied(run_in_child: Any) -> None:
    """Linux refuses another user's maps (ptrace access mode); gVisor lets them be read, and then
    the command must simply work."""
    if os.geteuid() != 0:
        pytest.skip("needs:root (to drop to uid 65534 in a child and read the parent's maps)")
    readable, status, err = run_in_child(_layout_as_nobody, os.getpid()).result()
    if readable:
        assert (status, err) == (0, "")
    else:
        assert status == 1
        assert err.startswith(f"memsyscalls layout: permission denied reading /proc/{os.getpid()}/maps")
        assert err.count("\n") == 1


def _kernel_thread() -> int | None:
    with contextlib.suppress(OSError, ValueError):
        stat = read_proc_stat(2)
        if int(stat.fields[6]) & 0x00200000:  # field 9 flags: PF_KTHREAD
            return 2
    return None


def test_kernel_thread_has_no_layout(capsys: pytest.CaptureFixture[str]) -> None:
    pid = _kernel_thread()
    if pid is None:
        pytest.skip("unsupported:kernel thread (pid 2 is not a PF_KTHREAD process here)")
    status, out, err = run_layout(capsys, str(pid))
    assert (status, out) == (1, "")
    assert err == f"memsyscalls layout: process {pid} has no user address space (a kernel thread, or it is exiting)\n"
