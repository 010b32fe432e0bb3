"""Boot a kernel under QEMU with this machine's root filesystem, for the ``qemu:KERNEL`` target.

Why: the kernel decides most of what a memory syscall does, and a distribution kernel
under QEMU is the cheapest way to ask several kernels the same questions on one host.
The guest shares the host root read-only over virtio-9p (so /usr/bin/python3 and the
site directory are the host's own), gets tmpfs for /tmp, /run and /dev/shm, and writes
the report, pytest's output and its exit status into one host directory exported
read-write. A tiny initramfs (busybox and the 9p modules) mounts all that and
``switch_root``s into it: with chroot instead, user namespaces fail inside the guest.
"""

from __future__ import annotations

import io
import lzma
import re
import shlex
import stat
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

# The modules a Debian kernel needs for a 9p root over virtio-pci; their
# dependencies are read from each module's .modinfo.
ROOT_MODULES = ("virtio_pci", "9pnet_virtio", "9p")
HOST_TAG = "hostroot"
OUT_TAG = "memsysout"
ROOTFS_TAG = "guestroot"  # a foreign guest's own root filesystem (its architecture's python3)
HOST_AT = "/host"  # where a foreign guest sees the host's root (read-only): the site directory
GUEST_OUT = "/run/memsys-out"  # where the host's output directory appears in the guest
# Where a foreign guest finds the package: in tmpfs, carried in the initramfs and copied
# there before switch_root. Over the output share (9p without caching) importing and
# collecting it took each pytest process of the run (the xdist controller and worker)
# ~13 s longer under TCG (collection 15 s instead of 6 s on arm64).
GUEST_SITE = "/run/memsys-site"


def _module_index(modules: Path) -> dict[str, Path]:
    index: dict[str, Path] = {}
    for path in modules.rglob("*.ko*"):
        name = path.name.split(".ko")[0]
        index[name] = path
        index[name.replace("-", "_")] = path
    return index


def module_load_order(modules: Path, wanted: Sequence[str] = ROOT_MODULES) -> list[Path]:
    """The module files to insmod, dependencies first; built-in modules are skipped."""
    index = _module_index(modules)
    order: list[Path] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        key = name.replace("-", "_")
        if key in seen or key not in index:
            return  # built in, or not needed by this kernel
        seen.add(key)
        for dep in read_modinfo_depends(index[key]):
            visit(dep)
        order.append(index[key])

    for name in wanted:
        visit(name)
    return order


def _module_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    if path.name.endswith(".xz"):
        return lzma.decompress(data)
    if path.name.endswith(".zst"):
        return subprocess.run(["zstd", "-dcq"], input=data, capture_output=True, check=True).stdout
    return data


class Cpio:
    """A minimal newc cpio writer (what the kernel unpacks as initramfs)."""

    def __init__(self) -> None:
        self.out = io.BytesIO()
        self.inode = 1

    def _entry(self, name: str, mode: int, data: bytes = b"", mtime: int = 0) -> None:
        encoded = name.encode() + b"\x00"
        fields = [self.inode, mode, 0, 0, 1, mtime, len(data), 0, 0, 0, 0, len(encoded), 0]
        self.inode += 1
        header = b"070701" + b"".join(f"{value:08x}".encode() for value in fields)
        self.out.write(header + encoded)
        self.out.write(b"\x00" * (-(len(header) + len(encoded)) % 4))
        self.out.write(data)
        self.out.write(b"\x00" * (-len(data) % 4))

    def directory(self, name: str) -> None:
        self._entry(name, stat.S_IFDIR | 0o755)

    def file(self, name: str, data: bytes, mode: int = 0o644, mtime: int = 0) -> None:
        self._entry(name, stat.S_IFREG | mode, data, mtime)

    def tree(self, name: str, source: Path) -> None:
        """A directory with everything below it (directories and regular files, modes and
        modification times kept: a .pyc is used only while its source's mtime matches)."""
        self.directory(name)
        for path in sorted(source.rglob("*")):
            inside = f"{name}/{path.relative_to(source)}"
            if path.is_dir() and not path.is_symlink():
                self.directory(inside)
            elif path.is_file() and not path.is_symlink():
                info = path.stat()
                self.file(inside, path.read_bytes(), stat.S_IMODE(info.st_mode), int(info.st_mtime))

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        self.out.write(b"\x00" * (-self.out.tell() % 512))
        return self.out.getvalue()


