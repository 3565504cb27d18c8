"""Blockpages the lab's censor and ISP blockpage server can serve.

`generic` is ours. The others are real blockpages captured in the field, from
Citizen Lab's filtering-annotations (BSD-style licence, see ATTRIBUTION.md),
so the fingerprint matcher is tested against what censors really serve.
A profile may also name an HTML file of its own, by path.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path

GENERIC = (
    b"<!doctype html><html><head><meta charset=\"utf-8\"><title>Access restricted</title></head>"
    b"<body><h1>Access to this resource is restricted</h1>"
    b"<p>This site has been blocked in accordance with national legislation.</p>"
    b"<p>tamperscope-lab-blockpage</p></body></html>\n"
)


def names() -> set[str]:
    """Built-in blockpage names."""
    found = {p.name[:-5] for p in resources.files(__package__).iterdir() if p.name.endswith(".html")}
    return found | {"generic"}


@lru_cache(maxsize=64)
def load(name: str) -> bytes:
    """The bytes of a built-in page, or of an HTML file at an absolute path."""
    if name == "generic":
        return GENERIC
    if "/" in name:
        return Path(name).read_bytes()[: 1024 * 1024]
    return (resources.files(__package__) / f"{name}.html").read_bytes()
