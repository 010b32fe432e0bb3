"""Conformance by model: the address-space state machine (``_model_address_space.py``,
whose docstring says what it models) run as one test.

The machine, and Hypothesis with it, is imported when the test runs, not when the suite
is collected: every xdist worker of ``memsyscalls run`` collects the whole suite, and
importing Hypothesis costs ~0.3 s of CPU, which only the worker that runs this test
should pay (bench/README.md, the suite section).
"""

from __future__ import annotations

from pytest_memsyscalls import semantic


@semantic("model.address_space.matches_kernel",
          "Random programs of mmap(MAP_FIXED) of anonymous and file pages (shared and private), munmap, mprotect, "
          "mremap (in place and MAYMOVE|FIXED), madvise(MADV_DONTNEED), msync, stores, file writes, invalid "
          "arguments and fork leave every page readable, writable and executable exactly as a per-page model "
          "predicts (signal, si_code, si_addr, first byte), and /proc/self/maps shows the model's pages.",
          source="mmap(2), munmap(2), mprotect(2), mremap(2), madvise(2), msync(2), fork(2), proc(5)", tier="linux")
def test_address_space_matches_model() -> None:
    # imported at run time, not at collection (the module's docstring says why)
    from hypothesis.stateful import run_state_machine_as_test

    from pytest_memsyscalls.plugin.hypothesis_profiles import machine_settings

    from ._model_address_space import AddressSpaceMachine

    run_state_machine_as_test(AddressSpaceMachine, settings=machine_settings())
