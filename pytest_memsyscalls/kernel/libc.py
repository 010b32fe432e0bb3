"""The one door to the kernel: ctypes bindings of the memory-management calls.

Errno fidelity is the product, so every binding here follows the same rules:
``use_errno=True``; errno reset to 0 immediately before the call; explicit
``argtypes``/``restype`` (pointers as ``c_void_p``, so addresses above 2**31 are
not truncated); and a failure raised as ``OSError(errno, strerror, "call(args)")``,
which Python maps to the usual subclasses (``PermissionError`` for EPERM/EACCES,
``FileNotFoundError`` for ENOENT) with the call and its arguments in ``filename``.
Arguments are checked before they reach C: a wrong type or an out-of-range value
is a ``TypeError``/``ValueError`` naming the call, never a crash or a silently
wrapped integer.

The layer also remembers which address ranges it mapped or attached (``owned``):
the fault probe refuses to write into or execute writable/executable memory that
the interpreter owns, and needs to know what is ours.
"""

from __future__ import annotations

import bisect
import ctypes
import ctypes.util
import errno
import operator
import os
from collections.abc import Sequence
from typing import Any, NamedTuple

from . import constants as C
from . import pages
from .contract import Misplaced

PAGE_SIZE = pages.PAGE_SIZE
_U64_MAX = (1 << 64) - 1
_INT_MIN, _INT_MAX = -(1 << 31), (1 << 31) - 1

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _load_rt() -> ctypes.CDLL:
    """shm_open moved into libc in glibc 2.34; older systems keep it in librt."""
    if hasattr(_libc, "shm_open"):
        return _libc
    return ctypes.CDLL(ctypes.util.find_library("rt") or "librt.so.1", use_errno=True)


_rt = _load_rt()


class OwnedRanges:
    """Address ranges this process mapped or attached through this module.

    Kept as sorted, disjoint [start, end) intervals so that a lookup is a bisect,
    cheap enough to sit on the probe's fast path.
    """

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []

    def add(self, start: int, length: int) -> None:
        self.remove(start, length)
        end = start + length
        index = bisect.bisect_left(self._starts, start)
        self._starts.insert(index, start)
        self._ends.insert(index, end)

    def remove(self, start: int, length: int) -> None:
        end = start + length
        starts: list[int] = []
        ends: list[int] = []
        for s, e in zip(self._starts, self._ends, strict=True):
            if e <= start or s >= end:
                starts.append(s)
                ends.append(e)
                continue
            if s < start:
                starts.append(s)
                ends.append(start)
            if e > end:
                starts.append(end)
                ends.append(e)
        self._starts, self._ends = starts, ends

    def contains(self, addr: int) -> bool:
        index = bisect.bisect_right(self._starts, addr) - 1
        return index >= 0 and addr < self._ends[index]

    def covers(self, start: int, length: int) -> bool:
        """Every byte of [start, start + length) is ours (adjacent ranges count)."""
        end = start + max(length, 1)
        index = bisect.bisect_right(self._starts, start) - 1
        while index >= 0 and index < len(self._starts) and self._starts[index] <= start:
            if self._ends[index] >= end:
                return True
            start = self._ends[index]
            index += 1
        return False

    def ranges(self) -> list[tuple[int, int]]:
        return list(zip(self._starts, self._ends, strict=True))


owned = OwnedRanges()


# --- argument checking -------------------------------------------------------------

def _integer(call: str, what: str, value: object) -> int:
    if isinstance(value, bool):
        raise TypeError(f"{call}: {what} must be an integer, got bool {value!r}")
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{call}: {what} must be an integer, got {type(value).__name__} {value!r}") from None


def _address(call: str, what: str, value: object) -> int:
    number = _integer(call, what, value)
    if not 0 <= number <= _U64_MAX:
        raise ValueError(f"{call}: {what} must be an address in [0, 2**64), got {number:#x}")
    return number


def _size(call: str, what: str, value: object) -> int:
    number = _integer(call, what, value)
    if number < 0:
        raise ValueError(f"{call}: {what} must be >= 0, got {number}")
    if number > _U64_MAX:
        raise ValueError(f"{call}: {what} must fit in size_t, got {number}")
    return number


def _int(call: str, what: str, value: object) -> int:
    number = _integer(call, what, value)
    if not _INT_MIN <= number <= _INT_MAX:
        raise ValueError(f"{call}: {what} must fit in a C int, got {number}")
    return number


def _offset(call: str, what: str, value: object) -> int:
    number = _integer(call, what, value)
    if not -(1 << 63) <= number < (1 << 63):
        raise ValueError(f"{call}: {what} must fit in off_t, got {number}")
    return number


def _format_args(args: Sequence[object]) -> str:
    return ", ".join(hex(a) if isinstance(a, int) and a > 4096 else repr(a) for a in args)


def _fail(call: str, args: Sequence[object]) -> OSError:
    err = ctypes.get_errno()
    error = OSError(err, os.strerror(err), f"{call}({_format_args(args)})")
    error.syscall = call  # type: ignore[attr-defined]
    return error


def _bind(library: ctypes.CDLL, name: str, restype: Any, argtypes: list[Any]) -> Any:
    function = getattr(library, name)
    function.restype = restype
    function.argtypes = argtypes
    return function


