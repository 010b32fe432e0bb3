"""Abuse: every public function and fixture class driven with hostile arguments.

What "survives abuse" means here, decided once for the whole package:

- A bad *argument* (wrong type, negative, too large for the C type, out of the
  object's range) raises ``TypeError`` or ``ValueError`` (``IndexError`` for a page
  index, ``ProbeRefused`` -- a ValueError -- for a probe into the interpreter's own
  memory) before any syscall is made, with a message naming the call.
- A well-formed argument the *kernel* rejects raises ``OSError`` with the errno set.
- The procfs parsers turn arbitrary text into a result or ``ValueError``; never
  IndexError, KeyError or AttributeError leaking out of the parsing.
- Nothing else escapes: no ``ctypes.ArgumentError``, ``OverflowError``,
  ``AttributeError``, and never a crash of the pytest process.

Calls that could destroy the interpreter's own memory when handed an arbitrary
address (munmap, mprotect, madvise, mremap, mmap with MAP_FIXED, brk/sbrk,
mlockall, shmctl/shmat with raw addresses) run in a forked child, one child per
Hypothesis example for a whole batch of calls; the child must come back with a
per-call verdict, so a crash in our own argument checking shows up as a failure.
Calls that cannot hurt the interpreter run in process. Leaks (SysV segments,
/dev/shm names, locked memory, children) are checked per test by the plugin's
leak guard and once more at the end of the module.

Example counts are fixed and small (derandomized) so the module stays well under
20 s; ``--hypothesis-profile=deep`` does not apply here on purpose: the point is a
bounded, repeatable sweep, and the edge values below are always drawn.
"""

from __future__ import annotations

import io
import os
import signal
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pytest_memsyscalls
from pytest_memsyscalls.cli import main as cli
from pytest_memsyscalls.kernel import constants as C
from pytest_memsyscalls.kernel import libc, probe, procfs
from pytest_memsyscalls.kernel.libc import PAGE_SIZE as PAGE
from pytest_memsyscalls.kernel.probe import Fault, ProbeRefused
from pytest_memsyscalls.memory import brk
from pytest_memsyscalls.memory import child as child_module
from pytest_memsyscalls.memory.child import ChildOutcome, expect_signal, run_in_child
from pytest_memsyscalls.memory.mapping import Arena, FileMapping, Mapping
from pytest_memsyscalls.memory.shm import PosixShm, ShmSegment
from pytest_memsyscalls.plugin import leaks

ARGUMENT_ERRORS = (TypeError, ValueError, IndexError)
ALLOWED = (*ARGUMENT_ERRORS, OSError)

SETTINGS = settings(max_examples=25, derandomize=True, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck), print_blob=False)
FEW = settings(SETTINGS, max_examples=8)

# --- hostile values ---------------------------------------------------------------

EDGE_INTS = [0, 1, -1, PAGE - 1, PAGE + 1, 2**31 - 1, 2**31, -(2**31) - 1, 2**32, 2**47, 2**63 - 1,
             2**63, -(2**63) - 1, 2**64 - 1, 2**64, -(2**64), 2**100]
hostile_ints = st.one_of(st.sampled_from(EDGE_INTS), st.integers())
wrong_types = st.sampled_from([None, 1.5, float("nan"), float("inf"), "4096", b"\x00", True, [1], {}, object(),
                               1j, bytearray(b"x")])
hostile = st.one_of(hostile_ints, wrong_types)


def verdict(call: Callable[..., Any], *args: Any, **kwargs: Any) -> str:
    """'ok', or the name of the allowed exception; any other exception propagates."""
    try:
        call(*args, **kwargs)
    except ALLOWED as error:
        if isinstance(error, OSError) and not isinstance(error, ProbeRefused):
            assert error.errno is not None, f"OSError without errno from {call.__name__}{args!r}: {error!r}"
        return type(error).__name__
    return "ok"


