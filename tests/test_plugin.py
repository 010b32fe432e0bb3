"""The plugin as pytest sees it: header, options, markers, settings, requirements."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _lean_inner_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """pytester restores sys.modules after each in-process run, so Hypothesis's plugin would
    re-import (and assert-rewrite) Hypothesis every time: seconds per inner run."""
    monkeypatch.setenv("PYTEST_ADDOPTS", "-p no:hypothesispytest -p no:benchmark -p no:randomly")


def test_header_shows_the_environment(pytester: pytest.Pytester) -> None:
    """In a session where a test uses the plugin (here: a fixture), after collection."""
    pytester.makepyfile("def test_something(page_size): pass")
    result = pytester.runpytest()
    result.stdout.fnmatch_lines(["collected 1 item", "memsyscalls: kernel * page *"])


@pytest.mark.parametrize("args", [[], ["--memsys-report=r.json"]], ids=["unused", "asked-for"])
def test_no_header_in_a_session_that_does_not_use_the_plugin(pytester: pytest.Pytester, args: list[str]) -> None:
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest(*args)
    result.assert_outcomes(passed=1)
    assert ("memsyscalls: kernel" in result.stdout.str()) == bool(args)


def test_help_lists_every_option(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines([
        "*memory-management syscall conformance*",
        "*--memsys-leaks=*",
        "*--memsys-child-timeout=SECONDS*",
        "*--memsys-report=PATH*",
        "*--memsys-baseline=PATH*",
        "*--memsys-strict*",
        "*--memsys-all-tests*",
    ])


def test_markers_are_registered(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.memsys_semantic(semantic)*", "@pytest.mark.memsys_requires(*needs)*"])


def test_marked_tests_run_clean_under_strict_markers(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from pytest_memsyscalls import semantic, requires

        @semantic("demo.thing.works", "A thing works.", source="demo(2)")
        @requires("arch:x86_64", "arch:aarch64")
        def test_marked(): pass
        """
    )
    result = pytester.runpytest("--strict-markers", "-rs")
    result.assert_outcomes(skipped=1)


def test_unmet_need_skips_with_its_reason(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from pytest_memsyscalls import requires

        @requires("cap:CAP_MADE_UP", "arch:sparc")
        def test_needs(): pass
        """
    )
    result = pytester.runpytest("-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*needs:CAP_MADE_UP; needs:arch=sparc*"])
    # reported at the test, not at the plugin's hook that decided it
    result.stdout.fnmatch_lines(["SKIPPED [[]1] test_unmet_need_skips_with_its_reason.py:3: needs:CAP_MADE_UP*"])
    assert "pytest_memsyscalls" not in result.stdout.str()


def test_callable_need_gets_the_environment(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from pytest_memsyscalls import requires

        @requires(lambda env: f"unsupported:page-size-{env.page_size}")
        def test_needs(): pass
        """
    )
    result = pytester.runpytest("-rs")
    result.stdout.fnmatch_lines(["*unsupported:page-size-*"])


def test_unknown_need_is_an_error_at_collection(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from pytest_memsyscalls import requires

        @requires("rooot")
        def test_needs(): pass
        """
    )
    result = pytester.runpytest()
    result.stdout.fnmatch_lines(["*unknown need 'rooot'*"])
    assert result.ret == pytest.ExitCode.INTERRUPTED


def test_semantic_id_must_be_dotted(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from pytest_memsyscalls import semantic

        @semantic("NotDotted", "x", source="y")
        def test_x(): pass
        """
    )
    result = pytester.runpytest()
    result.stdout.fnmatch_lines(["*semantic id 'NotDotted' must be dotted*"])


def test_semantic_is_a_junit_property(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from pytest_memsyscalls import semantic

        @semantic("demo.junit.property", "Shows in JUnit.", source="demo(2)", tier="posix")
        def test_x(): pass
        """
    )
    pytester.runpytest("--junitxml=out.xml")
    xml = (pytester.path / "out.xml").read_text()
    assert 'name="memsys_semantic" value="demo.junit.property"' in xml
    assert 'name="memsys_tier" value="posix"' in xml


@pytest.mark.parametrize(
    ("args", "env", "ini", "origin"),
    [
        (["--memsys-child-timeout=-3"], {}, "", "command line option --memsys-child-timeout"),
        ([], {"MEMSYS_CHILD_TIMEOUT": "soon"}, "", "environment variable MEMSYS_CHILD_TIMEOUT"),
        ([], {}, "memsys_child_timeout = inf", "ini setting memsys_child_timeout"),
        ([], {}, "memsys_leaks = sometimes", "ini setting memsys_leaks"),
    ],
)
def test_bad_setting_names_where_it_came_from(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
                                              args: list[str], env: dict[str, str], ini: str,
                                              origin: str) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    pytester.makeini(f"[pytest]\n{ini}\n")
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest(*args)
    result.stderr.fnmatch_lines([f"*invalid value * from {origin}*"])
    assert result.ret == pytest.ExitCode.USAGE_ERROR


def test_option_beats_environment_beats_ini(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makeini("[pytest]\nmemsys_child_timeout = 3\n")
    pytester.makepyfile(
        """
        from pytest_memsyscalls.plugin import settings

        def test_value(pytestconfig):
            print("TIMEOUT", settings.get(pytestconfig).child_timeout)
        """
    )
    assert "TIMEOUT 3.0" in pytester.runpytest("-s").stdout.str()
    monkeypatch.setenv("MEMSYS_CHILD_TIMEOUT", "4")
    assert "TIMEOUT 4.0" in pytester.runpytest("-s").stdout.str()
    assert "TIMEOUT 5.0" in pytester.runpytest("-s", "--memsys-child-timeout=5").stdout.str()


def test_sandbox_hook_overrides_detection(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        import dataclasses
        from pytest_memsyscalls.environment import detect_sandbox

        def pytest_memsyscalls_sandbox(config):
            return dataclasses.replace(detect_sandbox(), kind="acme-vm", details=["conftest says so"])
        """
    )
    pytester.makepyfile(
        """
        from pytest_memsyscalls import requires

        @requires("sandbox:acme-vm")
        def test_in_acme(memsys_env):
            assert memsys_env.sandbox.kind == "acme-vm"
        """
    )
    pytester.runpytest().assert_outcomes(passed=1)