_c = ctypes
_mmap = _bind(_libc, "mmap", _c.c_void_p, [_c.c_void_p, _c.c_size_t, _c.c_int, _c.c_int, _c.c_int, _c.c_long])
_munmap = _bind(_libc, "munmap", _c.c_int, [_c.c_void_p, _c.c_size_t])
_msync = _bind(_libc, "msync", _c.c_int, [_c.c_void_p, _c.c_size_t, _c.c_int])
_mprotect = _bind(_libc, "mprotect", _c.c_int, [_c.c_void_p, _c.c_size_t, _c.c_int])
_mremap = _bind(_libc, "mremap", _c.c_void_p, [_c.c_void_p, _c.c_size_t, _c.c_size_t, _c.c_int, _c.c_void_p])
_mincore = _bind(_libc, "mincore", _c.c_int, [_c.c_void_p, _c.c_size_t, _c.c_void_p])
_madvise = _bind(_libc, "madvise", _c.c_int, [_c.c_void_p, _c.c_size_t, _c.c_int])
_mlock = _bind(_libc, "mlock", _c.c_int, [_c.c_void_p, _c.c_size_t])
_munlock = _bind(_libc, "munlock", _c.c_int, [_c.c_void_p, _c.c_size_t])
_mlockall = _bind(_libc, "mlockall", _c.c_int, [_c.c_int])
_munlockall = _bind(_libc, "munlockall", _c.c_int, [])
_brk = _bind(_libc, "brk", _c.c_int, [_c.c_void_p])
_sbrk = _bind(_libc, "sbrk", _c.c_void_p, [_c.c_ssize_t])
_syscall = _bind(_libc, "syscall", _c.c_long, [_c.c_long, _c.c_long, _c.c_long, _c.c_long])
_shmget = _bind(_libc, "shmget", _c.c_int, [_c.c_int, _c.c_size_t, _c.c_int])
_shmat = _bind(_libc, "shmat", _c.c_void_p, [_c.c_int, _c.c_void_p, _c.c_int])
_shmdt = _bind(_libc, "shmdt", _c.c_int, [_c.c_void_p])
_shmctl = _bind(_libc, "shmctl", _c.c_int, [_c.c_int, _c.c_int, _c.c_void_p])
_shm_open = _bind(_rt, "shm_open", _c.c_int, [_c.c_char_p, _c.c_int, _c.c_uint])
_shm_unlink = _bind(_rt, "shm_unlink", _c.c_int, [_c.c_char_p])
# Process attributes the suite sets in children. prctl and ptrace are variadic in glibc;
# the types below are what glibc reads with va_arg (unsigned long; pid_t, void *, void *).
_personality = _bind(_libc, "personality", _c.c_int, [_c.c_ulong])
_prctl = _bind(_libc, "prctl", _c.c_int, [_c.c_int, _c.c_ulong, _c.c_ulong, _c.c_ulong, _c.c_ulong])
_ptrace = _bind(_libc, "ptrace", _c.c_long, [_c.c_int, _c.c_int, _c.c_void_p, _c.c_void_p])
_capget = _bind(_libc, "capget", _c.c_int, [_c.c_void_p, _c.c_void_p])
_capset = _bind(_libc, "capset", _c.c_int, [_c.c_void_p, _c.c_void_p])
_unshare = _bind(_libc, "unshare", _c.c_int, [_c.c_int])
_mount = _bind(_libc, "mount", _c.c_int, [_c.c_char_p, _c.c_char_p, _c.c_char_p, _c.c_ulong, _c.c_char_p])


def _mlock2_syscall(addr: int, length: int, flags: int) -> int:
    """mlock2 through syscall(2), for glibc older than 2.27 (no wrapper)."""
    return int(_syscall(C.SYS_mlock2, addr, length, flags & 0xFFFFFFFF))


_mlock2: Any = getattr(_libc, "mlock2", None)
if _mlock2 is None:
    _mlock2 = _mlock2_syscall
else:
    _mlock2.restype = _c.c_int
    _mlock2.argtypes = [_c.c_void_p, _c.c_size_t, _c.c_uint]


# SHMLBA: shmat's attach-address alignment, what SHM_RND rounds down to (kernel/pages.py:
# the page size on x86_64, arm64 and powerpc; arm64's 4-page COMPAT_SHMLBA is for 32-bit
# tasks only).
SHMLBA = pages.shmlba(C.ARCH, PAGE_SIZE)


def _check_placed(call: str, args: Sequence[object], result: int, length: int, wanted: int | None,
                  rule: str) -> None:
    """Before anyone touches what the kernel returned: the address the call's own
    arguments demand (``wanted``, because of ``rule``), page-aligned, and mapped over its
    whole length (msync(MS_ASYNC) fails with ENOMEM on any unmapped page). A kernel that
    breaks this fails the test that called, instead of crashing the process that would
    write there."""
    why = None
    if wanted is not None and result != wanted:
        why = f"returned {result:#x}, but {rule} demands {wanted:#x}"
    elif result % PAGE_SIZE:
        why = f"returned {result:#x}, which is not page-aligned"
    else:
        ctypes.set_errno(0)
        if length and _msync(result, length, C.MS_ASYNC) == -1 and ctypes.get_errno() == errno.ENOMEM:
            why = f"returned {result:#x}, but {result:#x}+{length:#x} is not all mapped"
    if why is not None:
        text = f"{call}({_format_args(args)})"
        raise Misplaced(f"{text}: the kernel {why}", call=text, expected="place the mapping where its arguments "
                        "say" if wanted is not None else "return a mapped, page-aligned range", observed=why,
                        returned=result)


