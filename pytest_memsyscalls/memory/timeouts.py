"""How long a forked child may run: the default and the check of a given value.

Why a module of its own: the plugin's settings validate ``--memsys-child-timeout`` with
the same rule the children apply, without importing the child runner (and with it the
C extension) just to parse an option.

PYTEST_DONT_REWRITE: loaded into every pytest session (plugin/activation.py says why).
"""

from __future__ import annotations

import math

DEFAULT_TIMEOUT = 30.0
MAX_TIMEOUT = 24 * 3600.0


def check_timeout(timeout: object, where: str = "timeout") -> float:
    """A finite, positive number of seconds (at most a day); the error names ``where``."""
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"{where} must be a number of seconds, got {type(timeout).__name__} {timeout!r}")
    value = float(timeout)
    if not math.isfinite(value) or value <= 0 or value > MAX_TIMEOUT:
        raise ValueError(f"{where} must be a finite number of seconds in (0, {MAX_TIMEOUT:g}], got {timeout!r}")
    return value