def init_script(modules: Sequence[str], command: Sequence[str], env: Mapping[str, str],
                foreign: bool = False, site: bool = False, config: bool = False) -> str:
    """The initramfs's /init: load 9p, mount the host root and the output share, switch_root.

    The suite runs as the new root's PID 1 child of sh; its output, report and exit
    status land in GUEST_OUT (the host's output directory); then busybox powers off.
    ``foreign``: the new root is the guest architecture's own root filesystem (share
    ROOTFS_TAG) and the host's root is mounted read-only at HOST_AT inside it. ``site``:
    the initramfs carries the package in /site, copied to GUEST_SITE (tmpfs). ``config``:
    it carries the kernel's build configuration in /kconfig, which the guest finds where a
    Debian install keeps it, /boot/config-RELEASE (a tmpfs over /boot), so the suite reads
    what this kernel promises instead of probing for it."""
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    inner = (f"cd {GUEST_OUT} && env -i {exports} {shlex.join(command)} > {GUEST_OUT}/log.txt"
             f" 2>&1; echo $? > {GUEST_OUT}/status; sync; /bin/busybox poweroff -f")
    root_tag = ROOTFS_TAG if foreign else HOST_TAG
    host_mount = (f"mount -t 9p -o ro,trans=virtio,version=9p2000.L,msize=262144,cache=loose {HOST_TAG} "
                  f"/newroot{HOST_AT}\n") if foreign else ""
    site_copy = f"cp -a /site /newroot{GUEST_SITE}\n" if site else ""
    config_copy = ('mount -t tmpfs -o mode=0755 tmpfs /newroot/boot && cp /kconfig "/newroot/boot/config-$(uname -r)"'
                   ' || echo "memsys-guest: no /boot for the kernel config"\n') if config else ""
    loads = "\n".join(f"insmod /modules/{name} || echo 'memsys-guest: insmod {name} failed'" for name in modules)
    return f"""#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /newroot /bin /sbin
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t devtmpfs devtmpfs /dev
{loads}
echo "memsys-guest: mounting the {"guest" if foreign else "host"} root"
if ! mount -t 9p -o ro,trans=virtio,version=9p2000.L,msize=262144,cache=loose {root_tag} /newroot; then
    echo "memsys-guest: cannot mount the 9p root"; poweroff -f
fi
{host_mount}for dir in /tmp /run /var/tmp /root; do mount -t tmpfs -o mode=1777 tmpfs /newroot$dir; done
{site_copy}{config_copy}mkdir -p /newroot{GUEST_OUT}
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 {OUT_TAG} /newroot{GUEST_OUT}
mount --move /proc /newroot/proc
mount --move /dev /newroot/dev
mount -t sysfs sysfs /newroot/sys
mkdir -p /newroot/dev/shm /newroot/dev/pts
mount -t tmpfs -o mode=1777 tmpfs /newroot/dev/shm
mount -t devpts devpts /newroot/dev/pts
echo "memsys-guest: running the suite"
exec switch_root /newroot /bin/sh -c {shlex.quote(inner)}
"""


def build_initramfs(modules: Path, target: Path, command: Sequence[str], env: Mapping[str, str],
                    busybox: str = "/bin/busybox", foreign: bool = False, site: Path | None = None,
                    config: Path | None = None) -> Path:
    """The initramfs; ``site``: a directory the guest finds at GUEST_SITE; ``config``: the
    kernel's build configuration, which the guest finds at /boot/config-RELEASE."""
    archive = Cpio()
    for name in ("bin", "modules", "dev", "proc", "sys", "newroot"):
        archive.directory(name)
    if site is not None:
        archive.tree("site", site)
    if config is not None:
        archive.file("kconfig", config.read_bytes())
    archive.file("bin/busybox", Path(busybox).read_bytes(), 0o755)
    names = []
    for path in module_load_order(modules):
        name = path.name.split(".ko")[0] + ".ko"
        archive.file(f"modules/{name}", _module_bytes(path))
        names.append(name)
    archive.file("init", init_script(names, command, env, foreign, site is not None, config is not None).encode(),
                 0o755)
    target.write_bytes(archive.finish())
    return target


