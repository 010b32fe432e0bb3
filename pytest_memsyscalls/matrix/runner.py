"""Running the conformance suite in each target, several at once, with progress.

Why: a semantic that holds natively may be refused to an unprivileged user, capped by
RLIMIT_MEMLOCK, filtered by seccomp, or implemented differently by gVisor or another
kernel; the matrix runs the same suite in each environment this machine can reproduce
(``targets``), each writing its own report, and ``table`` merges them.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from . import targets as T
from .suite import conformance_dir
from .unavailable import Unavailable


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
    (with its compiled probe and the conformance suite) plus cached pytest, Hypothesis and
    pytest-xdist (a dependency of the package, for ``memsyscalls run -n N``)."""
    from importlib import metadata

    pins = [f"{name}=={metadata.version(name)}" for name in ("pytest", "hypothesis", "pytest-xdist")]
    deps = T.cache_dir() / ("site-deps-py311-" + "-".join(pin.replace("==", "") for pin in pins))
    if not (deps / "pytest").is_dir():
        tmp = deps.with_name(deps.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.parent.mkdir(parents=True, exist_ok=True)
        done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--target", str(tmp), *pins],
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise Unavailable(f"{', '.join(pins)} in {deps} (pip install --target failed: "
                              f"{done.stderr.strip()[-300:]})")
        os.replace(tmp, deps)
    site = run_dir / "site"
    package = Path(__file__).resolve().parents[1]  # pytest_memsyscalls, not this subpackage
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


def safe_label(label: str) -> str:
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
    return safe_label(spec.replace(":", "-")) + ".json"


def run_target(target: T.Target, ctx: T.Context, run_dir: Path, progress: Progress,
               baselines: Path | None = None) -> Result:
    from ..report.model import ReportError, load_report

    label = target.label
    workdir = run_dir / safe_label(label)
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
            workdir = run_dir / safe_label(result.label)
            for name, suffix in (("report.json", ".json"), ("log.txt", ".log"), ("console.txt", ".console.log")):
                if (workdir / name).exists():
                    shutil.copyfile(workdir / name, out_dir / f"{safe_label(result.label)}{suffix}")
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    return [results[spec] for spec in specs if spec in results], time.monotonic() - start


