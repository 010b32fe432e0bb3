"""The environments the matrix runs the conformance suite in, on this machine.

Why: the documented behaviour of a memory syscall depends on who calls it (uid,
capabilities, RLIMIT_MEMLOCK), on what filters it (seccomp, a user namespace, a
container runtime) and on which kernel answers (Linux versions, gVisor's Sentry).
Each target here is one such environment that one machine can reproduce. A target
checks what it needs first and, when something is missing, says what to install;
the matrix then marks its column "unavailable" instead of failing.

Every target but ``native`` runs Debian's /usr/bin/python3 with a world-readable
site directory (the package as installed plus pytest and Hypothesis), because the
interpreter that runs the matrix may live where uid 65534, a sandbox or a guest
cannot reach. The suite writes its report (``--memsys-report``) into a per-target
directory that every sandbox can write, or, for gVisor, to stdout (a file).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .unavailable import Unavailable

SYSTEM_PYTHON = "/usr/bin/python3"
NOBODY = 65534
MEMLOCK_64K = 65536
QEMU_KERNELS = ("5.10", "6.1", "6.12", "7.2")
DEFAULT_TARGETS = ("native", "unprivileged", "memlock-64k", "userns", "seccomp", "gvisor", "gvisor:trixie",
                   "podman", *(f"qemu:{k}" for k in QEMU_KERNELS))
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def cache_dir() -> Path:
    """Where ci/prepare.sh keeps kernels, runsc builds and the rootfs (never the repo)."""
    if os.environ.get("MEMSYS_CACHE"):
        return Path(os.environ["MEMSYS_CACHE"])
    if os.geteuid() == 0:
        return Path("/var/cache/memsyscalls")
    return Path.home() / ".cache" / "memsyscalls"


@dataclass
class Context:
    """What every target's command is built from."""

    site: str  # PYTHONPATH for /usr/bin/python3 (world-readable)
    pytest_args: list[str] = field(default_factory=list)  # extra arguments for the suite


@dataclass
class Invocation:
    """One run of the suite: the command, where its output goes and where the report appears."""

    argv: list[str]
    env: dict[str, str]
    cwd: str
    workdir: Path  # writable by the target; the report and log go here
    report: Path  # where the report JSON will be after the run
    log: Path  # pytest's output
    stdout: Path | None = None  # a file for stdout when it is not the log (gVisor: the report)
    status_file: Path | None = None  # the guest's exit status (qemu)
    timeout: float = 900.0


def _need_tool(name: str, package: str) -> str:
    found = shutil.which(name, path=os.environ.get("PATH", "") + ":" + BASE_PATH)
    if found is None:
        raise Unavailable(f"{name} (apt-get install {package})")
    return found


def _need_root(what: str) -> None:
    if os.geteuid() != 0:
        raise Unavailable(f"root ({what})")


def _need_system_python() -> None:
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        raise Unavailable(f"{SYSTEM_PYTHON} (apt-get install python3)")
    version = subprocess.run([SYSTEM_PYTHON, "-c", "import sys; print(sys.version_info[:2] == (3, 11))"],
                             capture_output=True, text=True, check=False).stdout.strip()
    if version != "True":
        raise Unavailable(f"{SYSTEM_PYTHON} is not Python 3.11 (the compiled probe is cp311): Debian 12's python3")


BASELINE_NAME = "baseline.json"  # copied into the target's workdir when the matrix gates on baselines


def suite_command(python: str, report: str, ctx: Context, workdir: Path | None = None,
                  seen_as: str | None = None) -> list[str]:
    """The suite's command line; gated on workdir/baseline.json when it exists (``seen_as``:
    the workdir's path inside the target, when it differs)."""
    command = [python, "-m", "pytest_memsyscalls", "run", "-q", "-p", "no:randomly", f"--memsys-report={report}"]
    if workdir is not None and (workdir / BASELINE_NAME).exists():
        command.append(f"--memsys-baseline={seen_as or workdir}/{BASELINE_NAME}")
    return [*command, *ctx.pytest_args]


