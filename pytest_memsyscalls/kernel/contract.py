"""A documented expectation that did not hold, as an exception that carries its parts.

Why in the kernel door: the door itself checks what the kernel hands back before anyone
touches it (an mmap with MAP_FIXED must return the address asked for, an mremap with
MREMAP_FIXED the new address, every returned range must be mapped), and a kernel that
breaks that contract is a failed expectation like any other, reported with the call,
what was expected and what was observed (the report reads those fields). The
expectations of the memory layer (``fails_with``, ``succeeds``, ``faults_with``) raise the
same class.
"""

from __future__ import annotations


class ExpectationFailed(AssertionError):
    """A documented expectation did not hold. ``call`` is the call as text (None where
    the expectation is not about one call), ``expected`` what the documentation
    predicts, ``observed`` what happened instead; ``str()`` is the full message."""

    def __init__(self, message: str, *, call: str | None, expected: str, observed: str) -> None:
        super().__init__(message)
        self.call = call
        self.expected = expected
        self.observed = observed

    @classmethod
    def of_call(cls, call: str, expected: str, observed: str) -> ExpectationFailed:
        """'CALL should EXPECTED; it OBSERVED'."""
        return cls(f"{call} should {expected}; it {observed}", call=call, expected=expected, observed=observed)

    @classmethod
    def of_event(cls, expected: str, observed: str, *, joiner: str = "got ") -> ExpectationFailed:
        """'expected EXPECTED; got OBSERVED' (or another joiner, e.g. '' for a sentence)."""
        return cls(f"expected {expected}; {joiner}{observed}", call=None, expected=expected, observed=observed)

    def predicted(self) -> str:
        """What the documentation predicts, with the call when there is one."""
        return self.expected if self.call is None else f"{self.call} should {self.expected}"


class Misplaced(ExpectationFailed):
    """The kernel returned an address the call's own arguments rule out (another address
    than MAP_FIXED or MREMAP_FIXED asked for, an unaligned one, one where nothing is
    mapped). Raised before anything touches the range; ``returned`` is that address."""

    def __init__(self, message: str, *, call: str | None, expected: str, observed: str, returned: int) -> None:
        super().__init__(message, call=call, expected=expected, observed=observed)
        self.returned = returned
