"""A logger whose log lives in POSIX shared memory, written by several processes (seed exercise 2).

Layout of the shared object: a 24-byte header (magic, bytes used, entry count) and then
records ``u32 length, u32 pid, message``, 4-byte aligned. Synchronisation, without sleeps:

- **Mutual exclusion**: every append and every read holds a POSIX record lock
  (``fcntl.lockf``) on the shm file. Record locks belong to the process, so processes that
  opened the object by name (or inherited the descriptor) exclude each other.
- **Publication**: a record is written first and the header's ``used``/``count`` are
  updated after it, both under the lock, so a reader never sees half a record.
- **Wake-ups**: an optional eventfd (inherited across fork) is incremented after each
  append; ``wait_for(n)`` blocks on it instead of polling.

The log is append-only with a fixed capacity (``LogFull`` when it is exhausted).
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import select
import struct
import time

from pytest_memsyscalls.kernel import constants as C
from pytest_memsyscalls.kernel import libc

MAGIC = 0x474F4C4D454D5348  # "HSMEMLOG"
HEADER = struct.Struct("<QQQ")
RECORD = struct.Struct("<II")
MAP_FLAGS = C.MAP_SHARED  # what makes the log shared; the tests flip it to show the check failing


class LogFull(Exception):
    """The message does not fit into the rest of the shared object."""


class ShmLog:
    """A log over the shm object open on ``fd`` (``size`` bytes, already ftruncate'd)."""

    def __init__(self, fd: int, size: int, *, notify: int | None = None, create: bool = False) -> None:
        self.fd, self.size, self.notify = fd, size, notify
        self.addr = libc.mmap(0, size, C.PROT_READ | C.PROT_WRITE, MAP_FLAGS, fd, 0)
        self.closed = False
        with self._locked():
            if create:
                self._store(0, HEADER.pack(MAGIC, HEADER.size, 0))
            elif HEADER.unpack(ctypes.string_at(self.addr, HEADER.size))[0] != MAGIC:
                self.close()
                raise ValueError("not a shm log (bad magic)")

    @classmethod
    def attach(cls, name: str, *, notify: int | None = None) -> ShmLog:
        """Open an existing log by its shm name, from any process of the same user."""
        fd = libc.shm_open(name, os.O_RDWR | os.O_CLOEXEC)
        log = cls(fd, os.fstat(fd).st_size, notify=notify)
        log._own_fd = True
        return log

    _own_fd = False

    def __enter__(self) -> ShmLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _locked(self) -> _Lock:
        return _Lock(self.fd)

    def _store(self, offset: int, data: bytes) -> None:
        ctypes.memmove(self.addr + offset, data, len(data))

    def _header(self) -> tuple[int, int, int]:
        magic, used, count = HEADER.unpack(ctypes.string_at(self.addr, HEADER.size))
        return magic, used, count

    def log(self, message: bytes) -> None:
        """Append one message (under the lock) and wake a waiting reader."""
        length = -(-(RECORD.size + len(message)) // 4) * 4
        with self._locked():
            magic, used, count = self._header()
            if used + length > self.size:
                raise LogFull(f"{len(message)}-byte message does not fit ({self.size - used} bytes left)")
            self._store(used, RECORD.pack(len(message), os.getpid()) + message)
            self._store(0, HEADER.pack(magic, used + length, count + 1))  # publish after the record
        if self.notify is not None:
            os.eventfd_write(self.notify, 1)

    def entries(self) -> list[tuple[int, bytes]]:
        """Every (pid, message) logged so far, in log order."""
        with self._locked():
            _, used, count = self._header()
            data = ctypes.string_at(self.addr, used)
        out, offset = [], HEADER.size
        for _ in range(count):
            length, pid = RECORD.unpack_from(data, offset)
            out.append((pid, data[offset + RECORD.size:offset + RECORD.size + length]))
            offset += -(-(RECORD.size + length) // 4) * 4
        return out

    def count(self) -> int:
        with self._locked():
            return self._header()[2]

    def wait_for(self, n: int, timeout: float = 30.0) -> None:
        """Block until at least ``n`` entries are in the log (needs ``notify``)."""
        if self.notify is None:
            raise ValueError("wait_for needs the eventfd given as notify=")
        deadline = time.monotonic() + timeout
        while self.count() < n:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.notify], [], [], left)[0]:
                raise TimeoutError(f"{self.count()} of {n} entries after {timeout} s")
            os.eventfd_read(self.notify)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            libc.munmap(self.addr, self.size)
            if self._own_fd:
                os.close(self.fd)


class _Lock:
    """fcntl.lockf over the whole object: excludes other processes, not other threads."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __enter__(self) -> None:
        fcntl.lockf(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        fcntl.lockf(self.fd, fcntl.LOCK_UN)
