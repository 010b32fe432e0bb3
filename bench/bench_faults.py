"""Fault injection (issue 17): the whole conformance suite under each misbehaviour of
tests/fault_injection.py's catalogue, one run each, with a timeout; what the suite
caught, what it missed, and whether it survived (no signal, no hang, a valid report).

``python bench/bench_faults.py`` (~15-30 min: one suite run per misbehaviour plus the
two controls, sequential) rewrites the ``faults`` section of bench/README.md and
writes the raw results to bench/faults.json. ``--only a,b`` runs some (the section
is then not rewritten); ``--from-json`` rewrites the section from bench/faults.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from readme_section import machine_line, replace_section

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import fault_injection as F

RAW = Path(__file__).resolve().parent / "faults.json"


def shorten(items: list[str], n: int = 4) -> str:
    shown = ", ".join(f"`{s}`" for s in items[:n])
    return shown + (f" and {len(items) - n} more" if len(items) > n else "")


def section(rows: list[dict], controls: list[dict], timeout: float) -> str:
    caught = [r for r in rows if r["caught"]]
    crashed = [r for r in rows if r["crashed"]]
    hung = [r for r in rows if r["hung"]]
    invalid = [r for r in rows if not r["report_valid"]]
    survived = [r for r in rows if r["survived"]]
    families = sorted({r["family"] for r in rows})
    partial = (f"**Partial run: {len(rows)} of the {len(F.CATALOGUE)} misbehaviours** (the rest were not run when "
               "this section was written; `python bench/bench_faults.py` runs them all).\n\n"
               if len(rows) < len(F.CATALOGUE) else "")
    lines = [
        partial + machine_line(), "",
        f"`python bench/bench_faults.py`: the conformance suite (`python -m pytest_memsyscalls run -q -p no:randomly "
        f"--memsys-report=R.json`) run once under each of the **{len(rows)} misbehaviours** of "
        f"tests/fault_injection.py ({len(families)} call families: {', '.join(families)}), supervised by "
        f"`memsys-inject` (timeout {timeout:.0f} s; the whole tree is killed at the end; "
        "HUNG means not finished within it: on a loaded machine a slow run counts as hung). A failure is "
        "attributed to a misbehaviour when its semantic does not fail in the control run of the same mechanism "
        "(" + "; ".join(f"{c['name']}: {len(c['failed'])} failed" for c in controls) + ", all of them "
        "test_layout's PTRACE_TRACEME under a tracer).", "",
        f"**Caught: {len(caught)}/{len(rows)} ({100 * len(caught) / len(rows):.0f}%).** "
        f"Survived (exit non-zero, valid report, no signal, no hang): {len(survived)}/{len(rows)}. "
        f"Crashed (the pytest process killed by a signal): {len(crashed)}"
        + (f" ({', '.join(r['name'] + ' ' + (r['signal'] or '') for r in crashed)})" if crashed else "")
        + f". Hung: {len(hung)}" + (f" ({', '.join(r['name'] for r in hung)})" if hung else "")
        + f". No valid report: {len(invalid)}.", "",
        "| misbehaviour | family | via | result | semantics failed because of it |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        if r["crashed"]:
            result = f"**CRASH** ({r['signal']})"
        elif r["hung"]:
            result = "**HUNG**"
        elif r["caught"]:
            result = "caught"
        elif r["applied"] == 0:
            result = "missed (never applied)"
        else:
            result = "missed"
        if not r["report_valid"] and not r["crashed"] and not r["hung"]:
            result += ", no valid report"
        applied = f", {r['applied']} calls matched" if r['applied'] is not None else ""
        lines.append(f"| `{r['name']}` | {r['family']} | {r['mechanism']}{applied} | {result} | "
                     f"{shorten(r['attributed']) or '-'} |")
    missed = [r for r in rows if not r["caught"] and not r["crashed"] and not r["hung"]]
    if missed:
        lines += ["", "Missed, and why:", ""]
        for r in missed:
            why = F.MISSED_BECAUSE.get(r["name"], "not analysed yet")
            lines.append(f"- `{r['name']}` ({F.by_name(r['name']).does}): {why}")
    if crashed or hung:
        lines += ["", "Crashes and hangs are issue 17's survival half (the lead's part); rerun "
                  "`python bench/bench_faults.py --only " + ",".join(r["name"] for r in crashed + hung)
                  + "` after it lands."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated misbehaviour names (the section is not rewritten)")
    parser.add_argument("--timeout", type=float, default=240)
    parser.add_argument("--from-json", action="store_true", help="rewrite the section from bench/faults.json")
    options = parser.parse_args()
    if options.from_json:
        raw = json.loads(RAW.read_text())
        body = section(raw["results"], raw["controls"], raw["timeout"])
        if raw.get("partial_from_log"):
            body += ("\n\nThese rows were recovered from an interrupted run's log: each lists at most the first "
                     "six attributed semantics, so 'and N more' undercounts.")
        replace_section("faults", "Fault injection: what the suite catches, and whether it survives", body)
        return
    if (why := F.ptrace_supported()) is not None:
        raise SystemExit(f"bench_faults: {why}")
    chosen = [F.by_name(n) for n in options.only.split(",")] if options.only else list(F.CATALOGUE)
    work = Path(tempfile.mkdtemp(prefix="memsys-faults-"))
    controls = {}
    for mechanism in sorted({m.mechanism for m in chosen}):
        controls[mechanism] = F.run(F.CONTROLS[mechanism], work, timeout=options.timeout, reclaim_leftovers=True)
        print(f"{F.CONTROLS[mechanism].name}: {controls[mechanism].status}, {len(controls[mechanism].failed)} failed",
              flush=True)
    results = []
    for m in chosen:
        r = F.run(m, work, timeout=options.timeout, control=controls[m.mechanism], reclaim_leftovers=True)
        results.append(r)
        verdict = ("CRASH " + (r.signal or "") if r.crashed else "HUNG" if r.hung else
                   "caught" if r.caught else "missed")
        print(f"{m.name}: {verdict} ({r.status}, {r.seconds:.0f} s, applied {r.applied}, report "
              f"{'valid' if r.report_valid else 'INVALID'}) {r.attributed[:6]}", flush=True)
    raw = {"timeout": options.timeout, "controls": json.loads(F.as_json(list(controls.values()))),
           "results": json.loads(F.as_json(results))}
    if options.only:
        print(json.dumps(raw["results"], indent=1)[:20000])
        return
    RAW.write_text(json.dumps(raw, indent=1) + "\n")
    replace_section("faults", "Fault injection: what the suite catches, and whether it survives",
                    section(raw["results"], raw["controls"], options.timeout))


if __name__ == "__main__":
    main()
