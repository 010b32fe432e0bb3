"""The leak guard: a test that leaves a SysV segment, a /dev/shm name, locked memory
or a child process behind fails its teardown, naming what it left; the guard then
reclaims it so later tests start clean; it never blames or touches another
process's objects, also with two xdist workers making objects at the same time.

Every run is a subprocess (the inner tests fork, lock memory and leave children).
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import pytest
from xdist_barrier import BARRIER

from pytest_memsyscalls.kernel import libc

pytest.importorskip("xdist")
pytest.importorskip("pytest_forked")

LEAKY_TESTS = r'''
import json, os, subprocess, sys
import pytest
from pytest_memsyscalls import libc, procfs, run_in_child
from pytest_memsyscalls.memory.mapping import Mapping
from pytest_memsyscalls.memory.shm import ShmSegment, PosixShm

RECORD = os.environ["MEMSYS_RECORD"]
left = {}


def note(**objects):
    left.update(objects)
    with open(RECORD, "a") as out:
        out.write(json.dumps(objects) + "\n")


def test_leaks_a_segment():
    note(segment=ShmSegment(4096).shmid)


def test_leaks_a_segment_from_a_child():
    note(child_segment=run_in_child(lambda: ShmSegment(8192).shmid).value)


def test_leaks_an_attachment_of_a_removed_segment():
    segment = ShmSegment(4096)
    note(attached=segment.shmid)
    segment.attach()
    segment.remove()


def test_leaks_a_name():
    note(name=PosixShm(4096).name)


def test_leaks_a_name_from_a_child():
    note(child_name=run_in_child(lambda: PosixShm(4096).name).value)


def test_leaks_locked_memory():
    Mapping.create(3).lock()


def test_leaks_a_running_child():
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.read(r, 1)
        os._exit(0)
    note(running=pid)


def test_leaks_a_zombie():
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    note(zombie=pid)


def test_fails_and_leaks():
    note(failing_segment=ShmSegment(4096).shmid)
    assert False, "deliberate"


def test_another_process_segment_is_not_ours():
    made = subprocess.run([sys.executable, "-c", "from pytest_memsyscalls import libc; "
                           "print(libc.shmget(0, 4096, 0o1600))"], capture_output=True, text=True, check=True)
    note(foreign=int(made.stdout))


def test_clean_with_fixtures(shm_segment, posix_shm, locked_region, run_in_child):
    shm_segment().attach()
    posix_shm().map()
    locked_region(2)
    assert run_in_child(lambda: ShmSegment(4096).remove()).returned


def test_zz_later_tests_start_clean():
    """Runs last: the guard reclaimed everything the tests above left (read back from
    the record: under --forked each test ran in its own process)."""
    with open(RECORD) as records:
        for line in records:
            left.update(json.loads(line))
    for key in ("segment", "child_segment", "attached", "failing_segment"):
        with pytest.raises(OSError):
            libc.shm_stat(left[key])
    assert not [e for e in procfs.read_maps() if e.is_sysv_shm and e.inode == left["attached"]]
    assert not os.path.exists("/dev/shm" + left["name"])
    assert not os.path.exists("/dev/shm" + left["child_name"])
    assert procfs.status_kb(procfs.read_status(), "VmLck") == 0
    for key in ("running", "zombie"):
        with pytest.raises(ChildProcessError):
            os.waitpid(left[key], os.WNOHANG)
    libc.shm_stat(left["foreign"])  # not ours: untouched
'''

MODULE_FIXTURES = r'''
import pytest
from pytest_memsyscalls.memory.shm import ShmSegment
from pytest_memsyscalls.memory.mapping import Mapping


@pytest.fixture(scope="module")
def kept():
    segment = ShmSegment(4096)
    locked = Mapping.create(1)
    locked.lock()
    yield segment
    locked.unmap()
    segment.close()


@pytest.fixture(scope="module")
def forgotten():
    yield ShmSegment(4096)  # never removed


def test_first(kept): pass
def test_second(kept): pass
def test_third(forgotten): pass
def test_fourth(forgotten): pass
'''

LEAKERS = {
    "test_leaks_a_segment": [r"SysV segment shmid=\d+ key=0x0 size=4096 mode=0600 created by pid \d+ nattch=0"],
    "test_leaks_a_segment_from_a_child": [r"SysV segment shmid=\d+ key=0x0 size=8192 .* nattch=0"],
    "test_leaks_an_attachment_of_a_removed_segment": [r"SysV segment .* nattch=1 marked for destruction"],
    "test_leaks_a_name": [r"POSIX shm name /memsys-\d+-[0-9a-f]{32} .*mode 0600"],
    "test_leaks_a_name_from_a_child": [r"POSIX shm name /memsys-\d+-[0-9a-f]{32}"],
    "test_leaks_locked_memory": [r"12 kB of locked memory \(VmLck 0 kB before the test, 12 kB after\)"],
    "test_leaks_a_running_child": [r"child process \d+ \(python3?[^,]*, state [SR]\)"],
    "test_leaks_a_zombie": [r"child process \d+ \(python3?[^,]*, state [ZSR]\)"],
    "test_fails_and_leaks": [r"SysV segment shmid=\d+"],
}


def _run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
         *args: str, all_tests: bool = True) -> tuple[pytest.RunResult, dict[str, Any]]:
    """The leaky tests use no fixture of ours, so the guard checks them only with
    --memsys-all-tests (given unless `all_tests` is false)."""
    record = pytester.path / "record.jsonl"
    monkeypatch.setenv("MEMSYS_RECORD", str(record))
    pytester.makepyfile(test_leaky=LEAKY_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:randomly", "-rA", *(["--memsys-all-tests"] if all_tests else []),
                                           *args)
    noted: dict[str, Any] = {}
    for line in record.read_text().splitlines():
        noted.update(json.loads(line))
    return result, noted


def _remove_foreign(noted: dict[str, Any]) -> None:
    """The segment made by a process that was not ours: the guard must have left it."""
    libc.shm_stat(noted["foreign"])
    libc.shmctl(noted["foreign"], 0)  # IPC_RMID


def _blocks(output: str) -> dict[str, str]:
    """The leak report of each test, from -rA's ERROR sections."""
    found = {}
    for match in re.finditer(r"_+ ERROR at teardown of (\S+) _+\n(.*?)(?=\n_{3,} |\n=+ )", output, re.S):
        found[match.group(1)] = match.group(2)
    return found


