"""matrix.html and ``diff --html`` in a real browser: Debian's chromium, headless, driven
through Playwright's Python package (its own browser download is never used).

One browser for the module; each test opens a page from a file:// URL and checks what a
person would: the grid renders, the filters work, a differing cell expands to what the
documentation predicts against what was observed, the page loads nothing from a network,
prints no console error, and fits 1280 px and a phone with 16 targets and 460+ semantics.

Without chromium or playwright the tests skip with a ``needs:`` reason; on CI (CI=true),
where ci/setup.sh --test installs both, they fail instead.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_memsyscalls.cli import diff as diff_cli
from pytest_memsyscalls.cli import matrix as matrix_cli
from pytest_memsyscalls.matrix import render
from pytest_memsyscalls.matrix import table as matrix_table
from pytest_memsyscalls.matrix.runner import Result
from pytest_memsyscalls.report.classes import family_of, outcome_class

BASELINES = Path(__file__).resolve().parent.parent / "ci" / "baselines"
REAL = ["native", "unprivileged", "memlock-64k", "gvisor", "qemu-6.1", "qemu-5.10"]
CHROMIUM = os.environ.get("MEMSYS_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
# Playwright gives every launch a fresh temporary profile (--user-data-dir) of its own.
ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


def _missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "needs:playwright (the test extra: pip install -e '.[test]', as ci/setup.sh --test does)"
    if not os.access(CHROMIUM, os.X_OK):
        return f"needs:chromium at {CHROMIUM} (apt-get install chromium, as ci/setup.sh --test does)"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    missing = _missing()
    if missing is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{missing}; CI must run the browser tests")
        pytest.skip(missing)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield chromium
        chromium.close()


class Opened:
    """A page and everything it did that a test may object to."""

    def __init__(self, browser: Any, url: str, width: int, height: int) -> None:
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page = browser.new_page(viewport={"width": width, "height": height})
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(f"console: {m.text}"))
        self.page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.goto(url)
        self.page.wait_for_selector("body[data-ready='1']", timeout=10_000)

    def visible_ids(self) -> list[str]:
        return list(self.page.eval_on_selector_all(
            "#grid tr.sem", "rows => rows.filter(r => r.offsetParent !== null).map(r => r.dataset.id)"))

    def column(self, label: str) -> int:
        return int(self.page.evaluate(
            "label => JSON.parse(document.getElementById('memsys-data').textContent).heads.indexOf(label)", label))

    def close(self) -> None:
        self.page.close()


@pytest.fixture
def opened(browser: Any) -> Iterator[Any]:
    pages: list[Opened] = []

    def open_page(path: Path, width: int = 1400, height: int = 900, fragment: str = "") -> Opened:
        page = Opened(browser, path.as_uri() + fragment, width, height)
        pages.append(page)
        return page

    yield open_page
    for page in pages:
        # nothing went to a network, nothing complained
        assert page.errors == []
        assert all(url.startswith("file://") for url in page.requests), page.requests
        page.close()


def _reports() -> dict[str, dict[str, Any]]:
    return {name: json.loads((BASELINES / f"{name}.json").read_text()) for name in REAL}


@pytest.fixture(scope="module")
def real_page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """matrix.html from the six baselines CI gates on, through ``matrix --merge``."""
    out = tmp_path_factory.mktemp("matrix")
    assert matrix_cli.cmd_matrix(["--merge", *(str(BASELINES / f"{n}.json") for n in REAL), "--out", str(out)]) == 0
    return out / "matrix.html"


def test_grid_renders_families_and_target_heads(opened: Any, real_page: Path) -> None:
    reports = _reports()
    ids = sorted({s["id"] for r in reports.values() for s in r["semantics"]})
    differing = sorted({s["id"] for r in reports.values() for s in r["semantics"] if s["outcome"] == "failed"})
    page = opened(real_page)
    assert page.page.locator("#grid tr.sem").count() == len(ids)
    families = page.page.eval_on_selector_all("#grid tbody", "bodies => bodies.map(b => b.dataset.fam)")
    assert families == list(dict.fromkeys(families)) and set(families) == {family_of(i) for i in ids}
    assert families[:3] == ["brk", "mmap", "munmap"]
    # only the differing rows show at first, grouped by family, each family row with its counts
    assert sorted(page.visible_ids()) == differing
    assert page.page.inner_text("#shown") == f"{len(differing)} of {len(ids)} semantics shown"
    mmap_row = page.page.locator("#grid tbody[data-fam='mmap'] tr.famrow td").all_inner_texts()
    gvisor = page.column("gvisor")
    assert mmap_row[gvisor] == str(sum(1 for s in reports["gvisor"]["semantics"]
                                       if s["outcome"] == "failed" and family_of(s["id"]) == "mmap"))
    assert mmap_row[page.column("native")] == "ok"
    heads = [h.replace("\u00ad", "") for h in page.page.locator("#grid thead tr").first.locator("th.col")
             .all_inner_texts()]
    assert [h.split("\n")[0] for h in heads] == REAL
    assert heads[gvisor].split("\n")[1:] == ["4.4.0", "x86_64 4K", "gvisor", "uid 0"]
    assert "uid 65534" in heads[page.column("unprivileged")]
    # one short word per cell
    words = page.page.eval_on_selector_all("#grid td.c", "cells => cells.map(c => c.textContent)")
    assert {len(w.split()) for w in words} == {1} and max(map(len, words)) <= 7


def test_filters(opened: Any, real_page: Path) -> None:
    reports = _reports()
    rows: dict[str, set[str]] = {}
    tiers: dict[str, str] = {}
    for report in reports.values():
        for s in report["semantics"]:
            rows.setdefault(s["id"], set()).add(outcome_class(s))
            tiers[s["id"]] = s["tier"]
    page = opened(real_page)
    page.page.uncheck("#only")
    assert len(page.visible_ids()) == len(rows)
    page.page.select_option("#fam", "madvise")
    assert sorted(page.visible_ids()) == sorted(i for i in rows if family_of(i) == "madvise")
    page.page.select_option("#fam", "")
    page.page.select_option("#tier", "posix")
    assert sorted(page.visible_ids()) == sorted(i for i, t in tiers.items() if t == "posix")
    page.page.select_option("#tier", "")
    page.page.select_option("#cls", "unsup")
    unsupported = sorted(i for i, classes in rows.items() if "unsupported" in classes)
    assert unsupported and sorted(page.visible_ids()) == unsupported
    page.page.check("#only")
    assert sorted(page.visible_ids()) == sorted(i for i in unsupported if "failed" in rows[i])
    page.page.uncheck("#only")
    page.page.select_option("#cls", "")
    page.page.fill("#q", "shmctl")
    assert page.visible_ids() and all("shmctl" in i for i in page.visible_ids())
    # a family folds away by its row
    page.page.fill("#q", "")
    page.page.click("#grid tbody[data-fam='mmap'] tr.famrow th")
    assert not any(i.startswith("mmap.") for i in page.visible_ids())


def test_differing_cell_expands_to_expected_and_observed(opened: Any, real_page: Path) -> None:
    gvisor = {s["id"]: s for s in _reports()["gvisor"]["semantics"]}
    page = opened(real_page)
    column = page.column("gvisor")
    sid = "madvise.errors.negative_length"
    page.page.click(f"#grid tr.sem[data-id='{sid}'] td[data-col='{column}']")
    detail = page.page.locator(f"#grid tr.sem[data-id='{sid}'] + tr.detail")
    assert detail.locator("li.focus .expected").inner_text() == gvisor[sid]["expected"]
    assert detail.locator("li.focus .observed").inner_text() == gvisor[sid]["observed"] == "succeeded"
    assert gvisor[sid]["statement"] in detail.inner_text()
    # without expectation data: the failure message's first line, clipped, never the repr dump
    sid = "model.address_space.matches_kernel"
    assert gvisor[sid]["expected"] is None
    page.page.click(f"#grid tr.sem[data-id='{sid}'] td[data-col='{column}']")
    reason = page.page.locator(f"#grid tr.sem[data-id='{sid}'] + tr.detail li.focus .reason").inner_text()
    assert reason.startswith("arena.prot_none.r_faults: page 0 read gave SIGSEGV")
    sid = "mlockall.onfault.current_not_populated"
    assert gvisor[sid]["expected"] is None and "Step(text=" in gvisor[sid]["reason"]
    page.page.click(f"#grid tr.sem[data-id='{sid}'] td[data-col='{column}']")
    detail = page.page.locator(f"#grid tr.sem[data-id='{sid}'] + tr.detail")
    assert "Step(" not in detail.inner_text()
    reason = detail.locator("li.focus .reason").inner_text()
    assert "\n" not in reason and len(reason) <= 162
    assert "no expectation data recorded" in detail.inner_text()
    # a second click folds it again
    page.page.click(f"#grid tr.sem[data-id='{sid}'] td[data-col='{column}']")
    assert page.page.locator(f"#grid tr.sem[data-id='{sid}'] + tr.detail").count() == 0


def test_semantic_link_opens_statement_and_source(opened: Any, real_page: Path) -> None:
    native = {s["id"]: s for s in _reports()["native"]["semantics"]}
    sid = "mprotect.readonly.write_faults" if "mprotect.readonly.write_faults" in native else sorted(native)[0]
    page = opened(real_page, fragment=f"#{sid}")  # a passing row, hidden by the first filter
    detail = page.page.locator(f"#grid tr.sem[data-id='{sid}'] + tr.detail")
    assert detail.is_visible()
    assert native[sid]["statement"] in detail.inner_text()
    man = detail.locator(".src a").first
    name, section = native[sid]["source"].split("(", 1)[0], native[sid]["source"].split("(", 1)[1][0]
    assert man.get_attribute("href") == f"https://man7.org/linux/man-pages/man{section}/{name}.{section}.html"
    # the id itself is the link, and clicking it folds and unfolds the same detail
    link = page.page.locator(f"#grid tr.sem[data-id='{sid}'] th.sid a")
    assert link.get_attribute("href") == f"#{sid}"
    link.click()
    assert page.page.locator(f"#grid tr.sem[data-id='{sid}'] + tr.detail").count() == 0


# --- a page too big for a screen, made from copies of real reports ------------------------

BIG_LABELS = ["native", "unprivileged", "memlock-64k", "userns", "seccomp", "gvisor-20221219", "gvisor:trixie",
              "podman", "qemu-5.10", "qemu-6.1", "qemu-6.12", "qemu-7.2", "aarch64-64k", "riscv64", "qemu-4.19",
              "qemu-6.6"]


@pytest.fixture(scope="module")
def big_page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """16 targets (one unavailable) x 469 semantics; some outcomes are the report value
    ``unsupported``, some skips ``unsupported:``."""
    reports = _reports()
    sources = [reports[n] for n in REAL]
    results = []
    for i, label in enumerate(BIG_LABELS[:-1]):
        report = copy.deepcopy(sources[i % len(sources)])
        for n in range(180):
            outcome = ("passed", "failed", "skipped", "unsupported")[(n + i) % 4 if n % 7 == 0 else 0]
            report["semantics"].append({
                "id": f"extra{n % 6}.case.number_{n:03d}_with_a_longish_name", "statement": f"statement {n}",
                "source": "madvise(2)", "tier": "linux", "outcome": outcome,
                "reason": {"failed": "no structured data\nsecond line", "skipped": "unsupported:MADV_X (EINVAL)",
                           "unsupported": "unsupported:MADV_Y (probe)"}.get(outcome),
                "expected": None, "observed": None, "nodeids": [], "tests": []})
        results.append(Result(label, label, "ok", report=report, exit_code=0, elapsed=10.0))
    results.append(Result(BIG_LABELS[-1], BIG_LABELS[-1], "unavailable", "kernel 6.6 (ci/prepare.sh qemu:6.6)"))
    table = matrix_table.merge(results)
    assert len(table.columns) == 16 and len(table.rows) >= 450
    out = tmp_path_factory.mktemp("big") / "matrix.html"
    out.write_text(render.render_html(table), encoding="utf-8")
    return out


def test_sixteen_targets_fit_1280_px(opened: Any, big_page: Path) -> None:
    page = opened(big_page, width=1280, height=800)
    page.page.uncheck("#only")
    sizes = page.page.evaluate("""() => {
        const wrap = document.querySelector('.wrap'), grid = document.getElementById('grid');
        return {doc: document.documentElement.scrollWidth, grid: grid.scrollWidth, wrap: wrap.clientWidth,
                heads: grid.tHead.rows[0].cells.length};
    }""")
    assert sizes["heads"] == 17
    assert sizes["doc"] <= 1280 and sizes["grid"] <= sizes["wrap"], sizes
    assert len(page.visible_ids()) >= 450
    page.page.select_option("#cls", "unsup")
    unsupported = page.page.eval_on_selector_all(
        "#grid tr.sem", "rows => rows.filter(r => r.offsetParent !== null).map(r => !!r.querySelector('td.unsup'))")
    assert len(unsupported) > 10 and all(unsupported)
    assert page.page.locator("#grid thead th.col.na").count() == 1


def test_phone_scrolls_the_grid_not_the_page(opened: Any, big_page: Path) -> None:
    page = opened(big_page, width=390, height=844)
    sizes = page.page.evaluate("""() => {
        const wrap = document.querySelector('.wrap');
        wrap.scrollLeft = 400;
        const row = [...document.querySelectorAll('#grid tr.sem')].find(r => r.offsetParent !== null);
        return {doc: document.documentElement.scrollWidth, wrap: wrap.clientWidth, grid: wrap.scrollWidth,
                scrolled: wrap.scrollLeft, idLeft: row.querySelector('th.sid').getBoundingClientRect().left,
                wrapLeft: wrap.getBoundingClientRect().left};
    }""")
    assert sizes["doc"] <= 390, sizes
    assert sizes["grid"] > sizes["wrap"] and sizes["scrolled"] > 0
    assert abs(sizes["idLeft"] - sizes["wrapLeft"]) <= 2, sizes  # the semantic column stays in view
    # a differing cell far right still expands into view
    column = page.column("qemu-7.2")
    sid = page.page.eval_on_selector(f"#grid tr.sem td.differs[data-col='{column}']", "c => c.parentNode.dataset.id")
    page.page.click(f"#grid tr.sem[data-id='{sid}'] td[data-col='{column}']")
    box = page.page.locator(f"#grid tr.sem[data-id='{sid}'] + tr.detail .box").bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390


# --- memsyscalls diff --html ----------------------------------------------------------------


def test_diff_page_groups_changes_by_family(opened: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "diff.html"
    status = diff_cli.cmd_diff([str(BASELINES / "native.json"), str(BASELINES / "gvisor.json"), "--html", str(out)])
    assert status == 1
    lines = capsys.readouterr().out.splitlines()
    # every change the text table lists, a new reason included; "known" (fails in both the
    # same way) is not a change
    changed = [parts[0] for parts in map(str.split, lines[2:])
               if len(parts) == 4 and parts[3] in ("changed", "new", "missing", "changed-failure", "reason-changed")]
    page = opened(out)
    assert sorted(page.visible_ids()) == sorted(changed)
    heads = page.page.locator("#grid thead tr").first.locator("th.col").all_inner_texts()
    assert [h.split("\n")[0] for h in heads] == ["native", "gvisor", "change"]
    sid = "munmap.einval.beyond_address_space"
    page.page.click(f"#grid tr.sem[data-id='{sid}'] td[data-col='2']")
    detail = page.page.locator(f"#grid tr.sem[data-id='{sid}'] + tr.detail")
    assert "passed → failed" in detail.inner_text()
    assert detail.locator(".observed").inner_text() == "succeeded"
    munmap_changes = sum(1 for changed_id in changed if changed_id.startswith("munmap."))
    assert page.page.locator("#grid tbody[data-fam='munmap'] tr.famrow td").all_inner_texts()[2] == str(munmap_changes)


# --- a real matrix: the one CI just made, or any `matrix --out` directory -------------------

REPO = Path(__file__).resolve().parent.parent


def _real_matrix_dir() -> Path | None:
    """MEMSYS_PAGE_CHECK=DIR (a `memsyscalls matrix --out` directory), else reports/matrix,
    which .ci/run's matrix step writes before the tests run."""
    given = os.environ.get("MEMSYS_PAGE_CHECK")
    candidate = Path(given) if given else REPO / "reports" / "matrix"
    return candidate if (candidate / "matrix.html").exists() and (candidate / "matrix.json").exists() else None


