"""The one error a target raises when it cannot run on this machine.

Why a module of its own: the targets, the qemu guest and the seccomp profile all raise
it, and the targets import the other two.
"""


class Unavailable(Exception):
    """A target cannot run here; the message says what to install or change."""
