"""plotly.js served offline, under the explorer's Content-Security-Policy (``style-src 'self'``).

The bundle comes from the plotly package (no CDN). When it loads, it adds its
stylesheet by creating inline ``<style>`` elements, which the CSP refuses: two
violations on every page with a chart, and without plotly's rules the chart's
SVG layers are no longer stacked (the legend lands below the chart, on top of
the next table). plotly.js skips an injection when the page already holds an
element with that style element's id (for its own rules, id
``plotly.js-style-global`` with class ``no-inline-styles``). So, read from the
bundle that is served, never copied by hand:

* `stylesheet()`: plotly's own rules, as the static file ``/static/plotly.css``
  (linked with that id and class);
* `style_ids()`: the ids of the other style elements the bundle would inject
  (maplibre's CSS, unused here: no maps); the page carries an empty
  ``<template>`` with each id, so the bundle leaves them out.

Found in a browser test (``tests/browser``): a console full of CSP reports and
a misdrawn chart.
"""

from __future__ import annotations

import functools
import re

GLOBAL_ID = "plotly.js-style-global"

# plotly's `src/css/_base.js` object, and the loop that turns its keys into selectors.
_RULES = re.compile(r'=(\{"X,X div":.*?\});for\((\w+) in (\w+)\)(\w+)=\2\.replace\(/\^,/," ,"\)'
                    r'\.replace\(/X/g,"([^"]+)"\)\.replace\(/Y/g,"([^"]+)"\)', re.S)
_STRING = r'"((?:[^"\\]|\\.)*)"|\'((?:[^\'\\]|\\.)*)\''
_ENTRY = re.compile(rf'(?:{_STRING}|([A-Za-z_$][\w$]*))\s*:\s*(?:{_STRING})')
_SELF_INJECTED = re.compile(r'getElementById\("([^"<>&]+)"\)\)\{var \w+=document\.createElement\("style"\)')


@functools.cache
def bundle() -> str:
    from plotly.offline import get_plotlyjs

    text: str = get_plotlyjs()
    return text


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


@functools.cache
def stylesheet() -> str | None:
    """plotly's global rules as CSS, in the order they take effect; None if the bundle's shape changed."""
    found = _RULES.search(bundle())
    if found is None:
        return None
    plot, notifier = found.group(5), found.group(6)
    rules = []
    for m in _ENTRY.finditer(found.group(1)):
        key = _unescape(m.group(1) if m.group(1) is not None else (m.group(2) if m.group(2) is not None
                                                                  else m.group(3)))
        value = _unescape(m.group(4) if m.group(4) is not None else m.group(5))
        selector = re.sub(r"^,", " ,", key).replace("X", plot).replace("Y", notifier)
        rules.append(f"{selector} {{{value}}}")
    if not rules:
        return None
    # plotly inserts each rule at index 0: the last one defined comes first.
    return "/* plotly.js's own rules, read from the bundle served at /static/plotly.min.js */\n" + \
        "\n".join(reversed(rules)) + "\n"


@functools.cache
def style_ids() -> tuple[str, ...]:
    """Ids of the ``<style>`` elements the bundle injects by itself when no element has them yet."""
    return tuple(dict.fromkeys(_SELF_INJECTED.findall(bundle())))


__all__ = ["GLOBAL_ID", "bundle", "style_ids", "stylesheet"]
