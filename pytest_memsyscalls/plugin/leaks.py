"""The leak guard: a test that leaves SysV segments, /dev/shm names, locked memory
or child processes behind fails its teardown with a list of what it left.

Why per test: a leaked segment outlives the whole session (SysV objects are not
tied to a process), a locked page changes what the next mlock test may lock, and
a stray child can hold a pipe or a lock open; the test that caused it is the one
to blame, not whichever test later trips over it.

How objects are attributed, so that several pytest processes on one machine
(pytest-xdist workers, other sessions) never blame or touch each other's objects:

- SysV segments by creator pid (``cpid``): this process, or a child that
  ``run_in_child``/``expect_signal`` forked during the test (``child.forked_children``).
- /dev/shm names by the package's naming scheme ``memsys-<pid>-<hex>`` with one of
  those pids, and owned by this process's effective uid.
- Locked memory by this process's ``VmLck`` (where /proc reports it; gVisor does not).
- Child processes by parent pid: only this process's own children.

The hooks are in ``leak_guard`` (this module is imported when a test that uses the
plugin first runs). Only tests that use the plugin are checked (a memsyscalls fixture or marker, or every
test with ``--memsys-all-tests``): another project's test that starts a subprocess and
lets it run on is none of the guard's business (activation.py).

Objects that exist when the test's setup starts are never blamed on the test.
Objects made while a fixture of wider scope (module, session...) is set up belong
to that fixture, and are blamed on the test whose teardown finalises the fixture
if they survive it. After reporting, the guard reclaims what leaked (removes the
segment, unlinks the name, unlocks, kills and reaps the child) so that later tests
start clean. ``--memsys-leaks=fail|warn|off`` chooses failing, warning or nothing.

Known limits: a segment or name made by a grandchild (a process forked by a forked
child) carries a pid the guard never saw and is not attributed; names outside the
``memsys-`` scheme cannot be told apart from another process's and are not checked.
"""

from __future__ import annotations

import errno
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from ..kernel import constants as C
from ..kernel import libc, procfs
from ..kernel.ipc import Segment, sysv_segments
from ..memory import child
from ..memory.names import NAME_RE as _NAME_RE
from . import settings

SHM_DIR = "/dev/shm"


class MemsysLeakWarning(pytest.PytestWarning):
    """A test left memory-management objects behind (``--memsys-leaks=warn``)."""


# --- what exists now -----------------------------------------------------------------

@dataclass(frozen=True)
class ShmName:
    name: str  # without the leading slash, as listed in /dev/shm
    pid: int  # from the name
    uid: int
    mode: int
    size: int

    @property
    def ident(self) -> tuple[str, str]:
        return ("posix", self.name)

    def describe(self) -> str:
        return f"POSIX shm name /{self.name} ({SHM_DIR}/{self.name}, {self.size} bytes, mode {self.mode & 0o777:04o})"


@dataclass(frozen=True)
class Child:
    pid: int
    starttime: str
    comm: str
    state: str
    pgrp: int

    @property
    def ident(self) -> tuple[str, int, str]:
        return ("child", self.pid, self.starttime)

    def describe(self) -> str:
        return f"child process {self.pid} ({self.comm}, state {self.state})"


@dataclass
class Snapshot:
    """Every candidate object: all segments and memsys names (attribution happens
    when comparing, with the pids known then), this process's children and VmLck."""

    segments: dict[Any, Segment]
    names: dict[Any, ShmName]
    children: dict[Any, Child]
    locked_kb: int | None

    def idents(self) -> set[tuple[object, ...]]:
        return set(self.segments) | set(self.names) | set(self.children)

    def objects(self) -> dict[tuple[object, ...], Segment | ShmName | Child]:
        found: dict[tuple[object, ...], Segment | ShmName | Child] = {}
        found.update(self.segments)
        found.update(self.names)
        found.update(self.children)
        return found


def _names() -> dict[tuple[str, str], ShmName]:
    found: dict[tuple[str, str], ShmName] = {}
    try:
        entries = os.listdir(SHM_DIR)
    except OSError:
        return found
    for entry in entries:
        match = _NAME_RE.match(entry)
        if match is None:
            continue
        try:
            info = os.lstat(os.path.join(SHM_DIR, entry))
        except OSError:
            continue
        name = ShmName(entry, int(match.group(1)), info.st_uid, info.st_mode, info.st_size)
        found[name.ident] = name
    return found


def _has_children() -> bool:
    """Cheap first check: waitid says ECHILD when this process has no child at all."""
    try:
        os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return False
    except OSError:
        return True
    return True


def _children() -> dict[tuple[str, int, str], Child]:
    found: dict[tuple[str, int, str], Child] = {}
    if not _has_children():
        return found
    me = os.getpid()
    for pid in _child_pids(me):
        try:
            stat = procfs.read_proc_stat(pid)
        except (OSError, ValueError):
            continue  # gone meanwhile
        if stat.ppid != me:
            continue
        proc = Child(pid, stat.field(22) or "", stat.comm, stat.state, stat.pgrp)
        found[proc.ident] = proc
    return found


def _child_pids(me: int) -> Iterator[int]:
    """Children from /proc/self/task/*/children where the kernel has it, else every
    /proc/PID/stat whose parent is this process (checked by the caller)."""
    try:
        tasks = os.listdir(f"/proc/{me}/task")
        texts = []
        for task in tasks:
            with open(f"/proc/{me}/task/{task}/children") as handle:
                texts.append(handle.read())
    except OSError:
        yield from (int(entry) for entry in os.listdir("/proc") if entry.isdigit())
        return
    for text in texts:
        yield from (int(pid) for pid in text.split())


