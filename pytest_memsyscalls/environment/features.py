"""What the environment promises: the optional memory-management features, as data, and
whether this kernel promises each one.

Why: a test that makes the call under test on a scratch mapping first, and skips when
it fails, turns a regression into a skip. A real kernel promises a feature by its
version and its configuration, so those decide:

- **promised**: the version is at least the one that introduced the feature, the
  Kconfig options that gate it are set (read from /proc/config.gz, /boot/config-RELEASE
  or /lib/modules/RELEASE/config; where none is readable, from the file the option
  creates, such as /sys/kernel/mm/ksm), the CPU has what it needs and the architecture
  has it. The test runs, and a failure names the promise.
- **not promised**: one of those says no. The test is skipped with a ``needs:`` reason.
- **unknown**: the kernel's version cannot be trusted (gVisor reports 4.4.0 whatever it
  implements) or the configuration cannot be read and nothing shows the option. Only
  then does a probe decide, on a scratch object; a feature the probe finds missing is
  skipped as ``unsupported:``, a class of its own in the report.

The registry (:data:`FEATURES`) says for each feature the version that introduced it,
the later versions that changed it, what gates it and where it exists. Decisions are
pure functions of :class:`Facts`, so every rule is testable without the kernel it
describes.
"""

from __future__ import annotations

import ctypes
import errno as errno_names
import gzip
import os
import re
import signal
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from ..kernel import constants as C
from ..kernel import libc, pages
from ..kernel.contract import Misplaced

PROMISED: Final = "promised"
NOT_PROMISED: Final = "not promised"
UNKNOWN: Final = "unknown"

Version = tuple[int, int]


@dataclass(frozen=True)
class BootSwitch:
    """A kernel command-line parameter that turns a built-in feature on or off, and the
    release from which it is on when the command line does not say (before it, off)."""

    parameter: str  # such as "secretmem.enable"
    on_by_default_since: Version


@dataclass(frozen=True)
class Feature:
    """One optional feature of the memory-management calls."""

    name: str
    since: Version  # the mainline release that introduced it
    what: str  # one line: what it is
    source: str  # where it is documented
    kconfig: tuple[str, ...] = ()  # gating options (without CONFIG_); any one of them set is enough
    evidence: str | None = None  # a file that exists exactly when the option is set, for unreadable configs
    cpu_flags: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # arch -> /proc/cpuinfo flags needed
    arches: tuple[str, ...] = ()  # the machines it exists on (empty: all)
    changes: tuple[tuple[Version, str], ...] = ()  # later versions that changed it
    probe: str | None = None  # the name of its probe in PROBES (None: no safe probe)
    switch: BootSwitch | None = None  # a boot parameter it also needs on

    def since_text(self) -> str:
        return f"{self.since[0]}.{self.since[1]}"


def _v(text: str) -> Version:
    major, minor = text.split(".")
    return int(major), int(minor)


_THP = ("TRANSPARENT_HUGEPAGE",)
_THP_DIR = "/sys/kernel/mm/transparent_hugepage"
_MEMORY_FAILURE = ("MEMORY_FAILURE",)
_MEMORY_FAILURE_SYSCTL = "/proc/sys/vm/memory_failure_early_kill"
_KSM_DIR = "/sys/kernel/mm/ksm"
_64BIT = ("x86_64", "aarch64", "ppc64le", "ppc64", "s390x", "riscv64", "loongarch64")

