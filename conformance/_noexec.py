"""A noexec mount for the tests of mmap(2) and mprotect(2) that need one.

Such a mount is either already there (a writable noexec file system in
/proc/self/mountinfo) or made by a child in a mount namespace of its own, which
needs CAP_SYS_ADMIN over it and a kernel or sandbox that allows the mount: both
are checked by probing in a separate child before the test relies on them.
"""

from __future__ import annotations

import ctypes
import errno
import os

import pytest

from pytest_memsyscalls import RunInChild
from pytest_memsyscalls.environment.fingerprint import Environment
from pytest_memsyscalls.kernel import procfs

# File systems on which a test can create a regular file (not devpts, proc, sysfs, …).
FILE_FSTYPES = {"tmpfs", "ext2", "ext3", "ext4", "xfs", "btrfs", "ramfs", "f2fs", "overlay", "9p"}

_CLONE_NEWNS, _MS_REC, _MS_PRIVATE = 0x20000, 0x4000, 1 << 18
_MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 2, 4, 8


def writable_noexec_mount() -> str | None:
    """A mount point mounted noexec where this process may create files, if any."""
    for entry in procfs.parse_mountinfo(procfs._read("/proc/self/mountinfo")):
        options = set(entry.mount_options)
        if ("noexec" in options and "ro" not in options and entry.fstype in FILE_FSTYPES
                and os.access(entry.mount_point, os.W_OK | os.X_OK)):
            return entry.mount_point
    return None


def mount_private_noexec_tmpfs(directory: str) -> None:
    """In a child: a mount namespace of its own with a noexec tmpfs over ``directory``.
    Root is made private first where mounts are shared, so nothing propagates back
    (gVisor has no shared mounts and refuses the remount: there is nothing to do)."""
    raw = ctypes.CDLL(None, use_errno=True)
    raw.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
    if raw.unshare(_CLONE_NEWNS) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS)")
    if " shared:" in procfs._read("/proc/self/mountinfo") and raw.mount(
            b"none", b"/", None, _MS_REC | _MS_PRIVATE, None) != 0:
        raise OSError(ctypes.get_errno(), "mount(none, /, MS_REC|MS_PRIVATE)")
    if raw.mount(b"memsys-noexec", directory.encode(), b"tmpfs", _MS_NOEXEC | _MS_NOSUID | _MS_NODEV,
                 b"size=64k,mode=0700") != 0:
        raise OSError(ctypes.get_errno(), "mount(tmpfs, MS_NOEXEC)")


def _probe_private_noexec_mount(directory: str) -> str | None:
    """Probe child: None when a private noexec tmpfs can be mounted, else what failed."""
    try:
        mount_private_noexec_tmpfs(directory)
    except OSError as error:
        return f"{error.strerror} {errno.errorcode.get(error.errno or 0, error.errno)}"
    for entry in procfs.parse_mountinfo(procfs._read("/proc/self/mountinfo")):
        if entry.mount_point == directory and "noexec" in entry.mount_options:
            return None
    return "the tmpfs does not show as noexec in /proc/self/mountinfo"


def noexec_directory(env: Environment, scratch: str,
                     run_in_child: RunInChild) -> tuple[str, bool]:
    """(directory, must_mount): an existing writable noexec mount, or ``scratch`` with the
    child to mount a noexec tmpfs over it. Skips, naming what is missing, when neither works."""
    existing = writable_noexec_mount()
    if existing is not None:
        return existing, False
    if not env.capabilities.has("CAP_SYS_ADMIN") and "CAP_SYS_ADMIN" not in env.capabilities.effective:
        pytest.skip("needs:CAP_SYS_ADMIN (no writable noexec mount in /proc/self/mountinfo, and a private "
                    "noexec tmpfs cannot be mounted)")
    failed = run_in_child(_probe_private_noexec_mount, scratch).result()
    if failed is not None:
        pytest.skip(f"unsupported:private noexec tmpfs mount ({failed} in a probe child; no writable "
                    "noexec mount in /proc/self/mountinfo)")
    return scratch, True
