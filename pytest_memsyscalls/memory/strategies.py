"""Hypothesis strategies for the memory-management calls, for this suite and for others.

Valid arguments come from the man pages' DESCRIPTION sections; invalid ones from
their ERRORS sections, each paired with the errno the documentation promises, so a
property test can say ``fails_with(case.errno, getattr(libc, case.call), *case.args)``.
Every strategy is a plain function returning a ``SearchStrategy`` (no global state),
so it can be used inside ``@given`` and inside state machines alike.

The invalid-argument strategies take the address of memory the caller owns (mapped,
page-aligned, ``pages`` long): an unexpected success must only ever touch that memory.
Building a strategy costs milliseconds (validation), so a state machine whose memory
moves between programs builds one with ``base=0`` at import and places each drawn
case with ``case.at(address)``.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass

from hypothesis import strategies as st

from ..kernel import constants as C
from ..kernel.libc import PAGE_SIZE

__all__ = [
    "ADVICE_NONDESTRUCTIVE",
    "PROTECTIONS",
    "InvalidCall",
    "advice_values",
    "invalid_calls",
    "invalid_madvise",
    "invalid_mmap",
    "invalid_mprotect",
    "invalid_mremap",
    "invalid_msync",
    "invalid_munmap",
    "mapping_flags",
    "msync_flags",
    "page_aligned_lengths",
    "page_offsets",
    "protections",
]

#: Every combination of PROT_READ, PROT_WRITE and PROT_EXEC, PROT_NONE first (it shrinks there).
PROTECTIONS: tuple[int, ...] = tuple(
    r | w | x for r in (0, C.PROT_READ) for w in (0, C.PROT_WRITE) for x in (0, C.PROT_EXEC))

#: Advice that never changes contents (madvise(2): "the kernel is free to ignore the advice").
ADVICE_NONDESTRUCTIVE: tuple[int, ...] = (C.MADV_NORMAL, C.MADV_RANDOM, C.MADV_SEQUENTIAL, C.MADV_WILLNEED)


def protections(*, exec_allowed: bool = True) -> st.SearchStrategy[int]:
    """A protection: PROT_NONE or any mix of READ/WRITE/EXEC (mmap(2) "prot").

    ``exec_allowed=False`` leaves out PROT_EXEC, for files on a noexec mount."""
    return st.sampled_from([p for p in PROTECTIONS if exec_allowed or not p & C.PROT_EXEC])


def mapping_flags(*, anonymous: bool | None = None, extras: bool = False) -> st.SearchStrategy[int]:
    """MAP_PRIVATE or MAP_SHARED, with MAP_ANONYMOUS (``anonymous=True``), without it
    (a file mapping, ``False``) or either (``None``). ``extras`` adds flags that change
    no observable semantics of a small mapping: MAP_NORESERVE and MAP_POPULATE."""
    kinds = [C.MAP_PRIVATE, C.MAP_SHARED]
    anon = [C.MAP_ANONYMOUS] if anonymous else [0] if anonymous is False else [C.MAP_ANONYMOUS, 0]
    base = st.sampled_from([k | a for a in anon for k in kinds])
    if not extras:
        return base
    return st.builds(lambda b, e: b | e, base, st.sampled_from([0, C.MAP_NORESERVE, C.MAP_POPULATE]))


def page_aligned_lengths(max_pages: int = 8, *, min_pages: int = 1) -> st.SearchStrategy[int]:
    """A length in bytes that is a whole number of pages, ``min_pages``..``max_pages``."""
    return st.integers(min_pages, max_pages).map(lambda n: n * PAGE_SIZE)


def page_offsets(max_pages: int = 8) -> st.SearchStrategy[int]:
    """A file offset in bytes that is a multiple of the page size (mmap(2): "offset must
    be a multiple of the page size"), 0..``max_pages`` pages."""
    return st.integers(0, max_pages).map(lambda n: n * PAGE_SIZE)


def advice_values(*, destructive: bool = False) -> st.SearchStrategy[int]:
    """madvise advice valid on any private anonymous mapping; ``destructive`` adds
    MADV_DONTNEED, which zero-fills private anonymous pages on the next access."""
    values = list(ADVICE_NONDESTRUCTIVE) + ([C.MADV_DONTNEED] if destructive else [])
    return st.sampled_from(values)


def msync_flags() -> st.SearchStrategy[int]:
    """Valid msync flags: exactly one of MS_ASYNC and MS_SYNC, optionally MS_INVALIDATE."""
    return st.builds(lambda kind, inv: kind | inv, st.sampled_from([C.MS_ASYNC, C.MS_SYNC]),
                     st.sampled_from([0, C.MS_INVALIDATE]))


@dataclass(frozen=True)
class InvalidCall:
    """A call with arguments its man page rejects: ``call`` names a function of
    ``pytest_memsyscalls.kernel.libc``, ``errno`` is the documented error, ``why`` the ERRORS line."""

    call: str
    args: tuple[int, ...]
    errno: int
    why: str
    addresses: tuple[int, ...] = (0,)  # which args are addresses relative to the base

    def at(self, base: int) -> InvalidCall:
        """The same call for memory at ``base`` (when it was drawn with base 0)."""
        args = tuple(a + base if i in self.addresses else a for i, a in enumerate(self.args))
        return InvalidCall(self.call, args, self.errno, self.why, ())

    def __repr__(self) -> str:  # replayable in Hypothesis' printed program
        return (f"InvalidCall({self.call!r}, ({', '.join(hex(a) for a in self.args)},), "
                f"errno.{errno.errorcode[self.errno]}, {self.why!r}, {self.addresses!r})")


def _unaligned(base: int) -> st.SearchStrategy[int]:
    return st.integers(1, PAGE_SIZE - 1).map(lambda k: base + k)


def invalid_mmap(base: int, pages: int = 1) -> st.SearchStrategy[InvalidCall]:
    """mmap(2) ERRORS, EINVAL: length 0; a mapping type other than MAP_PRIVATE, MAP_SHARED
    or MAP_SHARED_VALIDATE (PRIVATE|SHARED *is* SHARED_VALIDATE, 0x03);
    MAP_FIXED at an unaligned address. All anonymous, so no fd is involved."""
    anon = C.MAP_PRIVATE | C.MAP_ANONYMOUS
    rw = C.PROT_READ | C.PROT_WRITE
    return st.one_of(
        st.just(InvalidCall("mmap", (0, 0, rw, anon), errno.EINVAL, "length was 0", ())),
        st.sampled_from([0, 0x4, 0xF]).map(
            lambda t: InvalidCall("mmap", (0, PAGE_SIZE, rw, C.MAP_ANONYMOUS | t), errno.EINVAL,
                                  "flags contained none of MAP_PRIVATE, MAP_SHARED, MAP_SHARED_VALIDATE "
                                  "(the MAP_TYPE bits hold another value)", ())),
        _unaligned(base).map(lambda a: InvalidCall("mmap", (a, PAGE_SIZE, rw, anon | C.MAP_FIXED), errno.EINVAL,
                                                   "MAP_FIXED with addr not page-aligned")),
    )


def invalid_munmap(base: int, pages: int = 1) -> st.SearchStrategy[InvalidCall]:
    """munmap(2) ERRORS, EINVAL: unaligned address; length 0 (since 2.6.12)."""
    return st.one_of(
        _unaligned(base).map(lambda a: InvalidCall("munmap", (a, PAGE_SIZE), errno.EINVAL, "addr not aligned")),
        st.just(InvalidCall("munmap", (base, 0), errno.EINVAL, "length was 0")),
    )


def invalid_mprotect(base: int, pages: int = 1) -> st.SearchStrategy[InvalidCall]:
    """mprotect(2) ERRORS, EINVAL: unaligned address; prot with an unknown bit, or with
    both PROT_GROWSUP and PROT_GROWSDOWN."""
    bad_bits = st.sampled_from([0x10, 0x20, 0x100, 0x10000, C.PROT_GROWSDOWN | C.PROT_GROWSUP])
    return st.one_of(
        _unaligned(base).map(lambda a: InvalidCall("mprotect", (a, PAGE_SIZE, C.PROT_READ), errno.EINVAL,
                                                   "addr is not a multiple of the page size")),
        bad_bits.map(lambda b: InvalidCall("mprotect", (base, PAGE_SIZE, C.PROT_READ | b), errno.EINVAL,
                                           "prot contains bits other than PROT_READ/WRITE/EXEC/SEM/GROWSUP/"
                                           "GROWSDOWN, or both GROWSUP and GROWSDOWN")),
    )


def invalid_mremap(base: int, pages: int = 1) -> st.SearchStrategy[InvalidCall]:
    """mremap(2) ERRORS, EINVAL: unaligned old_address; new_size 0; unknown flag bits;
    MREMAP_FIXED without MREMAP_MAYMOVE."""
    size = pages * PAGE_SIZE
    return st.one_of(
        _unaligned(base).map(lambda a: InvalidCall("mremap", (a, PAGE_SIZE, PAGE_SIZE, 0), errno.EINVAL,
                                                   "old_address was not page aligned")),
        st.just(InvalidCall("mremap", (base, size, 0, 0), errno.EINVAL, "new_size was zero")),
        st.sampled_from([0x8, 0x40, 0x1000]).map(
            lambda f: InvalidCall("mremap", (base, size, size, f), errno.EINVAL, "an invalid flag was specified")),
        st.just(InvalidCall("mremap", (base, size, size, C.MREMAP_FIXED, base), errno.EINVAL,
                            "MREMAP_FIXED was specified without also specifying MREMAP_MAYMOVE", (0, 4))),
    )


def invalid_madvise(base: int, pages: int = 1) -> st.SearchStrategy[InvalidCall]:
    """madvise(2) ERRORS, EINVAL: unaligned address; advice that is not valid."""
    return st.one_of(
        _unaligned(base).map(lambda a: InvalidCall("madvise", (a, PAGE_SIZE, C.MADV_NORMAL), errno.EINVAL,
                                                   "addr is not page-aligned")),
        st.sampled_from([5, 6, 7, 1000, 0x7FFF_FFFF]).map(
            lambda adv: InvalidCall("madvise", (base, PAGE_SIZE, adv), errno.EINVAL, "advice is not valid")),
    )


def invalid_msync(base: int, pages: int = 1) -> st.SearchStrategy[InvalidCall]:
    """msync(2) ERRORS, EINVAL: unaligned address; both MS_SYNC and MS_ASYNC; an unknown flag."""
    return st.one_of(
        _unaligned(base).map(lambda a: InvalidCall("msync", (a, PAGE_SIZE, C.MS_SYNC), errno.EINVAL,
                                                   "addr is not a multiple of PAGESIZE")),
        st.just(InvalidCall("msync", (base, PAGE_SIZE, C.MS_SYNC | C.MS_ASYNC), errno.EINVAL,
                            "both MS_SYNC and MS_ASYNC are set in flags")),
        st.sampled_from([0x8, 0x10, 0x100]).map(
            lambda f: InvalidCall("msync", (base, PAGE_SIZE, C.MS_SYNC | f), errno.EINVAL,
                                  "flags has a bit other than MS_ASYNC, MS_SYNC, MS_INVALIDATE")),
    )


def invalid_calls(base: int, pages: int = 1) -> st.SearchStrategy[InvalidCall]:
    """Any of the invalid calls above, for memory at ``base`` (``pages`` long)."""
    return st.one_of(*(f(base, pages) for f in (invalid_mmap, invalid_munmap, invalid_mprotect, invalid_mremap,
                                                 invalid_madvise, invalid_msync)))
