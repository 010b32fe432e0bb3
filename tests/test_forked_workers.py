"""``memsyscalls run``'s forked workers (plugin/forked_workers.py): every item runs once,
in a worker, with fixtures set up and torn down as in a session of its own; the reports,
captured output and warnings come back to the pytest process; a worker that dies is one
failed test naming its semantic and the signal, and a new worker runs the rest."""

from __future__ import annotations

import json
import os

import pytest
from crash_suite import SUITE, check_crash_report

from pytest_memsyscalls.cli.main import MAX_CRASHES, MAX_WORKERS, forked_workers, worker_count
from pytest_memsyscalls.plugin.forked_workers import ForkedWorkers

CONFTEST = """
import os
from pytest_memsyscalls.plugin.forked_workers import ForkedWorkers

def pytest_configure(config):
    config.pluginmanager.register(ForkedWorkers(2, 5), "forked-workers")
    with open("pytest.pid", "w") as out:
        out.write(str(os.getpid()))
"""


def test_a_crash_is_one_failed_test_naming_semantic_and_signal(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_crashing=SUITE)
    result = pytester.runpytest_subprocess("-p", "no:randomly", "--memsys-report=r.json")
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # the run itself ended normally
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines([
        "semantic demo.crash.segv: test_crashing.py::test_b_segv killed its test process "
        "(SIGSEGV (Segmentation fault); innermost: *test_b_segv*; the run went on in a new process "
        "(worker fw* replaced)",
    ])
    result.stdout.fnmatch_lines(["semantic demo.crash.kill: test_crashing.py::test_c_kill killed its test "
                                 "process (SIGKILL); the run went on in a new process (worker fw* replaced)"])
    check_crash_report(pytester.path / "r.json")


SHARED = """
import json, os, time, warnings
import pytest

def _note(what):
    with open("ran.jsonl", "a") as out:
        out.write(json.dumps([what, os.getpid()]) + "\\n")

@pytest.fixture(scope="module")
def per_module():
    _note("module-setup")
    yield
    _note("module-teardown")

@pytest.mark.parametrize("n", range(12))
def test_each(n, per_module):
    _note(f"test-{n}")
    print(f"output of {n}")
    time.sleep(0.03)
    assert n != 5, "the one that fails"

def test_warns():
    warnings.warn("a worker's warning", DeprecationWarning)
"""


def test_each_item_runs_once_in_a_worker_and_its_reports_come_back(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_shared=SHARED)
    result = pytester.runpytest_subprocess("-p", "no:randomly", "-rf")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=12, failed=1, warnings=1)
    notes = [json.loads(line) for line in (pytester.path / "ran.jsonl").read_text().splitlines()]
    ran = [what for what, _ in notes if what.startswith("test-")]
    assert sorted(ran) == sorted(f"test-{n}" for n in range(12))  # each once
    parent = int((pytester.path / "pytest.pid").read_text())
    workers = {pid for _, pid in notes}
    assert parent not in workers
    assert len(workers) == 2, notes  # both workers took items (each test takes 30 ms)
    for pid in workers:  # a module fixture set up and torn down once per worker that used it
        mine = [what for what, who in notes if who == pid and what.startswith("module-")]
        assert mine == ["module-setup", "module-teardown"], notes
    # the failing test's captured output is its own, not the other worker's
    text = result.stdout.str()
    section = text[text.index("Captured stdout call"):]
    assert "output of 5" in section and "output of 4" not in section.split("=====")[0]
    result.stdout.fnmatch_lines(["*DeprecationWarning: a worker's warning*"])


def test_exitfirst_stops_the_workers(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_stop="""
        import time
        import pytest

        @pytest.mark.parametrize("n", range(40))
        def test_slow_failure(n):
            time.sleep(0.05)
            assert False
        """)
    result = pytester.runpytest_subprocess("-p", "no:randomly", "-x")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    outcomes = result.parseoutcomes()
    # a worker finishes the test it runs, and may start the one it took before the news came
    assert 1 <= outcomes["failed"] <= 6, outcomes
    result.stdout.fnmatch_lines(["*stopping after * failures*"])


def test_a_worker_leaves_nothing_behind(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """The workers' record files go at their orderly end (records.end_records)."""
    records = pytester.path / "records"
    monkeypatch.setenv("MEMSYS_RECORDS_DIR", str(records))
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_objects="""
        import pytest

        @pytest.mark.parametrize("n", range(6))
        def test_makes(n, shm_segment, posix_shm):
            shm_segment(4096).attach()
            posix_shm(4096).map()
        """)
    result = pytester.runpytest_subprocess("-p", "no:randomly")
    result.assert_outcomes(passed=6)
    assert list(records.iterdir()) == []


@pytest.mark.parametrize(("argv", "forked"), [
    ([], True), (["-k", "mmap"], True), (["-p", "no:xdist"], True), (["-n", "2"], False), (["-n2"], False),
    (["-n", "0"], False), (["--numprocesses=3"], False), (["--collect-only"], False), (["--dist", "load"], False),
])
def test_memsyscalls_run_forks_workers_unless_told_otherwise(argv: list[str], forked: bool) -> None:
    workers = forked_workers(argv)
    assert (workers is not None) is forked
    if workers is not None:
        assert isinstance(workers, ForkedWorkers)
        assert (workers.count, workers.max_crashes) == (worker_count(), MAX_CRASHES)