def suite_env(ctx: Context, workdir: Path) -> dict[str, str]:
    env = {
        "PATH": BASE_PATH,
        "HOME": str(workdir),
        "LANG": "C.UTF-8",
        "PYTHONPATH": ctx.site,
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
        "PYTEST_ADDOPTS": "",
    }
    for name in ("TERM", "COLUMNS"):
        if name in os.environ:
            env[name] = os.environ[name]
    return env


class Target:
    """One environment. Subclasses implement ``check`` and ``invocation``."""

    name = ""
    description = ""

    def __init__(self, spec: str) -> None:
        self.spec = spec

    @property
    def label(self) -> str:
        return self.spec

    def check(self) -> None:
        """Raise Unavailable naming what is missing."""

    def invocation(self, ctx: Context, workdir: Path) -> Invocation:
        raise NotImplementedError

    def weight(self) -> float:
        """Rough seconds this target takes, to start the longest first."""
        return 30.0

    def _plain(self, ctx: Context, workdir: Path, prefix: Sequence[str], python: str = SYSTEM_PYTHON,
               env: dict[str, str] | None = None) -> Invocation:
        report = workdir / "report.json"
        return Invocation([*prefix, *suite_command(python, str(report), ctx, workdir)], env or suite_env(ctx, workdir),
                          str(workdir), workdir, report, workdir / "log.txt")


class Native(Target):
    name = "native"
    description = "this process's user and interpreter, no sandbox"

    def invocation(self, ctx: Context, workdir: Path) -> Invocation:
        env = suite_env(ctx, workdir)
        env["PYTHONPATH"] = ctx.site
        return self._plain(ctx, workdir, [], python=SYSTEM_PYTHON if os.geteuid() != 0 else sys.executable, env=env)

    def check(self) -> None:
        if os.geteuid() != 0:
            return
        _need_system_python()  # the site directory is built for 3.11


def _setpriv_nobody() -> list[str]:
    return [_need_tool("setpriv", "util-linux"), f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
            "--inh-caps=-all"]


class Unprivileged(Target):
    name = "unprivileged"
    description = f"uid {NOBODY} through setpriv, no capabilities"

    def check(self) -> None:
        _need_root("to change to uid 65534")
        _need_tool("setpriv", "util-linux")
        _need_system_python()

    def invocation(self, ctx: Context, workdir: Path) -> Invocation:
        return self._plain(ctx, workdir, _setpriv_nobody())


class Memlock64k(Unprivileged):
    name = "memlock-64k"
    description = "uid 65534 with RLIMIT_MEMLOCK 64 KiB (prlimit)"

    def check(self) -> None:
        super().check()
        _need_tool("prlimit", "util-linux")

    def invocation(self, ctx: Context, workdir: Path) -> Invocation:
        prlimit = [_need_tool("prlimit", "util-linux"), f"--memlock={MEMLOCK_64K}:{MEMLOCK_64K}"]
        return self._plain(ctx, workdir, [*prlimit, *_setpriv_nobody()])


class Userns(Target):
    name = "userns"
    description = "bubblewrap: new user, IPC and PID namespaces"

    def check(self) -> None:
        _need_tool("bwrap", "bubblewrap")
        _need_system_python()
        probe = subprocess.run([_need_tool("bwrap", "bubblewrap"), "--unshare-user", "--unshare-ipc",
                                "--unshare-pid", "--ro-bind", "/", "/", "--", "/bin/true"],
                               capture_output=True, text=True, check=False, timeout=30)
        if probe.returncode != 0:
            raise Unavailable(f"user namespaces (bwrap: {probe.stderr.strip()[:200]})")

    def invocation(self, ctx: Context, workdir: Path) -> Invocation:
        bwrap = [_need_tool("bwrap", "bubblewrap"), "--unshare-user", "--unshare-ipc", "--unshare-pid",
                 "--die-with-parent", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
                 "--tmpfs", "/tmp", "--bind", str(workdir), str(workdir)]
        for part in ctx.site.split(":"):
            bwrap += ["--ro-bind", part, part]
        return self._plain(ctx, workdir, [*bwrap, "--"])


