"""What glibc's malloc really does with the break and with mmap, against the tutorial's picture.

The tutorial (§1) draws malloc(100) as sbrk(100), large allocations as mmap and free as never
shrinking the heap. glibc's ptmalloc is more specific, and mallopt(3)/malloc(3) document
it: the heap grows by the request plus M_TOP_PAD (128 KiB), requests of at least
M_MMAP_THRESHOLD (128 KiB) that the free space cannot serve get their own mapping, the
threshold moves when such a mapping is freed, and free() *does* give memory back when the
free space at the top exceeds M_TRIM_THRESHOLD. All of this is glibc behaviour (tier
impl); each experiment runs in a fresh memsys-brk-helper process whose malloc tunables
are scrubbed, so the documented defaults apply.
"""

from __future__ import annotations

from pytest_memsyscalls import semantic
from pytest_memsyscalls.memory.brk import M_MMAP_THRESHOLD, M_TRIM_THRESHOLD, BrkRun, run

KIB = 1024
TOP_PAD = 128 * KIB  # M_TOP_PAD default, mallopt(3)
MMAP_THRESHOLD = 128 * KIB  # M_MMAP_THRESHOLD default, mallopt(3)
TRIM_THRESHOLD = 128 * KIB  # M_TRIM_THRESHOLD default, mallopt(3)
CHUNK_HEADER = 16  # 2 * sizeof(size_t) on 64-bit: user pointer = chunk + 16
MINSIZE = 32  # smallest chunk on 64-bit


def _in_heap(result: BrkRun, addr: int, heap_end: int) -> bool:
    return result.start <= addr < heap_end


@semantic("malloc.first_call.extends_by_top_pad",
          "The tutorial says malloc(100) uses sbrk(100); glibc's first malloc(100) moves the break by far more: "
          "the request plus M_TOP_PAD (128 KiB), with the new break rounded to a page boundary",
          source="tutorial §1 'After malloc(100)'; mallopt(3) M_TOP_PAD", tier="impl")
def test_first_malloc_grows_heap_by_top_pad() -> None:
    result = run("malloc:100")
    grown = result[0].brk_after - result.start
    assert result[0].ret and _in_heap(result, result[0].ret, result[0].brk_after)
    assert grown >= 100 + TOP_PAD, f"the break moved by {grown} bytes"
    assert result[0].brk_after % result.page_size == 0


@semantic("malloc.small.served_without_moving_break",
          "The tutorial draws the break moving up for another malloc(50); glibc serves a small request from the "
          "free space already at the top of the heap without moving the break",
          source="tutorial §1 'After another malloc(50)'; malloc(3) NOTES", tier="impl")
def test_later_small_malloc_does_not_move_break() -> None:
    result = run("malloc:100", "malloc:50")
    first, second = result[0], result[1]
    assert second.brk_after == first.brk_after
    assert second.ret and _in_heap(result, second.ret, second.brk_after)
    assert first.ret is not None and second.ret >= first.ret + 100


@semantic("malloc.large.uses_own_mapping",
          "A malloc of at least M_MMAP_THRESHOLD (128 KiB) that the heap's free space cannot serve is "
          "a separate private anonymous mapping outside [heap]; the break does not move",
          source="malloc(3) NOTES; mallopt(3) M_MMAP_THRESHOLD; tutorial §5 'Large allocations -> mmap'",
          tier="impl")
def test_large_malloc_gets_its_own_mapping() -> None:
    size = 2 * MMAP_THRESHOLD  # more than the 128 KiB pad the first malloc leaves free
    result = run("malloc:16", f"malloc:{size}", "vma:slot1")
    large, vma = result[1], result[2].vma
    assert large.ret and large.brk_after == result[0].brk_after
    assert not _in_heap(result, large.ret, large.brk_after)
    assert vma is not None and vma.path == "" and vma.perms == "rw-p"
    assert vma.contains(large.ret) and vma.contains(large.ret + size - 1)


@semantic("malloc.mmap_threshold.dynamic",
          "The mmap threshold is dynamic: freeing an mmapped block larger than the threshold raises the "
          "threshold to that block's size, so the same request is then served from the heap (the break moves)",
          source="mallopt(3) M_MMAP_THRESHOLD Note", tier="impl")
