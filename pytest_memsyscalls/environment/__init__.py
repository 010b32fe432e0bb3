"""The environment: the facts about this machine, process and sandbox that decide what a
memory call must do here (``fingerprint``), and the evaluation of what a test needs from
them (``needs``). Built on the kernel door only; knows nothing of pytest."""

from .fingerprint import Environment, Sandbox, detect, detect_sandbox

__all__ = ["Environment", "Sandbox", "detect", "detect_sandbox"]