def _pointer_result(value: int | None) -> int:
    """c_void_p gives None for NULL; (void *) -1 comes back as 2**64 - 1."""
    return 0 if value is None else value


# --- mmap family -------------------------------------------------------------------

def mmap(addr: int, length: int, prot: int, flags: int, fd: int = -1, offset: int = 0) -> int:
    """mmap(2); returns the mapping's address."""
    call = "mmap"
    args = (_address(call, "addr", addr), _size(call, "length", length), _int(call, "prot", prot),
            _int(call, "flags", flags), _int(call, "fd", fd), _offset(call, "offset", offset))
    ctypes.set_errno(0)
    result = _pointer_result(_mmap(*args))
    if result == C.MAP_FAILED:
        raise _fail(call, args)
    owned.add(result, _round_up(args[1]))
    wanted = args[0] if args[3] & (C.MAP_FIXED | C.MAP_FIXED_NOREPLACE) else None
    _check_placed(call, args, result, _round_up(args[1]), wanted,
                  "MAP_FIXED" if args[3] & C.MAP_FIXED else "MAP_FIXED_NOREPLACE")
    return result


def munmap(addr: int, length: int) -> None:
    """munmap(2)."""
    call = "munmap"
    args = (_address(call, "addr", addr), _size(call, "length", length))
    ctypes.set_errno(0)
    if _munmap(*args) == -1:
        raise _fail(call, args)
    owned.remove(args[0], _round_up(args[1]))


def msync(addr: int, length: int, flags: int) -> None:
    """msync(2)."""
    call = "msync"
    args = (_address(call, "addr", addr), _size(call, "length", length), _int(call, "flags", flags))
    ctypes.set_errno(0)
    if _msync(*args) == -1:
        raise _fail(call, args)


def is_mapped(addr: int) -> bool:
    """Whether the page holding addr is mapped, asked of the kernel: msync(MS_ASYNC)
    fails with ENOMEM exactly on unmapped pages. A fast path for the probe, so it
    skips the OSError of msync() above; the argument check costs one comparison
    (an int outside [0, 2**64) would otherwise be truncated by ctypes into some
    other, possibly mapped, address)."""
    if type(addr) is not int or not 0 <= addr <= _U64_MAX:
        addr = _address("is_mapped", "addr", addr)
    ctypes.set_errno(0)
    if _msync(addr & ~(PAGE_SIZE - 1), PAGE_SIZE, C.MS_ASYNC) == 0:
        return True
    return ctypes.get_errno() != errno.ENOMEM


def mprotect(addr: int, length: int, prot: int) -> None:
    """mprotect(2)."""
    call = "mprotect"
    args = (_address(call, "addr", addr), _size(call, "length", length), _int(call, "prot", prot))
    ctypes.set_errno(0)
    if _mprotect(*args) == -1:
        raise _fail(call, args)


def mremap(old_address: int, old_size: int, new_size: int, flags: int = 0, new_address: int = 0) -> int:
    """mremap(2); new_address is only read by the kernel with MREMAP_FIXED."""
    call = "mremap"
    args = (_address(call, "old_address", old_address), _size(call, "old_size", old_size),
            _size(call, "new_size", new_size), _int(call, "flags", flags),
            _address(call, "new_address", new_address))
    ctypes.set_errno(0)
    result = _pointer_result(_mremap(*args))
    if result == C.MAP_FAILED:
        raise _fail(call, args)
    if not args[3] & C.MREMAP_DONTUNMAP:
        owned.remove(args[0], _round_up(args[1]))
    owned.add(result, _round_up(args[2]))
    if args[3] & C.MREMAP_FIXED:
        _check_placed(call, args, result, _round_up(args[2]), args[4], "MREMAP_FIXED")
    else:
        # A same-size call without flags does nothing and checks nothing (mm/mremap.c): only
        # the address is the kernel's to get right there.
        noop = args[1] == args[2] and not args[3]
        _check_placed(call, args, result, 0 if noop else _round_up(args[2]),
                      None if args[3] & C.MREMAP_MAYMOVE else args[0], "no MREMAP_MAYMOVE")
    return result


def mincore(addr: int, length: int) -> bytes:
    """mincore(2): one byte per page, bit 0 set when the page is resident."""
    call = "mincore"
    args = (_address(call, "addr", addr), _size(call, "length", length))
    size = max(1, pages.mincore_vector_size(args[1]))
    if size > (1 << 30):
        raise ValueError(f"mincore: length {args[1]} needs a {size}-byte vector; refusing to allocate it")
    vector = (ctypes.c_ubyte * size)()
    ctypes.set_errno(0)
    if _mincore(args[0], args[1], ctypes.addressof(vector)) == -1:
        raise _fail(call, args)
    return bytes(vector)[: pages.mincore_vector_size(args[1])]