def test_failure_shows_the_maps_lines_near_its_addresses(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from pytest_memsyscalls import semantic, libc, constants as C

        @semantic("demo.maps.dump", "A failing semantic shows the VMA it was about.", source="demo(2)")
        def test_fails():
            addr = libc.mmap(0, 3 * 4096, C.PROT_READ, C.MAP_PRIVATE | C.MAP_ANONYMOUS)
            assert False, f"the page at {addr:#x} misbehaved"
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*memsys: /proc/self/maps near the addresses above*", "7*-7* r--p 00000000 00:00 0*"])


def test_hypothesis_profiles_are_selectable(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--hypothesis-profile=deep|ci`` picks this plugin's profiles (registered before
    Hypothesis' own pytest_configure loads the chosen one)."""
    monkeypatch.setenv("PYTEST_ADDOPTS", "-p no:benchmark -p no:randomly")
    pytester.makepyfile("""
        from hypothesis import settings
        def test_profile(request):
            assert settings.get_current_profile_name() == request.config.getoption("hypothesis_profile")
            print("examples", settings.default.max_examples, "steps", settings.default.stateful_step_count)
    """)
    deep = pytester.runpytest_subprocess("-s", "--hypothesis-profile=deep")
    deep.assert_outcomes(passed=1)
    deep.stdout.fnmatch_lines(["*examples 400 steps 100*"])
    ci = pytester.runpytest_subprocess("-s", "--hypothesis-profile=ci")
    ci.assert_outcomes(passed=1)
    ci.stdout.fnmatch_lines(["*examples 6 steps 20*"])


@pytest.mark.parametrize("ci", [None, "true"])
def test_verbosity_alone_keeps_the_ci_sizes(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
                                            ci: str | None) -> None:
    """``--hypothesis-verbosity=verbose`` without a profile shows the state machines' steps
    at the ``ci`` sizes. Hypothesis' plugin then loads a profile it derives from the loaded
    one ("default-with-verbose-verbosity", or from its own ``ci`` where CI is set), which
    is not a profile the user chose; with Hypothesis' own sizes (100 programs of 50 steps)
    `memsyscalls run -k matches_model` took 5.9 s instead of 1.9 s."""
    monkeypatch.setenv("PYTEST_ADDOPTS", "-p no:benchmark -p no:randomly")
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    pytester.makepyfile("""
        from pytest_memsyscalls.plugin.hypothesis_profiles import machine_settings
        def test_sizes():
            chosen = machine_settings()
            print("examples", chosen.max_examples, "steps", chosen.stateful_step_count,
                  "verbosity", chosen.verbosity.name)
    """)
    result = pytester.runpytest_subprocess("-s", "--hypothesis-verbosity=verbose")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*examples 6 steps 20 verbosity verbose*"])


def test_state_machines_keep_their_examples_in_the_run_home(pytester: pytest.Pytester,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """``memsyscalls run`` names Hypothesis' home in MEMSYS_HYPOTHESIS_HOME; the suite's state
    machines, which import Hypothesis only when they run, put their example database
    there (``deep`` has one), never in ``.hypothesis/`` of the working directory. Outside CI:
    where CI is set, Hypothesis loads its own ``ci`` profile, without a database, and the
    profiles registered after it inherit that."""
    monkeypatch.setenv("PYTEST_ADDOPTS", "-p no:benchmark -p no:randomly")
    monkeypatch.delenv("CI", raising=False)
    home = pytester.path / "cache" / "hypothesis"
    monkeypatch.setenv("MEMSYS_HYPOTHESIS_HOME", str(home))
    pytester.makepyfile("""
        from pytest_memsyscalls.plugin.hypothesis_profiles import machine_settings
        def test_home():
            print("database", repr(machine_settings().database))
    """)
    result = pytester.runpytest_subprocess("-s", "--hypothesis-profile=deep")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"*database DirectoryBasedExampleDatabase(*{home / 'examples'}*"])


def test_plugin_does_not_import_hypothesis_unasked(pytester: pytest.Pytester,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Projects that use only the fixtures do not pay for importing Hypothesis (nor fork a
    process made larger by it)."""
    monkeypatch.setenv("PYTEST_ADDOPTS", "-p no:benchmark -p no:randomly")
    pytester.makepyfile("""
        import sys
        def test_hypothesis_not_imported(mapped_pages):
            mapped_pages(1)
            assert "hypothesis" not in sys.modules
    """)
    pytester.runpytest_subprocess().assert_outcomes(passed=1)
