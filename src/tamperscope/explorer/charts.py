"""Chart specifications for plotly.js: plain dicts, built here, drawn by ``static/explorer.js``.

A page puts a spec in a ``data-chart`` attribute (escaped like any attribute);
the browser script parses it and calls ``Plotly.newPlot``. No Python plotly
objects and no inline script: the same dict is also what the page's JSON twin
carries, so a reader can redraw a chart with any tool.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tamperscope.analysis.report import count_axis, day_axis, stack_axis, technique

COLOURS = {"ok": "#8fbf8f", "anomaly": "#e0a040", "confirmed": "#c0392b", "failure": "#9a9a9a"}


def _layout(title: str, **extra: Any) -> dict[str, Any]:
    layout: dict[str, Any] = {
        "title": {"text": title, "font": {"size": 14}},
        "margin": {"l": 40, "r": 10, "t": 36, "b": 40},
        "height": 280,
        "autosize": True,
        "legend": {"orientation": "h", "y": -0.2},
        "paper_bgcolor": "rgba(0,0,0,0)",
        "plot_bgcolor": "rgba(0,0,0,0)",
    }
    layout.update(extra)
    return layout


def timeline(rows: Sequence[dict[str, Any]], title: str = "Measurements per day") -> dict[str, Any] | None:
    """Stacked bars per day: ok, anomaly (unconfirmed), confirmed, failure."""
    if not rows:
        return None
    days = [str(r["day"]) for r in rows]
    series = {
        "ok": [int(r.get("ok_count") or 0) for r in rows],
        "anomaly": [int(r.get("anomaly_count") or 0) - int(r.get("confirmed_count") or 0) for r in rows],
        "confirmed": [int(r.get("confirmed_count") or 0) for r in rows],
        "failure": [int(r.get("failure_count") or 0) for r in rows],
    }
    data = [{"type": "bar", "name": name, "x": days, "y": ys, "marker": {"color": COLOURS[name]}}
            for name, ys in series.items()]
    return {"data": data, "layout": _layout(title, barmode="stack", xaxis=day_axis(days), yaxis=stack_axis(series))}


def mechanisms(rows: Sequence[dict[str, Any]], title: str = "Anomalies by mechanism") -> dict[str, Any] | None:
    """Horizontal bars: anomalies per mechanism, commonest on top."""
    rows = [r for r in rows if r.get("mechanism")]
    if not rows:
        return None
    rows = sorted(rows, key=lambda r: int(r.get("measurement_count") or 0))
    counts = [int(r.get("measurement_count") or 0) for r in rows]
    data = [{"type": "bar", "orientation": "h", "name": "anomalies",
             "y": [str(technique(r["mechanism"])) for r in rows], "x": counts,
             "marker": {"color": COLOURS["confirmed"]}}]
    return {"data": data, "layout": _layout(title, height=max(160, 60 + 28 * len(rows)),
                                            margin={"l": 110, "r": 10, "t": 36, "b": 30}, showlegend=False,
                                            xaxis=count_axis(max(counts, default=0)))}


__all__ = ["COLOURS", "mechanisms", "timeline"]
