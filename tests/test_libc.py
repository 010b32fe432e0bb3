"""The libc layer: errno fidelity and argument checking."""

from __future__ import annotations

import ctypes
import errno
import os
import re
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_memsyscalls import run_in_child
from pytest_memsyscalls.kernel import constants as C
from pytest_memsyscalls.kernel import libc, procfs, seccomp
from pytest_memsyscalls.kernel.constants import ANON, RW
from pytest_memsyscalls.kernel.contract import ExpectationFailed, Misplaced
from pytest_memsyscalls.kernel.probe import Fault, read


def test_failure_is_oserror_with_errno_and_call() -> None:
    addr = libc.mmap(0, libc.PAGE_SIZE, RW, ANON)
    try:
        with pytest.raises(OSError) as caught:
            libc.mprotect(addr + 1, libc.PAGE_SIZE, C.PROT_READ)
        assert caught.value.errno == errno.EINVAL
        assert caught.value.filename.startswith("mprotect(")
        assert vars(caught.value)["syscall"] == "mprotect"  # an attribute libc adds to the OSError
    finally:
        libc.munmap(addr, libc.PAGE_SIZE)


def test_errno_maps_to_python_subclasses() -> None:
    with pytest.raises(FileNotFoundError):
        libc.shm_unlink("/memsys-test-does-not-exist-" + "0" * 16)


def test_errno_is_reset_before_each_call() -> None:
    """A success after a failure must not carry the failure's errno into the next check."""
    with pytest.raises(OSError):
        libc.munmap(1, libc.PAGE_SIZE)
    addr = libc.mmap(0, libc.PAGE_SIZE, RW, ANON)
    libc.munmap(addr, libc.PAGE_SIZE)


def test_high_addresses_are_not_truncated() -> None:
    addr = libc.mmap(0, libc.PAGE_SIZE, RW, ANON)
    try:
        assert addr > 1 << 32, "the kernel places anonymous mappings above 4 GiB on 64-bit"
        assert read(addr) is None
    finally:
        libc.munmap(addr, libc.PAGE_SIZE)


@pytest.mark.parametrize(
    ("call", "args", "error", "words"),
    [
        (libc.mmap, (0, -1, RW, ANON), ValueError, "length must be >= 0"),
        (libc.mmap, ("0", 4096, RW, ANON), TypeError, "addr must be an integer"),
        (libc.mmap, (0, 4096, 1 << 40, ANON), ValueError, "prot must fit in a C int"),
        (libc.mprotect, (-1, 4096, RW), ValueError, "addr must be an address"),
        (libc.mprotect, (1 << 64, 4096, RW), ValueError, "addr must be an address"),
        (libc.munmap, (0, 1.5), TypeError, "length must be an integer"),
        (libc.madvise, (True, 4096, 0), TypeError, "got bool"),
        (libc.shm_open, (b"/a\0b", 0), ValueError, "NUL"),
        (libc.shm_open, (3, 0), TypeError, "name must be str or bytes"),
        (libc.sbrk, (1 << 70,), ValueError, "intptr_t"),
    ],
)
def test_bad_arguments_raise_before_reaching_c(call: Callable[..., object], args: tuple[object, ...], error: type,
                                               words: str) -> None:
    with pytest.raises(error, match=words):
        call(*args)


def test_owned_ranges_follow_map_unmap_and_remap() -> None:
    addr = libc.mmap(0, 3 * libc.PAGE_SIZE, RW, ANON)
    assert libc.owned.contains(addr + 2 * libc.PAGE_SIZE)
    libc.munmap(addr + libc.PAGE_SIZE, libc.PAGE_SIZE)
    assert not libc.owned.contains(addr + libc.PAGE_SIZE)
    assert libc.owned.contains(addr) and libc.owned.contains(addr + 2 * libc.PAGE_SIZE)
    moved = libc.mremap(addr, libc.PAGE_SIZE, 4 * libc.PAGE_SIZE, C.MREMAP_MAYMOVE)
    assert libc.owned.contains(moved + 3 * libc.PAGE_SIZE)
    libc.munmap(moved, 4 * libc.PAGE_SIZE)
    libc.munmap(addr + 2 * libc.PAGE_SIZE, libc.PAGE_SIZE)
    assert not libc.owned.contains(moved)


