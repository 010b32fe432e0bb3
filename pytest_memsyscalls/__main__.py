"""``python -m pytest_memsyscalls``: see cli.py."""

import sys

# Hypothesis is imported before pytest starts on purpose: pytest assertion-rewrites
# every module of a distribution that registers a pytest plugin (Hypothesis does), and
# with PYTHONDONTWRITEBYTECODE set it cannot cache the result, so importing Hypothesis
# inside the session (the plugin's profiles, the model tests) re-parsed and rewrote ~80
# of its modules on every run: 1.3-1.9 s of a ~4 s collection on a 2-core machine.
# Hypothesis' internal asserts need no rewriting; the suite's modules and
# pytest_memsyscalls.assertions are still rewritten, because they are imported later.
import hypothesis  # noqa: F401
import hypothesis.stateful  # noqa: F401
import hypothesis.strategies  # noqa: F401

from .cli import main

sys.exit(main())
