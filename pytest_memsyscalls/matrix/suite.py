"""Where the shipped conformance suite is.

Why here: ``memsyscalls run`` runs it in place and the matrix copies it into each
target; both ask this one function, which works from a checkout and from an install.
"""

from __future__ import annotations

from pathlib import Path


def conformance_dir() -> Path:
    """The installed conformance suite (the repository's conformance/ directory)."""
    import importlib

    suite = importlib.import_module("pytest_memsyscalls.conformance")
    return Path(str(suite.__file__)).resolve().parent
