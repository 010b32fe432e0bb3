"""The feature registry: what the environment promises decides, and a probe only where the
promise is unknown.

The decisions are pure functions of Facts, so each rule is checked against facts made
up for it (a version, a config present, absent or unreadable, a sandbox). The plugin's
side runs small suites with a made-up fingerprint; the last test puts the real suite
under a seccomp filter that refuses one promised advice.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pytest_memsyscalls.environment import features as F
from pytest_memsyscalls.environment import fingerprint
from pytest_memsyscalls.environment.needs import check_need_name, unmet_needs

COLD = F.BY_NAME["MADV_COLD"]  # 5.4, no Kconfig option
KSM = F.BY_NAME["MADV_MERGEABLE"]  # CONFIG_KSM, evidence /sys/kernel/mm/ksm
PKEYS = F.BY_NAME["PKEYS"]  # arches, CPU flags on x86_64
SYNC = F.BY_NAME["MAP_SYNC"]  # CONFIG_FS_DAX, no evidence file


def facts(release: str = "6.18.4", *, arch: str = "x86_64", sandbox: str = "none",
          config: dict[str, str] | None = None, source: str = "/proc/config.gz",
          flags: frozenset[str] | None = frozenset(), present: tuple[str, ...] = ()) -> F.Facts:
    return F.Facts(release, arch, sandbox, F.KernelConfig(config, source), flags, exists=lambda p: p in present)


# --- version ---------------------------------------------------------------------------

def test_a_version_at_or_past_the_feature_promises_it() -> None:
    promise = F.decide(COLD, facts("5.4.0", config={}))
    assert (promise.state, promise.why) == (F.PROMISED, "kernel 5.4 >= 5.4")
    assert F.decide(COLD, facts("6.18.44-fc-v1272", config={})).describe() == \
        "MADV_COLD: promised (kernel 6.18 >= 5.4)"


def test_an_older_version_does_not_promise_it() -> None:
    promise = F.decide(COLD, facts("5.3.18", config={}))
    assert (promise.state, promise.why) == (F.NOT_PROMISED, "kernel 5.3 < 5.4")


def test_a_release_without_a_version_is_unknown() -> None:
    assert F.decide(COLD, facts("custom", config={})).state == F.UNKNOWN


# --- configuration -----------------------------------------------------------------------

def test_a_config_with_the_option_set_promises_it() -> None:
    promise = F.decide(KSM, facts(config={"CONFIG_KSM": "y"}))
    assert promise.state == F.PROMISED and "CONFIG_KSM in /proc/config.gz" in promise.why
    assert F.decide(KSM, facts(config={"CONFIG_KSM": "m"})).state == F.PROMISED


def test_a_config_without_the_option_does_not_promise_it() -> None:
    promise = F.decide(F.BY_NAME["MADV_HWPOISON"], facts(config={"CONFIG_KSM": "y"}))
    assert promise.describe() == "MADV_HWPOISON: not promised (CONFIG_MEMORY_FAILURE is not set, /proc/config.gz)"


def test_an_unreadable_config_falls_back_to_the_file_the_option_creates() -> None:
    absent = facts(config=None, source="no readable kernel config")
    assert F.decide(KSM, facts(config=None, present=("/sys/kernel/mm/ksm",))).state == F.PROMISED
    promise = F.decide(KSM, absent)
    assert promise.state == F.NOT_PROMISED and "/sys/kernel/mm/ksm is missing" in promise.why


def test_an_unreadable_config_without_such_a_file_is_unknown() -> None:
    promise = F.decide(SYNC, facts(config=None, source="no readable kernel config (/proc/config.gz: missing)"))
    assert promise.state == F.UNKNOWN and "CONFIG_FS_DAX unknown" in promise.why


def test_the_config_is_read_from_the_first_readable_file(tmp_path: Path) -> None:
    plain = tmp_path / "config"
    plain.write_text("CONFIG_KSM=y\n# CONFIG_MEMORY_FAILURE is not set\nCONFIG_X=\"a b\"\n")
    packed = tmp_path / "config.gz"
    packed.write_bytes(gzip.compress(b"CONFIG_KSM=m\n"))
    found = F.read_kernel_config("r", [str(tmp_path / "missing"), str(packed), str(plain)])
    assert found.source == str(packed) and found.is_set("KSM")
    found = F.read_kernel_config("r", [str(plain)])
    assert found.is_set("KSM") and not found.is_set("MEMORY_FAILURE") and found.options["CONFIG_X"] == "a b"
    unreadable = F.read_kernel_config("r", [str(tmp_path / "missing")])
    assert unreadable.options is None and "missing" in unreadable.source


def test_the_three_places_of_a_kernel_config() -> None:
    assert F.config_paths("6.1.0-9") == ("/proc/config.gz", "/boot/config-6.1.0-9", "/lib/modules/6.1.0-9/config")


# --- CPU, architecture, sandbox ------------------------------------------------------------

def test_cpu_flags_and_architecture_decide() -> None:
    config = {"CONFIG_X86_INTEL_MEMORY_PROTECTION_KEYS": "y"}
    assert F.decide(PKEYS, facts(config=config, flags=frozenset({"pku", "ospke"}))).state == F.PROMISED
    lacking = F.decide(PKEYS, facts(config=config, flags=frozenset({"pku"})))
    assert lacking.state == F.NOT_PROMISED and "lacks ospke" in lacking.why
    elsewhere = F.decide(PKEYS, facts(arch="s390x", config=config))
    assert elsewhere.state == F.NOT_PROMISED and "not s390x" in elsewhere.why


def test_arm64_keys_need_the_permission_overlay_extension() -> None:
    """CONFIG_ARM64_POE alone promised keys to a CPU without FEAT_S1POE (qemu 7.2's
    arm64 "max" CPU under TCG): pkey_alloc failed with ENOSPC in qemu-arm64-16k-6.12.
    arm64 lists the extension as "poe" in its Features line (HWCAP2_POE)."""
    config = {"CONFIG_ARM64_POE": "y"}
    without = F.decide(PKEYS, facts("6.12.0", arch="aarch64", config=config, flags=frozenset({"fp", "asimd"})))
    assert without.state == F.NOT_PROMISED and "lacks poe" in without.why
    assert F.decide(PKEYS, facts("6.12.0", arch="aarch64", config=config, flags=frozenset({"poe"}))).state \
        == F.PROMISED
    assert F.cpu_flags("processor\t: 0\nFeatures\t: fp asimd poe\n") == frozenset({"fp", "asimd", "poe"})


POWER9_RADIX = "processor\t: 0\ncpu\t\t: POWER9 (architected), altivec supported\nplatform\t: pSeries\nMMU\t\t: Radix\n"


def test_powerpc_keys_follow_its_mmu() -> None:
    """powerpc's /proc/cpuinfo has no flags line; its MMU line decides the keys: none under
    the radix MMU (arch/powerpc/mm/book3s64/pkeys.c), so pkey_alloc is not promised keys."""
    radix = F.cpu_flags(POWER9_RADIX)
    assert radix == frozenset({"mmu_radix"})
    assert F.cpu_flags(POWER9_RADIX.replace("Radix", "Hash")) == frozenset({"mmu_hash"})
    assert F.cpu_flags("processor\t: 0\ncpu\t\t: POWER9\n") is None
    assert F.cpu_flags("flags\t: fpu pku ospke\nMMU\t: Radix\n") == frozenset({"fpu", "pku", "ospke"})
    lacking = F.decide(PKEYS, facts("6.1.0", arch="ppc64le", config=None, flags=radix))
    assert lacking.state == F.NOT_PROMISED and "mmu_hash" in lacking.why
    hashed = F.decide(PKEYS, facts("6.1.0", arch="ppc64le", config=None, flags=frozenset({"mmu_hash"})))
    assert hashed.state == F.UNKNOWN


SECRET = F.BY_NAME["MEMFD_SECRET"]  # CONFIG_SECRETMEM and secretmem.enable, on by default since 6.5
SECRETMEM = {"CONFIG_SECRETMEM": "y"}


def _secret(release: str, cmdline: str | None) -> F.Promise:
    return F.decide(SECRET, dataclasses.replace(facts(release, config=SECRETMEM), cmdline=cmdline))


def test_memfd_secret_before_6_5_needs_secretmem_enable_on_the_command_line() -> None:
    """Debian's 6.1 sets CONFIG_SECRETMEM, yet memfd_secret() was ENOSYS in its guest:
    secretmem.enable was off by default before 6.5 (mm/secretmem.c)."""
    off = _secret("6.1.0", "root=/dev/vda console=ttyS0")
    assert off.state == F.NOT_PROMISED and "off by default before 6.5" in off.why
    on = _secret("6.1.0", "root=/dev/vda secretmem.enable=1")
    assert on.state == F.PROMISED and "secretmem.enable=1 on the kernel command line" in on.why
    assert _secret("6.1.0", "secretmem.enable").state == F.PROMISED  # a bool parameter alone is on
    assert _secret("6.1.0", "secretmem.enable=on").state == F.PROMISED
    assert _secret("6.1.0", "-- secretmem.enable=1").state == F.NOT_PROMISED  # after --: init's


def test_memfd_secret_from_6_5_is_on_unless_turned_off() -> None:
    default = _secret("6.18.4", "root=/dev/vda")
    assert default.state == F.PROMISED and "on by default since 6.5" in default.why
    off = _secret("6.18.4", "secretmem.enable=1 secretmem.enable=0")  # the last value counts
    assert off.state == F.NOT_PROMISED and "secretmem.enable=0" in off.why
    assert _secret("6.18.4", "secretmem.enable=maybe").state == F.PROMISED  # rejected: the default stays
    unreadable = _secret("6.18.4", None)
    assert unreadable.state == F.UNKNOWN and "/proc/cmdline" in unreadable.why
    assert F.decide(SECRET, dataclasses.replace(facts("6.18.4", config={}), cmdline="")).state == F.NOT_PROMISED


def test_a_sandbox_that_misreports_its_version_leaves_the_promise_unknown() -> None:
    """gVisor says 4.4.0 and emulates /proc and /sys: neither is the kernel's promise."""
    gvisor = facts("4.4.0", sandbox="gvisor", config=None, present=("/sys/kernel/mm/ksm",))
    for feature in (COLD, KSM, F.BY_NAME["MADV_HWPOISON"]):
        promise = F.decide(feature, gvisor)
        assert (promise.state, promise.why) == (F.UNKNOWN, "gVisor reports 4.4.0")