class Seccomp(Target):
    name = "seccomp"
    description = "Docker's default capabilities and a seccomp filter modelled on its default profile"

    def check(self) -> None:
        _need_root("to drop to Docker's capability set")
        _need_tool("setpriv", "util-linux")
        _need_system_python()
        from . import seccomp_profile

        seccomp_profile.load_library()

    def invocation(self, ctx: Context, workdir: Path) -> Invocation:
        from . import seccomp_profile

        caps = ",".join("+" + c.removeprefix("CAP_").lower() for c in seccomp_profile.DOCKER_CAPABILITIES)
        setpriv = [_need_tool("setpriv", "util-linux"), f"--bounding-set=-all,{caps}", f"--inh-caps=-all,{caps}"]
        wrapper = [SYSTEM_PYTHON, "-m", "pytest_memsyscalls.matrix.seccomp_profile", "--"]
        return self._plain(ctx, workdir, [*setpriv, *wrapper])


class Gvisor(Target):
    name = "gvisor"
    description = "gVisor: runsc --rootless --network=none do"

    def __init__(self, spec: str) -> None:
        super().__init__(spec)
        _, _, where = spec.partition(":")
        if where == "trixie":
            where = str(cache_dir() / "runsc-trixie" / "runsc")
        self.runsc = where or (shutil.which("runsc", path=BASE_PATH) or "/usr/bin/runsc")

    def version(self) -> str:
        try:
            out = subprocess.run([self.runsc, "--version"], capture_output=True, text=True, timeout=20,
                                 check=False).stdout
        except OSError:
            return "?"
        found = re.search(r"runsc version (\S+)", out)
        return found.group(1) if found else "?"

    @property
    def label(self) -> str:
        version = self.version()
        found = re.search(r"(20\d{6})", version)
        return f"gvisor-{found.group(1)}" if found else self.spec

    def check(self) -> None:
        _need_system_python()
        if not os.access(self.runsc, os.X_OK):
            hint = "memsyscalls prepare gvisor:trixie" if "runsc-trixie" in self.runsc else "apt-get install runsc"
            raise Unavailable(f"{self.runsc} ({hint})")

    def weight(self) -> float:
        return 60.0

    def invocation(self, ctx: Context, workdir: Path) -> Invocation:
        # runsc breaks inherited pipes and its root is a throw-away overlay: the suite
        # writes its report inside the sandbox and cats it to stdout, a host file.
        inner_report = "/tmp/memsys-report.json"
        command = shlex.join(suite_command(SYSTEM_PYTHON, inner_report, ctx, workdir))
        script = f"cd /tmp && {command} >&2; status=$?; cat {inner_report}; exit $status"
        argv = [self.runsc, "--rootless", "--network=none", "do", "/bin/sh", "-c", script]
        report = workdir / "report.json"
        env = suite_env(ctx, workdir)
        env["HOME"] = "/tmp"
        return Invocation(argv, env, str(workdir), workdir, report, workdir / "log.txt", stdout=report)


