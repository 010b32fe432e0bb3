"""Crash the writer in a forked child (run_in_child) and check what reopening recovers."""

from __future__ import annotations

import os
import signal

import pytest

from . import RECORD, KvFile

COMMITTED = {f"key{i}".encode(): f"value {i}".encode() * (i + 1) for i in range(10)}


def write_then_crash(path: str, how: str) -> None:
    """Commit COMMITTED, then die in the middle of an eleventh put: header and half the body
    are in the mapping, the rest never arrives."""
    db = KvFile(path)
    for key, value in COMMITTED.items():
        db.put(key, value)
    partial = RECORD.pack(0x5245434B, 5, 4096, 0x12345678) + b"torn!" + b"y" * 100
    db._store(db.end, partial)  # what a put had written when the process died
    if how == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    os._exit(3)


def assert_recovers_committed(path: str) -> KvFile:
    """Reopening finds exactly the committed records and nothing of the torn one."""
    db = KvFile(path)
    try:
        assert db.index == COMMITTED and db.records == len(COMMITTED)
        assert db.get(b"torn!") is None
    except BaseException:
        db.close()
        raise
    return db


@pytest.mark.parametrize("how", ["exit", "kill"])
def test_writer_crash_mid_put_loses_only_the_unfinished_record(tmp_path, run_in_child, how: str) -> None:
    path = str(tmp_path / "db")
    outcome = run_in_child(write_then_crash, path, how)
    assert (outcome.signal, outcome.exit_status) == ((signal.SIGKILL, None) if how == "kill" else (None, 3))
    with assert_recovers_committed(path) as db:
        assert db.recovered_bytes > 0  # the torn record was there, in the file, and was cleared
        db.put(b"after", b"crash")  # the log continues from the last good record
    with KvFile(path) as again:
        assert again.get(b"after") == b"crash" and again.recovered_bytes == 0


def test_put_reaches_the_file_not_only_the_mapping(tmp_path) -> None:
    """read(2) of the file (not the mapping) holds the record and the tombstone."""
    path = tmp_path / "db"
    with KvFile(path, size=8192) as db:
        db.put(b"k", b"v" * 50)
        db.put(b"k", None)
        on_disk = path.read_bytes()
    assert on_disk[:8] == b"MMKV0001"
    assert on_disk[16 + RECORD.size:16 + RECORD.size + 51] == b"k" + b"v" * 50
    with KvFile(path) as reopened:
        assert reopened.get(b"k") is None and reopened.records == 2


def test_the_recovery_check_catches_a_database_without_checksums(tmp_path, run_in_child,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Break recovery (trust every record, skip the checksum): the torn record comes back and
    the check fails."""
    from . import __name__ as module

    path = str(tmp_path / "db")
    run_in_child(write_then_crash, path, "exit")
    monkeypatch.setattr(f"{module}.record_is_valid", lambda *args: True)
    with pytest.raises(AssertionError):
        assert_recovers_committed(path).close()
