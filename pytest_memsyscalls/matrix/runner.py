"""``python -m pytest_memsyscalls matrix``: the suite in several environments, one table.

Why: a semantic that holds natively may be refused to an unprivileged user, capped by
RLIMIT_MEMLOCK, filtered by seccomp, or implemented differently by gVisor or another
kernel. Running the same suite in each environment this machine can reproduce and
merging the reports into one semantic x environment table shows, per semantic, where
the documented behaviour holds, where it differs (and how: documented versus
observed, from the report's reason) and where it could not be checked (and why).

    memsyscalls matrix [--targets native,unprivileged,...] [--out DIR] [--jobs N] [-- PYTEST ARGS]
    memsyscalls matrix --list                     which targets this machine can run
    memsyscalls matrix --merge A.json B.json ...  merge reports made elsewhere (e.g. CI jobs)

Writes DIR/<target>.json (each report), DIR/<target>.log, DIR/matrix.md, DIR/matrix.html
and DIR/matrix.json. Exit status: 0 when every available target produced a report, 1
when one crashed or timed out, 2 on bad usage. Differences are results, not errors.
For a fleet of machines, the CI system's own job matrix is the engine
(ci/github-workflow.yml); ``--merge`` builds the table from its reports.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from . import targets as T
from .suite import conformance_dir
from .unavailable import Unavailable

STATES = ("differs", "passed", "skipped", "absent", "unavailable", "error")


# --- running ------------------------------------------------------------------------


@dataclass
class Result:
    """One target's run."""

    spec: str
    label: str
    status: str  # ok | unavailable | error
    reason: str | None = None
    report: dict[str, Any] | None = None
    exit_code: int | None = None
    elapsed: float = 0.0


def build_site(run_dir: Path) -> str:
    """A PYTHONPATH that Debian's python3 can use as any user: the package as installed
    (with its compiled probe and the conformance suite) plus cached pytest and Hypothesis."""
    import hypothesis
    import pytest

    deps = T.cache_dir() / f"site-deps-py311-pytest{pytest.__version__}-hypothesis{hypothesis.__version__}"
    if not (deps / "pytest").is_dir():
        tmp = deps.with_name(deps.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.parent.mkdir(parents=True, exist_ok=True)
        done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--target", str(tmp),
                               f"pytest=={pytest.__version__}", f"hypothesis=={hypothesis.__version__}"],
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise Unavailable(f"pytest and hypothesis in {deps} (pip install --target failed: "
                                f"{done.stderr.strip()[-300:]})")
        os.replace(tmp, deps)
    site = run_dir / "site"
    package = Path(__file__).resolve().parent
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", ".hypothesis")
    shutil.copytree(package, site / "pytest_memsyscalls", ignore=ignore)
    target = site / "pytest_memsyscalls" / "conformance"
    if not target.exists():
        shutil.copytree(conformance_dir(), target, ignore=ignore)
    path = f"{site}:{deps}"
    # Byte-compile, and let pytest write its assertion-rewritten test modules once: every
    # target then reads them instead of compiling pytest, Hypothesis and the suite again
    # (under qemu's TCG that is tens of seconds per guest). Python 3.11's .pyc format is
    # shared by Debian's 3.11 and any other 3.11.
    python = T.SYSTEM_PYTHON if os.access(T.SYSTEM_PYTHON, os.X_OK) else sys.executable
    subprocess.run([python, "-m", "compileall", "-q", str(site), str(deps)], capture_output=True, check=False)
    env = {"PATH": T.BASE_PATH, "PYTHONPATH": path, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "HOME": str(run_dir)}
    subprocess.run([python, "-m", "pytest_memsyscalls", "run", "--collect-only", "-q"], env=env, cwd=run_dir,
                   capture_output=True, check=False, timeout=300)
    for found in [run_dir, *site.rglob("*")]:
        os.chmod(found, 0o755 if found.is_dir() or os.access(found, os.X_OK) else 0o644)
    return path


