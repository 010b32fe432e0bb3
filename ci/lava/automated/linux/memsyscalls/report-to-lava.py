#!/usr/bin/env python3
"""A pytest-memsyscalls JSON report as LAVA test results: one ``ID RESULT`` line per
semantic (pass, fail or skip), the format of Linaro test-definitions' result.txt that
``send-to-lava.sh`` turns into ``lava-test-case`` calls. Standard library only."""

from __future__ import annotations

import json
import re
import sys

RESULTS = {"passed": "pass", "failed": "fail", "skipped": "skip"}


def lines(report: dict[str, object]) -> list[str]:
    out = []
    for row in report.get("semantics", []):  # type: ignore[union-attr]
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", str(row["id"]))
        out.append(f"{name} {RESULTS.get(str(row['outcome']), 'unknown')}")
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: report-to-lava.py REPORT.json", file=sys.stderr)
        return 2
    try:
        with open(argv[1], encoding="utf-8") as handle:
            report = json.load(handle)
    except (OSError, ValueError) as error:
        print(f"report-to-lava.py: {argv[1]}: {error}", file=sys.stderr)
        return 1
    print("\n".join(lines(report)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
