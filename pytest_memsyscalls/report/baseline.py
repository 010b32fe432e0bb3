"""The baseline gate: a run compared with a saved report, semantic by semantic.

The gate compares outcomes by semantic id:

- changed outcome (passed, failed, skipped, unsupported): fails;
- failed in both: a known deviation, which passes; reported as ``known`` when the reasons
  agree (addresses and long numbers normalised), as ``changed-failure`` when they do not
  (messages carry addresses, pids and timings that no normalisation makes stable);
- same outcome, another skip reason: ``reason-changed``, reported, passes;
- new semantics are reported; a new skip (or unsupported) fails with ``--memsys-strict``;
- semantics the baseline had but this run lacks are reported; they fail with
  ``--memsys-strict``.

When the gate passes and every failed test belongs to a known deviation, the session's
exit status becomes 0.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

_HEX = re.compile(r"0x[0-9a-fA-F]+")
# pytest shortens long reprs in crash lines ("Faul...7f7a74106000)"): bare hex runs too.
_BARE_HEX = re.compile(r"(?<![0-9A-Za-z])[0-9a-fA-F]{8,}(?![0-9A-Za-z])|(?<=\.\.\.)[0-9a-fA-F]+")
_LONG_NUMBER = re.compile(r"\b\d{6,}\b")


def normalize_reason(reason: str | None) -> str:
    """A reason with run-specific numbers (addresses, pids, long counts) blanked."""
    if not reason:
        return ""
    return _LONG_NUMBER.sub("N", _BARE_HEX.sub("?", _HEX.sub("0x?", reason))).strip()


@dataclass(frozen=True)
class Difference:
    """One semantic compared between a baseline (old) and this run (new)."""

    id: str
    kind: str  # changed | changed-failure | known | new | missing | reason-changed | same
    old: str | None  # outcome in the baseline (None: absent)
    new: str | None  # outcome in this run (None: absent)
    old_reason: str | None = None
    new_reason: str | None = None
    failing: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "old": self.old, "new": self.new,
                "old_reason": self.old_reason, "new_reason": self.new_reason, "failing": self.failing}

    def describe(self) -> str:
        old, new = self.old or "absent", self.new or "absent"
        text = {
            "changed": f"{self.id}: {old} -> {new}",
            "changed-failure": f"{self.id}: known deviation, failing with another message",
            "known": f"{self.id}: known deviation",
            "new": f"{self.id}: new in this run ({new})",
            "missing": f"{self.id}: in the baseline ({old}) but not in this run",
            "reason-changed": f"{self.id}: still {new}, reason changed",
            "same": f"{self.id}: {new}",
        }[self.kind]
        details = []
        if self.kind in ("changed", "changed-failure", "reason-changed", "missing") and self.old_reason:
            details.append(f"baseline: {self.old_reason}")
        if self.new_reason and self.kind != "missing":
            details.append(f"now: {self.new_reason}" if self.kind != "known" else self.new_reason)
        return text + "".join("\n    " + line.replace("\n", "\n      ") for line in details)


@dataclass
class Comparison:
    differences: list[Difference] = field(default_factory=list)

    def of_kind(self, *kinds: str) -> list[Difference]:
        return [d for d in self.differences if d.kind in kinds]

    @property
    def failing(self) -> list[Difference]:
        return [d for d in self.differences if d.failing]

    @property
    def outcome_changes(self) -> list[Difference]:
        """Differences in outcome (including presence): what `diff` exits non-zero for."""
        return self.of_kind("changed", "new", "missing")

    def as_dict(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for d in self.differences:
            counts[d.kind] = counts.get(d.kind, 0) + 1
        return {"differences": [d.as_dict() for d in self.differences if d.kind != "same"],
                "counts": dict(sorted(counts.items())), "failing": [d.id for d in self.failing]}


def _by_id(report: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {str(row["id"]): row for row in report.get("semantics", [])}


def compare(baseline: Mapping[str, Any], current: Mapping[str, Any], strict: bool = False) -> Comparison:
    """Compare this run with a baseline report, semantic by semantic (sorted by id)."""
    old_rows, new_rows = _by_id(baseline), _by_id(current)
    result = Comparison()
    for sid in sorted(set(old_rows) | set(new_rows)):
        old, new = old_rows.get(sid), new_rows.get(sid)
        old_outcome = None if old is None else str(old["outcome"])
        new_outcome = None if new is None else str(new["outcome"])
        old_reason = None if old is None else old.get("reason")
        new_reason = None if new is None else new.get("reason")
        if old is None:
            kind = "new"
            # A new failure is not a recorded deviation: its test failure stands either way.
            failing = strict and new_outcome in ("skipped", "unsupported")
        elif new is None:
            kind, failing = "missing", strict
        elif old_outcome != new_outcome:
            kind, failing = "changed", True
        elif new_outcome == "failed":
            # A recorded deviation passes as known however its message reads now: messages
            # carry addresses, pids and timings that no normalisation makes stable.
            same_way = normalize_reason(old_reason) == normalize_reason(new_reason)
            kind, failing = ("known" if same_way else "changed-failure"), False
        elif normalize_reason(old_reason) != normalize_reason(new_reason):
            kind, failing = "reason-changed", False
        else:
            kind, failing = "same", False
        result.differences.append(Difference(sid, kind, old_outcome, new_outcome, old_reason, new_reason, failing))
    return result
