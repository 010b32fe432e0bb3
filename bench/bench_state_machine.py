"""Steps per second of the address-space state machine (conformance/_model_address_space.py).

Two numbers: the machine driven by Hypothesis (generation, rule selection and shrinking
bookkeeping included: what a test run pays), and the machine alone (its calls, probes
and /proc/self/maps checks, driven by a plain seeded random program) to show where the
time goes. Writes its section of bench/README.md.
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pytest_memsyscalls.conformance import _model_address_space as M
from readme_section import machine_line, replace_section

from pytest_memsyscalls.kernel import constants as C
from pytest_memsyscalls.memory.strategies import invalid_calls, msync_flags, protections


class Counting(M.AddressSpaceMachine):
    """Counts the rules run, from the machine's own check counter: an extra
    @invariant to count would add Hypothesis' per-invariant cost to every step."""

    rules_run = 0

    def teardown(self) -> None:
        type(self).rules_run += max(0, self.steps - 1)  # one check follows start(), one each rule
        super().teardown()


class Hollow(RuleBasedStateMachine):
    """The address-space machine's rules, argument strategies, precondition and
    invariant with empty bodies: what Hypothesis itself costs per step (drawing the
    rule and its arguments, running the invariant hook). Kept in step with the
    machine by ``check_hollow_matches``."""

    rules_run = 0
    forks = 0
    PAGE, COUNT = M.AddressSpaceMachine.PAGE, M.AddressSpaceMachine.COUNT

    def ran(self) -> None:
        type(self).rules_run += 1

    @initialize()
    def start(self) -> None:
        pass

    @rule(page=PAGE, pages=COUNT, prot=protections(), kind=st.sampled_from(M.KINDS),
          offset=st.integers(0, M.FILE_PAGES - 1))
    def mmap_fixed(self, page: int, pages: int, prot: int, kind: str, offset: int) -> None:
        self.ran()

    @rule(page=PAGE, pages=COUNT)
    def munmap(self, page: int, pages: int) -> None:
        self.ran()

    @rule(page=PAGE, pages=COUNT, prot=protections())
    def mprotect(self, page: int, pages: int, prot: int) -> None:
        self.ran()

    @rule(page=PAGE, want=COUNT, new_pages=st.integers(1, M.MAX_RUN + 1))
    def mremap_in_place(self, page: int, want: int, new_pages: int) -> None:
        self.ran()

    @rule(page=PAGE, want=COUNT, new_pages=COUNT, dest=PAGE)
    def mremap_move(self, page: int, want: int, new_pages: int, dest: int) -> None:
        self.ran()

    @rule(page=PAGE, pages=COUNT)
    def madvise_dontneed(self, page: int, pages: int) -> None:
        self.ran()

    @rule(page=PAGE, pages=COUNT, flags=msync_flags())
    def msync(self, page: int, pages: int, flags: int) -> None:
        self.ran()

    @rule(page=PAGE, value=st.one_of(st.just(0xC3), st.integers(0, 255)))
    def write(self, page: int, value: int) -> None:
        self.ran()

    @rule(index=st.integers(0, M.FILE_PAGES - 1), value=st.integers(0, 255))
    def pwrite_file(self, index: int, value: int) -> None:
        self.ran()

    @rule(relative=invalid_calls(0, M.N))
    def invalid_call(self, relative: object) -> None:
        self.ran()

    @precondition(lambda self: self.forks < M.FORKS_PER_PROGRAM)
    @rule(page=PAGE, value=st.integers(0, 255))
    def fork_and_check(self, page: int, value: int) -> None:
        self.forks += 1
        self.ran()

    @invariant()
    def kernel_agrees(self) -> None:
        pass


def check_hollow_matches() -> None:
    """The hollow machine must have exactly the real machine's rules."""
    def names(machine: type[RuleBasedStateMachine]) -> set[str]:
        return {name for name, value in vars(machine).items() if hasattr(value, "hypothesis_stateful_rule")}
    if names(Hollow) != names(M.AddressSpaceMachine):
        raise SystemExit(f"bench_state_machine: Hollow's rules {sorted(names(Hollow))} differ from the machine's "
                         f"{sorted(names(M.AddressSpaceMachine))}")


