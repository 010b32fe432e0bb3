"""Build the C parts: the native probe library (loaded with ctypes), the brk helper and
the fault injector of the project's own tests (memsys-inject).

The probe is built as an ``Extension`` so that ``pip install .`` compiles it with the
machine's C compiler. It is a small Python module (the probe's hot path, where ctypes
argument conversion would double the cost of a fault) that also exports plain C
functions loaded with ctypes (the child fault reporter, the C-side benchmark). The brk
helper is an executable, linked by the same compiler after the extensions, because a
process whose heap no allocator touches cannot be CPython.
"""

from __future__ import annotations

import os

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

CFLAGS = ["-O2", "-Wall", "-Wextra", "-fno-strict-aliasing"]


class BuildNativeParts(build_ext):
    """build_ext that also links ``memsys-brk-helper`` next to the probe library."""

    def run(self) -> None:
        super().run()
        self._build_brk_helper()
        self._build_injector()

    def _build_brk_helper(self) -> None:
        probe_path = self.get_ext_fullpath("pytest_memsyscalls.kernel._probe")
        out_dir = os.path.dirname(probe_path)
        objects = self.compiler.compile(
            ["csrc/brk_helper.c", "csrc/probe.c"],
            output_dir=self.build_temp,
            extra_postargs=CFLAGS,
        )
        self.compiler.link_executable(objects, "memsys-brk-helper", output_dir=out_dir)

    def _build_injector(self) -> None:
        """memsys-inject: the fault-injection supervisor of the project's own tests
        (tests/fault_injection.py); ptrace rules need x86_64, supervision works anywhere."""
        out_dir = os.path.dirname(self.get_ext_fullpath("pytest_memsyscalls.kernel._probe"))
        objects = self.compiler.compile(["csrc/inject.c"], output_dir=self.build_temp, extra_postargs=CFLAGS)
        self.compiler.link_executable(objects, "memsys-inject", output_dir=out_dir)

    def get_outputs(self) -> list[str]:
        out_dir = os.path.dirname(self.get_ext_fullpath("pytest_memsyscalls.kernel._probe"))
        return [*super().get_outputs(), os.path.join(out_dir, "memsys-brk-helper"),
                os.path.join(out_dir, "memsys-inject")]


setup(
    ext_modules=[
        Extension(
            "pytest_memsyscalls.kernel._probe",
            sources=["csrc/probe.c", "csrc/child_report.c", "csrc/probe_module.c"],
            depends=["csrc/probe.h"],
            extra_compile_args=CFLAGS,
        )
    ],
    cmdclass={"build_ext": BuildNativeParts},
)
