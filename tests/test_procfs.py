"""The /proc parsers against texts recorded on real systems (tests/data/proc/).

Recorded by one script run as native root, as uid 65534 (setpriv), under gVisor
(runsc 20221219, ``runsc --rootless --network=none do``) and in a bubblewrap
user+ipc+pid namespace.  Each run attached a 64 KiB SysV segment, mapped a file
whose path has spaces and parentheses, mapped an unlinked file and mlocked a
16 KiB shared anonymous mapping; the values asserted below are those facts as
each kernel printed them.  See tests/data/proc/README.md.
"""

from __future__ import annotations

import ctypes
import mmap
import os
from pathlib import Path

import pytest

from pytest_memsyscalls.kernel import constants as C
from pytest_memsyscalls.kernel import libc, procfs

DATA = Path(__file__).parent / "data" / "proc"


def text(env: str, name: str) -> str:
    return (DATA / env / name).read_text()


def by_start(entries: list[procfs.MapsEntry], start: int) -> procfs.MapsEntry:
    (found,) = [e for e in entries if e.start == start]
    return found


# --------------------------------------------------------------------- maps


def test_maps_native_sysv_segment_is_shared_and_deleted() -> None:
    entries = procfs.parse_maps(text("native_root", "maps"))
    shm = by_start(entries, 0x7F107B263000)
    assert shm.end == 0x7F107B273000
    assert shm.length == 64 * 1024
    assert shm.perms == "rw-s"
    assert shm.readable and shm.writable and not shm.executable and shm.shared
    assert shm.path == "/SYSV00000000 (deleted)"
    assert shm.deleted and shm.is_sysv_shm
    assert (shm.dev, shm.inode, shm.offset) == ("00:01", 0, 0)


def test_maps_path_with_spaces_and_parentheses_is_kept_whole() -> None:
    entries = procfs.parse_maps(text("native_root", "maps"))
    f = by_start(entries, 0x7F107C200000)
    assert f.path == "/tmp/dir with space zdsi0z8o/file (x) name"
    assert not f.deleted
    assert f.shared and f.length == 8192
    gone = by_start(entries, 0x7F107C1BC000)
    assert gone.path == "/tmp/dir with space zdsi0z8o/gone (deleted)"
    assert gone.deleted and not gone.shared and gone.perms == "r--p"
    assert (gone.dev, gone.inode) == ("fe:00", 2146485)


def test_maps_pseudo_paths_and_anonymous() -> None:
    entries = procfs.parse_maps(text("native_root", "maps"))
    paths = {e.path for e in entries}
    assert {"[heap]", "[stack]", "[vvar]", "[vvar_vclock]", "[vdso]", "[vsyscall]", ""} <= paths
    vsyscall = next(e for e in entries if e.path == "[vsyscall]")
    # Linux 6.x prints vsyscall execute-only (--xp); gVisor prints r-xp.
    assert vsyscall.perms == "--xp" and vsyscall.executable and not vsyscall.readable
    assert vsyscall.start == 0xFFFFFFFFFF600000
    anon = [e for e in entries if e.path == ""]
    assert anon and all(e.inode == 0 and e.dev == "00:00" for e in anon)
    # First entry: the interpreter's ELF header page, offset 0.
    assert entries[0].path == "/root/.pyenv/versions/3.11.7/bin/python3.11"
    assert entries[1].offset == 0x1000 and entries[1].executable


def test_maps_gvisor_names_sysv_without_slash_or_deleted() -> None:
    entries = procfs.parse_maps(text("gvisor", "maps"))
    shm = by_start(entries, 0x7FCA8AAC7000)
    assert shm.path == "SYSV00000000"
    assert shm.is_sysv_shm and not shm.deleted and shm.shared
    assert shm.length == 0x10000
    vsyscall = next(e for e in entries if e.path == "[vsyscall]")
    assert vsyscall.perms == "r-xp"
    assert "[vdso]" not in {e.path for e in entries}


def test_maps_unprivileged_non_pie_interpreter() -> None:
    entries = procfs.parse_maps(text("unprivileged", "maps"))
    # /usr/bin/python3.11 of Debian is not PIE: it starts at 0x400000.
    assert entries[0].start == 0x400000
    heap = next(e for e in entries if e.path == "[heap]")
    assert heap.start == 0x1AC2A000


