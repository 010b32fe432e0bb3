"""A fixed-size block allocator over one anonymous mmap, with a guard page (seed exercise 1).

Blocks come from a single ``mmap(MAP_PRIVATE|MAP_ANONYMOUS)``; a PROT_NONE guard page
follows the last block so that running off the end of the pool faults instead of
silently corrupting whatever the kernel mapped next. Freed blocks go on a free list
(LIFO, as the seed's malloc sketch does) and are handed out again; the whole pool is
returned to the kernel with one munmap on close().
"""

from __future__ import annotations

import errno

from pytest_memsyscalls.kernel import constants as C
from pytest_memsyscalls.kernel import libc

GUARD_PAGES = 1  # PROT_NONE pages after the blocks


class PoolExhausted(MemoryError):
    """Every block is in use."""


class MemoryPool:
    """``block_size``-byte blocks, ``count`` of them, each aligned to ``align`` bytes; placed
    where the kernel likes, or exactly at ``addr`` (MAP_FIXED_NOREPLACE: never over other memory)."""

    def __init__(self, block_size: int, count: int, align: int = 16, addr: int = 0) -> None:
        if block_size <= 0 or count <= 0 or align <= 0 or align & (align - 1):
            raise ValueError("block_size and count must be positive, align a power of two")
        self.stride = -(-block_size // align) * align
        self.block_size = block_size
        self.count = count
        self.usable = -(-self.stride * count // libc.PAGE_SIZE) * libc.PAGE_SIZE
        self.length = self.usable + GUARD_PAGES * libc.PAGE_SIZE
        flags = C.MAP_PRIVATE | C.MAP_ANONYMOUS | (C.MAP_FIXED_NOREPLACE if addr else 0)
        self.addr = libc.mmap(addr, self.length, C.PROT_READ | C.PROT_WRITE, flags)
        if addr and self.addr != addr:  # a kernel older than 4.17 took MAP_FIXED_NOREPLACE as a hint
            libc.munmap(self.addr, self.length)
            raise FileExistsError(errno.EEXIST, f"{addr:#x} is not free for a {self.length}-byte pool")
        if GUARD_PAGES:
            libc.mprotect(self.addr + self.usable, GUARD_PAGES * libc.PAGE_SIZE, C.PROT_NONE)
        # The first block handed out is the lowest: pop() from the end of a reversed list.
        self._free = [self.addr + i * self.stride for i in reversed(range(count))]
        self._used: set[int] = set()
        self.closed = False

    def __enter__(self) -> MemoryPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def guard(self) -> int:
        """Address of the first guard page (the end of the usable pages)."""
        return self.addr + self.usable

    @property
    def in_use(self) -> int:
        return len(self._used)

    def alloc(self) -> int:
        """The address of a free block; PoolExhausted when there is none."""
        if self.closed:
            raise ValueError("alloc on a closed pool")
        if not self._free:
            raise PoolExhausted(f"all {self.count} blocks of {self.block_size} bytes are in use")
        block = self._free.pop()
        self._used.add(block)
        return block

    def free(self, block: int) -> None:
        """Give a block back; a foreign, misaligned or already-free address is a ValueError."""
        offset = block - self.addr
        if not 0 <= offset < self.stride * self.count or offset % self.stride:
            raise ValueError(f"{block:#x} is not a block of this pool")
        if block not in self._used:
            raise ValueError(f"double free of block {block:#x}")
        self._used.remove(block)
        self._free.append(block)

    def close(self) -> None:
        """munmap the whole pool (blocks and guard) at once; idempotent."""
        if not self.closed:
            self.closed = True
            libc.munmap(self.addr, self.length)