def mincore_into(addr: int, length: int, vector_address: int) -> None:
    """mincore(2) with a caller-chosen vector address, for provoking EFAULT."""
    call = "mincore"
    args = (_address(call, "addr", addr), _size(call, "length", length),
            _address(call, "vec", vector_address))
    ctypes.set_errno(0)
    if _mincore(*args) == -1:
        raise _fail(call, args)


def madvise(addr: int, length: int, advice: int) -> None:
    """madvise(2)."""
    call = "madvise"
    args = (_address(call, "addr", addr), _size(call, "length", length), _int(call, "advice", advice))
    ctypes.set_errno(0)
    if _madvise(*args) == -1:
        raise _fail(call, args)


# --- mlock family ------------------------------------------------------------------

def mlock(addr: int, length: int) -> None:
    """mlock(2)."""
    call = "mlock"
    args = (_address(call, "addr", addr), _size(call, "length", length))
    ctypes.set_errno(0)
    if _mlock(*args) == -1:
        raise _fail(call, args)


def mlock2(addr: int, length: int, flags: int = 0) -> None:
    """mlock2(2)."""
    call = "mlock2"
    args = (_address(call, "addr", addr), _size(call, "length", length), _int(call, "flags", flags))
    ctypes.set_errno(0)
    if _mlock2(*args) == -1:
        raise _fail(call, args)


def munlock(addr: int, length: int) -> None:
    """munlock(2)."""
    call = "munlock"
    args = (_address(call, "addr", addr), _size(call, "length", length))
    ctypes.set_errno(0)
    if _munlock(*args) == -1:
        raise _fail(call, args)


def mlockall(flags: int) -> None:
    """mlockall(2). Process-wide: call it in a child, never in the pytest process."""
    call = "mlockall"
    args = (_int(call, "flags", flags),)
    ctypes.set_errno(0)
    if _mlockall(*args) == -1:
        raise _fail(call, args)


def munlockall() -> None:
    """munlockall(2)."""
    ctypes.set_errno(0)
    if _munlockall() == -1:
        raise _fail("munlockall", ())


# --- the program break -------------------------------------------------------------

def brk(addr: int) -> None:
    """glibc's brk(): 0 or -1/ENOMEM. Moves the interpreter's heap: children only."""
    call = "brk"
    args = (_address(call, "addr", addr),)
    ctypes.set_errno(0)
    if _brk(*args) == -1:
        raise _fail(call, args)


def sbrk(increment: int) -> int:
    """glibc's sbrk(): the previous break. Moves the interpreter's heap: children only."""
    call = "sbrk"
    number = _integer(call, "increment", increment)
    if not -(1 << 63) <= number < (1 << 63):
        raise ValueError(f"sbrk: increment must fit in intptr_t, got {number}")
    ctypes.set_errno(0)
    result = _pointer_result(_sbrk(number))
    if result == C.MAP_FAILED:
        raise _fail(call, (number,))
    return result


def raw_brk(addr: int) -> int:
    """The brk system call itself: returns the break after the call and never fails;
    on failure the kernel returns the unchanged break (the convention glibc hides)."""
    value = _address("brk (raw syscall)", "addr", addr)
    ctypes.set_errno(0)
    return int(_syscall(C.SYS_brk, value, 0, 0)) & _U64_MAX


# --- SysV shared memory ------------------------------------------------------------

# struct ipc_perm and struct shmid_ds as glibc lays them out for 64-bit Linux: glibc
# passes them to the kernel as they are (its shmctl makes no copy), so they are the
# kernel's ipc64_perm and shmid64_ds. x86_64 and aarch64 use the generic layout
# (glibc sysdeps/unix/sysv/linux/bits/ipc-perm.h and bits/types/struct_shmid_ds.h;
# the kernel's include/uapi/asm-generic/ipcbuf.h and shmbuf.h): a 16-bit sequence
# number, shm_segsz before the three times. powerpc has its own (glibc
# sysdeps/unix/sysv/linux/powerpc/bits/ipc-perm.h and bits/types/struct_shmid_ds.h;
# arch/powerpc/include/uapi/asm/ipcbuf.h and shmbuf.h): a 32-bit sequence number and
# the three times before shm_segsz. Both are 48 and 112 bytes.
_POWERPC = ("ppc64le", "ppc64")


def ipc_perm_fields(arch: str) -> list[tuple[str, Any]]:
    """struct ipc_perm's fields for a machine (``os.uname().machine``)."""
    sequence: list[tuple[str, Any]] = (
        [("seq", ctypes.c_uint32), ("pad1", ctypes.c_uint32)] if arch in _POWERPC
        else [("seq", ctypes.c_uint16), ("pad2", ctypes.c_uint16)])
    return [
        ("key", ctypes.c_int32),
        ("uid", ctypes.c_uint32),
        ("gid", ctypes.c_uint32),
        ("cuid", ctypes.c_uint32),
        ("cgid", ctypes.c_uint32),
        ("mode", ctypes.c_uint32),
        *sequence,
        ("reserved1", ctypes.c_uint64),
        ("reserved2", ctypes.c_uint64),
    ]


