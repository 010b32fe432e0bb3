"""SysV and POSIX shared-memory objects that are always removed.

Secure by default: mode 0600, IPC_PRIVATE or a random key created with
IPC_CREAT|IPC_EXCL (so two xdist workers never share a segment by accident), and
POSIX names that are unpredictable and opened with O_CREAT|O_EXCL.
"""

from __future__ import annotations

import errno
import os
import secrets
from dataclasses import dataclass

from ..kernel import constants as C
from ..kernel import libc
from ..kernel.libc import PAGE_SIZE
from . import records
from .mapping import Mapping
from .names import unique_name


@dataclass(frozen=True)
class ShmStat:
    """shmctl(IPC_STAT) decoded."""

    key: int
    uid: int
    gid: int
    cuid: int
    cgid: int
    mode: int
    segsz: int
    atime: int
    dtime: int
    ctime: int
    cpid: int
    lpid: int
    nattch: int

    @property
    def permissions(self) -> int:
        return self.mode & 0o777

    @property
    def marked_for_destruction(self) -> bool:
        return bool(self.mode & C.SHM_DEST)

    @property
    def locked(self) -> bool:
        return bool(self.mode & C.SHM_LOCKED)

    @classmethod
    def from_struct(cls, ds: libc.ShmidDs) -> ShmStat:
        perm = ds.shm_perm
        return cls(perm.key, perm.uid, perm.gid, perm.cuid, perm.cgid, perm.mode, ds.shm_segsz,
                   ds.shm_atime, ds.shm_dtime, ds.shm_ctime, ds.shm_cpid, ds.shm_lpid, ds.shm_nattch)


def stat_segment(shmid: int) -> ShmStat:
    return ShmStat.from_struct(libc.shm_stat(shmid))


def unique_key() -> int:
    """A random positive SysV key (never IPC_PRIVATE); uniqueness comes from IPC_EXCL."""
    return secrets.randbelow(0x7FFFFFFE) + 1


class ShmSegment:
    """A SysV segment created by this process; ``remove()`` is idempotent."""

    def __init__(self, size: int = PAGE_SIZE, *, key: int | str = C.IPC_PRIVATE, mode: int = 0o600,
                 flags: int = 0) -> None:
        size = libc._size("shm_segment", "size", size)
        if size == 0:
            raise ValueError("shm_segment: size must be positive")
        if mode & ~0o777:
            raise ValueError(f"shm_segment: mode {mode:#o} has bits outside 0777")
        records.note_segment_intent()  # before shmget: a kill -9 in between leaves no unrecorded segment
        if key == "unique":
            self.shmid, self.key = self._create_unique(size, mode | flags)
        elif isinstance(key, int) and not isinstance(key, bool):
            self.key = key
            self.shmid = libc.shmget(key, size, C.IPC_CREAT | C.IPC_EXCL | mode | flags)
        else:
            raise ValueError(f"shm_segment: key must be an int or 'unique', got {key!r}")
        records.note_segment(self.shmid, self.key)  # so a later session can sweep it after kill -9
        self.size = size
        self.attachments: list[int] = []
        self.removed = False

    @staticmethod
    def _create_unique(size: int, flags: int) -> tuple[int, int]:
        for _ in range(64):
            key = unique_key()
            try:
                return libc.shmget(key, size, C.IPC_CREAT | C.IPC_EXCL | flags), key
            except FileExistsError:
                continue
        raise OSError(errno.EEXIST, "64 random SysV keys were all taken", "shmget")

    def __repr__(self) -> str:
        return f"<ShmSegment id={self.shmid} key={self.key:#x} size={self.size}{' removed' if self.removed else ''}>"

    def __enter__(self) -> ShmSegment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def attach(self, addr: int = 0, flags: int = 0) -> int:
        result = libc.shmat(self.shmid, addr, flags)
        self.attachments.append(result)
        return result

    def detach(self, addr: int) -> None:
        libc.shmdt(addr)
        if addr in self.attachments:
            self.attachments.remove(addr)

    def stat(self) -> ShmStat:
        return stat_segment(self.shmid)

    def remove(self) -> None:
        """IPC_RMID: destroyed once the last attachment goes."""
        if self.removed:
            return
        self.removed = True
        try:
            libc.shmctl(self.shmid, C.IPC_RMID)
        except OSError as error:
            if error.errno not in (errno.EINVAL, errno.EIDRM):  # already gone
                raise

    def close(self) -> None:
        """Detach every attachment this object made, then remove the segment."""
        for addr in list(self.attachments):
            try:
                self.detach(addr)
            except OSError:
                self.attachments.remove(addr)
        self.remove()


class PosixShm:
    """A POSIX shm object opened O_CREAT|O_EXCL|O_RDWR; unlinked and closed at ``close()``."""

    def __init__(self, size: int = PAGE_SIZE, *, mode: int = 0o600, name: str | None = None) -> None:
        size = libc._size("posix_shm", "size", size)
        if size >= 1 << 63:
            raise ValueError(f"posix_shm: size {size} does not fit in off_t (ftruncate's length)")
        if mode & ~0o777:
            raise ValueError(f"posix_shm: mode {mode:#o} has bits outside 0777")
        self.name = name or unique_name()
        records.note_name(self.name)  # recorded before it exists: never an unrecorded name
        self.fd = libc.shm_open(self.name, os.O_CREAT | os.O_EXCL | os.O_RDWR, mode)
        self.unlinked = False
        self.mappings: list[Mapping] = []
        try:
            if size:
                os.ftruncate(self.fd, size)
        except BaseException:
            self.close()
            raise
        self.size = size

    def __repr__(self) -> str:
        return f"<PosixShm {self.name} fd={self.fd} size={self.size}>"

    def __enter__(self) -> PosixShm:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def path(self) -> str:
        return "/dev/shm" + self.name

    def map(self, pages: int | None = None, prot: int = C.PROT_READ | C.PROT_WRITE,
            flags: int = C.MAP_SHARED, offset: int = 0) -> Mapping:
        count = pages if pages is not None else max(1, -(-self.size // PAGE_SIZE))
        mapping = Mapping.create(count, prot, flags, self.fd, offset)
        self.mappings.append(mapping)  # unmapped by close(), like ShmSegment's attachments
        return mapping

    def unlink(self) -> None:
        if self.unlinked:
            return
        self.unlinked = True
        try:
            libc.shm_unlink(self.name)
        except FileNotFoundError:
            pass

    def close(self) -> None:
        """Unmap what ``map()`` made, unlink the name and close the fd."""
        for mapping in self.mappings:
            mapping.unmap()
        self.mappings.clear()
        self.unlink()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
