"""What a conformance test asserts, and what it needs from the environment.

``@semantic(id, statement, source=..., tier=...)`` names the documented behaviour a
test verifies; the id is stable (it keys baselines and reports). ``@requires(...)``
declares, LTP-style, what the environment must offer for the semantic to be
checkable at all; an unmet need skips with a machine-readable reason such as
``needs:CAP_IPC_LOCK`` or ``unsupported:MADV_COLD``. A need is never "the call
failed": it is computed from the environment before the test runs.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from ..environment.fingerprint import Environment, format_bytes
from ..kernel import procfs

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


# --- requirements ----------------------------------------------------------------

Need = Callable[[Environment], "str | None"]
"""A need returns None when met, otherwise the skip reason."""


def requires(*needs: str | Need) -> pytest.MarkDecorator:
    """Declare what the environment must offer. Strings name built-in needs:

    ``root`` / ``nonroot``; ``cap:CAP_X`` / ``nocap:CAP_X``; ``setuid`` (can run a
    child as another uid: root with CAP_SETUID/CAP_SETGID); ``hugepages`` (free
    HugeTLB pages); ``memlock:N`` (N more bytes lockable: RLIMIT_MEMLOCK minus VmLck, or CAP_IPC_LOCK);
    ``sandbox:KIND`` / ``nosandbox:KIND``; ``arch:NAME``; ``path:/file`` (a file
    exists). Callables take the Environment and return a reason or None.
    """
    for need in needs:
        if isinstance(need, str):
            _check_need_name(need)
        elif not callable(need):
            raise TypeError(f"requires: a need is a string or a callable, got {need!r}")
    # with_args: a lone callable passed to a mark would be taken for the decorated test.
    mark: pytest.MarkDecorator = getattr(pytest.mark, REQUIRES_MARK).with_args(*needs)
    return mark


def _check_need_name(need: str) -> None:
    head = need.split(":", 1)[0]
    if head not in _NEEDS:
        raise ValueError(f"requires: unknown need {need!r}; known: {', '.join(sorted(_NEEDS))}")


def _has_cap(env: Environment, cap: str) -> bool:
    """Effective against this system's resources: root in a user namespace has
    CAP_IPC_LOCK in CapEff, yet mlock still enforces RLIMIT_MEMLOCK on it."""
    return env.capabilities.has(cap)


def _need_root(env: Environment, _: str) -> str | None:
    return None if env.identity.euid == 0 else f"needs:root (euid is {env.identity.euid})"


def _need_nonroot(env: Environment, _: str) -> str | None:
    return None if env.identity.euid != 0 else "needs:non-root (euid is 0)"


def _need_cap(env: Environment, cap: str) -> str | None:
    return None if _has_cap(env, cap) else f"needs:{cap}"


def _need_nocap(env: Environment, cap: str) -> str | None:
    return None if not _has_cap(env, cap) else f"needs:without-{cap} (the process has it)"


def _need_setuid(env: Environment, _: str) -> str | None:
    missing = [c for c in ("CAP_SETUID", "CAP_SETGID") if not _has_cap(env, c)]
    return f"needs:{'+'.join(missing)} (to run a child as another uid)" if missing else None


def _need_hugepages(env: Environment, _: str) -> str | None:
    free = env.hugepages.free if env.hugepages else None
    return None if free else "needs:hugepages (HugePages_Free is 0 in /proc/meminfo)"


def lockable_shortfall(env: Environment, length: int) -> str | None:
    """Why ``length`` more bytes cannot be locked here, or None when they can."""
    if env.capabilities.has("CAP_IPC_LOCK"):
        return None
    soft = env.rlimits.memlock.soft
    if soft is None:
        return None
    locked_kb = procfs.status_kb(procfs.read_status(), "VmLck") or 0
    if locked_kb * 1024 + length <= soft:
        return None
    if soft == 0:
        return "limit:RLIMIT_MEMLOCK=0 (no CAP_IPC_LOCK: mlock is refused with EPERM)"
    return (f"limit:RLIMIT_MEMLOCK={soft} ({format_bytes(soft)}; {locked_kb} kB already locked, "
            f"{length} more bytes wanted, no CAP_IPC_LOCK)")


def _need_memlock(env: Environment, amount: str) -> str | None:
    return lockable_shortfall(env, int(amount, 0))


def _need_sandbox(env: Environment, kind: str) -> str | None:
    return None if env.sandbox.kind == kind else f"needs:sandbox={kind} (this is {env.sandbox.kind})"


def _need_nosandbox(env: Environment, kind: str) -> str | None:
    return None if env.sandbox.kind != kind else f"unsupported:{kind} (the semantic cannot be observed there)"


def _need_arch(env: Environment, arch: str) -> str | None:
    return None if env.arch == arch else f"needs:arch={arch} (this is {env.arch})"


def _need_path(env: Environment, path: str) -> str | None:
    import os

    return None if os.path.exists(path) else f"needs:{path} (missing)"


_NEEDS: dict[str, Callable[[Environment, str], str | None]] = {
    "root": _need_root,
    "nonroot": _need_nonroot,
    "cap": _need_cap,
    "nocap": _need_nocap,
    "setuid": _need_setuid,
    "hugepages": _need_hugepages,
    "memlock": _need_memlock,
    "sandbox": _need_sandbox,
    "nosandbox": _need_nosandbox,
    "arch": _need_arch,
    "path": _need_path,
}


def unmet_needs(needs: tuple[Any, ...], env: Environment) -> list[str]:
    """The reasons of every unmet need, in declaration order."""
    reasons: list[str] = []
    for need in needs:
        if isinstance(need, str):
            head, _, arg = need.partition(":")
            reason = _NEEDS[head](env, arg)
        else:
            reason = need(env)
        if reason:
            reasons.append(reason)
    return reasons
