"""Where on the path the interference was located: the hops measurements carry as ``test_keys.x_hop``.

A measurement says where its interference sits when it was located (`tamperscope locate`, CenTrace's method:
TTL-limited copies of the trigger, the hop at which the censor answers or the path goes silent). The hop is in the
raw measurement, not in the verdict rows, so `located` reads the raw bytes of the latest anomalies only, and groups
them by hop: the explorer's area pages and the reports show the same rows.

Measurement content is hostile input: every field is cut to a bounded string or number here, and escaped where it
is shown.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import orjson

if TYPE_CHECKING:
    import duckdb

    from tamperscope.analysis.aggregates import Filters

SCAN = 300  # the latest anomalies whose raw bytes are read: a page or a report reads a few hundred, never all


class RawSource(Protocol):
    """A store or the explorer's reader: its verdicts, and the raw bytes of its measurements."""

    def cursor(self) -> duckdb.DuckDBPyConnection: ...

    def raw_many(self, uids: Sequence[str]) -> dict[str, bytes]: ...


def hop_fields(value: Any) -> dict[str, Any] | None:
    """``x_hop`` in whatever shape the probe wrote it → {ttl, ip, asn, name, cc, placement, label}: "hop 4
    198.18.0.1 (AS64500 LAB)", or where `tamperscope locate` placed it (its ``method``), "hop 2, after router
    198.18.1.1 (…)": the address is then the router before the device."""
    if value is None or value == {} or value == []:
        return None
    if isinstance(value, list):
        value = value[-1] if value else None
        if value is None:
            return None
    if isinstance(value, str):
        return {"ttl": None, "ip": value[:100], "asn": None, "name": None, "cc": None, "placement": None,
                "label": value[:200]}
    if not isinstance(value, dict):
        return {"ttl": None, "ip": None, "asn": None, "name": None, "cc": None, "placement": None,
                "label": str(value)[:200]}

    def pick(*names: str) -> Any:
        for n in names:
            v = value.get(n)
            if v not in (None, ""):
                if isinstance(v, str):
                    return v[:200]  # measurement content: bounded wherever it goes (the JSON report, a page)
                return v if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)[:100]
        return None

    ttl = pick("ttl", "hop", "distance", "index")
    ip = pick("ip", "address", "addr", "router")
    asn = pick("asn", "probe_asn", "as")
    if isinstance(asn, int):
        asn = f"AS{asn}"
    name = pick("name", "network", "as_name", "as_org_name", "org")
    cc = pick("cc", "country")
    placement = pick("placement")
    if placement is not None:
        placement = str(placement)[:40]
    # `tamperscope locate` names the router that answered last, before the device: said so, not read as the device's
    method = value.get("method")
    after = isinstance(method, str) and method.startswith("tamperscope locate") and ip is not None
    parts = [f"hop {ttl}" if ttl is not None else "hop ?",
             f"after router {ip}" if after else str(ip) if ip is not None else "?"]
    if after:
        parts[0] += ","
    if asn or name:
        parts.append(f"({' '.join(str(x) for x in (asn, name) if x)})")
    return {"ttl": ttl, "ip": ip, "asn": asn, "name": name, "cc": cc, "placement": placement,
            "label": " ".join(parts)[:200]}


def hop_in(data: bytes) -> dict[str, Any] | None:
    """``test_keys.x_hop`` of one raw measurement; most have none, and need no parse to say so."""
    if b'"x_hop"' not in data:
        return None
    try:
        m = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    tk = m.get("test_keys") if isinstance(m, dict) else None
    return hop_fields(tk.get("x_hop")) if isinstance(tk, dict) else None


def located(source: RawSource, filters: Filters | None = None, *, scan: int = SCAN,
            hops_of: Callable[[Sequence[str]], Mapping[str, dict[str, Any] | None]] | None = None
            ) -> list[dict[str, Any]]:
    """Located hops among the ``scan`` most recent anomalies matching ``filters``, by hop and placement, commonest
    first: each hop's fields (`hop_fields`), ``measurement_count``, the ``mechanisms``, ``networks``, ``domains``
    and ``apps`` (the messaging apps' and circumvention tools' tests, whose measurements name no site) seen there
    (each a sorted, comma-separated string) and ``example_uid``, the latest measurement located there.
    ``hops_of`` reads the hops of some uids (the explorer's reader remembers them); by default, from ``source``'s
    raw bytes."""
    from tamperscope.analysis.aggregates import APP_TESTS, Filters
    from tamperscope.analysis.store import raw_each

    where, params = (filters or Filters()).where()
    cur = source.cursor()
    rows = cur.execute(
        f"""SELECT measurement_uid, mechanism, probe_asn, domain, test_name FROM verdicts
            WHERE ({where}) AND outcome IN ('anomaly', 'confirmed')
            ORDER BY measurement_start_time DESC, measurement_uid LIMIT {int(scan)}""", params).fetchall()
    if not rows:
        return []
    uids = [r[0] for r in rows]
    # the raw bytes a few at a time (`store.raw_each`): a measurement can be 16 MiB, and only its hop is kept
    found = hops_of(uids) if hops_of is not None else {uid: hop_in(data) for uid, data in raw_each(source, uids)}
    groups: dict[str, dict[str, Any]] = {}
    for uid, mechanism, asn, domain, test in rows:  # most recent first: the example is the latest evidence
        hop = found.get(uid)
        if hop is None:
            continue
        # a hop may hold two devices: one in the traffic's way (resets, drops) and one injecting beside it
        g = groups.setdefault(f"{hop['label']}\0{hop.get('placement') or ''}", {
            **hop, "measurement_count": 0, "mechanisms": set(), "networks": set(), "domains": set(),
            "apps": set(), "example_uid": uid})
        g["measurement_count"] += 1
        app = test if test in APP_TESTS else None
        for key, value in (("mechanisms", mechanism), ("networks", asn), ("domains", domain), ("apps", app)):
            if value:
                g[key].add(value)
    out = []
    for g in sorted(groups.values(), key=lambda g: (-g["measurement_count"], g["label"], g["placement"] or "")):
        for key in ("mechanisms", "networks", "domains", "apps"):
            g[key] = ", ".join(sorted(g[key]))
        out.append(g)
    return out


__all__ = ["SCAN", "RawSource", "hop_fields", "hop_in", "located"]
