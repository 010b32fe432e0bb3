"""struct ipc_perm and struct shmid_ds per architecture, without a guest.

The offsets below are read from the documented headers, not from our own code:
x86_64 and aarch64 use glibc's generic layout (sysdeps/unix/sysv/linux/bits/ipc-perm.h,
bits/types/struct_shmid_ds.h with __TIMESIZE 64; the kernel's asm-generic/ipcbuf.h and
shmbuf.h), powerpc64 its own (sysdeps/unix/sysv/linux/powerpc/bits/ipc-perm.h and
bits/types/struct_shmid_ds.h; arch/powerpc/include/uapi/asm/ipcbuf.h and shmbuf.h):
there the sequence number is 32 bits wide and the three times come before shm_segsz.
Where a compiler for the architecture is installed, its own <sys/shm.h> checks them too.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import pytest

from pytest_memsyscalls.kernel import libc

# field -> (offset, size) as the headers lay them out on a 64-bit machine
_GENERIC_PERM = {"key": (0, 4), "uid": (4, 4), "gid": (8, 4), "cuid": (12, 4), "cgid": (16, 4),
                 "mode": (20, 4), "seq": (24, 2)}
_POWERPC_PERM = {**_GENERIC_PERM, "seq": (24, 4)}
_GENERIC_SHMID = {"shm_segsz": (48, 8), "shm_atime": (56, 8), "shm_dtime": (64, 8), "shm_ctime": (72, 8),
                  "shm_cpid": (80, 4), "shm_lpid": (84, 4), "shm_nattch": (88, 8)}
_POWERPC_SHMID = {"shm_atime": (48, 8), "shm_dtime": (56, 8), "shm_ctime": (64, 8), "shm_segsz": (72, 8),
                  "shm_cpid": (80, 4), "shm_lpid": (84, 4), "shm_nattch": (88, 8)}
LAYOUTS = {
    "x86_64": (_GENERIC_PERM, _GENERIC_SHMID),
    "aarch64": (_GENERIC_PERM, _GENERIC_SHMID),
    "ppc64le": (_POWERPC_PERM, _POWERPC_SHMID),
}
COMPILERS = {"x86_64": "x86_64-linux-gnu-gcc", "aarch64": "aarch64-linux-gnu-gcc",
             "ppc64le": "powerpc64le-linux-gnu-gcc"}
# the C names of our fields (glibc calls the key and the sequence number __key and __seq)
C_NAMES = {"key": "__key", "seq": "__seq"}


@pytest.mark.parametrize("arch", sorted(LAYOUTS))
def test_offsets_follow_the_headers(arch: str) -> None:
    perm, ds = libc.shm_structures(arch)
    want_perm, want_ds = LAYOUTS[arch]
    assert ctypes.sizeof(perm) == 48 and ctypes.sizeof(ds) == 112
    for name, (offset, size) in want_perm.items():
        field = getattr(perm, name)
        assert (name, field.offset, field.size) == (name, offset, size)
    assert ds.shm_perm.offset == 0
    for name, (offset, size) in want_ds.items():
        field = getattr(ds, name)
        assert (name, field.offset, field.size) == (name, offset, size)


def test_this_machine_uses_its_own_layout() -> None:
    _, ds = libc.shm_structures(libc.C.ARCH)
    assert [(n, getattr(ds, n).offset) for n, _ in ds._fields_] == \
        [(n, getattr(libc.ShmidDs, n).offset) for n, _ in libc.ShmidDs._fields_]


def test_unknown_machine_is_named() -> None:
    with pytest.raises(KeyError, match="s390x"):
        libc.shm_structures("s390x")


@pytest.mark.parametrize("arch", sorted(LAYOUTS))
def test_offsets_match_the_installed_glibc_headers(arch: str, tmp_path: Path) -> None:
    """The same offsets, asked of the architecture's own <sys/shm.h> (compile only)."""
    compiler = shutil.which(COMPILERS[arch])
    if compiler is None:
        pytest.skip(f"{COMPILERS[arch]} is not installed (gcc-{COMPILERS[arch].rsplit('-', 1)[0]})")
    perm, ds = libc.shm_structures(arch)
    checks = [f"_Static_assert(offsetof(struct ipc_perm, {C_NAMES.get(n, n)}) == {getattr(perm, n).offset}, "
              f"\"ipc_perm.{n}\");" for n in LAYOUTS[arch][0]]
    checks += [f"_Static_assert(offsetof(struct shmid_ds, {n}) == {getattr(ds, n).offset}, \"shmid_ds.{n}\");"
               for n in LAYOUTS[arch][1]]
    checks += [f"_Static_assert(sizeof(struct shmid_ds) == {ctypes.sizeof(ds)}, \"sizeof shmid_ds\");"]
    source = tmp_path / "layout.c"
    source.write_text("#include <stddef.h>\n#include <sys/ipc.h>\n#include <sys/shm.h>\n" + "\n".join(checks) + "\n")
    done = subprocess.run([compiler, "-fsyntax-only", str(source)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
