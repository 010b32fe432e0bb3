"""Hooks other plugins and conftest files can implement.

PYTEST_DONT_REWRITE: loaded into every pytest session (plugin/activation.py says why).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy
import pytest

if TYPE_CHECKING:
    from ..environment.fingerprint import Environment, Sandbox

hookspec = pluggy.HookspecMarker("pytest")


@hookspec(firstresult=True)
def pytest_memsyscalls_sandbox(config: pytest.Config) -> Sandbox | None:
    """Identify the sandbox this run is in, for platforms the built-in detection
    does not know. Return None to leave it to the next implementation."""


@hookspec
def pytest_memsyscalls_environment_ready(config: pytest.Config, environment: Environment) -> None:
    """Called once the environment fingerprint is known, before collection."""