def test_the_fork_runner_stays_out_of_a_debugger_s_way(pytester: pytest.Pytester) -> None:
    """--pdb needs the terminal: the tests run in the pytest process."""
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_here="""
        import json, os

        def test_where():
            with open("where", "w") as out:
                out.write(str(os.getpid()))
        """)
    result = pytester.runpytest_subprocess("-p", "no:randomly", "--pdb")
    result.assert_outcomes(passed=1)
    assert (pytester.path / "where").read_text() == (pytester.path / "pytest.pid").read_text()



def test_a_queue_longer_than_a_pipe_holds(pytester: pytest.Pytester) -> None:
    """16,384 indices fill a pipe's 64 KiB, and a user past pipe-user-pages-soft gets
    pipes of 2 pages: the queue is fed as the workers drain it. Here its pipe is cut to
    one page (1,024 indices), under 1,500 tests."""
    pytester.makeconftest(CONFTEST + """
import fcntl
from pytest_memsyscalls.plugin import forked_workers

_made = forked_workers._Run.__init__

def _one_page_queue(self, *args):
    _made(self, *args)
    fcntl.fcntl(self.queue_w, fcntl.F_SETPIPE_SZ, 4096)

forked_workers._Run.__init__ = _one_page_queue
""")
    pytester.makepyfile(test_many="""
        import pytest

        @pytest.mark.parametrize("n", range(1500))
        def test_n(n):
            pass
        """)
    result = pytester.runpytest_subprocess("-p", "no:randomly", "-q", timeout=120)
    result.assert_outcomes(passed=1500)


def test_a_keyboardinterrupt_in_a_test_interrupts_the_session(pytester: pytest.Pytester) -> None:
    """As in pytest: the session ends as interrupted, not with the test and those after it
    quietly missing."""
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_interrupting="""
        import pytest

        @pytest.mark.parametrize("n", range(8))
        def test_t(n):
            if n == 2:
                raise KeyboardInterrupt
        """)
    result = pytester.runpytest_subprocess("-p", "no:randomly")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*KeyboardInterrupt*"])


def test_pytest_exit_in_a_test_ends_the_session_with_its_status(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_exiting="""
        import pytest

        @pytest.mark.parametrize("n", range(8))
        def test_t(n):
            if n == 1:
                pytest.exit("enough", returncode=7)
        """)
    result = pytester.runpytest_subprocess("-p", "no:randomly")
    assert result.ret == 7
    result.stdout.fnmatch_lines(["*Exit: enough*"])
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()


def test_what_does_not_pickle_still_arrives(pytester: pytest.Pytester) -> None:
    """A user property that does not pickle arrives as its repr; a warning whose category
    this process cannot import, as a UserWarning."""
    pytester.makeconftest(CONFTEST)
    (pytester.path / "elsewhere").mkdir()
    (pytester.path / "elsewhere" / "mywarn.py").write_text("class MyWarning(UserWarning):\n    pass\n")
    pytester.makepyfile(test_odd="""
        import sys, threading, warnings

        def test_lock_property(record_property):
            record_property("lock", threading.Lock())

        def test_warning_from_elsewhere():
            sys.path.insert(0, "elsewhere")
            import mywarn
            warnings.warn("from a module only the worker has", mywarn.MyWarning)
        """)
    result = pytester.runpytest_subprocess("-p", "no:randomly", "--junitxml=j.xml", "-o", "junit_family=legacy")
    result.assert_outcomes(passed=2, warnings=1)
    result.stdout.fnmatch_lines(["*UserWarning: from a module only the worker has*"])
    assert "_thread.lock object" in (pytester.path / "j.xml").read_text()


def test_setup_show_runs_in_this_process(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_fixture="""
        import pytest

        @pytest.fixture
        def thing():
            return 1

        def test_uses(thing):
            assert thing == 1
        """)
    result = pytester.runpytest_subprocess("-p", "no:randomly", "--setup-show")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*SETUP    F thing*"])


def test_ctrl_c_unwinds_each_worker_once(pytester: pytest.Pytester) -> None:
    """Ctrl-C signals the whole process group: a worker's teardown must not be cut short
    by a second interrupt."""
    import signal
    import subprocess
    import sys
    import time

    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_slow_teardown="""
        import os, time
        import pytest

        @pytest.fixture
        def slow_teardown(request):
            yield
            time.sleep(0.3)
            with open(f"torn-down-{os.getpid()}-{request.node.name}", "w"):
                pass

        @pytest.mark.parametrize("n", range(4))  # each worker takes two: one to run, the next
        def test_waits(n, slow_teardown, shm_segment):
            with open(f"started-{n}", "w"):
                pass
            time.sleep(30)
        """)
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "-p", "no:randomly", "-p", "no:cacheprovider"],
                            cwd=pytester.path, start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while len(list(pytester.path.glob("started-*"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)  # both workers in their test, polled
    os.killpg(proc.pid, signal.SIGINT)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, output.decode()[-2000:]
    assert len(list(pytester.path.glob("torn-down-*"))) == 2, output.decode()[-2000:]


@pytest.mark.parametrize(("cpus", "workers"), [({0}, 1), ({0, 1}, 2), ({0, 1, 2}, 3), (set(range(64)), MAX_WORKERS)])
def test_memsyscalls_run_uses_the_cpus_it_may_run_on(cpus: set[int], workers: int,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """One worker per CPU in the affinity mask (what taskset and container cpusets narrow), at
    most MAX_WORKERS."""
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: cpus)
    assert worker_count() == workers
    chosen = forked_workers([])
    assert chosen is not None and chosen.count == workers