FEATURES: Final[tuple[Feature, ...]] = (
    Feature("MADV_FREE", _v("4.5"), "lazy freeing of private anonymous pages", "madvise(2) MADV_FREE",
            changes=((_v("4.12"), "also on systems without swap"),), probe="madvise"),
    Feature("MADV_WIPEONFORK", _v("4.14"), "a child sees the range zero-filled", "madvise(2) MADV_WIPEONFORK",
            probe="madvise"),
    Feature("MADV_KEEPONFORK", _v("4.14"), "undoes MADV_WIPEONFORK", "madvise(2) MADV_KEEPONFORK", probe="madvise"),
    Feature("MADV_COLD", _v("5.4"), "deactivate pages (reclaim hint)", "madvise(2) MADV_COLD", probe="madvise"),
    Feature("MADV_PAGEOUT", _v("5.4"), "reclaim pages now", "madvise(2) MADV_PAGEOUT", probe="madvise"),
    Feature("MADV_POPULATE_READ", _v("5.14"), "prefault readable", "madvise(2) MADV_POPULATE_READ",
            probe="madvise"),
    Feature("MADV_POPULATE_WRITE", _v("5.14"), "prefault writable", "madvise(2) MADV_POPULATE_WRITE",
            probe="madvise"),
    Feature("MADV_DONTNEED_LOCKED", _v("5.18"), "MADV_DONTNEED that also applies to locked pages",
            "madvise(2) MADV_DONTNEED_LOCKED", probe="madvise"),
    Feature("MADV_COLLAPSE", _v("6.1"), "synchronous collapse into transparent huge pages",
            "madvise(2) MADV_COLLAPSE", kconfig=_THP, evidence=_THP_DIR, probe="collapse"),
    Feature("MADV_GUARD_INSTALL", _v("6.13"), "guard regions that fault on access",
            "madvise(2) MADV_GUARD_INSTALL; Documentation/mm/process_addrs.rst", probe="madvise_guard"),
    Feature("MADV_GUARD_REMOVE", _v("6.13"), "remove guard regions", "madvise(2) MADV_GUARD_REMOVE",
            probe="madvise_guard"),
    Feature("MADV_HWPOISON", _v("2.6"), "poison a page (for testing memory-failure handling)",
            "madvise(2) MADV_HWPOISON", kconfig=_MEMORY_FAILURE, evidence=_MEMORY_FAILURE_SYSCTL),
    Feature("MADV_SOFT_OFFLINE", _v("2.6"), "soft-offline a page", "madvise(2) MADV_SOFT_OFFLINE",
            kconfig=_MEMORY_FAILURE, evidence=_MEMORY_FAILURE_SYSCTL),
    Feature("MADV_MERGEABLE", _v("2.6"), "kernel samepage merging", "madvise(2) MADV_MERGEABLE",
            kconfig=("KSM",), evidence=_KSM_DIR, probe="madvise"),
    Feature("MADV_UNMERGEABLE", _v("2.6"), "undo MADV_MERGEABLE", "madvise(2) MADV_UNMERGEABLE",
            kconfig=("KSM",), evidence=_KSM_DIR, probe="madvise"),
    Feature("THP", _v("2.6"), "transparent huge pages (MADV_HUGEPAGE, MADV_NOHUGEPAGE, AnonHugePages)",
            "madvise(2) MADV_HUGEPAGE; Documentation/admin-guide/mm/transhuge.rst", kconfig=_THP,
            evidence=_THP_DIR, probe="thp"),
    Feature("MADV_REMOVE", _v("2.6"), "free a range of shared memory and its backing (tmpfs/shmem)",
            "madvise(2) MADV_REMOVE", probe="madvise_shared"),
    Feature("MAP_SHARED_VALIDATE", _v("4.15"), "MAP_SHARED that rejects unknown flags",
            "mmap(2) MAP_SHARED_VALIDATE", probe="shared_validate"),
    Feature("MAP_FIXED_NOREPLACE", _v("4.17"), "MAP_FIXED that fails with EEXIST instead of replacing",
            "mmap(2) MAP_FIXED_NOREPLACE", probe="fixed_noreplace"),
    Feature("MAP_SYNC", _v("4.15"), "synchronous page faults for DAX files", "mmap(2) MAP_SYNC",
            kconfig=("FS_DAX",)),
    Feature("MAP_DROPPABLE", _v("6.11"), "anonymous memory the kernel may drop under pressure",
            "mmap(2) MAP_DROPPABLE", arches=_64BIT, probe="droppable"),
    Feature("MREMAP_DONTUNMAP", _v("5.7"), "move the pages and leave the old range mapped",
            "mremap(2) MREMAP_DONTUNMAP",
            changes=((_v("5.13"), "accepted for shared and file mappings, not only private anonymous"),),
            probe="dontunmap"),
    Feature("MREMAP_DONTUNMAP_ANY_MAPPING", _v("5.13"), "MREMAP_DONTUNMAP on shared and file mappings",
            "mremap(2) MREMAP_DONTUNMAP (Linux 5.13: any mapping but VM_DONTEXPAND/VM_MIXEDMAP)",
            probe="dontunmap_shared"),
    Feature("MLOCK_ONFAULT", _v("4.4"), "mlock2(MLOCK_ONFAULT): lock pages as they are faulted in",
            "mlock(2) mlock2", probe="mlock2"),
    Feature("MCL_ONFAULT", _v("4.4"), "mlockall(MCL_ONFAULT)", "mlock(2) MCL_ONFAULT", probe="mcl_onfault"),
    Feature("SHM_STAT_ANY", _v("4.17"), "SHM_STAT without the read-permission check", "shmctl(2) SHM_STAT_ANY",
            kconfig=("SYSVIPC",), probe="shm_stat_any"),
    Feature("MSEAL", _v("6.10"), "seal a range against mprotect, munmap, mremap and destructive madvise",
            "mseal(2); Documentation/userspace-api/mseal.rst", arches=_64BIT, probe="mseal_empty"),
    Feature("MEMFD_SECRET", _v("5.14"), "memory removed from the kernel's direct map", "memfd_secret(2)",
            kconfig=("SECRETMEM",),
            changes=((_v("6.5"), "enabled by default; before, only with secretmem.enable=1"),),
            probe="memfd_secret",
            # mm/secretmem.c: memfd_secret() is ENOSYS unless secretmem_enable, a bool
            # parameter of built-in code; its default became true in 6.5 ("mm/secretmem:
            # make it on by default"). Off, the promise is not made.
            switch=BootSwitch("secretmem.enable", _v("6.5"))),
    Feature("PKEYS", _v("4.9"), "memory protection keys (pkey_alloc, pkey_mprotect, SEGV_PKUERR)", "pkeys(7)",
            kconfig=("X86_INTEL_MEMORY_PROTECTION_KEYS", "PPC_MEM_KEYS", "ARM64_POE"),
            cpu_flags={"x86_64": ("pku", "ospke"), "ppc64le": ("mmu_hash",), "ppc64": ("mmu_hash",),
                       "aarch64": ("poe",)},  # arm64: FEAT_S1POE, "poe" in Features (HWCAP2_POE)
            arches=("x86_64", "ppc64le", "ppc64", "aarch64"),
            changes=((_v("6.12"), "arm64 (Permission Overlay Extension)"),)),
    Feature("PROCESS_MADVISE", _v("5.10"), "madvise on another process through a pidfd", "process_madvise(2)",
            kconfig=("ADVISE_SYSCALLS",),
            changes=((_v("6.13"), "any advice when the pidfd is the caller's own process"),),
            probe="process_madvise_empty"),
    Feature("HUGETLB", _v("2.6"), "HugeTLB pages (MAP_HUGETLB, SHM_HUGETLB)", "mmap(2) MAP_HUGETLB",
            kconfig=("HUGETLBFS",), evidence="/proc/sys/vm/nr_hugepages"),
    Feature("SOFT_DIRTY", _v("3.11"), "soft-dirty bits in /proc/PID/pagemap",
            "Documentation/admin-guide/mm/soft-dirty.rst", kconfig=("MEM_SOFT_DIRTY",),
            arches=("x86_64", "ppc64le", "ppc64", "s390x", "riscv64")),
    # --- newer memory calls
    Feature("PROCESS_MADVISE_SELF", _v("6.13"), "process_madvise on the caller's own pidfd takes any advice",
            "process_madvise(2); mm/madvise.c (6.13: unrestrict process_madvise() for current process)",
            kconfig=("ADVISE_SYSCALLS",)),
    Feature("MFD_NOEXEC_SEAL", _v("6.3"), "memfd_create(MFD_NOEXEC_SEAL): not executable, sealed so (F_SEAL_EXEC)",
            "memfd_create(2) MFD_NOEXEC_SEAL; Documentation/userspace-api/mfd_noexec.rst"),

    # mremap, mincore, mprotect and protection keys
    Feature("PKEY_SYSCALLS", _v("4.9"), "pkey_alloc, pkey_free and pkey_mprotect exist (with or without CPU keys)",
            "pkeys(7); mm/mprotect.c (#ifdef CONFIG_ARCH_HAS_PKEYS)", kconfig=("ARCH_HAS_PKEYS",),
            arches=("x86_64", "ppc64le", "ppc64", "aarch64"),
            changes=((_v("6.12"), "arm64 (Permission Overlay Extension)"),), probe="pkey_syscalls"),
    Feature("MINCORE_WRITABLE_FILES_ONLY", _v("5.0"),
            "mincore reports page-cache residency of a file mapping only to a caller that owns the file or "
            "could open it for writing; to others every page reads resident",
            "mm/mincore.c can_do_mincore (commit 134fca9063ad, Linux 5.0); mincore(2)"),

    # mmap, munmap and msync family
    Feature("F_SEAL_FUTURE_WRITE", _v("5.1"), "memfd seal against new writes, existing writable mappings kept",
            "fcntl(2) F_SEAL_FUTURE_WRITE; memfd_create(2)", kconfig=("MEMFD_CREATE",)),
    Feature("WRITE_SEALED_READONLY_SHARED", _v("6.7"),
            "a read-only MAP_SHARED mapping of an F_SEAL_WRITE memfd is allowed (and cannot gain PROT_WRITE)",
            "mm: perform the mapping_map_writable() check after call_mmap() (Linux 6.7); fcntl(2) F_SEAL_WRITE",
            kconfig=("MEMFD_CREATE",)),
)