class Podman(Target):
    name = "podman"
    description = "podman + crun on a debootstrap'd Debian 12 rootfs (runtime's seccomp profile, 64 MB /dev/shm)"

    def __init__(self, spec: str) -> None:
        super().__init__(spec)
        _, _, where = spec.partition(":")
        self.rootfs = Path(where) if where else cache_dir() / "rootfs-bookworm"

    def check(self) -> None:
        _need_root("podman as root in a private mount namespace")
        _need_tool("podman", "podman")
        _need_tool("crun", "crun")
        _need_tool("unshare", "util-linux")
        if not (self.rootfs / "usr/bin/python3").exists():
            raise Unavailable(f"a Debian rootfs with python3 at {self.rootfs} (memsyscalls prepare podman)")

    def weight(self) -> float:
        return 40.0

    def invocation(self, ctx: Context, workdir: Path) -> Invocation:
        report = workdir / "report.json"
        env = suite_env(ctx, workdir)
        podman = ["podman", "--cgroup-manager=cgroupfs", "--events-backend=file", "run", "--rm",
                  "--runtime=crun", "--network=none",
                  "--ulimit", "nofile=20000:20000", "--ulimit", "nproc=32768:32768",
                  "-v", f"{workdir}:{workdir}", "-w", str(workdir)]
        for part in ctx.site.split(":"):
            podman += ["-v", f"{part}:{part}:ro"]
        for name, value in env.items():
            if name != "PATH":
                podman += ["-e", f"{name}={value}"]
        podman += ["--rootfs", str(self.rootfs), *suite_command(SYSTEM_PYTHON, str(report), ctx, workdir)]
        # crun 1.8 rejects a mixed cgroup v1/v2 host: hide the v2 mount in a private namespace.
        script = ("umount /sys/fs/cgroup/unified 2>/dev/null || true; exec " + shlex.join(podman))
        argv = [_need_tool("unshare", "util-linux"), "--mount", "--propagation", "private", "/bin/sh", "-c", script]
        return Invocation(argv, env, str(workdir), workdir, report, workdir / "log.txt")


class Qemu(Target):
    name = "qemu"
    description = "a Debian kernel under qemu (TCG), host root read-only over virtio-9p, tmpfs for writes"

    def __init__(self, spec: str) -> None:
        super().__init__(spec)
        _, _, where = spec.partition(":")
        self.kernel_name = where
        if where in QEMU_KERNELS or re.fullmatch(r"[\d.]+", where or "-"):
            self.kernel_dir = cache_dir() / "kernels" / where
        else:
            self.kernel_dir = Path(where).parent
        self.accel = os.environ.get("MEMSYS_QEMU_ACCEL", "tcg")

    @property
    def label(self) -> str:
        return f"qemu-{self.kernel_name}" if self.kernel_name in QEMU_KERNELS else self.spec

    def kernel_image(self) -> Path:
        for name in ("vmlinux", "vmlinuz"):
            if (self.kernel_dir / name).exists():
                return self.kernel_dir / name
        path = Path(self.kernel_name)
        if path.exists():
            return path
        hint = f"memsyscalls prepare qemu:{self.kernel_name}" if self.kernel_name in QEMU_KERNELS else "a kernel image"
        raise Unavailable(f"kernel {self.kernel_name} in {self.kernel_dir} ({hint})")

    def check(self) -> None:
        _need_root("qemu's 9p export of / as root")
        _need_tool("qemu-system-x86_64", "qemu-system-x86")
        _need_system_python()
        if not Path("/bin/busybox").exists():
            raise Unavailable("/bin/busybox for the initramfs (apt-get install busybox-static)")
        self.kernel_image()
        if not (self.kernel_dir / "modules").is_dir():
            raise Unavailable(f"the kernel's modules in {self.kernel_dir}/modules "
                              f"(memsyscalls prepare qemu:{self.kernel_name})")
        if not (self.kernel_dir / "config").is_file():
            raise Unavailable(f"the kernel's config in {self.kernel_dir}/config "
                              f"(memsyscalls prepare qemu:{self.kernel_name})")

    def weight(self) -> float:
        return 240.0

    def invocation(self, ctx: Context, workdir: Path) -> Invocation:
        from . import guest

        report = workdir / "report.json"
        status = workdir / "status"
        inside = Path(guest.GUEST_OUT)
        command = suite_command(SYSTEM_PYTHON, str(inside / "report.json"), ctx, workdir, str(inside))
        initrd = guest.build_initramfs(self.kernel_dir / "modules", workdir / "initramfs.cpio", command,
                                       suite_env(ctx, inside), config=self.kernel_dir / "config")
        argv = guest.qemu_command(self.kernel_image(), initrd, str(workdir), self.accel)
        env = dict(os.environ)
        return Invocation(argv, env, str(workdir), workdir, report, workdir / "log.txt", status_file=status,
                          timeout=1500.0)