def test_raw_brk_reports_the_break_and_never_fails() -> None:
    current = libc.raw_brk(0)
    assert current > 0
    assert libc.raw_brk(1) == current, "an impossible break leaves the break where it is"


def test_shmid_ds_is_decoded_with_the_kernel_layout() -> None:
    shmid = libc.shmget(C.IPC_PRIVATE, 3 * libc.PAGE_SIZE, C.IPC_CREAT | 0o600)
    try:
        ds = libc.shm_stat(shmid)
        assert ds.shm_segsz == 3 * libc.PAGE_SIZE
        assert ds.shm_perm.mode & 0o777 == 0o600
        assert ds.shm_nattch == 0
        import os

        assert ds.shm_cpid == os.getpid()
        assert ds.shm_perm.cuid == os.geteuid()
    finally:
        libc.shmctl(shmid, C.IPC_RMID)


def test_unmapped_read_is_a_maperr_fault() -> None:
    addr = libc.mmap(0, libc.PAGE_SIZE, RW, ANON)
    libc.munmap(addr, libc.PAGE_SIZE)
    assert read(addr) == Fault(signal.SIGSEGV, C.SEGV_MAPERR, addr)


# --- the process-attribute calls: bound with explicit types, failures name the call --------------

_BINDINGS = [
    ("personality", libc._personality, ctypes.c_int, [ctypes.c_ulong]),
    ("prctl", libc._prctl, ctypes.c_int, [ctypes.c_int] + [ctypes.c_ulong] * 4),
    ("ptrace", libc._ptrace, ctypes.c_long, [ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]),
    ("capget", libc._capget, ctypes.c_int, [ctypes.c_void_p, ctypes.c_void_p]),
    ("capset", libc._capset, ctypes.c_int, [ctypes.c_void_p, ctypes.c_void_p]),
    ("unshare", libc._unshare, ctypes.c_int, [ctypes.c_int]),
    ("mount", libc._mount, ctypes.c_int, [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]),
]


@pytest.mark.parametrize(("name", "function", "restype", "argtypes"), _BINDINGS, ids=[b[0] for b in _BINDINGS])
def test_new_bindings_have_explicit_types(name: str, function: Any, restype: Any, argtypes: list[Any]) -> None:
    assert function.__name__ == name
    assert function.restype is restype
    assert list(function.argtypes or []) == argtypes


def _raised(fn: Callable[..., object], *args: object) -> tuple[int | None, str | None, str | None]:
    """(errno, filename, syscall) of the OSError fn raises; picklable, for children too."""
    try:
        fn(*args)
    except OSError as error:
        return error.errno, error.filename, getattr(error, "syscall", None)
    raise AssertionError(f"{fn.__name__}{args} did not fail")


def _assert_names_call(raised: tuple[int | None, str | None, str | None], call: str, *errnos: int) -> None:
    number, filename, syscall = raised
    assert number in errnos, f"{call}: errno {number} ({errno.errorcode.get(number or 0)}), expected {errnos}"
    assert filename is not None and filename.startswith(f"{call}("), filename
    assert syscall == call


def test_prctl_with_an_unknown_option_is_einval() -> None:
    _assert_names_call(_raised(libc.prctl, 0x7FFF_FFF0), "prctl", errno.EINVAL)


def test_prctl_returns_what_a_get_option_asks_for() -> None:
    assert libc.prctl(C.PR_GET_DUMPABLE) in (0, 1, 2)
    assert libc.prctl(C.PR_GET_NO_NEW_PRIVS) in (0, 1)


def test_personality_query_changes_nothing_and_matches_proc() -> None:
    persona = libc.personality(C.PERSONALITY_QUERY)
    assert libc.personality(C.PERSONALITY_QUERY) == persona
    try:
        with open("/proc/self/personality") as handle:
            assert int(handle.read(), 16) == persona
    except PermissionError:
        pass  # /proc/self/personality needs ptrace access to ourselves, which some sandboxes refuse