def checked_in_child(batch: Callable[[], list[str]]) -> list[str]:
    """Run a batch of dangerous calls in a child; it must come back with its verdicts."""
    outcome = run_in_child(batch, timeout=20)
    assert outcome.returned, f"the child did not survive the hostile calls: {outcome.describe()}"
    return outcome.value


# --- libc --------------------------------------------------------------------------

# Every libc call with the argument positions it takes; "addr" positions get
# arena-relative values in the in-arena sweep.
LIBC_CALLS: dict[str, tuple[str, ...]] = {
    "mmap": ("addr", "len", "int", "int", "int", "int"),
    "munmap": ("addr", "len"),
    "msync": ("addr", "len", "int"),
    "mprotect": ("addr", "len", "int"),
    "mremap": ("addr", "len", "len", "int", "addr"),
    "mincore": ("addr", "len"),
    "madvise": ("addr", "len", "int"),
    "mlock": ("addr", "len"),
    "mlock2": ("addr", "len", "int"),
    "munlock": ("addr", "len"),
    "mlockall": ("int",),
    "brk": ("addr",),
    "sbrk": ("int",),
    "raw_brk": ("addr",),
    "shmget": ("int", "len", "int"),
    "shmat": ("int", "addr", "int"),
    "shmdt": ("addr",),
    "shmctl": ("int", "int", "addr"),
    "shm_stat": ("int",),
    "shm_unlink": ("name",),
    "shm_open": ("name", "int", "int"),
}


@st.composite
def hostile_libc_calls(draw: st.DrawFn, arena_pages: int) -> list[tuple[str, tuple[Any, ...]]]:
    """Calls whose addresses lie in an arena (base added in the child) and whose
    lengths stay inside it, with one argument replaced by a hostile value."""
    calls = []
    for name in draw(st.lists(st.sampled_from(sorted(LIBC_CALLS)), min_size=5, max_size=12)):
        kinds = LIBC_CALLS[name]
        args: list[Any] = []
        for kind in kinds:
            if kind == "addr":
                args.append(("arena", draw(st.integers(0, arena_pages * PAGE - 1))))
            elif kind == "len":
                args.append(draw(st.integers(0, PAGE)))
            elif kind == "name":
                args.append(draw(st.sampled_from(["", "/", "//", "/a/b", "memsys-no-slash", "/" + "x" * 300,
                                                  "/memsys-abuse\x00nul", b"/memsys-abuse-bytes"])))
            else:
                args.append(draw(hostile_ints))
        spoil = draw(st.integers(0, len(args)))  # len(args): nothing spoilt beyond the ints
        if spoil < len(args):
            args[spoil] = draw(hostile)
        calls.append((name, tuple(args)))
    return calls


def _run_libc_batch(base: int, calls: list[tuple[str, tuple[Any, ...]]]) -> list[str]:
    out = []
    for name, raw in calls:
        args = tuple(base + a[1] if isinstance(a, tuple) else a for a in raw)
        if name == "shm_open" and isinstance(args[1], int) and not isinstance(args[1], bool):
            args = (args[0], args[1] & ~os.O_CREAT, *args[2:])  # never create a name (no leak)
        if name == "shmget":
            args = (args[0], args[1], args[2] & ~C.IPC_CREAT if isinstance(args[2], int) else args[2])
        if name == "shmctl" and args[1] in (C.IPC_RMID, C.IPC_SET, C.SHM_LOCK, C.SHM_UNLOCK):
            args = (args[0], C.IPC_STAT, args[2])  # never remove or change someone else's segment
        out.append(f"{name}:{verdict(getattr(libc, name), *args)}")
    return out


@SETTINGS
@given(calls=hostile_libc_calls(arena_pages=8))
def test_libc_calls_inside_an_arena_raise_only_documented_exceptions(calls):
    """Every libc function with arguments aimed at an arena, one of them hostile: the
    child (process-global and destructive calls run there) returns a verdict per call."""

    def batch() -> list[str]:
        with Arena(8) as arena:
            return _run_libc_batch(arena.addr, calls)

    assert len(checked_in_child(batch)) == len(calls)