def shmid_ds_fields(arch: str, perm: type[ctypes.Structure]) -> list[tuple[str, Any]]:
    """struct shmid_ds's fields for a machine, its shm_perm of type ``perm``."""
    times: list[tuple[str, Any]] = [("shm_atime", ctypes.c_int64), ("shm_dtime", ctypes.c_int64),
                                    ("shm_ctime", ctypes.c_int64)]
    size: list[tuple[str, Any]] = [("shm_segsz", ctypes.c_uint64)]
    return [
        ("shm_perm", perm),
        *(times + size if arch in _POWERPC else size + times),
        ("shm_cpid", ctypes.c_int32),
        ("shm_lpid", ctypes.c_int32),
        ("shm_nattch", ctypes.c_uint64),
        ("reserved5", ctypes.c_uint64),
        ("reserved6", ctypes.c_uint64),
    ]


def shm_structures(arch: str) -> tuple[type[ctypes.Structure], type[ctypes.Structure]]:
    """(struct ipc_perm, struct shmid_ds) for any supported machine, so their layouts can
    be checked on another one; KeyError names a machine without a known layout."""
    C.arch_constants(arch)
    perm = type(f"IpcPerm_{arch}", (ctypes.Structure,), {"_fields_": ipc_perm_fields(arch)})
    ds = type(f"ShmidDs_{arch}", (ctypes.Structure,), {"_fields_": shmid_ds_fields(arch, perm)})
    return perm, ds


class IpcPerm(ctypes.Structure):
    """struct ipc_perm of this machine (see ipc_perm_fields)."""

    _fields_ = ipc_perm_fields(C.ARCH)


class ShmidDs(ctypes.Structure):
    """struct shmid_ds of this machine (see shmid_ds_fields)."""

    _fields_ = shmid_ds_fields(C.ARCH, IpcPerm)


class ShmInfoLimits(ctypes.Structure):
    """struct shminfo, filled by IPC_INFO."""

    _fields_ = [
        ("shmmax", ctypes.c_ulong),
        ("shmmin", ctypes.c_ulong),
        ("shmmni", ctypes.c_ulong),
        ("shmseg", ctypes.c_ulong),
        ("shmall", ctypes.c_ulong),
        ("unused", ctypes.c_ulong * 4),
    ]


class ShmInfoUsage(ctypes.Structure):
    """struct shm_info, filled by SHM_INFO."""

    _fields_ = [
        ("used_ids", ctypes.c_int),
        ("shm_tot", ctypes.c_ulong),
        ("shm_rss", ctypes.c_ulong),
        ("shm_swp", ctypes.c_ulong),
        ("swap_attempts", ctypes.c_ulong),
        ("swap_successes", ctypes.c_ulong),
    ]


_attached: dict[int, int] = {}

assert ctypes.sizeof(IpcPerm) == 48 and ctypes.sizeof(ShmidDs) == 112, "shmid_ds layout"


def shmget(key: int, size: int, flags: int) -> int:
    """shmget(2); returns the segment id."""
    call = "shmget"
    args = (_int(call, "key", key), _size(call, "size", size), _int(call, "shmflg", flags))
    ctypes.set_errno(0)
    result = int(_shmget(*args))
    if result == -1:
        raise _fail(call, args)
    return result


def shmat(shmid: int, addr: int = 0, flags: int = 0) -> int:
    """shmat(2); returns the attach address."""
    call = "shmat"
    args = (_int(call, "shmid", shmid), _address(call, "shmaddr", addr), _int(call, "shmflg", flags))
    ctypes.set_errno(0)
    result = _pointer_result(_shmat(*args))
    if result == C.MAP_FAILED:
        raise _fail(call, args)
    try:
        size = _round_up(shm_stat(args[0]).shm_segsz)
    except OSError:
        size = PAGE_SIZE  # IPC_STAT refused: at least the first page is ours
    owned.add(result, size)
    _attached[result] = size
    if args[1]:
        wanted = args[1] - args[1] % SHMLBA if args[2] & C.SHM_RND else args[1]
        _check_placed(call, args, result, size, wanted, "SHM_RND" if args[2] & C.SHM_RND else "shmaddr")
    else:
        _check_placed(call, args, result, size, None, "")
    return result


def shmdt(addr: int) -> None:
    """shmdt(2)."""
    call = "shmdt"
    args = (_address(call, "shmaddr", addr),)
    ctypes.set_errno(0)
    if _shmdt(*args) == -1:
        raise _fail(call, args)
    owned.remove(args[0], _attached.pop(args[0], PAGE_SIZE))


def shmctl(shmid: int, cmd: int, buf: ctypes.Structure | int | None = None) -> int:
    """shmctl(2). ``buf`` is a ctypes structure, a raw address (to provoke EFAULT), or None."""
    call = "shmctl"
    if buf is None:
        pointer = 0
    elif isinstance(buf, ctypes.Structure):
        pointer = ctypes.addressof(buf)
    else:
        pointer = _address(call, "buf", buf)
    args = (_int(call, "shmid", shmid), _int(call, "cmd", cmd), pointer)
    ctypes.set_errno(0)
    result = int(_shmctl(*args))
    if result == -1:
        raise _fail(call, args)
    return result