def _safe(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", label)


class Progress:
    """A line per target start and finish with elapsed time; on a terminal, also a status
    line with each running target's pytest progress (the last ``[ NN%]`` in its log)."""

    def __init__(self, stream: TextIO, tty: bool | None = None) -> None:
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self.start = time.monotonic()
        self.running: dict[str, tuple[float, Path]] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None
        self.status_width = 0

    def __enter__(self) -> Progress:
        if self.tty:
            self.thread = threading.Thread(target=self._tick, daemon=True)
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        if self.thread:
            self.thread.join()
        self._clear()

    def clock(self) -> str:
        return f"[{time.monotonic() - self.start:6.1f}s]"

    def line(self, text: str) -> None:
        with self.lock:
            self._clear()
            self.stream.write(f"{self.clock()} {text}\n")
            self.stream.flush()

    def started(self, label: str, log: Path) -> None:
        with self.lock:
            self.running[label] = (time.monotonic(), log)
        self.line(f"start  {label}")

    def finished(self, result: Result) -> None:
        with self.lock:
            self.running.pop(result.label, None)
        self.line(f"finish {result.label} in {result.elapsed:.1f}s: {describe_result(result)}")

    def _clear(self) -> None:
        if self.tty and self.status_width:
            self.stream.write("\r" + " " * self.status_width + "\r")
            self.status_width = 0

    def _tick(self) -> None:
        while not self.stop.wait(1.0):
            with self.lock:
                parts = []
                for label, (since, log) in self.running.items():
                    parts.append(f"{label} {_log_progress(log)} {time.monotonic() - since:.0f}s")
                text = f"{self.clock()} running: " + " | ".join(parts) if parts else ""
                width = shutil.get_terminal_size().columns - 1
                text = text[:width]
                self._clear()
                self.stream.write(text)
                self.stream.flush()
                self.status_width = len(text)


_PERCENT = re.compile(rb"\[\s*(\d+)%\]")


def _log_progress(log: Path) -> str:
    try:
        with open(log, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 4096))
            tail = f.read()
    except OSError:
        return "starting"
    found = _PERCENT.findall(tail)
    if found:
        return f"{int(found[-1])}%"
    return "booting" if b"memsys-guest" in tail or not tail else "collecting"


def describe_result(result: Result) -> str:
    if result.status == "unavailable":
        return f"unavailable: {result.reason}"
    if result.report is None:
        return f"error: {result.reason}"
    summary = result.report.get("summary") or {}
    return (f"{summary.get('passed', 0)} passed, {summary.get('failed', 0)} differ, "
            f"{summary.get('skipped', 0)} skipped (pytest exit {result.exit_code})")


def _tail(path: Path, lines: int = 6) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])


def baseline_name(spec: str) -> str:
    """The file a target's baseline lives in: ``qemu:6.1`` -> ``qemu-6.1.json``."""
    return _safe(spec.replace(":", "-")) + ".json"


