"""The package's shape: its public names, and (below) imports that point only down."""

from __future__ import annotations

import pytest_memsyscalls


def test_public_names_are_all_listed_and_resolve() -> None:
    assert sorted(pytest_memsyscalls.__all__) == sorted(pytest_memsyscalls._PUBLIC)
    for name in [*pytest_memsyscalls.__all__, *pytest_memsyscalls._MODULES]:
        assert getattr(pytest_memsyscalls, name) is not None, name
