"""Conformance by model: the SysV shared-memory state machine (``_model_sysv.py``, whose
docstring says what it models) run as one test.

The machine, and Hypothesis with it, is imported when the test runs, not when the suite
is collected: every xdist worker of ``memsyscalls run`` collects the whole suite, and
importing Hypothesis costs ~0.3 s of CPU, which only the worker that runs this test
should pay (bench/README.md, the suite section).
"""

from __future__ import annotations

from pytest_memsyscalls import semantic


@semantic("model.sysv_shm.matches_kernel",
          "Random programs of shmget, shmat (read-write and SHM_RDONLY), shmdt, shmctl(IPC_RMID), stores and fork "
          "keep each segment's existence, SHM_DEST, nattch and contents, and each attachment's faults, as a model of "
          "segments and attachments predicts.",
          source="shmget(2), shmat(2), shmdt(2), shmctl(2), fork(2)", tier="linux")
def test_sysv_shm_matches_model() -> None:
    # imported at run time, not at collection (the module's docstring says why)
    from hypothesis.stateful import run_state_machine_as_test

    from pytest_memsyscalls.plugin.hypothesis_profiles import machine_settings

    from ._model_sysv import SysvMachine

    run_state_machine_as_test(SysvMachine, settings=machine_settings())
