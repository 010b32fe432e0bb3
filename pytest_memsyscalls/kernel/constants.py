"""Every constant the memory-management calls take, in one place.

Python's ``mmap`` module lacks most of these (MAP_FIXED_NOREPLACE, MADV_* past the
POSIX set, MLOCK_ONFAULT, SHM_*), and their values are ABI, not API: they are taken
from the kernel's uapi headers for the two architectures we support. Values that
differ between x86_64 and aarch64 (syscall numbers, MAP_32BIT, PROT_BTI) are kept in
per-architecture tables and resolved once for the running machine.

PYTEST_DONT_REWRITE: loaded into every pytest session (plugin/activation.py says why).
"""

from __future__ import annotations

import os
import signal

ARCH = os.uname().machine

# --- mmap(2), mprotect(2): asm-generic/mman-common.h, identical on x86_64 and aarch64
PROT_NONE = 0x0
PROT_READ = 0x1
PROT_WRITE = 0x2
PROT_EXEC = 0x4
PROT_GROWSDOWN = 0x01000000
PROT_GROWSUP = 0x02000000

MAP_SHARED = 0x01
MAP_PRIVATE = 0x02
MAP_SHARED_VALIDATE = 0x03
MAP_DROPPABLE = 0x08  # a mapping type of its own (Linux 6.11, 64-bit)
MAP_TYPE = 0x0F
MAP_FIXED = 0x10
MAP_ANONYMOUS = 0x20
MAP_GROWSDOWN = 0x0100
MAP_DENYWRITE = 0x0800
MAP_EXECUTABLE = 0x1000
MAP_POPULATE = 0x8000
MAP_NONBLOCK = 0x10000
MAP_STACK = 0x20000
MAP_HUGETLB = 0x40000
MAP_SYNC = 0x80000
MAP_FIXED_NOREPLACE = 0x100000
# MAP_LOCKED and MAP_NORESERVE differ on powerpc: per architecture, below (_PER_ARCH).
MAP_UNINITIALIZED = 0x4000000
MAP_HUGE_SHIFT = 26
MAP_HUGE_MASK = 0x3F
MAP_HUGE_2MB = 21 << MAP_HUGE_SHIFT
MAP_HUGE_1GB = 30 << MAP_HUGE_SHIFT

MAP_FAILED = (1 << 64) - 1  # (void *) -1 as an unsigned 64-bit address

# The two combinations nearly every call site uses, defined once.
RW = PROT_READ | PROT_WRITE
ANON = MAP_PRIVATE | MAP_ANONYMOUS

# --- msync(2)
MS_ASYNC = 1
MS_INVALIDATE = 2
MS_SYNC = 4

# --- mremap(2)
MREMAP_MAYMOVE = 1
MREMAP_FIXED = 2
MREMAP_DONTUNMAP = 4

# --- mlock(2)
MLOCK_ONFAULT = 0x01
# MCL_CURRENT, MCL_FUTURE, MCL_ONFAULT differ on powerpc: per architecture, below (_PER_ARCH).

# --- madvise(2): every advice value the man page lists
MADV_NORMAL = 0
MADV_RANDOM = 1
MADV_SEQUENTIAL = 2
MADV_WILLNEED = 3
MADV_DONTNEED = 4
MADV_FREE = 8
MADV_REMOVE = 9
MADV_DONTFORK = 10
MADV_DOFORK = 11
MADV_MERGEABLE = 12
MADV_UNMERGEABLE = 13
MADV_HUGEPAGE = 14
MADV_NOHUGEPAGE = 15
MADV_DONTDUMP = 16
MADV_DODUMP = 17
MADV_WIPEONFORK = 18
MADV_KEEPONFORK = 19
MADV_COLD = 20
MADV_PAGEOUT = 21
MADV_POPULATE_READ = 22
MADV_POPULATE_WRITE = 23
MADV_DONTNEED_LOCKED = 24
MADV_COLLAPSE = 25
MADV_HWPOISON = 100
MADV_SOFT_OFFLINE = 101
MADV_GUARD_INSTALL = 102  # Linux 6.13
MADV_GUARD_REMOVE = 103