def shm_stat(shmid: int) -> ShmidDs:
    """shmctl(IPC_STAT) into a fresh ShmidDs."""
    buf = ShmidDs()
    shmctl(shmid, C.IPC_STAT, buf)
    return buf


# --- POSIX shared memory -----------------------------------------------------------

def _shm_name(call: str, name: object) -> bytes:
    if isinstance(name, str):
        return os.fsencode(name)
    if isinstance(name, bytes):
        return name
    raise TypeError(f"{call}: name must be str or bytes, got {type(name).__name__}")


def shm_open(name: str | bytes, oflag: int, mode: int = 0o600) -> int:
    """shm_open(3); returns a file descriptor (O_CLOEXEC is implied by glibc)."""
    call = "shm_open"
    encoded = _shm_name(call, name)
    if b"\0" in encoded:
        raise ValueError(f"shm_open: name must not contain NUL bytes: {name!r}")
    args = (encoded, _int(call, "oflag", oflag), _int(call, "mode", mode))
    ctypes.set_errno(0)
    result = int(_shm_open(*args))
    if result == -1:
        raise _fail(call, args)
    return result


def shm_unlink(name: str | bytes) -> None:
    """shm_unlink(3)."""
    call = "shm_unlink"
    encoded = _shm_name(call, name)
    if b"\0" in encoded:
        raise ValueError(f"shm_unlink: name must not contain NUL bytes: {name!r}")
    ctypes.set_errno(0)
    if _shm_unlink(encoded) == -1:
        raise _fail(call, (encoded,))


# --- process attributes: personality, prctl, ptrace, capabilities, namespaces, mounts

def personality(persona: int) -> int:
    """personality(2); returns the previous persona. ``C.PERSONALITY_QUERY`` only asks."""
    call = "personality"
    number = _integer(call, "persona", persona)
    if not 0 <= number <= 0xFFFFFFFF:
        raise ValueError(f"personality: persona must fit in 32 bits, got {number:#x}")
    ctypes.set_errno(0)
    result = int(_personality(number))
    if result == -1:
        raise _fail(call, (number,))
    return result


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    """prctl(2); returns its result (the value asked for by the PR_GET_* options).
    Pointer arguments are passed as addresses (``ctypes.addressof``)."""
    call = "prctl"
    args = (_int(call, "option", option), _address(call, "arg2", arg2), _address(call, "arg3", arg3),
            _address(call, "arg4", arg4), _address(call, "arg5", arg5))
    ctypes.set_errno(0)
    result = int(_prctl(*args))
    if result == -1:
        raise _fail(call, args)
    return result


def ptrace(request: int, pid: int, addr: int = 0, data: int = 0) -> int:
    """ptrace(2); returns its result. The PEEK requests can return -1 as data, so a
    failure is -1 with errno set (errno is reset before the call)."""
    call = "ptrace"
    args = (_int(call, "request", request), _int(call, "pid", pid), _address(call, "addr", addr),
            _address(call, "data", data))
    ctypes.set_errno(0)
    result = int(_ptrace(*args))
    if result == -1 and ctypes.get_errno():
        raise _fail(call, args)
    return result


class CapUserHeader(ctypes.Structure):
    """struct __user_cap_header_struct (linux/capability.h)."""

    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class CapUserData(ctypes.Structure):
    """struct __user_cap_data_struct; version 3 takes two of them (capabilities 0-31, 32-63)."""

    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


class CapabilitySets(NamedTuple):
    """The three capability sets of a thread as 64-bit masks (bit n is capability n)."""

    effective: int
    permitted: int
    inheritable: int


def capget(pid: int = 0) -> CapabilitySets:
    """capget(2) with version 3 of the interface; pid 0 is the calling thread."""
    call = "capget"
    header = CapUserHeader(C.LINUX_CAPABILITY_VERSION_3, _int(call, "pid", pid))
    data = (CapUserData * C.LINUX_CAPABILITY_U32S_3)()
    ctypes.set_errno(0)
    if _capget(ctypes.addressof(header), ctypes.addressof(data)) == -1:
        raise _fail(call, (header.pid,))
    low, high = data
    return CapabilitySets(low.effective | high.effective << 32, low.permitted | high.permitted << 32,
                          low.inheritable | high.inheritable << 32)


def capset(effective: int, permitted: int, inheritable: int) -> None:
    """capset(2) of the calling thread (version 3; each set a 64-bit mask). Process
    attributes: call it in a child, never in the pytest process."""
    call = "capset"
    masks = tuple(_size(call, what, value) for what, value in
                  (("effective", effective), ("permitted", permitted), ("inheritable", inheritable)))
    if any(mask >> 64 for mask in masks):
        raise ValueError(f"capset: each set must be a 64-bit mask, got {masks}")
    header = CapUserHeader(C.LINUX_CAPABILITY_VERSION_3, 0)
    data = (CapUserData * C.LINUX_CAPABILITY_U32S_3)()
    for word, shift in enumerate((0, 32)):
        data[word].effective, data[word].permitted, data[word].inheritable = (
            (mask >> shift) & 0xFFFFFFFF for mask in masks)
    ctypes.set_errno(0)
    if _capset(ctypes.addressof(header), ctypes.addressof(data)) == -1:
        raise _fail(call, masks)


