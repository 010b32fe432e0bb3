"""Every fixture works, and everything it made is gone after the test: after a pass,
a failure, an error in setup and a KeyboardInterrupt, alone, under ``-n 2``
(pytest-xdist) and under ``--forked`` (pytest-forked). Bad arguments to every
factory raise a clear exception and leave nothing behind.

The inner project records each object its tests make; its conftest checks, once
the test's teardown is over (or at session end, after a KeyboardInterrupt), with
the kernel's own oracles that the object is gone: msync(MS_ASYNC) fails with
ENOMEM over an unmapped range, IPC_STAT fails on a removed segment, the /dev/shm
file is absent, the child pid is no longer ours. The outer test re-checks the
objects that outlive a process (segments, names, processes) after the run.
"""

from __future__ import annotations

import ctypes
import errno
import json
import math
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from xdist_barrier import BARRIER

from pytest_memsyscalls.kernel import constants as C
from pytest_memsyscalls.kernel import libc, procfs
from pytest_memsyscalls.memory import child as child_module
from pytest_memsyscalls.memory.child import ChildOutcome
from pytest_memsyscalls.memory.mapping import Arena, Mapping
from pytest_memsyscalls.memory.shm import PosixShm, ShmSegment
from pytest_memsyscalls.plugin import leaks

if sys.version_info >= (3, 11):
    from builtins import ExceptionGroup
else:  # pytest depends on the backport there
    from exceptiongroup import ExceptionGroup

pytest.importorskip("xdist")
pytest.importorskip("pytest_forked")

INNER_CONFTEST = r'''
import json, os, pytest
from pytest_memsyscalls import libc, constants as C

RECORD = os.environ["MEMSYS_RECORD"]
MODES = os.environ.get("MEMSYS_MODES", "pass,fail").split(",")
made = []


def _gone(kind, value):
    if kind == "mapping":
        addr, length = value
        try:
            libc.msync(addr, length, C.MS_ASYNC)
        except OSError as error:
            return error.errno == 12  # ENOMEM: nothing mapped there
        return False
    if kind == "segment":
        try:
            libc.shm_stat(value)
        except OSError:
            return True
        return False
    if kind == "name":
        return not os.path.exists("/dev/shm" + value)
    if kind == "fd":
        fd, target = value
        try:
            return os.readlink(f"/proc/self/fd/{fd}") != target
        except OSError:
            return True
    if kind == "child":
        try:
            os.waitpid(value, os.WNOHANG)
        except ChildProcessError:
            return True
        return False
    raise AssertionError(kind)


def _check(where):
    with open(RECORD, "a") as out:
        for kind, value, test in made:
            out.write(json.dumps({"kind": kind, "value": value, "test": test, "where": where,
                                  "gone": _gone(kind, value), "pid": os.getpid()}) + "\n")
    made.clear()


@pytest.fixture
def rec(request):
    def record(kind, value):
        made.append((kind, value, request.node.name))
    return record


@pytest.fixture(params=MODES)
def finish(request):
    """How the test ends: passing, failing, or with a KeyboardInterrupt."""
    def end():
        if request.param == "fail":
            assert False, "deliberate failure after making objects"
        if request.param == "interrupt":
            raise KeyboardInterrupt
    return end


@pytest.hookimpl(hookwrapper=True, trylast=True)
def pytest_runtest_teardown(item):
    yield
    _check("teardown")


@pytest.hookimpl(hookwrapper=True)
def pytest_sessionfinish(session):
    yield
    _check("sessionfinish")
'''

