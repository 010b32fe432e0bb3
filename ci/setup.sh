#!/usr/bin/env bash
# Set-up on a fresh Debian 12 with Python 3.11 and gcc: system packages, a virtual
# environment in .venv, and pytest-memsyscalls built from this checkout into it.
#
#   ci/setup.sh          what the conformance suite needs
#   ci/setup.sh --test   also the test tools, the sandboxes the plugin's tests use and
#                        Debian's chromium, which the matrix page's browser tests drive
#
# Needs root (or sudo) only for apt-get; skips apt-get when the packages are there.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:-}
python=${PYTHON:-python3}
packages=(gcc libc6-dev manpages-dev util-linux procps)
if [ "$mode" = "--test" ]; then
    # chromium: tests/test_page_browser.py opens matrix.html in it (headless, through
    # Playwright's Python package; never `playwright install`, which downloads a browser).
    packages+=(bubblewrap runsc strace chromium)
fi

missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "ci/setup.sh: installing ${missing[*]}" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    if ! "$python" -m venv .venv 2>/dev/null; then
        # Debian's own python3 keeps venv in a separate package.
        sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        $sudo apt-get install -y -qq python3-venv >/dev/null
        rm -rf .venv
        "$python" -m venv .venv
    fi
fi
extras=""
[ "$mode" = "--test" ] && extras="[test,lint]"
.venv/bin/python -m pip install -q --upgrade pip
# Editable: `python -m pytest` puts the checkout first on sys.path, so the compiled parts
# must be built into it (build_ext --inplace) rather than only into site-packages.
.venv/bin/python -m pip install -q -e ".${extras}"

# Byte-compile the checkout, as pip does for what it installs, and let pytest cache its
# assertion-rewritten test modules once. Where PYTHONDONTWRITEBYTECODE=1 is set (as on
# this project's CI machines) nothing is cached at run time, and every run would
# recompile the plugin and rewrite the conformance modules again (~1.3 s of a ~5.5 s
# suite run). The caches are only read later; a changed source file is simply
# recompiled in memory.
env -u PYTHONDONTWRITEBYTECODE .venv/bin/python -m compileall -q pytest_memsyscalls conformance >/dev/null
env -u PYTHONDONTWRITEBYTECODE .venv/bin/memsyscalls run --collect-only -q >/dev/null
# The same for the workers `memsyscalls run` runs the suite in (crash isolation): a
# worker imports Hypothesis when a state machine runs, after pytest's rewrite hook is in
# place, so the two machines run here (exit status 1 if one fails on this
# kernel: a finding, not a set-up error).
env -u PYTHONDONTWRITEBYTECODE .venv/bin/memsyscalls run -q -k matches_model >/dev/null || [ $? -eq 1 ]
if [ "$mode" = "--test" ]; then
    env -u PYTHONDONTWRITEBYTECODE .venv/bin/python -m compileall -q tests examples bench >/dev/null
    env -u PYTHONDONTWRITEBYTECODE .venv/bin/python -m pytest --collect-only -q >/dev/null
fi
