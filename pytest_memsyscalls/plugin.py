"""The pytest plugin: hooks only. Fixtures live in ``fixtures``, settings in
``settings``, semantics and requirements in ``semantics``, the report in ``report``."""

from __future__ import annotations

import dataclasses

import pytest

from . import environment, hooks, settings
from .semantics import REQUIRES_MARK, SEMANTIC_MARK, semantic_of, unmet_needs

pytest_plugins = ["pytest_memsyscalls.fixtures", "pytest_memsyscalls.leaks", "pytest_memsyscalls.report"]

ENVIRONMENT_KEY = pytest.StashKey[environment.Environment]()


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hooks)


def pytest_addoption(parser: pytest.Parser) -> None:
    settings.add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{SEMANTIC_MARK}(semantic): the documented semantic this test verifies; "
        "use pytest_memsyscalls.semantic(id, statement, source=..., tier=...)",
    )
    config.addinivalue_line(
        "markers",
        f"{REQUIRES_MARK}(*needs): what the environment must offer, else the test is skipped with the "
        "unmet need as reason; use pytest_memsyscalls.requires('root', 'cap:CAP_IPC_LOCK', ...)",
    )
    config.stash[settings.SETTINGS_KEY] = settings.resolve(config)


def get_environment(config: pytest.Config) -> environment.Environment:
    """The environment fingerprint of this session, with the sandbox a plugin named."""
    found = config.stash.get(ENVIRONMENT_KEY, None)
    if found is None:
        found = environment.detect()
        sandbox = config.hook.pytest_memsyscalls_sandbox(config=config)
        if sandbox is not None:
            found = dataclasses.replace(found, sandbox=sandbox)
        config.stash[ENVIRONMENT_KEY] = found
        config.hook.pytest_memsyscalls_environment_ready(config=config, environment=found)
    return found


def pytest_report_header(config: pytest.Config) -> list[str]:
    return get_environment(config).header_lines()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    found = semantic_of(item)
    if found is not None:
        item.user_properties.extend([
            ("memsys_semantic", found.id),
            ("memsys_tier", found.tier),
            ("memsys_source", found.source),
        ])
    needs: list[object] = []
    for mark in item.iter_markers(REQUIRES_MARK):
        needs.extend(mark.args)
    if needs:
        reasons = unmet_needs(tuple(needs), get_environment(item.config))
        if reasons:
            pytest.skip("; ".join(reasons))
