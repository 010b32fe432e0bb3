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

import ctypes
import signal
from dataclasses import dataclass

from . import libc, native, procfs
from .constants import signal_code_name


@dataclass(frozen=True)
class Fault:
    """A fault as the kernel described it in siginfo."""

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


def _fault_or_none(faulted: int, fault: native.Fault) -> Fault | None:
    return Fault(fault.signo, fault.code, fault.addr) if faulted else None


def _check_foreign(call: str, addr: int, dangerous_perm: str) -> None:
    if libc.owned.contains(addr):
        return
    entry = procfs.vma_at(addr)
    if entry is None:
        return
    if (dangerous_perm == "w" and entry.writable) or (dangerous_perm == "x" and entry.executable):
        raise ProbeRefused(
            f"probe.{call}: {addr:#x} lies in {entry.perms} memory this package did not map "
            f"({entry.path or 'anonymous'} {entry.start:#x}-{entry.end:#x}); a successful {call} would "
            f"{'corrupt' if call == 'write' else 'run'} the interpreter's own memory. "
            "Map the memory through pytest_memsyscalls.libc, or pass foreign=True if you own it."
        )


def read(addr: int) -> Fault | None:
    """Read one byte at addr; None if it was readable."""
    fault, _ = read_value(addr)
    return fault


def read_value(addr: int) -> tuple[Fault | None, int | None]:
    """Read one byte at addr: (None, byte) when readable, (Fault, None) when not."""
    target = libc._address("probe.read", "addr", addr)
    fault = native.Fault()
    value = ctypes.c_uint8()
    faulted = native.library().memsys_probe_read(target, ctypes.byref(fault), ctypes.byref(value))
    result = _fault_or_none(faulted, fault)
    return result, (None if result else value.value)


def write(addr: int, value: int = 0, *, foreign: bool = False) -> Fault | None:
    """Write one byte at addr; None if it was writable (the byte is then stored)."""
    target = libc._address("probe.write", "addr", addr)
    byte = libc._integer("probe.write", "value", value)
    if not 0 <= byte <= 0xFF:
        raise ValueError(f"probe.write: value must be a byte in [0, 255], got {byte}")
    if not foreign:
        _check_foreign("write", target, "w")
    fault = native.Fault()
    faulted = native.library().memsys_probe_write(target, byte, ctypes.byref(fault))
    return _fault_or_none(faulted, fault)


def execute(addr: int, *, foreign: bool = False) -> Fault | None:
    """Call addr as a function taking and returning nothing; None if it returned.

    Only point it at a page that is not executable, or that holds a return
    instruction (``RET_INSTRUCTION``): the probe runs whatever is there.
    """
    target = libc._address("probe.execute", "addr", addr)
    if not foreign:
        _check_foreign("execute", target, "x")
    fault = native.Fault()
    faulted = native.library().memsys_probe_execute(target, ctypes.byref(fault))
    return _fault_or_none(faulted, fault)


# The machine code of a bare return, for pages that the execute probe should run.
RET_INSTRUCTION = {"x86_64": b"\xc3", "aarch64": b"\xc0\x03\x5f\xd6"}.get(libc.C.ARCH, b"\xc3")
