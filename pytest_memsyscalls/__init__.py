"""pytest-memsyscalls: verify how a system's memory-management calls really behave.

The plugin (``plugin``) registers fixtures, markers, options and the report; the
libc layer (``libc``) is the one door to the kernel; ``probe`` catches faults in
process and ``child`` in forked children; ``environment`` says what this system is.
"""

from __future__ import annotations

__version__ = "0.1.0"
