"""Conformance by model: random programs of SysV shared-memory calls — shmget, shmat
(read-write and SHM_RDONLY, at an address the kernel chooses), shmdt, shmctl(IPC_RMID),
stores through attachments, and fork — against a model of each segment (exists, marked
for destruction, nattch, first byte of each page) and of each attachment.

After every step: shmctl(IPC_STAT) agrees with the model on nattch and SHM_DEST (and a
destroyed segment's id is EINVAL), every attachment reads the segment's bytes, a store
through a read-only attachment faults with SEGV_ACCERR at its address. Every segment is
removed and every attachment detached when a program ends (teardown).

The test that runs it is test_model_sysv.py.
"""

from __future__ import annotations

import errno
import signal
from dataclasses import dataclass, field

from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    precondition,
    rule,
)

from pytest_memsyscalls.kernel import constants as C
from pytest_memsyscalls.kernel import libc, probe
from pytest_memsyscalls.kernel.libc import PAGE_SIZE as P
from pytest_memsyscalls.kernel.probe import Fault
from pytest_memsyscalls.memory.child import run_in_child
from pytest_memsyscalls.memory.shm import ShmSegment

MAX_SEGMENTS = 3
MAX_ATTACHMENTS = 6
FORKS_PER_PROGRAM = 1


@dataclass(eq=False)
class Segment:
    """The model of one segment, with the real ShmSegment it shadows."""

    real: ShmSegment
    pages: int
    data: list[int]
    removed: bool = False  # IPC_RMID was called
    attachments: list[Attachment] = field(default_factory=list)

    @property
    def exists(self) -> bool:
        """shmctl(2) IPC_RMID: destroyed after the last detach; until then only marked."""
        return not (self.removed and not self.attachments)

    def __repr__(self) -> str:
        return f"Segment(pages={self.pages}, removed={self.removed}, nattch={len(self.attachments)})"


@dataclass(eq=False)
class Attachment:
    segment: Segment
    addr: int
    readonly: bool

    def __repr__(self) -> str:
        return f"Attachment({'ro' if self.readonly else 'rw'}, {self.segment!r})"


