"""Confidence across measurements: "confirmed", "anomaly", "failure" or "ok".

One measurement's verdict says what *it* saw. Whether that is evidence of
censorship depends on the others, as in OONI's explorer:

* ``failure``: the measurement itself failed (verdict status "failure"; no
  usable control, nothing to compare with);
* ``confirmed``: an anomaly with a blockpage fingerprint match, or the same
  anomaly (same mechanism) seen on at least `CONFIRM_MIN` measurements of the
  same input from the same network (test name, input, probe_asn);
* ``anomaly``: any other anomaly;
* ``ok``: nothing suspicious.

The rule is a function of a group, so the store recomputes it for every group
an ingest touched (`OUTCOME_SQL`), and `outcome()` states it for one row given
its group's count. `outcomes()` applies it to plain rows, which tests and the
Dask equality check use to cross-check the SQL.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

OUTCOMES = ("ok", "anomaly", "confirmed", "failure")
CONFIRM_MIN = 2  # measurements of the same input and network showing the same anomaly


def outcome(status: str, fingerprints: Sequence[str], same_anomaly: int) -> str:
    """The label of one verdict; ``same_anomaly`` counts its group (itself included)."""
    if status == "failure":
        return "failure"
    if status != "anomaly":
        return "ok"
    if fingerprints or same_anomaly >= CONFIRM_MIN:
        return "confirmed"
    return "anomaly"


def group_key(row: Mapping[str, Any]) -> tuple[Any, ...]:
    """What "the same input and network, the same anomaly" means."""
    return (row.get("test_name"), row.get("input") or "", row.get("probe_asn"), row.get("mechanism"))


def outcomes(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """`outcome()` for every row, counting groups among ``rows`` themselves."""
    materialised = list(rows)
    counts = Counter(group_key(r) for r in materialised if r.get("status") == "anomaly")
    return [outcome(str(r.get("status")), r.get("fingerprints") or (), counts[group_key(r)]) for r in materialised]


# The same rule in SQL, for every verdict whose (test_name, input, probe_asn) is in
# the temporary table `touched` (columns test_name, input_key, probe_asn). Only
# rows whose label changes are written.
OUTCOME_SQL = f"""
UPDATE verdicts AS v SET outcome = g.new_outcome
FROM (
    SELECT x.measurement_uid, x.outcome AS old_outcome, CASE
        WHEN x.status = 'failure' THEN 'failure'
        WHEN x.status <> 'anomaly' THEN 'ok'
        WHEN len(x.fingerprints) > 0 THEN 'confirmed'
        WHEN sum(CASE WHEN x.status = 'anomaly' THEN 1 ELSE 0 END) OVER (
            PARTITION BY x.test_name, coalesce(x.input, ''), x.probe_asn, x.mechanism) >= {CONFIRM_MIN}
            THEN 'confirmed'
        ELSE 'anomaly' END AS new_outcome
    FROM verdicts x
    SEMI JOIN touched t ON x.test_name = t.test_name AND coalesce(x.input, '') = t.input_key
        AND x.probe_asn = t.probe_asn
) AS g
WHERE v.measurement_uid = g.measurement_uid AND g.old_outcome IS DISTINCT FROM g.new_outcome
"""

__all__ = ["CONFIRM_MIN", "OUTCOMES", "OUTCOME_SQL", "group_key", "outcome", "outcomes"]
