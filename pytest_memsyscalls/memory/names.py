"""The names this package gives POSIX shm objects: one prefix, one pattern, one builder.

Why a module of its own: the shm objects build these names, the records and the sweep
recognise them after a crash, and the leak guard finds them in /dev/shm; all three must
agree, and none should import another for it.
"""

from __future__ import annotations

import os
import re
import secrets

NAME_PREFIX = "memsys-"  # /dev/shm names and leak records start with it
# The one pattern of the package's POSIX shm names, as /dev/shm lists them (without the
# leading slash of the shm_open name); group 1 is the creating pid. unique_name() builds them.
NAME_RE = re.compile(rf"^{re.escape(NAME_PREFIX)}(\d+)-[0-9a-f]+$")


def unique_name() -> str:
    """An unpredictable POSIX shm name: /memsys-<pid>-<128 random bits>."""
    return f"/{NAME_PREFIX}{os.getpid()}-{secrets.token_hex(16)}"


def is_unique_name(name: str) -> bool:
    """Whether a shm_open name ("/memsys-<pid>-<hex>", leading slash included) is of the
    scheme unique_name() builds."""
    return name.startswith("/") and NAME_RE.match(name[1:]) is not None
