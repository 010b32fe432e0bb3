"""The environment fingerprint: the facts that decide a memory-syscall outcome.

Whether ``mlock`` of 16 MiB succeeds, whether ``shmget`` may exceed SHMMAX,
whether MAP_FIXED at page 0 is refused, whether madvise(MADV_HUGEPAGE) does
anything: each depends on capabilities, rlimits, sysctls and the kernel (or
kernel impostor, such as gVisor) underneath.  A conformance result is only
meaningful next to these facts, so they go in the pytest header and in the JSON
report, and the ``requires`` machinery reads them to skip with a precise reason.

Rules this module keeps:

* Detection never raises.  Anything unreadable becomes ``None`` and the reason
  goes to :attr:`Environment.unknown` (keyed by the dotted field name), because
  a fingerprint that crashes in an unusual sandbox is worst exactly where it is
  most needed.
* Probing prefers what the kernel says about *this* process (/proc/self) over
  global claims; version numbers are reported but never trusted for features:
  gVisor always says 4.4.0.
* It imports only the kernel door (procfs, and libc for the personality query) and
  :mod:`features`, whose registry decides what the kernel promises.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import platform
import resource
import struct
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, TypeVar

from ..kernel import constants as C
from ..kernel import libc, pages, procfs
from . import features
from .features import NOT_PROMISED, UNKNOWN, Promise

__all__ = [
    "BrkHelper",
    "Capabilities",
    "Cpu",
    "DevShm",
    "Environment",
    "HugePages",
    "Identity",
    "IpcLimits",
    "Kernel",
    "LibC",
    "Limit",
    "Namespace",
    "Namespaces",
    "Overcommit",
    "Rlimits",
    "Sandbox",
    "Security",
    "Thp",
    "VmLimits",
    "detect",
    "detect_sandbox",
    "detect_uncached",
    "format_bytes",
    "format_limit",
    "parse_thp_mode",
]

# gVisor's sentry hard-codes the utsname it reports (pkg/sentry/kernel/version.go).
GVISOR_RELEASE: Final = "4.4.0"
GVISOR_VERSION: Final = "#1 SMP Sun Jan 10 15:06:54 PST 2016"

# Inode numbers of the initial namespaces (include/linux/proc_ns.h).  Linux
# allocates the inodes of every other namespace from 0xF0000000 upwards.
_INITIAL_NS_INO: Final[dict[str, int]] = {
    "ipc": 0xEFFFFFFF,
    "uts": 0xEFFFFFFE,
    "user": 0xEFFFFFFD,
    "pid": 0xEFFFFFFC,
    "cgroup": 0xEFFFFFFB,
}
_FIRST_DYNAMIC_NS_INO: Final = 0xF0000000

# Always read-only, never blocking, small: safe to read at pytest start-up.
# (Never /proc/kmsg: reading it blocks and consumes the kernel log.)
_PROC_SYS_KERNEL: Final = "/proc/sys/kernel"
_PROC_SYS_VM: Final = "/proc/sys/vm"
_THP_DIR: Final = "/sys/kernel/mm/transparent_hugepage"


# ---------------------------------------------------------------------------
# Pieces of the fingerprint
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Kernel:
    """What uname says (a claim, not a feature test), plus the page geometry expectations
    compute with: the page size (sysconf), SHMLBA (the architecture's asm/shmparam.h, see
    kernel/pages.py) and the PMD-level huge page size (sysfs, else computed)."""

    release: str
    version: str
    arch: str
    page_size: int | None
    shmlba: int | None = None
    pmd_huge_size: int | None = None


@dataclass(frozen=True)
class Identity:
    uid: int
    euid: int
    gid: int
    egid: int


@dataclass(frozen=True)
class Capabilities:
    """Effective capabilities of this process (``CapEff`` in status).

    ``effective`` is the raw decoded mask.  It is empty, not None, when unknown
    (``known`` is then False), so ``"CAP_X" in caps.effective`` is always safe.

    The four booleans answer a different question: does the capability work
    for the memory syscalls?  The kernel checks CAP_IPC_LOCK (mlock beyond
    RLIMIT_MEMLOCK), CAP_SYS_RESOURCE and most CAP_SYS_ADMIN uses with
    ``capable()``, i.e. against the *initial* user namespace, so root inside a
    user namespace (bubblewrap, rootless containers) has them in CapEff and
    still gets ENOMEM from mlock of 16 MiB under an 8 MiB limit (observed).
    CAP_IPC_OWNER is checked against the owner of the IPC namespace, so it
    counts there when the IPC namespace was created inside the user
    namespace.  Use :meth:`has` for the same rule on any capability.
    """

    effective: frozenset[str]
    known: bool
    user_namespace: bool | None
    ipc_lock: bool | None
    ipc_owner: bool | None
    sys_admin: bool | None
    sys_resource: bool | None

    @classmethod
    def from_mask(
        cls,
        hexmask: str | None,
        user_namespace: bool | None = False,
        own_ipc_namespace: bool | None = None,
    ) -> Capabilities:
        """Decode ``hexmask``; ``own_ipc_namespace``: the IPC namespace was
        created inside the (non-initial) user namespace."""
        if hexmask is None:
            return cls(frozenset(), False, user_namespace, None, None, None, None)
        caps = procfs.decode_capabilities(hexmask)

        def works(name: str, ns_owned: bool = False) -> bool:
            if name not in caps:
                return False
            if not user_namespace:
                return True
            return ns_owned and own_ipc_namespace is True

        return cls(
            effective=caps,
            known=True,
            user_namespace=user_namespace,
            ipc_lock=works("CAP_IPC_LOCK"),
            ipc_owner=works("CAP_IPC_OWNER", ns_owned=True),
            sys_admin=works("CAP_SYS_ADMIN"),
            sys_resource=works("CAP_SYS_RESOURCE"),
        )

    def has(self, name: str) -> bool:
        """``name`` is effective against the initial namespace's resources
        (conservatively False inside a user namespace, except IPC_OWNER)."""
        if name == "CAP_IPC_OWNER":
            return bool(self.ipc_owner)
        return name in self.effective and not self.user_namespace


@dataclass(frozen=True)
class Limit:
    """One rlimit; ``None`` in soft or hard means RLIM_INFINITY."""

    soft: int | None
    hard: int | None


@dataclass(frozen=True)
class Rlimits:
    memlock: Limit
    address_space: Limit
    data: Limit
    stack: Limit


@dataclass(frozen=True)
class Security:
    """Seccomp mode (0 off, 1 strict, 2 filter), the no_new_privs bit, the tracer and
    Yama's ptrace scope.

    A seccomp filter can turn any syscall into EPERM/ENOSYS, which must not be
    mistaken for the kernel's own answer. A process that is traced (strace, gdb, a
    ptrace-based sandbox: ``tracer_pid`` non-zero) has children that may be traced too,
    and a traced child cannot PTRACE_TRACEME; ``ptrace_scope`` 3 forbids ptrace outright.
    """

    seccomp: int | None
    no_new_privs: bool | None
    tracer_pid: int | None = None
    ptrace_scope: int | None = None  # None: no Yama (or unreadable)


@dataclass(frozen=True)
class Sandbox:
    """What kind of sandbox the process runs in, and the evidence for it.

    ``kind`` is ``"none"``, ``"gvisor"``, ``"docker"``, ``"podman"``,
    ``"kubernetes"``, ``"containerd"``, ``"lxc"``, ``"systemd-nspawn"``,
    ``"flatpak"``, ``"bubblewrap"``, ``"userns"`` (a user namespace with no
    better name), ``"container"`` (``container=`` set to something else), or
    whatever a ``pytest_memsyscalls_sandbox`` hook returns.
    """

    kind: str
    details: Sequence[str] = ()

    def __post_init__(self) -> None:
        # Accept a list from hook implementers but stay immutable and hashable.
        object.__setattr__(self, "details", tuple(self.details))


@dataclass(frozen=True)
class Namespace:
    """``/proc/self/ns/<name>``: the link text and whether it is the initial one.

    ``initial`` is None where the inode numbering is not Linux's (gVisor) or
    the link is missing.
    """

    link: str | None
    initial: bool | None


@dataclass(frozen=True)
class Namespaces:
    user: Namespace
    pid: Namespace
    ipc: Namespace
    uid_map: tuple[tuple[int, int, int], ...] | None

    @property
    def in_user_namespace(self) -> bool | None:
        """True when uid_map is not the identity map of the initial namespace."""
        if self.uid_map is None:
            return None
        return self.uid_map != ((0, 0, 0xFFFFFFFF),)


@dataclass(frozen=True)
class IpcLimits:
    """SysV shm limits: shmmax (bytes), shmall (pages), shmmni (segments)."""

    shmmax: int | None
    shmall: int | None
    shmmni: int | None


@dataclass(frozen=True)
class DevShm:
    """The filesystem under /dev/shm, where POSIX shm_open objects live.

    ``mount_point`` is the mount /dev/shm belongs to, which is /dev itself when
    /dev/shm is a plain directory (bubblewrap's ``--dev``).
    """

    exists: bool
    fstype: str | None
    mount_point: str | None
    options: tuple[str, ...] | None
    size: int | None
    free: int | None


@dataclass(frozen=True)
class Thp:
    """Transparent huge pages: the bracketed choice of enabled and defrag."""

    enabled: str | None
    defrag: str | None


@dataclass(frozen=True)
class Overcommit:
    """vm.overcommit_memory (0 heuristic, 1 always, 2 never) and its ratio."""

    memory: int | None
    ratio: int | None


@dataclass(frozen=True)
class VmLimits:
    mmap_min_addr: int | None
    max_map_count: int | None


@dataclass(frozen=True)
class HugePages:
    """Explicit (hugetlbfs) pages from /proc/meminfo; size in kB."""

    total: int | None
    free: int | None
    size_kb: int | None


@dataclass(frozen=True)
class Cpu:
    """The CPU and process facts that decide what a protection allows.

    ``flags``: those of the /proc/cpuinfo flags that expectations use (None: no flags
    line). ``pkey_exec_only``: Linux x86 backs PROT_EXEC-only mappings with the
    execute-only protection key, so they are not readable (the CPU has pku and the OS
    enabled it, ospke; arch/x86/mm/pkeys.c). ``read_implies_exec``: the READ_IMPLIES_EXEC
    personality, under which PROT_READ implies PROT_EXEC.
    """

    flags: tuple[str, ...] | None
    pkey_exec_only: bool | None
    read_implies_exec: bool | None


@dataclass(frozen=True)
class BrkHelper:
    """memsys-brk-helper, the exec'd process the process-wide experiments (brk, malloc,
    mlockall) run in, as it is before any of them: its VmSize with nothing of its own
    mapped (mlockall(MCL_CURRENT) must fit VmSize under RLIMIT_MEMLOCK, mm/mlock.c) and
    whether CAP_IPC_LOCK is effective in it (an exec'd helper keeps only what execve(2)
    leaves it). Filled by ``memory.brk.with_helper_facts``; None where not asked."""

    vmsize: int | None
    ipc_lock: bool


@dataclass(frozen=True)
class LibC:
    name: str | None
    version: str | None


@dataclass(frozen=True)
class Environment:
    """Everything :func:`detect` found.  ``unknown`` explains each None."""

    kernel: Kernel
    identity: Identity
    capabilities: Capabilities
    rlimits: Rlimits
    security: Security
    sandbox: Sandbox
    namespaces: Namespaces
    ipc: IpcLimits
    dev_shm: DevShm
    thp: Thp
    overcommit: Overcommit
    vm: VmLimits
    hugepages: HugePages | None
    libc: LibC
    cpu: Cpu
    kernel_config: str  # where the kernel's Kconfig was read, or why it could not be
    features: Mapping[str, Promise] = field(default_factory=dict, hash=False)
    unknown: Mapping[str, str] = field(default_factory=dict, hash=False)
    brk_helper: BrkHelper | None = None

    def promise(self, feature: str) -> Promise:
        """What this environment promises about ``feature`` (a name in features.FEATURES)."""
        return self.features[feature]

    # Shortcuts used by the requires() machinery.
    @property
    def arch(self) -> str:
        return self.kernel.arch

    @property
    def page_size(self) -> int | None:
        return self.kernel.page_size

    def as_dict(self) -> dict[str, object]:
        """A JSON-serialisable dict with the same keys whatever was found."""
        out = _to_jsonable(self)
        assert isinstance(out, dict)
        out["namespaces"]["in_user_namespace"] = self.namespaces.in_user_namespace
        return out

    def header_lines(self) -> list[str]:
        """Three compact lines for the pytest header."""
        k = self.kernel
        caps = self._caps_summary()
        first = (
            f"memsyscalls: kernel {k.release} {k.arch}, page {_s(k.page_size)}, shmlba {_s(k.shmlba)}, "
            f"uid {self.identity.uid} euid {self.identity.euid}, caps {caps}, "
            f"memlock {format_limit(self.rlimits.memlock.soft)}, sandbox {self.sandbox.kind}"
        )
        shm = self.dev_shm
        if not shm.exists:
            shm_text = "absent"
        else:
            size = "?" if shm.size is None else format_bytes(shm.size)
            opts = ",".join(shm.options) if shm.options else "?"
            shm_text = f"{shm.fstype or '?'} {size} {opts}"
        second = (
            f"memsyscalls: thp {_s(self.thp.enabled)}, overcommit {_s(self.overcommit.memory)}, "
            f"shmmax {_bytes_or_q(self.ipc.shmmax)}, shmmni {_s(self.ipc.shmmni)}, "
            f"/dev/shm {shm_text}"
        )
        hp = self.hugepages
        hp_text = ("?" if hp is None or hp.total is None
                   else f"{_s(hp.free)}/{hp.total} free of {_s(hp.size_kb)} kB")
        libc = " ".join(p for p in (self.libc.name, self.libc.version) if p) or "?"
        third = (
            f"memsyscalls: {libc}, seccomp {_s(self.security.seccomp)}, "
            f"no_new_privs {_s(_bool01(self.security.no_new_privs))}, "
            f"mmap_min_addr {_s(self.vm.mmap_min_addr)}, max_map_count {_s(self.vm.max_map_count)}, "
            f"hugepages {hp_text}"
        )
        lines = [first, second, third]
        for state in (NOT_PROMISED, UNKNOWN):
            listed = [f"{p.feature} ({p.why})" for p in self.features.values() if p.state == state]
            if listed:
                lines.append(f"memsyscalls: features {state}: " + "; ".join(listed))
        return lines

    def describe(self) -> str:
        """Full human-readable text, one fact per line."""
        lines: list[str] = []

        def add(name: str, value: object) -> None:
            lines.append(f"{name + ':':<28} {value}")

        k = self.kernel
        add("kernel release", k.release)
        add("kernel version", k.version)
        add("arch", k.arch)
        add("page size", _s(k.page_size))
        add("SHMLBA", _s(k.shmlba))
        add("PMD huge page", _bytes_or_q(k.pmd_huge_size))
        i = self.identity
        add("uid / euid", f"{i.uid} / {i.euid}")
        add("gid / egid", f"{i.gid} / {i.egid}")
        c = self.capabilities
        eff = ", ".join(sorted(c.effective)) if c.known else "?"
        add("capabilities (effective)", eff or "none")
        for cap in ("ipc_lock", "ipc_owner", "sys_admin", "sys_resource"):
            add(f"  CAP_{cap.upper()} works", _yes_no(getattr(c, cap)))
        if c.user_namespace:
            add("  note", "in a user namespace: capable() checks use the initial namespace")
        r = self.rlimits
        for name, lim in (("RLIMIT_MEMLOCK", r.memlock), ("RLIMIT_AS", r.address_space),
                          ("RLIMIT_DATA", r.data), ("RLIMIT_STACK", r.stack)):
            add(name, f"soft {format_limit(lim.soft)}, hard {format_limit(lim.hard)}")
        add("seccomp", {0: "0 (disabled)", 1: "1 (strict)", 2: "2 (filter)"}.get(
            self.security.seccomp if self.security.seccomp is not None else -1, _s(self.security.seccomp)))
        add("no_new_privs", _yes_no(self.security.no_new_privs))
        add("tracer pid", _s(self.security.tracer_pid))
        add("yama ptrace_scope", "none" if self.security.ptrace_scope is None else self.security.ptrace_scope)
        add("sandbox", self.sandbox.kind)
        for d in self.sandbox.details:
            add("  evidence", d)
        n = self.namespaces
        for name, ns in (("user", n.user), ("pid", n.pid), ("ipc", n.ipc)):
            initial = {True: "initial", False: "NOT initial", None: "initial?"}[ns.initial]
            add(f"{name} namespace", f"{_s(ns.link)} ({initial})")
        add("uid_map", "?" if n.uid_map is None else "; ".join(" ".join(map(str, t)) for t in n.uid_map))
        add("shmmax", _bytes_or_q(self.ipc.shmmax))
        add("shmall (pages)", _s(self.ipc.shmall))
        add("shmmni", _s(self.ipc.shmmni))
        s = self.dev_shm
        if s.exists:
            add("/dev/shm", f"{_s(s.fstype)} on {_s(s.mount_point)}, "
                            f"options {','.join(s.options) if s.options else '?'}")
            add("/dev/shm size / free", f"{_bytes_or_q(s.size)} / {_bytes_or_q(s.free)}")
        else:
            add("/dev/shm", "absent")
        add("THP enabled", _s(self.thp.enabled))
        add("THP defrag", _s(self.thp.defrag))
        add("overcommit_memory", _s(self.overcommit.memory))
        add("overcommit_ratio", _s(self.overcommit.ratio))
        add("mmap_min_addr", _s(self.vm.mmap_min_addr))
        add("max_map_count", _s(self.vm.max_map_count))
        hp = self.hugepages
        if hp is None:
            add("huge pages", "?")
        else:
            add("huge pages", f"total {_s(hp.total)}, free {_s(hp.free)}, size {_s(hp.size_kb)} kB")
        add("libc", " ".join(p for p in (self.libc.name, self.libc.version) if p) or "?")
        add("cpu flags used", "?" if self.cpu.flags is None else " ".join(self.cpu.flags) or "none")
        add("pkey execute-only", _yes_no(self.cpu.pkey_exec_only))
        add("READ_IMPLIES_EXEC", _yes_no(self.cpu.read_implies_exec))
        helper = self.brk_helper
        add("brk helper", "?" if helper is None else
            f"VmSize {_bytes_or_q(helper.vmsize)}, CAP_IPC_LOCK {_yes_no(helper.ipc_lock)}")
        add("kernel config", self.kernel_config)
        for promise in self.features.values():
            add(f"feature {promise.feature}", f"{promise.state} ({promise.why})")
        for key, why in sorted(self.unknown.items()):
            add(f"unknown {key}", why)
        return "\n".join(lines)

    def _caps_summary(self) -> str:
        c = self.capabilities
        if not c.known:
            return "?"
        names = ("IPC_LOCK", "IPC_OWNER", "SYS_ADMIN", "SYS_RESOURCE")
        have = [n for n in names if getattr(c, n.lower())]
        lack = [n for n in names if not getattr(c, n.lower())]
        text = ",".join(have) if have else "none"
        if lack:
            text += f" (no {','.join(lack)})"
        if c.user_namespace:
            text += " [user namespace: CapEff has more]"
        return text


# ---------------------------------------------------------------------------
# Formatting helpers
# ---------------------------------------------------------------------------

_UNITS: Final = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")


def format_bytes(n: int) -> str:
    """``8388608`` -> ``"8 MiB"``; one decimal when not a whole unit."""
    if n < 0:
        return f"-{format_bytes(-n)}"
    value = float(n)
    unit = 0
    while value >= 1024 and unit < len(_UNITS) - 1:
        value /= 1024
        unit += 1
    if unit == 0:
        return f"{n} B"
    if n % (1 << (10 * unit)) == 0:
        return f"{n >> (10 * unit)} {_UNITS[unit]}"
    return f"{value:.1f} {_UNITS[unit]}"


def format_limit(n: int | None) -> str:
    """An rlimit value: None (RLIM_INFINITY) reads ``unlimited``."""
    return "unlimited" if n is None else format_bytes(n)


def _s(value: object) -> str:
    return "?" if value is None else str(value)


def _bytes_or_q(value: int | None) -> str:
    return "?" if value is None else format_bytes(value)


def _yes_no(value: bool | None) -> str:
    return "?" if value is None else ("yes" if value else "no")


def _bool01(value: bool | None) -> int | None:
    return None if value is None else int(value)


def _to_jsonable(value: object) -> object:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (frozenset, set)):
        return sorted(_to_jsonable(v) for v in value)  # type: ignore[type-var]
    if isinstance(value, (tuple, list)):
        return [_to_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _to_jsonable(v) for k, v in value.items()}
    return value


def parse_thp_mode(text: str) -> str | None:
    """``"always [madvise] never"`` -> ``"madvise"`` (the bracketed choice)."""
    start = text.find("[")
    end = text.find("]", start + 1)
    if start < 0 or end < 0:
        return None
    return text[start + 1:end]


# ---------------------------------------------------------------------------
# Probing
# ---------------------------------------------------------------------------

T = TypeVar("T")


class _Probe:
    """Reads files and records, per field, why a value is unknown."""

    def __init__(self) -> None:
        self.unknown: dict[str, str] = {}

    def text(self, key: str, path: str) -> str | None:
        try:
            with open(path, "rb") as f:
                return f.read(1 << 20).decode("utf-8", "surrogateescape")
        except OSError as e:
            self.unknown[key] = f"{path}: {type(e).__name__}: {e.strerror or e}"
            return None

    def int_file(self, key: str, path: str) -> int | None:
        return self.convert(key, self.text(key, path), lambda t: int(t.split()[0]), path)

    def convert(self, key: str, raw: str | None, fn: Callable[[str], T], what: str) -> T | None:
        if raw is None:
            return None
        try:
            return fn(raw)
        except (ValueError, IndexError, KeyError) as e:
            self.unknown[key] = f"{what}: cannot parse {raw[:60]!r}: {e}"
            return None

    def call(self, key: str, fn: Callable[[], T]) -> T | None:
        try:
            return fn()
        except (OSError, ValueError) as e:
            self.unknown[key] = f"{type(e).__name__}: {e}"
            return None


def _rlimit(which: int) -> Limit:
    soft, hard = resource.getrlimit(which)
    inf = resource.RLIM_INFINITY
    return Limit(None if soft == inf else soft, None if hard == inf else hard)


def _namespace(probe: _Probe, name: str) -> Namespace:
    link = probe.call(f"namespaces.{name}", lambda: os.readlink(f"/proc/self/ns/{name}"))
    if link is None:
        return Namespace(None, None)
    initial: bool | None = None
    try:
        ino = int(link[link.index("[") + 1:link.index("]")])
    except ValueError:
        ino = -1
    if ino == _INITIAL_NS_INO.get(name):
        initial = True
    elif ino >= _FIRST_DYNAMIC_NS_INO:
        initial = False
    return Namespace(link, initial)


def _dev_shm(probe: _Probe, mountinfo_text: str | None) -> DevShm:
    path = "/dev/shm"
    try:
        st = os.stat(path)
    except OSError as e:
        probe.unknown["dev_shm"] = f"{path}: {type(e).__name__}: {e.strerror or e}"
        return DevShm(False, None, None, None, None, None)
    size = free = None
    try:
        vfs = os.statvfs(path)
        size, free = vfs.f_blocks * vfs.f_frsize, vfs.f_bavail * vfs.f_frsize
    except OSError as e:
        probe.unknown["dev_shm.size"] = f"statvfs({path}): {e.strerror or e}"
    mount = None
    if mountinfo_text is not None:
        mount = _mount_of(procfs.parse_mountinfo(mountinfo_text), path,
                          f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}")
    if mount is None:
        probe.unknown.setdefault("dev_shm.fstype", "no /proc/self/mountinfo entry matches /dev/shm")
        return DevShm(True, None, None, None, size, free)
    return DevShm(True, mount.fstype, mount.mount_point, mount.mount_options, size, free)


def _mount_of(mounts: list[procfs.MountInfoEntry], path: str, dev: str) -> procfs.MountInfoEntry | None:
    """The mount ``path`` lives on: the last mount listed whose mount point is
    a prefix of ``path`` and, if any match it, whose device is ``path``'s.

    Mounts can be stacked on the same point (bubblewrap mounts /dev over an
    existing /dev/shm), and the last one listed is the one visible.
    """

    def under(mp: str) -> bool:
        return mp == "/" or path == mp or path.startswith(mp.rstrip("/") + "/")

    candidates = [m for m in mounts if under(m.mount_point)]
    same_dev = [m for m in candidates if m.dev == dev]
    pool = same_dev or candidates
    if not pool:
        return None
    longest = max(len(m.mount_point) for m in pool)
    return [m for m in pool if len(m.mount_point) == longest][-1]


def _libc(probe: _Probe) -> LibC:
    try:
        conf = os.confstr("CS_GNU_LIBC_VERSION")
    except (ValueError, OSError):
        conf = None
    if conf:
        name, _, version = conf.partition(" ")
        return LibC(name, version or None)
    name, version = platform.libc_ver()
    if name:
        return LibC(name, version or None)
    probe.unknown["libc"] = "neither confstr(CS_GNU_LIBC_VERSION) nor platform.libc_ver() names it (musl?)"
    return LibC(None, None)


def _read_quiet(path: str, limit: int = 1 << 16) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.read(limit).decode("utf-8", "surrogateescape")
    except OSError:
        return None


def _int_quiet(text: str | None) -> int | None:
    try:
        return None if text is None else int(text.strip())
    except ValueError:
        return None


def _environ_container(text: str | None) -> str | None:
    if text is None:
        return None
    for item in text.split("\0"):
        if item.startswith("container="):
            return item[len("container="):]
    return None


def detect_sandbox() -> Sandbox:
    """Name the sandbox from cheap, read-only evidence.

    Order matters: gVisor is decided first (it changes syscall semantics, the
    container manager around it does not), then orchestrators before runtimes.
    A bare ``/.dockerenv`` is not trusted on its own: VM images built from
    container images keep it (this project's own CI VM does), so it counts
    only together with a non-initial pid or mount namespace.
    """
    evidence: list[str] = []
    found: list[str] = []

    uname = os.uname()
    if uname.version == GVISOR_VERSION:
        evidence.append(f"uname -v is gVisor's fixed {GVISOR_VERSION!r} (release {uname.release})")
        found.append("gvisor")
    elif uname.release == GVISOR_RELEASE and not os.path.exists("/proc/sysvipc"):
        evidence.append("release 4.4.0 and no /proc/sysvipc, as in gVisor")
        found.append("gvisor")

    cgroup = (_read_quiet("/proc/1/cgroup") or "") + (_read_quiet("/proc/self/cgroup") or "")
    # systemd's container-interface convention spells the variable lower-case.
    env_container = os.environ.get("container") or _environ_container(  # noqa: SIM112
        _read_quiet("/proc/1/environ"))

    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        evidence.append("KUBERNETES_SERVICE_HOST is set")
        found.append("kubernetes")
    if "kubepods" in cgroup:
        evidence.append("'kubepods' in /proc/1/cgroup or /proc/self/cgroup")
        found.append("kubernetes")
    if os.path.exists("/run/.containerenv"):
        evidence.append("/run/.containerenv exists")
        found.append("podman")
    if "libpod" in cgroup or env_container == "podman":
        evidence.append("'libpod' in cgroup or container=podman")
        found.append("podman")

    pid_ns = _namespace(_Probe(), "pid").initial
    ipc_ns = _namespace(_Probe(), "ipc").initial
    if os.path.exists("/.dockerenv"):
        if pid_ns is False or ipc_ns is False:
            evidence.append("/.dockerenv exists")
            found.append("docker")
        else:
            # gVisor's `runsc do` shows the host's root, /.dockerenv included.
            evidence.append("/.dockerenv exists but neither the pid nor the ipc namespace is known "
                            "to be a new one (ignored)")
    if "docker" in cgroup:
        evidence.append("'docker' in cgroup")
        found.append("docker")
    if "containerd" in cgroup or "cri-containerd" in cgroup:
        evidence.append("'containerd' in cgroup")
        found.append("containerd")
    if env_container == "lxc" or "/lxc/" in cgroup or "lxc.payload" in cgroup:
        evidence.append("container=lxc or an lxc cgroup")
        found.append("lxc")
    if env_container == "systemd-nspawn":
        evidence.append("container=systemd-nspawn")
        found.append("systemd-nspawn")
    if os.path.exists("/.flatpak-info"):
        evidence.append("/.flatpak-info exists")
        found.append("flatpak")
    if pid_ns is False and (_read_quiet("/proc/1/comm") or "").strip() == "bwrap":
        evidence.append("pid 1 of a new pid namespace is bwrap")
        found.append("bubblewrap")
    if env_container and env_container not in ("podman", "lxc", "systemd-nspawn", "docker"):
        evidence.append(f"container={env_container}")
        found.append("container")

    uid_map_text = _read_quiet("/proc/self/uid_map")
    if uid_map_text is not None:
        uid_map = tuple(procfs.parse_id_map(uid_map_text))
        if uid_map and uid_map != ((0, 0, 0xFFFFFFFF),):
            evidence.append(f"user namespace: uid_map {' '.join(map(str, uid_map[0]))}")
            found.append("userns")
    if pid_ns is False:
        evidence.append("non-initial pid namespace")
    if ipc_ns is False:
        evidence.append("non-initial ipc namespace")

    # Direct proof of the innermost layer beats files inherited from the host
    # (bubblewrap and runsc both show the host's root, /.dockerenv included).
    priority = ("gvisor", "kubernetes", "podman", "bubblewrap", "flatpak", "lxc",
                "systemd-nspawn", "docker", "containerd", "container", "userns")
    kind = min(found, key=priority.index) if found else "none"
    return Sandbox(kind, evidence)


# The /proc/cpuinfo flags that expectations read (x86 protection keys; arm64 BTI, MTE, POE;
# powerpc's MMU, which decides whether it has protection keys).
_CPU_FLAGS_USED: Final = frozenset({"pku", "ospke", "bti", "mte", "poe", "mmu_radix", "mmu_hash"})
_PT_GNU_STACK: Final = 0x6474E551


def _has_gnu_stack(path: str) -> bool:
    """Whether an ELF64 little-endian executable has a PT_GNU_STACK header (without one,
    Linux gives the process the READ_IMPLIES_EXEC personality)."""
    with open(path, "rb") as handle:
        data = handle.read(1 << 16)
    phoff, = struct.unpack_from("<Q", data, 32)
    phentsize, phnum = struct.unpack_from("<HH", data, 54)
    return any(struct.unpack_from("<I", data, phoff + i * phentsize)[0] == _PT_GNU_STACK for i in range(phnum))


def _read_implies_exec() -> bool:
    """READ_IMPLIES_EXEC from personality(0xffffffff), which only queries; where that query is
    refused (gVisor answers EINVAL), from the rule that sets it: no PT_GNU_STACK in the
    executable."""
    try:
        return bool(libc.personality(C.PERSONALITY_QUERY) & C.READ_IMPLIES_EXEC)
    except OSError:
        return not _has_gnu_stack(os.path.realpath(sys.executable))


def detect_uncached() -> Environment:
    """Probe everything afresh (for tests that change uid, rlimits, ...)."""
    p = _Probe()
    u = os.uname()
    page_size = p.call("kernel.page_size", lambda: os.sysconf("SC_PAGESIZE"))
    kernel = Kernel(u.release, u.version, u.machine, page_size,
                    shmlba=None if page_size is None else pages.shmlba(u.machine, page_size),
                    pmd_huge_size=None if page_size is None else pages.thp_pmd_size(u.machine, page_size))
    identity = Identity(os.getuid(), os.geteuid(), os.getgid(), os.getegid())

    status_text = p.text("status", "/proc/self/status")
    status = procfs.parse_status(status_text) if status_text is not None else {}

    rlimits = Rlimits(
        memlock=_rlimit(resource.RLIMIT_MEMLOCK),
        address_space=_rlimit(resource.RLIMIT_AS),
        data=_rlimit(resource.RLIMIT_DATA),
        stack=_rlimit(resource.RLIMIT_STACK),
    )

    def status_field(key: str, name: str) -> str | None:
        value = status.get(name)
        if value is None and status_text is not None:
            p.unknown[key] = f"no {name} line in /proc/self/status"
        return value

    security = Security(
        seccomp=p.convert("security.seccomp", status_field("security.seccomp", "Seccomp"), int, "Seccomp"),
        no_new_privs=p.convert("security.no_new_privs", status_field("security.no_new_privs", "NoNewPrivs"),
                               lambda t: int(t) != 0, "NoNewPrivs"),
        tracer_pid=p.convert("security.tracer_pid", status_field("security.tracer_pid", "TracerPid"), int,
                             "TracerPid"),
        ptrace_scope=_int_quiet(_read_quiet("/proc/sys/kernel/yama/ptrace_scope")),
    )

    uid_map_text = p.text("namespaces.uid_map", "/proc/self/uid_map")
    namespaces = Namespaces(
        user=_namespace(p, "user"),
        pid=_namespace(p, "pid"),
        ipc=_namespace(p, "ipc"),
        uid_map=p.convert("namespaces.uid_map", uid_map_text,
                          lambda t: tuple(procfs.parse_id_map(t)), "/proc/self/uid_map"),
    )

    cap_eff = status.get("CapEff")
    if status_text is not None and cap_eff is None:
        p.unknown["capabilities"] = "no CapEff line in /proc/self/status"
    userns = namespaces.in_user_namespace
    own_ipc = namespaces.ipc.initial is False if userns else None
    capabilities = p.convert(
        "capabilities", cap_eff, lambda t: Capabilities.from_mask(t, userns, own_ipc), "CapEff",
    ) or Capabilities.from_mask(None, userns)

    ipc = IpcLimits(
        shmmax=p.int_file("ipc.shmmax", f"{_PROC_SYS_KERNEL}/shmmax"),
        shmall=p.int_file("ipc.shmall", f"{_PROC_SYS_KERNEL}/shmall"),
        shmmni=p.int_file("ipc.shmmni", f"{_PROC_SYS_KERNEL}/shmmni"),
    )

    mountinfo = p.text("dev_shm.mountinfo", "/proc/self/mountinfo")
    dev_shm = _dev_shm(p, mountinfo)

    thp = Thp(
        enabled=p.convert("thp.enabled", p.text("thp.enabled", f"{_THP_DIR}/enabled"),
                          parse_thp_mode, "THP enabled"),
        defrag=p.convert("thp.defrag", p.text("thp.defrag", f"{_THP_DIR}/defrag"),
                         parse_thp_mode, "THP defrag"),
    )
    overcommit = Overcommit(
        memory=p.int_file("overcommit.memory", f"{_PROC_SYS_VM}/overcommit_memory"),
        ratio=p.int_file("overcommit.ratio", f"{_PROC_SYS_VM}/overcommit_ratio"),
    )
    vm = VmLimits(
        mmap_min_addr=p.int_file("vm.mmap_min_addr", f"{_PROC_SYS_VM}/mmap_min_addr"),
        max_map_count=p.int_file("vm.max_map_count", f"{_PROC_SYS_VM}/max_map_count"),
    )

    meminfo_text = p.text("hugepages", "/proc/meminfo")
    hugepages: HugePages | None = None
    if meminfo_text is not None:
        mi = procfs.parse_meminfo(meminfo_text)
        hugepages = HugePages(mi.get("HugePages_Total"), mi.get("HugePages_Free"), mi.get("Hugepagesize"))
        if "HugePages_Total" not in mi:
            p.unknown["hugepages"] = "no HugePages_* lines in /proc/meminfo"

    try:
        sandbox = detect_sandbox()
    except Exception as e:  # noqa: BLE001 - the fingerprint must never raise
        sandbox = Sandbox("unknown", [f"detection failed: {type(e).__name__}: {e}"])

    flags = features.cpu_flags(_read_quiet("/proc/cpuinfo", 1 << 20))
    cpu = Cpu(
        flags=None if flags is None else tuple(sorted(flags & _CPU_FLAGS_USED)),
        pkey_exec_only=None if flags is None else (u.machine == "x86_64" and {"pku", "ospke"} <= flags),
        read_implies_exec=p.call("cpu.read_implies_exec", _read_implies_exec),
    )
    config = features.read_kernel_config(u.release)
    facts = features.Facts(u.release, u.machine, sandbox.kind, config, flags, cmdline=_read_quiet("/proc/cmdline"))
    try:
        promises = features.assess(facts)
    except Exception as e:  # noqa: BLE001 - the fingerprint must never raise
        p.unknown["features"] = f"assessment failed: {type(e).__name__}: {e}"
        promises = {}

    return Environment(
        kernel=kernel,
        identity=identity,
        capabilities=capabilities,
        rlimits=rlimits,
        security=security,
        sandbox=sandbox,
        namespaces=namespaces,
        ipc=ipc,
        dev_shm=dev_shm,
        thp=thp,
        overcommit=overcommit,
        vm=vm,
        hugepages=hugepages,
        libc=_libc(p),
        cpu=cpu,
        kernel_config=config.source,
        features=promises,
        unknown=dict(sorted(p.unknown.items())),
    )


@functools.cache
def detect() -> Environment:
    """The fingerprint of this process, computed once (it is in every header).

    Call :func:`detect_uncached` after changing uid, rlimits or namespaces.
    """
    return detect_uncached()
