"""A typed front end to memsys-brk-helper: a small process of its own for process-wide
experiments (brk, malloc, mlockall).

Some calls act on the whole calling process and cannot be studied inside the
interpreter. CPython's allocator moves the program break by itself (and moving it there
would corrupt the interpreter's heap); mlockall(MCL_CURRENT) locks and populates every
mapping of the caller, which for a forked pytest of ~50 MB means copying all of it,
while the helper is a few MB. The helper (csrc/brk_helper.c) runs a list of steps in a
fresh process that never calls malloc except in the steps that are the experiment, and
prints one JSON object. This module checks the step list *before* running it (a typo is
a ValueError naming the step, not a confusing helper error), runs the helper with an
environment stripped of glibc malloc tunables (MALLOC_*_, GLIBC_TUNABLES would change
the very defaults the malloc semantics are about), and returns frozen dataclasses.

Step language (EXPR is ``start``, ``cur``, ``slotN`` or a number, optionally ``+N``/``-N``;
PAGES is a page count; ``malloc`` and ``mmap`` fill the same numbered slots)::

    sbrk:N  brk:EXPR  rawbrk:EXPR  read:EXPR  write:EXPR=V  rlimit-data:N
    malloc:N  free:K  mallopt:P=V  trim:N  vma:EXPR
    mmap:PAGES  mmapat:EXPR,PAGES  mlockall:FLAGS  munlockall  msync:EXPR,PAGES,FLAGS  mincore:EXPR,PAGES
    vmflags:EXPR  status:NAME  fork:STEP;STEP...

``fork`` runs its steps in a forked child of the helper (which waits for it); they see
the slots made so far, and what they make stays in the child.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..environment.fingerprint import BrkHelper, Environment, detect
from ..kernel import native, procfs
from ..kernel.probe import Fault

# glibc <malloc.h> mallopt parameters (ABI values).
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3
M_MMAP_MAX = -4

SBRK_FAILED = (1 << 64) - 1  # (void *) -1 as the helper prints it
MAP_FAILED = SBRK_FAILED  # mmap's failure value is the same (void *) -1

_COUNT = r"(?:0[xX][0-9a-fA-F]+|[0-9]+)"
_NUMBER = rf"-?{_COUNT}"
_EXPR = rf"(?:(?:start|cur|slot[0-9]+)(?:[+-]{_COUNT})?|{_NUMBER})"
# kind -> the argument's form; None: the step takes no argument (and no colon).
_STEP_FORMS: dict[str, str | None] = {
    "sbrk": _NUMBER,
    "brk": _EXPR,
    "rawbrk": _EXPR,
    "read": _EXPR,
    "write": rf"{_EXPR}={_NUMBER}",
    "rlimit-data": _NUMBER,
    "malloc": _NUMBER,
    "free": r"[0-9]+",
    "mallopt": rf"{_NUMBER}={_NUMBER}",
    "trim": _NUMBER,
    "vma": _EXPR,
    "mmap": _COUNT,
    "mmapat": rf"{_EXPR},{_COUNT}",
    "mlockall": _NUMBER,
    "munlockall": None,
    "msync": rf"{_EXPR},{_COUNT},{_NUMBER}",
    "mincore": rf"{_EXPR},({_COUNT})",
    "vmflags": _EXPR,
    "status": r"[A-Za-z_][A-Za-z0-9_]{0,62}",
    "fork": r"[^;]+(?:;[^;]+){0,15}",
}
# kind -> the argument's form in error messages, as the helper's step table names it
# (EXPR for the kinds not listed).
_ARG_NAMES = {"write": "EXPR=BYTE", "mallopt": "PARAM=VALUE", "free": "SLOT",
              "sbrk": "N", "rlimit-data": "N", "malloc": "N", "trim": "N",
              "mmap": "PAGES", "mmapat": "EXPR,PAGES", "mlockall": "FLAGS", "msync": "EXPR,PAGES,FLAGS",
              "mincore": "EXPR,PAGES",
              "status": "NAME", "fork": "STEP;STEP..."}
_MAX_SLOTS = 64
_MAX_MINCORE_PAGES = 4096  # the helper's static mincore vector
_MAX_ARG = 255  # the longest comma- or semicolon-separated part the helper copies
_SCRUBBED_ENV = re.compile(r"^(MALLOC_.*|GLIBC_TUNABLES|LD_PRELOAD)$")


@dataclass(frozen=True)
class Vma:
    """The /proc/self/maps line of the helper covering an address."""

    start: int
    end: int
    perms: str
    path: str

    @property
    def length(self) -> int:
        return self.end - self.start

    def contains(self, addr: int) -> bool:
        return self.start <= addr < self.end


@dataclass(frozen=True)
class Step:
    """One step as the helper reported it; fields a step does not produce are None."""

    text: str
    kind: str
    brk_after: int
    ret: int | None = None
    errno: int | None = None
    addr: int | None = None
    fault: Fault | None = None
    value: int | None = None
    slot: int | None = None
    vma: Vma | None = None
    resident: tuple[bool, ...] | None = None
    """mincore: each page's residency (None when mincore failed)."""
    vmflags: frozenset[str] | None = None
    """vmflags: the smaps VmFlags of the covering entry (None when nothing covers the address;
    empty when the kernel prints no VmFlags line)."""
    status: str | None = None
    """status: the text after ``NAME:`` in /proc/self/status (None when the line is absent)."""
    child: tuple[Step, ...] | None = None
    """fork: the steps as the child ran them (None when fork failed)."""
    wait_status: int | None = None
    """fork: the child's wait status, as waitpid gave it to the helper."""

    @property
    def sbrk_failed(self) -> bool:
        """For sbrk: whether it returned (void *) -1."""
        return self.kind == "sbrk" and self.ret == SBRK_FAILED

    @property
    def mmap_failed(self) -> bool:
        """For mmap and mmapat: whether it returned MAP_FAILED."""
        return self.kind in ("mmap", "mmapat") and self.ret == MAP_FAILED

    @property
    def status_kb(self) -> int | None:
        """For status: the value of a ``N kB`` line (VmSize, VmLck...) in kB, else None."""
        if self.status is None:
            return None
        match = re.fullmatch(r"([0-9]+) kB", self.status)
        return int(match.group(1)) if match else None

    @property
    def child_exit_code(self) -> int | None:
        """For fork: the child's exit status, negative for a signal (os.waitstatus_to_exitcode)."""
        return None if self.wait_status is None else os.waitstatus_to_exitcode(self.wait_status)


