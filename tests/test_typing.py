"""The fixture factories are typed: their Protocols (MappedPages, MappedFile, ...) let
mypy check a test's calls, so the conformance suite, the examples and these tests
need no comment that silences mypy."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
IGNORE = "type: " + "ignore"  # spelled in two parts so this file does not match itself

USES = '''
from pathlib import Path

from pytest_memsyscalls import (
    ChildOutcome, ExpectSignal, Fault, FaultProbe, FileMapping, LockedRegion, MappedFile, MappedPages, Mapping,
    PosixShm, PosixShmFactory, RunInChild, ShmSegment, ShmSegmentFactory,
)
from pytest_memsyscalls.kernel import constants as C


def test_each_fixture(mapped_pages: MappedPages, mapped_file: MappedFile, locked_region: LockedRegion,
                      shm_segment: ShmSegmentFactory, posix_shm: PosixShmFactory, run_in_child: RunInChild,
                      expect_signal: ExpectSignal, fault_probe: FaultProbe) -> None:
    page: Mapping = mapped_pages(2, prot=C.PROT_READ, flags=C.MAP_PRIVATE | C.MAP_ANONYMOUS, fd=None)
    mapped_pages()
    file: FileMapping = mapped_file(b"x", size=4096, shared=False, offset=0)
    path: Path = file.path
    locked: Mapping = locked_region(1, onfault=True)
    segment: ShmSegment = shm_segment(4096, key="unique", mode=0o600)
    shared: PosixShm = posix_shm(4096, mode=0o600)
    outcome: ChildOutcome = run_in_child(sum, [1, 2], timeout=5.0)
    fault: Fault | None = fault_probe.read(page.addr)
    with expect_signal(11, code=C.SEGV_ACCERR, addr=page.addr, timeout=None) as block:
        fault_probe.write(page.addr, 1)
    print(path, locked, segment, shared, outcome, fault, block.expectation())


def test_wrong_calls(mapped_pages: MappedPages, mapped_file: MappedFile, locked_region: LockedRegion,
                     shm_segment: ShmSegmentFactory, posix_shm: PosixShmFactory, run_in_child: RunInChild,
                     expect_signal: ExpectSignal, fault_probe: FaultProbe) -> None:
    mapped_pages("1")  # error
    mapped_pages(1, protection=3)  # error
    mapped_file("text")  # error
    mapped_pages(1).path  # error
    locked_region(onfault="yes")  # error
    shm_segment(key=1.5)  # error
    posix_shm(name="x")  # error
    run_in_child(sum, timeout="5")  # error
    run_in_child().value  # error
    expect_signal(11, 22)  # error
    fault_probe.read("0x1")  # error
    fault_probe.nothing  # error
'''


def test_no_type_ignore_in_the_suite_the_examples_and_the_tests() -> None:
    found = [f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
             for folder in ("conformance", "examples", "tests")
             for path in sorted((ROOT / folder).rglob("*.py"))
             for number, line in enumerate(path.read_text().splitlines(), 1) if IGNORE in line]
    assert found == []


def test_mypy_checks_fixture_calls_and_the_conformance_suite(tmp_path: Path) -> None:
    """Each fixture used with its Protocol passes mypy --strict, each wrong call is an
    error (the Protocols are not Any), and so does the whole conformance suite."""
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed in this environment (pip install -e .[lint])")
    sample = tmp_path / "memsys_fixture_types_sample.py"
    sample.write_text(USES)
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary", "--show-error-codes",
         "--hide-error-context", str(sample), "conformance"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    expected = {number for number, line in enumerate(USES.splitlines(), 1) if line.endswith("# error")}
    # by file name: mypy's cache may replay the sample's errors under the path of an earlier run
    where = re.compile(rf"(?:.*/)?{re.escape(sample.name)}:(\d+):")
    on_sample = {int(match.group(1)) for line in errors if (match := where.match(line))}
    others = [line for line in errors if not where.match(line)]
    assert others == [], "\n".join(others)
    assert on_sample == expected, result.stdout
    assert result.returncode == 1, result.stderr
