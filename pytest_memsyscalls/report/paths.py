"""Where a report or a table may be written, checked before any work starts.

A path that cannot be written is a usage error at the start (a directory, a directory
that does not exist, one this user cannot write in, a read-only file system), not a
traceback after the whole run. Missing parent directories are never created: a typo
in a path should be reported, not turned into a new directory tree.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def _writable_dir(directory: Path) -> str | None:
    """None when a file can be created in ``directory``, else why not (tried, not guessed:
    root ignores mode bits, and a read-only mount refuses even root)."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=".memsys-write-check-", dir=directory)
    except OSError as error:
        return f"cannot create a file in {directory}/: {error.strerror or error}"
    os.close(fd)
    os.unlink(tmp)
    return None


def file_problem(path: str | os.PathLike[str]) -> str | None:
    """Why a report cannot be written at ``path``, or None."""
    target = Path(path)
    if target.is_dir():
        return f"{os.fspath(path)} is a directory; give a file name"
    parent = target.parent
    if not parent.is_dir():
        return f"directory {parent}/ does not exist (it is not created for you)"
    return _writable_dir(parent)


def directory_problem(path: str | os.PathLike[str]) -> str | None:
    """Why an output directory cannot be used (created if missing, but not its parents), or None."""
    target = Path(path)
    if target.exists():
        if not target.is_dir():
            return f"{os.fspath(path)} exists and is not a directory"
        return _writable_dir(target)
    parent = target.parent
    if not parent.is_dir():
        return f"directory {parent}/ does not exist (it is not created for you)"
    return _writable_dir(parent)
