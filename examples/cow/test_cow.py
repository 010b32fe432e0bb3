"""Copy-on-write snapshots, checked through the fault probe and /proc/self/maps."""

from __future__ import annotations

import signal

import pytest

from pytest_memsyscalls import Fault
from pytest_memsyscalls.kernel import constants as C

from . import Snapshot


def assert_snapshot_is_protected(snapshot: Snapshot, page_size: int, fault_probe) -> None:
    """Every page not yet copied refuses a plain store with SEGV_ACCERR (so nothing can
    change it behind the snapshot's back), and the old bytes are still readable."""
    for index in range(snapshot.length // page_size):
        if index in snapshot.copies:
            continue
        addr = snapshot.addr + index * page_size
        assert fault_probe.write(addr, 0x5A) == Fault(signal.SIGSEGV, C.SEGV_ACCERR, addr)


def test_untouched_pages_are_write_protected(mapped_pages, page_size: int, fault_probe) -> None:
    region = mapped_pages(4)
    with Snapshot(region.addr, region.length) as snapshot:
        assert_snapshot_is_protected(snapshot, page_size, fault_probe)


def test_first_write_copies_only_that_page(mapped_pages, page_size: int, fault_probe) -> None:
    region = mapped_pages(4)
    region.buffer[page_size + 7] = 1
    with Snapshot(region.addr, region.length) as snapshot:
        snapshot.write(page_size + 7, 2)
        snapshot.write(page_size + 8, 3)  # same page: no second fault, no second copy
        assert (snapshot.faults, sorted(snapshot.copies)) == (1, [1])
        assert (region.read(page_size + 7), snapshot.read(page_size + 7)) == (2, 1)
        assert (region.read(page_size + 8), snapshot.read(page_size + 8)) == (3, 0)
        # The kernel's view: page 1 is writable now, pages 0, 2 and 3 still read-only.
        vmas = region.vma()
        perms = [next(v.maps.perms for v in vmas if v.maps.contains(region.page(i))) for i in range(4)]
        assert perms == ["r--p", "rw-p", "r--p", "r--p"]
        assert_snapshot_is_protected(snapshot, page_size, fault_probe)


def test_restore_rolls_back_and_protects_again(mapped_pages, page_size: int, fault_probe) -> None:
    region = mapped_pages(2)
    region.buffer[0] = 10
    with Snapshot(region.addr, region.length) as snapshot:
        snapshot.write(0, 11)
        snapshot.restore()
        assert region.read(0) == 10 and snapshot.copies == {}
        assert_snapshot_is_protected(snapshot, page_size, fault_probe)
    assert fault_probe.write(region.addr, 12) is None  # closed: writable again


def test_the_protection_check_catches_a_snapshot_without_mprotect(monkeypatch: pytest.MonkeyPatch, mapped_pages,
                                                                   page_size: int, fault_probe) -> None:
    """Break the mechanism (no mprotect at snapshot time): the probe-based check fails, and the
    snapshot silently loses the old value, which is what the check exists to prevent."""
    from . import __name__ as module

    monkeypatch.setattr(f"{module}.PROTECT_ON_SNAPSHOT", False)
    region = mapped_pages(1)
    region.buffer[0] = 1
    with Snapshot(region.addr, region.length) as broken:
        with pytest.raises(AssertionError):
            assert_snapshot_is_protected(broken, page_size, fault_probe)
        broken.write(0, 2)
        assert broken.read(0) == 2  # the "snapshot" now shows the new value