def test_maps_entry_contains_is_half_open() -> None:
    e = procfs.parse_maps_line("1000-3000 rw-p 00000000 00:00 0")
    assert e.path == ""
    assert e.contains(0x1000) and e.contains(0x2FFF)
    assert not e.contains(0x3000) and not e.contains(0xFFF)
    assert str(e).startswith("00001000-00003000 rw-p")


def test_maps_line_keeps_inner_and_leading_spaces_of_path() -> None:
    line = "7f00-8f00 r--s 00001000 08:01 12   /a  b/c (deleted)"
    e = procfs.parse_maps_line(line)
    assert e.path == "/a  b/c (deleted)"
    assert (e.offset, e.inode) == (0x1000, 12)


def test_maps_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="not a /proc/PID/maps line"):
        procfs.parse_maps("hello world\n")


# -------------------------------------------------------------------- smaps


def test_smaps_native_locked_mapping() -> None:
    entries = procfs.parse_smaps(text("native_root", "smaps"))
    assert len(entries) == 3
    locked = next(e for e in entries if e.maps.start == 0x7F107B25F000)
    assert locked.maps.path == "/dev/zero (deleted)"
    assert locked.fields["Size"] == 16
    assert locked.fields["Rss"] == 16
    assert locked.fields["Locked"] == 16
    assert locked.fields["THPeligible"] == 0
    assert locked.vmflags == frozenset({"rd", "wr", "sh", "mr", "mw", "me", "ms", "lo"})
    assert locked.locked
    other = next(e for e in entries if e.maps.path.endswith("(x) name"))
    assert other.maps.path == "/tmp/dir with space zdsi0z8o/file (x) name"
    assert not other.locked and other.fields["Locked"] == 0
    assert other.get("Nonexistent") is None
    gone = next(e for e in entries if e.maps.deleted and "gone" in e.maps.path)
    assert gone.fields["Size"] == 4 and gone.vmflags >= {"rd", "mr"} and "wr" not in gone.vmflags


def test_smaps_gvisor_has_fewer_fields() -> None:
    entries = procfs.parse_smaps(text("gvisor", "smaps"))
    locked = next(e for e in entries if e.locked)
    assert locked.fields["Locked"] == 16 and locked.fields["Rss"] == 16
    shm = next(e for e in entries if e.maps.is_sysv_shm)
    assert shm.fields["Size"] == 64 and shm.fields["Rss"] == 64
    assert "lo" not in shm.vmflags
    # Linux-only counters gVisor does not print.
    assert "Pss_Dirty" not in shm.fields and "THPeligible" not in shm.fields


def test_smaps_unprivileged_heap_and_lock() -> None:
    entries = procfs.parse_smaps(text("unprivileged", "smaps"))
    heap = next(e for e in entries if e.maps.path == "[heap]")
    assert heap.vmflags >= {"rd", "wr", "mr", "mw", "me", "ac"}
    assert not heap.locked
    assert next(e for e in entries if e.maps.path == "/dev/zero (deleted)").fields["Locked"] == 16


# ------------------------------------------------------------------- status


def test_status_native_root() -> None:
    st = procfs.parse_status(text("native_root", "status"))
    assert st["Name"] == "python3"
    assert st["Uid"].split() == ["0", "0", "0", "0"]
    assert procfs.status_kb(st, "VmLck") == 16
    assert procfs.status_kb(st, "VmPeak") == 18720
    assert st["Seccomp"] == "0" and st["NoNewPrivs"] == "0"
    caps = procfs.decode_capabilities(st["CapEff"])
    assert "CAP_IPC_LOCK" in caps and "CAP_SYS_ADMIN" in caps
    assert "CAP_SYS_RESOURCE" not in caps  # this machine's root lacks it


def test_status_unprivileged_has_no_caps() -> None:
    st = procfs.parse_status(text("unprivileged", "status"))
    assert st["Uid"].split() == ["65534"] * 4
    assert procfs.decode_capabilities(st["CapEff"]) == frozenset()
    assert procfs.status_kb(st, "VmLck") == 16  # mlock within RLIMIT_MEMLOCK


