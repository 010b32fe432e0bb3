"""A seccomp filter in the style of Docker's default profile, loaded with libseccomp via ctypes.

Why: containers are where most CI runs, and a runtime's default seccomp profile turns
some documented behaviours into EPERM (Docker denies mbind, set_mempolicy,
move_pages and userfaultfd to processes without CAP_SYS_NICE / CAP_SYS_PTRACE, and
memfd_secret because its allowlist predates it). The ``seccomp`` matrix target runs the
suite under this filter with Docker's default capability set, without needing Docker.

Docker's profile is an allowlist; this is the equivalent denylist for what a process
with Docker's default capabilities (no CAP_SYS_ADMIN, CAP_SYS_PTRACE, CAP_SYS_NICE,
CAP_IPC_LOCK...) is refused. Every memory call the suite tests stays allowed except
those Docker denies. Not modelled: personality(2) argument filtering.

    python -m pytest_memsyscalls.matrix.seccomp_profile [--list] -- COMMAND...   (load, then exec)
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Sequence

from ..kernel import seccomp
from ..kernel.constants import SCMP_ACT_ALLOW, SCMP_ACT_ERRNO, SCMP_CMP_MASKED_EQ
from ..kernel.seccomp import ScmpArgCmp

DOCKER_CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
    "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL",
    "CAP_AUDIT_WRITE",
)

# Refused with EPERM (Docker: not in the allowlist, or allowed only with a capability
# the default set lacks). Names unknown on this architecture are ignored.
DENIED_EPERM = (
    # memory policy (CAP_SYS_NICE in Docker); ptrace and process_vm_* are allowed (kernel >= 4.8)
    "mbind", "set_mempolicy", "get_mempolicy", "move_pages", "migrate_pages", "userfaultfd",
    "memfd_secret",
    # keys
    "add_key", "keyctl", "request_key",
    # mounts, namespaces, swap
    "mount", "umount2", "pivot_root", "unshare", "setns", "swapon", "swapoff", "fsopen", "fsmount",
    "fsconfig", "fspick", "move_mount", "open_tree", "mount_setattr",
    # kernel and machine
    "acct", "bpf", "clock_adjtime", "clock_settime", "settimeofday", "create_module", "delete_module",
    "finit_module", "init_module", "get_kernel_syms", "query_module", "ioperm", "iopl", "kcmp",
    "kexec_file_load", "kexec_load", "lookup_dcookie", "name_to_handle_at", "open_by_handle_at",
    "nfsservctl", "perf_event_open", "quotactl", "reboot", "sysfs", "_sysctl", "uselib", "ustat",
    "vm86", "vm86old", "fanotify_init", "vhangup",
)
# clone3 gets ENOSYS so that glibc falls back to clone, whose flags a filter can see.
DENIED_ENOSYS = ("clone3",)
# clone with any CLONE_NEW* flag (Docker: only with CAP_SYS_ADMIN).
CLONE_NAMESPACE_FLAGS = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000)

class SeccompUnavailable(RuntimeError):
    pass


def load_library() -> seccomp.Libseccomp:
    try:
        lib = seccomp.load()
    except seccomp.LibseccompMissing:
        from .unavailable import Unavailable

        raise Unavailable("libseccomp (apt-get install libseccomp2)") from None
    return lib


def rules() -> list[tuple[str, int, list[tuple[int, int, int]]]]:
    """(syscall, action, [(arg index, mask, value)]) for every rule the filter adds."""
    out: list[tuple[str, int, list[tuple[int, int, int]]]] = []
    for name in dict.fromkeys(DENIED_EPERM):
        out.append((name, SCMP_ACT_ERRNO(errno.EPERM), []))
    for name in DENIED_ENOSYS:
        out.append((name, SCMP_ACT_ERRNO(errno.ENOSYS), []))
    for flag in CLONE_NAMESPACE_FLAGS:
        out.append(("clone", SCMP_ACT_ERRNO(errno.EPERM), [(0, flag, flag)]))
    return out


def install() -> list[str]:
    """Load the filter into this process (inherited across fork and exec). Returns the
    syscall names it covers on this architecture."""
    lib = load_library()
    try:
        ctx = lib.init(SCMP_ACT_ALLOW)
    except OSError:
        raise SeccompUnavailable("seccomp_init failed") from None
    covered = []
    try:
        for name, action, conditions in rules():
            number = lib.resolve_name(name)
            if number < 0:
                continue
            try:
                lib.rule_add(ctx, action, number,
                             [ScmpArgCmp(index, SCMP_CMP_MASKED_EQ, mask, value) for index, mask, value in conditions])
            except OSError as error:
                raise SeccompUnavailable(f"seccomp_rule_add({name}) failed: {error.strerror}") from None
            covered.append(name)
        try:
            lib.load(ctx)
        except OSError as error:
            raise SeccompUnavailable(f"seccomp_load failed: {error.strerror}") from None
    finally:
        lib.release(ctx)
    return sorted(set(covered))


def main(argv: Sequence[str]) -> int:
    args = list(argv)
    if args[:1] == ["--list"]:
        for name, action, conditions in rules():
            print(name, "ENOSYS" if action == SCMP_ACT_ERRNO(errno.ENOSYS) else "EPERM",
                  " ".join(f"arg{i}&{m:#x}=={v:#x}" for i, m, v in conditions))
        return 0
    if args[:1] == ["--"]:
        args = args[1:]
    if not args:
        print(__doc__, file=sys.stderr)
        return 2
    install()
    os.execvp(args[0], args)
    return 127  # pragma: no cover - execvp does not return


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