@FEW
@given(addr=hostile_ints, length=hostile_ints, prot=hostile_ints)
def test_destructive_calls_at_arbitrary_addresses_only_hurt_the_child(addr, length, prot):
    """munmap/mprotect/madvise(DONTNEED)/mremap/brk at any address: whatever it does to
    the child's interpreter, the parent learns a described outcome and stays intact."""

    def batch() -> list[str]:
        return [verdict(libc.mprotect, addr, length, prot), verdict(libc.madvise, addr, length, C.MADV_DONTNEED),
                verdict(libc.mremap, addr, length, length, prot), verdict(libc.brk, addr),
                verdict(libc.sbrk, length), verdict(libc.munmap, addr, length)]

    outcome = run_in_child(batch, timeout=20)
    assert isinstance(outcome, ChildOutcome) and outcome.describe()
    if not outcome.returned:  # the child may legitimately die of what it unmapped
        assert outcome.signal is not None or outcome.exit_status is not None or outcome.exception is not None


@SETTINGS
@given(value=hostile)
def test_mlockall_with_hostile_flags_in_a_child(value):
    """mlockall changes the whole process: it runs only in a child, with any flags."""

    def batch() -> list[str]:
        result = verdict(libc.mlockall, value)
        libc.munlockall()
        return [result]

    [result] = checked_in_child(batch)
    expected_type = isinstance(value, int) and not isinstance(value, bool)
    assert (result in ("ok", "OSError") or (result == "ValueError" and not -(2**31) <= value < 2**31)) \
        if expected_type else result == "TypeError"


@SETTINGS
@given(addr=hostile, length=hostile)
def test_read_only_libc_calls_in_process(addr, length):
    """mincore and is_mapped read nothing but the page tables: safe at any address."""
    verdict(libc.mincore, addr, length)
    if isinstance(addr, int) and not isinstance(addr, bool) and 0 <= addr < 2**64:
        assert isinstance(libc.is_mapped(addr), bool)
    else:
        assert verdict(libc.is_mapped, addr) in ARGUMENT_ERRORS_NAMES


ARGUMENT_ERRORS_NAMES = {"TypeError", "ValueError"}


@SETTINGS
@given(length=hostile, prot=hostile, flags=hostile, fd=hostile, offset=hostile)
def test_mmap_without_fixed_in_process_maps_or_refuses(length, prot, flags, fd, offset):
    """mmap without MAP_FIXED cannot replace memory: any arguments, then munmap what it made."""
    if isinstance(flags, int) and not isinstance(flags, bool):
        flags &= ~(C.MAP_FIXED | C.MAP_POPULATE | C.MAP_LOCKED)  # nothing fixed, no huge populate
    if isinstance(length, int) and not isinstance(length, bool) and 64 * PAGE < length < 2**62:
        length = 64 * PAGE  # a real size stays small; absurd ones still reach the kernel
    try:
        addr = libc.mmap(0, length, prot, flags, fd, offset)
    except ALLOWED as error:
        if isinstance(error, OSError):
            assert error.errno is not None
        return
    libc.munmap(addr, length)


# --- probe -------------------------------------------------------------------------