class SysvMachine(RuleBasedStateMachine):
    """Every program starts with no segments and ends with none."""

    segments = Bundle("segments")
    attachments = Bundle("attachments")

    def __init__(self) -> None:
        super().__init__()
        self.all: list[Segment] = []
        self.forks = 0

    def teardown(self) -> None:
        for seg in self.all:
            for att in list(seg.attachments):
                libc.shmdt(att.addr)
            seg.real.attachments.clear()
            seg.real.remove()

    def live(self) -> list[Segment]:
        return [s for s in self.all if s.exists]

    def attached(self) -> list[Attachment]:
        return [a for s in self.all for a in s.attachments]

    @precondition(lambda self: len(self.live()) < MAX_SEGMENTS)
    @rule(target=segments, pages=st.integers(1, 2))
    def create(self, pages: int) -> Segment:
        """shmget(IPC_PRIVATE) makes a zero-filled segment with nattch 0 (shmget(2))."""
        seg = Segment(ShmSegment(pages * P), pages, [0] * pages)
        self.all.append(seg)
        return seg

    @precondition(lambda self: len(self.attached()) < MAX_ATTACHMENTS)
    @rule(target=attachments, seg=segments, readonly=st.booleans())
    def attach(self, seg: Segment, readonly: bool) -> Attachment | None:
        """shmat succeeds while the segment exists, also once it is marked for destruction
        (Linux-specific); after destruction its id is EINVAL (shmat(2))."""
        flags = C.SHM_RDONLY if readonly else 0
        try:
            addr = libc.shmat(seg.real.shmid, 0, flags)
            got = None
        except OSError as error:
            got, addr = error.errno, 0
        if seg.exists:
            ident = "shmat.marked_for_destruction.linux_allows" if seg.removed else "shmat.existing.succeeds"
            assert got is None, f"{ident}: shmat({seg!r}) gave {errno.errorcode.get(got or 0)}"
            att = Attachment(seg, addr, readonly)
            seg.attachments.append(att)
            return att
        if got is None:  # keep the bookkeeping right before failing
            libc.shmdt(addr)
        assert got == errno.EINVAL, (f"shmat.destroyed.einval: shmat on destroyed {seg!r} gave "
                                     f"{errno.errorcode.get(got or 0, 'success')}")
        return None

    @rule(att=consumes(attachments))
    def detach(self, att: Attachment | None) -> None:
        """shmdt decrements nattch and unmaps the attachment: access then faults with
        SEGV_MAPERR (shmdt(2)); the segment is destroyed if marked and now unattached."""
        if att is None:
            return
        libc.shmdt(att.addr)
        att.segment.attachments.remove(att)
        got = probe.read(att.addr)
        assert got == Fault(signal.SIGSEGV, C.SEGV_MAPERR, att.addr), (
            f"shmdt.unmaps.read_faults_maperr: reading a detached attachment gave {got or 'no fault'}")

    @rule(seg=segments)
    def remove(self, seg: Segment) -> None:
        """IPC_RMID marks the segment (SHM_DEST); it is destroyed after the last detach;
        on a destroyed segment's id it is EINVAL (shmctl(2))."""
        existed = seg.exists
        try:
            libc.shmctl(seg.real.shmid, C.IPC_RMID)
            got = None
        except OSError as error:
            got = error.errno
        expected = None if existed else errno.EINVAL
        ident = "shmctl.rmid.marks_segment" if existed else "shmctl.rmid.destroyed_einval"
        assert got == expected, f"{ident}: IPC_RMID on {seg!r} gave {errno.errorcode.get(got or 0, 'success')}"
        seg.removed = True
        seg.real.removed = True

    @rule(att=attachments, page=st.integers(0, 1), value=st.integers(1, 255))
    def store(self, att: Attachment | None, page: int, value: int) -> None:
        """A store through a read-write attachment shows through every attachment; through a
        SHM_RDONLY one it faults with SEGV_ACCERR (shmat(2))."""
        if att is None or att not in att.segment.attachments:
            return
        page %= att.segment.pages
        addr = att.addr + page * P
        got = probe.write(addr, value)
        if att.readonly:
            assert got == Fault(signal.SIGSEGV, C.SEGV_ACCERR, addr), (
                f"shmat.rdonly.write_faults_accerr: store through a read-only attachment gave {got or 'no fault'}")
        else:
            assert got is None, f"shmat.readwrite.write_succeeds: store gave {got}"
            att.segment.data[page] = value

    @precondition(lambda self: self.forks < FORKS_PER_PROGRAM)
    @rule(value=st.integers(1, 255))
    def fork(self, value: int) -> None:
        """fork(2) children inherit attachments (nattch counts them, shmat(2) NOTES: "After a
        fork(2), the child inherits the attached shared memory segments"); a child's store
        through a read-write attachment reaches the parent; at the child's exit its
        attachments are detached."""
        self.forks += 1
        targets = [(a.segment.real.shmid, a.addr) for a in self.attached()]
        writable = next((a for a in self.attached() if not a.readonly), None)
        outcome = run_in_child(_child_stats_and_stores, targets, writable.addr if writable else None, value)
        assert outcome.returned, f"fork.child_runs: {outcome.describe()}"
        for (shmid, _), nattch in zip(targets, outcome.value, strict=True):
            seg = next(a.segment for a in self.attached() if a.segment.real.shmid == shmid)
            assert nattch == 2 * len(seg.attachments), (
                f"fork.child_inherits_attachments: in the child, nattch of {seg!r} is {nattch}, the model "
                f"predicts {2 * len(seg.attachments)}")
        if writable is not None:
            writable.segment.data[0] = value

    @invariant()
    def kernel_agrees(self) -> None:
        for seg in self.all:
            try:
                stat = seg.real.stat()
            except OSError as error:
                assert not seg.exists and error.errno == errno.EINVAL, (
                    f"shmctl.ipc_stat.{'existing' if seg.exists else 'destroyed'}: IPC_STAT on {seg!r} gave "
                    f"{errno.errorcode.get(error.errno or 0)}")
                continue
            assert seg.exists, f"shmctl.rmid.destroys_after_last_detach: {seg!r} still exists ({stat})"
            assert stat.nattch == len(seg.attachments), (
                f"shmctl.ipc_stat.nattch_counts_attachments: nattch {stat.nattch}, the model {seg!r}")
            assert stat.marked_for_destruction == seg.removed, (
                f"shmctl.rmid.sets_shm_dest: SHM_DEST is {stat.marked_for_destruction}, the model {seg!r}")
        for att in self.attached():
            for page in range(att.segment.pages):
                fault, byte = probe.read_value(att.addr + page * P)
                assert fault is None and byte == att.segment.data[page], (
                    f"shmat.attachments_share_contents: page {page} of {att!r} reads {fault or byte}, the model "
                    f"{att.segment.data[page]}")


def _child_stats_and_stores(targets: list[tuple[int, int]], writable: int | None, value: int) -> list[int]:
    """In the forked child: nattch of each attached segment, then one store."""
    counts = [libc.shm_stat(shmid).shm_nattch for shmid, _ in targets]
    if writable is not None:
        probe.write(writable, value)
    return counts