BY_NAME: Final = {feature.name: feature for feature in FEATURES}


# --- the facts a decision reads ------------------------------------------------------

@dataclass(frozen=True)
class KernelConfig:
    """The running kernel's Kconfig, or why it could not be read."""

    options: Mapping[str, str] | None  # CONFIG_X -> "y" | "m" | value; None when unreadable
    source: str  # the file it came from, or why none could be read

    def is_set(self, name: str) -> bool:
        assert self.options is not None
        return self.options.get(f"CONFIG_{name}") in ("y", "m")


def parse_kconfig(text: str) -> dict[str, str]:
    """``CONFIG_X=y`` lines; ``# CONFIG_X is not set`` and absent options are not set."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if sep and name.startswith("CONFIG_"):
            found[name] = value.strip().strip('"')
    return found


def config_paths(release: str) -> tuple[str, ...]:
    return ("/proc/config.gz", f"/boot/config-{release}", f"/lib/modules/{release}/config")


def read_kernel_config(release: str, paths: Iterable[str] | None = None) -> KernelConfig:
    """The first readable of /proc/config.gz, /boot/config-RELEASE, /lib/modules/RELEASE/config."""
    tried = []
    for path in config_paths(release) if paths is None else paths:
        try:
            with open(path, "rb") as handle:
                data = handle.read()
            text = (gzip.decompress(data) if path.endswith(".gz") else data).decode("utf-8", "replace")
        except (OSError, EOFError, gzip.BadGzipFile) as error:
            tried.append(f"{path}: {getattr(error, 'strerror', None) or error}")
            continue
        return KernelConfig(parse_kconfig(text), path)
    return KernelConfig(None, "no readable kernel config (" + "; ".join(tried) + ")")


def parse_release(release: str) -> Version | None:
    found = re.match(r"(\d+)\.(\d+)", release)
    return (int(found.group(1)), int(found.group(2))) if found else None


@dataclass(frozen=True)
class Facts:
    """What the decisions read: the kernel's claims and the files that back them."""

    release: str
    arch: str
    sandbox: str  # the sandbox kind the fingerprint detected
    config: KernelConfig
    cpu_flags: frozenset[str] | None  # None: /proc/cpuinfo has no flags line
    exists: Callable[[str], bool] = os.path.exists
    cmdline: str | None = None  # the kernel's command line (/proc/cmdline); None: unreadable

    def version(self) -> tuple[Version | None, str]:
        """The version to trust, or None and why not."""
        if self.sandbox == "gvisor":
            return None, f"gVisor reports {self.release}"
        parsed = parse_release(self.release)
        if parsed is None:
            return None, f"kernel release {self.release!r} has no version number"
        return parsed, ""