def run_target(target: T.Target, ctx: T.Context, run_dir: Path, progress: Progress,
               baselines: Path | None = None) -> Result:
    from ..report.model import ReportError, load_report

    label = target.label
    workdir = run_dir / _safe(label)
    workdir.mkdir(mode=0o777)
    os.chmod(workdir, 0o777)  # uid 65534 writes its report here
    if baselines is not None and (baselines / baseline_name(target.spec)).exists():
        # A copy every target can read (the repository may not be readable by uid 65534).
        shutil.copyfile(baselines / baseline_name(target.spec), workdir / T.BASELINE_NAME)
        os.chmod(workdir / T.BASELINE_NAME, 0o644)
    start = time.monotonic()
    try:
        inv = target.invocation(ctx, workdir)
    except Unavailable as missing:
        return Result(target.spec, label, "unavailable", str(missing))
    progress.started(label, inv.log)
    out_path = inv.stdout or inv.log
    console = workdir / "console.txt" if inv.status_file else None
    with open(console or out_path, "wb") as out, open(inv.log if inv.stdout else os.devnull, "wb") as err:
        stderr = err if inv.stdout else subprocess.STDOUT
        proc = subprocess.Popen(inv.argv, env=inv.env, cwd=inv.cwd, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=stderr, start_new_session=True)
        try:
            code = proc.wait(timeout=inv.timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            elapsed = time.monotonic() - start
            return Result(target.spec, label, "error", f"timed out after {inv.timeout:.0f} s", elapsed=elapsed)
    if inv.status_file is not None:
        try:
            code = int(inv.status_file.read_text().strip())
        except (OSError, ValueError):
            reason = f"the guest wrote no exit status (qemu exit {code}); console: {_tail(console or inv.log)}"
            return Result(target.spec, label, "error", reason, exit_code=code, elapsed=time.monotonic() - start)
    elapsed = time.monotonic() - start
    try:
        report = load_report(inv.report)
    except ReportError as error:
        reason = f"no report (exit {code}): {error}; log: {_tail(inv.log)}"
        return Result(target.spec, label, "error", reason, exit_code=code, elapsed=elapsed)
    return Result(target.spec, label, "ok", None, report, code, elapsed)


def _stable_run_dir(runs: Path) -> Path:
    """``runs/matrix-N`` with the lowest free N (mkdir is atomic): paths that end up in
    failure messages (the site, the brk helper) are then the same from run to run, so a
    baseline's reasons still match."""
    for n in range(1000):
        candidate = runs / f"matrix-{n}"
        try:
            candidate.mkdir(mode=0o755)
        except FileExistsError:
            continue
        return candidate
    return Path(tempfile.mkdtemp(prefix="matrix-", dir=runs))


def check_targets(specs: Sequence[str]) -> list[tuple[T.Target, str | None]]:
    """Each target with None when it can run here, else what is missing."""
    out: list[tuple[T.Target, str | None]] = []
    for spec in specs:
        target = T.make_target(spec)
        try:
            target.check()
            out.append((target, None))
        except Unavailable as missing:
            out.append((target, str(missing)))
    return out


def run_matrix(specs: Sequence[str], out_dir: Path, jobs: int, pytest_args: Sequence[str],
               stream: TextIO, baselines: Path | None = None) -> tuple[list[Result], float]:
    """Run every available target (longest first, ``jobs`` at a time); copy reports and
    logs into out_dir. Returns the results in the order asked and the wall time."""
    start = time.monotonic()
    checked = check_targets(specs)
    results: dict[str, Result] = {}
    runnable = []
    for target, missing in checked:
        if missing is not None:
            results[target.spec] = Result(target.spec, target.label, "unavailable", missing)
        else:
            runnable.append(target)
    progress = Progress(stream)
    # Not under /tmp: a qemu guest mounts its own tmpfs there, and sees the host's run
    # directory (the site) through its read-only 9p root.
    runs = T.cache_dir() / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    os.chmod(runs, 0o755)
    run_dir = _stable_run_dir(runs)
    try:
        with progress:
            for result in results.values():
                progress.line(f"skip   {result.label}: unavailable: {result.reason}")
            if runnable:
                progress.line("building the site directory for /usr/bin/python3")
                try:
                    ctx = T.Context(build_site(run_dir), list(pytest_args))
                except Unavailable as missing:
                    for target in runnable:
                        results[target.spec] = Result(target.spec, target.label, "unavailable", str(missing))
                    runnable = []
            queue = sorted(runnable, key=lambda t: -t.weight())
            lock = threading.Lock()

            def worker() -> None:
                while True:
                    with lock:
                        if not queue:
                            return
                        target = queue.pop(0)
                    try:
                        result = run_target(target, ctx, run_dir, progress, baselines)
                    except Exception as error:  # noqa: BLE001 - one target's crash must not end the matrix
                        result = Result(target.spec, target.label, "error", f"{type(error).__name__}: {error}")
                    with lock:
                        results[target.spec] = result
                    progress.finished(result)

            threads = [threading.Thread(target=worker) for _ in range(max(1, min(jobs, len(queue))))]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        out_dir.mkdir(parents=True, exist_ok=True)
        for result in results.values():
            workdir = run_dir / _safe(result.label)
            for name, suffix in (("report.json", ".json"), ("log.txt", ".log"), ("console.txt", ".console.log")):
                if (workdir / name).exists():
                    shutil.copyfile(workdir / name, out_dir / f"{_safe(result.label)}{suffix}")
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    return [results[spec] for spec in specs if spec in results], time.monotonic() - start


# --- merging ------------------------------------------------------------------------


@dataclass
class Cell:
    state: str  # one of STATES
    text: str = ""  # the reason: documented versus observed, or what was missing


@dataclass
class Row:
    id: str
    statement: str
    source: str
    tier: str
    cells: dict[str, Cell] = field(default_factory=dict)

    @property
    def differs_in(self) -> list[str]:
        return [label for label, cell in self.cells.items() if cell.state == "differs"]


@dataclass
class Column:
    label: str
    status: str  # ok | unavailable | error
    reason: str | None
    environment: dict[str, Any]
    counts: dict[str, int]
    elapsed: float | None = None
    exit_code: int | None = None


@dataclass
class Table:
    columns: list[Column]
    rows: list[Row]


def differing_text(semantic: Mapping[str, Any]) -> str:
    """A failed semantic's cell: what the documentation predicts versus what was observed.

    The report's expected/observed when its failure message named them; otherwise the
    semantic's statement (what the documentation says) against the failure message."""
    expected, observed = semantic.get("expected"), semantic.get("observed")
    reason = str(semantic.get("reason") or "").strip() or "no reason recorded"
    if expected and observed:
        return f"documented: {expected}; observed: {observed}"
    statement = str(semantic.get("statement") or "").strip()
    return f"documented: {statement}; observed: {reason}" if statement else f"observed: {reason}"


def merge(results: Sequence[Result]) -> Table:
    """The semantic x environment table; rows with differences first (most differing
    columns first), then by id."""
    columns: list[Column] = []
    rows: dict[str, Row] = {}
    for result in results:
        counts = {state: 0 for state in STATES}
        environment = dict((result.report or {}).get("environment") or {})
        columns.append(Column(result.label, result.status if result.report is not None or result.status != "ok"
                              else "error", result.reason, environment, counts, result.elapsed or None,
                              result.exit_code))
        for semantic in (result.report or {}).get("semantics", []):
            sid = str(semantic["id"])
            row = rows.setdefault(sid, Row(sid, str(semantic.get("statement") or ""),
                                           str(semantic.get("source") or ""), str(semantic.get("tier") or "")))
            outcome = semantic.get("outcome")
            if outcome == "failed":
                cell = Cell("differs", differing_text(semantic))
            elif outcome == "skipped":
                cell = Cell("skipped", str(semantic.get("reason") or "skipped"))
            else:
                cell = Cell("passed")
            row.cells[result.label] = cell
    for row in rows.values():
        for column in columns:
            if column.label not in row.cells:
                if column.status == "ok":
                    row.cells[column.label] = Cell("absent", "not in this target's report")
                else:
                    row.cells[column.label] = Cell(column.status, column.reason or column.status)
            column.counts[row.cells[column.label].state] += 1
    ordered = sorted(rows.values(), key=lambda r: (-len(r.differs_in), r.id) if r.differs_in else (1, r.id))
    ordered = [r for r in ordered if r.differs_in] + [r for r in ordered if not r.differs_in]
    for row in ordered:
        row.cells = {c.label: row.cells[c.label] for c in columns}
    return Table(columns, ordered)


def results_from_reports(paths: Sequence[str]) -> list[Result]:
    """Results for ``--merge``: one column per report file, labelled by its file name."""
    from ..report.model import ReportError, load_report

    results = []
    for path in paths:
        label = Path(path).name.removesuffix(".json")
        try:
            results.append(Result(label, label, "ok", None, load_report(path)))
        except ReportError as error:
            results.append(Result(label, label, "error", str(error)))
    return results


def environment_facts(env: Mapping[str, Any]) -> str:
    """The facts that decide most expectations, short: kernel, uid, memlock, sandbox."""
    if not env:
        return ""
    kernel = (env.get("kernel") or {}).get("release", "?")
    identity = env.get("identity") or {}
    memlock = ((env.get("rlimits") or {}).get("memlock") or {}).get("soft")
    memlock_text = "unlimited" if memlock is None else (f"{memlock // 1024} KiB" if memlock < 1 << 20
                                                        else f"{memlock // (1 << 20)} MiB")
    caps = (env.get("capabilities") or {}).get("effective") or []
    sandbox = (env.get("sandbox") or {}).get("kind", "?")
    return (f"kernel {kernel}, uid {identity.get('euid', '?')}, {len(caps)} caps, memlock {memlock_text}, "
            f"sandbox {sandbox}")


def to_json(table: Table, wall: float | None = None) -> dict[str, Any]:
    return {
        "schema": "pytest-memsyscalls/matrix/v1",
        "wall_seconds": None if wall is None else round(wall, 1),
        "columns": [{"label": c.label, "status": c.status, "reason": c.reason, "counts": c.counts,
                     "elapsed": None if c.elapsed is None else round(c.elapsed, 1), "exit_code": c.exit_code,
                     "facts": environment_facts(c.environment)} for c in table.columns],
        "rows": [{"id": r.id, "statement": r.statement, "source": r.source, "tier": r.tier,
                  "cells": {label: {"state": cell.state, "text": cell.text} for label, cell in r.cells.items()}}
                 for r in table.rows],
    }


# --- rendering ----------------------------------------------------------------------


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ").strip()


def column_summary(column: Column) -> str:
    if column.status != "ok":
        return f"{column.status}: {column.reason}"
    counts = column.counts
    text = f"{counts['passed']} passed, {counts['differs']} differ, {counts['skipped']} skipped"
    if counts["absent"]:
        text += f", {counts['absent']} absent"
    return text


def render_markdown(table: Table, wall: float | None = None) -> str:
    lines = ["# pytest-memsyscalls environment matrix", ""]
    if wall is not None:
        lines += [f"Wall time: {wall:.0f} s for {len(table.columns)} targets.", ""]
    lines += ["| target | result | time | environment |", "|---|---|---|---|"]
    for c in table.columns:
        took = "" if c.elapsed is None else f"{c.elapsed:.0f} s"
        lines.append(f"| {c.label} | {_md(column_summary(c))} | {took} | {_md(environment_facts(c.environment))} |")
    differing = [r for r in table.rows if r.differs_in]
    lines += ["", f"## Semantics that differ somewhere ({len(differing)})", ""]
    for row in differing:
        lines += [f"### `{row.id}` ({row.tier}; {row.source})", "", _md(row.statement), ""]
        lines += ["| target | outcome | documented versus observed, or why not checked |", "|---|---|---|"]
        for label, cell in row.cells.items():
            shown = f"**{cell.state}**" if cell.state == "differs" else cell.state
            lines.append(f"| {label} | {shown} | {_md(cell.text)} |")
        lines.append("")
    short = {"passed": "pass", "differs": "**DIFFERS**", "skipped": "skip", "absent": "absent",
             "unavailable": "n/a", "error": "error"}
    lines += ["## All semantics", "", "Cells: pass, **DIFFERS** (see above), skip (reason in the list below), "
              "n/a (target unavailable).", ""]
    lines.append("| semantic | " + " | ".join(c.label for c in table.columns) + " |")
    lines.append("|---" * (len(table.columns) + 1) + "|")
    for row in table.rows:
        lines.append(f"| `{row.id}` | " + " | ".join(short[cell.state] for cell in row.cells.values()) + " |")
    skips: dict[str, list[str]] = {}
    for row in table.rows:
        for label, cell in row.cells.items():
            if cell.state == "skipped":
                skips.setdefault(f"`{row.id}`: {_md(cell.text)}", []).append(label)
    if skips:
        lines += ["", "## Skips and their reasons", ""]
        for text, labels in skips.items():
            lines.append(f"- {text} — {', '.join(labels)}")
    return "\n".join(lines) + "\n"


_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:1em 0}
th,td{border:1px solid #ccc;padding:3px 6px;vertical-align:top;text-align:left}
thead th{position:sticky;top:0;background:#f4f4f4}
td.passed{background:#e6f4e6}td.differs{background:#fbd9d3}td.skipped{background:#f3f0d7}
td.unavailable,td.error,td.absent{background:#e8e8e8;color:#666}
td small{display:block;max-width:28em;font-size:12px;color:#333;white-space:pre-wrap}
tr.same td small{display:none}
code{font-size:12px}.stmt{font-size:12px;color:#555;max-width:30em}
label{margin-left:1em}
body.only-differs tr.same{display:none}
"""


def render_html(table: Table, wall: float | None = None) -> str:
    e = html.escape
    out = ["<!doctype html><html><head><meta charset='utf-8'>",
           "<title>pytest-memsyscalls environment matrix</title>", f"<style>{_CSS}</style></head><body>",
           "<h1>pytest-memsyscalls environment matrix</h1>"]
    if wall is not None:
        out.append(f"<p>Wall time: {wall:.0f} s for {len(table.columns)} targets.</p>")
    out.append("<table><thead><tr><th>target</th><th>result</th><th>time</th><th>environment</th></tr></thead>")
    for c in table.columns:
        took = "" if c.elapsed is None else f"{c.elapsed:.0f} s"
        out.append(f"<tr><td>{e(c.label)}</td><td>{e(column_summary(c))}</td><td>{took}</td>"
                   f"<td>{e(environment_facts(c.environment))}</td></tr>")
    out.append("</table>")
    differing = sum(1 for r in table.rows if r.differs_in)
    out.append(f"<p>{len(table.rows)} semantics; {differing} differ in at least one environment (listed first)."
               "<label><input type=checkbox onchange=\"document.body.classList.toggle('only-differs',this.checked)\">"
               " only differing semantics</label></p>")
    out.append("<table><thead><tr><th>semantic</th>" + "".join(f"<th>{e(c.label)}</th>" for c in table.columns)
               + "</tr></thead><tbody>")
    for row in table.rows:
        kind = "differs" if row.differs_in else "same"
        cells = []
        for cell in row.cells.values():
            detail = f"<small>{e(cell.text)}</small>" if cell.text and cell.state != "passed" else ""
            cells.append(f"<td class='{cell.state}' title='{e(cell.text)}'>{cell.state}{detail}</td>")
        out.append(f"<tr class='{kind}'><td><code>{e(row.id)}</code><div class=stmt>{e(row.statement)} "
                   f"({e(row.tier)}; {e(row.source)})</div></td>{''.join(cells)}</tr>")
    out.append("</tbody></table></body></html>")
    return "\n".join(out) + "\n"


def write_outputs(table: Table, out_dir: Path, wall: float | None) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in (("matrix.md", render_markdown(table, wall)), ("matrix.html", render_html(table, wall)),
                       ("matrix.json", json.dumps(to_json(table, wall), indent=2) + "\n")):
        (out_dir / name).write_text(text, encoding="utf-8")
        written.append(out_dir / name)
    return written


# --- the command --------------------------------------------------------------------


def _positive_int(text: str) -> int:
    """argparse type for --jobs: a count of targets at once (0 or less is a usage error)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def cmd_matrix(argv: Sequence[str]) -> int:
    args = list(argv)
    pytest_args: list[str] = []
    if "--" in args:
        cut = args.index("--")
        args, pytest_args = args[:cut], args[cut + 1:]
    parser = argparse.ArgumentParser(prog="memsyscalls matrix", description=__doc__.split("\n\n")[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", default=",".join(T.DEFAULT_TARGETS),
                        help="comma-separated: native, unprivileged, memlock-64k, userns, seccomp, gvisor, "
                             "gvisor:RUNSC|trixie, podman, qemu:KERNEL (5.10, 6.1, 6.12, 7.2 or a path) "
                             "(default: all twelve)")
    parser.add_argument("--out", default="memsys-matrix", help="directory for reports, logs and the tables")
    parser.add_argument("--jobs", type=_positive_int, default=os.cpu_count() or 2,
                        help="targets run at once (default: cores)")
    parser.add_argument("--list", action="store_true", help="show the targets and whether each can run here")
    parser.add_argument("--merge", nargs="+", metavar="REPORT", help="only merge these reports into the tables")
    parser.add_argument("--baselines", metavar="DIR",
                        help="gate each target on DIR/<target>.json (qemu:6.1 -> qemu-6.1.json) with "
                             "--memsys-baseline; exit 1 when any target's gate fails")
    options = parser.parse_args(args)
    specs = [s.strip() for s in options.targets.split(",") if s.strip()]
    out_dir = Path(options.out)
    try:
        for spec in specs:
            T.make_target(spec)
    except ValueError as error:
        parser.error(str(error))
    if options.list:
        for target, missing in check_targets(specs):
            state = "available" if missing is None else f"unavailable: {missing}"
            print(f"{target.spec:<16} {target.label:<18} {state}\n{'':<16} {target.description}")
        return 0
    if options.merge:
        table = merge(results_from_reports(options.merge))
        wall = None
        status = 0
    else:
        baselines = Path(options.baselines) if options.baselines else None
        results, wall = run_matrix(specs, out_dir, options.jobs, pytest_args, sys.stdout, baselines)
        table = merge(results)
        status = 1 if any(r.status == "error" for r in results) else 0
        if baselines is not None:
            for result in results:
                if not (baselines / baseline_name(result.spec)).exists():
                    continue
                if result.status != "ok" or result.exit_code != 0:
                    why = result.reason or f"pytest exit {result.exit_code}; see {out_dir}/{_safe(result.label)}.log"
                    print(f"baseline gate FAILED for {result.spec}: {why}")
                    status = 1
                else:
                    print(f"baseline gate passed for {result.spec}")
    written = write_outputs(table, out_dir, wall)
    print()
    for column in table.columns:
        print(f"{column.label:<18} {column_summary(column)}")
    differing = [r for r in table.rows if r.differs_in]
    print(f"{len(table.rows)} semantics, {len(differing)} differ somewhere"
          + (f"; wall time {wall:.0f} s" if wall is not None else ""))
    print("wrote " + ", ".join(str(p) for p in written))
    return status
