#!/bin/sh
# Install pytest-memsyscalls into a virtual environment, run its conformance suite and
# write output/result.txt in the format of Linaro's test-definitions ("name result"
# per line), one line per semantic, for ../../utils/send-to-lava.sh.
set -u

HERE="$(cd "$(dirname "$0")" && pwd)"
OUTPUT="$(pwd)/output"
RESULT_FILE="${OUTPUT}/result.txt"
SOURCE="pytest-memsyscalls"
RUN_ARGS=""
BASELINE=""
SKIP_INSTALL="false"

usage() {
    echo "Usage: $0 [-s SOURCE] [-a RUN_ARGS] [-b BASELINE] [-S true|false]" >&2
    exit 1
}

while getopts "s:a:b:S:h" opt; do
    case "$opt" in
        s) SOURCE="$OPTARG" ;;
        a) RUN_ARGS="$OPTARG" ;;
        b) BASELINE="$OPTARG" ;;
        S) SKIP_INSTALL="$OPTARG" ;;
        *) usage ;;
    esac
done

mkdir -p "$OUTPUT"
: > "$RESULT_FILE"

if [ "$SKIP_INSTALL" != "true" ] && command -v apt-get >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        gcc libc6-dev python3 python3-venv python3-dev procps util-linux
fi

VENV="${OUTPUT}/venv"
if ! python3 -m venv "$VENV" || ! "$VENV/bin/pip" install -q "$SOURCE"; then
    echo "memsyscalls-install fail" >> "$RESULT_FILE"
    exit 0
fi
echo "memsyscalls-install pass" >> "$RESULT_FILE"

"$VENV/bin/memsyscalls" env | tee "${OUTPUT}/environment.txt"

gate=""
if [ -n "$BASELINE" ]; then
    case "$BASELINE" in
        http://*|https://*) "$VENV/bin/python" -c 'import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])' "$BASELINE" "${OUTPUT}/baseline.json" ;;
        *) cp "$BASELINE" "${OUTPUT}/baseline.json" ;;
    esac
    gate="--memsys-baseline=${OUTPUT}/baseline.json"
fi

# shellcheck disable=SC2086  # RUN_ARGS is a list of pytest arguments
(cd "$OUTPUT" && "$VENV/bin/memsyscalls" run --memsys-report="${OUTPUT}/report.json" $gate $RUN_ARGS) \
    > "${OUTPUT}/run.log" 2>&1
status=$?
cat "${OUTPUT}/run.log"

"$VENV/bin/python" "$HERE/report-to-lava.py" "${OUTPUT}/report.json" >> "$RESULT_FILE" \
    || echo "memsyscalls-report fail" >> "$RESULT_FILE"
if [ -n "$gate" ]; then
    if grep -q "baseline gate passed" "${OUTPUT}/run.log"; then
        echo "memsyscalls-baseline-gate pass" >> "$RESULT_FILE"
    else
        echo "memsyscalls-baseline-gate fail" >> "$RESULT_FILE"
    fi
fi
echo "memsyscalls run exit status: $status"
exit 0
