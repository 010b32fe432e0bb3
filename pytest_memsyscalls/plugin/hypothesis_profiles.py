"""Hypothesis profiles for the suite's property tests and state machines.

``ci``: derandomized (the same examples every run, so a CI failure reproduces and a
pass means the same thing twice), few examples, no deadline (a step may fork, and
fork time is not a property of the code under test), no example database (CI
machines throw it away, and an unprivileged run may not be able to write it).

``deep``: for nightly runs, ``--hypothesis-profile=deep``: many more and longer
random programs, still without a deadline.

The state machines of this suite use ``ci`` when no profile was chosen on the
command line, and the chosen profile otherwise (see :func:`machine_settings`).
``--hypothesis-profile=NAME`` is resolved in Hypothesis' own ``pytest_configure``, so
the plugin calls :func:`register_profiles` before that (a tryfirst pytest_configure).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

from .settings import HYPOTHESIS_HOME_VARIABLE

CI = "ci"
DEEP = "deep"


def register_profiles() -> None:
    """Register ``ci`` and ``deep`` (idempotent: registering again replaces them)."""
    settings.register_profile(
        CI, derandomize=True, max_examples=6, stateful_step_count=20, deadline=None, database=None,
        suppress_health_check=[HealthCheck.too_slow], print_blob=False)
    settings.register_profile(
        DEEP, max_examples=400, stateful_step_count=100, deadline=None,
        suppress_health_check=[HealthCheck.too_slow])


def machine_settings() -> settings:
    """Settings for a state machine: the loaded profile (``--hypothesis-profile=deep``),
    or ``ci`` when none was chosen, because Hypothesis' own default (100 programs of 50
    steps) would cost several seconds per machine in every run of the suite; a chosen
    verbosity or explain phase is kept either way.

    ``memsyscalls run`` names Hypothesis' home (its example database, with ``deep``) in
    the environment, in its cache directory rather than ``.hypothesis/`` in the user's
    working directory; it is set here, when a machine is about to run, because the
    suite imports Hypothesis only then (conformance/test_model_*.py)."""
    home = os.environ.get(HYPOTHESIS_HOME_VARIABLE)
    if home:
        from hypothesis.configuration import set_hypothesis_home_dir

        set_hypothesis_home_dir(home)
    register_profiles()
    current = settings.default
    assert current is not None, "Hypothesis always has a loaded profile"
    # Hypothesis' pytest plugin loads "<profile>-with-<verbosity>-verbosity" (or
    # "-with-explain-phase") for --hypothesis-verbosity or --hypothesis-explain alone,
    # derived from the loaded profile: Hypothesis' default, or its own "ci" where CI is
    # set. Neither is a profile the user chose.
    if settings.get_current_profile_name().split("-with-", 1)[0] in ("default", CI):
        return settings(settings.get_profile(CI), verbosity=current.verbosity, phases=current.phases)
    return current
