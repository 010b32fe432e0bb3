"""What a test needs from the environment, evaluated against its fingerprint.

Why apart from the markers: a need is a fact about this system (uid, capabilities,
rlimits, sandbox, files), computed before the test runs and never from the call under
test; the plugin's ``requires`` marker names needs, the fixtures ask
``lockable_shortfall`` too, and neither needs pytest to answer. Capabilities count only
where they work against the memory calls' checks (``Capabilities.has``: not inside a
user namespace, except CAP_IPC_OWNER in an IPC namespace it owns).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from ..kernel import procfs
from .features import BY_NAME, NOT_PROMISED, PROMISED, UNKNOWN
from .fingerprint import Environment, format_bytes

Need = Callable[[Environment], "str | None"]
"""A need returns None when met, otherwise the skip reason."""


def check_need_name(need: str) -> None:
    """Raise ValueError for a need that names no known kind."""
    head, _, arg = need.partition(":")
    if head not in _NEEDS:
        raise ValueError(f"requires: unknown need {need!r}; known: {', '.join(sorted(_NEEDS))}")
    if head == "feature" and arg not in BY_NAME:
        raise ValueError(f"requires: unknown feature {arg!r}; the registry (environment/features.py) has "
                         f"{', '.join(sorted(BY_NAME))}")


def _need_root(env: Environment, _: str) -> str | None:
    return None if env.identity.euid == 0 else f"needs:root (euid is {env.identity.euid})"


def _need_nonroot(env: Environment, _: str) -> str | None:
    return None if env.identity.euid != 0 else "needs:non-root (euid is 0)"


def _need_cap(env: Environment, cap: str) -> str | None:
    return None if env.capabilities.has(cap) else f"needs:{cap}"


def _need_nocap(env: Environment, cap: str) -> str | None:
    return None if not env.capabilities.has(cap) else f"needs:without-{cap} (the process has it)"


def _need_setuid(env: Environment, _: str) -> str | None:
    missing = [c for c in ("CAP_SETUID", "CAP_SETGID") if not env.capabilities.has(c)]
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
    """``arch:x86_64``, or alternatives: ``arch:aarch64|ppc64le``."""
    return None if env.arch in arch.split("|") else f"needs:arch={arch} (this is {env.arch})"


def _need_feature(env: Environment, name: str) -> str | None:
    """What the environment promises decides (environment/features.py): a promised
    feature is asserted, one not promised is a ``needs:`` skip, and only where the promise
    is unknown does the probe decide; what it finds missing is ``unsupported:``."""
    promise = env.features.get(name)
    if promise is None:
        return f"unsupported:{name} (no verdict: {env.unknown.get('features', 'features not assessed')})"
    if promise.state == PROMISED or (promise.state == UNKNOWN and promise.works):
        return None
    if promise.state == NOT_PROMISED:
        return f"needs:{name} ({promise.why})"
    return f"unsupported:{name} ({promise.why})"


def _need_ptrace(env: Environment, _: str) -> str | None:
    """A child of this process can be traced by it (PTRACE_TRACEME): not when this process
    is itself traced (strace -f, gdb, a ptrace sandbox attach to the child first) nor when
    Yama forbids ptrace (ptrace_scope 3)."""
    tracer = env.security.tracer_pid
    if tracer:
        return f"needs:untraced (traced by pid {tracer}, so a child of ours cannot PTRACE_TRACEME)"
    if env.security.ptrace_scope == 3:
        return "needs:ptrace (kernel.yama.ptrace_scope is 3: no process may ptrace)"
    return None


def _need_path(env: Environment, path: str) -> str | None:
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
    "feature": _need_feature,
    "ptrace": _need_ptrace,
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
