"""The matrix's merge and table logic on small hand-made reports, and ``matrix --list``."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pytest_memsyscalls.cli import matrix as matrix_cli
from pytest_memsyscalls.environment import features
from pytest_memsyscalls.matrix import guest, render, runner, seccomp_profile, targets
from pytest_memsyscalls.matrix import table as matrix_table
from pytest_memsyscalls.matrix.runner import Result


def semantic(sid: str, outcome: str, reason: str | None = None, expected: str | None = None,
             observed: str | None = None) -> dict[str, Any]:
    return {"id": sid, "statement": f"statement of {sid}", "source": "mmap(2)", "tier": "linux",
            "outcome": outcome, "reason": reason, "expected": expected, "observed": observed,
            "nodeids": [f"t.py::{sid}"], "tests": []}


def report(*rows: dict[str, Any], **env: Any) -> dict[str, Any]:
    return {"schema": "pytest-memsyscalls/report/v1", "environment": env,
            "summary": {"semantics": len(rows)}, "semantics": list(rows)}


NATIVE = report(semantic("a.one", "passed"), semantic("b.two", "passed"),
                semantic("c.three", "skipped", "needs:CAP_IPC_LOCK"),
                kernel={"release": "6.1.0"}, identity={"euid": 0}, rlimits={"memlock": {"soft": 8 << 20}},
                capabilities={"effective": ["CAP_IPC_LOCK"]}, sandbox={"kind": "none"})
GVISOR = report(semantic("a.one", "passed"),
                semantic("b.two", "failed", "madvise(...) should fail with EINVAL; it succeeded",
                         expected="madvise(...) should fail with EINVAL", observed="succeeded"),
                semantic("d.four", "failed", "assert 'dd' in {'rd'}"),
                kernel={"release": "4.4.0"}, rlimits={"memlock": {"soft": 65536}}, sandbox={"kind": "gvisor"})


def table() -> matrix_table.Table:
    return matrix_table.merge([Result("native", "native", "ok", report=NATIVE, exit_code=0, elapsed=1.0),
                         Result("gvisor", "gvisor", "ok", report=GVISOR, exit_code=1, elapsed=2.0),
                         Result("qemu:9.9", "qemu-9.9", "unavailable", "kernel 9.9 (memsyscalls prepare qemu:9.9)")])


def test_differing_rows_come_first_most_differing_first() -> None:
    rows = table().rows
    assert [r.id for r in rows] == ["b.two", "d.four", "a.one", "c.three"]
    assert rows[0].differs_in == ["gvisor"]


def test_differing_cell_says_documented_versus_observed() -> None:
    cell = table().rows[0].cells["gvisor"]
    assert cell.state == "differs"
    assert cell.text == "documented: madvise(...) should fail with EINVAL; observed: succeeded"


def test_differing_cell_without_expected_falls_back_to_the_reason() -> None:
    assert table().rows[1].cells["gvisor"].text == "documented: statement of d.four; observed: assert 'dd' in {'rd'}"


def test_skip_keeps_its_reason_and_missing_semantic_is_absent() -> None:
    rows = {r.id: r for r in table().rows}
    assert rows["c.three"].cells["native"].state == "skipped"
    assert rows["c.three"].cells["native"].text == "needs:CAP_IPC_LOCK"
    assert rows["c.three"].cells["gvisor"].state == "absent"
    assert rows["d.four"].cells["native"].state == "absent"


def test_unavailable_column_marks_every_cell_with_what_to_install() -> None:
    merged = table()
    column = merged.columns[2]
    assert column.status == "unavailable"
    assert all(r.cells["qemu-9.9"].state == "unavailable" for r in merged.rows)
    assert "memsyscalls prepare qemu:9.9" in merged.rows[0].cells["qemu-9.9"].text
    assert render.column_summary(column) == "unavailable: kernel 9.9 (memsyscalls prepare qemu:9.9)"


def test_counts_per_column() -> None:
    native, gvisor, _ = table().columns
    assert (native.counts["passed"], native.counts["skipped"], native.counts["absent"]) == (2, 1, 1)
    assert (gvisor.counts["passed"], gvisor.counts["differs"], gvisor.counts["absent"]) == (1, 2, 1)


def test_environment_facts() -> None:
    assert matrix_table.environment_facts(NATIVE["environment"]) == (
        "kernel 6.1.0 (?, ? pages), uid 0, 1 caps, memlock 8 MiB, sandbox none")
    ppc = {"kernel": {"release": "6.1.0-powerpc64le", "arch": "ppc64le", "page_size": 65536}}
    assert matrix_table.environment_facts(ppc).startswith("kernel 6.1.0-powerpc64le (ppc64le, 64 KiB pages), uid ?")
    assert "memlock 64 KiB" in matrix_table.environment_facts(GVISOR["environment"])
    assert matrix_table.environment_facts({}) == ""


def test_markdown_lists_differences_with_their_cells() -> None:
    text = render.render_markdown(table(), wall=12.0)
    assert "Wall time: 12 s for 3 targets." in text
    assert "### `b.two`" in text
    assert "| gvisor | **differs** | documented: madvise(...) should fail with EINVAL; observed: succeeded |" in text
    assert "| `b.two` | pass | **DIFFERS** | n/a |" in text
    assert "- `c.three`: needs:CAP_IPC_LOCK — native" in text
    assert text.index("`b.two`") < text.index("`a.one`")


def test_markdown_escapes_pipes() -> None:
    merged = matrix_table.merge([Result("x", "x", "ok", report=report(semantic("a.b", "failed", "x | y")))])
    assert "x \\| y" in render.render_markdown(merged)


def test_html_is_self_contained_and_escaped() -> None:
    page = render.render_html(table())
    assert "<script src" not in page and "<link" not in page and "@import" not in page
    # a failure without expectation data: its message, clipped, in the page's data
    assert "\"assert 'dd' in {'rd'}\"" in page
    assert "data-id='b.two'" in page and "class='c differs'" in page
    assert "memsyscalls prepare qemu:9.9" in page  # why the unavailable target was not checked


def test_json_round_trip(tmp_path: Path) -> None:
    written = render.write_outputs(table(), tmp_path, 3.0)
    assert [p.name for p in written] == ["matrix.md", "matrix.html", "matrix.json"]
    data = json.loads((tmp_path / "matrix.json").read_text())
    assert data["rows"][0]["cells"]["gvisor"]["state"] == "differs"
    assert data["columns"][2]["status"] == "unavailable"


def test_merge_command_on_report_files(tmp_path: Path) -> None:
    (tmp_path / "native.json").write_text(json.dumps(NATIVE))
    (tmp_path / "gvisor.json").write_text(json.dumps(GVISOR))
    (tmp_path / "broken.json").write_text("{}")
    out = tmp_path / "out"
    status = matrix_cli.cmd_matrix(["--merge", str(tmp_path / "native.json"), str(tmp_path / "gvisor.json"),
                                str(tmp_path / "broken.json"), "--out", str(out)])
    assert status == 0
    data = json.loads((out / "matrix.json").read_text())
    assert [c["label"] for c in data["columns"]] == ["native", "gvisor", "broken"]
    assert data["columns"][2]["status"] == "error"


def test_progress_lines_name_target_and_elapsed(tmp_path: Path) -> None:
    stream = io.StringIO()
    with runner.Progress(stream, tty=False) as progress:
        progress.started("native", tmp_path / "log")
        progress.finished(Result("native", "native", "ok", report=NATIVE, exit_code=0, elapsed=4.2))
    lines = stream.getvalue().splitlines()
    assert lines[0].endswith("start  native")
    assert "finish native in 4.2s: " in lines[1]


def test_log_progress_reads_pytest_percent(tmp_path: Path) -> None:
    log = tmp_path / "log"
    log.write_bytes(b"....  [ 23%]\n...... [ 47%]\n..")
    assert runner._log_progress(log) == "47%"
    assert runner._log_progress(tmp_path / "none") == "starting"


def test_unknown_target_is_a_usage_error() -> None:
    with pytest.raises(ValueError, match="unknown target"):
        targets.make_target("vmware")


def test_qemu_target_without_kernel_says_how_to_fetch(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MEMSYS_CACHE", str(tmp_path))
    target = targets.make_target("qemu:6.1")
    with pytest.raises(targets.Unavailable, match=r"memsyscalls prepare qemu:6.1"):
        target.kernel_image()


def test_cpio_archive_is_newc_and_padded() -> None:
    archive = guest.Cpio()
    archive.directory("bin")
    archive.file("init", b"#!/bin/sh\n", 0o755)
    data = archive.finish()
    assert data.startswith(b"070701")
    assert b"TRAILER!!!" in data
    assert len(data) % 512 == 0
    assert b"init\x00" in data


def test_modinfo_depends_is_read_from_the_module(tmp_path: Path) -> None:
    module = tmp_path / "9p.ko"
    module.write_bytes(b"\x7fELF....license=GPL\x00depends=9pnet,netfs\x00vermagic=6.1\x00")
    assert guest.read_modinfo_depends(module) == ["9pnet", "netfs"]
    (tmp_path / "9pnet.ko").write_bytes(b"depends=\x00")
    (tmp_path / "netfs.ko").write_bytes(b"x")
    order = [p.name for p in guest.module_load_order(tmp_path, ("9p",))]
    assert order == ["9pnet.ko", "netfs.ko", "9p.ko"]


def test_seccomp_rules_keep_the_memory_calls_allowed() -> None:
    denied = {name for name, _, _ in seccomp_profile.rules()}
    assert {"keyctl", "add_key", "mount", "swapon", "unshare", "mbind", "userfaultfd"} <= denied
    assert not denied & {"mmap", "munmap", "mprotect", "mremap", "madvise", "mlock", "mlock2", "mlockall",
                         "msync", "mincore", "shmget", "shmat", "shmctl", "brk", "ptrace"}


def test_list_smoke() -> None:
    done = subprocess.run([sys.executable, "-m", "pytest_memsyscalls", "matrix", "--list",
                           "--targets", "native,qemu:/nonexistent/vmlinuz"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("native")
    assert "unavailable:" in lines[2] and "qemu:/nonexistent/vmlinuz" in lines[2]


def test_foreign_targets_say_how_to_prepare(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MEMSYS_CACHE", str(tmp_path))
    monkeypatch.setattr(targets, "_need_root", lambda what: None)
    monkeypatch.setattr(targets, "_need_tool", lambda name, package: name)
    monkeypatch.setattr(targets, "_need_system_python", lambda: None)
    for spec, arch, page in (("qemu-arm64:6.1", "arm64", 4096), ("qemu-arm64-16k:6.12", "arm64", 16384),
                             ("qemu-ppc64le:6.1", "ppc64el", 65536)):
        target = targets.make_target(spec)
        assert isinstance(target, targets.QemuForeign)
        assert (target.arch, target.page_size) == (arch, page)
        assert target.label == spec.replace(":", "-") == runner.baseline_name(spec).removesuffix(".json")
        with pytest.raises(targets.Unavailable, match=f"ci/prepare.sh {spec}"):
            target.check()


def test_foreign_guest_boots_its_own_root_and_sees_the_host_at_host() -> None:
    script = guest.init_script(["9p.ko"], ["/usr/bin/python3", "-V"], {"A": "1"}, foreign=True)
    assert f"cache=loose {guest.ROOTFS_TAG} /newroot" in script
    assert f"{guest.HOST_TAG} /newroot{guest.HOST_AT}" in script
    assert f"cache=loose {guest.HOST_TAG} /newroot;" in guest.init_script(["9p.ko"], ["true"], {})
    arm = guest.foreign_qemu_command("arm64", Path("/k"), Path("/i"), Path("/r"), "/w")
    assert arm[0] == "qemu-system-aarch64" and "virt,mte=on" in arm and "console=ttyAMA0" in " ".join(arm)
    ppc = guest.foreign_qemu_command("ppc64el", Path("/k"), Path("/i"), Path("/r"), "/w")
    assert ppc[0] == "qemu-system-ppc64" and "console=hvc0" in " ".join(ppc)
    assert "path=/r" in " ".join(ppc) and "readonly=on" in " ".join(ppc)


def test_foreign_guest_gets_the_package_in_tmpfs_with_its_mtimes(tmp_path: Path) -> None:
    """The site travels in the initramfs and is copied to GUEST_SITE (tmpfs, before
    switch_root); each file keeps its mode and mtime, which a .pyc is checked against."""
    site = tmp_path / "site"
    (site / "pkg" / "__pycache__").mkdir(parents=True)
    (site / "pkg" / "mod.py").write_text("x = 1\n")
    (site / "pkg" / "helper").write_bytes(b"\x7fELF")
    os.chmod(site / "pkg" / "helper", 0o755)
    os.utime(site / "pkg" / "mod.py", (1_700_000_000, 1_700_000_000))
    archive = guest.Cpio()
    archive.tree("site", site)
    entries = _cpio_entries(archive.finish())
    assert entries["site/pkg/mod.py"] == (0o100644, 1_700_000_000, b"x = 1\n")
    assert entries["site/pkg/helper"][0] == 0o100755
    assert entries["site/pkg/__pycache__"][0] & 0o170000 == 0o040000
    script = guest.init_script(["9p.ko"], ["true"], {}, foreign=True, site=True)
    copy = script.index(f"cp -a /site /newroot{guest.GUEST_SITE}")
    assert script.index("mount -t tmpfs") < copy < script.index("switch_root")
    assert "cp -a /site" not in guest.init_script(["9p.ko"], ["true"], {}, foreign=True)


def test_guest_finds_its_kernels_config_in_boot(tmp_path: Path) -> None:
    """The kernel's build configuration travels in the initramfs and appears where the
    fingerprint reads it on a Debian install, /boot/config-RELEASE (a tmpfs over /boot,
    before switch_root); without one the script leaves /boot alone."""
    config = tmp_path / "config"
    config.write_bytes(b"CONFIG_SECRETMEM=y\n")
    modules, busybox = tmp_path / "modules", tmp_path / "busybox"
    modules.mkdir()
    busybox.write_bytes(b"\x7fELF")
    initrd = guest.build_initramfs(modules, tmp_path / "initrd", ["true"], {}, busybox=str(busybox), config=config)
    entries = _cpio_entries(initrd.read_bytes())
    assert entries["kconfig"][2] == b"CONFIG_SECRETMEM=y\n"
    script = entries["init"][2].decode()
    copy = script.index('cp /kconfig "/newroot/boot/config-$(uname -r)"')
    assert script.index("tmpfs /newroot/boot") < copy < script.index("switch_root")
    assert "kconfig" not in guest.init_script(["9p.ko"], ["true"], {}, foreign=True)
    assert features.config_paths("6.1.0-9-amd64")[1] == "/boot/config-6.1.0-9-amd64"


def _cpio_entries(data: bytes) -> dict[str, tuple[int, int, bytes]]:
    """name -> (mode, mtime, data) of a newc archive."""
    found: dict[str, tuple[int, int, bytes]] = {}
    offset = 0
    while True:
        fields = [int(data[offset + 6 + 8 * i:offset + 14 + 8 * i], 16) for i in range(13)]
        mode, mtime, size, namesize = fields[1], fields[5], fields[6], fields[11]
        start = offset + 110
        name = data[start:start + namesize - 1].decode()
        body = start + namesize + (-(110 + namesize) % 4)
        if name == "TRAILER!!!":
            return found
        found[name] = (mode, mtime, data[body:body + size])
        offset = body + size + (-size % 4)
