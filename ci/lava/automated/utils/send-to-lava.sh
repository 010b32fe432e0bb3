#!/bin/sh
# A minimal send-to-lava.sh, compatible with Linaro test-definitions' automated/utils one:
# each line of RESULT_FILE is "TEST_CASE_ID RESULT [MEASUREMENT [UNITS]]"; inside LAVA
# every line becomes a lava-test-case call, elsewhere it is printed.
RESULT_FILE="$1"
[ -f "$RESULT_FILE" ] || { echo "send-to-lava.sh: no result file $RESULT_FILE" >&2; exit 1; }
while read -r name result measurement units; do
    [ -n "$name" ] || continue
    if command -v lava-test-case >/dev/null 2>&1; then
        if [ -n "${measurement:-}" ]; then
            lava-test-case "$name" --result "$result" --measurement "$measurement" --units "${units:-}"
        else
            lava-test-case "$name" --result "$result"
        fi
    else
        echo "<TEST_CASE_ID=$name RESULT=$result${measurement:+ MEASUREMENT=$measurement}${units:+ UNITS=$units}>"
    fi
done < "$RESULT_FILE"
