"""The in-process fault probe: read, write or execute one address and learn whether
it faulted, with the signal, ``si_code`` and ``si_addr`` the kernel reported.

Each function returns ``None`` when the access completed and a :class:`Fault`
otherwise, so an assertion reads as the semantic does::

    assert probe.write(m.addr, 1) == Fault(SIGSEGV, SEGV_ACCERR, m.addr)

Reads are always safe. A write or an execute that *succeeds* changes or runs
memory, so both refuse addresses that lie in writable (for write) or executable
(for execute) memory this package did not map: the interpreter's own heap, stack
and code. Pass ``foreign=True`` to probe memory another library mapped for you.
"""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING, NamedTuple

from . import libc, native, procfs
from .constants import ARCH, signal_code_name

if TYPE_CHECKING:
    from . import _probe
else:  # a missing build is one line naming the command that makes it, not a circular-import message
    _probe = native.load_probe()


class Fault(NamedTuple):
    """A fault as the kernel described it in siginfo: signal, si_code, si_addr.

    A NamedTuple rather than a dataclass because the probe builds one per fault and
    its cost is the probe's cost."""

    signo: int
    code: int
    addr: int

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signo).name if self.signo in _SIGNALS else str(self.signo)

    @property
    def code_name(self) -> str:
        return signal_code_name(self.signo, self.code)

    def __str__(self) -> str:
        return f"{self.signal_name} ({self.code_name}) at {self.addr:#x}"

    def __repr__(self) -> str:
        return f"Fault({self.signal_name}, {self.code_name}, {self.addr:#x})"


_SIGNALS = {int(s) for s in signal.Signals}


class ProbeRefused(ValueError):
    """The probe would have written into or run memory the interpreter owns."""


def _check_foreign(call: str, addr: int, dangerous_perm: str) -> None:
    if libc.owned.contains(addr) or not libc.is_mapped(addr):
        return  # ours, or nothing there: the access can only fault
    entry = procfs.vma_at(addr)
    if entry is None:
        return
    if (dangerous_perm == "w" and entry.writable) or (dangerous_perm == "x" and entry.executable):
        raise ProbeRefused(
            f"probe.{call}: {addr:#x} lies in {entry.perms} memory this package did not map "
            f"({entry.path or 'anonymous'} {entry.start:#x}-{entry.end:#x}); a successful {call} would "
            f"{'corrupt' if call == 'write' else 'run'} the interpreter's own memory. "
            "Map the memory through pytest_memsyscalls.kernel.libc, or pass foreign=True if you own it."
        )


def _target(call: str, addr: object) -> int:
    if type(addr) is int and 0 <= addr <= 0xFFFF_FFFF_FFFF_FFFF:
        return addr
    return libc._address(call, "addr", addr)


def read(addr: int) -> Fault | None:
    """Read one byte at addr; None if it was readable."""
    result = _probe.read(_target("probe.read", addr))
    return None if isinstance(result, int) else Fault._make(result)


def read_value(addr: int) -> tuple[Fault | None, int | None]:
    """Read one byte at addr: (None, byte) when readable, (Fault, None) when not."""
    result = _probe.read(_target("probe.read", addr))
    return (None, result) if isinstance(result, int) else (Fault._make(result), None)


def write(addr: int, value: int = 0, *, foreign: bool = False) -> Fault | None:
    """Write one byte at addr; None if it was writable (the byte is then stored)."""
    target = _target("probe.write", addr)
    byte = libc._integer("probe.write", "value", value)
    if not 0 <= byte <= 0xFF:
        raise ValueError(f"probe.write: value must be a byte in [0, 255], got {byte}")
    if not foreign:
        _check_foreign("write", target, "w")
    result = _probe.write(target, byte)
    return None if result is None else Fault._make(result)


def execute(addr: int, *, foreign: bool = False) -> Fault | None:
    """Call addr as a function taking and returning nothing; None if it returned.

    Only point it at a page that is not executable, or that holds a return
    instruction (``RET_INSTRUCTION``): the probe runs whatever is there.
    """
    target = _target("probe.execute", addr)
    if not foreign:
        _check_foreign("execute", target, "x")
    result = _probe.execute(target)
    return None if result is None else Fault._make(result)


# The machine code of a bare return, for pages that the execute probe should run.
# x86 ret; arm64 ret (0xd65f03c0); powerpc blr (0x4e800020), little-endian on ppc64le.
RET_INSTRUCTION = {"x86_64": b"\xc3", "aarch64": b"\xc0\x03\x5f\xd6", "ppc64le": b"\x20\x00\x80\x4e",
                   "ppc64": b"\x4e\x80\x00\x20"}.get(ARCH, b"\xc3")