def interpreter_addresses() -> tuple[list[int], list[int]]:
    """Writable and executable addresses of memory the interpreter mapped (not us)."""
    writable, executable = [], []
    for entry in procfs.read_maps():
        if libc.owned.contains(entry.start) or entry.path in ("[vsyscall]",):
            continue
        if entry.writable:
            writable += [entry.start, entry.end - 1]
        if entry.executable:
            executable += [entry.start, (entry.start + entry.end) // 2 & ~0xF]
    return writable, executable


@SETTINGS
@given(addr=st.one_of(st.sampled_from([0, 1, 2**47 - 1, 2**47, 2**63, 2**64 - 1, 0xFFFFFFFFFF600000]),
                      st.integers(0, 2**64 - 1)))
def test_probe_read_of_any_64bit_address_returns(addr):
    """Reads never refuse and never crash: a byte or a Fault for every 64-bit address."""
    result = probe.read(addr)
    assert result is None or isinstance(result, Fault)
    fault, value = probe.read_value(addr)
    assert (fault is None) != (value is None)


@SETTINGS
@given(data=st.data())
def test_probe_write_and_execute_refuse_interpreter_memory(data):
    """A successful write or execute there would corrupt or run the interpreter: refused."""
    writable, executable = interpreter_addresses()
    with pytest.raises(ProbeRefused):
        probe.write(data.draw(st.sampled_from(writable)), data.draw(st.integers(0, 255)))
    with pytest.raises(ProbeRefused):
        probe.execute(data.draw(st.sampled_from(executable)))


@SETTINGS
@given(addr=hostile, value=hostile)
def test_probe_argument_errors(addr, value):
    """Bad types and out-of-range values are argument errors, checked before any access."""
    addr_ok = isinstance(addr, int) and not isinstance(addr, bool) and 0 <= addr < 2**64
    value_ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 255
    if not addr_ok:
        assert verdict(probe.read, addr) in ARGUMENT_ERRORS_NAMES
        assert verdict(probe.execute, addr) in ARGUMENT_ERRORS_NAMES
    if not value_ok:
        with Mapping.create(1) as m:
            assert verdict(probe.write, m.addr, value) in ARGUMENT_ERRORS_NAMES
    if addr_ok and value_ok and not libc.is_mapped(addr):
        assert isinstance(probe.write(addr, value), Fault)


# --- Mapping, Arena, ShmSegment, PosixShm --------------------------------------------

@SETTINGS
@given(cls=st.sampled_from([Mapping, FileMapping]), pages=hostile, prot=hostile, flags=hostile, fd=hostile,
       offset=hostile, addr=hostile)
def test_mapping_create_refuses_or_maps(cls, pages, prot, flags, fd, offset, addr):
    """Mapping.create (the mapped_pages fixture's class; FileMapping is mapped_file's):
    argument errors, OSError or a mapping of that class."""
    if isinstance(flags, int) and not isinstance(flags, bool):
        flags &= ~(C.MAP_POPULATE | C.MAP_LOCKED)
    if isinstance(pages, int) and not isinstance(pages, bool) and 64 < pages < 2**40:
        pages = 64
    try:
        mapping = cls.create(pages, prot, flags, fd, offset, addr)
    except ALLOWED:
        return
    assert type(mapping) is cls
    assert not flags & C.MAP_FIXED or libc.owned.covers(mapping.addr, mapping.length)
    mapping.unmap()


@st.composite
def mapping_method_calls(draw: st.DrawFn) -> list[tuple[str, tuple[Any, ...]]]:
    methods = {"page": 1, "read": 1, "write": 2, "protect": 3, "advise": 3, "lock": 3, "unlock": 2,
               "sync": 3, "remap": 3, "residency": 0, "vma": 0, "unmap": 0}
    calls = []
    for name in draw(st.lists(st.sampled_from(sorted(methods)), min_size=3, max_size=10)):
        count = draw(st.integers(0, methods[name]))
        calls.append((name, tuple(draw(st.one_of(hostile, st.integers(-2, 4))) for _ in range(count))))
    return calls


@SETTINGS
@given(calls=mapping_method_calls())
def test_mapping_and_arena_methods_in_a_child(calls):
    """Every Mapping method with hostile arguments, on a mapping and on an arena mapping
    (remap, protect and advise change memory, so the batch runs in a child)."""

    def batch() -> list[str]:
        out = []
        with Arena(8) as arena:
            for target in (Mapping.create(2), arena.map(1, 2)):
                for name, args in calls:
                    out.append(verdict(getattr(target, name), *args))
                target.unmap()
            for name, args in calls:
                if name in ("page", "unmap", "residency", "vma"):
                    continue
                method = {"read": arena.hole, "write": arena.map, "protect": arena.map, "advise": arena.refill,
                          "lock": arena.remap, "unlock": arena.hole, "sync": arena.map,
                          "remap": arena.remap}[name]
                out.append(verdict(method, *args[:2]))
        return out

    checked_in_child(batch)


@SETTINGS
@given(pages=hostile)
def test_arena_constructor(pages):
    """Arena(pages): argument errors for nonsense, a reservation otherwise, always closable."""
    if isinstance(pages, int) and not isinstance(pages, bool) and 256 < pages < 2**40:
        pages = 256
    try:
        arena = Arena(pages)
    except ALLOWED:
        return
    arena.close()
    arena.close()  # idempotent


@SETTINGS
@given(size=hostile, key=st.one_of(hostile, st.just("unique"), st.just("bogus")), mode=hostile, flags=hostile)
def test_shm_segment_constructor_and_methods(size, key, mode, flags):
    """ShmSegment: a segment is only ever made with IPC_EXCL and always removed."""
    if isinstance(size, int) and not isinstance(size, bool) and 16 * PAGE < size < 2**40:
        size = 16 * PAGE
    if isinstance(key, int) and not isinstance(key, bool) and key != C.IPC_PRIVATE:
        key = "unique"  # a fixed key is insecure by design; the random ones are drawn inside
    try:
        segment = ShmSegment(size, key=key, mode=mode, flags=flags)
    except ALLOWED:
        return
    try:
        assert segment.stat().permissions & 0o077 == (mode if isinstance(mode, int) else 0) & 0o077
        for arg in (-1, 1, 2**64, "x", None):
            verdict(segment.attach, arg)
            verdict(segment.detach, arg)
    finally:
        segment.close()
    segment.close()


@SETTINGS
@given(size=hostile, mode=hostile, pages=hostile, prot=hostile, flags=hostile)
def test_posix_shm_constructor_and_map(size, mode, pages, prot, flags):
    """PosixShm: the name is always unlinked; map() refuses or maps."""
    if isinstance(size, int) and not isinstance(size, bool) and 16 * PAGE < size < 2**62:
        size = 16 * PAGE
    try:
        shm = PosixShm(size, mode=mode)
    except ALLOWED:
        return
    try:
        if isinstance(flags, int) and not isinstance(flags, bool):
            flags &= ~(C.MAP_FIXED | C.MAP_POPULATE | C.MAP_LOCKED)
        if isinstance(pages, int) and not isinstance(pages, bool) and 16 < pages < 2**40:
            pages = 16
        verdict(shm.map, pages, prot, flags)
    finally:
        shm.close()
    assert not os.path.exists(shm.path)


# --- run_in_child, expect_signal -------------------------------------------------------

@SETTINGS
@given(fn=st.one_of(wrong_types, st.just(None)), timeout=hostile)
def test_run_in_child_bad_arguments(fn, timeout):
    """A non-callable or a bad timeout is an argument error, and no child is forked."""
    last_fork = child_module.forked_children[-1] if child_module.forked_children else None
    assert verdict(run_in_child, fn, timeout=timeout) in ARGUMENT_ERRORS_NAMES
    good_timeout = (isinstance(timeout, (int, float)) and not isinstance(timeout, bool)
                    and 0 < timeout <= 86400)
    if not good_timeout:
        assert verdict(run_in_child, os.getpid, timeout=timeout) in ARGUMENT_ERRORS_NAMES
    assert (child_module.forked_children[-1] if child_module.forked_children else None) == last_fork


@SETTINGS
@given(signo=hostile, code=hostile, addr=hostile, timeout=hostile)
def test_expect_signal_bad_arguments(signo, code, addr, timeout):
    """expect_signal's constructor checks signo and timeout; code and addr only compare."""
    try:
        expect_signal(signo, code=code, addr=addr, timeout=timeout)
    except ARGUMENT_ERRORS:
        pass


@FEW
@given(code=st.one_of(st.none(), hostile), addr=st.one_of(st.none(), hostile))
def test_expect_signal_hostile_expectations_fail_as_assertions(code, addr):
    """A code or addr that cannot match makes the expectation fail as an assertion (or
    pass when it matches), in the with-form and the callable form: never a crash or
    another exception type."""
    with Mapping.create(1, prot=C.PROT_NONE) as m:
        try:
            with expect_signal(signal.SIGSEGV, code=code, addr=addr):
                probe_byte = m.buffer[0]  # noqa: F841 -- the fault under test
        except (AssertionError, *ARGUMENT_ERRORS):
            pass
        try:
            expect_signal(signal.SIGSEGV, m.buffer.__getitem__, 0, code=code, addr=addr)
        except (AssertionError, *ARGUMENT_ERRORS):
            pass


# --- procfs parsers ---------------------------------------------------------------------

PARSERS = [procfs.parse_maps, procfs.parse_maps_line, procfs.parse_smaps, procfs.parse_status,
           procfs.parse_sysvipc_shm, procfs.parse_proc_stat, procfs.decode_capabilities, procfs.parse_meminfo,
           procfs.parse_id_map, procfs.parse_mountinfo]
procfs_like = st.text(alphabet=st.sampled_from(list("0123456789abcdef-:/ ()\t\nrwxps[]kBVmLckFlags:")), max_size=200)


@settings(SETTINGS, max_examples=60)
@given(text=st.one_of(st.text(max_size=200), procfs_like), parser=st.sampled_from(PARSERS))
def test_procfs_parsers_give_a_result_or_value_error(text, parser):
    """Arbitrary text: a result or ValueError, the documented contract of every parser."""
    try:
        parser(text)
    except ValueError:
        pass


@settings(SETTINGS, max_examples=40)
@given(data=st.data(), parser=st.sampled_from(PARSERS))
def test_procfs_parsers_on_mutated_real_text(data, parser):
    """Real /proc text with one line cut or corrupted: a result or ValueError."""
    source = {procfs.parse_maps: "/proc/self/maps", procfs.parse_maps_line: "/proc/self/maps",
              procfs.parse_smaps: "/proc/self/smaps", procfs.parse_status: "/proc/self/status",
              procfs.parse_sysvipc_shm: "/proc/sysvipc/shm", procfs.parse_proc_stat: "/proc/self/stat",
              procfs.parse_meminfo: "/proc/meminfo", procfs.parse_id_map: "/proc/self/uid_map",
              procfs.parse_mountinfo: "/proc/self/mountinfo"}.get(parser)
    text = Path(source).read_text()[:4000] if source else "0000000000000000"
    lines = text.splitlines() or [""]
    i = data.draw(st.integers(0, len(lines) - 1))
    cut = data.draw(st.integers(0, len(lines[i])))
    lines[i] = lines[i][:cut] + data.draw(st.sampled_from(["", " ", "zz", "\t-", ":", "0x", " kB", "(("]))
    if parser is procfs.parse_maps_line:
        lines = [lines[i]]
    try:
        parser("\n".join(lines))
    except ValueError:
        pass


# --- brk.run, cli --------------------------------------------------------------------------

step_kinds = ["sbrk", "brk", "malloc", "free", "write", "read", "mallopt", "trim", "rlimit-data", "bogus", ""]


@FEW
@given(steps=st.lists(st.one_of(
    st.builds(lambda k, a: f"{k}:{a}", st.sampled_from(step_kinds),
              st.one_of(st.sampled_from(["-1", "0", "4096", "99999999999999999999999", "slot0", "slot9+1",
                                         "brk-1", "x=1", "=", "1=256", "M_TOP_PAD=-5", "%s%n"]),
                        st.text(max_size=10))),
    wrong_types), max_size=5))
def test_brk_run_hostile_steps(steps):
    """The helper's step language: ValueError for anything it would not accept; a run otherwise."""
    try:
        result = brk.run(*steps, timeout=10)
    except ValueError:
        return
    assert len(result) == len(steps)


BAD_CLI = [["bogus"], ["env", "--bogus"], ["semantics", "--json", "--markdown"], ["diff"],
           ["diff", "/nonexistent/a.json", "/nonexistent/b.json"], ["matrix", "--targets", "no-such-target"],
           ["matrix", "--jobs", "-3", "--list"], ["layout", "notapid"], ["layout", "-5"],
           ["diff", "--bogus"]]


@pytest.mark.parametrize("argv", BAD_CLI, ids=" ".join)
def test_cli_bad_arguments_exit_2_with_a_message(argv):
    """A command line the CLI cannot act on: exit status 2 and a message on stderr."""
    err, out = io.StringIO(), io.StringIO()
    with redirect_stderr(err), redirect_stdout(out):
        try:
            status = cli.main(argv)
        except SystemExit as stop:
            status = stop.code if isinstance(stop.code, int) else (2 if stop.code else 0)
            if isinstance(stop.code, str):
                err.write(stop.code)
    assert status == 2, f"{argv}: exit {status}; stderr {err.getvalue()!r}"
    assert err.getvalue().strip(), f"{argv}: no message"


# --- the whole surface, and nothing left behind ------------------------------------------------

FIXTURE_PROTOCOLS = ["ExpectSignal", "FaultProbe", "LockedRegion", "MappedFile", "MappedPages", "PosixShmFactory",
                     "RunInChild", "ShmSegmentFactory"]


@pytest.mark.parametrize("name", FIXTURE_PROTOCOLS)
def test_fixture_protocols_are_annotations_only(name):
    """The fixtures' Protocol types cannot be instantiated, and isinstance() against one is
    a TypeError (they are not runtime-checkable): they exist for type checkers."""
    protocol = getattr(pytest_memsyscalls, name)
    with pytest.raises(TypeError):
        protocol()
    with pytest.raises(TypeError):
        isinstance(object(), protocol)


def test_every_public_name_is_covered_here():
    """Adding a public name without abusing it here is a gap this test points out."""
    covered = {"Arena", "ChildOutcome", "ExpectationFailed", "Fault", "FileMapping", "Mapping", "PosixShm", "Semantic",
               "ShmSegment", "ShmStat", "expect_signal", "fails_with", "faults_with", "requires", "run_in_child",
               "semantic", "succeeds", *FIXTURE_PROTOCOLS}
    assert set(pytest_memsyscalls.__all__) <= covered


@SETTINGS
@given(args=st.lists(hostile, max_size=3))
def test_assertion_helpers_and_markers(args):
    """fails_with/succeeds/faults_with/semantic/requires with nonsense: assertion or argument errors."""
    for call in (lambda: pytest_memsyscalls.fails_with(*args), lambda: pytest_memsyscalls.succeeds(*args),
                 lambda: pytest_memsyscalls.faults_with(*args), lambda: pytest_memsyscalls.semantic(*args),
                 lambda: pytest_memsyscalls.requires(*args), lambda: pytest_memsyscalls.Semantic(*args),
                 lambda: pytest_memsyscalls.Fault(*args), lambda: pytest_memsyscalls.ShmStat(*args),
                 lambda: pytest_memsyscalls.ChildOutcome(*args),
                 lambda: pytest_memsyscalls.ExpectationFailed(*args)):
        try:
            call()
        except (AssertionError, *ARGUMENT_ERRORS):
            pass


def test_nothing_leaked_by_this_module():
    """After every sweep above: no segment, name, child of ours; VmLck back to zero."""
    snap = leaks.snapshot()
    mine = [seg.describe() for seg in snap.segments.values() if seg.cpid == os.getpid()]
    mine += [name.describe() for name in snap.names.values() if name.pid == os.getpid()]
    mine += [child.describe() for child in snap.children.values()]
    assert mine == []
    assert snap.locked_kb in (0, None)
