"""The fault-injection harness (issue 17): the conformance suite run with one memory
call made to misbehave, to prove that the suite reports the kernel's mistake as a
failure and survives it, and to measure how many kinds of mistake it catches.

A misbehaviour is data (``CATALOGUE``): a name, the call family, what it does, and the
mechanism that does it:

- ``seccomp``: a libseccomp filter (kernel/seccomp.py), loaded by this module's launcher
  (``python tests/fault_injection.py --seccomp NAME -- COMMAND...``) before it execs the
  suite. ``SCMP_ACT_ERRNO(e)`` fails the call with errno e; ``SCMP_ACT_ERRNO(0)`` makes it
  return 0 without acting. Argument conditions select one advice, one flag, one command.
  It acts on every matching call of the process tree, so it is used only where the
  interpreter's own calls do not care (or never match the condition).
- ``ptrace``: csrc/inject.c (``memsys-inject``), for what seccomp cannot express: ignored
  flags (a bit cleared from an argument), partial ranges (a length halved, rounded down to
  a page), wrong return values and wrong errnos. Its rules mostly carry ``caller=ffi``:
  only calls whose stack holds a return address into libffi, i.e. calls through the
  suite's libc door (ctypes), not the interpreter's own allocator. x86_64 only.

Every run is supervised by ``memsys-inject`` (a child subreaper that kills and reaps the
whole tree at the end, on timeout or when it is terminated), so no traced or filtered
process is left behind; ``memsyscalls sweep`` then removes SysV/POSIX shm the run left.

A failure is attributed to a misbehaviour when its semantic does not fail in the
control run of the same mechanism (the same tracing, or a filter, that changes nothing):
being traced or filtered has effects of its own (test_layout's helper cannot
PTRACE_TRACEME under a tracer).

bench/bench_faults.py runs the whole catalogue and writes bench/README.md's section;
tests/test_fault_injection.py runs a quick subset.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from pytest_memsyscalls.kernel import constants as C
from pytest_memsyscalls.kernel import native
from pytest_memsyscalls.kernel.pages import PAGE_SIZE as PAGE

# x86_64 system call numbers (ptrace rules are x86_64 only; seccomp rules use names)
NR = {
    "mmap": 9, "mprotect": 10, "munmap": 11, "brk": 12, "mremap": 25, "msync": 26, "mincore": 27,
    "madvise": 28, "shmget": 29, "shmat": 30, "shmctl": 31, "shmdt": 67, "mlock": 149, "munlock": 150,
    "mlockall": 151, "munlockall": 152, "unlink": 87, "openat": 257, "unlinkat": 263, "memfd_create": 319,
    "mlock2": 325,
}
ALL = 0xFFFFFFFFFFFFFFFF
O_EXCL = 0o200
MFD_CLOEXEC = 1
RUN_ARGS = ["-q", "-p", "no:randomly"]


@dataclasses.dataclass(frozen=True)
class Misbehaviour:
    name: str
    family: str
    does: str
    # ptrace: memsys-inject rules (see csrc/inject.c); seccomp: (syscall, errno, [(arg, mask, value)])
    ptrace: tuple[str, ...] = ()
    seccomp: tuple[tuple[str, int, tuple[tuple[int, int, int], ...]], ...] = ()

    @property
    def mechanism(self) -> str:
        return "ptrace" if self.ptrace else "seccomp"


def _p(syscall: str, *items: str, door: bool = True) -> str:
    """A memsys-inject rule for ``syscall``; ``door``: only calls made through ctypes."""
    return ",".join([f"nr={NR[syscall]}", *(["caller=ffi"] if door else []), *items])


def _s(syscall: str, err: int, *conditions: tuple[int, int, int]) -> tuple[str, int, tuple[tuple[int, int, int], ...]]:
    return (syscall, err, tuple(conditions))


HALF = f"1:2:{PAGE}"
M = Misbehaviour
CATALOGUE: tuple[Misbehaviour, ...] = (
    # brk
    M("brk-never-moves", "brk", "brk(addr) acts as brk(0): the break never moves, the call reports the current one",
      ptrace=(_p("brk", "set=0:0"), _p("brk", "exe=memsys-brk-helper", "set=0:0", door=False))),
    M("brk-returns-errno", "brk", "brk fails with -ENOMEM in the return value (the kernel's brk returns the break, "
      "never an errno)", ptrace=(_p("brk", "skip=-12"), _p("brk", "exe=memsys-brk-helper", "skip=-12", door=False))),
    # mmap
    M("mmap-ignores-fixed-noreplace", "mmap", "MAP_FIXED_NOREPLACE cleared: an occupied hint is moved, not EEXIST",
      ptrace=(_p("mmap", f"clear=3:{C.MAP_FIXED_NOREPLACE}"),)),
    M("mmap-ignores-populate", "mmap", "MAP_POPULATE cleared: pages are not prefaulted",
      ptrace=(_p("mmap", f"clear=3:{C.MAP_POPULATE}"),)),
    M("mmap-ignores-fixed", "mmap", "MAP_FIXED cleared: the address is only a hint",
      ptrace=(_p("mmap", f"if=3:{C.MAP_FIXED}:{C.MAP_FIXED}", f"clear=3:{C.MAP_FIXED}"),)),
    M("mmap-shared-as-private", "mmap", "MAP_SHARED mapped as MAP_PRIVATE",
      ptrace=(_p("mmap", f"if=3:{C.MAP_TYPE}:{C.MAP_SHARED}", f"clear=3:{C.MAP_SHARED}",
                 f"or=3:{C.MAP_PRIVATE}"),)),
    M("mmap-drops-prot-exec", "mmap", "PROT_EXEC cleared from the protection",
      ptrace=(_p("mmap", f"clear=2:{C.PROT_EXEC}"),)),
    M("mmap-wrong-address", "mmap", "a successful mmap returns its address + 1 page",
      ptrace=(_p("mmap", f"retadd={PAGE}"),)),
    M("mmap-einval-as-enomem", "mmap", "EINVAL reported as ENOMEM", ptrace=(_p("mmap", "errno=22:12"),)),
    M("mmap-locked-ignored", "mmap", "MAP_LOCKED cleared: the mapping is not locked",
      ptrace=(_p("mmap", f"clear=3:{C.MAP_LOCKED}"),)),
    # munmap
    M("munmap-half-range", "munmap", "munmap unmaps only the first half of its range (page-rounded)",
      ptrace=(_p("munmap", f"scale=1:{HALF}"),)),
    M("munmap-noop", "munmap", "munmap returns 0 without unmapping", seccomp=(_s("munmap", 0),)),
    M("munmap-einval-as-success", "munmap", "a munmap that fails with EINVAL returns 0",
      ptrace=(_p("munmap", "errno=22:0"),)),
    # mprotect
    M("mprotect-half-range", "mprotect", "mprotect changes only the first half of its range",
      ptrace=(_p("mprotect", f"scale=1:{HALF}"),)),
    M("mprotect-readonly-noop", "mprotect", "mprotect(PROT_READ) returns 0 without acting",
      seccomp=(_s("mprotect", 0, (2, ALL, C.PROT_READ)),)),
    M("mprotect-drops-exec", "mprotect", "PROT_EXEC cleared from the new protection",
      ptrace=(_p("mprotect", f"clear=2:{C.PROT_EXEC}"),)),
    M("mprotect-enomem-as-einval", "mprotect", "ENOMEM reported as EINVAL", ptrace=(_p("mprotect", "errno=12:22"),)),
    # mremap
    M("mremap-ignores-fixed", "mremap", "MREMAP_FIXED cleared: the mapping moves where the kernel chooses",
      ptrace=(_p("mremap", f"clear=3:{C.MREMAP_FIXED}"),)),
    M("mremap-ignores-maymove", "mremap", "MREMAP_MAYMOVE cleared (when not FIXED): a growth that must move fails",
      ptrace=(_p("mremap", f"if=3:{C.MREMAP_FIXED}:0", f"clear=3:{C.MREMAP_MAYMOVE}"),)),
    M("mremap-ignores-dontunmap", "mremap", "MREMAP_DONTUNMAP cleared: the old range is unmapped",
      ptrace=(_p("mremap", f"clear=3:{C.MREMAP_DONTUNMAP}"),)),
    M("mremap-wrong-address", "mremap", "a successful mremap returns its address + 1 page",
      ptrace=(_p("mremap", f"retadd={PAGE}"),)),
    M("mremap-efault-as-enomem", "mremap", "EFAULT reported as ENOMEM", ptrace=(_p("mremap", "errno=14:12"),)),
    # msync
    M("msync-noop", "msync", "msync returns 0 without acting (or checking)", seccomp=(_s("msync", 0),)),
    M("msync-half-range", "msync", "msync acts on only the first half of its range",
      ptrace=(_p("msync", f"scale=1:{HALF}"),)),
    M("msync-async-and-sync-accepted", "msync", "MS_ASYNC|MS_SYNC returns 0 instead of EINVAL",
      seccomp=(_s("msync", 0, (2, C.MS_ASYNC | C.MS_SYNC, C.MS_ASYNC | C.MS_SYNC)),)),
    # mincore
    M("mincore-half-range", "mincore", "mincore fills only the first half of the vector",
      ptrace=(_p("mincore", f"scale=1:{HALF}"),)),
    M("mincore-noop", "mincore", "mincore returns 0 without filling the vector", seccomp=(_s("mincore", 0),)),
    M("mincore-enomem-as-efault", "mincore", "ENOMEM reported as EFAULT", ptrace=(_p("mincore", "errno=12:14"),)),
    # madvise
    M("madvise-dontneed-noop", "madvise", "MADV_DONTNEED returns 0 without dropping the pages",
      seccomp=(_s("madvise", 0, (2, ALL, C.MADV_DONTNEED)),)),
    M("madvise-remove-noop", "madvise", "MADV_REMOVE returns 0 without punching the hole",
      seccomp=(_s("madvise", 0, (2, ALL, C.MADV_REMOVE)),)),
    M("madvise-wipeonfork-noop", "madvise", "MADV_WIPEONFORK returns 0 without acting",
      seccomp=(_s("madvise", 0, (2, ALL, C.MADV_WIPEONFORK)),)),
    M("madvise-dontfork-noop", "madvise", "MADV_DONTFORK returns 0 without acting",
      seccomp=(_s("madvise", 0, (2, ALL, C.MADV_DONTFORK)),)),
    M("madvise-dontneed-half-range", "madvise", "MADV_DONTNEED drops only the first half of its range",
      ptrace=(_p("madvise", f"if=2:{ALL}:{C.MADV_DONTNEED}", f"scale=1:{HALF}"),)),
    M("madvise-einval-as-success", "madvise", "an advice refused with EINVAL returns 0",
      ptrace=(_p("madvise", "errno=22:0"),)),
    # mlock family
    M("mlock-noop", "mlock", "mlock returns 0 without locking", seccomp=(_s("mlock", 0),)),
    M("mlock-half-range", "mlock", "mlock locks only the first half of its range",
      ptrace=(_p("mlock", f"scale=1:{HALF}"),)),
    M("mlock-enomem-as-eagain", "mlock", "ENOMEM reported as EAGAIN", ptrace=(_p("mlock", "errno=12:11"),)),
    M("mlock2-ignores-onfault", "mlock", "MLOCK_ONFAULT cleared: the whole range is populated",
      ptrace=(_p("mlock2", f"clear=2:{C.MLOCK_ONFAULT}", door=False),)),
    M("munlock-noop", "mlock", "munlock returns 0 without unlocking", seccomp=(_s("munlock", 0),)),
    M("mlockall-ignores-future", "mlock", "MCL_FUTURE cleared: later mappings are not locked",
      ptrace=(_p("mlockall", f"clear=0:{C.MCL_FUTURE}", door=False),)),
    # SysV shm
    M("shmget-ignores-excl", "sysv-shm", "IPC_EXCL cleared: an existing key is reused, not EEXIST",
      ptrace=(_p("shmget", f"clear=2:{C.IPC_EXCL}"),)),
    M("shmget-half-size", "sysv-shm", "the segment is created with half the size asked (page-rounded)",
      ptrace=(_p("shmget", f"if=2:{C.IPC_CREAT}:{C.IPC_CREAT}", f"scale=1:{HALF}"),)),
    M("shmat-ignores-rdonly", "sysv-shm", "SHM_RDONLY cleared: the attach is writable",
      ptrace=(_p("shmat", f"clear=2:{C.SHM_RDONLY}"),)),
    M("shmat-wrong-address", "sysv-shm", "a successful shmat returns its address + 1 page",
      ptrace=(_p("shmat", f"retadd={PAGE}"),)),
    M("shmdt-noop", "sysv-shm", "shmdt returns 0 without detaching", seccomp=(_s("shmdt", 0),)),
    M("shmctl-rmid-noop", "sysv-shm", "IPC_RMID returns 0 without marking the segment",
      seccomp=(_s("shmctl", 0, (1, 0xFF, C.IPC_RMID)),)),
    # POSIX shm (shm_open/shm_unlink are openat/unlinkat on /dev/shm) and memfd
    M("shm-open-ignores-excl", "posix-shm", "O_EXCL cleared on /dev/shm: an existing name is opened, not EEXIST",
      ptrace=(_p("openat", "path=1:/dev/shm/", f"clear=2:{O_EXCL}", door=False),)),
    # glibc's shm_unlink is unlink(2), not unlinkat (a rule on unlinkat alone never applied)
    M("shm-unlink-noop", "posix-shm", "unlink of /dev/shm names returns 0 without removing",
      ptrace=(_p("unlink", "path=0:/dev/shm/", "skip=0", door=False),
              _p("unlinkat", "path=1:/dev/shm/", "skip=0", door=False))),
    M("memfd-create-refused", "memfd", "memfd_create fails with EMFILE", seccomp=(_s("memfd_create", errno.EMFILE),)),
)
del M

# The controls: the same mechanism, changing nothing. The ptrace control stops at every
# call the catalogue's rules stop at; the seccomp control loads a filter whose one rule
# never matches.
CONTROLS = {
    "ptrace": Misbehaviour("control-ptrace", "control", "traced at every catalogued call, nothing changed",
                           ptrace=tuple(f"nr={nr},if=0:0:1" for nr in sorted(set(NR.values())))),
    "seccomp": Misbehaviour("control-seccomp", "control", "a filter that matches nothing",
                            seccomp=(_s("madvise", errno.EINVAL, (2, ALL, 0xDEAD)),)),
}
# Why a missed misbehaviour cannot be observed (or what would catch it); filled in from
# bench/bench_faults.py's runs.
MISSED_BECAUSE: dict[str, str] = {}

FAMILIES = ("brk", "mmap", "munmap", "mprotect", "mremap", "msync", "mincore", "madvise", "mlock", "sysv-shm",
            "posix-shm", "memfd")


def by_name(name: str) -> Misbehaviour:
    for m in (*CATALOGUE, *CONTROLS.values()):
        if m.name == name:
            return m
    raise KeyError(name)


def ptrace_supported() -> str | None:
    """None, or why the ptrace rules cannot run here."""
    if platform.machine() != "x86_64":
        return f"memsys-inject's ptrace rules are x86_64 only (this is {platform.machine()})"
    scope = Path("/proc/sys/kernel/yama/ptrace_scope")
    if scope.exists() and scope.read_text().strip() == "3":
        return "yama ptrace_scope is 3 (no ptrace at all)"
    return None


# --- running ----------------------------------------------------------------------------


@dataclasses.dataclass
class Result:
    name: str
    family: str
    mechanism: str
    status: str = ""            # memsys-inject's: "exited N", "signaled N", "timeout"
    exit_code: int | None = None
    signal: str | None = None   # the pytest process was killed by this signal: a crash
    hung: bool = False
    report_valid: bool = False
    report_error: str | None = None
    failed: list[str] = dataclasses.field(default_factory=list)       # every failed semantic
    attributed: list[str] = dataclasses.field(default_factory=list)   # failed, but not in the control
    applied: int | None = None  # ptrace: how many calls the rules changed
    seconds: float = 0.0
    tail: str = ""

    @property
    def crashed(self) -> bool:
        return self.signal is not None

    @property
    def caught(self) -> bool:
        return bool(self.attributed)

    @property
    def survived(self) -> bool:
        return not self.crashed and not self.hung and self.report_valid and self.exit_code not in (None, 0)


def command(m: Misbehaviour, report: Path, status: Path, timeout: float,
            pytest_args: Sequence[str] = ()) -> list[str]:
    suite = [sys.executable, "-m", "pytest_memsyscalls", "run", *RUN_ARGS, f"--memsys-report={report}",
             *pytest_args]
    head = [str(native.injector_path()), "--timeout", str(int(timeout)), "--status", str(status)]
    if m.ptrace:
        return [*head, *(arg for rule in m.ptrace for arg in ("--rule", rule)), "--", *suite]
    return [*head, "--", sys.executable, str(Path(__file__).resolve()), "--seccomp", m.name, "--", *suite]


def run(m: Misbehaviour, workdir: Path, *, timeout: float = 240, control: Result | None = None,
        pytest_args: Sequence[str] = (), reclaim_leftovers: bool = False) -> Result:
    """The suite under ``m`` (supervised by memsys-inject, which kills the tree on timeout).
    ``reclaim_leftovers``: afterwards remove every SysV segment and /dev/shm name that
    appeared meanwhile and whose creator is gone (``sweep``): only where nothing else runs
    beside (bench/bench_faults.py), since another process's leftovers would go too."""
    from pytest_memsyscalls.report.model import ReportError, load_report

    workdir.mkdir(parents=True, exist_ok=True)
    report, status = workdir / f"{m.name}.json", workdir / f"{m.name}.status"
    for path in (report, status):
        path.unlink(missing_ok=True)
    result = Result(m.name, m.family, m.mechanism)
    before = _shm_objects()
    started = time.monotonic()
    try:
        # memsys-inject has its own --timeout; this one is the backstop if it hangs itself
        done = subprocess.run(command(m, report, status, timeout, pytest_args), cwd=workdir, capture_output=True,
                              text=True, timeout=timeout + 60, start_new_session=True,
                              env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
        out, err, code = done.stdout, done.stderr, done.returncode
    except subprocess.TimeoutExpired as expired:
        out = (expired.stdout or b"").decode(errors="replace") if isinstance(expired.stdout, bytes) else ""
        err, code = "memsys-inject itself did not end", 124
    result.seconds = time.monotonic() - started
    lines = status.read_text().splitlines() if status.exists() else []
    result.status = lines[0] if lines else f"no status (memsys-inject exit {code})"
    result.applied = sum(int(line.split()[-1]) for line in lines[1:]) if m.ptrace else None
    kind, _, value = result.status.partition(" ")
    if kind == "exited":
        result.exit_code = int(value)
    elif kind == "signaled":
        result.signal = signal.Signals(int(value)).name
    elif kind == "timeout" or code == 124:
        result.hung = True
    result.tail = (out[-1500:] + "\n" + err[-1500:]).strip()
    try:
        data = load_report(report)
        result.report_valid = True
        result.failed = sorted(row["id"] for row in data["semantics"] if row["outcome"] == "failed")
    except ReportError as error:
        result.report_error = str(error)
    baseline = set(control.failed) if control else set()
    result.attributed = [s for s in result.failed if s not in baseline]
    sweep(before if reclaim_leftovers else None)
    return result


def _shm_objects() -> tuple[set[int], set[str]]:
    """The SysV segment ids and the /dev/shm names of this package that exist now."""
    from pytest_memsyscalls.kernel.ipc import sysv_segments
    from pytest_memsyscalls.memory.names import NAME_RE

    names = {name for name in os.listdir("/dev/shm") if NAME_RE.match(name)} if os.path.isdir("/dev/shm") else set()
    return {segment.shmid for segment in sysv_segments().values()}, names


def sweep(before: tuple[set[int], set[str]] | None) -> None:
    """What a misbehaviour made the suite leave. ``memsyscalls sweep`` reclaims what a
    killed run recorded; a run under shmctl-rmid-noop or shm-unlink-noop ends normally
    believing it removed everything (its records go with it), so the segments and names
    that appeared during the run and whose creator is gone are removed here too."""
    from pytest_memsyscalls.kernel import constants as C
    from pytest_memsyscalls.kernel import libc
    from pytest_memsyscalls.kernel.ipc import sysv_segments
    from pytest_memsyscalls.memory.names import NAME_RE

    subprocess.run([sys.executable, "-m", "pytest_memsyscalls", "sweep"], capture_output=True, check=False,
                   timeout=120)
    if before is None:
        return
    old_ids, old_names = before
    for segment in sysv_segments().values():
        if segment.shmid not in old_ids and not os.path.exists(f"/proc/{segment.cpid}"):
            with contextlib.suppress(OSError):
                libc.shmctl(segment.shmid, C.IPC_RMID)
    for name in set(os.listdir("/dev/shm")) - old_names:
        found = NAME_RE.match(name)
        if found and not os.path.exists(f"/proc/{found.group(1)}"):
            with contextlib.suppress(OSError):
                os.unlink(f"/dev/shm/{name}")


# --- the seccomp launcher ----------------------------------------------------------------


def load_seccomp(m: Misbehaviour) -> None:
    from pytest_memsyscalls.kernel import seccomp

    lib = seccomp.load()
    context = lib.init(C.SCMP_ACT_ALLOW)
    try:
        for name, err, conditions in m.seccomp:
            number = lib.resolve_name(name)
            if number < 0:
                raise SystemExit(f"fault_injection: {name} is not a system call here")
            lib.rule_add(context, C.SCMP_ACT_ERRNO(err), number,
                         [seccomp.ScmpArgCmp(arg, C.SCMP_CMP_MASKED_EQ, mask, value)
                          for arg, mask, value in conditions])
        lib.load(context)
    finally:
        lib.release(context)


def main(argv: Sequence[str]) -> int:
    args = list(argv)
    if len(args) >= 3 and args[0] == "--seccomp" and args[2] == "--":
        load_seccomp(by_name(args[1]))
        os.execvp(args[3], args[3:])
    if args[:1] == ["--list"]:
        for m in CATALOGUE:
            print(f"{m.name:34} {m.family:10} {m.mechanism:8} {m.does}")
        return 0
    print("usage: fault_injection.py --list | --seccomp NAME -- COMMAND...", file=sys.stderr)
    return 2


def as_json(results: Sequence[Result]) -> str:
    return json.dumps([dict(dataclasses.asdict(r), caught=r.caught, crashed=r.crashed, survived=r.survived)
                       for r in results], indent=1)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
