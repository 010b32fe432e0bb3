"""A test that hangs or whose syscalls misbehave ends with a clear failure within its
timeout, and the session goes on (issue 8).

The inner session (a pytester subprocess) has a child that blocks forever, a child
whose mmap a seccomp filter answers with EAGAIN forever (a retry loop spins), a child
that a seccomp filter kills at munmap, an ``expect_signal`` block that never faults,
and then an ordinary test that must still run and pass. The filters are raw classic-BPF
programs loaded with prctl through ctypes, in the forked child only.
"""

from __future__ import annotations

import pytest

from pytest_memsyscalls import run_in_child

SECCOMP_HELPERS = r'''
import ctypes, errno, os, platform, struct

from pytest_memsyscalls import constants as C
from pytest_memsyscalls.kernel import libc as libc_door
SECCOMP_RET_KILL_PROCESS, SECCOMP_RET_ERRNO, SECCOMP_RET_ALLOW = 0x80000000, 0x00050000, 0x7FFF0000
AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install(syscall, action):
    """Filter: on this arch, ``syscall`` gets ``action``; everything else is allowed."""
    ld_abs, jeq, ret = 0x20, 0x15, 0x06
    program = [(ld_abs, 0, 0, 4), (jeq, 0, 3, AUDIT_ARCH[platform.machine()]), (ld_abs, 0, 0, 0),
               (jeq, 0, 1, syscall), (ret, 0, 0, action), (ret, 0, 0, SECCOMP_RET_ALLOW)]
    raw = b"".join(struct.pack("HBBI", *insn) for insn in program)
    buffer = ctypes.create_string_buffer(raw)
    prog = SockFprog(len(program), ctypes.addressof(buffer))
    libc_door.prctl(C.PR_SET_NO_NEW_PRIVS, 1)
    libc_door.prctl(C.PR_SET_SECCOMP, C.SECCOMP_MODE_FILTER, ctypes.addressof(prog))
'''

INNER = SECCOMP_HELPERS + r'''
import select, signal

from pytest_memsyscalls import expect_signal, libc, run_in_child


def block_forever():
    read_end, _ = os.pipe()
    os.read(read_end, 1)  # nobody ever writes


def retry_mmap_forever():
    install(C.SYS_mmap, SECCOMP_RET_ERRNO | errno.EAGAIN)
    while True:  # "EAGAIN: try again", as a naive caller would, forever
        try:
            return libc.mmap(0, 4096, C.PROT_READ, C.MAP_PRIVATE | C.MAP_ANONYMOUS)
        except BlockingIOError:
            continue


def killed_at_munmap():
    install(C.SYS_munmap, SECCOMP_RET_KILL_PROCESS)
    libc.munmap(0x10000, 4096)


def test_blocks_forever():
    run_in_child(block_forever, timeout=0.5).result()


def test_mmap_keeps_failing_with_eagain():
    run_in_child(retry_mmap_forever, timeout=0.5).result()


def test_killed_by_seccomp_at_munmap():
    run_in_child(killed_at_munmap, timeout=5).result()


def test_expect_signal_block_that_blocks():
    with expect_signal(signal.SIGSEGV, timeout=0.5):
        select.select([], [], [])


def test_next_test_still_runs(mapped_pages):
    assert mapped_pages(1).write(0, 7) is None
'''


def _seccomp_filter_probe() -> str | None:
    """Can a child load an allow-everything-but-one filter? (probe on a harmless syscall)"""
    namespace: dict[str, object] = {}
    exec(SECCOMP_HELPERS, namespace)

    def load() -> None:
        install = namespace["install"]
        assert callable(install)
        install(0xFFFF, namespace["SECCOMP_RET_ALLOW"])  # an unused number: changes nothing

    outcome = run_in_child(load, timeout=10)
    return None if outcome.returned else f"unsupported:seccomp filter ({outcome.describe()})"


def test_hangs_and_misbehaving_syscalls_fail_clearly_and_the_session_goes_on(pytester: pytest.Pytester) -> None:
    missing = _seccomp_filter_probe()
    if missing:
        pytest.skip(missing)
    pytester.makepyfile(test_inner=INNER)
    result = pytester.runpytest_subprocess("-p", "no:randomly", "-p", "no:cacheprovider", timeout=60)
    result.assert_outcomes(failed=4, passed=1)
    result.stdout.fnmatch_lines([  # in order: each failure block names its test, then how it ended
        "*_ test_blocks_forever _*", "E *ChildFailed: TIMED OUT after 0.5 s (killed with its process group)",
        "*_ test_mmap_keeps_failing_with_eagain _*", "E *ChildFailed: TIMED OUT after 0.5 s*",
        "*_ test_killed_by_seccomp_at_munmap _*", "E *ChildFailed: CRASHED with signal 31 (SIGSYS)",
        "*_ test_expect_signal_block_that_blocks _*",
        "E *SignalExpectationFailed: expected the block to die of SIGSEGV; it TIMED OUT after 0.5 s*",
    ])
    assert "left behind" not in result.stdout.str()  # the killed children were reaped, nothing leaked