def test_freeing_mmapped_chunk_raises_threshold() -> None:
    size = 2 * MMAP_THRESHOLD
    result = run("malloc:16", f"malloc:{size}", "free:1", f"malloc:{size}", "vma:slot2")
    before = result[0].brk_after
    first, again, vma = result[1], result[3], result[4].vma
    assert not _in_heap(result, first.ret or 0, before), "the first large block should be mmapped"
    assert again.brk_after > before
    assert again.ret and _in_heap(result, again.ret, again.brk_after)
    assert vma is not None and vma.path == "[heap]"


@semantic("malloc.mallopt.mmap_threshold_sets_threshold",
          "mallopt(M_MMAP_THRESHOLD, 64 KiB) returns 1 and makes a 100000-byte request that the heap "
          "cannot serve use mmap, where the default threshold (128 KiB) would grow the heap",
          source="mallopt(3) M_MMAP_THRESHOLD, RETURN VALUE", tier="impl")
def test_mallopt_mmap_threshold() -> None:
    steps = ("malloc:100000", "malloc:100000", "vma:slot1")
    default = run(*steps)
    lowered = run(f"mallopt:{M_MMAP_THRESHOLD}={64 * KIB}", *steps)
    assert default[2].vma is not None and default[2].vma.path == "[heap]"
    assert default[1].brk_after > default[0].brk_after
    assert lowered[0].ret == 1
    assert lowered[3].vma is not None and lowered[3].vma.path == ""
    assert lowered[2].brk_after == lowered[1].brk_after


@semantic("malloc.free.small_keeps_break",
          "free() of a small block does not move the break; the block is kept for reuse and the next "
          "malloc of the same size gets the same address",
          source="tutorial §1 'free() usually doesn't call brk()'; malloc(3)", tier="impl")
def test_free_of_small_block_keeps_break_and_reuses() -> None:
    result = run("malloc:16", "malloc:1000", "free:1", "malloc:1000")
    assert result[2].brk_after == result[1].brk_after
    assert result[3].ret == result[1].ret
    assert result[3].brk_after == result[1].brk_after


@semantic("malloc.free.trims_above_trim_threshold",
          "The tutorial says free usually does not shrink the heap; glibc's free() does lower the break when the "
          "free space at the top exceeds M_TRIM_THRESHOLD (128 KiB), keeping M_TOP_PAD (128 KiB) of it",
          source="mallopt(3) M_TRIM_THRESHOLD, M_TOP_PAD; tutorial §1 Note", tier="impl")
def test_free_of_top_chunk_trims_heap() -> None:
    result = run("malloc:100000", "malloc:100000", "free:1")
    grown, freed = result[1], result[2]
    assert grown.brk_after > result[0].brk_after, "the second block should have grown the heap"
    top_start = (grown.ret or 0) - CHUNK_HEADER
    assert grown.brk_after - top_start > TRIM_THRESHOLD
    assert freed.brk_after < grown.brk_after
    kept = freed.brk_after - top_start
    assert TOP_PAD < kept <= TOP_PAD + MINSIZE + result.page_size, f"{kept} bytes kept at the top"


@semantic("malloc.mallopt.trim_threshold_disables",
          "mallopt(M_TRIM_THRESHOLD, -1) disables trimming: the same free that lowers the break by "
          "default leaves it unchanged",
          source="mallopt(3) M_TRIM_THRESHOLD", tier="impl")
def test_trim_threshold_minus_one_disables_trimming() -> None:
    result = run(f"mallopt:{M_TRIM_THRESHOLD}=-1", "malloc:100000", "malloc:100000", "free:1")
    assert result[0].ret == 1
    assert result[2].brk_after > result[1].brk_after
    assert result[3].brk_after == result[2].brk_after


@semantic("malloc.trim.releases_top",
          "malloc_trim(0) gives every whole free page at the top of the heap back to the system "
          "(the break drops to within a page of the last block in use) and returns 1",
          source="malloc_trim(3)", tier="impl")
def test_malloc_trim_releases_free_top() -> None:
    result = run("malloc:16", "malloc:100000", "free:1", "trim:0")
    before, trimmed = result[2].brk_after, result[3]
    in_use_end = (result[0].ret or 0) - CHUNK_HEADER + MINSIZE  # the 16-byte block's chunk is 32 bytes
    assert trimmed.ret == 1
    assert trimmed.brk_after < before
    assert 0 < trimmed.brk_after - in_use_end <= MINSIZE + result.page_size