# --- SysV IPC: linux/ipc.h, linux/shm.h
IPC_PRIVATE = 0
IPC_CREAT = 0o1000
IPC_EXCL = 0o2000
IPC_NOWAIT = 0o4000
IPC_RMID = 0
IPC_SET = 1
IPC_STAT = 2
IPC_INFO = 3
SHM_LOCK = 11
SHM_UNLOCK = 12
SHM_STAT = 13
SHM_INFO = 14
SHM_STAT_ANY = 15
SHM_RDONLY = 0o10000
SHM_RND = 0o20000
SHM_REMAP = 0o40000
SHM_EXEC = 0o100000
SHM_HUGETLB = 0o4000
SHM_NORESERVE = 0o10000
# Mode bits the kernel reports in shm_perm.mode (not settable by callers).
SHM_DEST = 0o1000
SHM_LOCKED = 0o2000

# --- personality(2): linux/personality.h
PERSONALITY_QUERY = 0xFFFFFFFF  # asks for the current persona without changing it
ADDR_NO_RANDOMIZE = 0x0040000
READ_IMPLIES_EXEC = 0x0400000

# --- prctl(2): linux/prctl.h, linux/seccomp.h
PR_SET_PDEATHSIG = 1
PR_GET_DUMPABLE = 3
PR_GET_SECCOMP = 21
PR_SET_SECCOMP = 22
PR_SET_CHILD_SUBREAPER = 36
PR_GET_CHILD_SUBREAPER = 37
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
SECCOMP_MODE_FILTER = 2

# --- capget(2), capset(2): linux/capability.h (version 3: two 32-bit words per set)
LINUX_CAPABILITY_VERSION_3 = 0x20080522
LINUX_CAPABILITY_U32S_3 = 2

# --- ptrace(2): linux/ptrace.h
PTRACE_TRACEME = 0
PTRACE_PEEKDATA = 2
PTRACE_CONT = 7
PTRACE_SETOPTIONS = 0x4200
PTRACE_O_TRACEEXIT = 0x40
PTRACE_O_EXITKILL = 0x100000
PTRACE_EVENT_EXIT = 6

# --- unshare(2): linux/sched.h
CLONE_NEWNS = 0x00020000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000

# --- mount(2): linux/mount.h
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REC = 0x4000
MS_PRIVATE = 1 << 18

# --- libseccomp (seccomp.h): actions and argument comparisons, for kernel.seccomp
SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_CMP_MASKED_EQ = 7


def SCMP_ACT_ERRNO(value: int) -> int:
    """libseccomp's SCMP_ACT_ERRNO(x): fail the call with errno ``value``."""
    return 0x00050000 | (value & 0xFFFF)


# --- signal codes: asm-generic/siginfo.h
SEGV_MAPERR = 1
SEGV_MTEAERR = 8  # asm-generic/siginfo.h: arm64 MTE, asynchronous tag check fault
SEGV_MTESERR = 9  # synchronous tag check fault
SEGV_ACCERR = 2
SEGV_BNDERR = 3
SEGV_PKUERR = 4
BUS_ADRALN = 1
BUS_ADRERR = 2
BUS_OBJERR = 3
ILL_ILLOPC = 1
TRAP_BRKPT = 1
SI_USER = 0
SI_KERNEL = 0x80
SI_TKILL = -6

SIGNAL_CODE_NAMES: dict[int, dict[int, str]] = {
    # 5-7: SPARC ADI; 8, 9: arm64 MTE asynchronous and synchronous tag check faults; 10: shadow stacks
    signal.SIGSEGV: {1: "SEGV_MAPERR", 2: "SEGV_ACCERR", 3: "SEGV_BNDERR", 4: "SEGV_PKUERR", 5: "SEGV_ACCADI",
                     6: "SEGV_ADIDERR", 7: "SEGV_ADIPERR", 8: "SEGV_MTEAERR", 9: "SEGV_MTESERR", 10: "SEGV_CPERR"},
    signal.SIGBUS: {1: "BUS_ADRALN", 2: "BUS_ADRERR", 3: "BUS_OBJERR", 4: "BUS_MCEERR_AR", 5: "BUS_MCEERR_AO"},
    signal.SIGILL: {1: "ILL_ILLOPC", 2: "ILL_ILLOPN", 3: "ILL_ILLADR", 4: "ILL_ILLTRP", 5: "ILL_PRVOPC"},
    signal.SIGTRAP: {1: "TRAP_BRKPT", 2: "TRAP_TRACE"},
}
GENERIC_CODE_NAMES = {0: "SI_USER", 0x80: "SI_KERNEL", -1: "SI_QUEUE", -6: "SI_TKILL"}