def test_a_probe_decides_only_an_unknown_promise(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setitem(F.PROBES, "madvise", lambda name: calls.append(name) or "EINVAL")
    gvisor = facts("4.4.0", sandbox="gvisor")
    missing = F.probed(F.decide(COLD, gvisor), COLD)
    assert missing.describe() == "MADV_COLD: unknown (gVisor reports 4.4.0; probe: EINVAL)"
    assert missing.works is False
    promised = F.probed(F.decide(COLD, facts(config={})), COLD)
    assert promised.works is None and calls == ["MADV_COLD"]
    monkeypatch.setitem(F.PROBES, "madvise", lambda name: None)
    assert F.probed(F.decide(COLD, gvisor), COLD).works is True
    no_probe = F.probed(F.decide(SYNC, gvisor), SYNC)
    assert no_probe.works is None and no_probe.why.endswith("no safe probe")


def test_every_probe_runs_here_and_finds_what_this_kernel_has() -> None:
    """On this machine every feature with a probe is promised or not; run the probes anyway
    and check they agree with the promise (a probe that always said 'missing' would make
    gVisor's class meaningless)."""
    env = fingerprint.detect()
    if env.sandbox.kind == "gvisor":
        pytest.skip("needs:a kernel whose promises are known (this is gVisor)")
    for feature in F.FEATURES:
        promise = env.promise(feature.name)
        if feature.probe is None or promise.state != F.PROMISED or feature.name in ("MADV_MERGEABLE",
                                                                                     "MADV_UNMERGEABLE"):
            continue
        assert F.PROBES[feature.probe](feature.name) is None, feature.name


def test_the_registry_is_consistent() -> None:
    names = [feature.name for feature in F.FEATURES]
    assert len(names) == len(set(names))
    assert {f.probe for f in F.FEATURES if f.probe} <= set(F.PROBES)
    for wanted in ("MADV_FREE", "MADV_WIPEONFORK", "MADV_KEEPONFORK", "MADV_COLD", "MADV_PAGEOUT",
                   "MADV_POPULATE_READ", "MADV_POPULATE_WRITE", "MADV_COLLAPSE", "MADV_GUARD_INSTALL",
                   "MADV_GUARD_REMOVE", "MADV_HWPOISON", "MADV_SOFT_OFFLINE", "MADV_MERGEABLE", "THP",
                   "MADV_REMOVE", "MAP_FIXED_NOREPLACE", "MAP_SHARED_VALIDATE", "MAP_SYNC", "MAP_DROPPABLE",
                   "MREMAP_DONTUNMAP", "MLOCK_ONFAULT", "MCL_ONFAULT", "SHM_STAT_ANY", "MSEAL", "MEMFD_SECRET",
                   "PKEYS", "PROCESS_MADVISE", "HUGETLB", "SOFT_DIRTY"):
        assert wanted in F.BY_NAME, wanted
    assert F.BY_NAME["MREMAP_DONTUNMAP"].changes[0][0] == (5, 13)


# --- needs ---------------------------------------------------------------------------------

def _with(state: str, works: bool | None = None, why: str = "because") -> fingerprint.Environment:
    return dataclasses.replace(fingerprint.detect(), features={"MADV_COLD": F.Promise("MADV_COLD", state, why, works)})


def test_a_feature_need_follows_the_promise() -> None:
    assert unmet_needs(("feature:MADV_COLD",), _with(F.PROMISED)) == []
    assert unmet_needs(("feature:MADV_COLD",), _with(F.NOT_PROMISED, why="kernel 5.3 < 5.4")) == [
        "needs:MADV_COLD (kernel 5.3 < 5.4)"]
    assert unmet_needs(("feature:MADV_COLD",), _with(F.UNKNOWN, True)) == []
    assert unmet_needs(("feature:MADV_COLD",), _with(F.UNKNOWN, False, "gVisor reports 4.4.0; probe: EINVAL")) == [
        "unsupported:MADV_COLD (gVisor reports 4.4.0; probe: EINVAL)"]


def test_an_unknown_feature_name_is_a_usage_error() -> None:
    with pytest.raises(ValueError, match="unknown feature 'MADV_COOL'"):
        check_need_name("feature:MADV_COOL")


def test_the_header_lists_only_what_is_not_promised_or_unknown() -> None:
    env = dataclasses.replace(fingerprint.detect(), features={
        "MADV_COLD": F.Promise("MADV_COLD", F.PROMISED, "kernel 6.18 >= 5.4"),
        "MADV_HWPOISON": F.Promise("MADV_HWPOISON", F.NOT_PROMISED, "CONFIG_MEMORY_FAILURE is not set"),
        "MAP_SYNC": F.Promise("MAP_SYNC", F.UNKNOWN, "gVisor reports 4.4.0; no safe probe"),
    })
    extra = env.header_lines()[3:]
    assert extra == ["memsyscalls: features not promised: MADV_HWPOISON (CONFIG_MEMORY_FAILURE is not set)",
                     "memsyscalls: features unknown: MAP_SYNC (gVisor reports 4.4.0; no safe probe)"]
    assert "feature MADV_COLD:" in env.describe()


# --- the plugin: a promised feature that fails names the promise ----------------------------

CONFTEST = """
import dataclasses
from pytest_memsyscalls.environment import features as F
from pytest_memsyscalls.environment.fingerprint import detect
from pytest_memsyscalls.plugin.session import ENVIRONMENT_KEY

def pytest_configure(config):
    config.stash[ENVIRONMENT_KEY] = dataclasses.replace(detect(), features={
        "MADV_COLD": F.Promise("MADV_COLD", F.PROMISED, "kernel 6.18 >= 5.4"),
        "MADV_PAGEOUT": F.Promise("MADV_PAGEOUT", F.NOT_PROMISED, "kernel 5.3 < 5.4"),
        "MADV_FREE": F.Promise("MADV_FREE", F.UNKNOWN, "gVisor reports 4.4.0; probe: EINVAL", works=False),
    })
"""

SUITE = """
import errno
from pytest_memsyscalls import fails_with, libc, requires, semantic

@semantic("demo.cold.broken", "A promised feature that fails.", source="demo(2)")
@requires("feature:MADV_COLD")
def test_cold():
    fails_with(errno.EBUSY, libc.munmap, 0x10000000, 0)

@semantic("demo.pageout.absent", "A feature this kernel does not promise.", source="demo(2)")
@requires("feature:MADV_PAGEOUT")
def test_pageout():
    pass

@semantic("demo.free.unsupported", "A feature a probe found missing.", source="demo(2)")
@requires("feature:MADV_FREE")
def test_free():
    pass
"""


def test_promises_decide_and_a_broken_one_is_named(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_demo=SUITE)
    result = pytester.runpytest("-p", "no:randomly", "--memsys-report=r.json", "-rs")
    result.assert_outcomes(failed=1, skipped=2)
    for line in ("*PromiseBroken: the kernel promises MADV_COLD (kernel 6.18 >= 5.4): munmap(0x10000000, 0) "
                 "should fail with EBUSY; it failed with EINVAL*",
                 "*needs:MADV_PAGEOUT (kernel 5.3 < 5.4)*",
                 "*unsupported:MADV_FREE (gVisor reports 4.4.0; probe: EINVAL)*",
                 "memsyscalls: 3 semantics: 0 passed, 1 failed, 1 skipped, 1 unsupported*"):
        result.stdout.fnmatch_lines([line])
    report = {row["id"]: row for row in json.loads((pytester.path / "r.json").read_text())["semantics"]}
    cold = report["demo.cold.broken"]
    assert cold["reason"].startswith("the kernel promises MADV_COLD (kernel 6.18 >= 5.4): munmap")
    assert (cold["expected"], cold["observed"]) == ("munmap(0x10000000, 0) should fail with EBUSY",
                                                   "failed with EINVAL (Invalid argument)")
    assert report["demo.pageout.absent"]["outcome"] == "skipped"
    assert report["demo.free.unsupported"]["outcome"] == "unsupported"


def test_the_semantics_command_lists_requirements() -> None:
    rows = json.loads(subprocess.run([sys.executable, "-m", "pytest_memsyscalls", "semantics", "--json"],
                                     capture_output=True, text=True, check=True).stdout)
    by_id = {row["id"]: row for row in rows}
    assert by_id["madvise.cold_pageout.nondestructive"]["requires"] == ["feature:MADV_COLD", "feature:MADV_PAGEOUT"]
    assert by_id["mmap.fixed_noreplace.maps_exactly_when_free"]["requires"] == ["feature:MAP_FIXED_NOREPLACE"]


# --- the real suite under a filter that refuses one promised advice --------------------------

FILTER = textwrap.dedent("""
    import errno, os, sys
    from pytest_memsyscalls.kernel import constants as C, seccomp
    lib = seccomp.load()
    ctx = lib.init(C.SCMP_ACT_ALLOW)
    cond = seccomp.ScmpArgCmp(2, C.SCMP_CMP_MASKED_EQ, 0xFFFFFFFF, C.MADV_COLD)
    lib.rule_add(ctx, C.SCMP_ACT_ERRNO(errno.EINVAL), lib.resolve_name("madvise"), [cond])
    lib.load(ctx)
    os.execv(sys.executable, [sys.executable, "-m", "pytest_memsyscalls", "run", *sys.argv[1:]])
""")


def test_a_filter_refusing_a_promised_advice_fails_its_semantics(tmp_path: Path) -> None:
    env = fingerprint.detect()
    if env.promise("MADV_COLD").state != F.PROMISED:
        pytest.skip(f"needs:a kernel that promises MADV_COLD ({env.promise('MADV_COLD').describe()})")
    from pytest_memsyscalls.kernel import seccomp

    try:
        seccomp.load()
    except seccomp.LibseccompMissing as error:
        pytest.skip(f"needs:libseccomp ({error})")
    script = tmp_path / "filtered.py"
    script.write_text(FILTER)
    report = tmp_path / "r.json"
    done = subprocess.run([sys.executable, str(script), "-q", "-p", "no:randomly", "-k", "madvise and cold",
                           f"--memsys-report={report}", "--memsys-leaks=fail"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-2000:]
    rows = {row["id"]: row for row in json.loads(report.read_text())["semantics"]}
    nondestructive = rows["madvise.cold_pageout.nondestructive"]
    assert nondestructive["outcome"] == "failed"
    assert nondestructive["reason"].startswith("the kernel promises MADV_COLD (kernel "), nondestructive["reason"]
    assert "a seccomp filter is active" in nondestructive["reason"]
    assert "failed with EINVAL" in nondestructive["reason"]
    # MADV_PAGEOUT is not filtered: its half of the same semantics still passes
    pageout = [t for t in nondestructive["tests"] if t["nodeid"].endswith("[pageout]")]
    assert pageout and all(t["outcome"] == "passed" for t in pageout)
