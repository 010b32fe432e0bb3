"""The kernel door for libseccomp: loading the library and binding the calls the
``seccomp`` matrix target's filter needs (matrix/seccomp_profile.py builds the filter).

The same discipline as ``libc``: ``use_errno=True``; errno reset before each call;
explicit ``argtypes``/``restype`` (the filter context as ``c_void_p``); a failure raised
as ``OSError(errno, strerror, "call(args)")``. libseccomp reports most failures as a
negative errno in the return value rather than in errno; that value is the one raised.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Sequence

from .libc import _address, _bind, _format_args, _int


class LibseccompMissing(OSError):
    """The libseccomp shared object could not be loaded."""


class ScmpArgCmp(ctypes.Structure):
    """struct scmp_arg_cmp: one condition on a system call argument."""

    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64),
                ("datum_b", ctypes.c_uint64)]


def _status_error(call: str, status: int, args: Sequence[object]) -> OSError:
    """libseccomp's -errno return value as the OSError libc's calls raise."""
    error = OSError(-status, os.strerror(-status), f"{call}({_format_args(args)})")
    error.syscall = call  # type: ignore[attr-defined]
    return error


class Libseccomp:
    """libseccomp's filter-building calls, bound once per loaded library."""

    def __init__(self, library: ctypes.CDLL) -> None:
        c = ctypes
        self._init = _bind(library, "seccomp_init", c.c_void_p, [c.c_uint32])
        self._rule_add_array = _bind(library, "seccomp_rule_add_array", c.c_int,
                                     [c.c_void_p, c.c_uint32, c.c_int, c.c_uint, c.POINTER(ScmpArgCmp)])
        self._resolve_name = _bind(library, "seccomp_syscall_resolve_name", c.c_int, [c.c_char_p])
        self._load = _bind(library, "seccomp_load", c.c_int, [c.c_void_p])
        self._release = _bind(library, "seccomp_release", None, [c.c_void_p])

    def init(self, default_action: int) -> int:
        """seccomp_init(3); returns the filter context (an address, never 0)."""
        call = "seccomp_init"
        args = (_address(call, "def_action", default_action),)
        ctypes.set_errno(0)
        context = self._init(*args)
        if not context:
            # seccomp_init(3) documents no errno for its NULL (whatever errno holds was left by
            # some call inside libseccomp, e.g. EFAULT for a bad action), so none is reported.
            error = OSError(f"{call}({_format_args(args)}) returned NULL")
            error.syscall = call  # type: ignore[attr-defined]
            raise error
        return int(context)

    def resolve_name(self, name: str) -> int:
        """seccomp_syscall_resolve_name(3): the number on this architecture, or a
        negative value (__NR_SCMP_ERROR) for a name it does not know; not an error."""
        ctypes.set_errno(0)
        return int(self._resolve_name(name.encode()))

    def rule_add(self, context: int, action: int, syscall: int, conditions: Sequence[ScmpArgCmp]) -> None:
        """seccomp_rule_add_array(3)."""
        call = "seccomp_rule_add_array"
        array = (ScmpArgCmp * max(1, len(conditions)))(*conditions)
        args = (_address(call, "ctx", context), _address(call, "action", action), _int(call, "syscall", syscall),
                len(conditions))
        ctypes.set_errno(0)
        status = int(self._rule_add_array(*args, array))
        if status < 0:
            raise _status_error(call, status, args)

    def load(self, context: int) -> None:
        """seccomp_load(3): the filter into this process (inherited across fork and exec)."""
        call = "seccomp_load"
        args = (_address(call, "ctx", context),)
        ctypes.set_errno(0)
        status = int(self._load(*args))
        if status < 0:
            raise _status_error(call, status, args)

    def release(self, context: int) -> None:
        """seccomp_release(3)."""
        ctypes.set_errno(0)
        self._release(_address("seccomp_release", "ctx", context))


def load() -> Libseccomp:
    """libseccomp, bound; ``LibseccompMissing`` (an OSError) when it is not installed."""
    name = ctypes.util.find_library("seccomp") or "libseccomp.so.2"
    try:
        library = ctypes.CDLL(name, use_errno=True)
    except OSError as error:
        raise LibseccompMissing(f"cannot load {name}: {error}") from None
    return Libseccomp(library)