# The foreign guests: target kind -> (Debian architecture, kernel versions prepared, page size).
FOREIGN_KINDS: dict[str, tuple[str, tuple[str, ...], int]] = {
    "qemu-arm64": ("arm64", ("6.1",), 4096),
    "qemu-arm64-16k": ("arm64", ("6.12",), 16384),
    "qemu-ppc64le": ("ppc64el", ("6.1",), 65536),
}
FOREIGN_TARGETS = ("qemu-arm64:6.1", "qemu-arm64-16k:6.12", "qemu-ppc64le:6.1")
GUEST_TRIPLETS = {"arm64": "aarch64-linux-gnu", "ppc64el": "powerpc64le-linux-gnu"}


def native_source_hash(csrc: Path) -> str:
    """ci/prepare.sh's key for the cross-compiled C parts: sha256 of csrc/*.c then *.h."""
    import hashlib

    digest = hashlib.sha256()
    for pattern in ("*.c", "*.h"):
        for path in sorted(csrc.glob(pattern)):
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


class QemuForeign(Target):
    """Debian's kernel of another architecture under qemu TCG, booted on the guest's own
    root filesystem (bookworm's python3 for that architecture, from ci/prepare.sh), with
    the C parts cross-compiled for it and the pure-Python site read from the host's root."""

    description = "a Debian kernel of another architecture (arm64, ppc64le) under qemu TCG, its own python3"

    def __init__(self, spec: str) -> None:
        super().__init__(spec)
        kind, _, version = spec.partition(":")
        self.kind = kind
        self.arch, versions, self.page_size = FOREIGN_KINDS[kind]
        self.version = version or versions[0]
        self.kernel_dir = cache_dir() / "kernels" / f"{kind.removeprefix('qemu-')}-{self.version}"
        self.rootfs = cache_dir() / "guest-rootfs" / f"bookworm-{self.arch}"

    @property
    def label(self) -> str:
        return f"{self.kind}-{self.version}"

    def _hint(self) -> str:
        return f"ci/prepare.sh {self.kind}:{self.version}"

    def native_dir(self) -> Path:
        """The cross-compiled probe and brk helper: for this checkout's csrc/ when it is
        there, else the newest build for the architecture."""
        base = cache_dir() / "native"
        csrc = Path(__file__).resolve().parents[2] / "csrc"
        if csrc.is_dir():
            wanted = base / f"{self.arch}-{native_source_hash(csrc)}"
            if (wanted / "memsys-brk-helper").exists():
                return wanted
            raise Unavailable(f"the C parts built for {self.arch} from this csrc/ in {wanted} ({self._hint()})")
        builds = sorted(base.glob(f"{self.arch}-*"), key=lambda p: p.stat().st_mtime)
        if not builds:
            raise Unavailable(f"the C parts built for {self.arch} in {base} ({self._hint()})")
        return builds[-1]

    def check(self) -> None:
        from . import guest

        _need_root("qemu's 9p export of / as root")
        machine = guest.FOREIGN_MACHINES[self.arch][0][0]
        _need_tool(machine, "qemu-system-arm" if self.arch == "arm64" else "qemu-system-ppc")
        _need_system_python()
        if not all((self.kernel_dir / part).exists() for part in ("kernel", "modules", "config")):
            raise Unavailable(f"kernel {self.label} with its modules and config in {self.kernel_dir} ({self._hint()})")
        if not (self.rootfs / "usr/bin/python3.11").exists() or not (self.rootfs / "bin/busybox").exists():
            raise Unavailable(f"a {self.arch} root filesystem with python3 at {self.rootfs} ({self._hint()})")
        self.native_dir()

    def weight(self) -> float:
        return 300.0

    def guest_site(self, ctx: Context, workdir: Path) -> str:
        """The site for the guest: the package copied into the workdir with the C parts of
        the guest's architecture; pytest and Hypothesis (pure Python) read from the host."""
        from . import guest

        package_site, *rest = ctx.site.split(":")
        site = workdir / "site"
        ignore = shutil.ignore_patterns("_probe*.so", "memsys-brk-helper")
        shutil.copytree(Path(package_site) / "pytest_memsyscalls", site / "pytest_memsyscalls", ignore=ignore)
        kernel = site / "pytest_memsyscalls" / "kernel"
        for built in self.native_dir().iterdir():
            shutil.copy2(built, kernel / built.name)
        for found in [site, *site.rglob("*")]:
            os.chmod(found, 0o755 if found.is_dir() or os.access(found, os.X_OK) else 0o644)
        compiled = [self.compiled_deps(Path(part)) for part in rest]
        parts = [str(p) for p in compiled if p is not None] + rest
        return ":".join([guest.GUEST_SITE, *(guest.HOST_AT + part for part in parts)])

    def compiled_deps(self, deps: Path) -> Path | None:
        """Hypothesis has a compiled part (``hypothesis._native``) since 6.1xx: the guest
        needs the wheel of its own architecture, fetched once into the cache (pip)."""
        native = list((deps / "hypothesis").glob("_native*.so"))
        if not native:
            return None
        import hypothesis

        platform = {"arm64": "manylinux2014_aarch64", "ppc64el": "manylinux2014_ppc64le"}[self.arch]
        dest = cache_dir() / f"guest-deps-hypothesis{hypothesis.__version__}-{self.arch}"
        if not (dest / "hypothesis").is_dir():
            tmp = dest.with_name(dest.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--only-binary=:all:",
                                   "--platform", platform, "--python-version", "3.11", "--implementation", "cp",
                                   "--target", str(tmp), f"hypothesis=={hypothesis.__version__}"],
                                  capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise Unavailable(f"hypothesis {hypothesis.__version__} for {platform} (pip: "
                                  f"{done.stderr.strip()[-300:]})")
            os.replace(tmp, dest)
        return dest

    def invocation(self, ctx: Context, workdir: Path) -> Invocation:
        from . import guest

        report = workdir / "report.json"
        inside = Path(guest.GUEST_OUT)
        env = suite_env(ctx, inside)
        env["PYTHONPATH"] = self.guest_site(ctx, workdir)
        command = suite_command("/usr/bin/python3", str(inside / "report.json"), ctx, workdir, str(inside))
        initrd = guest.build_initramfs(self.kernel_dir / "modules", workdir / "initramfs.cpio", command, env,
                                       busybox=str(self.rootfs / "bin/busybox"), foreign=True,
                                       site=workdir / "site", config=self.kernel_dir / "config")
        argv = guest.foreign_qemu_command(self.arch, self.kernel_dir / "kernel", initrd, self.rootfs, str(workdir))
        return Invocation(argv, dict(os.environ), str(workdir), workdir, report, workdir / "log.txt",
                          status_file=workdir / "status", timeout=1500.0)


KINDS: dict[str, type[Target]] = {
    "native": Native, "unprivileged": Unprivileged, "memlock-64k": Memlock64k, "userns": Userns,
    "seccomp": Seccomp, "gvisor": Gvisor, "podman": Podman, "qemu": Qemu,
    **dict.fromkeys(FOREIGN_KINDS, QemuForeign),
}


def make_target(spec: str) -> Target:
    kind = spec.split(":", 1)[0]
    if kind not in KINDS:
        raise ValueError(f"unknown target {spec!r} (known: {', '.join(KINDS)}; gvisor:RUNSC, qemu:KERNEL, "
                         f"{', '.join(FOREIGN_TARGETS)})")
    return KINDS[kind](spec)

