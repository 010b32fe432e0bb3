"""Parsers for the /proc texts that serve as kernel-side oracles.

The conformance suite asks the kernel itself what happened (which VMA covers an
address, whether it is locked, how big VmLck is) instead of trusting a library.
Every parser here is a pure function of the text, so that it can be tested
against texts recorded on real kernels and sandboxes (native Linux, an
unprivileged user, gVisor, a bubblewrap user namespace), whose /proc output
differs in ways that matter: gVisor, for instance, has no /proc/sysvipc, omits
VmLck from status and names SysV mappings ``SYSV00000000`` without the leading
slash and ``(deleted)`` suffix that Linux prints.

The thin ``read_*`` helpers only open the file and hand the text over.  This
module must not import anything else from the package: the package's
``__init__`` may import modules that in turn import this one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

__all__ = [
    "CAPABILITY_NAMES",
    "MapsEntry",
    "MountInfoEntry",
    "ProcStat",
    "SmapsEntry",
    "SysvShmEntry",
    "decode_capabilities",
    "maps_overlapping",
    "parse_id_map",
    "parse_maps",
    "parse_maps_line",
    "parse_meminfo",
    "parse_mountinfo",
    "parse_proc_stat",
    "parse_smaps",
    "parse_status",
    "parse_sysvipc_shm",
    "read_maps",
    "read_proc_stat",
    "read_smaps",
    "read_status",
    "read_sysvipc_shm",
    "smaps_at",
    "smaps_overlapping",
    "status_kb",
    "vma_at",
]

Pid = int | str  # "self" or a pid

# ---------------------------------------------------------------------------
# /proc/PID/maps
# ---------------------------------------------------------------------------

# "start-end perms offset dev inode" then padding then an optional path.  The
# path is everything after the single run of blanks that follows the inode; it
# may itself contain spaces (and Linux does not escape them in maps), so it
# must not be split further.
_MAPS_RE: Final = re.compile(
    r"^(?P<start>[0-9a-fA-F]+)-(?P<end>[0-9a-fA-F]+)\s+"
    r"(?P<perms>\S{4})\s+"
    r"(?P<offset>[0-9a-fA-F]+)\s+"
    r"(?P<dev>[0-9a-fA-F]+:[0-9a-fA-F]+)\s+"
    r"(?P<inode>\d+)"
    r"(?:[ \t]+(?P<path>.*?))?[ \t]*$"
)

_DELETED_SUFFIX: Final = " (deleted)"


@dataclass(frozen=True)
class MapsEntry:
    """One VMA as the kernel reports it in /proc/PID/maps.

    ``end`` is exclusive, as in the file.  ``path`` is ``""`` for anonymous
    memory, a pseudo-name such as ``"[heap]"`` or ``"[stack]"``, or a file
    name, which for an unlinked file ends in ``" (deleted)"`` (kept verbatim:
    whether the suffix is there is itself an observable fact worth testing).
    """

    start: int
    end: int
    perms: str
    offset: int
    dev: str
    inode: int
    path: str

    @property
    def readable(self) -> bool:
        return self.perms[0] == "r"

    @property
    def writable(self) -> bool:
        return self.perms[1] == "w"

    @property
    def executable(self) -> bool:
        return self.perms[2] == "x"

    @property
    def shared(self) -> bool:
        """True for MAP_SHARED (``s``); False for private/copy-on-write (``p``)."""
        return self.perms[3] == "s"

    @property
    def length(self) -> int:
        return self.end - self.start

    @property
    def deleted(self) -> bool:
        """The backing file was unlinked (Linux appends `` (deleted)``)."""
        return self.path.endswith(_DELETED_SUFFIX)

    @property
    def is_sysv_shm(self) -> bool:
        """A SysV segment: ``/SYSV<key>`` on Linux, ``SYSV<key>`` on gVisor."""
        return self.path.lstrip("/").startswith("SYSV")

    def contains(self, addr: int) -> bool:
        return self.start <= addr < self.end

    def __str__(self) -> str:
        # Same layout as the kernel's, so failure reports read like the file.
        return (
            f"{self.start:08x}-{self.end:08x} {self.perms} {self.offset:08x} "
            f"{self.dev} {self.inode:<10d} {self.path}"
        ).rstrip()


def parse_maps_line(line: str) -> MapsEntry:
    """Parse one maps line; raise ``ValueError`` naming the line if malformed."""
    m = _MAPS_RE.match(line.rstrip("\n"))
    if m is None:
        raise ValueError(f"not a /proc/PID/maps line: {line!r}")
    return MapsEntry(
        start=int(m["start"], 16),
        end=int(m["end"], 16),
        perms=m["perms"],
        offset=int(m["offset"], 16),
        dev=m["dev"],
        inode=int(m["inode"]),
        path=m["path"] or "",
    )


def parse_maps(text: str) -> list[MapsEntry]:
    """Parse a whole /proc/PID/maps text (blank lines are ignored)."""
    return [parse_maps_line(line) for line in text.splitlines() if line.strip()]


# ---------------------------------------------------------------------------
# /proc/PID/smaps
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SmapsEntry:
    """One VMA of /proc/PID/smaps: its maps header plus the per-VMA counters.

    ``fields`` maps each ``Name:   N kB`` line to N (in kB); the few unitless
    counters (``THPeligible``, ``ProtectionKey``) are kept as printed.
    ``vmflags`` is the set of two-letter flags (``lo`` = VM_LOCKED, the
    authoritative "is this range mlocked" oracle; ``sh`` shared, ``mr`` may
    read, ...).  gVisor prints fewer counters than Linux, so use ``get``.
    """

    maps: MapsEntry
    fields: dict[str, int] = field(hash=False)
    vmflags: frozenset[str] = frozenset()

    def get(self, name: str, default: int | None = None) -> int | None:
        return self.fields.get(name, default)

    @property
    def locked(self) -> bool:
        """VM_LOCKED is set (``lo`` in VmFlags)."""
        return "lo" in self.vmflags

    def contains(self, addr: int) -> bool:
        return self.maps.contains(addr)


_SMAPS_FIELD_RE: Final = re.compile(r"^(?P<name>[A-Za-z_][\w()]*):\s+(?P<value>-?\d+)(?:\s+kB)?\s*$")


def parse_smaps(text: str) -> list[SmapsEntry]:
    """Parse /proc/PID/smaps (also works on smaps_rollup-like field lists).

    A header line is recognised by the maps regex; every following
    ``Name: value`` line belongs to it until the next header.
    """
    result: list[SmapsEntry] = []
    header: MapsEntry | None = None
    fields: dict[str, int] = {}
    flags: frozenset[str] = frozenset()

    def flush() -> None:
        if header is not None:
            result.append(SmapsEntry(header, fields, flags))

    for raw in text.splitlines():
        line = raw.rstrip()
        if not line:
            continue
        if line.startswith("VmFlags:"):
            flags = frozenset(line[len("VmFlags:"):].split())
            continue
        fm = _SMAPS_FIELD_RE.match(line)
        if fm is not None:
            fields[fm["name"]] = int(fm["value"])
            continue
        if _MAPS_RE.match(line):
            flush()
            header = parse_maps_line(line)
            fields = {}
            flags = frozenset()
            continue
        # Unknown non-numeric field from a future kernel: ignore, don't fail.
    flush()
    return result


# ---------------------------------------------------------------------------
# /proc/PID/status
# ---------------------------------------------------------------------------


def parse_status(text: str) -> dict[str, str]:
    """Parse /proc/PID/status into ``{key: value}`` with the value stripped.

    Values are left as text because their formats differ (hex masks, tab-
    separated uid quadruples, ``"   16 kB"``); see :func:`status_kb`.
    """
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key.strip()] = value.strip()
    return out


def status_kb(status: dict[str, str], key: str) -> int | None:
    """The kB value of a status line such as ``VmLck``, or None if absent.

    None (not 0) for a missing key matters: gVisor has no VmLck line at all,
    and a test must not read that as "nothing is locked".
    """
    value = status.get(key)
    if value is None:
        return None
    parts = value.split()
    if not parts:
        return None
    try:
        return int(parts[0])
    except ValueError:
        return None


# ---------------------------------------------------------------------------
# /proc/sysvipc/shm
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SysvShmEntry:
    """One segment of /proc/sysvipc/shm.

    ``perms`` is printed in octal by the kernel (``600``) and stored here as
    the int it denotes (0o600).  ``rss``/``swap`` (bytes) appeared in later
    kernels and may be missing, hence optional.  The file lists the segments
    of the reader's IPC namespace only.
    """

    key: int
    shmid: int
    perms: int
    size: int
    cpid: int
    lpid: int
    nattch: int
    uid: int
    gid: int
    cuid: int
    cgid: int
    atime: int
    dtime: int
    ctime: int
    rss: int | None = None
    swap: int | None = None


_SHM_REQUIRED: Final = (
    "key", "shmid", "perms", "size", "cpid", "lpid", "nattch",
    "uid", "gid", "cuid", "cgid", "atime", "dtime", "ctime",
)


def parse_sysvipc_shm(text: str) -> list[SysvShmEntry]:
    """Parse /proc/sysvipc/shm by its header, so column sets can vary."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return []
    header = lines[0].split()
    missing = [c for c in _SHM_REQUIRED if c not in header]
    if missing:
        raise ValueError(f"/proc/sysvipc/shm header lacks {missing}: {lines[0]!r}")
    out: list[SysvShmEntry] = []
    for line in lines[1:]:
        cols = line.split()
        if len(cols) < len(header):
            raise ValueError(f"short /proc/sysvipc/shm row: {line!r}")
        row = dict(zip(header, cols, strict=False))  # extra columns are ignored
        ints = {c: int(row[c]) for c in _SHM_REQUIRED if c != "perms"}
        out.append(
            SysvShmEntry(
                perms=int(row["perms"], 8),
                rss=int(row["rss"]) if "rss" in row else None,
                swap=int(row["swap"]) if "swap" in row else None,
                **ints,
            )
        )
    return out


