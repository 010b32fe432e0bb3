"""The command line: `python -m pytest_memsyscalls ...`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest


def memsyscalls(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest_memsyscalls", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def test_env_json_has_every_field() -> None:
    result = memsyscalls("env", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    for key in ("kernel", "identity", "capabilities", "rlimits", "security", "sandbox", "namespaces", "ipc",
                "dev_shm", "thp", "overcommit", "vm", "hugepages", "libc"):
        assert key in data, key
    assert {"memlock", "address_space", "data"} <= set(data["rlimits"])
    assert {"ipc_lock", "ipc_owner", "sys_admin", "sys_resource"} <= set(data["capabilities"])


def test_env_text_is_one_fact_per_line() -> None:
    result = memsyscalls("env")
    assert result.returncode == 0
    assert any(line.startswith("RLIMIT_MEMLOCK:") for line in result.stdout.splitlines())


def test_semantics_are_listed_from_the_markers() -> None:
    result = memsyscalls("semantics", "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    ids = [row["id"] for row in rows]
    assert ids == sorted(ids) and len(ids) == len(set(ids))
    families = {semantic_id.split(".")[0] for semantic_id in ids}
    assert {"mmap", "munmap", "msync", "mprotect", "mremap", "mincore", "brk", "sysv", "posix_shm", "mlock",
            "madvise"} <= families
    assert all(row["statement"] and row["source"] and row["tests"] for row in rows)


def test_run_executes_the_shipped_suite_from_any_directory(tmp_path: Path) -> None:
    result = memsyscalls("run", "-q", "-k", "mprotect and unaligned", cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-2000:]
    assert " passed" in result.stdout
    assert not (tmp_path / ".pytest_cache").exists()


def test_run_passes_pytest_exit_status_through(tmp_path: Path) -> None:
    result = memsyscalls("run", "-q", "-k", "no_test_has_this_name", cwd=tmp_path)
    assert result.returncode == pytest.ExitCode.NO_TESTS_COLLECTED


@pytest.mark.parametrize("args", [[], ["--help"]])
def test_usage(args: list[str]) -> None:
    result = memsyscalls(*args)
    assert "run [PYTEST ARGS...]" in result.stdout
    assert result.returncode == (0 if args else 2)


def test_unknown_command_is_an_error() -> None:
    result = memsyscalls("frobnicate")
    assert result.returncode == 2
    assert "unknown command 'frobnicate'" in result.stderr


def test_a_reader_that_goes_away_is_not_a_traceback() -> None:
    """`memsyscalls diff A B | head`: the closed pipe ends the command quietly, with the
    status a shell gives a command SIGPIPE killed."""
    baselines = Path(__file__).resolve().parent.parent / "ci" / "baselines"
    proc = subprocess.Popen([sys.executable, "-m", "pytest_memsyscalls", "diff", str(baselines / "native.json"),
                             str(baselines / "gvisor.json")], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # before the interpreter has started: its first write meets a closed pipe
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141, stderr
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr


# --- paths that cannot be written: usage errors before anything runs ------------------

@pytest.mark.parametrize("where", ["directory", "missing-parent", "read-only"])
def test_an_unwritable_report_path_is_a_usage_error_before_any_test(pytester: pytest.Pytester, where: str) -> None:
    pytester.makepyfile("def test_one(page_size): open('ran', 'w').close()")
    path = {"directory": str(pytester.path),
            "missing-parent": str(pytester.path / "no" / "such" / "r.json"),
            "read-only": "/sys/memsys-report.json"}[where]  # sysfs refuses new files, even to root
    result = pytester.runpytest_subprocess(f"--memsys-report={path}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "cannot write the report there" in result.stderr.str()
    assert "--memsys-report" in result.stderr.str()
    assert "Traceback" not in result.stderr.str() + result.stdout.str()
    assert not (pytester.path / "ran").exists()
    assert not (pytester.path / "no").exists()


def test_matrix_in_a_read_only_directory_is_a_usage_error() -> None:
    done = memsyscalls("matrix", "--targets", "native", cwd=Path("/sys/kernel"))
    assert done.returncode == 2
    assert "--out memsys-matrix" in done.stderr and "cannot create a file" in done.stderr
    assert "Traceback" not in done.stderr


def test_matrix_does_not_create_missing_parents(tmp_path: Path) -> None:
    done = memsyscalls("matrix", "--targets", "native", "--out", str(tmp_path / "a" / "b"))
    assert done.returncode == 2 and "does not exist" in done.stderr
    assert not (tmp_path / "a").exists()


def test_command_text_names_memsyscalls_run_and_has_no_rest_markup(tmp_path: Path) -> None:
    helped = memsyscalls("run", "--help", cwd=tmp_path)
    assert helped.stdout.startswith("usage: memsyscalls run ")
    bad = memsyscalls("run", "--no-such-option", cwd=tmp_path)
    assert bad.returncode == 4 and "memsyscalls run: error: unrecognized arguments" in bad.stderr
    assert "pytest.main()" not in helped.stdout + bad.stderr
    top = memsyscalls("--help")
    assert "``" not in top.stdout and "tutorial this suite grew from" in top.stdout


def test_run_leaves_no_hypothesis_directory_in_the_working_directory(tmp_path: Path) -> None:
    env = {**os.environ, "MEMSYS_CACHE": str(tmp_path / "cache")}
    work = tmp_path / "work"
    work.mkdir()
    done = subprocess.run([sys.executable, "-m", "pytest_memsyscalls", "run", "-q", "-k", "model_sysv"],
                          capture_output=True, text=True, cwd=work, env=env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert list(work.iterdir()) == []


def test_run_imports_hypothesis_only_in_a_worker_that_runs_a_state_machine(tmp_path: Path) -> None:
    """Importing Hypothesis costs ~0.3 s of CPU per process (bench/README.md): under
    ``memsyscalls run`` neither the pytest process (the controller) nor a worker that runs
    no state machine pays it."""
    (tmp_path / "who_imported.py").write_text(  # each process's last word counts
        "import os, sys\n"
        "def note(who):\n"
        "    with open(os.environ['WHO_IMPORTED'], 'a') as out:\n"
        "        out.write(f\"{who} {'hypothesis' in sys.modules}\\n\")\n"
        "def pytest_runtest_teardown(item):\n"
        "    note(f'worker-{os.getpid()}')\n"
        "def pytest_unconfigure(config):\n"
        "    note('controller')\n")

    def imported(selection: str) -> dict[str, bool]:
        record = tmp_path / f"{selection}.txt"
        env = {**os.environ, "MEMSYS_CACHE": str(tmp_path / "cache"), "WHO_IMPORTED": str(record),
               "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))}
        done = subprocess.run([sys.executable, "-m", "pytest_memsyscalls", "run", "-q", "-p", "who_imported",
                               "-k", selection], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        return {who: flag == "True" for who, flag in (line.split() for line in record.read_text().splitlines())}

    without = imported("munmap")
    assert len(without) > 1 and not any(without.values()), without
    with_machine = imported("model_sysv")
    assert with_machine.pop("controller") is False
    assert sorted(with_machine.values()) == [False] * (len(with_machine) - 1) + [True], with_machine


# --- matrix targets without a checkout, and the cache ----------------------------------

def _cached(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MEMSYS_CACHE": str(tmp_path / "memsyscalls-cache")}
    return subprocess.run([sys.executable, "-m", "pytest_memsyscalls", *args], capture_output=True, text=True,
                          env=env, timeout=300)


def test_matrix_help_and_list_name_the_cache_and_the_prepare_command(tmp_path: Path) -> None:
    helped = _cached(tmp_path, "matrix", "--help")
    text = "".join(helped.stdout.split())  # argparse wraps long paths anywhere
    assert str(tmp_path / "memsyscalls-cache") in text
    assert "memsyscallsprepare--clear-cache" in text
    listed = _cached(tmp_path, "matrix", "--list", "--targets", "native,qemu:6.1")
    assert "memsyscalls prepare TARGET" in listed.stdout and "no checkout is needed" in listed.stdout


def test_the_preparation_ships_in_the_package() -> None:
    import pytest_memsyscalls.cli.prepare as prepare

    assert prepare.SCRIPT.is_file() and prepare.SCRIPT.parent.name == "matrix"
    assert (prepare.SCRIPT.parent / "extract_vmlinux.py").is_file()
    wrapper = Path(prepare.__file__).parents[2] / "ci" / "prepare.sh"
    assert "pytest_memsyscalls/matrix/prepare.sh" in wrapper.read_text()


def test_the_cache_size_can_be_shown_and_the_cache_cleared(tmp_path: Path) -> None:
    cache = tmp_path / "memsyscalls-cache"
    (cache / "kernels").mkdir(parents=True)
    (cache / "kernels" / "vmlinuz").write_bytes(b"x" * 100_000)
    shown = _cached(tmp_path, "prepare", "--cache")
    assert shown.returncode == 0 and "kernels" in shown.stdout and "(total)" in shown.stdout
    assert "KiB" in shown.stdout
    cleared = _cached(tmp_path, "prepare", "--clear-cache")
    assert cleared.returncode == 0 and f"removed {cache}" in cleared.stdout
    assert not cache.exists()
    none = _cached(tmp_path, "prepare")
    assert none.returncode == 2 and "name at least one target" in none.stderr


def test_clearing_refuses_a_cache_that_is_not_ours(tmp_path: Path) -> None:
    env = {**os.environ, "MEMSYS_CACHE": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "pytest_memsyscalls", "prepare", "--clear-cache"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 2 and "refusing" in done.stderr and tmp_path.exists()


def test_the_semantic_ids_the_docs_show_exist() -> None:
    """README.md and ARCHITECTURE.md show `@semantic("id", ...)`: each id is one the suite
    checks (a renamed semantic must not leave the docs pointing at nothing); the one
    template, ``family.topic.effect``, aside."""
    root = Path(__file__).resolve().parent.parent
    pattern = re.compile(r'@semantic\(\s*"([^"]+)"')
    suite = {found for module in (root / "conformance").glob("test_*.py")
             for found in pattern.findall(module.read_text())}
    shown = {doc: pattern.findall((root / doc).read_text()) for doc in ("README.md", "ARCHITECTURE.md")}
    assert all(shown.values()), f"no example id found in {shown}"
    missing = {doc: [i for i in ids if i not in suite and i != "family.topic.effect"] for doc, ids in shown.items()}
    assert missing == {"README.md": [], "ARCHITECTURE.md": []}
