"""The markers: what a conformance test asserts, and what it needs from the environment.

``@semantic(id, statement, source=..., tier=...)`` names the documented behaviour a
test verifies; the id is stable (it keys baselines and reports). ``@requires(...)``
declares, LTP-style, what the environment must offer for the semantic to be
checkable at all; an unmet need skips with a machine-readable reason such as
``needs:CAP_IPC_LOCK`` or ``unsupported:MADV_COLD``. A need is never "the call
failed": it is computed from the environment before the test runs
(``environment.needs``).

PYTEST_DONT_REWRITE: loaded into every pytest session (plugin/activation.py says why).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from ..environment.needs import Need

TIERS = ("posix", "linux", "impl")
_ID = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_]+)+$")

SEMANTIC_MARK = "memsys_semantic"
REQUIRES_MARK = "memsys_requires"


@dataclass(frozen=True)
class Semantic:
    """A documented behaviour: stable id, one-sentence statement, where it is documented."""

    id: str
    statement: str
    source: str
    tier: str

    def as_dict(self) -> dict[str, str]:
        return {"id": self.id, "statement": self.statement, "source": self.source, "tier": self.tier}


def semantic(id: str, statement: str, *, source: str, tier: str = "linux") -> pytest.MarkDecorator:
    """Mark a test as the check of one semantic.

    tier: ``posix`` (the standard promises it), ``linux`` (a Linux man page documents
    it) or ``impl`` (an implementation detail such as glibc's mmap threshold).
    """
    if not _ID.match(id):
        raise ValueError(f"semantic id {id!r} must be dotted lower-case words, e.g. 'mprotect.readonly.write_faults'")
    if tier not in TIERS:
        raise ValueError(f"semantic {id}: tier must be one of {TIERS}, got {tier!r}")
    if not statement or not source:
        raise ValueError(f"semantic {id}: statement and source must not be empty")
    mark: pytest.MarkDecorator = getattr(pytest.mark, SEMANTIC_MARK)(Semantic(id, statement, source, tier))
    return mark


def semantic_of(item: pytest.Item) -> Semantic | None:
    mark = item.get_closest_marker(SEMANTIC_MARK)
    if mark is None:
        return None
    value = mark.args[0] if mark.args else None
    return value if isinstance(value, Semantic) else None


def requires(*needs: str | Need) -> pytest.MarkDecorator:
    """Declare what the environment must offer. Strings name built-in needs:

    ``root`` / ``nonroot``; ``cap:CAP_X`` / ``nocap:CAP_X``; ``setuid`` (can run a
    child as another uid: root with CAP_SETUID/CAP_SETGID); ``hugepages`` (free
    HugeTLB pages); ``memlock:N`` (N more bytes lockable: RLIMIT_MEMLOCK minus VmLck, or CAP_IPC_LOCK);
    ``sandbox:KIND`` / ``nosandbox:KIND``; ``arch:NAME``; ``path:/file`` (a file
    exists); ``ptrace`` (a child can be traced: this process is not traced itself and
    Yama allows it); ``feature:NAME`` (a feature of environment/features.py: promised, or probed
    working where the promise is unknown; a promised feature that then fails is a failure
    naming the promise). Callables take the Environment and return a reason or None.
    """
    from ..environment.needs import check_need_name

    for need in needs:
        if isinstance(need, str):
            check_need_name(need)
        elif not callable(need):
            raise TypeError(f"requires: a need is a string or a callable, got {need!r}")
    # with_args: a lone callable passed to a mark would be taken for the decorated test.
    mark: pytest.MarkDecorator = getattr(pytest.mark, REQUIRES_MARK).with_args(*needs)
    return mark
