"""A memory-mapped key-value file that survives a crash of its writer (seed exercise 3).

The file is a fixed-size log of records mapped MAP_SHARED::

    header (16 bytes): magic "MMKV0001", u64 reserved
    record: u32 magic, u32 key length, u32 value length, u32 CRC-32 of (lengths, key, value),
            then key and value; records are 8-byte aligned; a zero word ends the log.

put() appends a record through the mapping and msync(MS_SYNC)s the pages it touched
before returning, so a put that returned is on disk. A writer that dies in the middle of
a put leaves a record whose checksum does not match (or a torn header): opening the
file scans the log, keeps every record up to the first bad one, and zeroes the tail, so
the next put continues from the last good record. The latest value of a key wins; a
value of None (a tombstone) deletes it.
"""

from __future__ import annotations

import ctypes
import os
import struct
import zlib

from pytest_memsyscalls.kernel import constants as C
from pytest_memsyscalls.kernel import libc
from pytest_memsyscalls.kernel.libc import PAGE_SIZE as PAGE

MAGIC = b"MMKV0001"
RECORD_MAGIC = 0x5245434B  # "RECK"
HEADER = struct.Struct("<8sQ")
RECORD = struct.Struct("<IIII")
TOMBSTONE = 0xFFFFFFFF


class DatabaseFull(Exception):
    """The record does not fit into the file."""


def record_is_valid(klen: int, vlen: int, crc: int, key: bytes, value: bytes) -> bool:
    """The checksum decides whether a record was completely written."""
    return zlib.crc32(struct.pack("<II", klen, vlen) + key + value) == crc


class KvFile:
    """``KvFile(path, size)``: open (creating if needed) a database file of ``size`` bytes."""

    def __init__(self, path: str | os.PathLike[str], size: int = 1 << 20) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            if os.fstat(self.fd).st_size == 0:
                os.ftruncate(self.fd, -(-size // PAGE) * PAGE)
            self.size = os.fstat(self.fd).st_size
            self.addr = libc.mmap(0, self.size, C.PROT_READ | C.PROT_WRITE, C.MAP_SHARED, self.fd, 0)
        except BaseException:
            os.close(self.fd)
            raise
        self.closed = False
        self.index: dict[bytes, bytes] = {}
        self.records = 0
        self.recovered_bytes = 0  # size of the torn tail found (and cleared) on open
        if self._bytes(0, 8) != MAGIC:
            self._store(0, HEADER.pack(MAGIC, 0))
            self._sync(0, HEADER.size)
        self.end = self._recover()

    def __enter__(self) -> KvFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # raw access to the mapping
    def _bytes(self, offset: int, length: int) -> bytes:
        return ctypes.string_at(self.addr + offset, length)

    def _store(self, offset: int, data: bytes) -> None:
        ctypes.memmove(self.addr + offset, data, len(data))

    def _sync(self, offset: int, length: int) -> None:
        start = offset - offset % PAGE
        libc.msync(self.addr + start, offset + length - start, C.MS_SYNC)

    def _recover(self) -> int:
        offset = HEADER.size
        while offset + RECORD.size <= self.size:
            magic, klen, vlen, crc = RECORD.unpack(self._bytes(offset, RECORD.size))
            body = klen + (0 if vlen == TOMBSTONE else vlen)
            if magic != RECORD_MAGIC or offset + RECORD.size + body > self.size:
                break
            key = self._bytes(offset + RECORD.size, klen)
            value = b"" if vlen == TOMBSTONE else self._bytes(offset + RECORD.size + klen, vlen)
            if not record_is_valid(klen, vlen, crc, key, value):
                break
            if vlen == TOMBSTONE:
                self.index.pop(key, None)
            else:
                self.index[key] = value
            self.records += 1
            offset += -(-(RECORD.size + body) // 8) * 8
        # Clear whatever a crashed writer left after the last good record.
        tail = self._bytes(offset, min(self.size - offset, 1 << 16)).rstrip(b"\0")
        if tail:
            self.recovered_bytes = len(tail)
            self._store(offset, bytes(len(tail)))
            self._sync(offset, len(tail))
        return offset

    def put(self, key: bytes, value: bytes | None) -> None:
        """Store (or, with None, delete) ``key``; durable when this returns."""
        if self.closed:
            raise ValueError("put on a closed database")
        vlen = TOMBSTONE if value is None else len(value)
        body = key + (value or b"")
        length = -(-(RECORD.size + len(body)) // 8) * 8
        if self.end + length + RECORD.size > self.size:
            raise DatabaseFull(f"{length} more bytes do not fit into {self.size}")
        crc = zlib.crc32(struct.pack("<II", len(key), vlen) + body)
        self._store(self.end, RECORD.pack(RECORD_MAGIC, len(key), vlen, crc) + body)
        self._sync(self.end, length)
        self.end += length
        self.records += 1
        if value is None:
            self.index.pop(key, None)
        else:
            self.index[key] = value

    def get(self, key: bytes) -> bytes | None:
        return self.index.get(key)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            libc.munmap(self.addr, self.size)
            os.close(self.fd)
