"""brk.py's step grammar for the process-wide steps (mmap, mlockall, vmflags, fork...).

A step list is checked before the helper runs: a bad step is a ValueError naming the
step (and, inside ``fork:``, the sub-step), because the helper itself can only say
"cannot parse". One run checks that each new step reports what the grammar promises.
"""

from __future__ import annotations

import errno
import json
import subprocess

import pytest

from pytest_memsyscalls.kernel import constants as C
from pytest_memsyscalls.kernel import native
from pytest_memsyscalls.memory import brk

BAD_STEPS = [
    ("munlockall:", "takes no argument"),
    ("mlockall", "needs an argument"),
    ("mmap:-1", "does not match mmap:PAGES"),
    ("msync:slot0,1", "does not match msync:EXPR,PAGES,FLAGS"),
    ("mincore:slot0,4097", "more than 4096 pages"),
    ("status:Vm:Size", "does not match status:NAME"),
    ("vmflags:slot1", "slot 1 is not allocated yet"),
    ("free:0", "made by mmap, not malloc"),
    ("fork:", "does not match fork:STEP;STEP..."),
    ("fork:mmap:1;;vmflags:slot0", "does not match fork:STEP;STEP..."),
    ("fork:fork:mmap:1", "no nested fork"),
    ("fork:mmap:1;bogus:1", "its step 'bogus:1'"),
    ("mmapat:start", "does not match mmapat:EXPR,PAGES"),
    ("mmapat:slot2,1", "slot 2 is not allocated yet"),
]


@pytest.mark.parametrize(("step", "why"), BAD_STEPS, ids=[step for step, _ in BAD_STEPS])
def test_bad_step_is_a_value_error_naming_it(step: str, why: str) -> None:
    with pytest.raises(ValueError) as caught:
        brk.check_steps(["mmap:1", step])
    assert repr(step) in str(caught.value) and why in str(caught.value)


def test_fork_slots_stay_in_the_child() -> None:
    """A slot made inside fork: is the child's; the parent's next slot reuses its number."""
    brk.check_steps(["fork:mmap:1;vmflags:slot0", "mmap:1", "vmflags:slot0"])
    with pytest.raises(ValueError, match="slot 0 is not allocated yet"):
        brk.check_steps(["fork:mmap:1", "vmflags:slot0"])


def test_process_wide_steps_report() -> None:
    run = brk.run("mmap:2", "write:slot0=7", "vmflags:slot0", "mincore:slot0,2",
                  f"msync:slot0,2,{C.MS_SYNC}", "msync:slot0+1,1,0x7fff", "status:VmSize", "status:NoSuchLine",
                  "fork:mmap:1;vmflags:slot1", "mlockall:0", "munlockall")
    mapped, written, flags, residency, synced, bad_flags, vmsize, missing, forked, zero, unlocked = run.steps
    assert mapped.errno == 0 and mapped.slot == 0 and not mapped.mmap_failed
    assert written.fault is None
    assert flags.vmflags is not None and {"rd", "wr"} <= flags.vmflags and "ex" not in flags.vmflags
    assert residency.resident is not None and len(residency.resident) == 2
    assert synced.ret == 0 and synced.errno == 0
    assert bad_flags.ret == -1 and bad_flags.errno == errno.EINVAL
    assert vmsize.status_kb is not None and vmsize.status_kb * 1024 >= 2 * run.page_size
    assert missing.status is None and missing.status_kb is None
    assert forked.child is not None and forked.child_exit_code == 0
    child_mmap, child_flags = forked.child
    assert child_mmap.slot == 1 and child_flags.vmflags is not None and "wr" in child_flags.vmflags
    assert zero.errno == errno.EINVAL
    assert unlocked.errno == 0


def test_brk_py_and_the_helper_know_the_same_steps() -> None:
    """brk.py checks steps by its own grammar; the helper runs them by its step table
    (printed by --steps): same names, argument forms and fork rule, in the same order."""
    listed = subprocess.run([str(native.brk_helper_path()), "--steps"], capture_output=True, check=True).stdout
    helper = [(kind["name"], kind["arg"], kind["in_fork"]) for kind in json.loads(listed)["steps"]]
    assert helper == brk.step_table()


def test_unknown_step_is_rejected_by_name() -> None:
    with pytest.raises(ValueError, match=r"brk helper step 1 'sbrk4096': unknown step; known: sbrk:, brk:, "):
        brk.check_steps(["sbrk:0", "sbrk4096"])


@pytest.mark.parametrize("step", ["bogus:1", "sbrk4096", "sbrk", "munlockall:", "brk:slot0", ""])
def test_the_helper_itself_rejects_what_it_cannot_run(step: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past brk.py's check, the helper stops at a step it does not know (or whose
    argument does not parse) with a record naming it and exit status 2, and brk.run
    turns that into a ValueError naming the step."""
    completed = subprocess.run([str(native.brk_helper_path()), "sbrk:0", step, "sbrk:0"], capture_output=True,
                               check=False)
    assert completed.returncode == 2
    assert [record["step"] for record in json.loads(completed.stdout)["steps"]] == ["sbrk:0", step]
    assert json.loads(completed.stdout)["steps"][1] == {"step": step, "error": "cannot parse step"}
    monkeypatch.setattr(brk, "check_steps", list)
    with pytest.raises(ValueError, match=f"memsys-brk-helper rejected step {step!r}: cannot parse step"):
        brk.run("sbrk:0", step)


def test_the_helpers_fork_child_rejects_a_nested_fork(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(brk, "check_steps", list)
    with pytest.raises(ValueError, match="memsys-brk-helper rejected step 'fork:sbrk:0': cannot parse step"):
        brk.run("fork:sbrk:0;fork:sbrk:0")


def test_mmapat_maps_at_the_address_and_never_replaces() -> None:
    """mmapat:EXPR,PAGES fills a slot like mmap; over an existing mapping it is EEXIST
    (MAP_FIXED_NOREPLACE), and freeing its slot is refused like an mmap slot's."""
    page = brk.run().page_size
    run = brk.run(f"mmapat:start+{16 * page},2", f"mmapat:slot0+{page},1", "write:slot0=9", "read:slot0")
    placed, refused, written, read = run.steps
    assert placed.errno == 0 and placed.slot == 0 and placed.ret == run.start + 16 * page
    assert refused.mmap_failed and refused.errno == errno.EEXIST and refused.slot == 1
    assert written.fault is None and read.value == 9
    with pytest.raises(ValueError, match="made by mmap, not malloc"):
        brk.check_steps(["mmapat:start,1", "free:0"])
