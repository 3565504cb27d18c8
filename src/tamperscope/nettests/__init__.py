"""Nettests, one module each, registered by name.

Each module has the same parts in the same order: NAME, VERSION,
NEEDS_INPUT, Config, run(input, ctx) -> test_keys, and optionally
finish(measurement, ctx) to add verdict keys once the envelope exists.
A nettest that asks the control helper says so with ``USES_HELPER = True``:
only then does a run name the helper, contact it or record it.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from ..model.services import APPS

REGISTRY: dict[str, str] = {
    "web_connectivity": "tamperscope.nettests.web_connectivity",
    "dnscheck": "tamperscope.nettests.dnscheck",
    "http_invalid_request_line": "tamperscope.nettests.http_invalid_request_line",
    "http_header_field_manipulation": "tamperscope.nettests.http_header_field_manipulation",
    "throttling": "tamperscope.nettests.throttling",
    "tls_mitm": "tamperscope.nettests.tls_mitm",
    "evasion": "tamperscope.nettests.evasion",
    "blocking_rules": "tamperscope.nettests.blocking_rules",
    "echcheck": "tamperscope.nettests.echcheck",
    "stunreachability": "tamperscope.nettests.stunreachability",
    "telegram": "tamperscope.nettests.telegram",
    "whatsapp": "tamperscope.nettests.whatsapp",
    "facebook_messenger": "tamperscope.nettests.facebook_messenger",
    "signal": "tamperscope.nettests.signal",
    "tor": "tamperscope.nettests.tor",
    "vanilla_tor": "tamperscope.nettests.vanilla_tor",
    "riseupvpn": "tamperscope.nettests.riseupvpn",
    "wireguard": "tamperscope.nettests.wireguard",
    "tcp_freeze": "tamperscope.nettests.tcp_freeze",
    "portfiltering": "tamperscope.nettests.portfiltering",
}

# Groups of nettests run together by `tamperscope run GROUP`, as OONI Probe's cards run them
GROUPS: dict[str, tuple[str, ...]] = {
    "im": tuple(APPS),  # OONI's "Instant Messaging": telegram, whatsapp, facebook_messenger, signal
    "circumvention": ("tor", "riseupvpn"),  # OONI's "Circumvention" (whose psiphon and torsf we do not run)
}


def names() -> list[str]:
    return sorted(REGISTRY)


def uses_helper(nettest: ModuleType) -> bool:
    """Whether ``nettest`` asks the control helper (its ``USES_HELPER``)."""
    return getattr(nettest, "USES_HELPER", False) is True


def load(name: str) -> ModuleType:
    """The nettest module called `name`; KeyError if there is none."""
    return importlib.import_module(REGISTRY[name])