def signal_code_name(signo: int, code: int) -> str:
    """Name an si_code the way siginfo.h does; codes are only meaningful per signal."""
    return SIGNAL_CODE_NAMES.get(signo, {}).get(code) or GENERIC_CODE_NAMES.get(code) or str(code)


# --- the parts that differ per architecture
_GENERIC_MMAN = {"MAP_NORESERVE": 0x4000, "MAP_LOCKED": 0x2000, "MCL_CURRENT": 1, "MCL_FUTURE": 2, "MCL_ONFAULT": 4}
_PER_ARCH: dict[str, dict[str, int]] = {
    "x86_64": {
        "SYS_brk": 12,
        "SYS_mmap": 9,
        "SYS_munmap": 11,
        "SYS_mprotect": 10,
        "SYS_madvise": 28,
        "SYS_mlock2": 325,
        "SYS_memfd_create": 319,
        "SYS_pkey_mprotect": 329,
        "SYS_pidfd_open": 434,
        "SYS_process_madvise": 440,
        "SYS_memfd_secret": 447,
        "SYS_mseal": 462,
        "SYS_pkey_alloc": 330,
        "SYS_pkey_free": 331,
        "MAP_32BIT": 0x40,
        "PROT_BTI": 0,
        "PROT_MTE": 0,
        **_GENERIC_MMAN,
    },
    "aarch64": {
        "SYS_brk": 214,
        "SYS_mmap": 222,
        "SYS_munmap": 215,
        "SYS_mprotect": 226,
        "SYS_madvise": 233,
        "SYS_mlock2": 284,
        "SYS_memfd_create": 279,
        "SYS_pkey_mprotect": 288,
        "SYS_pidfd_open": 434,
        "SYS_process_madvise": 440,
        "SYS_memfd_secret": 447,
        "SYS_mseal": 462,
        "SYS_pkey_alloc": 289,
        "SYS_pkey_free": 290,
        "MAP_32BIT": 0,
        "PROT_BTI": 0x10,
        "PROT_MTE": 0x20,
        **_GENERIC_MMAN,
    },
    # arch/powerpc/kernel/syscalls/syscall.tbl; arch/powerpc/include/uapi/asm/mman.h
    # (MAP_NORESERVE, MAP_LOCKED and the MCL_* flags have values of their own there).
    "ppc64le": {
        "SYS_brk": 45,
        "SYS_mmap": 90,
        "SYS_munmap": 91,
        "SYS_mprotect": 125,
        "SYS_madvise": 205,
        "SYS_mlock2": 378,
        "SYS_memfd_create": 360,
        "SYS_pkey_mprotect": 386,
        "SYS_pidfd_open": 434,
        "SYS_process_madvise": 440,
        "SYS_memfd_secret": 447,  # not wired on powerpc in 6.1: ENOSYS
        "SYS_mseal": 462,
        "SYS_pkey_alloc": 384,
        "SYS_pkey_free": 385,
        "MAP_32BIT": 0,
        "PROT_BTI": 0,
        "PROT_MTE": 0,
        "MAP_NORESERVE": 0x40,
        "MAP_LOCKED": 0x80,
        "MCL_CURRENT": 0x2000,
        "MCL_FUTURE": 0x4000,
        "MCL_ONFAULT": 0x8000,
    },
}
_PER_ARCH["ppc64"] = _PER_ARCH["ppc64le"]

SUPPORTED_ARCHES = tuple(_PER_ARCH)


def arch_constants(arch: str = ARCH) -> dict[str, int]:
    """The architecture-specific values; KeyError names the unsupported machine."""
    try:
        return dict(_PER_ARCH[arch])
    except KeyError:
        raise KeyError(f"pytest-memsyscalls knows no constants for architecture {arch!r}; "
                       f"supported: {', '.join(SUPPORTED_ARCHES)}") from None