@dataclass(frozen=True)
class Promise:
    """What the environment promises about one feature, and why. For an unknown
    promise, ``works`` is the probe's verdict (None: no probe could decide)."""

    feature: str
    state: str  # PROMISED | NOT_PROMISED | UNKNOWN
    why: str
    works: bool | None = None

    def describe(self) -> str:
        return f"{self.feature}: {self.state} ({self.why})"

    def as_dict(self) -> dict[str, object]:
        return {"state": self.state, "why": self.why, "works": self.works}


def decide(feature: Feature, facts: Facts) -> Promise:
    """The promise from version, configuration, CPU and architecture; no probe."""
    name = feature.name
    if feature.arches and facts.arch not in feature.arches:
        return Promise(name, NOT_PROMISED, f"{name} exists on {', '.join(feature.arches)}, not {facts.arch}")
    version, untrusted = facts.version()
    if version is None:
        # A sandbox that misreports its version emulates /proc and /sys too: nothing it
        # says about its configuration is the kernel's promise.
        return Promise(name, UNKNOWN, untrusted)
    if version < feature.since:
        return Promise(name, NOT_PROMISED, f"kernel {_text(version)} < {feature.since_text()}")
    needed_flags = feature.cpu_flags.get(facts.arch, ())
    if needed_flags and facts.cpu_flags is not None and not set(needed_flags) <= facts.cpu_flags:
        missing = sorted(set(needed_flags) - facts.cpu_flags)
        return Promise(name, NOT_PROMISED, f"the CPU lacks {' '.join(missing)} (/proc/cpuinfo flags)")
    config_why = ""
    if feature.kconfig:
        options = " or ".join(f"CONFIG_{option}" for option in feature.kconfig)
        if facts.config.options is not None:
            if not any(facts.config.is_set(option) for option in feature.kconfig):
                return Promise(name, NOT_PROMISED, f"{options} is not set, {facts.config.source}")
            config_why = f", {options} in {facts.config.source}"
        elif feature.evidence is not None:
            if not facts.exists(feature.evidence):
                return Promise(name, NOT_PROMISED, f"{options} is not set: {feature.evidence} is missing "
                                                   f"({facts.config.source})")
            config_why = f", {feature.evidence} exists"
        else:
            return Promise(name, UNKNOWN, f"{options} unknown: {facts.config.source}")
    if needed_flags and facts.cpu_flags is None:
        return Promise(name, UNKNOWN, f"needs CPU flags {' '.join(needed_flags)}; /proc/cpuinfo has none")
    if feature.switch is not None:
        if facts.cmdline is None:
            return Promise(name, UNKNOWN, f"{feature.switch.parameter} unknown: /proc/cmdline is unreadable")
        on, switch_why = switch_state(feature.switch, version, facts.cmdline)
        if not on:
            return Promise(name, NOT_PROMISED, switch_why)
        config_why += f", {switch_why}"
    return Promise(name, PROMISED, f"kernel {_text(version)} >= {feature.since_text()}{config_why}")


