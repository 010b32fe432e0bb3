"""Records of what a run created, and the sweep that reclaims what a dead run left.

Why: the leak guard cleans up after each test, and SIGINT/SIGTERM unwind pytest so
fixtures tear down; but ``kill -9`` of pytest runs no code at all, and SysV segments
and /dev/shm names outlive their creator. So, while a session runs, every SysV
segment and POSIX name made through ``ShmSegment``/``PosixShm`` and every process
group made by ``run_in_child`` is appended to a per-session record file
(``<pid>-<starttime>.rec``) in a directory only our uid can write. The record is
written right after the object is made (a name before it is made); ``write`` puts it
in the kernel's page cache, which survives the death of the process (no fsync: after
a machine crash the objects themselves are gone too).

The next session (or ``python -m pytest_memsyscalls sweep``) reads the record files
whose process no longer exists (or whose pid now has another start time) and
removes exactly what they name, each only after checking it is still the same
object: a segment only if that shmid still has the recorded key, creator pid, ctime
and our uid; a name only if it is in our ``memsys-<pid>-`` scheme and owned by our
uid; a process group only if its leader still has the recorded start time and our
uid. Nothing that is not in a record is ever touched. Locked memory needs no
sweep: it dies with the process that locked it.

A directory that is not ours (wrong owner, group/other permissions, a symlink)
disables records and sweep altogether: fail safe.
"""

from __future__ import annotations

import errno
import os
import re
import signal
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from ..kernel.ipc import sysv_segments
from .names import is_unique_name

ENV_DIR = "MEMSYS_RECORDS_DIR"  # override of the directory (tests use a private one)
_FILE_RE = re.compile(r"^(\d+)-(\d+)\.rec$")


class UnsafeDirectory(Exception):
    """The records directory exists but is not safely ours; records and sweep are off."""


def records_dir() -> str:
    """Where record files live: $MEMSYS_RECORDS_DIR, else $XDG_RUNTIME_DIR/pytest-memsyscalls,
    else /tmp/pytest-memsyscalls-<uid>."""
    override = os.environ.get(ENV_DIR)
    if override:
        return override
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and _is_private_dir(runtime, strict=False):
        return os.path.join(runtime, "pytest-memsyscalls")
    return f"/tmp/pytest-memsyscalls-{os.geteuid()}"


def _is_private_dir(path: str, *, strict: bool = True) -> bool:
    try:
        info = os.lstat(path)
    except OSError:
        return False
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
        return False
    return not strict or not info.st_mode & 0o077


def ensure_dir(path: str | None = None, *, create: bool = True) -> str:
    """The records directory, made 0700 if missing; UnsafeDirectory if it is not ours
    (a symlink, another owner, or group/other permission bits)."""
    path = path or records_dir()
    if create:
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
    if not _is_private_dir(path):
        raise UnsafeDirectory(f"{path} is not a directory owned by uid {os.geteuid()} with mode 0700")
    return path


