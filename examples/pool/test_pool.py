"""The pool as an outside project would test it with pytest-memsyscalls' fixtures.

The checks ask the kernel (the fault probe, /proc/self/maps) rather than the pool
itself; the last test breaks the pool and shows the same check catching it.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest

from pytest_memsyscalls import Fault
from pytest_memsyscalls.kernel import constants as C
from pytest_memsyscalls.kernel import procfs

from . import MemoryPool, PoolExhausted


@pytest.fixture
def pool() -> Iterator[MemoryPool]:
    with MemoryPool(block_size=100, count=80) as created:
        yield created


@pytest.fixture
def prot_none_code(mapped_pages, fault_probe) -> int:
    """The si_code this system reports for a read of a PROT_NONE page, probed on a scratch page
    (Linux: SEGV_ACCERR; gVisor: SEGV_MAPERR, as it maps no host page there)."""
    scratch = mapped_pages(1, prot=C.PROT_NONE)
    fault = fault_probe.read(scratch.addr)
    assert fault is not None and fault.signo == signal.SIGSEGV, f"reading a PROT_NONE page gave {fault}"
    return fault.code


def assert_guarded(pool: MemoryPool, fault_probe, prot_none_code: int) -> None:
    """Right after the usable pages the kernel has a PROT_NONE page (not a hole, not someone
    else's memory), and touching it faults as PROT_NONE faults here. A read probe, so the check
    is safe whatever lies there when the pool is broken."""
    guard = procfs.vma_at(pool.guard)
    assert guard is not None and guard.perms == "---p" and guard.path == "", f"after the pool: {guard}"
    assert fault_probe.read(pool.guard) == Fault(signal.SIGSEGV, prot_none_code, pool.guard)


def test_overrun_past_the_last_block_faults(pool: MemoryPool, fault_probe, prot_none_code: int) -> None:
    assert_guarded(pool, fault_probe, prot_none_code)


def test_blocks_are_distinct_aligned_and_writable(pool: MemoryPool, fault_probe) -> None:
    blocks = [pool.alloc() for _ in range(pool.count)]
    assert len(set(blocks)) == pool.count and all(b % 16 == 0 for b in blocks)
    assert sorted(blocks) == [pool.addr + i * pool.stride for i in range(pool.count)]
    for value, block in enumerate(blocks):
        assert fault_probe.write(block + pool.block_size - 1, value) is None  # last byte of each block
    assert [fault_probe.read_value(b + pool.block_size - 1)[1] for b in blocks] == list(range(pool.count))
    with pytest.raises(PoolExhausted):
        pool.alloc()


def test_free_recycles_and_rejects_bad_addresses(pool: MemoryPool) -> None:
    first = pool.alloc()
    pool.free(first)
    assert pool.alloc() == first
    with pytest.raises(ValueError, match="double free"):
        pool.free(first) or pool.free(first)
    with pytest.raises(ValueError, match="not a block"):
        pool.free(first + 1)


def test_pool_is_one_private_anonymous_mapping_and_close_unmaps_it(fault_probe, prot_none_code: int) -> None:
    pool = MemoryPool(block_size=4096, count=3)
    usable = procfs.vma_at(pool.addr)  # may have merged with a neighbouring anonymous VMA below
    guard = procfs.vma_at(pool.guard)
    assert usable is not None and (usable.perms, usable.path, usable.end) == ("rw-p", "", pool.guard)
    assert guard is not None and guard.perms == "---p"
    assert_guarded(pool, fault_probe, prot_none_code)
    pool.close()
    assert procfs.vma_at(pool.addr) is None and procfs.vma_at(pool.guard) is None
    assert fault_probe.read(pool.addr) == Fault(signal.SIGSEGV, C.SEGV_MAPERR, pool.addr)


def test_the_guard_check_catches_a_pool_without_guard(monkeypatch: pytest.MonkeyPatch, fault_probe, arena,
                                                      prot_none_code: int) -> None:
    """Break the pool (no guard page) and the fixture-based check fails, as it must. The pool is
    placed in a hole of the arena with a writable page of the arena right after it, so what
    follows the broken pool is known: ordinary memory an overrun would silently corrupt."""
    from . import __name__ as module

    monkeypatch.setattr(f"{module}.GUARD_PAGES", 0)
    arena.hole(10)
    arena.map(11, 1)
    with MemoryPool(block_size=4096, count=1, addr=arena.page(10)) as broken:
        assert fault_probe.write(broken.guard, 1) is None  # the overrun lands, unnoticed
        with pytest.raises(AssertionError):
            assert_guarded(broken, fault_probe, prot_none_code)