def _locked_kb() -> int | None:
    try:
        return procfs.status_kb(procfs.read_status(), "VmLck")
    except OSError:
        return None


def snapshot() -> Snapshot:
    return Snapshot(sysv_segments(), _names(), _children(), _locked_kb())


def _locked_ranges() -> set[tuple[int, int]]:
    return {(entry.maps.start, entry.maps.end) for entry in procfs.read_smaps() if "lo" in entry.vmflags}


# --- per-session bookkeeping -------------------------------------------------------

@dataclass
class _ItemState:
    """What the guard knows about the test being run."""

    baseline: Snapshot
    fork_serial: int  # forks up to this serial happened before the test
    locked_ranges: set[tuple[int, int]] | None  # locked VMAs at setup, when something was locked
    locked_adjust_kb: int = 0  # VmLck that wider-scoped fixtures took (+) or gave back (-) meanwhile


@dataclass
class _Guard:
    mode: str
    held: dict[tuple[object, ...], str] = field(default_factory=dict)  # object -> fixture holding it
    held_locked_kb: dict[int, int] = field(default_factory=dict)  # id(fixturedef) -> kB it locked
    released: set[tuple[object, ...]] = field(default_factory=set)  # held by a fixture now finalised
    current: _ItemState | None = None


GUARD_KEY = pytest.StashKey[_Guard]()
ITEM_KEY = pytest.StashKey[_ItemState]()


def _guard(config: pytest.Config) -> _Guard | None:
    guard = config.stash.get(GUARD_KEY, None)
    if guard is None:
        guard = _Guard(settings.get(config).leaks)
        config.stash[GUARD_KEY] = guard
    return None if guard.mode == "off" else guard


def _last_fork_serial() -> int:
    return child.forked_children[-1][0] if child.forked_children else 0


def _our_pids(state: _ItemState) -> set[int]:
    """This process and the children forked for this test (their objects are ours)."""
    pids = {os.getpid()}
    pids.update(pid for serial, pid in child.forked_children if serial > state.fork_serial)
    return pids


def find_leaks(guard: _Guard, state: _ItemState) -> tuple[list[Segment | ShmName | Child], str | None]:
    """What this test left: new objects of ours that no live wider-scoped fixture holds."""
    now = snapshot()
    pids = _our_pids(state)
    euid = os.geteuid()
    baseline = state.baseline.idents()
    leaked: list[Segment | ShmName | Child] = []
    for ident, obj in now.objects().items():
        suspect = ident in guard.released or (ident not in baseline and ident not in guard.held)
        if not suspect:
            continue
        if isinstance(obj, Segment) and obj.cpid not in pids:
            continue
        if isinstance(obj, ShmName) and (obj.pid not in pids or obj.uid != euid):
            continue
        leaked.append(obj)
    guard.released.clear()
    locked = None
    before, after = state.baseline.locked_kb, now.locked_kb
    if before is not None and after is not None:
        allowed = before + state.locked_adjust_kb
        if after > allowed:
            locked = f"{after - allowed} kB of locked memory (VmLck {allowed} kB before the test, {after} kB after)"
    return leaked, locked


def reclaim(leaked: list[Segment | ShmName | Child], state: _ItemState, locked: bool, guard: _Guard) -> list[str]:
    """Destroy what leaked; returns what could not be destroyed, one line each."""
    problems: list[str] = []
    for obj in leaked:
        try:
            if isinstance(obj, Child):
                _reap(obj)
            elif isinstance(obj, ShmName):
                libc.shm_unlink("/" + obj.name)
            else:
                _remove_segment(obj)
        except OSError as error:
            if error.errno not in (errno.ENOENT, errno.ESRCH, errno.EINVAL, errno.EIDRM, errno.ECHILD):
                problems.append(f"{obj.describe()}: {error}")
    if locked:
        problems += _unlock(state, guard)
    return problems


def _reap(proc: Child) -> None:
    """SIGKILL (its group too when it leads a group of its own) and wait, after checking
    it is still the same child of ours."""
    try:
        stat = procfs.read_proc_stat(proc.pid)
    except (OSError, ValueError):
        return
    if stat.ppid != os.getpid() or (stat.field(22) or "") != proc.starttime:
        return
    if proc.pgrp == proc.pid and proc.pid != os.getpgrp():
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
    try:
        os.kill(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    os.waitpid(proc.pid, 0)


def _remove_segment(segment: Segment) -> None:
    """Detach this process's attachments of the segment, then IPC_RMID it (only if it
    is still the segment that one of our pids created)."""
    for entry in procfs.read_maps():
        if entry.is_sysv_shm and entry.inode == segment.shmid:
            try:
                libc.shmdt(entry.start)
            except OSError:
                pass
    ds = libc.ShmidDs()
    try:
        libc.shmctl(segment.shmid, C.IPC_STAT, ds)
    except OSError:
        return  # gone (or only attached until now)
    if ds.shm_cpid == segment.cpid:
        libc.shmctl(segment.shmid, C.IPC_RMID)


def _unlock(state: _ItemState, guard: _Guard) -> list[str]:
    if not state.baseline.locked_kb and not state.locked_adjust_kb:
        libc.munlockall()  # nothing was locked before: this also clears an mlockall(MCL_FUTURE)
        return []
    if state.locked_adjust_kb or state.locked_ranges is None:
        return ["locked memory: a wider-scoped fixture also holds locked memory; not unlocked"]
    problems = []
    for start, end in _locked_ranges() - state.locked_ranges:
        try:
            libc.munlock(start, end - start)
        except OSError as error:
            problems.append(f"munlock {start:#x}-{end:#x}: {error}")
    return problems


__all__ = ["MemsysLeakWarning", "find_leaks", "reclaim", "snapshot"]