@dataclass(frozen=True)
class BrkRun:
    """What one helper process saw: its pid, page size, initial break and every step."""

    pid: int
    page_size: int
    start: int
    steps: tuple[Step, ...]

    def __getitem__(self, index: int) -> Step:
        return self.steps[index]

    def __len__(self) -> int:
        return len(self.steps)

    @property
    def final_break(self) -> int:
        return self.steps[-1].brk_after if self.steps else self.start


def check_steps(steps: Iterable[str]) -> list[str]:
    """The steps as a list; ValueError naming the first one the helper would not accept."""
    checked: list[str] = []
    slots: list[str] = []  # the kind of step (malloc or mmap) that made each slot
    for position, step in enumerate(steps):
        if not isinstance(step, str):
            raise ValueError(f"brk helper step {position} must be a string, got {type(step).__name__} {step!r}")
        _check_step(f"brk helper step {position} {step!r}", step, slots, nested=False)
        checked.append(step)
    return checked


def _check_step(where: str, step: str, slots: list[str], *, nested: bool) -> None:
    """Check one step against the grammar and the slots made before it (appending the one it
    makes); ``where`` names the step in the ValueError."""
    kind, colon, arg = step.partition(":")
    if kind not in _STEP_FORMS or (kind == "fork" and nested):
        known = ", ".join(k if _STEP_FORMS[k] is None else k + ":" for k in _STEP_FORMS)
        raise ValueError(f"{where}: unknown step{' inside fork (no nested fork)' if nested else ''}; "
                         f"known: {known}")
    form = _STEP_FORMS[kind]
    if form is None:
        if colon:
            raise ValueError(f"{where}: {kind} takes no argument (write {kind!r}, without a colon)")
        return
    if not colon:
        raise ValueError(f"{where}: {kind} needs an argument: {kind}:{_describe(kind)}")
    match = re.fullmatch(form, arg)
    if not match or any(len(part) > _MAX_ARG for part in arg.split(";" if kind == "fork" else ",")):
        raise ValueError(f"{where}: argument {arg!r} does not match {kind}:{_describe(kind)}")
    if kind == "mincore" and int(match.group(1), 0) > _MAX_MINCORE_PAGES:
        raise ValueError(f"{where}: mincore of more than {_MAX_MINCORE_PAGES} pages")
    if kind == "fork":
        child_slots = list(slots)  # the child's slots are its own from here on
        for sub in arg.split(";"):
            _check_step(f"{where} (its step {sub!r})", sub, child_slots, nested=True)
        return
    named = re.findall(r"slot([0-9]+)", arg) + ([arg] if kind == "free" else [])
    for slot in named:
        if int(slot) >= len(slots):
            raise ValueError(f"{where}: slot {slot} is not allocated yet "
                             f"({len(slots)} malloc/mmap steps before it)")
    if kind == "free" and slots[int(arg)] != "malloc":
        raise ValueError(f"{where}: slot {arg} was made by mmap, not malloc; free() would abort")
    if kind in ("malloc", "mmap", "mmapat"):
        if len(slots) == _MAX_SLOTS:
            raise ValueError(f"{where}: more than {_MAX_SLOTS} malloc/mmap slots")
        slots.append("mmap" if kind == "mmapat" else kind)