def switch_state(switch: BootSwitch, version: Version, cmdline: str) -> tuple[bool, str]:
    """Whether a boot switch is on, and why: its last value on the command line before
    ``--`` (a bool parameter alone means on; kstrtobool: y, 1, on / n, 0, off; other
    values are rejected and leave the default), else its default for this release."""
    value: bool | None = None
    said = ""
    for word in cmdline.split():
        if word == "--":
            break  # the rest is init's
        key, sep, raw = word.partition("=")
        if key != switch.parameter:
            continue
        parsed = True if not sep else _kstrtobool(raw)
        if parsed is not None:
            value, said = parsed, word
    if value is not None:
        return value, f"{said} on the kernel command line"
    default = version >= switch.on_by_default_since
    since = _text(switch.on_by_default_since)
    return default, (f"{switch.parameter} is not on the kernel command line: "
                     + (f"on by default since {since}" if default else f"off by default before {since}"))


def _kstrtobool(text: str) -> bool | None:
    low = text.lower()
    if low[:1] in ("y", "1") or low[:2] == "on":
        return True
    if low[:1] in ("n", "0") or low[:2] == "of":
        return False
    return None


def _text(version: Version) -> str:
    return f"{version[0]}.{version[1]}"


# --- probes: only where the promise is unknown -----------------------------------------