def with_hypothesis(examples: int, steps: int, machine: type[Counting] | type[Hollow] = Counting) -> float:
    machine.rules_run = 0
    started = time.perf_counter()
    run_state_machine_as_test(machine, settings=settings(
        max_examples=examples, stateful_step_count=steps, deadline=None, derandomize=True, database=None,
        suppress_health_check=[HealthCheck.too_slow]))
    return machine.rules_run / (time.perf_counter() - started)


def machine_alone(programs: int, steps: int, seed: int = 7) -> float:
    """The machine driven by a seeded random program: every rule but invalid_call
    (whose arguments only Hypothesis draws), with one fork per program as the
    Hypothesis-driven programs have at most."""
    rng = random.Random(seed)
    page, count = (lambda: rng.randrange(M.N)), (lambda: rng.randint(1, M.MAX_RUN))
    prots = list(M.PROT_WORDS)

    def prot() -> int:
        return rng.choice(prots)
    rules = [
        lambda m: m.mmap_fixed(page(), count(), prot(), rng.choice(M.KINDS), rng.randrange(M.FILE_PAGES)),
        lambda m: m.munmap(page(), count()),
        lambda m: m.mprotect(page(), count(), prot()),
        lambda m: m.mremap_in_place(page(), count(), rng.randint(1, M.MAX_RUN + 1)),
        lambda m: m.mremap_move(page(), count(), count(), page()),
        lambda m: m.madvise_dontneed(page(), count()),
        lambda m: m.msync(page(), count(), rng.choice([C.MS_ASYNC, C.MS_SYNC]) | rng.choice([0, C.MS_INVALIDATE])),
        lambda m: m.write(page(), rng.randrange(256)),
        lambda m: m.pwrite_file(rng.randrange(M.FILE_PAGES), rng.randrange(256)),
    ]
    done, started = 0, time.perf_counter()
    for _ in range(programs):
        m = M.AddressSpaceMachine()
        m.start()
        m.kernel_agrees()
        fork_at = rng.randrange(steps)
        for step in range(steps):
            if step == fork_at:
                m.fork_and_check(page(), rng.randrange(256))
            else:
                rng.choice(rules)(m)
            m.kernel_agrees()
            done += 1
        m.teardown()
    return done / (time.perf_counter() - started)


def main() -> None:
    check_hollow_matches()
    hyp = with_hypothesis(100, 50)
    hollow = with_hypothesis(100, 50, Hollow)
    alone = machine_alone(100, 50)
    oracle = "PROCMAP_QUERY ioctl" if M.MapsOracle().ioctl else "/proc/self/maps text"
    body = f"""{machine_line()}

`python bench/bench_state_machine.py`: the address-space machine ({M.N} arena pages, maps oracle: {oracle}),
100 programs x 50 steps per driver.

| driver | steps/s | per step |
|---|---|---|
| **the machine** (its calls, probes and maps checks), seeded random program | {alone:,.0f} | {1e3 / alone:.2f} ms |
| Hypothesis alone: the same rules, strategies and invariant, empty bodies | {hollow:,.0f} | {1e3 / hollow:.2f} ms |
| the machine driven by Hypothesis, derandomized (what a test run pays) | {hyp:,.0f} | {1e3 / hyp:.2f} ms |

A step is one rule plus the invariant (the touched pages and one rotating page probed
for read, write and execute; the arena's VMAs compared with the model). The machine
alone runs every rule but invalid_call, with one fork per program (fork costs a few ms
here; Hypothesis-drawn programs fork at most once). Driven by Hypothesis a step costs
about the sum of the first two rows: Hypothesis' drawing of the rule and its arguments
and its invariant hook cost more per step than the machine's real calls and checks, so
the Hypothesis-driven rate cannot exceed the second row on this machine.
"""
    replace_section("state_machine", "Address-space state machine", body)
    print(body)


if __name__ == "__main__":
    main()
