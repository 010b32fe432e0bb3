"""The SysV shared-memory segments that exist now, as the kernel lists them.

Why here: the leak guard (what a test left behind) and the sweep (what a killed run
left) both need this list; it is read from /proc/sysvipc/shm, or, where that file is
missing (gVisor), from SHM_INFO and SHM_STAT index by index.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from . import constants as C
from . import libc, procfs


@dataclass(frozen=True)
class Segment:
    shmid: int
    key: int
    size: int
    mode: int
    cpid: int
    nattch: int
    uid: int

    @property
    def ident(self) -> tuple[str, int, int]:
        return ("sysv", self.shmid, self.cpid)

    def describe(self) -> str:
        state = " marked for destruction" if self.mode & C.SHM_DEST else ""
        return (f"SysV segment shmid={self.shmid} key={self.key:#x} size={self.size} "
                f"mode={self.mode & 0o777:04o} created by pid {self.cpid} nattch={self.nattch}{state}")


def sysv_segments() -> dict[tuple[str, int, int], Segment]:
    """Every SysV segment this process can see, by ``Segment.ident``."""
    try:
        entries = procfs.read_sysvipc_shm()
    except OSError:  # no /proc/sysvipc (gVisor): ask the kernel index by index
        return {seg.ident: seg for seg in segments_by_index()}
    found = (Segment(e.shmid, e.key, e.size, e.perms, e.cpid, e.nattch, e.uid) for e in entries)
    return {seg.ident: seg for seg in found}


def segments_by_index() -> Iterator[Segment]:
    """The same, asked of the kernel one SHM_STAT index at a time."""
    usage = libc.ShmInfoUsage()
    try:
        highest = libc.shmctl(0, C.SHM_INFO, usage)
    except OSError:
        return
    for index in range(highest + 1):
        ds = libc.ShmidDs()
        try:
            shmid = libc.shmctl(index, C.SHM_STAT, ds)
        except OSError:
            continue
        perm = ds.shm_perm
        yield Segment(shmid, perm.key, ds.shm_segsz, perm.mode, ds.shm_cpid, ds.shm_nattch, perm.uid)
