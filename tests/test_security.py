"""Nothing the plugin creates is open to other users (issue 8; see SECURITY.md).

Modes are checked on what the fixtures make and on the records directory and file;
then a child that switched to uid 65534 must fail to attach, open or read them.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable

import pytest

from pytest_memsyscalls import requires, run_in_child
from pytest_memsyscalls.kernel import constants as C
from pytest_memsyscalls.kernel import libc
from pytest_memsyscalls.memory import records
from pytest_memsyscalls.memory.shm import PosixShm, ShmSegment

NOBODY = 65534


def test_segments_are_private_and_mode_0600(shm_segment: Callable[..., ShmSegment]) -> None:
    segment = shm_segment(4096)
    assert segment.key == C.IPC_PRIVATE
    assert segment.stat().permissions == 0o600


def test_unique_keys_are_created_exclusively(shm_segment: Callable[..., ShmSegment]) -> None:
    """A random key is made with IPC_CREAT|IPC_EXCL: never an attach to someone's segment."""
    segment = shm_segment(4096, key="unique")
    assert segment.key != C.IPC_PRIVATE and segment.stat().permissions == 0o600
    with pytest.raises(FileExistsError):
        ShmSegment(4096, key=segment.key)


def test_posix_names_are_unpredictable_and_mode_0600(posix_shm: Callable[..., PosixShm]) -> None:
    shared = posix_shm(4096)
    assert stat.S_IMODE(os.stat(shared.path).st_mode) == 0o600
    random_part = shared.name.rsplit("-", 1)[1]
    assert len(random_part) == 32  # 128 random bits: a name nobody can guess in advance


def test_records_directory_0700_and_record_file_0600(page_size: int) -> None:
    """(``page_size``: the records start with the first test that uses the plugin.)"""
    recorder = records.active()
    assert recorder is not None, "the plugin records while a session runs"
    directory = os.lstat(os.path.dirname(recorder.path))
    assert stat.S_ISDIR(directory.st_mode) and directory.st_uid == os.geteuid()
    assert stat.S_IMODE(directory.st_mode) == 0o700
    assert stat.S_IMODE(os.lstat(recorder.path).st_mode) == 0o600


def _as_nobody(shmid: int, name: str, record: str) -> dict[str, int]:
    """In a child: become uid/gid 65534 (losing every capability), then try each object."""
    os.setgroups([])
    os.setresgid(NOBODY, NOBODY, NOBODY)
    os.setresuid(NOBODY, NOBODY, NOBODY)
    found = {}
    for label, attempt in (("shmat", lambda: libc.shmat(shmid, 0, C.SHM_RDONLY)),
                           ("shm_open", lambda: libc.shm_open(name, os.O_RDONLY, 0)),
                           ("record", lambda: open(record, "rb").close()),
                           ("records_dir", lambda: os.listdir(os.path.dirname(record)))):
        try:
            attempt()
            found[label] = 0
        except OSError as error:
            found[label] = error.errno
    return found


@requires("setuid")
def test_another_uid_can_open_nothing(shm_segment: Callable[..., ShmSegment],
                                      posix_shm: Callable[..., PosixShm]) -> None:
    recorder = records.active()
    assert recorder is not None
    segment, shared = shm_segment(4096), posix_shm(4096)
    outcome = run_in_child(_as_nobody, segment.shmid, shared.name, recorder.path, timeout=10)
    assert outcome.result() == {"shmat": errno.EACCES, "shm_open": errno.EACCES,
                                "record": errno.EACCES, "records_dir": errno.EACCES}
