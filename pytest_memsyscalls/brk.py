"""A typed front end to memsys-brk-helper: brk/sbrk/malloc experiments in a process of their own.

CPython's allocator moves the program break by itself, so the break cannot be studied
inside the interpreter (and moving it there would corrupt the interpreter's heap). The
helper (csrc/brk_helper.c) runs a list of steps in a fresh process that never calls
malloc except in the steps that are the experiment, and prints one JSON object. This
module checks the step list *before* running it (a typo is a ValueError naming the
step, not a confusing helper error), runs the helper with an environment stripped of
glibc malloc tunables (MALLOC_*_, GLIBC_TUNABLES would change the very defaults the
malloc semantics are about), and returns frozen dataclasses.

Step language (EXPR is ``start``, ``cur``, ``slotN`` or a number, optionally ``+N``/``-N``)::

    sbrk:N  brk:EXPR  rawbrk:EXPR  read:EXPR  write:EXPR=V  rlimit-data:N
    malloc:N  free:K  mallopt:P=V  trim:N  vma:EXPR
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from . import native
from .probe import Fault

# glibc <malloc.h> mallopt parameters (ABI values).
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3
M_MMAP_MAX = -4

SBRK_FAILED = (1 << 64) - 1  # (void *) -1 as the helper prints it

_NUMBER = r"-?(?:0[xX][0-9a-fA-F]+|[0-9]+)"
_EXPR = rf"(?:(?:start|cur|slot[0-9]+)(?:[+-](?:0[xX][0-9a-fA-F]+|[0-9]+))?|{_NUMBER})"
_STEP_FORMS: dict[str, str] = {
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
}
_MAX_SLOTS = 64
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

    @property
    def sbrk_failed(self) -> bool:
        """For sbrk: whether it returned (void *) -1."""
        return self.kind == "sbrk" and self.ret == SBRK_FAILED


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
    mallocs = 0
    for position, step in enumerate(steps):
        if not isinstance(step, str):
            raise ValueError(f"brk helper step {position} must be a string, got {type(step).__name__} {step!r}")
        kind, colon, arg = step.partition(":")
        form = _STEP_FORMS.get(kind)
        if not colon or form is None:
            raise ValueError(f"brk helper step {position} {step!r}: unknown step; known: "
                             f"{', '.join(k + ':' for k in _STEP_FORMS)}")
        if not re.fullmatch(form, arg):
            raise ValueError(f"brk helper step {position} {step!r}: argument {arg!r} does not match "
                             f"{kind}:{_describe(kind)}")
        if kind == "malloc":
            mallocs += 1
            if mallocs > _MAX_SLOTS:
                raise ValueError(f"brk helper step {position} {step!r}: more than {_MAX_SLOTS} malloc slots")
        for slot in re.findall(r"slot([0-9]+)", arg) + ([arg] if kind == "free" else []):
            if int(slot) >= mallocs:
                raise ValueError(f"brk helper step {position} {step!r}: slot {slot} is not allocated yet "
                                 f"({mallocs} malloc steps before it)")
        checked.append(step)
    return checked


def _describe(kind: str) -> str:
    return {"write": "EXPR=BYTE", "mallopt": "PARAM=VALUE", "free": "SLOT",
            "sbrk": "N", "rlimit-data": "N", "malloc": "N", "trim": "N"}.get(kind, "EXPR")


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
        if "error" in raw:
            raise ValueError(f"memsys-brk-helper rejected step {raw['step']!r}: {raw['error']}")
    if completed.returncode != 0:
        raise RuntimeError(f"memsys-brk-helper exited {completed.returncode}: {completed.stderr[:200]!r}")
    return BrkRun(int(data["pid"]), int(data["page_size"]), int(data["start"]),
                  tuple(_step(raw) for raw in data["steps"]))


def _step(raw: dict[str, Any]) -> Step:
    fault = raw.get("fault")
    vma = raw.get("vma")
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
    )
