"""The measurement envelope in OONI's data format (data_format_version 0.2.0).

Our measurements and OONI's are interchangeable: the base keys are OONI's,
`test_keys` holds OONI's archival records and keys, and what we add is under
keys prefixed `x_`. `probe_ip` is always "127.0.0.1": the probe never records
its user's address.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass
from typing import Any

from .. import SOFTWARE_NAME, __version__

DATA_FORMAT_VERSION = "0.2.0"
SCRUBBED_IP = "127.0.0.1"


def ooni_time(t: dt.datetime) -> str:
    """OONI's timestamp format: 'YYYY-MM-DD HH:MM:SS' in UTC."""
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


@dataclass(frozen=True)
class ProbeInfo:
    """Where the probe is, coarsely: never its address."""

    cc: str = "ZZ"  # ISO country code, ZZ when unknown
    asn: int = 0  # 0 when unknown
    network_name: str = ""
    resolver_ip: str = ""  # the ISP resolver's address (not the user's)
    resolver_asn: int = 0
    resolver_network_name: str = ""


def new_report_id(test_name: str, probe: ProbeInfo, when: dt.datetime) -> str:
    """OONI-style report id: <time>_<test>_<cc>_<asn>_n1_<random>."""
    return f"{when.strftime('%Y%m%dT%H%M%SZ')}_{test_name.replace('_', '')}_{probe.cc}_{probe.asn}_n1_{secrets.token_urlsafe(12)}"


def envelope(*, test_name: str, test_version: str, input: str | None, report_id: str, probe: ProbeInfo,
             test_start_time: dt.datetime, measurement_start_time: dt.datetime, runtime: float,
             test_keys: dict[str, Any], annotations: dict[str, str] | None = None,
             test_helpers: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "annotations": {"engine_name": SOFTWARE_NAME, "platform": "linux", **(annotations or {})},
        "data_format_version": DATA_FORMAT_VERSION,
        "input": input,
        "measurement_start_time": ooni_time(measurement_start_time),
        "probe_asn": f"AS{probe.asn}",
        "probe_cc": probe.cc,
        "probe_ip": SCRUBBED_IP,
        "probe_network_name": probe.network_name,
        "report_id": report_id,
        "resolver_asn": f"AS{probe.resolver_asn}",
        "resolver_ip": probe.resolver_ip,
        "resolver_network_name": probe.resolver_network_name,
        "software_name": SOFTWARE_NAME,
        "software_version": __version__,
        "test_helpers": test_helpers or {},
        "test_keys": test_keys,
        "test_name": test_name,
        "test_runtime": round(runtime, 6),
        "test_start_time": ooni_time(test_start_time),
        "test_version": test_version,
    }
