"""Chart specifications for plotly.js: plain dicts, built here, drawn by ``static/explorer.js``.

A page puts a spec in a ``data-chart`` attribute (escaped like any attribute);
the browser script parses it and calls ``Plotly.newPlot``. No Python plotly
objects and no inline script: the same dict is also what the page's JSON twin
carries, so a reader can redraw a chart with any tool.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tamperscope.analysis.report import count_axis, day_axis, plot_text, stack_axis, technique

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


# OONI's counts split the measurements (`aggregates.counts_by`): stacked, confirmed at the bottom, as the report
STACK = (("confirmed", "confirmed_count"), ("anomaly", "anomaly_count"), ("failure", "failure_count"),
         ("ok", "ok_count"))
ROW_HEIGHT = 110  # px of one row of a chart by two axes


def _x_value(value: Any, dated: bool) -> str:
    """An x value as plotly reads it: a time as plotly's date string (no "T", no "Z"), anything else as text drawn
    as typed (`plot_text`; a measurement's input may carry markup), an empty value as "(none)"."""
    if value is None or value == "":
        return "(none)"
    return str(value).replace("T", " ").removesuffix("Z") if dated else plot_text(value)


def counts(rows: Sequence[dict[str, Any]], x_axis: str, y_axis: str | None, *, dated: bool, x_title: str,
           y_title: str | None = None, x_order: Sequence[Any] | None = None) -> dict[str, Any] | None:
    """OONI's MAT chart of `aggregates.counts_by` rows: bars of the measurements by ``x_axis``, stacked by outcome;
    with ``y_axis``, one row of bars per value of it, in the order of ``rows``' first appearance, sharing the x
    axis. ``dated``: the x values are times (a date axis). ``x_order``: the order of the x values on a category
    axis, in every row of bars (by default their first appearance in ``rows``)."""
    if not rows:
        return None
    ys: list[Any] = list(dict.fromkeys(r[y_axis] for r in rows)) if y_axis else [None]
    xs = list(dict.fromkeys(_x_value(r[x_axis], dated) for r in rows))
    if x_order is not None and not dated:  # the values ranked over all rows, not as the first row of bars has them
        xs = list(dict.fromkeys([*(_x_value(v, dated) for v in x_order), *xs]))
    n = len(ys)
    gap = 0.35 / n if n > 1 else 0.0  # room for each row's label above its bars
    height = 300 if n == 1 else 120 + ROW_HEIGHT * n
    layout: dict[str, Any] = {
        "title": {"text": plot_text(x_title if not y_title else f"{x_title}, one row per {y_title.lower()}"),
                  "font": {"size": 14}},
        "barmode": "stack", "autosize": True, "height": height,
        "margin": {"l": 50, "r": 10, "t": 36, "b": 60}, "legend": {"orientation": "h", "y": -70 / height},
        "paper_bgcolor": "rgba(0,0,0,0)", "plot_bgcolor": "rgba(0,0,0,0)", "annotations": [],
    }
    if not dated:
        x_axis_layout: dict[str, Any] = {"type": "category", "automargin": True}
    elif any(len(x) > 10 for x in xs):  # by the hour: plotly's own ticks, which show the hours
        x_axis_layout = {"type": "date"}
    else:
        x_axis_layout = day_axis(xs)
    layout["xaxis"] = {**x_axis_layout, "anchor": "y"}
    data: list[dict[str, Any]] = []
    for i, y in enumerate(ys):  # the first value on top: row i from the top is axis n - i from the bottom
        mine = [r for r in rows if not y_axis or r[y_axis] == y]
        series = {name: [int(r.get(key) or 0) for r in mine] for name, key in STACK}
        at = n - i
        axis = "y" if at == 1 else f"y{at}"
        low, high = (at - 1) / n, at / n - gap
        layout["yaxis" if at == 1 else f"yaxis{at}"] = {**stack_axis(series), "domain": [low, high], "anchor": "x"}
        if y_axis:
            layout["annotations"].append({
                "text": plot_text("(none)" if y is None or y == "" else y), "xref": "paper", "yref": "paper",
                "x": 0, "y": high, "xanchor": "left", "yanchor": "bottom", "showarrow": False,
                "font": {"size": 12}})
        xs_here = [_x_value(r[x_axis], dated) for r in mine]
        for name, ys_here in series.items():
            data.append({"type": "bar", "name": name, "x": xs_here, "y": ys_here, "yaxis": axis, "xaxis": "x",
                         "legendgroup": name, "showlegend": i == 0, "marker": {"color": COLOURS[name]}})
    if not dated:  # every row's bars in one order
        layout["xaxis"].update(categoryorder="array", categoryarray=xs)
    return {"data": data, "layout": layout}


__all__ = ["COLOURS", "counts", "mechanisms", "timeline"]
