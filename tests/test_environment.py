"""The environment fingerprint, natively and in the sandboxes it must recognise.

The sandbox tests run ``detect()`` in a child under setpriv (uid 65534), runsc
(gVisor) and bwrap, loading only procfs.py and environment.py: the package's
``__init__`` imports pytest, which the interpreter a uid-65534 child can
execute (Debian's /usr/bin/python3) may not have.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_memsyscalls.environment import fingerprint as environment
from pytest_memsyscalls.environment.fingerprint import Capabilities, format_bytes, format_limit, parse_thp_mode
from pytest_memsyscalls.kernel import procfs

REPO = Path(__file__).resolve().parent.parent
DATA = Path(__file__).parent / "data" / "proc"

EXPECTED_KEYS: dict[str, set[str]] = {
    "kernel": {"release", "version", "arch", "page_size", "shmlba", "pmd_huge_size"},
    "identity": {"uid", "euid", "gid", "egid"},
    "capabilities": {"effective", "known", "user_namespace", "ipc_lock", "ipc_owner", "sys_admin",
                     "sys_resource"},
    "rlimits": {"memlock", "address_space", "data", "stack"},
    "security": {"seccomp", "no_new_privs", "tracer_pid", "ptrace_scope"},
    "sandbox": {"kind", "details"},
    "namespaces": {"user", "pid", "ipc", "uid_map", "in_user_namespace"},
    "ipc": {"shmmax", "shmall", "shmmni"},
    "dev_shm": {"exists", "fstype", "mount_point", "options", "size", "free"},
    "thp": {"enabled", "defrag"},
    "overcommit": {"memory", "ratio"},
    "vm": {"mmap_min_addr", "max_map_count"},
    "hugepages": {"total", "free", "size_kb"},
    "libc": {"name", "version"},
    "cpu": {"flags", "pkey_exec_only", "read_implies_exec"},
}

# Run in the child: import the two modules without the package __init__.
CHILD = r"""
import json, sys, types
repo, out = sys.argv[1], sys.argv[2]
pkg = types.ModuleType("pytest_memsyscalls")
pkg.__path__ = [repo + "/pytest_memsyscalls"]
sys.modules["pytest_memsyscalls"] = pkg
from pytest_memsyscalls.environment import fingerprint as environment
env = environment.detect()
with open(out, "w") as f:
    json.dump({"env": env.as_dict(), "header": env.header_lines(), "describe": env.describe()}, f)