def test_a_real_matrix_page_passes_the_checks(opened: Any) -> None:
    directory = _real_matrix_dir()
    if directory is None:
        pytest.skip("needs:a matrix (MEMSYS_PAGE_CHECK=DIR from `memsyscalls matrix --out DIR`, or reports/matrix)")
    data = json.loads((directory / "matrix.json").read_text())
    labels = [c["label"] for c in data["columns"]]
    differing = sorted(r["id"] for r in data["rows"] if any(c["state"] == "differs" for c in r["cells"].values()))
    page = opened(directory / "matrix.html", width=1280, height=800)
    # the grid: every semantic, a head per target, only the differing rows at first
    assert page.page.locator("#grid tr.sem").count() == len(data["rows"])
    heads = [h.replace("\u00ad", "").split("\n")[0]
             for h in page.page.locator("#grid thead tr").first.locator("th.col").all_inner_texts()]
    assert heads == labels
    assert sorted(page.visible_ids()) == differing
    assert page.page.evaluate("document.documentElement.scrollWidth") <= 1280
    # every differing cell expands to expected/observed or a one-line reason (clicked in the
    # page itself: one round trip, not two per cell)
    problems = page.page.evaluate("""() => {
        const problems = [];
        for (const cell of document.querySelectorAll('#grid tr.sem td.differs')) {
            const row = cell.parentNode;
            cell.click();
            const focus = row.nextElementSibling && row.nextElementSibling.querySelector('li.focus');
            const shown = focus && (focus.querySelector('.observed') || focus.querySelector('.reason'));
            if (!shown || !shown.textContent || shown.textContent.includes('\\n')) problems.push(row.dataset.id);
            cell.click();
            if (row.nextElementSibling && row.nextElementSibling.classList.contains('detail')) problems.push('open');
        }
        return problems;
    }""")
    assert problems == []
    assert page.page.eval_on_selector_all("#grid tr.sem td.differs", "cs => cs.length") == sum(
        1 for r in data["rows"] for c in r["cells"].values() if c["state"] == "differs")
    # each family filter shows exactly its rows
    page.page.uncheck("#only")
    shown = page.page.evaluate("""() => {
        const fam = document.getElementById('fam'), out = {};
        for (const option of fam.options) {
            if (!option.value) continue;
            fam.value = option.value;
            fam.dispatchEvent(new Event('change'));
            out[option.value] = [...document.querySelectorAll('#grid tr.sem')]
                .filter(r => r.offsetParent !== null).map(r => r.dataset.id).sort();
        }
        return out;
    }""")
    expected: dict[str, list[str]] = {}
    for row in data["rows"]:
        expected.setdefault(family_of(row["id"]), []).append(row["id"])
    assert shown == {family: sorted(ids) for family, ids in expected.items()}