INNER_TESTS = r'''
import os, re, signal, stat
from pytest_memsyscalls import Fault, libc, constants as C, procfs



def test_mapped_pages(mapped_pages, rec, finish):
    m = mapped_pages(3, prot=C.PROT_READ)
    rec("mapping", [m.addr, m.length])
    assert (m.pages, m.length) == (3, 3 * os.sysconf("SC_PAGE_SIZE"))
    assert m.read(0) == 0
    assert m.write(0, 1) == Fault(11, C.SEGV_ACCERR, m.addr)
    finish()


def test_mapped_pages_remap_dontunmap(mapped_pages, rec, finish):
    m = mapped_pages(1)
    old = m.addr
    m.write(0, 7)
    new = m.remap(m.length, C.MREMAP_MAYMOVE | C.MREMAP_DONTUNMAP)
    rec("mapping", [old, m.length])
    rec("mapping", [new, m.length])
    assert new != old and procfs.vma_at(old) is not None and procfs.vma_at(new) is not None
    finish()


def test_mapped_file(mapped_file, rec, finish):
    m = mapped_file(b"hello")
    rec("mapping", [m.addr, m.length])
    rec("fd", [m.fd, str(m.path)])
    assert bytes(m.buffer[:5]) == b"hello"
    m.buffer[0] = ord("j")
    m.sync()
    assert m.path.read_bytes() == b"jello"
    finish()


def test_arena(arena, fault_probe, rec, finish):
    rec("mapping", [arena.addr, arena.length])
    inside = arena.map(4, 2)
    assert inside.addr == arena.page(4) and inside.write(0, 7) is None and inside.read(0) == 7
    arena.hole(10)
    assert fault_probe.read(arena.page(10)) == Fault(11, C.SEGV_MAPERR, arena.page(10))
    assert fault_probe.read(arena.page(11)) == Fault(11, C.SEGV_ACCERR, arena.page(11))
    finish()


def test_locked_region(locked_region, rec, finish):
    before = procfs.status_kb(procfs.read_status(), "VmLck")
    m = locked_region(2)
    rec("mapping", [m.addr, m.length])
    assert all("lo" in view.vmflags for view in m.vma())
    assert procfs.status_kb(procfs.read_status(), "VmLck") >= before + 2 * m.length // 2 // 1024
    finish()


def test_shm_segment(shm_segment, rec, finish):
    seg = shm_segment(2 * 4096, key="unique")
    rec("segment", seg.shmid)
    st = seg.stat()
    assert st.permissions == 0o600 and st.mode & 0o077 == 0
    assert (st.cpid, st.segsz, st.key) == (os.getpid(), 8192, seg.key)
    addr = seg.attach()
    rec("mapping", [addr, 8192])
    assert seg.stat().nattch == 1
    finish()


def test_posix_shm(posix_shm, rec, finish):
    shared = posix_shm(4096)
    rec("name", shared.name)
    rec("fd", [shared.fd, shared.path])
    assert re.fullmatch(rf"/memsys-{os.getpid()}-[0-9a-f]{{32}}", shared.name)
    info = os.stat(shared.path)
    assert stat.S_IMODE(info.st_mode) == 0o600 and info.st_size == 4096
    m = shared.map()
    rec("mapping", [m.addr, m.length])
    m.buffer[0] = 42
    assert os.pread(shared.fd, 1, 0) == bytes([42])
    finish()


def test_fault_probe(fault_probe, mapped_pages, finish):
    m = mapped_pages(1, prot=C.PROT_NONE)
    assert fault_probe.read(m.addr) == Fault(11, C.SEGV_ACCERR, m.addr)
    finish()


def _spawn_grandchild_and_return_pid():
    r, w = os.pipe()
    if os.fork() == 0:
        os.read(r, 1)  # blocks until killed with its process group
        os._exit(0)
    return os.getpid()


def test_run_in_child(run_in_child, rec, finish):
    outcome = run_in_child(_spawn_grandchild_and_return_pid)
    rec("child", outcome.pid)
    assert outcome.returned and outcome.value == outcome.pid != os.getpid()
    changed = run_in_child(lambda: os.setpgid(0, 0) or os.getpgrp())
    assert changed.value != os.getpgrp()
    finish()


def test_expect_signal(expect_signal, mapped_pages, rec, finish):
    m = mapped_pages(1, prot=C.PROT_READ)

    def store():
        m.buffer[0] = 1

    outcome = expect_signal(signal.SIGSEGV, store, code=C.SEGV_ACCERR, addr=m.addr)
    rec("child", outcome.pid)
    assert outcome.fault == Fault(11, C.SEGV_ACCERR, m.addr)
    finish()


def test_memsys_env_and_page_size(memsys_env, page_size, finish):
    assert page_size == os.sysconf("SC_PAGE_SIZE") == memsys_env.page_size
    assert memsys_env.identity.euid == os.geteuid()
    finish()
'''

