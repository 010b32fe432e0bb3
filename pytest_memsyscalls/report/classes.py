"""How a report's semantic is classed for people: its family, its outcome class, and what
the documentation predicted against what was observed.

Why apart from the model: the model records outcomes; the matrix table, the matrix page
and ``memsyscalls diff --html`` all need the same reading of them (an ``unsupported:``
skip is its own class, whether the report says ``skipped`` or ``unsupported``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Ids whose first component is one call of a family that reads better as one group.
_FAMILY_OF = {"mlock2": "mlock", "mlockall": "mlock", "munlock": "mlock", "munlockall": "mlock"}
_FAMILY_TITLES = {"sysv": "SysV shm", "posix_shm": "POSIX shm", "mlock": "mlock & co", "brk": "brk/sbrk"}
# The calls in the order the README lists them; the rest (fork, layout, model...) after, by name.
FAMILY_ORDER = ("brk", "mmap", "munmap", "msync", "mremap", "mincore", "mprotect", "sysv", "posix_shm", "mlock",
                "madvise")

UNSUPPORTED_PREFIX = "unsupported:"


def family_of(semantic_id: str) -> str:
    """The family of a semantic: the first dotted component of its id (mlock2, mlockall,
    munlock and munlockall count as mlock)."""
    head = semantic_id.split(".", 1)[0]
    return _FAMILY_OF.get(head, head)


def family_title(family: str) -> str:
    return _FAMILY_TITLES.get(family, family)


def family_sort_key(family: str) -> tuple[int, str]:
    return (FAMILY_ORDER.index(family), "") if family in FAMILY_ORDER else (len(FAMILY_ORDER), family)


def outcome_class(semantic: Mapping[str, Any]) -> str:
    """passed, failed, skipped or unsupported; any other outcome a report may carry, as is.

    ``unsupported`` is a skip whose reason starts with ``unsupported:`` (the environment's
    promise of a feature was unknown and a probe decided), or a report's own
    ``unsupported`` outcome."""
    outcome = str(semantic.get("outcome") or "unknown")
    if outcome == "skipped" and str(semantic.get("reason") or "").startswith(UNSUPPORTED_PREFIX):
        return "unsupported"
    return outcome


def expectation(semantic: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """What the documentation predicts and what was observed, from the structured
    expectation data the report carries (the semantic's, else its first failing test
    that has both); (None, None) when no failed expectation recorded them."""
    expected, observed = semantic.get("expected"), semantic.get("observed")
    if expected and observed:
        return str(expected), str(observed)
    for test in semantic.get("tests") or []:
        if isinstance(test, Mapping) and test.get("outcome") == "failed" and test.get("expected") \
                and test.get("observed"):
            return str(test["expected"]), str(test["observed"])
    return None, None


def clip(text: str | None, limit: int = 160) -> str:
    """A message shortened for a page: its first line, at most ``limit`` characters."""
    if not text:
        return ""
    lines = text.strip().splitlines()
    first = lines[0].strip() if lines else ""
    if len(first) > limit:
        return first[: limit - 1].rstrip() + "…"
    return first + (" …" if len(lines) > 1 else "")