def test_capget_returns_the_sets_proc_reports() -> None:
    caps = libc.capget()
    status = procfs.read_status()
    assert caps == (int(status["CapEff"], 16), int(status["CapPrm"], 16), int(status["CapInh"], 16))
    assert caps.effective == int(status["CapEff"], 16)


def test_capget_of_no_such_process_names_the_call() -> None:
    _assert_names_call(_raised(libc.capget, -5), "capget", errno.EINVAL, errno.ESRCH)


def _capset_beyond_permitted() -> tuple[int | None, str | None, str | None]:
    everything = (1 << 64) - 1  # capability 63 exists nowhere, so it is never permitted
    return _raised(libc.capset, everything, everything, 0)


def test_capset_beyond_the_permitted_set_is_eperm() -> None:
    _assert_names_call(run_in_child(_capset_beyond_permitted).result(), "capset", errno.EPERM)


def test_ptrace_of_a_process_we_do_not_trace_is_esrch() -> None:
    _assert_names_call(_raised(libc.ptrace, C.PTRACE_CONT, os.getpid()), "ptrace", errno.ESRCH)


def test_unshare_with_a_flag_it_does_not_take_is_einval() -> None:
    clone_ptrace = 0x2000  # a clone(2) flag that unshare(2) refuses
    _assert_names_call(run_in_child(_raised, libc.unshare, clone_ptrace).result(), "unshare", errno.EINVAL)


def _mount_unknown_fstype(target: str) -> tuple[int | None, str | None, str | None]:
    return _raised(libc.mount, "none", target, "memsys-no-such-fs", C.MS_NOSUID)


def test_mount_of_an_unknown_file_system_type_names_the_call(tmp_path: Path) -> None:
    """ENODEV with CAP_SYS_ADMIN; EPERM without it (checked before the type is looked up)."""
    _assert_names_call(run_in_child(_mount_unknown_fstype, str(tmp_path)).result(), "mount",
                       errno.ENODEV, errno.EPERM)


def test_mount_rejects_nul_bytes_and_a_missing_target() -> None:
    with pytest.raises(ValueError, match="mount: target"):
        libc.mount(None, "/tmp/a\0b", "tmpfs")
    untyped_mount: Any = libc.mount  # a wrong type on purpose
    with pytest.raises(TypeError, match="mount: target"):
        untyped_mount(None, None, "tmpfs")


def test_seccomp_door_binds_with_explicit_types_and_names_failures() -> None:
    try:
        lib = seccomp.load()
    except seccomp.LibseccompMissing as error:
        pytest.skip(f"needs:libseccomp ({error})")
    assert lib._init.restype is ctypes.c_void_p and list(lib._init.argtypes) == [ctypes.c_uint32]
    assert lib._load.restype is ctypes.c_int and list(lib._load.argtypes) == [ctypes.c_void_p]
    assert lib.resolve_name("no_such_call") < 0 and lib.resolve_name("mmap") == C.SYS_mmap
    context = lib.init(C.SCMP_ACT_ALLOW)
    try:
        # A rule whose action is the filter's default action is refused with EACCES.
        _assert_names_call(_raised(lib.rule_add, context, C.SCMP_ACT_ALLOW, C.SYS_mmap, []),
                           "seccomp_rule_add_array", errno.EACCES)
    finally:
        lib.release(context)


# --- the door is the only door ------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]
_RAW_LIBRARY = re.compile(r"\b(?:ctypes\.)?(?:CDLL|PyDLL|cdll|pydll)\b|ctypes\.pythonapi")
_REDEFINED = re.compile(r"^(?:PAGE|PAGE_SIZE|P|RW|ANON)\s*(?::[^=]*)?=", re.MULTILINE)


def _sources(*folders: str) -> list[Path]:
    return [path for folder in folders for path in sorted((ROOT / folder).rglob("*.py"))]


def test_no_raw_library_loading_outside_the_kernel_door() -> None:
    kernel = ROOT / "pytest_memsyscalls" / "kernel"
    offenders = [f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
                 for path in _sources("pytest_memsyscalls", "conformance", "examples") if kernel not in path.parents
                 for number, line in enumerate(path.read_text().splitlines(), 1) if _RAW_LIBRARY.search(line)]
    assert offenders == []