def _describe(kind: str) -> str:
    return _ARG_NAMES.get(kind, "EXPR")


def step_table() -> list[tuple[str, str | None, bool]]:
    """Each step as (name, its argument's form or None, whether a ``fork:`` child may run
    it), in the order of the helper's own table, which ``memsys-brk-helper --steps``
    prints as JSON: tests/test_brk_helper.py checks that the two agree."""
    return [(kind, None if form is None else _describe(kind), kind != "fork") for kind, form in _STEP_FORMS.items()]


def _scrubbed_environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not _SCRUBBED_ENV.match(k)}


def run(*steps: str, timeout: float = 10.0) -> BrkRun:
    """Run the helper on ``steps`` and return what it saw.

    Raises ValueError for a step list the helper would reject, and RuntimeError when
    the helper itself fails (it should not: every step reports, it never dies).
    """
    checked = check_steps(steps)
    completed = subprocess.run([str(native.brk_helper_path()), *checked], capture_output=True,
                               timeout=timeout, env=_scrubbed_environment(), check=False)
    try:
        data = json.loads(completed.stdout)
    except json.JSONDecodeError as error:
        raise RuntimeError(f"memsys-brk-helper exited {completed.returncode} with unreadable output "
                           f"{completed.stdout[:200]!r} {completed.stderr[:200]!r}") from error
    for raw in data["steps"]:
        for seen in [raw, *(raw.get("child") or ())]:
            if "error" in seen:
                raise ValueError(f"memsys-brk-helper rejected step {seen['step']!r}: {seen['error']}")
    if completed.returncode != 0:
        raise RuntimeError(f"memsys-brk-helper exited {completed.returncode}: {completed.stderr[:200]!r}")
    return BrkRun(int(data["pid"]), int(data["page_size"]), int(data["start"]),
                  tuple(_step(raw) for raw in data["steps"]))


def _step(raw: dict[str, Any]) -> Step:
    fault = raw.get("fault")
    vma = raw.get("vma")
    resident = raw.get("resident")
    vmflags = raw.get("vmflags")
    child = raw.get("child")
    return Step(
        text=raw["step"],
        kind=raw["step"].partition(":")[0],
        brk_after=int(raw["brk_after"]),
        ret=raw.get("ret"),
        errno=raw.get("errno"),
        addr=raw.get("addr"),
        fault=Fault(fault["signo"], fault["code"], fault["addr"]) if fault else None,
        value=raw.get("value"),
        slot=raw.get("slot"),
        vma=Vma(vma["start"], vma["end"], vma["perms"], vma["path"]) if vma else None,
        resident=tuple(bool(page) for page in resident) if resident is not None else None,
        vmflags=frozenset(vmflags) if vmflags is not None else None,
        status=raw.get("status"),
        child=tuple(_step(sub) for sub in child) if child is not None else None,
        wait_status=raw.get("wait_status"),
    )


@functools.cache
def helper_facts() -> BrkHelper:
    """The helper as it is before any experiment (environment.fingerprint.BrkHelper),
    asked once per process: its VmSize and its CapEff, from a run of its own."""
    probe = run("status:VmSize", "status:CapEff")
    vmsize_kb, capeff = probe[0].status_kb, probe[1].status
    caps = procfs.decode_capabilities(capeff) if capeff is not None else frozenset()
    in_userns = detect().capabilities.user_namespace
    return BrkHelper(None if vmsize_kb is None else vmsize_kb * 1024, "CAP_IPC_LOCK" in caps and not in_userns)


def with_helper_facts(env: Environment) -> Environment:
    """``env`` with the brk helper's facts, so that everything an expectation depends on is
    in the fingerprint (``memsyscalls env``, the report); where the helper cannot run, the
    fingerprint says why in ``unknown``."""
    try:
        return dataclasses.replace(env, brk_helper=helper_facts())
    except (OSError, RuntimeError, ValueError, subprocess.TimeoutExpired) as error:
        return dataclasses.replace(env, unknown={**env.unknown, "brk_helper": f"{type(error).__name__}: {error}"})
