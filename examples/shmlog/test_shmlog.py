"""Several processes log into one POSIX shm object; the reader is woken, never sleeps."""

from __future__ import annotations

import os

import pytest

from pytest_memsyscalls.kernel import constants as C
from pytest_memsyscalls.kernel import procfs

from . import ShmLog

WRITERS, MESSAGES = 3, 150


def writer(name: str, notify: int, index: int, count: int) -> None:
    """A separate process that opens the log by name (its own mapping) and logs ``count`` lines."""
    with ShmLog.attach(name, notify=notify) as log:
        for i in range(count):
            log.log(f"writer {index} line {i}".encode())


def writers_and_reader(name: str, notify: int) -> list[tuple[int, bytes]]:
    """Start WRITERS concurrent writer processes, wait (on the eventfd) until every line is in,
    reap them, return what this reading process sees."""
    pids = []
    for index in range(WRITERS):
        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                writer(name, notify, index, MESSAGES)
                status = 0
            finally:
                os._exit(status)
        pids.append(pid)
    with ShmLog.attach(name, notify=notify) as log:
        log.wait_for(WRITERS * MESSAGES)
        seen = log.entries()
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    return seen


def assert_log_holds(log: ShmLog, expected: dict[int, list[bytes]]) -> None:
    """The log, read through *this* process's mapping, holds each writer's lines complete and in
    its own order (lines of different writers may interleave)."""
    per_pid: dict[int, list[bytes]] = {}
    for pid, message in log.entries():
        per_pid.setdefault(pid, []).append(message)
    assert sorted(per_pid.values()) == sorted(expected.values())


@pytest.fixture
def shared_log(posix_shm):
    shm = posix_shm(size=256 * 1024)
    notify = os.eventfd(0)
    with ShmLog(shm.fd, shm.size, notify=notify, create=True) as log:
        yield shm, log
    os.close(notify)


def test_concurrent_writers_lose_nothing(shared_log, run_in_child) -> None:
    shm, log = shared_log
    seen = run_in_child(writers_and_reader, shm.name, log.notify, timeout=60).result()
    assert len(seen) == WRITERS * MESSAGES
    assert log.entries() == seen  # the parent's own mapping shows what the reader process saw
    by_writer = {}
    for _, message in seen:
        index = int(message.split()[1])
        by_writer.setdefault(index, []).append(message)
    assert by_writer == {i: [f"writer {i} line {n}".encode() for n in range(MESSAGES)] for i in range(WRITERS)}


def test_log_maps_the_shm_object_shared(shared_log) -> None:
    shm, log = shared_log
    vma = procfs.vma_at(log.addr)
    assert vma is not None and vma.perms == "rw-s" and vma.path.startswith(shm.path)


def _log_lines(name: str, notify: int) -> int:
    writer(name, notify, 0, 3)
    return os.getpid()


def test_the_check_catches_a_log_mapped_private(shared_log, run_in_child, monkeypatch: pytest.MonkeyPatch) -> None:
    """Break the logger (MAP_PRIVATE instead of MAP_SHARED): the child's lines never reach the
    parent and the check fails."""
    from . import __name__ as module

    shm, log = shared_log
    good_pid = run_in_child(_log_lines, shm.name, log.notify).result()
    expected = {good_pid: [f"writer 0 line {n}".encode() for n in range(3)]}
    assert_log_holds(log, expected)
    monkeypatch.setattr(f"{module}.MAP_FLAGS", C.MAP_PRIVATE)
    bad_pid = run_in_child(_log_lines, shm.name, log.notify).result()
    with pytest.raises(AssertionError):
        assert_log_holds(log, {**expected, bad_pid: expected[good_pid]})
