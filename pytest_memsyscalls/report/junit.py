"""One test's outcome as JUnit XML properties.

Why properties: pytest's ``--junitxml`` writes a test report's ``user_properties``, and
pytest-xdist carries them from the workers to the controller, so JUnit XML alone can gate
CI and the report is built on the controller from what the workers sent.

PYTEST_DONT_REWRITE: loaded into every pytest session (plugin/activation.py says why).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

PROP_SEMANTIC = "memsys_semantic"
PROP_TIER = "memsys_tier"
PROP_SOURCE = "memsys_source"
PROP_STATEMENT = "memsys_statement"
PROP_OUTCOME = "memsys_outcome"
PROP_REASON = "memsys_reason"
PROP_PHASE = "memsys_phase"
PROP_EXPECTED = "memsys_expected"
PROP_OBSERVED = "memsys_observed"

# report field <- property name, for the fields a test record takes from its properties
_FIELDS = {"id": PROP_SEMANTIC, "statement": PROP_STATEMENT, "source": PROP_SOURCE, "tier": PROP_TIER,
           "outcome": PROP_OUTCOME, "phase": PROP_PHASE, "reason": PROP_REASON, "expected": PROP_EXPECTED,
           "observed": PROP_OBSERVED}


def properties(semantic: Mapping[str, str], result: Mapping[str, str | None]) -> list[tuple[str, str]]:
    """The properties of one test: its semantic (id, statement, source, tier) and its
    outcome (``model.test_outcome``); fields that are None are left out."""
    merged = {**semantic, **result}
    return [(name, str(merged[field])) for field, name in _FIELDS.items() if merged.get(field) is not None]


def record_from(nodeid: str, props: Mapping[str, Any]) -> dict[str, Any] | None:
    """The per-test record ``model.aggregate`` takes, from a teardown report's properties;
    None for a test that names no semantic."""
    if PROP_SEMANTIC not in props or PROP_OUTCOME not in props:
        return None
    return {"nodeid": nodeid, **{field: props.get(name) for field, name in _FIELDS.items()}}