# ---------------------------------------------------------------------------
# /proc/PID/stat
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcStat:
    """Selected fields of /proc/PID/stat (numbering as in proc(5)).

    The address fields (start_code.. env_end) tell where the kernel put the
    text, the brk heap and the argument block, which is what brk tests need.
    Linux prints them as 0 when the reader lacks ptrace access, and gVisor
    prints 0 for all of them.  ``fields`` keeps every field after comm
    (index 0 = field 3 ``state``) for anything not named here.
    """

    pid: int
    comm: str
    state: str
    ppid: int
    pgrp: int
    start_code: int
    end_code: int
    start_stack: int
    start_data: int | None
    end_data: int | None
    start_brk: int | None
    arg_start: int | None
    arg_end: int | None
    env_start: int | None
    env_end: int | None
    fields: tuple[str, ...] = ()

    def field(self, number: int) -> str | None:
        """Field by its proc(5) number (1 = pid, 2 = comm, 3 = state, ...)."""
        if number == 1:
            return str(self.pid)
        if number == 2:
            return self.comm
        idx = number - 3
        return self.fields[idx] if 0 <= idx < len(self.fields) else None


def parse_proc_stat(text: str) -> ProcStat:
    """Parse /proc/PID/stat.

    comm is in parentheses and may itself contain spaces and parentheses
    (``prctl(PR_SET_NAME, "a) (b c)")``), so it runs from the first ``(`` to
    the *last* ``)``.  Fields 45-51 only exist since Linux 3.3/3.5; older
    layouts yield None for them.
    """
    text = text.strip()
    open_paren = text.find("(")
    close_paren = text.rfind(")")
    if open_paren < 0 or close_paren < open_paren:
        raise ValueError(f"not a /proc/PID/stat text: {text[:80]!r}")
    pid = int(text[:open_paren].strip())
    comm = text[open_paren + 1:close_paren]
    rest = tuple(text[close_paren + 1:].split())
    if len(rest) < 26:  # up to field 28 (startstack)
        raise ValueError(f"/proc/PID/stat too short ({len(rest) + 2} fields)")

    def num(n: int) -> int:
        return int(rest[n - 3])

    def opt(n: int) -> int | None:
        return int(rest[n - 3]) if len(rest) >= n - 2 else None

    return ProcStat(
        pid=pid,
        comm=comm,
        state=rest[0],
        ppid=num(4),
        pgrp=num(5),
        start_code=num(26),
        end_code=num(27),
        start_stack=num(28),
        start_data=opt(45),
        end_data=opt(46),
        start_brk=opt(47),
        arg_start=opt(48),
        arg_end=opt(49),
        env_start=opt(50),
        env_end=opt(51),
        fields=rest,
    )