def qemu_command(kernel: Path, initrd: Path, workdir: str, accel: str = "tcg", memory_mb: int = 2048) -> list[str]:
    """QEMU on machine q35 (microvm hung 3 boots in 9), serial console on stdout, no reboot."""
    return [
        "qemu-system-x86_64", "-machine", "q35", "-accel", accel, "-cpu", "max" if accel == "tcg" else "host",
        "-m", str(memory_mb), "-smp", "1", "-nodefaults", "-no-reboot", "-display", "none",
        "-serial", "stdio", "-monitor", "none",
        "-kernel", str(kernel), "-initrd", str(initrd),
        "-append", "console=ttyS0 panic=-1 quiet loglevel=3 rdinit=/init",
        "-fsdev", "local,id=hostroot,path=/,security_model=none,multidevs=remap,readonly=on",
        "-device", f"virtio-9p-pci,fsdev=hostroot,mount_tag={HOST_TAG}",
        "-fsdev", f"local,id=out,path={workdir},security_model=none",
        "-device", f"virtio-9p-pci,fsdev=out,mount_tag={OUT_TAG}",
    ]


# Per guest architecture: qemu's binary, machine, CPU and console. arm64: ``-cpu max``
# with the IMPDEF pointer-authentication algorithm (the architected QARMA is about 2x
# slower under TCG) and MTE (``mte=on``), so PROT_BTI and PROT_MTE can be checked.
# ppc64le: pseries with QEMU's Virtual Open Firmware instead of SLOF (19 s -> 4 s) and
# the TCG-unsupported speculation mitigations declared broken (silences warnings).
FOREIGN_MACHINES: dict[str, tuple[list[str], str]] = {
    "arm64": (["qemu-system-aarch64", "-machine", "virt,mte=on", "-cpu", "max,pauth-impdef=on"], "ttyAMA0"),
    "ppc64el": (["qemu-system-ppc64", "-machine",
                 "pseries,x-vof=on,cap-cfpc=broken,cap-sbbc=broken,cap-ibs=broken,cap-ccf-assist=off",
                 "-cpu", "power9"], "hvc0"),
}


def foreign_qemu_command(arch: str, kernel: Path, initrd: Path, rootfs: Path, workdir: str,
                         memory_mb: int = 2048) -> list[str]:
    """QEMU (TCG) for a guest of another architecture: its own root filesystem over 9p,
    the host's root read-only, the output directory read-write.

    One vCPU. Two (``-smp 2``, multi-threaded TCG) were slower on this 2-core machine for
    the mmap/mlock part of the suite in the arm64 4K guest: 87 s with one xdist worker and
    101 s with two, against 80-98 s with one vCPU (not profiled; likely: TLB flushes stop every vCPU
    under MTTCG, and the second vCPU competes with the other targets for the host's cores)."""
    machine, console = FOREIGN_MACHINES[arch]
    return [
        *machine, "-accel", "tcg", "-m", str(memory_mb), "-smp", "1", "-nodefaults", "-no-reboot",
        "-display", "none", "-serial", "stdio", "-monitor", "none",
        "-kernel", str(kernel), "-initrd", str(initrd),
        "-append", f"console={console} panic=-1 quiet loglevel=3 rdinit=/init",
        "-fsdev", f"local,id=guestroot,path={rootfs},security_model=none,readonly=on",
        "-device", f"virtio-9p-pci,fsdev=guestroot,mount_tag={ROOTFS_TAG}",
        "-fsdev", "local,id=hostroot,path=/,security_model=none,multidevs=remap,readonly=on",
        "-device", f"virtio-9p-pci,fsdev=hostroot,mount_tag={HOST_TAG}",
        "-fsdev", f"local,id=out,path={workdir},security_model=none",
        "-device", f"virtio-9p-pci,fsdev=out,mount_tag={OUT_TAG}",
    ]


def read_modinfo_depends(path: Path) -> list[str]:
    """The ``depends=`` of a kernel module (.ko, .ko.xz), read from its .modinfo strings."""
    data = path.read_bytes()
    if path.suffix == ".xz":
        data = lzma.decompress(data)
    elif path.suffix == ".zst":
        data = subprocess.run(["zstd", "-dcq"], input=data, capture_output=True, check=True).stdout
    found = re.search(rb"(?:^|\x00)depends=([^\x00]*)\x00", data)
    if not found or not found.group(1):
        return []
    return [name.decode() for name in found.group(1).split(b",") if name]