# errnos that mean "this kernel does not have it"; any other failure means the call exists
_MISSING = (errno_names.EINVAL, errno_names.ENOSYS, errno_names.EOPNOTSUPP)
_PAGE = libc.PAGE_SIZE
_ADVICE = {name: getattr(C, name) for name in dir(C) if name.startswith("MADV_")}


def _failed(error: OSError) -> str | None:
    """A probe's verdict from the error of its call: a reason when the feature is missing."""
    code = error.errno or 0
    return errno_names.errorcode.get(code, str(code)) if code in _MISSING else None


def _with_scratch(flags: int, use: Callable[[int], object]) -> str | None:
    scratch = libc.mmap(0, 2 * _PAGE, C.RW, flags)
    try:
        use(scratch)
    except OSError as error:
        return _failed(error)
    finally:
        libc.munmap(scratch, 2 * _PAGE)
    return None


def _probe_madvise(name: str, flags: int = C.ANON) -> str | None:
    return _with_scratch(flags, lambda addr: libc.madvise(addr, _PAGE, _ADVICE[name]))


def _probe_collapse(name: str) -> str | None:
    """MADV_COLLAPSE on a populated, huge-page-aligned private anonymous range: the only
    range it accepts, so an EINVAL here means the advice is missing (an empty range is
    accepted by kernels that return before checking the advice)."""
    huge = pages.thp_pmd_size()
    scratch = libc.mmap(0, 2 * huge, C.RW, C.ANON)
    try:
        start = (scratch + huge - 1) // huge * huge
        libc.madvise(start, huge, C.MADV_HUGEPAGE)
        ctypes.memset(start, 1, huge)
        libc.madvise(start, huge, C.MADV_COLLAPSE)
    except OSError as error:
        return _failed(error)
    finally:
        libc.munmap(scratch, 2 * huge)
    return None


def _probe_mcl_onfault(name: str) -> str | None:
    """mlockall(MCL_FUTURE | MCL_ONFAULT) in a forked child: process-wide, so never here.
    The child makes one call and exits with its errno."""
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            libc.mlockall(C.MCL_FUTURE | C.MCL_ONFAULT)
        except OSError as error:
            code = error.errno or 1
        os._exit(code)
    deadline = time.monotonic() + 10
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return "the probe child did not exit"
        time.sleep(0.001)
    code = os.waitstatus_to_exitcode(status)
    if code in _MISSING:
        return errno_names.errorcode[code]
    return None