@pytest.mark.parametrize("extra", [[], ["--forked"]], ids=["plain", "forked"])
def test_each_leak_fails_its_test_with_what_leaked(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
                                                   extra: list[str]) -> None:
    result, noted = _run(pytester, monkeypatch, *extra)
    try:
        result.assert_outcomes(passed=11, failed=1, errors=len(LEAKERS))  # a teardown error is counted besides the pass
        blocks = _blocks(result.stdout.str())
        assert set(blocks) == set(LEAKERS)
        for test, patterns in LEAKERS.items():
            lines = [line for line in blocks[test].splitlines() if line.startswith("  ") and "(pytest" not in line]
            assert len(lines) == len(patterns), blocks[test]
            for line, pattern in zip(lines, patterns, strict=True):
                assert re.search(pattern, line), (test, line)
            assert "The leak guard reclaimed them." in blocks[test]
        result.stdout.fnmatch_lines(["FAILED test_leaky.py::test_fails_and_leaks - *"])
    finally:
        _remove_foreign(noted)


def test_warn_mode_warns_and_still_reclaims(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    result, noted = _run(pytester, monkeypatch, "--memsys-leaks=warn")
    try:
        result.assert_outcomes(passed=11, failed=1, warnings=len(LEAKERS))
        result.stdout.fnmatch_lines(["*MemsysLeakWarning: test_leaky.py::test_leaks_a_segment left behind:*"])
    finally:
        _remove_foreign(noted)


def test_off_mode_leaves_everything_alone(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMSYS_LEAKS", "off")
    result, noted = _run(pytester, monkeypatch, "-k", "leaks_a_segment or leaks_a_name or another")
    try:
        result.assert_outcomes(passed=5)
        assert "left behind" not in result.stdout.str()
        for key in ("segment", "child_segment"):
            libc.shm_stat(noted[key])  # still there: off means off
        assert os.path.exists("/dev/shm" + noted["name"]) and os.path.exists("/dev/shm" + noted["child_name"])
    finally:
        for key in ("segment", "child_segment"):
            libc.shmctl(noted[key], 0)
        for key in ("name", "child_name"):
            libc.shm_unlink(noted[key])
        _remove_foreign(noted)


def test_objects_made_outside_fixtures_are_not_guarded_without_the_option(pytester: pytest.Pytester,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The other side of --memsys-all-tests (test_each_leak_fails_its_test_with_what_leaked
    gives it): a test that uses no fixture or marker of ours and makes a ShmSegment or a
    PosixShm itself is not checked, and what it leaves stays after the session."""
    result, noted = _run(pytester, monkeypatch, "-k", "leaks_a_segment or leaks_a_name or another or clean_with",
                         all_tests=False)
    try:
        result.assert_outcomes(passed=6)
        assert "left behind" not in result.stdout.str()
        for key in ("segment", "child_segment"):
            libc.shm_stat(noted[key])  # still there: nobody asked the guard to look
        assert os.path.exists("/dev/shm" + noted["name"]) and os.path.exists("/dev/shm" + noted["child_name"])
    finally:
        for key in ("segment", "child_segment"):
            try:
                libc.shmctl(noted[key], 0)
            except OSError:
                pass
        for key in ("name", "child_name"):
            try:
                libc.shm_unlink(noted[key])
            except OSError:
                pass
        _remove_foreign(noted)


LOCK_LEAKER = r'''
import pytest
from pytest_memsyscalls.memory.mapping import Mapping

kept = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    """Every test's call leaves one locked page behind."""
    mapping = Mapping.create(1)
    mapping.lock()
    kept.append(mapping)
    yield
'''

# One test of each conformance module that locks memory (and so could want a check of its own).
LOCKING_MODULES = ["pytest_memsyscalls.conformance.test_mlock", "pytest_memsyscalls.conformance.test_madvise"]


@pytest.mark.parametrize("mode", ["off", "fail"])
def test_only_the_leak_guard_checks_locked_memory(pytester: pytest.Pytester, mode: str) -> None:
    """The conformance suite leaves locked memory to the leak guard: with
    --memsys-leaks=off a test leaving a locked page passes, with fail the guard alone
    reports it (no fixture of the suite checks VmLck on its own)."""
    pytester.makepyfile(lock_leaker=LOCK_LEAKER)
    result = pytester.runpytest_subprocess(
        "-p", "lock_leaker", "-p", "no:randomly", "-p", "no:cacheprovider", f"--memsys-leaks={mode}",
        "-rN",  # no short summary: its lines are cut on a terminal and whole under CI=true
        "--pyargs", *LOCKING_MODULES, "-k", "test_mlock_makes_pages_resident or test_random_sets_rr")
    output = result.stdout.str()
    assert "locked memory leaked" not in output
    if mode == "off":
        result.assert_outcomes(passed=2)
        assert "left behind" not in output
    else:
        result.assert_outcomes(passed=2, errors=2)
        page_kb = libc.PAGE_SIZE // 1024
        assert len(re.findall(rf"{page_kb} kB of locked memory \(VmLck", output)) == 2, output


def test_wider_scoped_fixtures_are_blamed_only_when_finalised(pytester: pytest.Pytester) -> None:
    """A module fixture's segment and locked page are not the first test's leak;
    a module fixture that never removes its segment is blamed on the test whose
    teardown finalises it, naming only that segment."""
    pytester.makepyfile(test_module=MODULE_FIXTURES)
    result = pytester.runpytest_subprocess("-p", "no:randomly", "-rA", "--memsys-all-tests")
    result.assert_outcomes(passed=4, errors=1)
    blocks = _blocks(result.stdout.str())
    assert list(blocks) == ["test_fourth"]
    assert len(re.findall("SysV segment", blocks["test_fourth"])) == 1


CONCURRENT_LEAKS = r'''
import os, re
from barrier import barrier
from pytest_memsyscalls.memory.shm import ShmSegment


def _leak(me, other):
    segment = ShmSegment(4096 * (2 if me == "a" else 3))
    barrier(me, other)  # both segments exist before either test's teardown check
    print(f"{me} made {segment.shmid}")


def test_a():
    _leak("a", "b")


def test_b():
    _leak("b", "a")
'''




def test_two_xdist_workers_are_each_blamed_for_their_own_segment(pytester: pytest.Pytester,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    barriers = pytester.mkdir("barriers")
    for name in ("a", "b"):
        os.mkfifo(barriers / name, 0o600)
    monkeypatch.setenv("MEMSYS_BARRIER_DIR", str(barriers))
    pytester.makepyfile(barrier=BARRIER, test_concurrent=CONCURRENT_LEAKS)
    result = pytester.runpytest_subprocess("-p", "no:randomly", "-n", "2", "-rA", "--memsys-all-tests",
                                           "test_concurrent.py")
    result.assert_outcomes(passed=2, errors=2)
    blocks = _blocks(result.stdout.str())
    sizes = {"test_a": 8192, "test_b": 12288}
    assert set(blocks) == set(sizes)
    pids = set()
    for test, size in sizes.items():
        segments = re.findall(r"SysV segment shmid=(\d+) .*size=(\d+) .*created by pid (\d+)", blocks[test])
        assert [int(s) for _, s, _ in segments] == [size], blocks[test]
        pids.add(segments[0][2])
    assert len(pids) == 2
    for shmid in re.findall(r"[ab] made (\d+)", result.stdout.str()):
        with pytest.raises(OSError):
            libc.shm_stat(int(shmid))


def test_segments_are_found_without_proc_sysvipc(shm_segment: Any) -> None:
    """gVisor has no /proc/sysvipc/shm: the guard then asks shmctl(SHM_INFO/SHM_STAT)
    index by index, and must see the same segments with the same creator."""
    from pytest_memsyscalls.kernel import ipc

    made = shm_segment(3 * 4096)
    by_proc = {seg.shmid: seg for seg in ipc.sysv_segments().values()}
    by_index = {seg.shmid: seg for seg in ipc.segments_by_index()}
    assert made.shmid in by_index
    assert (by_index[made.shmid].cpid, by_index[made.shmid].size) == (os.getpid(), 3 * 4096)
    assert by_index[made.shmid] == by_proc[made.shmid]


def test_children_are_found_without_proc_children(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without /proc/PID/task/*/children (a kernel without CONFIG_PROC_CHILDREN, or
    gVisor) the guard scans /proc for processes whose parent is this one."""
    from pytest_memsyscalls.plugin import leaks

    assert leaks._children() == {}
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(w)
        os.read(r, 1)  # EOF when the parent closes its end
        os._exit(0)
    try:
        found = leaks._children()
        real_open = open

        def no_children_file(path: Any, *args: Any, **kwargs: Any) -> Any:
            if str(path).endswith("/children"):
                raise FileNotFoundError(path)
            return real_open(path, *args, **kwargs)

        monkeypatch.setattr("builtins.open", no_children_file)
        scanned = leaks._children()
        monkeypatch.undo()
        assert [proc.pid for proc in found.values()] == [pid] == [proc.pid for proc in scanned.values()]
    finally:
        os.close(w)
        os.close(r)
        os.waitpid(pid, 0)


def test_the_json_report_gives_the_leak_as_the_reason(pytester: pytest.Pytester) -> None:
    """The reason of a semantic whose test leaked names what leaked, not the guard's hint."""
    pytester.makepyfile(test_leaky_semantic="""
        from pytest_memsyscalls import semantic
        from pytest_memsyscalls.memory.shm import ShmSegment

        @semantic("demo.leak.segment", "Leaks a segment.", source="demo(2)")
        def test_leaks():
            ShmSegment()  # and never removed
        """)
    result = pytester.runpytest_subprocess("-p", "no:randomly", "--memsys-report=r.json")
    result.assert_outcomes(passed=1, errors=1)
    [row] = json.loads((pytester.path / "r.json").read_text())["semantics"]
    assert row["outcome"] == "failed"
    assert "left behind:" in row["reason"] and "SysV segment" in row["reason"], row["reason"]