def starttime(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat (clock ticks after boot): a pid plus this names one process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            text = handle.read().decode(errors="replace")
    except OSError:
        return None
    fields = text[text.rfind(")") + 2:].split()
    return fields[19] if len(fields) > 19 else None


def _proc_uid(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


# --- recording (the running session) ------------------------------------------------

class Recorder:
    """Appends one line per object to this session's record file."""

    def __init__(self, directory: str) -> None:
        self.pid = os.getpid()
        self.path = os.path.join(directory, f"{self.pid}-{starttime(self.pid) or 0}.rec")
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_NOFOLLOW
                          | os.O_CLOEXEC, 0o600)

    def write(self, *fields: object) -> None:
        if self.fd < 0:
            return
        try:
            os.write(self.fd, (" ".join(str(f) for f in fields) + "\n").encode())
        except OSError:
            pass  # a full disk must not fail the test; the leak guard still cleans up

    def close(self, *, remove: bool) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if remove:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass


_recorder: Recorder | None = None


def active() -> Recorder | None:
    return _recorder


def note_segment(shmid: int, key: int) -> None:
    """A SysV segment this process just created (called by ShmSegment)."""
    if _recorder is None:
        return
    from ..kernel import libc

    try:
        ds = libc.shm_stat(shmid)
    except OSError:
        return
    _recorder.write("sysv", shmid, key, ds.shm_cpid, ds.shm_ctime)


def note_segment_intent() -> None:
    """This process is about to create a SysV segment (its id is not known yet): the
    sweep may remove segments of our uid that this pid created from now on."""
    if _recorder is not None:
        _recorder.write("sysv-new", os.getpid(), int(time.time()))


def note_name(name: str) -> None:
    """A POSIX shm name this process is about to create (called by PosixShm)."""

    if _recorder is not None and is_unique_name(name):
        _recorder.write("posix", name, os.getpid())


def child_record_fd() -> int:
    """The record file for a run_in_child child to append its own group to, or -1.

    The child writes its line itself, in C, before running anything
    (``_probe.fork_child``): that is earlier than the parent could, and the parent
    would pay copy-on-write faults for reading /proc/PID/stat while the child runs."""
    return -1 if _recorder is None else _recorder.fd


def recording() -> bool:
    """Whether this process keeps records (its forked children then die with it)."""
    return _recorder is not None


# --- the sweep -----------------------------------------------------------------------

@dataclass
class SweepResult:
    files: int = 0
    removed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # recorded but no longer ours: not touched
    live: int = 0  # record files of runs still alive

    def summary(self) -> str:
        return (f"pytest-memsyscalls: swept {self.files} record file(s) of dead runs: "
                f"{len(self.removed)} object(s) removed" + (f": {', '.join(self.removed)}" if self.removed else ""))


def _parse(path: str) -> Iterator[list[str]]:
    with open(path, "rb") as handle:
        for line in handle.read().decode(errors="replace").splitlines():
            parts = line.split()
            if parts:
                yield parts


def _sweep_segment(parts: list[str], dry_run: bool, result: SweepResult) -> None:
    from ..kernel import constants as C
    from ..kernel import libc

    shmid, key, cpid, ctime = (int(p) for p in parts[1:5])
    since = int(parts[5]) if len(parts) > 5 else None  # from a "sysv-new" line: ctime unknown
    label = f"SysV segment shmid={shmid} key={key:#x} cpid={cpid}"
    try:
        ds = libc.shm_stat(shmid)
    except OSError:
        return  # gone
    perm = ds.shm_perm
    same_time = ds.shm_ctime >= since if since is not None else ds.shm_ctime == ctime
    if (perm.key, ds.shm_cpid, perm.cuid) != (key, cpid, os.geteuid()) or not same_time:
        result.kept.append(label + " (that id is now another segment)")
        return
    if label in result.removed:
        return
    if not dry_run:
        try:
            libc.shmctl(shmid, C.IPC_RMID)
        except OSError as error:
            if error.errno not in (errno.EINVAL, errno.EIDRM):
                result.kept.append(f"{label} ({error})")
                return
    result.removed.append(label)


def _sweep_name(parts: list[str], dry_run: bool, result: SweepResult) -> None:
    from ..kernel import libc

    name = parts[1]
    if not is_unique_name(name):
        return
    try:
        info = os.lstat("/dev/shm" + name)
    except OSError:
        return
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
        result.kept.append(f"POSIX name {name} (not ours)")
        return
    if not dry_run:
        try:
            libc.shm_unlink(name)
        except FileNotFoundError:
            return
    result.removed.append(f"POSIX name {name}")


def _sweep_group(parts: list[str], dry_run: bool, result: SweepResult) -> None:
    pgid, started = int(parts[1]), parts[2]
    if starttime(pgid) != started:
        return  # the leader is gone, or the pid is now another process
    if _proc_uid(pgid) != os.geteuid():
        result.kept.append(f"process group {pgid} (not our uid)")
        return
    if not dry_run:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            return
    result.removed.append(f"process group {pgid}")


def _sweep_new_segments(parts: list[str], dry_run: bool, result: SweepResult) -> None:
    """Segments the recorded (dead) pid created at or after the recorded time, ours."""
    cpid, since = int(parts[1]), int(parts[2])
    for segment in sysv_segments().values():
        if segment.cpid != cpid or segment.uid != os.geteuid():
            continue
        _sweep_segment(["sysv", str(segment.shmid), str(segment.key), str(cpid), "-1", str(since)],
                       dry_run, result)


_SWEEPERS = {"sysv-new": _sweep_new_segments, "sysv": _sweep_segment, "posix": _sweep_name, "group": _sweep_group}


def sweep_file(path: str, *, dry_run: bool = False, result: SweepResult | None = None) -> SweepResult:
    """Reclaim what one record file names (whether or not its run is alive: the caller decides)."""
    result = result or SweepResult()
    for parts in _parse(path):
        sweeper = _SWEEPERS.get(parts[0])
        if sweeper is None:
            continue
        try:
            sweeper(parts, dry_run, result)
        except (ValueError, IndexError):
            continue  # a torn last line (killed mid-write)
    return result


def sweep(directory: str | None = None, *, dry_run: bool = False) -> SweepResult:
    """Reclaim what every dead run recorded, then delete its record file."""
    result = SweepResult()
    try:
        directory = ensure_dir(directory, create=False)
    except UnsafeDirectory:
        if os.path.lexists(directory or records_dir()):
            raise
        return result  # no directory: nothing was ever recorded
    for entry in sorted(os.listdir(directory)):
        match = _FILE_RE.match(entry)
        if match is None:
            continue
        path = os.path.join(directory, entry)
        try:
            info = os.lstat(path)
        except OSError:
            continue
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
            continue
        pid, started = int(match.group(1)), match.group(2)
        if starttime(pid) == started:
            result.live += 1
            continue
        result.files += 1
        sweep_file(path, dry_run=dry_run, result=result)
        if not dry_run:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
    return result
