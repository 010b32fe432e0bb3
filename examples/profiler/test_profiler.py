"""The profiler against mappings whose cost the test knows exactly.

The test mapping is fenced by PROT_NONE pages so that its middle is a VMA of its own
(adjacent anonymous VMAs with equal permissions merge, which would blur the numbers).
"""

from __future__ import annotations

import pytest

from pytest_memsyscalls.kernel import constants as C

from . import Region, diff, snapshot, track

PAGES = 64


@pytest.fixture
def fenced(mapped_pages, page_size: int):
    """A PAGES-page read-write anonymous VMA between two PROT_NONE pages; untouched."""
    mapping = mapped_pages(PAGES + 2)
    mapping.protect(C.PROT_NONE, 0, page_size)
    mapping.protect(C.PROT_NONE, (PAGES + 1) * page_size, page_size)
    return mapping


@pytest.fixture
def per_page_rss(mapped_pages, page_size: int) -> None:
    """Probe on a scratch mapping that smaps' Rss counts touched pages only (Linux does; gVisor
    reports the whole anonymous mapping as resident): skip, naming it, where it does not."""
    scratch = mapped_pages(4)
    # PROT_NONE on both sides: pages 1-2 are a VMA of their own, whose Rss is their own (with
    # one fence, the kernel could merge them with a resident read-write neighbour)
    scratch.protect(C.PROT_NONE, 0, page_size)
    scratch.protect(C.PROT_NONE, 3 * page_size, page_size)
    (vma,) = [v for v in scratch.vma() if v.maps.contains(scratch.page(1))]
    rss = vma.smaps.get("Rss") if vma.smaps else None
    if rss != 0:
        pytest.skip(f"unsupported:per-page Rss in /proc/self/smaps (an untouched anonymous VMA shows Rss={rss} kB)")


def region_of(fenced, page_size: int, shot) -> Region:
    region = shot.region_at(fenced.page(1))
    assert region is not None and (region.start, region.end) == (fenced.page(1), fenced.page(PAGES + 1))
    return region


def assert_costs(fenced, page_size: int, touched: int) -> None:
    """The profiler's figures for the fenced VMA equal what the test did to it: PAGES pages of
    address space, ``touched`` of them resident."""
    region = region_of(fenced, page_size, snapshot())
    assert (region.kind, region.size, region.rss) == ("anon", PAGES * page_size, touched * page_size)


def test_untouched_mapping_costs_address_space_not_memory(per_page_rss, fenced, page_size: int) -> None:
    assert_costs(fenced, page_size, touched=0)


def test_touching_pages_makes_them_resident(per_page_rss, fenced, page_size: int) -> None:
    for i in range(1, 11):
        fenced.write(i * page_size, 1)
    assert_costs(fenced, page_size, touched=10)


def test_diff_reports_new_regions_by_kind(mapped_pages, mapped_file, page_size: int) -> None:
    with track() as result:
        anon = mapped_pages(PAGES)
        for i in range(PAGES):
            anon.write(i * page_size, 1)
        data = mapped_file(b"x" * (4 * page_size))
    (change,) = result
    assert change.by_kind["anon"].size >= PAGES * page_size  # the interpreter may map more meanwhile
    assert change.by_kind["anon"].rss >= PAGES * page_size
    assert change.by_kind["file"].size >= 4 * page_size
    files = [r for r in change.new if r.kind == "file" and r.path == str(data.path)]
    assert [(r.start, r.size) for r in files] == [(data.addr, 4 * page_size)]
    assert "anon" in change.report()
    before_unmap = snapshot()
    anon.unmap()
    shrink = diff(before_unmap, snapshot())
    assert any(r.start <= anon.addr < r.end for r in shrink.gone)


def test_the_check_catches_a_profiler_reporting_size_as_resident(monkeypatch: pytest.MonkeyPatch, per_page_rss,
                                                                 fenced, page_size: int) -> None:
    """Break the profiler (read smaps' Size where Rss belongs): the check fails."""
    from . import __name__ as module

    monkeypatch.setattr(f"{module}.RSS_FIELD", "Size")
    with pytest.raises(AssertionError):
        assert_costs(fenced, page_size, touched=0)