def test_page_rw_and_anon_are_defined_once() -> None:
    """PAGE is kernel/pages.py's PAGE_SIZE (the runtime page size, re-exported as
    libc.PAGE_SIZE), RW and ANON are in kernel/constants.py."""
    kernel = ROOT / "pytest_memsyscalls" / "kernel"
    allowed = {kernel / "pages.py", kernel / "libc.py", kernel / "constants.py"}
    offenders = [f"{path.relative_to(ROOT)}: {match.group(0)}"
                 for path in _sources("pytest_memsyscalls", "conformance", "examples", "bench", "tests")
                 if path not in allowed for match in _REDEFINED.finditer(path.read_text())]
    assert offenders == []
    assert os.sysconf("SC_PAGE_SIZE") == libc.PAGE_SIZE
    assert (C.RW, C.ANON) == (C.PROT_READ | C.PROT_WRITE, C.MAP_PRIVATE | C.MAP_ANONYMOUS)


# --- newer memory calls: mseal, memfd_create and seals, memfd_secret, pidfd_open, process_madvise

def test_syscall6_binding_is_its_own_function_object() -> None:
    assert libc._syscall6 is not libc._syscall
    assert libc._syscall6.restype is ctypes.c_long and len(libc._syscall6.argtypes) == 7
    assert list(libc._syscall.argtypes) == [ctypes.c_long] * 4


def test_mseal_bad_flags_names_the_call() -> None:
    _assert_names_call(_raised(libc.mseal, 0, 0, 1), "mseal", errno.EINVAL, errno.ENOSYS)


def test_mseal_of_an_empty_range_succeeds_or_is_missing() -> None:
    try:
        libc.mseal(0, 0)
    except OSError as error:
        assert error.errno == errno.ENOSYS


def test_memfd_create_returns_a_named_memfd_with_seals() -> None:
    fd = libc.memfd_create("memsys-libc-test", C.MFD_ALLOW_SEALING | C.MFD_CLOEXEC)
    try:
        assert os.readlink(f"/proc/self/fd/{fd}") == "/memfd:memsys-libc-test (deleted)"
        assert libc.get_seals(fd) == 0
        libc.add_seals(fd, C.F_SEAL_SEAL)
        assert libc.get_seals(fd) == C.F_SEAL_SEAL
        _assert_names_call(_raised(libc.add_seals, fd, C.F_SEAL_WRITE), "fcntl(F_ADD_SEALS)", errno.EPERM)
    finally:
        os.close(fd)


def test_memfd_create_rejects_nul_and_names_the_call() -> None:
    with pytest.raises(ValueError, match="memfd_create"):
        libc.memfd_create("a\0b")
    _assert_names_call(_raised(libc.memfd_create, "x", 0x100), "memfd_create", errno.EINVAL)


def test_memfd_secret_bad_flags_names_the_call() -> None:
    _assert_names_call(_raised(libc.memfd_secret, 1), "memfd_secret", errno.EINVAL, errno.ENOSYS)


def test_pidfd_open_of_no_such_process_is_esrch() -> None:
    _assert_names_call(_raised(libc.pidfd_open, 0x3FFFFFF0), "pidfd_open", errno.ESRCH, errno.EINVAL)


def test_process_madvise_counts_bytes_and_names_the_call() -> None:
    addr = libc.mmap(0, 3 * libc.PAGE_SIZE, RW, ANON)
    pidfd = libc.pidfd_open(os.getpid())
    try:
        page = libc.PAGE_SIZE
        assert libc.process_madvise(pidfd, [(addr, page), (addr + 2 * page, page)], C.MADV_COLD) == 2 * page
        assert libc.process_madvise(pidfd, [], C.MADV_COLD) == 0
        _assert_names_call(_raised(libc.process_madvise, pidfd, [(addr, page)], C.MADV_COLD, 1),
                           "process_madvise", errno.EINVAL)
    finally:
        os.close(pidfd)
        libc.munmap(addr, 3 * libc.PAGE_SIZE)