def _probe_guard(name: str) -> str | None:
    def install_and_remove(addr: int) -> None:
        libc.madvise(addr, _PAGE, C.MADV_GUARD_INSTALL)
        libc.madvise(addr, _PAGE, C.MADV_GUARD_REMOVE)
    return _with_scratch(C.ANON, install_and_remove)


def _probe_fixed_noreplace(name: str) -> str | None:
    scratch = libc.mmap(0, _PAGE, C.PROT_NONE, C.ANON)
    try:
        libc.mmap(scratch, _PAGE, C.PROT_NONE, C.ANON | C.MAP_FIXED_NOREPLACE)
    except OSError as error:
        return None if error.errno == errno_names.EEXIST else _failed(error) or str(error)
    except Misplaced as misplaced:  # a kernel that treats the flag as a hint maps elsewhere
        other = misplaced.returned
        libc.munmap(other, _PAGE)
        return f"treated as a hint: {scratch:#x} was asked for, {other:#x} returned"
    finally:
        libc.munmap(scratch, _PAGE)
    return "mapped over an existing mapping"


def _probe_shared_validate(name: str) -> str | None:
    """On a scratch file: an anonymous mapping refuses MAP_SHARED_VALIDATE on any kernel."""
    with tempfile.TemporaryFile() as scratch:
        os.ftruncate(scratch.fileno(), _PAGE)
        try:
            addr = libc.mmap(0, _PAGE, C.RW, C.MAP_SHARED_VALIDATE, scratch.fileno())
        except OSError as error:
            return _failed(error) or str(error)
    libc.munmap(addr, _PAGE)
    return None


def _probe_droppable(name: str) -> str | None:
    try:
        addr = libc.mmap(0, _PAGE, C.RW, C.MAP_DROPPABLE | C.MAP_ANONYMOUS)
    except OSError as error:
        return _failed(error) or str(error)
    libc.munmap(addr, _PAGE)
    return None


def _probe_dontunmap(name: str, flags: int = C.ANON) -> str | None:
    scratch = libc.mmap(0, _PAGE, C.RW, flags)
    try:
        moved = libc.mremap(scratch, _PAGE, _PAGE, C.MREMAP_MAYMOVE | C.MREMAP_DONTUNMAP)
    except OSError as error:
        return _failed(error) or str(error)
    finally:
        libc.munmap(scratch, _PAGE)
    libc.munmap(moved, _PAGE)
    return None


def _probe_mlock2(name: str) -> str | None:
    def lock(addr: int) -> None:
        libc.mlock2(addr, _PAGE, C.MLOCK_ONFAULT)
        libc.munlock(addr, _PAGE)
    try:
        return _with_scratch(C.ANON, lock)
    except OSError:
        return None  # a resource error (EPERM, EAGAIN, ENOMEM): the call exists


def _probe_shm_stat_any(name: str) -> str | None:
    shmid = libc.shmget(C.IPC_PRIVATE, _PAGE, 0o600 | C.IPC_CREAT)
    try:
        highest = libc.shmctl(0, C.SHM_INFO, libc.ShmInfoUsage())
        for index in range(highest + 1):
            try:
                if libc.shmctl(index, C.SHM_STAT_ANY, libc.ShmidDs()) == shmid:
                    return None
            except OSError as error:
                if error.errno in (errno_names.ENOSYS, errno_names.EOPNOTSUPP):
                    return _failed(error)
        return "no index answered SHM_STAT_ANY with our own segment"
    finally:
        libc.shmctl(shmid, C.IPC_RMID)


def _probe_mseal_empty(name: str) -> str | None:
    """mseal of an empty range: flags and alignment are checked, then nothing is sealed
    (sealed memory could never be unmapped, so no probe seals a page)."""
    try:
        libc.mseal(0, 0, 0)
    except OSError as error:
        return _failed(error) or str(error)
    return None