def unshare(flags: int) -> None:
    """unshare(2). Process-wide: call it in a child, never in the pytest process."""
    call = "unshare"
    args = (_int(call, "flags", flags),)
    ctypes.set_errno(0)
    if _unshare(*args) == -1:
        raise _fail(call, args)


def _path_argument(call: str, what: str, value: object) -> bytes | None:
    if value is None:
        return None
    encoded = _shm_name(call, value) if isinstance(value, (str, bytes)) else None
    if encoded is None:
        raise TypeError(f"{call}: {what} must be str, bytes or None, got {type(value).__name__}")
    if b"\0" in encoded:
        raise ValueError(f"{call}: {what} must not contain NUL bytes: {value!r}")
    return encoded


def mount(source: str | bytes | None, target: str | bytes, fstype: str | bytes | None, flags: int = 0,
          data: str | bytes | None = None) -> None:
    """mount(2). Needs CAP_SYS_ADMIN over the mount namespace: call it in a child."""
    call = "mount"
    target_bytes = _path_argument(call, "target", target)
    if target_bytes is None:
        raise TypeError("mount: target must be str or bytes, got NoneType")
    args = (_path_argument(call, "source", source), target_bytes, _path_argument(call, "fstype", fstype),
            _size(call, "mountflags", flags), _path_argument(call, "data", data))
    ctypes.set_errno(0)
    if _mount(*args) == -1:
        raise _fail(call, args)


def _round_up(length: int) -> int:
    return pages.round_up(length)


# --- newer memory calls: mseal, memfd_create and its seals, memfd_secret, pidfd_open,
# process_madvise. Through syscall(2) with the numbers of kernel/constants.py (glibc 2.36
# has no mseal or memfd_secret wrapper); fcntl for the seals. syscall() is variadic: the
# six long arguments below are what the kernel reads from its registers whatever the call.

_syscall6 = _libc["syscall"]  # a function object of its own: _syscall keeps its four arguments
_syscall6.restype = _c.c_long
_syscall6.argtypes = [_c.c_long, _c.c_long, _c.c_long, _c.c_long, _c.c_long, _c.c_long, _c.c_long]
_fcntl = _bind(_libc, "fcntl", _c.c_int, [_c.c_int, _c.c_int, _c.c_int])


class Iovec(ctypes.Structure):
    """struct iovec (sys/uio.h)."""

    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


def _raw_syscall(call: str, number: int, args: Sequence[int]) -> int:
    """syscall(number, *args) with errno reset; the result, or the OSError naming ``call``."""
    padded = [*args, *[0] * (6 - len(args))]
    signed = [value - (1 << 64) if value >= 1 << 63 else value for value in padded]
    ctypes.set_errno(0)
    result = int(_syscall6(number, *signed))
    if result == -1:
        raise _fail(call, args)
    return result


def mseal(addr: int, length: int, flags: int = 0) -> None:
    """mseal(2) (Linux 6.10): seal the range against later changes. Sealed memory can never
    be unmapped: call it in a child, never in the pytest process."""
    call = "mseal"
    args = (_address(call, "addr", addr), _size(call, "len", length), _size(call, "flags", flags))
    _raw_syscall(call, C.SYS_mseal, args)


def memfd_create(name: str | bytes, flags: int = 0) -> int:
    """memfd_create(2); returns the file descriptor."""
    call = "memfd_create"
    encoded = _shm_name(call, name)
    if b"\0" in encoded:
        raise ValueError(f"memfd_create: name must not contain NUL bytes: {name!r}")
    buffer = ctypes.create_string_buffer(encoded)
    flag_bits = _size(call, "flags", flags)
    if flag_bits >> 32:
        raise ValueError(f"memfd_create: flags must fit in unsigned int, got {flag_bits:#x}")
    ctypes.set_errno(0)
    result = int(_syscall6(C.SYS_memfd_create, ctypes.addressof(buffer), flag_bits, 0, 0, 0, 0))
    if result == -1:
        raise _fail(call, (encoded, flag_bits))
    return result


def memfd_secret(flags: int = 0) -> int:
    """memfd_secret(2) (Linux 5.14); returns the file descriptor."""
    call = "memfd_secret"
    flag_bits = _size(call, "flags", flags)
    if flag_bits >> 32:
        raise ValueError(f"memfd_secret: flags must fit in unsigned int, got {flag_bits:#x}")
    return _raw_syscall(call, C.SYS_memfd_secret, (flag_bits,))


def pidfd_open(pid: int, flags: int = 0) -> int:
    """pidfd_open(2) (Linux 5.3); returns the pidfd."""
    call = "pidfd_open"
    args = (_int(call, "pid", pid), _size(call, "flags", flags))
    if args[1] >> 32:
        raise ValueError(f"pidfd_open: flags must fit in unsigned int, got {args[1]:#x}")
    return _raw_syscall(call, C.SYS_pidfd_open, (args[0] & _U64_MAX, args[1]))


