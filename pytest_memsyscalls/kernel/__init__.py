"""The kernel door, the lowest layer: every system call goes through ``libc`` (ctypes with
``use_errno``, explicit argument and return types, an ``OSError`` naming the call), every
number the calls take is in ``constants``, every direct memory access goes through the
C ``probe``, and ``procfs`` parses the /proc files the suite uses as oracles. Nothing
here imports pytest or any other layer of this package.

PYTEST_DONT_REWRITE: loaded into every pytest session (plugin/activation.py says why).
"""