SETUP_ERROR_TESTS = r'''
import pytest
from pytest_memsyscalls import constants as C
from pytest_memsyscalls.kernel.constants import RW


@pytest.fixture
def broken(mapped_pages, mapped_file, arena, shm_segment, posix_shm, run_in_child, rec):
    m = mapped_pages(2)
    rec("mapping", [m.addr, m.length])
    f = mapped_file(b"x")
    rec("mapping", [f.addr, f.length])
    rec("mapping", [arena.addr, arena.length])
    rec("segment", shm_segment().shmid)
    rec("name", posix_shm().name)
    rec("child", run_in_child(int).pid)
    raise RuntimeError("setup broke after making objects")


def test_never_runs(broken):
    raise AssertionError("unreachable")
'''

EXPECTED_KINDS = {"mapping", "segment", "name", "fd", "child"}
TESTS = 11


def _project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, modes: str) -> Path:
    record = pytester.path / "record.jsonl"
    monkeypatch.setenv("MEMSYS_RECORD", str(record))
    monkeypatch.setenv("MEMSYS_MODES", modes)
    pytester.makeconftest(INNER_CONFTEST)
    pytester.makepyfile(test_inner=INNER_TESTS)
    return record


def _records(record: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in record.read_text().splitlines()]


def _assert_all_gone(record: Path, where: str = "teardown",
                     kinds: frozenset[str] = frozenset(EXPECTED_KINDS)) -> list[dict[str, Any]]:
    """Every recorded object was gone when checked inside the run, and the ones that
    can outlive a process are still gone now."""
    rows = _records(record)
    assert {row["kind"] for row in rows} == kinds
    still_there = [row for row in rows if not row["gone"]]
    assert not still_there, still_there
    assert {row["where"] for row in rows} == {where}
    for row in rows:
        if row["kind"] == "segment":
            with pytest.raises(OSError):
                libc.shm_stat(row["value"])
        elif row["kind"] == "name":
            assert not os.path.exists("/dev/shm" + row["value"])
        elif row["kind"] == "child":
            assert not Path(f"/proc/{row['value']}").exists() or _not_running(row["value"])
    return rows


def _not_running(pid: int) -> bool:
    try:
        state = (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0])
    except OSError:
        return True
    return state in ("Z", "X")


