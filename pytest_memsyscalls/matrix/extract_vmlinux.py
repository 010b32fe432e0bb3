#!/usr/bin/env python3
"""Extract the uncompressed ELF kernel (vmlinux) from a bzImage, like the kernel's
scripts/extract-vmlinux.

Why: under TCG, QEMU spends ~5 s emulating the kernel's own decompressor; an ELF
vmlinux with a PVH note boots straight away (``qemu -kernel vmlinux``).

    python3 extract_vmlinux.py BZIMAGE OUT  (next to prepare.sh in pytest_memsyscalls/matrix/)
"""

from __future__ import annotations

import bz2
import lzma
import shutil
import subprocess
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

ELF = b"\x7fELF"


def _zstd(data: bytes) -> bytes:
    tool = shutil.which("zstd")
    if tool is None:
        raise RuntimeError("zstd-compressed kernel: apt-get install zstd")
    return subprocess.run([tool, "-dcq"], input=data, capture_output=True, check=False).stdout


def _gzip(data: bytes) -> bytes:
    out = zlib.decompressobj(16 + zlib.MAX_WBITS)
    return out.decompress(data)


def _xz(data: bytes) -> bytes:
    out = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
    return out.decompress(data)


def _lzma(data: bytes) -> bytes:
    out = lzma.LZMADecompressor(format=lzma.FORMAT_ALONE)
    return out.decompress(data)


def _bzip2(data: bytes) -> bytes:
    return bz2.BZ2Decompressor().decompress(data)


MAGICS: list[tuple[bytes, Callable[[bytes], bytes]]] = [
    (b"\x28\xb5\x2f\xfd", _zstd),
    (b"\xfd7zXZ\x00", _xz),
    (b"\x1f\x8b\x08", _gzip),
    (b"\x5d\x00\x00", _lzma),
    (b"BZh", _bzip2),
]


def extract(image: bytes) -> bytes:
    """The first payload that decompresses to an ELF file."""
    for magic, decompress in MAGICS:
        start = image.find(magic)
        while start != -1:
            try:
                out = decompress(image[start:])
            except (OSError, EOFError, ValueError, lzma.LZMAError, zlib.error):
                out = b""
            if out.startswith(ELF):
                return out
            start = image.find(magic, start + 1)
    raise RuntimeError("no compressed ELF payload found (already a vmlinux?)")


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    source, target = Path(argv[0]), Path(argv[1])
    data = source.read_bytes()
    out = data if data.startswith(ELF) else extract(data)
    tmp = target.with_suffix(".tmp")
    tmp.write_bytes(out)
    tmp.replace(target)
    print(f"{target}: {len(out)} bytes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