def process_madvise(pidfd: int, ranges: Sequence[tuple[int, int]], advice: int, flags: int = 0) -> int:
    """process_madvise(2) (Linux 5.10) on (address, length) ranges of the process behind
    ``pidfd``; returns the number of bytes advised."""
    call = "process_madvise"
    fd = _int(call, "pidfd", pidfd)
    vector = (Iovec * max(len(ranges), 1))()
    for index, (addr, length) in enumerate(ranges):
        vector[index].iov_base = _address(call, "iov_base", addr)
        vector[index].iov_len = _size(call, "iov_len", length)
    advice_value = _int(call, "advice", advice)
    flag_bits = _size(call, "flags", flags)
    if flag_bits >> 32:
        raise ValueError(f"process_madvise: flags must fit in unsigned int, got {flag_bits:#x}")
    shown = (fd, [(hex(a), n) for a, n in ranges], advice_value, flag_bits)
    ctypes.set_errno(0)
    result = int(_syscall6(C.SYS_process_madvise, fd & _U64_MAX, ctypes.addressof(vector), len(ranges),
                           advice_value, flag_bits, 0))
    if result == -1:
        raise _fail(call, shown)
    return result


def add_seals(fd: int, seals: int) -> None:
    """fcntl(fd, F_ADD_SEALS, seals)."""
    call = "fcntl(F_ADD_SEALS)"
    args = (_int(call, "fd", fd), C.F_ADD_SEALS, _int(call, "seals", seals))
    ctypes.set_errno(0)
    if _fcntl(*args) == -1:
        raise _fail(call, (args[0], args[2]))


def get_seals(fd: int) -> int:
    """fcntl(fd, F_GET_SEALS): the seals set on the file."""
    call = "fcntl(F_GET_SEALS)"
    args = (_int(call, "fd", fd), C.F_GET_SEALS, 0)
    ctypes.set_errno(0)
    result = int(_fcntl(*args))
    if result == -1:
        raise _fail(call, (args[0],))
    return result


# --- protection keys: pkeys(7) -------------------------------------------------------
# glibc has wrappers since 2.27, but they are absent from older libcs and some libcs
# reject what the kernel would judge; the system calls themselves are what is tested.
# A function object of its own (``_libc["syscall"]`` is a new one, unlike attribute
# access), so these argtypes (five longs) do not change ``_syscall``'s.
_syscall_pkey = _libc["syscall"]
_syscall_pkey.restype = _c.c_long
_syscall_pkey.argtypes = [_c.c_long] * 5


def _as_long(value: int) -> int:
    """An unsigned 64-bit argument as the signed long syscall(2) takes (same bits)."""
    return value - (1 << 64) if value > _U64_MAX >> 1 else value


def pkey_mprotect(addr: int, length: int, prot: int, pkey: int) -> None:
    """pkey_mprotect(2); pkey -1 asks for plain mprotect behaviour."""
    call = "pkey_mprotect"
    args = (_address(call, "addr", addr), _size(call, "length", length), _int(call, "prot", prot),
            _int(call, "pkey", pkey))
    ctypes.set_errno(0)
    if _syscall_pkey(C.SYS_pkey_mprotect, *(_as_long(arg) for arg in args), 0) == -1:
        raise _fail(call, args)


def pkey_alloc(flags: int = 0, access_rights: int = 0) -> int:
    """pkey_alloc(2); returns the new key. Per process (and its rights per thread): children only."""
    call = "pkey_alloc"
    args = (_size(call, "flags", flags), _size(call, "access_rights", access_rights))
    if any(arg > _U64_MAX >> 1 for arg in args):
        raise ValueError(f"pkey_alloc: flags and access_rights must fit in a long, got {args}")
    ctypes.set_errno(0)
    result = int(_syscall_pkey(C.SYS_pkey_alloc, *args, 0, 0, 0))
    if result == -1:
        raise _fail(call, args)
    return result


def pkey_free(pkey: int) -> None:
    """pkey_free(2)."""
    call = "pkey_free"
    args = (_int(call, "pkey", pkey),)
    ctypes.set_errno(0)
    if _syscall_pkey(C.SYS_pkey_free, *args, 0, 0, 0, 0) == -1:
        raise _fail(call, args)



# --- mmap, munmap and msync family ---------------------------------------------------------------

def mprotect_alternate(addr: int, pages: int, prot: int) -> tuple[int, OSError | None]:
    """mprotect(2) pages 1, 3, 5, ... of the ``pages``-page range at addr to ``prot``, one
    call per page, stopping at the first failure: each call splits the range's VMA, so
    this fills the process's map count cheaply (the tests of vm.max_map_count), with the
    loop here rather than in Python at ~10 µs a call. Returns how many calls succeeded
    and the OSError (naming mprotect and its arguments) of the call that failed, or None."""
    call = "mprotect"
    start, count, protection = (_address(call, "addr", addr), _integer(call, "pages", pages),
                                _int(call, "prot", prot))
    if start % PAGE_SIZE or count < 0 or start + count * PAGE_SIZE > _U64_MAX:
        raise ValueError(f"mprotect_alternate: {start:#x} + {count} pages is not a page-aligned range")
    done = 0
    function, set_errno = _mprotect, ctypes.set_errno
    for page_addr in range(start + PAGE_SIZE, start + count * PAGE_SIZE, 2 * PAGE_SIZE):
        set_errno(0)
        if function(page_addr, PAGE_SIZE, protection) == -1:
            return done, _fail(call, (page_addr, PAGE_SIZE, protection))
        done += 1
    return done, None