# ---------------------------------------------------------------------------
# Capabilities
# ---------------------------------------------------------------------------

# linux/capability.h, bit number -> name.
CAPABILITY_NAMES: Final[tuple[str, ...]] = (
    "CAP_CHOWN",               # 0
    "CAP_DAC_OVERRIDE",        # 1
    "CAP_DAC_READ_SEARCH",     # 2
    "CAP_FOWNER",              # 3
    "CAP_FSETID",              # 4
    "CAP_KILL",                # 5
    "CAP_SETGID",              # 6
    "CAP_SETUID",              # 7
    "CAP_SETPCAP",             # 8
    "CAP_LINUX_IMMUTABLE",     # 9
    "CAP_NET_BIND_SERVICE",    # 10
    "CAP_NET_BROADCAST",       # 11
    "CAP_NET_ADMIN",           # 12
    "CAP_NET_RAW",             # 13
    "CAP_IPC_LOCK",            # 14
    "CAP_IPC_OWNER",           # 15
    "CAP_SYS_MODULE",          # 16
    "CAP_SYS_RAWIO",           # 17
    "CAP_SYS_CHROOT",          # 18
    "CAP_SYS_PTRACE",          # 19
    "CAP_SYS_PACCT",           # 20
    "CAP_SYS_ADMIN",           # 21
    "CAP_SYS_BOOT",            # 22
    "CAP_SYS_NICE",            # 23
    "CAP_SYS_RESOURCE",        # 24
    "CAP_SYS_TIME",            # 25
    "CAP_SYS_TTY_CONFIG",      # 26
    "CAP_MKNOD",               # 27
    "CAP_LEASE",               # 28
    "CAP_AUDIT_WRITE",         # 29
    "CAP_AUDIT_CONTROL",       # 30
    "CAP_SETFCAP",             # 31
    "CAP_MAC_OVERRIDE",        # 32
    "CAP_MAC_ADMIN",           # 33
    "CAP_SYSLOG",              # 34
    "CAP_WAKE_ALARM",          # 35
    "CAP_BLOCK_SUSPEND",       # 36
    "CAP_AUDIT_READ",          # 37
    "CAP_PERFMON",             # 38
    "CAP_BPF",                 # 39
    "CAP_CHECKPOINT_RESTORE",  # 40
)


