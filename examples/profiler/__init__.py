"""A memory profiler over /proc/self/smaps: what grew between two points (seed exercise 5).

``snapshot()`` records every VMA of the process with its size and resident set (Rss
from smaps, in kB) and its kind: heap, stack, anon, file, shm or special ([vdso],
[vvar], [vsyscall]). ``diff(before, after)`` reports, per kind, how much address space
and how much resident memory appeared or went away, and which regions are new. Address
space and residency are kept apart on purpose: an untouched anonymous mapping costs
address space but no memory until its pages are touched.

    before = snapshot()
    ...
    print(diff(before, snapshot()).report())
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from pytest_memsyscalls.kernel import procfs

RSS_FIELD = "Rss"  # the smaps counter of resident memory
KINDS = ("heap", "stack", "anon", "file", "shm", "special")


def kind_of(entry: procfs.MapsEntry) -> str:
    if entry.path == "[heap]":
        return "heap"
    if entry.path.startswith("[stack"):
        return "stack"
    if entry.is_sysv_shm or entry.path.startswith("/dev/shm/") or entry.path.startswith("/memfd:"):
        return "shm"
    if entry.path.startswith("["):
        return "special"
    return "file" if entry.path else "anon"


@dataclass(frozen=True)
class Region:
    start: int
    end: int
    perms: str
    path: str
    kind: str
    rss: int  # bytes

    @property
    def size(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class Snapshot:
    regions: tuple[Region, ...]

    def totals(self) -> dict[str, tuple[int, int]]:
        """kind -> (bytes of address space, bytes resident)."""
        out = {kind: (0, 0) for kind in KINDS}
        for r in self.regions:
            size, rss = out[r.kind]
            out[r.kind] = (size + r.size, rss + r.rss)
        return out

    def region_at(self, addr: int) -> Region | None:
        return next((r for r in self.regions if r.start <= addr < r.end), None)


def snapshot(pid: int | str = "self") -> Snapshot:
    """Every VMA of the process now, from one read of /proc/PID/smaps."""
    return Snapshot(tuple(
        Region(e.maps.start, e.maps.end, e.maps.perms, e.maps.path, kind_of(e.maps),
               (e.get(RSS_FIELD) or 0) * 1024)
        for e in procfs.read_smaps(pid)))


@dataclass(frozen=True)
class Growth:
    size: int
    rss: int


@dataclass
class Diff:
    by_kind: dict[str, Growth]
    new: list[Region] = field(default_factory=list)
    gone: list[Region] = field(default_factory=list)

    def report(self) -> str:
        lines = [f"{kind:8} address space {g.size / 1024:+10.0f} kB   resident {g.rss / 1024:+10.0f} kB"
                 for kind, g in self.by_kind.items() if g.size or g.rss]
        lines += [f"new  {r.start:x}-{r.end:x} {r.perms} {r.kind:7} {r.size // 1024} kB "
                  f"(rss {r.rss // 1024} kB) {r.path}" for r in self.new]
        lines += [f"gone {r.start:x}-{r.end:x} {r.perms} {r.kind:7} {r.size // 1024} kB {r.path}" for r in self.gone]
        return "\n".join(lines) or "no change"


def diff(before: Snapshot, after: Snapshot) -> Diff:
    """Growth per kind (negative = shrinkage), and the regions that appeared or vanished
    (a region that changed its bounds, e.g. by merging, counts as gone and new)."""
    a, b = before.totals(), after.totals()
    key = lambda r: (r.start, r.end, r.perms, r.path)  # noqa: E731
    old, new = {key(r) for r in before.regions}, {key(r) for r in after.regions}
    return Diff({k: Growth(b[k][0] - a[k][0], b[k][1] - a[k][1]) for k in KINDS},
                [r for r in after.regions if key(r) not in old],
                [r for r in before.regions if key(r) not in new])


@contextmanager
def track() -> Iterator[list[Diff]]:
    """``with track() as result: ...`` then ``result[0]`` is the Diff of the block."""
    result: list[Diff] = []
    before = snapshot()
    yield result
    result.append(diff(before, snapshot()))