# --- protection keys -----------------------------------------------------------------

def test_pkey_bindings_have_explicit_types() -> None:
    assert libc._syscall_pkey.restype is ctypes.c_long
    assert list(libc._syscall_pkey.argtypes) == [ctypes.c_long] * 5
    assert libc._syscall.argtypes == [ctypes.c_long] * 4  # the other syscall binding is its own object


def test_pkey_mprotect_minus_one_is_mprotect_and_failures_name_the_call() -> None:
    addr = libc.mmap(0, libc.PAGE_SIZE, RW, ANON)
    try:
        libc.pkey_mprotect(addr, libc.PAGE_SIZE, C.PROT_READ, -1)
        entry = procfs.vma_at(addr)
        assert entry is not None and entry.perms == "r--p"
        _assert_names_call(_raised(libc.pkey_mprotect, addr + 1, libc.PAGE_SIZE, C.PROT_READ, -1),
                           "pkey_mprotect", errno.EINVAL)
    finally:
        libc.munmap(addr, libc.PAGE_SIZE)
    with pytest.raises(ValueError, match="pkey_mprotect: pkey must fit in a C int"):
        libc.pkey_mprotect(addr, libc.PAGE_SIZE, C.PROT_READ, 1 << 40)


def test_pkey_alloc_and_free_failures_name_the_call() -> None:
    _assert_names_call(_raised(libc.pkey_alloc, 1, 0), "pkey_alloc", errno.EINVAL, errno.ENOSYS)
    _assert_names_call(_raised(libc.pkey_free, 15), "pkey_free", errno.EINVAL, errno.ENOSYS)
    with pytest.raises(ValueError, match="pkey_alloc: flags must be >= 0"):
        libc.pkey_alloc(-1, 0)



def test_mprotect_alternate_splits_every_other_page_and_reports_the_stop() -> None:
    addr = libc.mmap(0, 7 * libc.PAGE_SIZE, C.PROT_NONE, ANON)
    try:
        done, error = libc.mprotect_alternate(addr, 7, C.PROT_READ)
        assert (done, error) == (3, None)
        perms = [entry.perms for entry in procfs.read_maps()
                 if addr <= entry.start < addr + 7 * libc.PAGE_SIZE]
        assert perms == ["---p", "r--p"] * 3 + ["---p"]
    finally:
        libc.munmap(addr, 7 * libc.PAGE_SIZE)
    done, error = libc.mprotect_alternate(1 << 63, 3, C.PROT_READ)  # never mapped: ENOMEM
    assert done == 0 and error is not None and error.errno == errno.ENOMEM
    assert "mprotect(" in str(error)
    with pytest.raises(ValueError):
        libc.mprotect_alternate(addr + 1, 3, C.PROT_READ)


# --- what the kernel hands back is checked before anything touches it ------------------------

def test_a_misplaced_mapping_is_a_failed_expectation_not_a_crash() -> None:
    """The door's own check, fed what a misbehaving kernel would return (the fault-injection
    harness makes a real kernel do it): another address than MAP_FIXED asked for, an
    unaligned one, one with nothing mapped."""
    page = libc.PAGE_SIZE
    addr = libc.mmap(0, 2 * page, RW, ANON)
    try:
        args = (addr, page, RW, ANON | C.MAP_FIXED, -1, 0)
        libc._check_placed("mmap", args, addr, page, addr, "MAP_FIXED")  # as asked: nothing to say
        with pytest.raises(Misplaced, match=rf"returned {addr + page:#x}, but MAP_FIXED demands {addr:#x}") as wrong:
            libc._check_placed("mmap", args, addr + page, page, addr, "MAP_FIXED")
        assert wrong.value.returned == addr + page and isinstance(wrong.value, ExpectationFailed)
        with pytest.raises(Misplaced, match="not page-aligned"):
            libc._check_placed("mmap", args, addr + 8, page, None, "")
    finally:
        libc.munmap(addr, 2 * page)
    with pytest.raises(Misplaced, match="is not all mapped"):  # the range is gone now
        libc._check_placed("mremap", (addr, page, page, 0, 0), addr, page, None, "")