def test_status_gvisor_lacks_vmlck_and_nonewprivs() -> None:
    st = procfs.parse_status(text("gvisor", "status"))
    assert st["Pid"] == "1"
    assert procfs.status_kb(st, "VmLck") is None  # absent, not 0
    assert "NoNewPrivs" not in st and "Umask" not in st
    assert st["Seccomp"] == "0"
    caps = procfs.decode_capabilities(st["CapEff"])
    assert "CAP_NET_RAW" not in caps and "CAP_SYS_RESOURCE" in caps
    assert procfs.status_kb(st, "VmRSS") == 20280


def test_status_bwrap_user_namespace() -> None:
    st = procfs.parse_status(text("bwrap", "status"))
    assert st["NoNewPrivs"] == "1"
    assert st["NSpid"] == "2"


def test_status_kb_odd_values() -> None:
    assert procfs.status_kb({"VmLck": ""}, "VmLck") is None
    assert procfs.status_kb({"VmLck": "x kB"}, "VmLck") is None
    assert procfs.status_kb({}, "VmLck") is None


# --------------------------------------------------------------------- stat


def test_stat_native_addresses_match_maps() -> None:
    s = procfs.parse_proc_stat(text("native_root", "stat"))
    assert (s.pid, s.comm, s.state, s.ppid, s.pgrp) == (2688, "python3", "R", 2682, 2682)
    assert s.start_code == 93909111230464 and s.end_code == 93909111230805
    assert s.start_stack == 140734048762176
    assert (s.start_data, s.end_data) == (93909111242160, 93909111242776)
    assert s.start_brk == 93909820313600
    assert (s.arg_start, s.arg_end) == (140734048766174, 140734048766251)
    assert (s.env_start, s.env_end) == (140734048766251, 140734048767951)
    maps = procfs.parse_maps(text("native_root", "maps"))
    heap = next(e for e in maps if e.path == "[heap]")
    assert heap.start == s.start_brk  # brk starts where the kernel says
    stack = next(e for e in maps if e.path == "[stack]")
    assert stack.contains(s.start_stack)
    text_seg = next(e for e in maps if e.executable and e.path.endswith("python3.11"))
    assert text_seg.contains(s.start_code)
    assert s.field(1) == "2688" and s.field(2) == "python3" and s.field(3) == "R"
    assert s.field(52) == "0" and s.field(53) is None


def test_stat_comm_with_parentheses_and_spaces() -> None:
    s = procfs.parse_proc_stat(text("native_root", "stat_weird_comm"))
    assert s.comm == "a) (b c)"
    assert (s.pid, s.state, s.ppid) == (2688, "R", 2682)
    assert s.start_brk == 93909820313600


def test_stat_gvisor_reports_zero_addresses() -> None:
    s = procfs.parse_proc_stat(text("gvisor", "stat"))
    assert (s.pid, s.comm, s.ppid) == (1, "python3", 0)
    assert (s.start_code, s.end_code, s.start_stack) == (0, 0, 0)
    assert s.start_brk == 0 and s.env_end == 0
    w = procfs.parse_proc_stat(text("gvisor", "stat_weird_comm"))
    assert w.comm == "a) (b c)"


def test_stat_old_layout_lacks_fields_45_to_51() -> None:
    s = procfs.parse_proc_stat("7 (x) S " + " ".join(["1"] * 41))  # 44 fields
    assert s.start_code == 1 and s.start_brk is None and s.env_end is None


def test_stat_rejects_truncated_text() -> None:
    with pytest.raises(ValueError):
        procfs.parse_proc_stat("1 (a) R 0 1")
    with pytest.raises(ValueError):
        procfs.parse_proc_stat("no parens here")


# -------------------------------------------------------------- sysvipc/shm


def test_sysvipc_native_and_unprivileged() -> None:
    (seg,) = procfs.parse_sysvipc_shm(text("native_root", "sysvipc_shm"))
    assert (seg.key, seg.shmid, seg.perms, seg.size) == (0, 0, 0o600, 65536)
    assert (seg.cpid, seg.lpid, seg.nattch) == (2688, 2688, 1)
    assert (seg.uid, seg.gid, seg.cuid, seg.cgid) == (0, 0, 0, 0)
    assert seg.atime == 1795756394 and seg.dtime == 0
    assert (seg.rss, seg.swap) == (4096, 0)
    (useg,) = procfs.parse_sysvipc_shm(text("unprivileged", "sysvipc_shm"))
    assert (useg.shmid, useg.uid, useg.cuid, useg.cpid) == (1, 65534, 65534, 2917)