def _probe_memfd_secret(name: str) -> str | None:
    try:
        fd = libc.memfd_secret(0)
    except OSError as error:
        return _failed(error) or str(error)
    os.close(fd)
    return None


def _probe_process_madvise_empty(name: str) -> str | None:
    """process_madvise of no range on our own pidfd: the call exists and advises 0 bytes."""
    try:
        pidfd = libc.pidfd_open(os.getpid())
    except OSError as error:
        return _failed(error) or str(error)
    try:
        libc.process_madvise(pidfd, [], C.MADV_COLD)
    except OSError as error:
        return _failed(error) or str(error)
    finally:
        os.close(pidfd)
    return None


def _probe_thp(name: str) -> str | None:
    return _probe_madvise("MADV_HUGEPAGE")


def _probe_pkey_syscalls(name: str) -> str | None:
    """pkey_mprotect with key -1 is mprotect wherever the system call exists."""
    return _with_scratch(C.ANON, lambda addr: libc.pkey_mprotect(addr, _PAGE, C.RW, -1))


PROBES: Final[dict[str, Callable[[str], str | None]]] = {
    "madvise": _probe_madvise,
    "madvise_shared": lambda name: _probe_madvise(name, C.MAP_SHARED | C.MAP_ANONYMOUS),
    "collapse": _probe_collapse,
    "mcl_onfault": _probe_mcl_onfault,
    "madvise_guard": _probe_guard,
    "thp": _probe_thp,
    "fixed_noreplace": _probe_fixed_noreplace,
    "shared_validate": _probe_shared_validate,
    "droppable": _probe_droppable,
    "dontunmap": _probe_dontunmap,
    "dontunmap_shared": lambda name: _probe_dontunmap(name, C.MAP_SHARED | C.MAP_ANONYMOUS),
    "mlock2": _probe_mlock2,
    "shm_stat_any": _probe_shm_stat_any,
    "mseal_empty": _probe_mseal_empty,
    "memfd_secret": _probe_memfd_secret,
    "process_madvise_empty": _probe_process_madvise_empty,
    "pkey_syscalls": _probe_pkey_syscalls,
}


def probed(promise: Promise, feature: Feature) -> Promise:
    """An unknown promise with the probe's verdict added (unchanged when no probe exists)."""
    if promise.state != UNKNOWN:
        return promise
    if feature.probe is None:
        return Promise(promise.feature, UNKNOWN, f"{promise.why}; no safe probe")
    try:
        failure = PROBES[feature.probe](feature.name)
    except OSError as error:  # the probe's own scratch objects could not be made
        return Promise(promise.feature, UNKNOWN, f"{promise.why}; probe could not run: {error}")
    if failure is None:
        return Promise(promise.feature, UNKNOWN, f"{promise.why}; probe: works", works=True)
    return Promise(promise.feature, UNKNOWN, f"{promise.why}; probe: {failure}", works=False)


def assess(facts: Facts, probe: bool = True) -> dict[str, Promise]:
    """Every feature's promise, probed where unknown (``probe``), by name."""
    found = {}
    for feature in FEATURES:
        promise = decide(feature, facts)
        found[feature.name] = probed(promise, feature) if probe else promise
    return found


def cpu_flags(cpuinfo: str | None) -> frozenset[str] | None:
    """The first ``flags`` (x86) or ``Features`` (arm64) line of /proc/cpuinfo. powerpc has
    neither; there the ``MMU`` line (Radix or Hash, arch/powerpc/kernel/setup-common.c
    show_cpuinfo) gives ``mmu_radix`` or ``mmu_hash``: protection keys exist only under the
    hash MMU (arch/powerpc/mm/book3s64/pkeys.c)."""
    mmu = None
    for line in (cpuinfo or "").splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("flags", "Features"):
            return frozenset(value.split())
        if key == "MMU" and mmu is None and value.strip():
            mmu = frozenset({f"mmu_{value.strip().lower()}"})
    return mmu