"""


def check_schema(d: dict[str, Any]) -> None:
    assert set(d) == set(EXPECTED_KEYS) | {"unknown", "kernel_config", "features", "brk_helper"}
    assert isinstance(d["kernel_config"], str)
    for name, promise in d["features"].items():
        assert set(promise) == {"feature", "state", "why", "works"}, name
        assert promise["state"] in ("promised", "not promised", "unknown"), name
    for key, fields in EXPECTED_KEYS.items():
        assert isinstance(d[key], dict), key
        assert set(d[key]) == fields, key
    for lim in d["rlimits"].values():
        assert set(lim) == {"soft", "hard"}
    assert isinstance(d["unknown"], dict)


def run_child(prefix: list[str], tmp_path: Path, python: str = sys.executable,
              timeout: float = 120) -> dict[str, Any]:
    tmp_path.chmod(0o777)
    out = tmp_path / "env.json"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    script.chmod(0o644)
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run([*prefix, python, str(script), str(REPO), str(out)],
                          env=env, cwd=str(tmp_path), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{prefix} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert out.exists(), f"{prefix}: child wrote no {out}\n{proc.stdout}\n{proc.stderr}"
    result: dict[str, Any] = json.loads(out.read_text())
    return result


# ------------------------------------------------------------------ native


def test_detect_is_json_with_every_field() -> None:
    env = environment.detect()
    d = json.loads(json.dumps(env.as_dict()))
    check_schema(d)
    assert d["identity"]["euid"] == os.geteuid()
    assert d["kernel"]["release"] == os.uname().release
    assert d["kernel"]["page_size"] == os.sysconf("SC_PAGESIZE")
    assert d["kernel"]["shmlba"] == os.sysconf("SC_PAGESIZE")  # x86_64 and the matrix's arm64, ppc64le
    assert env.arch == os.uname().machine
    assert d["capabilities"]["known"] is True


def test_detect_is_cached_and_uncached_agrees() -> None:
    assert environment.detect() is environment.detect()
    fresh = environment.detect_uncached()
    assert fresh is not environment.detect()
    assert fresh.identity == environment.detect().identity


def test_rlimits_match_resource_module() -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    lim = environment.detect().rlimits.memlock
    assert lim.soft == (None if soft == resource.RLIM_INFINITY else soft)
    assert lim.hard == (None if hard == resource.RLIM_INFINITY else hard)


def test_capabilities_agree_with_status() -> None:
    caps = environment.detect().capabilities
    raw = procfs.decode_capabilities(procfs.read_status()["CapEff"])
    assert caps.effective == raw


def test_header_and_describe_shape() -> None:
    env = environment.detect()
    lines = env.header_lines()
    assert 2 <= len(lines) <= 4
    assert all(line.startswith("memsyscalls: ") for line in lines)
    assert f"page {os.sysconf('SC_PAGESIZE')}" in lines[0]
    assert f"sandbox {env.sandbox.kind}" in lines[0]
    text = env.describe()
    assert "page size:" in text and "RLIMIT_MEMLOCK:" in text and "sandbox:" in text
    assert all(":" in line for line in text.splitlines())


def test_sandbox_accepts_a_list_and_stays_hashable() -> None:
    s = environment.Sandbox("mine", ["because"])
    assert s.details == ("because",)
    assert hash(s) == hash(environment.Sandbox("mine", ("because",)))


# ------------------------------------------------------------------- units


def test_format_bytes() -> None:
    assert format_bytes(8 * 1024 * 1024) == "8 MiB"
    assert format_bytes(65536) == "64 KiB"
    assert format_bytes(1536) == "1.5 KiB"
    assert format_bytes(100) == "100 B"
    assert format_bytes(0) == "0 B"
    assert format_bytes(18446744073692774399) == "16.0 EiB"  # the default shmmax
    assert format_limit(None) == "unlimited"


def test_parse_thp_mode() -> None:
    assert parse_thp_mode("always [madvise] never\n") == "madvise"
    assert parse_thp_mode("always defer defer+madvise [madvise] never") == "madvise"
    assert parse_thp_mode("[always] madvise never") == "always"
    assert parse_thp_mode("garbage") is None


def test_capabilities_in_user_namespace_do_not_count_for_mlock() -> None:
    # bwrap's recorded status: full CapEff, but in a user namespace.
    mask = procfs.parse_status((DATA / "bwrap" / "status").read_text())["CapEff"]
    caps = Capabilities.from_mask(mask, user_namespace=True, own_ipc_namespace=True)
    assert "CAP_IPC_LOCK" in caps.effective
    assert caps.ipc_lock is False and caps.sys_admin is False and caps.sys_resource is False
    assert caps.ipc_owner is True
    assert not caps.has("CAP_IPC_LOCK") and caps.has("CAP_IPC_OWNER")
    native = Capabilities.from_mask(mask)
    assert native.ipc_lock is True and native.has("CAP_IPC_LOCK") and native.sys_resource is False
    unknown = Capabilities.from_mask(None)
    assert unknown.effective == frozenset() and not unknown.known and unknown.ipc_lock is None


def test_dev_shm_mount_resolution_in_recorded_mountinfo() -> None:
    native = procfs.parse_mountinfo((DATA / "native_root" / "mountinfo").read_text())
    m = environment._mount_of(native, "/dev/shm", "0:27")
    assert m is not None and (m.mount_id, m.mount_point, m.fstype) == (30, "/dev/shm", "tmpfs")
    bw = procfs.parse_mountinfo((DATA / "bwrap" / "mountinfo").read_text())
    m = environment._mount_of(bw, "/dev/shm", "0:41")  # a plain directory on bwrap's /dev
    assert m is not None and (m.mount_point, m.fstype) == ("/dev", "tmpfs")
    assert "nosuid" in m.mount_options


# --------------------------------------------------------------- sandboxes


def _setpriv_python() -> str:
    """An interpreter uid 65534 can execute (pyenv's lives under /root, 0700)."""
    for candidate in (sys.executable, shutil.which("python3", path="/usr/bin:/bin"),
                      "/usr/local/bin/python3"):
        if not candidate or not os.path.exists(candidate):
            continue
        ok = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", candidate, "-c",
             "import sys; assert sys.version_info >= (3, 10)"],
            capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
        if ok.returncode == 0:
            return candidate
    pytest.skip("no Python >= 3.10 that uid 65534 can execute (tried sys.executable, /usr/bin/python3)")


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A scratch directory every uid can use (pytest's tmp_path is under a 0700 dir)."""
    path = Path(tempfile.mkdtemp(prefix="memsys-env-"))
    path.chmod(0o777)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_unprivileged_user_has_no_ipc_lock(shared_dir: Path) -> None:
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv not installed (util-linux)")
    if os.geteuid() != 0:
        pytest.skip(f"needs root to switch to uid 65534 (euid is {os.geteuid()})")
    if not os.access(REPO, os.R_OK | os.X_OK) or not os.stat(REPO).st_mode & 0o005:
        pytest.skip(f"{REPO} is not readable by others, so uid 65534 cannot import from it")
    result = run_child(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"],
                       shared_dir, python=_setpriv_python())
    d = result["env"]
    check_schema(d)
    assert d["identity"] == {"uid": 65534, "euid": 65534, "gid": 65534, "egid": 65534}
    assert d["capabilities"]["ipc_lock"] is False
    assert d["capabilities"]["effective"] == []
    assert "caps none (no IPC_LOCK,IPC_OWNER,SYS_ADMIN,SYS_RESOURCE)" in result["header"][0]


def test_gvisor_is_detected(tmp_path: Path) -> None:
    runsc = shutil.which("runsc")
    if runsc is None:
        pytest.skip("runsc not installed (apt-get install runsc)")
    if os.geteuid() != 0:
        pytest.skip(f"`runsc --rootless do` is only exercised here as root (euid is {os.geteuid()})")
    # runsc breaks inherited pipes: the child writes its result into tmp_path,
    # which it can see only without the overlay (-force-overlay=false).
    result = run_child([runsc, "--rootless", "--network=none", "do", "-force-overlay=false"], tmp_path)
    d = result["env"]
    check_schema(d)
    assert d["sandbox"]["kind"] == "gvisor", d["sandbox"]
    assert d["kernel"]["release"] == "4.4.0"
    assert d["kernel"]["version"] == environment.GVISOR_VERSION
    # What gVisor does not provide shows up as None with a reason.
    assert d["security"]["no_new_privs"] is None
    assert "security.no_new_privs" in d["unknown"]
    assert result["header"][0].endswith("sandbox gvisor")


def test_bubblewrap_user_namespace(tmp_path: Path) -> None:
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        pytest.skip("bwrap not installed (apt-get install bubblewrap)")
    prefix = [bwrap, "--unshare-user", "--unshare-ipc", "--unshare-pid", "--ro-bind", "/", "/",
              "--dev", "/dev", "--proc", "/proc", "--bind", str(tmp_path), str(tmp_path)]
    result = run_child(prefix, tmp_path)
    d = result["env"]
    check_schema(d)
    assert d["sandbox"]["kind"] == "bubblewrap", d["sandbox"]
    assert d["namespaces"]["in_user_namespace"] is True
    assert d["namespaces"]["pid"]["initial"] is False and d["namespaces"]["ipc"]["initial"] is False
    # Root in a user namespace: CAP_IPC_LOCK is in CapEff but mlock ignores it.
    assert d["capabilities"]["ipc_lock"] is False
    assert d["security"]["no_new_privs"] is True


def test_the_brk_helpers_facts_are_in_the_fingerprint() -> None:
    """What the mlockall tests compare with RLIMIT_MEMLOCK is shown by `memsyscalls env`."""
    from pytest_memsyscalls.memory.brk import run, with_helper_facts

    helper = with_helper_facts(environment.detect()).brk_helper
    assert helper is not None and helper.vmsize is not None
    mapped = run("mmap:3", "status:VmSize")
    assert mapped[1].status_kb * 1024 == helper.vmsize + 3 * os.sysconf("SC_PAGESIZE")
    shown = json.loads(subprocess.run([sys.executable, "-m", "pytest_memsyscalls", "env", "--json"],
                                      capture_output=True, text=True, check=True).stdout)
    assert shown["brk_helper"]["vmsize"] == helper.vmsize


def test_a_traced_process_knows_it_and_needs_ptrace_says_so(tmp_path: Path) -> None:
    """Under strace the fingerprint shows the tracer, and the layout tests' need is unmet."""
    script = tmp_path / "traced.py"
    script.write_text("import json\nfrom pytest_memsyscalls.environment.fingerprint import detect\n"
                      "from pytest_memsyscalls.environment.needs import unmet_needs\n"
                      "env = detect()\nprint(json.dumps([env.security.tracer_pid, unmet_needs(('ptrace',), env)]))\n")
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("needs:strace (apt-get install strace)")
    done = subprocess.run([strace, "-f", "-o", os.devnull, sys.executable, str(script)], capture_output=True,
                          text=True, timeout=60)
    if done.returncode != 0 and "ptrace" in done.stderr:
        pytest.skip(f"needs:ptrace ({done.stderr.strip()[:200]})")
    tracer, reasons = json.loads(done.stdout)
    assert tracer and reasons == [f"needs:untraced (traced by pid {tracer}, so a child of ours cannot PTRACE_TRACEME)"]
