"""The page's parts without a browser: families, outcome classes (``unsupported`` either
way), expectation data, clipping, and escaping (tests/test_page_browser.py opens it)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pytest_memsyscalls.cli import diff as diff_cli
from pytest_memsyscalls.matrix import render
from pytest_memsyscalls.matrix import table as matrix_table
from pytest_memsyscalls.matrix.runner import Result
from pytest_memsyscalls.report.classes import clip, expectation, family_of, family_title, outcome_class
from pytest_memsyscalls.report.page import head_facts


def semantic(sid: str, outcome: str, reason: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"id": sid, "statement": f"statement of {sid}", "source": "mmap(2) ERRORS", "tier": "linux",
            "outcome": outcome, "reason": reason, "expected": None, "observed": None, "nodeids": [],
            "tests": [], **extra}


def report(*rows: dict[str, Any]) -> dict[str, Any]:
    return {"schema": "pytest-memsyscalls/report/v1", "environment": {}, "summary": {}, "semantics": list(rows)}


def test_families_are_the_first_id_component_with_mlock_calls_together() -> None:
    assert family_of("mmap.prot_none.segv_accerr") == "mmap"
    assert family_of("sysv.shmat.unaligned_einval") == "sysv" and family_title("sysv") == "SysV shm"
    assert {family_of(f"{call}.x") for call in ("mlock", "mlock2", "mlockall", "munlock", "munlockall")} == {"mlock"}
    assert family_of("noDots") == "noDots"


def test_unsupported_is_a_class_from_the_reason_or_the_outcome() -> None:
    assert outcome_class(semantic("a.b", "skipped", "unsupported:MADV_COLD (EINVAL from a probe)")) == "unsupported"
    assert outcome_class(semantic("a.b", "unsupported", "unsupported:MADV_COLD")) == "unsupported"
    assert outcome_class(semantic("a.b", "skipped", "needs:CAP_IPC_LOCK")) == "skipped"
    assert outcome_class(semantic("a.b", "failed", "unsupported: in a failure message")) == "failed"
    assert outcome_class(semantic("a.b", "xfailed")) == "xfailed"


def test_expectation_comes_from_the_structured_fields_never_the_message() -> None:
    assert expectation(semantic("a.b", "failed", "X should fail with EINVAL; it succeeded")) == (None, None)
    assert expectation(semantic("a.b", "failed", "...", expected="E", observed="O")) == ("E", "O")
    tests = [{"nodeid": "t::a", "outcome": "passed"}, {"nodeid": "t::b", "outcome": "failed", "expected": "E2",
                                                       "observed": "O2"}]
    assert expectation(semantic("a.b", "failed", "...", tests=tests)) == ("E2", "O2")


def test_clip_keeps_the_first_line_short() -> None:
    assert clip("one line") == "one line"
    assert clip("first\n +  where x = Step(text='a', kind='vmflags')") == "first …"
    assert len(clip("x" * 500)) == 160 and clip("x" * 500).endswith("…")
    assert clip(None) == ""


def test_head_facts_kernel_arch_page_sandbox_uid() -> None:
    env = {"kernel": {"release": "6.1.0-56-amd64", "arch": "aarch64", "page_size": 65536},
           "sandbox": {"kind": "gvisor"}, "identity": {"euid": 65534}}
    assert head_facts(env) == ["6.1.0", "aarch64 64K", "gvisor", "uid 65534"]
    assert head_facts({}) == []


def test_unsupported_cells_in_the_table_markdown_and_page() -> None:
    results = [Result("a", "a", "ok", report=report(semantic("x.one", "skipped", "unsupported:MADV_COLD (probe)"),
                                                    semantic("x.two", "unsupported", "unsupported:MAP_SYNC"),
                                                    semantic("x.three", "skipped", "needs:CAP_IPC_LOCK")))]
    table = matrix_table.merge(results)
    states = {row.id: row.cells["a"].state for row in table.rows}
    assert states == {"x.one": "unsupported", "x.two": "unsupported", "x.three": "skipped"}
    assert table.columns[0].counts["unsupported"] == 2
    assert "2 unsupported" in render.column_summary(table.columns[0])
    assert "| `x.one` | unsup |" in render.render_markdown(table)
    page = render.render_html(table)
    assert "<option value='unsup'>unsup in a column (2)</option>" in page


def test_report_text_cannot_become_markup() -> None:
    evil = "</script><img src=x onerror=alert(1)>"
    results = [Result("t<b>", "t<b>", "ok", report=report(semantic("a.b", "failed", evil, expected=evil,
                                                                     observed="'\u2028'"),
                                                            semantic("c'd.e", "skipped", evil)))]
    page = render.render_html(matrix_table.merge(results))
    assert "<img" not in page and "</script><" not in page.replace("</script></body>", "")
    assert "t&lt;b&gt;" in page and "data-id='c&#x27;d.e'" in page
    data = re.search(r"<script type=application/json id=memsys-data>(.*?)</script>", page, re.S)
    assert data is not None
    rows = json.loads(data.group(1))["rows"]
    assert {g["e"] for row in rows for g in row["g"] if g["e"]} == {evil}


def test_diff_html_writes_the_page(tmp_path: Path) -> None:
    old, new = tmp_path / "before.json", tmp_path / "after.json"
    old.write_text(json.dumps(report(semantic("mmap.a", "passed"), semantic("sysv.b", "passed"))))
    new.write_text(json.dumps(report(semantic("mmap.a", "failed", "m", expected="E", observed="O"),
                                     semantic("sysv.b", "passed"), semantic("brk.c", "passed"))))
    out = tmp_path / "pages" / "diff.html"
    assert diff_cli.cmd_diff([str(old), str(new), "--html", str(out)]) == 1
    page = out.read_text()
    assert "What changed: before → after" in page
    assert "data-id='mmap.a'" in page and "data-flag=1" in page
    assert page.index("data-fam='brk'") < page.index("data-fam='mmap'") < page.index("data-fam='sysv'")
