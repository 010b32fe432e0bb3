"""The LAVA test definition (ci/lava/): the layout of Linaro's test-definitions, one
test case per semantic from a report, and a send-to-lava.sh that calls lava-test-case."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFINITION = ROOT / "ci" / "lava" / "automated" / "linux" / "memsyscalls"
SEND = ROOT / "ci" / "lava" / "automated" / "utils" / "send-to-lava.sh"


def test_the_definition_has_linaros_layout_and_runs_its_script() -> None:
    text = (DEFINITION / "memsyscalls.yaml").read_text()
    assert "format: Lava-Test Test Definition 1.0" in text
    assert "- cd ./automated/linux/memsyscalls/" in text
    assert "- ../../utils/send-to-lava.sh ./output/result.txt" in text
    for script in (DEFINITION / "memsyscalls.sh", SEND):
        assert os.access(script, os.X_OK)
        subprocess.run(["sh", "-n", str(script)], check=True)


def test_each_semantic_is_one_lava_test_case(tmp_path: Path) -> None:
    report = {"semantics": [{"id": "mmap.a.passes", "outcome": "passed"},
                            {"id": "mmap.b.fails", "outcome": "failed"},
                            {"id": "mlock.c.skips", "outcome": "skipped"}]}
    (tmp_path / "report.json").write_text(json.dumps(report))
    made = subprocess.run([sys.executable, str(DEFINITION / "report-to-lava.py"), str(tmp_path / "report.json")],
                          capture_output=True, text=True, check=True)
    assert made.stdout.splitlines() == ["mmap.a.passes pass", "mmap.b.fails fail", "mlock.c.skips skip"]
    (tmp_path / "result.txt").write_text(made.stdout)
    fake = tmp_path / "bin" / "lava-test-case"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/calls\n')
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{fake.parent}:{os.environ['PATH']}"}
    subprocess.run([str(SEND), str(tmp_path / "result.txt")], check=True, env=env)
    assert (tmp_path / "calls").read_text().splitlines() == [
        "mmap.a.passes --result pass", "mmap.b.fails --result fail", "mlock.c.skips --result skip"]


def test_an_unreadable_report_is_one_line(tmp_path: Path) -> None:
    made = subprocess.run([sys.executable, str(DEFINITION / "report-to-lava.py"), str(tmp_path / "none.json")],
                          capture_output=True, text=True)
    assert made.returncode == 1 and len(made.stderr.splitlines()) == 1
