"""The plugin's settings, each from command line > environment variable > ini file.

Resolved once per session into a frozen ``Settings`` kept in ``config.stash``; an
invalid value is a ``pytest.UsageError`` that names where the value came from
(pytest-timeout's rule: the user must be able to find the bad line).

PYTEST_DONT_REWRITE: loaded into every pytest session (plugin/activation.py says why).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import pytest

from ..memory.timeouts import DEFAULT_TIMEOUT, check_timeout

LEAK_MODES = ("fail", "warn", "off")

T = TypeVar("T")

# Where ``memsyscalls run`` keeps Hypothesis' example database (its cache directory): named
# in the environment so that the xdist worker the suite runs in uses it too.
HYPOTHESIS_HOME_VARIABLE = "MEMSYS_HYPOTHESIS_HOME"


@dataclass(frozen=True)
class Setting:
    """A setting's name in each place it can be given."""

    option: str  # --memsys-leaks
    dest: str  # memsys_leaks (also the ini name)
    env: str  # MEMSYS_LEAKS
    help: str


LEAKS = Setting("--memsys-leaks", "memsys_leaks", "MEMSYS_LEAKS",
                "what to do when a test leaves SysV segments, /dev/shm names, locked memory or child "
                "processes behind: fail (default), warn, off")
CHILD_TIMEOUT = Setting("--memsys-child-timeout", "memsys_child_timeout", "MEMSYS_CHILD_TIMEOUT",
                        "seconds a forked child may run before its process group is killed "
                        f"(default {DEFAULT_TIMEOUT:g})")
REPORT = Setting("--memsys-report", "memsys_report", "MEMSYS_REPORT",
                 "write the JSON conformance report (environment + every semantic's outcome) to this path")
BASELINE = Setting("--memsys-baseline", "memsys_baseline", "MEMSYS_BASELINE",
                   "compare the run with a saved report; a semantic whose outcome changed fails the session")
STRICT = Setting("--memsys-strict", "memsys_strict", "MEMSYS_STRICT",
                 "with a baseline: a skip the baseline did not have is a failure")

ALL_TESTS = Setting("--memsys-all-tests", "memsys_all_tests", "MEMSYS_ALL_TESTS",
                    "apply the leak guard, the session records and the SIGTERM handling to every test, "
                    "not only to tests that use a memsyscalls fixture or marker")

ALL = (LEAKS, CHILD_TIMEOUT, REPORT, BASELINE, STRICT, ALL_TESTS)


@dataclass(frozen=True)
class Settings:
    leaks: str = "fail"
    child_timeout: float = DEFAULT_TIMEOUT
    report: str | None = None
    baseline: str | None = None
    strict: bool = False
    all_tests: bool = False


SETTINGS_KEY = pytest.StashKey[Settings]()


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("memsyscalls", "memory-management syscall conformance (pytest-memsyscalls)")
    group.addoption(LEAKS.option, dest=LEAKS.dest, choices=LEAK_MODES, default=None, help=LEAKS.help)
    group.addoption(CHILD_TIMEOUT.option, dest=CHILD_TIMEOUT.dest, default=None, metavar="SECONDS",
                    help=CHILD_TIMEOUT.help)
    group.addoption(REPORT.option, dest=REPORT.dest, default=None, metavar="PATH", help=REPORT.help)
    group.addoption(BASELINE.option, dest=BASELINE.dest, default=None, metavar="PATH", help=BASELINE.help)
    group.addoption(STRICT.option, dest=STRICT.dest, action="store_true", default=None, help=STRICT.help)
    group.addoption(ALL_TESTS.option, dest=ALL_TESTS.dest, action="store_true", default=None, help=ALL_TESTS.help)
    for setting in ALL:
        parser.addini(setting.dest, f"{setting.help} (env {setting.env}, option {setting.option})", default=None)


def _raw(config: pytest.Config, setting: Setting) -> tuple[object, str] | None:
    """The value and where it came from, by precedence; None when unset everywhere."""
    import os

    value = config.getoption(setting.dest, default=None)
    if value is not None:
        return value, f"command line option {setting.option}"
    if os.environ.get(setting.env):
        return os.environ[setting.env], f"environment variable {setting.env}"
    ini = config.getini(setting.dest)
    if ini not in (None, "", []):
        return ini, f"ini setting {setting.dest} in {config.inipath or 'the ini file'}"
    return None


def _resolve(config: pytest.Config, setting: Setting, convert: Callable[[object, str], T], default: T) -> T:
    found = _raw(config, setting)
    if found is None:
        return default
    value, origin = found
    try:
        return convert(value, origin)
    except (TypeError, ValueError) as error:
        raise pytest.UsageError(f"pytest-memsyscalls: invalid value {value!r} from {origin}: {error}") from None


def _leak_mode(value: object, origin: str) -> str:
    text = str(value).strip().lower()
    if text not in LEAK_MODES:
        raise ValueError(f"expected one of {', '.join(LEAK_MODES)}")
    return text


def _seconds(value: object, origin: str) -> float:
    try:
        number = float(str(value))
    except ValueError:
        raise ValueError("expected a number of seconds") from None
    return check_timeout(number, "the child timeout")


def _path(value: object, origin: str) -> str:
    text = str(value).strip()
    if not text:
        raise ValueError("expected a path")
    return text


def _report_path(value: object, origin: str) -> str:
    from ..report.paths import file_problem

    text = _path(value, origin)
    problem = file_problem(text)
    if problem:
        raise ValueError(f"cannot write the report there: {problem}")
    return text


def _flag(value: object, origin: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true/false, yes/no, on/off or 1/0")


def resolve(config: pytest.Config) -> Settings:
    return Settings(
        leaks=_resolve(config, LEAKS, _leak_mode, "fail"),
        child_timeout=_resolve(config, CHILD_TIMEOUT, _seconds, DEFAULT_TIMEOUT),
        report=_resolve(config, REPORT, _report_path, None),
        baseline=_resolve(config, BASELINE, _path, None),
        strict=_resolve(config, STRICT, _flag, False),
        all_tests=_resolve(config, ALL_TESTS, _flag, False),
    )


def get(config: pytest.Config) -> Settings:
    """The session's settings (defaults when the plugin was not configured)."""
    return config.stash.get(SETTINGS_KEY, Settings())
