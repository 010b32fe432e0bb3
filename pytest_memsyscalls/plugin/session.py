"""The session's environment fingerprint: detected once per session, with the brk
helper's facts and the sandbox a plugin or conftest named through
``pytest_memsyscalls_sandbox``.

Why a module of its own: the hooks, the fixtures and the report all need the same
fingerprint, and none of them should import another to get it.

PYTEST_DONT_REWRITE: loaded into every pytest session (plugin/activation.py says why).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from ..environment.fingerprint import Environment

ENVIRONMENT_KEY = pytest.StashKey["Environment"]()


def session_environment(config: pytest.Config) -> Environment:
    """The environment fingerprint of this session, with the sandbox a plugin named."""
    found = config.stash.get(ENVIRONMENT_KEY, None)
    if found is None:
        from ..environment.fingerprint import detect  # on first use: a session that never asks pays nothing
        from ..kernel.native import NativeBuildMissing

        found = detect()
        try:
            from ..memory.brk import with_helper_facts  # the helper is a process to run
        except NativeBuildMissing as missing:  # said once, by the first test that uses the plugin
            found = dataclasses.replace(found, unknown={**found.unknown, "brk_helper": str(missing)})
        else:
            found = with_helper_facts(found)
        sandbox = config.hook.pytest_memsyscalls_sandbox(config=config)
        if sandbox is not None:
            found = dataclasses.replace(found, sandbox=sandbox)
        config.stash[ENVIRONMENT_KEY] = found
        config.hook.pytest_memsyscalls_environment_ready(config=config, environment=found)
    return found