@pytest.mark.parametrize("extra", [[], ["-n", "2"], ["--forked"]], ids=["plain", "xdist", "forked"])
def test_every_fixture_works_and_cleans_up_after_pass_failure_and_setup_error(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, extra: list[str]) -> None:
    """Each fixture test runs once passing and once failing after it made its objects;
    a fixture that makes one object of each kind and then raises gives a setup error."""
    record = _project(pytester, monkeypatch, "pass,fail")
    pytester.makepyfile(test_setup_error=SETUP_ERROR_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:randomly", *extra)
    # no teardown errors: the leak guard found nothing left behind
    result.assert_outcomes(passed=TESTS, failed=TESTS, errors=1)
    result.stdout.fnmatch_lines(["*RuntimeError: setup broke after making objects*"])
    rows = _assert_all_gone(record)
    tests = {row["test"] for row in rows}
    assert {"test_never_runs", "test_shm_segment[pass]", "test_shm_segment[fail]"} <= tests
    assert len([row for row in rows if row["test"] == "test_never_runs"]) == 6


def test_teardown_after_keyboard_interrupt(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """KeyboardInterrupt skips the test's own teardown; the session's teardown at
    exit must still destroy what the fixtures made."""
    record = _project(pytester, monkeypatch, "interrupt")
    result = pytester.runpytest_subprocess("-p", "no:randomly", "test_inner.py::test_shm_segment",
                                           "test_inner.py::test_posix_shm")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*KeyboardInterrupt*"])
    rows = _assert_all_gone(record, where="sessionfinish", kinds=frozenset({"segment", "mapping"}))
    assert {row["test"] for row in rows} == {"test_shm_segment[interrupt]"}  # the session stopped there


# --- two xdist workers at once ---------------------------------------------------------



CONCURRENT_TESTS = r'''
import json, os
from barrier import barrier

MANY = 50


def _make(shm_segment, posix_shm, me, other):
    barrier(me + "-start", other + "-start")
    made = []
    for i in range(MANY):
        seg = shm_segment(4096, key="unique" if i % 2 else 0)
        st = seg.stat()
        made.append({"worker": me, "shmid": seg.shmid, "key": seg.key, "mode": st.mode & 0o777,
                     "cpid": st.cpid})
    names = [posix_shm(4096) for _ in range(5)]
    made += [{"worker": me, "name": s.name, "mode": os.stat(s.path).st_mode & 0o777} for s in names]
    with open(os.environ["MEMSYS_RECORD"], "a") as out:
        out.write(json.dumps(made) + "\n")
    barrier(me + "-made", other + "-made")  # both sets exist at once


def test_a(shm_segment, posix_shm):
    _make(shm_segment, posix_shm, "a", "b")


def test_b(shm_segment, posix_shm):
    _make(shm_segment, posix_shm, "b", "a")
'''


def test_two_xdist_workers_never_collide_and_nothing_is_world_readable(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    barriers = pytester.mkdir("barriers")
    for name in ("a-start", "b-start", "a-made", "b-made"):
        os.mkfifo(barriers / name, 0o600)
    record = pytester.path / "record.jsonl"
    monkeypatch.setenv("MEMSYS_BARRIER_DIR", str(barriers))
    monkeypatch.setenv("MEMSYS_RECORD", str(record))
    pytester.makepyfile(barrier=BARRIER, test_concurrent=CONCURRENT_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:randomly", "-n", "2", "test_concurrent.py")
    result.assert_outcomes(passed=2)  # each test also passed the leak guard: the other's objects were not blamed
    rows = [row for line in record.read_text().splitlines() for row in json.loads(line)]
    segments = [row for row in rows if "shmid" in row]
    names = [row for row in rows if "name" in row]
    assert len(segments) == 100 and len(names) == 10
    assert len({row["shmid"] for row in segments}) == 100
    keyed = [row["key"] for row in segments if row["key"] != C.IPC_PRIVATE]
    assert len(keyed) == 50 and len(set(keyed)) == 50
    assert len({row["cpid"] for row in segments}) == 2  # two worker processes made them
    assert len({row["name"] for row in names}) == 10
    assert all(row["mode"] == 0o600 for row in rows)
    for row in segments:
        with pytest.raises(OSError):
            libc.shm_stat(row["shmid"])
    assert not any(os.path.exists("/dev/shm" + row["name"]) for row in names)


# --- bad input ------------------------------------------------------------------------

@pytest.fixture
def nothing_leaks() -> Any:
    """Snapshot of segments, memsys names and children before; the same after.

    Only objects this process or its forked children made count: another pytest
    session on the machine (an xdist worker, a parallel run) makes its own meanwhile."""
    before = leaks.snapshot()
    yield
    after = leaks.snapshot()
    ours = {os.getpid()} | {pid for _, pid in child_module.forked_children}
    new = [obj for ident, obj in after.objects().items() if ident not in before.idents()]
    assert [obj.describe() for obj in new
            if isinstance(obj, leaks.Child) or getattr(obj, "cpid", getattr(obj, "pid", None)) in ours] == []
    assert after.locked_kb == before.locked_kb


def _closed_fd() -> int:
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    return r


@pytest.mark.parametrize(("args", "kwargs", "error"), [
    ((0,), {}, ValueError),
    ((-1,), {}, ValueError),
    ((1 << 40,), {}, ValueError),
    (("1",), {}, TypeError),
    ((True,), {}, TypeError),
    ((1,), {"flags": C.MAP_PRIVATE | C.MAP_ANONYMOUS | C.MAP_FIXED, "addr": 0x10000}, ValueError),
], ids=["zero", "negative", "absurd", "str", "bool", "fixed-outside"])
def test_mapped_pages_rejects_bad_arguments(mapped_pages: Callable[..., Mapping], nothing_leaks: None,
                                            args: tuple[Any, ...], kwargs: dict[str, Any], error: type) -> None:
    with pytest.raises(error, match="mapped_pages"):
        mapped_pages(*args, **kwargs)


@pytest.mark.parametrize(("kwargs", "expected"), [
    ({"flags": C.MAP_ANONYMOUS}, {errno.EINVAL}),  # neither MAP_SHARED nor MAP_PRIVATE
    # an unknown flag under MAP_SHARED_VALIDATE: mmap(2) names EOPNOTSUPP; anonymous mappings get EINVAL
    ({"flags": C.MAP_SHARED_VALIDATE | C.MAP_ANONYMOUS | 0x200000}, {errno.EINVAL, errno.EOPNOTSUPP}),
    ({"flags": C.MAP_SHARED, "fd": "closed"}, {errno.EBADF}),
], ids=["no-type", "validate-unknown-flag", "closed-fd"])
def test_mapped_pages_passes_the_kernels_errno(mapped_pages: Callable[..., Mapping], nothing_leaks: None,
                                               kwargs: dict[str, Any], expected: set[int]) -> None:
    """The fixture does not second-guess the kernel (it is a conformance tool): the
    kernel's refusal arrives as an OSError that names the call and its arguments."""
    if kwargs.get("fd") == "closed":
        kwargs = {**kwargs, "fd": _closed_fd()}
    with pytest.raises(OSError, match=r"mmap\(") as caught:
        mapped_pages(1, **kwargs)
    assert caught.value.errno in expected


@pytest.mark.parametrize(("kwargs", "error"), [
    ({"content": "text"}, TypeError),
    ({"size": -1}, ValueError),
    ({"content": b"abc", "size": 2}, ValueError),
    ({"pages": 0}, ValueError),
    ({"pages": -3}, ValueError),
])
def test_mapped_file_rejects_bad_input(mapped_file: Callable[..., Mapping], nothing_leaks: None,
                                       kwargs: dict[str, Any], error: type) -> None:
    with pytest.raises(error, match=r"mapped_file|mapped_pages|mmap\("):
        mapped_file(**kwargs)


@pytest.mark.parametrize(("page", "pages"), [(-1, 1), (63, 2), (0, 0), (0, -1), (64, 1)])
def test_arena_rejects_pages_outside(arena: Arena, nothing_leaks: None, page: int, pages: int) -> None:
    with pytest.raises(ValueError, match="outside"):
        arena.map(page, pages)
    with pytest.raises(ValueError, match="outside"):
        arena.hole(page, pages)


@pytest.mark.parametrize("index", [-1, -64, 64, 65])
def test_arena_page_rejects_indexes_outside(arena: Arena, nothing_leaks: None, index: int) -> None:
    """Page 64 of a 64-page arena would be the first address past it."""
    with pytest.raises(IndexError, match=f"page {index} is outside"):
        arena.page(index)
    assert arena.page(0) == arena.addr and arena.page(63) == arena.end - libc.PAGE_SIZE


@pytest.mark.parametrize(("call", "args"), [
    ("refill", (64,)), ("refill", (-1,)), ("remap", (0, 1, 1, 64)), ("remap", (-1, 1, 1)), ("remap", (63, 1, 2)),
])
def test_arena_index_taking_methods_reject_pages_outside(arena: Arena, nothing_leaks: None, call: str,
                                                         args: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="outside"):
        getattr(arena, call)(*args)


def test_remap_dontunmap_owns_both_ranges(nothing_leaks: None) -> None:
    """MREMAP_DONTUNMAP leaves the old range mapped and maps a new one: the Mapping
    stays on the old range and unmap() unmaps both (oracle: /proc/self/maps)."""
    mapping = Mapping.create(2)
    old = mapping.addr
    mapping.write(0, 7)
    new = mapping.remap(mapping.length, C.MREMAP_MAYMOVE | C.MREMAP_DONTUNMAP)
    assert new != old and mapping.addr == old
    assert mapping.also_owned == [(new, 2 * libc.PAGE_SIZE)]
    assert procfs.vma_at(old) is not None and procfs.vma_at(new) is not None
    assert mapping.read(0) == 0  # the old range stays mapped, empty; the contents moved
    mapping.unmap()
    assert procfs.vma_at(old) is None and procfs.vma_at(new) is None
    assert not libc.owned.covers(new, 1)
    mapping.unmap()  # still idempotent


def test_arena_map_of_a_closed_fd_is_ebadf(arena: Arena, nothing_leaks: None) -> None:
    with pytest.raises(OSError) as caught:
        arena.map(0, 1, flags=C.MAP_SHARED, fd=_closed_fd())
    assert caught.value.errno == errno.EBADF
    assert arena.map(0, 1).write(0, 1) is None  # the arena page is still usable afterwards


def test_mappings_made_meanwhile_do_not_take_an_arena_hole(arena: Arena, nothing_leaks: None) -> None:
    """A test that relies on a hole being unmapped must not lose it to a mapping another
    thread makes meanwhile. Such a mapping has no address: the kernel gives it the highest
    free range it fits in, which without free space above the arena was often the hole (in
    a fresh process the 7th 8 kB mapping took it). An arena keeps free space twice its size
    above it, and as many mappings as fit there all land above the arena."""
    size = 2 * libc.PAGE_SIZE
    above = arena.end + Arena.GUARD
    assert procfs.maps_overlapping(above, above + Arena.FREE_ABOVE * arena.length) == []
    arena.hole(0, 2)
    made: list[int] = []
    try:
        for _ in range(Arena.FREE_ABOVE * arena.length // size):
            made.append(libc.mmap(0, size, C.PROT_READ, C.MAP_PRIVATE | C.MAP_ANONYMOUS))
        assert all(addr >= arena.end for addr in made), [hex(addr) for addr in made if addr < arena.end]
    finally:
        for addr in made:
            libc.munmap(addr, size)


def _big_mapping_after_edge_hole() -> tuple[int, int, int, int]:
    """Child: an arena with free address space right below it, a hole at its first two
    pages, then one mapping that fits that free space only with the hole (the kernel
    puts a mapping without an address at the top of the highest free range it fits in).
    Returns the arena's start and end and that mapping's start and end."""
    arena = Arena()
    below = 64 << 20
    spare = libc.mmap(0, below + arena.footprint, C.PROT_NONE, C.MAP_PRIVATE | C.MAP_ANONYMOUS | C.MAP_NORESERVE)
    libc.munmap(spare + below, arena.footprint)
    for _ in range(4096):  # each arena fills a free range above spare's top, until one lands there
        if spare < arena.addr < spare + below + arena.footprint:
            break
        arena = Arena()
    else:
        raise AssertionError("no arena landed on the free range made for it")
    libc.munmap(spare, below)
    arena.hole(0, 2)
    size = below + 2 * libc.PAGE_SIZE  # fits the free space below joined with the hole, no range above spare
    addr = libc.mmap(0, size, C.PROT_READ, C.MAP_PRIVATE | C.MAP_ANONYMOUS | C.MAP_NORESERVE)
    return arena.addr, arena.end, addr, addr + size


def test_a_hole_at_an_arena_edge_stays_out_of_reach(run_in_child: Any) -> None:
    """A hole at the arena's first or last page must not join free address space outside
    the arena: a mapping another thread makes meanwhile, too big for the free space above
    the arena, would be placed at the top of the joined gap, in the hole.
    That happened in suite runs: mlock.errors.unmapped found its hole mapped (the kernel
    had put a 2 MB mapping there) and mlock succeeded. Guard pages that stay mapped on
    both sides of the arena bound its holes."""
    start, end, low, high = run_in_child(_big_mapping_after_edge_hole).result()
    assert high <= start or low >= end, f"a mapping at {low:#x}-{high:#x} overlaps the arena {start:#x}-{end:#x}"


def test_arena_guard_pages_bound_it(arena: Arena, nothing_leaks: None) -> None:
    """The pages just outside the arena are mapped, inaccessible, and never merge with a
    mapping made at the arena's edge page (maps shows that mapping's own VMA)."""
    for outside in (arena.addr - libc.PAGE_SIZE, arena.end):
        entry = procfs.vma_at(outside)
        assert entry is not None and entry.perms.startswith("---"), entry
    first = arena.map(0, 1, C.PROT_NONE, C.MAP_PRIVATE | C.MAP_ANONYMOUS | C.MAP_NORESERVE)
    last = arena.map(63, 1, C.PROT_NONE, C.MAP_PRIVATE | C.MAP_ANONYMOUS | C.MAP_NORESERVE)
    first_vma, last_vma = procfs.vma_at(first.addr), procfs.vma_at(last.addr)
    assert first_vma is not None and first_vma.start == first.addr, first_vma
    assert last_vma is not None and last_vma.end == arena.end, last_vma


def test_arena_map_refuses_a_hole_someone_else_took(arena: Arena, nothing_leaks: None) -> None:
    """A foreign mapping placed in an arena hole (here by libc's mmap called directly,
    past the libc layer's bookkeeping) must not be replaced by MAP_FIXED."""
    arena.hole(3, 2)
    # Deliberately raw: the intruder must be mapped past the libc door, whose mmap() would
    # record the range as ours (libc.owned) and so not be a foreign mapping.
    raw = ctypes.CDLL(None, use_errno=True)
    raw_mmap = raw.mmap
    raw_mmap.restype, raw_mmap.argtypes = ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int,
                                                            ctypes.c_int, ctypes.c_int, ctypes.c_long]
    intruder = arena.page(4)
    flags = C.MAP_PRIVATE | C.MAP_ANONYMOUS | C.MAP_FIXED
    assert raw_mmap(intruder, libc.PAGE_SIZE, C.PROT_READ, flags, -1, 0) == intruder
    try:
        with pytest.raises(FileExistsError, match=f"{intruder:#x}-{intruder + libc.PAGE_SIZE:#x} \\(anonymous\\)"):
            arena.map(2, 3)
        assert libc.is_mapped(intruder), "the intruder is still there"
        assert arena.map(3, 1).write(0, 1) is None, "the hole beside it is still usable"
    finally:
        raw.munmap(ctypes.c_void_p(intruder), ctypes.c_size_t(libc.PAGE_SIZE))


@pytest.mark.parametrize(("pages", "error"),
                         [(0, ValueError), (-2, ValueError), (1.5, TypeError), (1 << 40, ValueError)])
def test_locked_region_rejects_bad_sizes(locked_region: Callable[..., Mapping], nothing_leaks: None,
                                         pages: Any, error: type) -> None:
    with pytest.raises(error):
        locked_region(pages)


@pytest.mark.parametrize(("kwargs", "error"), [
    ({"size": 0}, ValueError),
    ({"size": -4096}, ValueError),
    ({"size": "4096"}, TypeError),
    ({"mode": 0o1600}, ValueError),
    ({"mode": -1}, ValueError),
    ({"key": "fixed"}, ValueError),
    ({"key": 1.5}, ValueError),
    ({"size": 1 << 62}, OSError),  # beyond SHMMAX: EINVAL (or ENOMEM)
])
def test_shm_segment_rejects_bad_input(shm_segment: Callable[..., ShmSegment], nothing_leaks: None,
                                       kwargs: dict[str, Any], error: type) -> None:
    with pytest.raises(error, match=r"shm_segment|shmget\("):
        shm_segment(**kwargs)


@pytest.mark.parametrize(("kwargs", "error"), [
    ({"size": -1}, ValueError),
    ({"size": "1"}, TypeError),
    ({"mode": 0o4600}, ValueError),
    ({"size": 1 << 63}, ValueError),  # larger than off_t
])
def test_posix_shm_rejects_bad_input(posix_shm: Callable[..., PosixShm], nothing_leaks: None,
                                     kwargs: dict[str, Any], error: type) -> None:
    with pytest.raises(error):
        posix_shm(**kwargs)


@pytest.mark.parametrize("timeout", [0, -1, math.nan, math.inf, 10**9, "5", True])
def test_run_in_child_rejects_absurd_timeouts(run_in_child: Callable[..., ChildOutcome], nothing_leaks: None,
                                              timeout: Any) -> None:
    with pytest.raises((ValueError, TypeError), match="run_in_child: timeout"):
        run_in_child(int, timeout=timeout)


def test_run_in_child_rejects_what_is_not_callable(run_in_child: Callable[..., ChildOutcome],
                                                   nothing_leaks: None) -> None:
    with pytest.raises(TypeError, match="must be callable"):
        run_in_child(42)


@pytest.mark.parametrize(("signo", "kwargs"), [
    (0, {}), (-11, {}), (signal.NSIG, {}), (True, {}), (11, {"timeout": 0}), (11, {"timeout": math.inf}),
])
def test_expect_signal_rejects_bad_input(expect_signal: Callable[..., Any], nothing_leaks: None,
                                         signo: Any, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="expect_signal"):
        expect_signal(signo, **kwargs)


# --- teardown: every cleanup runs, every error is reported ------------------------------

def _failing(ran: list[int], number: int) -> Callable[[], None]:
    def action() -> None:
        ran.append(number)
        raise OSError(number, f"cleanup {number} failed")
    return action


def test_cleanup_runs_every_action_and_reports_every_error() -> None:
    from pytest_memsyscalls.plugin.fixtures import _Cleanup

    ran: list[int] = []
    cleanup = _Cleanup()
    cleanup.add(_failing(ran, 1))
    cleanup.add(lambda: ran.append(2))
    cleanup.add(_failing(ran, 3))
    with pytest.raises(ExceptionGroup) as caught:
        cleanup.run()
    assert ran == [3, 2, 1]  # newest first, and none skipped
    assert "2 fixture cleanups failed" in str(caught.value)
    assert [str(error) for error in caught.value.exceptions] == ["[Errno 3] cleanup 3 failed",
                                                                 "[Errno 1] cleanup 1 failed"]
    cleanup.run()  # nothing left to run


def test_cleanup_with_one_error_raises_it_unchanged() -> None:
    from pytest_memsyscalls.plugin.fixtures import _Cleanup

    ran: list[int] = []
    cleanup = _Cleanup()
    cleanup.add(_failing(ran, 1))
    cleanup.add(lambda: ran.append(2))
    with pytest.raises(OSError, match="cleanup 1 failed"):
        cleanup.run()
    assert ran == [2, 1]
