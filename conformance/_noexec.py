"""A noexec mount for the tests of mmap(2) and mprotect(2) that need one.

Such a mount is either already there (a writable noexec file system in
/proc/self/mountinfo) or made by a child in a mount namespace of its own, which
needs CAP_SYS_ADMIN over it and a kernel or sandbox that allows the mount: both
are checked by probing in a separate child before the test relies on them.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable

import pytest

from pytest_memsyscalls import RunInChild
from pytest_memsyscalls.environment.fingerprint import Environment
from pytest_memsyscalls.kernel import constants as C
from pytest_memsyscalls.kernel import libc, procfs

# File systems on which a test can create a regular file (not devpts, proc, sysfs, …).
FILE_FSTYPES = {"tmpfs", "ext2", "ext3", "ext4", "xfs", "btrfs", "ramfs", "f2fs", "overlay", "9p"}



def writable_noexec_mount() -> str | None:
    """A mount point mounted noexec where this process may create files, if any."""
    for entry in procfs.parse_mountinfo(procfs._read("/proc/self/mountinfo")):
        options = set(entry.mount_options)
        if ("noexec" in options and "ro" not in options and entry.fstype in FILE_FSTYPES
                and os.access(entry.mount_point, os.W_OK | os.X_OK)):
            return entry.mount_point
    return None


def _step(label: str, call: Callable[..., None], *args: object) -> None:
    """One system call of the mount set-up; a failure keeps the errno and is named by ``label``
    (the probe child reports it as "<label> <ERRNO>")."""
    try:
        call(*args)
    except OSError as error:
        raise OSError(error.errno, label) from error


def mount_private_noexec_tmpfs(directory: str) -> None:
    """In a child: a mount namespace of its own with a noexec tmpfs over ``directory``.
    Root is made private first where mounts are shared, so nothing propagates back
    (gVisor has no shared mounts and refuses the remount: there is nothing to do)."""
    _step("unshare(CLONE_NEWNS)", libc.unshare, C.CLONE_NEWNS)
    if " shared:" in procfs._read("/proc/self/mountinfo"):
        _step("mount(none, /, MS_REC|MS_PRIVATE)", libc.mount, b"none", b"/", None, C.MS_REC | C.MS_PRIVATE)
    _step("mount(tmpfs, MS_NOEXEC)", libc.mount, b"memsys-noexec", directory, b"tmpfs",
          C.MS_NOEXEC | C.MS_NOSUID | C.MS_NODEV, b"size=64k,mode=0700")


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