def test_sysvipc_without_rss_and_swap_columns() -> None:
    old = (
        "       key      shmid perms       size  cpid  lpid nattch   uid   gid  cuid  cgid"
        "      atime      dtime      ctime\n"
        "  12345678     327680  1666    1048576   100   101      2  1000  1000  1000  1000"
        " 1700000000          0 1690000000\n"
    )
    (seg,) = procfs.parse_sysvipc_shm(old)
    assert seg.key == 12345678 and seg.perms == 0o1666 and seg.size == 1 << 20
    assert seg.rss is None and seg.swap is None
    assert procfs.parse_sysvipc_shm("") == []
    header_only = text("native_root", "sysvipc_shm").splitlines()[0]
    assert procfs.parse_sysvipc_shm(header_only) == []


def test_sysvipc_bad_header() -> None:
    with pytest.raises(ValueError, match="header lacks"):
        procfs.parse_sysvipc_shm("key shmid\n1 2\n")


def test_gvisor_has_no_sysvipc_file() -> None:
    assert not (DATA / "gvisor" / "sysvipc_shm").exists()


# ------------------------------------------------------------- capabilities


def test_decode_capabilities_full_linux_root() -> None:
    caps = procfs.decode_capabilities("000001ffffffffff")
    assert len(caps) == 41
    assert caps == frozenset(procfs.CAPABILITY_NAMES)
    assert procfs.CAPABILITY_NAMES[0] == "CAP_CHOWN"
    assert procfs.CAPABILITY_NAMES[14] == "CAP_IPC_LOCK"
    assert procfs.CAPABILITY_NAMES[40] == "CAP_CHECKPOINT_RESTORE"


def test_decode_capabilities_recorded_masks() -> None:
    native = procfs.decode_capabilities("000001fffeffffff")
    assert len(native) == 40 and "CAP_SYS_RESOURCE" not in native
    gvisor = procfs.decode_capabilities("0000003fffffdfff")
    assert "CAP_NET_RAW" not in gvisor and "CAP_PERFMON" not in gvisor
    assert "CAP_AUDIT_READ" in gvisor and len(gvisor) == 37


def test_decode_capabilities_unknown_bits_and_zero() -> None:
    assert procfs.decode_capabilities("0000000000000000") == frozenset()
    assert procfs.decode_capabilities("") == frozenset()
    assert procfs.decode_capabilities(hex((1 << 41) | (1 << 14))[2:]) == {"CAP_IPC_LOCK", "CAP_41"}


# ---------------------------------------------------- meminfo, ids, mounts


def test_meminfo_hugepages() -> None:
    mi = procfs.parse_meminfo(text("native_root", "meminfo"))
    assert mi["Hugepagesize"] == 2048 and mi["HugePages_Total"] == 0
    assert "HugePages_Total" not in procfs.parse_meminfo(text("gvisor", "meminfo"))


def test_id_maps() -> None:
    assert procfs.parse_id_map(text("native_root", "uid_map")) == [(0, 0, 4294967295)]
    assert procfs.parse_id_map(text("bwrap", "uid_map")) == [(0, 0, 1)]


def test_mountinfo_native_dev_shm_and_gvisor_double_space() -> None:
    native = procfs.parse_mountinfo(text("native_root", "mountinfo"))
    shm = [m for m in native if m.mount_point == "/dev/shm"]
    assert [m.dev for m in shm] == ["0:23", "0:27"]  # stacked mounts
    assert shm[0].fstype == "tmpfs" and "size=24683656k" in shm[0].super_options
    gv = procfs.parse_mountinfo(text("gvisor", "mountinfo"))
    root = gv[0]
    assert (root.mount_point, root.fstype, root.source) == ("/", "9p", "none")
    assert root.mount_options == ("rw",)
    assert "/dev/shm" not in {m.mount_point for m in gv}