def decode_capabilities(hexmask: str) -> frozenset[str]:
    """Names of the bits set in a status mask such as ``000001fffeffffff``.

    Bits beyond the table (a newer kernel) come out as ``CAP_<n>`` rather than
    being dropped, so the header never under-reports privileges.
    """
    value = int(hexmask.strip() or "0", 16)
    names: set[str] = set()
    bit = 0
    while value:
        if value & 1:
            names.add(CAPABILITY_NAMES[bit] if bit < len(CAPABILITY_NAMES) else f"CAP_{bit}")
        value >>= 1
        bit += 1
    return frozenset(names)


# ---------------------------------------------------------------------------
# Other small files the environment fingerprint needs
# ---------------------------------------------------------------------------


def parse_meminfo(text: str) -> dict[str, int]:
    """/proc/meminfo as ``{name: number}`` (kB for kB lines, counts otherwise)."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        parts = value.split()
        if sep and parts:
            try:
                out[key.strip()] = int(parts[0])
            except ValueError:
                continue
    return out


def parse_id_map(text: str) -> list[tuple[int, int, int]]:
    """/proc/PID/uid_map or gid_map as (inside, outside, count) triples.

    ``[(0, 0, 4294967295)]`` is the identity map of the initial user
    namespace; anything else means the process is in a user namespace.
    """
    out: list[tuple[int, int, int]] = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3:
            out.append((int(parts[0]), int(parts[1]), int(parts[2])))
    return out


_OCTAL_ESCAPE: Final = re.compile(r"\\([0-7]{3})")


def _unescape_mount(s: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo.
    return _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), s)


@dataclass(frozen=True)
class MountInfoEntry:
    """One line of /proc/PID/mountinfo (see proc(5))."""

    mount_id: int
    parent_id: int
    dev: str
    root: str
    mount_point: str
    mount_options: tuple[str, ...]
    fstype: str
    source: str
    super_options: tuple[str, ...]


def parse_mountinfo(text: str) -> list[MountInfoEntry]:
    """Parse mountinfo; the optional fields end at the lone ``-`` separator."""
    out: list[MountInfoEntry] = []
    for line in text.splitlines():
        # Fields never contain raw blanks (they are escaped as \040), so a
        # plain split is safe and also copes with gVisor's doubled spaces.
        parts = line.split()
        if len(parts) < 9 or "-" not in parts[6:]:
            continue
        sep = parts.index("-", 6)
        tail = parts[sep + 1:]
        if len(tail) < 2:
            continue
        out.append(
            MountInfoEntry(
                mount_id=int(parts[0]),
                parent_id=int(parts[1]),
                dev=parts[2],
                root=_unescape_mount(parts[3]),
                mount_point=_unescape_mount(parts[4]),
                mount_options=tuple(o for o in parts[5].split(",") if o),
                fstype=tail[0],
                source=_unescape_mount(tail[1]),
                super_options=tuple(o for o in (tail[2] if len(tail) > 2 else "").split(",") if o),
            )
        )
    return out


# ---------------------------------------------------------------------------
# Thin readers
# ---------------------------------------------------------------------------


def _read(path: str) -> str:
    # Bytes then decode: paths in maps need not be UTF-8.
    with open(path, "rb") as f:
        return f.read().decode("utf-8", "surrogateescape")


def read_maps(pid: Pid = "self") -> list[MapsEntry]:
    return parse_maps(_read(f"/proc/{pid}/maps"))


def read_smaps(pid: Pid = "self") -> list[SmapsEntry]:
    return parse_smaps(_read(f"/proc/{pid}/smaps"))


def read_status(pid: Pid = "self") -> dict[str, str]:
    return parse_status(_read(f"/proc/{pid}/status"))


def read_proc_stat(pid: Pid = "self") -> ProcStat:
    return parse_proc_stat(_read(f"/proc/{pid}/stat"))


def read_sysvipc_shm() -> list[SysvShmEntry]:
    """Segments of this IPC namespace; ``FileNotFoundError`` on gVisor."""
    return parse_sysvipc_shm(_read("/proc/sysvipc/shm"))


def vma_at(addr: int, pid: Pid = "self") -> MapsEntry | None:
    """The VMA containing ``addr``, or None if ``addr`` is in a hole.

    Reads the file afresh each call: the answer is only meaningful for the
    address space as it is now.
    """
    found = maps_overlapping(addr, addr + 1, pid)
    return found[0] if found else None


def maps_overlapping(start: int, end: int, pid: Pid = "self") -> list[MapsEntry]:
    """The maps entries overlapping [start, end), in address order.

    Parses in full only those lines (callers ask after every step of a state
    machine); each line's range is read from its first field. Same answer as
    filtering ``read_maps(pid)``.
    """
    found = []
    for line in _read(f"/proc/{pid}/maps").splitlines():
        low, _, rest = line.partition("-")
        if not rest:
            continue
        if int(low, 16) >= end:
            break  # the file is sorted by address
        if int(rest[: rest.index(" ")], 16) > start:
            found.append(parse_maps_line(line))
    return found


def smaps_at(addr: int, pid: Pid = "self") -> SmapsEntry | None:
    """The smaps record of the VMA containing ``addr``, or None."""
    found = smaps_overlapping(addr, addr + 1, pid)
    return found[0] if found else None


def smaps_overlapping(start: int, end: int, pid: Pid = "self") -> list[SmapsEntry]:
    """The smaps records of the VMAs overlapping [start, end).

    Parses only those records: the file of a pytest process is ~300 VMAs of ~25
    lines each, and parsing all of it (~6,000 lines) cost several ms per call, more
    than the kernel takes to write it; the suite asks it often. Records are found by
    their header lines (``start-end perms ...``, which no field line resembles).
    Same answer as filtering ``read_smaps(pid)``.
    """
    text = "\n" + _read(f"/proc/{pid}/smaps")  # every header follows a newline, the first too
    wanted: list[str] = []
    headers = _SMAPS_HEADER_RE.finditer(text)
    header = next(headers, None)
    while header is not None and int(header["start"], 16) < end:
        following = next(headers, None)
        if int(header["end"], 16) > start:
            wanted.append(text[header.start() + 1:following.start() + 1 if following else len(text)])
        header = following
    return parse_smaps("".join(wanted))


# "\n" rather than "^" with re.MULTILINE: six times faster on a 200 kB file.
_SMAPS_HEADER_RE: Final = re.compile(r"\n(?P<start>[0-9a-f]+)-(?P<end>[0-9a-f]+) ")