_HERE = _PER_ARCH.get(ARCH, _PER_ARCH["x86_64"])
SYS_brk = _HERE["SYS_brk"]
SYS_mmap = _HERE["SYS_mmap"]
SYS_munmap = _HERE["SYS_munmap"]
SYS_mprotect = _HERE["SYS_mprotect"]
SYS_madvise = _HERE["SYS_madvise"]
SYS_mlock2 = _HERE["SYS_mlock2"]
SYS_memfd_create = _HERE["SYS_memfd_create"]
SYS_pkey_mprotect = _HERE["SYS_pkey_mprotect"]
MAP_32BIT = _HERE["MAP_32BIT"]
PROT_BTI = _HERE["PROT_BTI"]
PROT_MTE = _HERE["PROT_MTE"]
MAP_NORESERVE = _HERE["MAP_NORESERVE"]
MAP_LOCKED = _HERE["MAP_LOCKED"]
MCL_CURRENT = _HERE["MCL_CURRENT"]
MCL_FUTURE = _HERE["MCL_FUTURE"]
MCL_ONFAULT = _HERE["MCL_ONFAULT"]

PROT_NAMES = {PROT_READ: "PROT_READ", PROT_WRITE: "PROT_WRITE", PROT_EXEC: "PROT_EXEC"}


def prot_name(prot: int) -> str:
    """'PROT_READ|PROT_WRITE' for 3, 'PROT_NONE' for 0: for readable failure messages."""
    if prot == PROT_NONE:
        return "PROT_NONE"
    names = [name for bit, name in PROT_NAMES.items() if prot & bit]
    rest = prot & ~(PROT_READ | PROT_WRITE | PROT_EXEC)
    if rest:
        names.append(hex(rest))
    return "|".join(names)


# --- newer memory calls: mseal(2), memfd_create(2), memfd_secret(2), pidfd_open(2),
# process_madvise(2). Syscall numbers from arch/x86/entry/syscalls/syscall_64.tbl and
# include/uapi/asm-generic/unistd.h (aarch64); flags from include/uapi/linux/memfd.h and
# include/uapi/linux/fcntl.h.
SYS_pidfd_open = _HERE["SYS_pidfd_open"]
SYS_process_madvise = _HERE["SYS_process_madvise"]
SYS_memfd_secret = _HERE["SYS_memfd_secret"]
SYS_mseal = _HERE["SYS_mseal"]

MFD_CLOEXEC = 0x0001
MFD_ALLOW_SEALING = 0x0002
MFD_HUGETLB = 0x0004
MFD_NOEXEC_SEAL = 0x0008  # Linux 6.3
MFD_EXEC = 0x0010  # Linux 6.3
MFD_NAME_MAX = 249  # NAME_MAX minus strlen("memfd:")

F_LINUX_SPECIFIC_BASE = 1024
F_ADD_SEALS = F_LINUX_SPECIFIC_BASE + 9
F_GET_SEALS = F_LINUX_SPECIFIC_BASE + 10
F_SEAL_SEAL = 0x0001
F_SEAL_SHRINK = 0x0002
F_SEAL_GROW = 0x0004
F_SEAL_WRITE = 0x0008
F_SEAL_FUTURE_WRITE = 0x0010  # Linux 5.1
F_SEAL_EXEC = 0x0020  # Linux 6.3

PIDFD_NONBLOCK = 0o4000  # O_NONBLOCK

# --- mprotect and protection keys: asm-generic/mman-common.h, linux/mman.h (pkeys(7))
PROT_SEM = 0x8  # "page may be used for atomic ops": accepted, and ignored, on x86_64 and aarch64
PKEY_DISABLE_ACCESS = 0x1
PKEY_DISABLE_WRITE = 0x2
SYS_pkey_alloc = _HERE["SYS_pkey_alloc"]
SYS_pkey_free = _HERE["SYS_pkey_free"]

# --- mmap family: file timestamps
CLOCK_REALTIME_COARSE = 5  # include/uapi/linux/time.h: the clock file timestamps are taken from (coarse)