def test_mountinfo_optional_fields_and_escapes() -> None:
    line = r"36 35 98:0 /mnt1 /mnt/a\040b rw,noatime master:1 shared:2 - ext3 /dev/root rw,errors=continue"
    (m,) = procfs.parse_mountinfo(line)
    assert m.mount_point == "/mnt/a b" and m.root == "/mnt1"
    assert m.fstype == "ext3" and m.source == "/dev/root"
    assert m.super_options == ("rw", "errors=continue")


# ------------------------------------------------------------ live readers


def test_vma_at_and_smaps_at_live() -> None:
    m = mmap.mmap(-1, 3 * mmap.PAGESIZE)
    try:
        buf = (ctypes.c_char * 1).from_buffer(m)
        addr = ctypes.addressof(buf)
        del buf
        vma = procfs.vma_at(addr + mmap.PAGESIZE)
        assert vma is not None and vma.contains(addr) and vma.length >= 3 * mmap.PAGESIZE
        assert vma.readable and vma.writable and vma.shared  # Python maps MAP_SHARED
        sm = procfs.smaps_at(addr)
        assert sm is not None and sm.maps.start == vma.start
        assert "rd" in sm.vmflags
        assert procfs.vma_at(0) is None  # below mmap_min_addr: never mapped
        assert procfs.smaps_at(0) is None
    finally:
        m.close()


def test_smaps_overlapping_is_the_filtered_whole_file() -> None:
    """The fast path (records found by their headers) gives what filtering the whole
    parsed file gives, for ranges inside, across and beside three VMAs of one mapping."""
    from pytest_memsyscalls.kernel import constants as C
    from pytest_memsyscalls.kernel import libc

    page = libc.PAGE_SIZE
    addr = libc.mmap(0, 5 * page, C.PROT_READ | C.PROT_WRITE, C.MAP_PRIVATE | C.MAP_ANONYMOUS)
    try:
        libc.munmap(addr, page)  # a hole before ...
        libc.munmap(addr + 4 * page, page)  # ... and after, so the neighbours are not ours
        libc.mprotect(addr + 2 * page, page, C.PROT_READ)  # three VMAs: rw, r, rw
        ranges = [(addr + page, addr + 2 * page), (addr + page, addr + 4 * page),
                  (addr + 2 * page + 1, addr + 3 * page), (addr + 3 * page, addr + 4 * page),
                  (addr, addr + page), (addr + 4 * page, addr + 5 * page)]
        for start, end in ranges:
            fast = [(e.maps.start, e.maps.end, e.maps.perms, e.vmflags) for e in procfs.smaps_overlapping(start, end)]
            whole = [(e.maps.start, e.maps.end, e.maps.perms, e.vmflags) for e in procfs.read_smaps()
                     if e.maps.start < end and e.maps.end > start]
            assert fast == whole, f"[{start:#x}, {end:#x})"
        perms = [e.maps.perms for e in procfs.smaps_overlapping(addr + page, addr + 4 * page)]
        assert perms == ["rw-p", "r--p", "rw-p"]
    finally:
        libc.munmap(addr + page, 3 * page)


def test_read_status_and_stat_live() -> None:
    st = procfs.read_status()
    assert int(st["Pid"]) == os.getpid()
    ps = procfs.read_proc_stat()
    assert ps.pid == os.getpid() and ps.ppid == os.getppid()
    assert procfs.read_maps() and procfs.read_smaps()


@pytest.mark.skipif(not os.path.exists("/proc/sysvipc/shm"), reason="no /proc/sysvipc/shm (gVisor?)")
def test_read_sysvipc_shm_lists_a_fresh_segment() -> None:
    try:
        shmid = libc.shmget(C.IPC_PRIVATE, 8192, C.IPC_CREAT | 0o600)
    except OSError as error:
        pytest.skip(f"shmget failed with errno {error.errno}")
    try:
        mine = [s for s in procfs.read_sysvipc_shm() if s.shmid == shmid]
        assert len(mine) == 1
        assert mine[0].cpid == os.getpid() and mine[0].size == 8192 and mine[0].perms == 0o600
        assert mine[0].nattch == 0
    finally:
        assert libc.shmctl(shmid, C.IPC_RMID) == 0
    assert shmid not in {s.shmid for s in procfs.read_sysvipc_shm()}
