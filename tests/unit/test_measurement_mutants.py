"""model.measurement's envelope, field by field: OONI's base keys, times in UTC, the AS numbers' "AS" prefix, the
scrubbed probe address, and the report id's parts, as OONI's tools and our collector read them."""

from __future__ import annotations

import datetime as dt
import re

import orjson

from tamperscope import SOFTWARE_NAME, __version__
from tamperscope.collector.schema import check_measurement, check_report_id
from tamperscope.model.measurement import ProbeInfo, envelope, new_report_id, ooni_time
from tamperscope.probe.engine import _begun_as_ours

PLUS3 = dt.timezone(dt.timedelta(hours=3))
PROBE = ProbeInfo(cc="DE", asn=3320, network_name="Telekom", resolver_ip="198.18.0.53", resolver_asn=64500,
                  resolver_network_name="Resolver Net")


def _env(**kw: object) -> dict[str, object]:
    args: dict[str, object] = {
        "test_name": "web_connectivity", "test_version": "0.4.3", "input": "https://example.org/",
        "report_id": "r1", "probe": PROBE,
        "test_start_time": dt.datetime(2024, 1, 31, 10, 0, 0, tzinfo=dt.timezone.utc),
        "measurement_start_time": dt.datetime(2024, 1, 31, 12, 0, 5, tzinfo=PLUS3),
        "runtime": 1.23456789, "test_keys": {"k": 1},
    }
    args.update(kw)
    return envelope(**args)  # type: ignore[arg-type]


def test_ooni_time_is_utc_with_a_space_and_no_zone() -> None:
    """A time in another zone is written as its UTC wall time, 'YYYY-MM-DD HH:MM:SS'."""
    assert ooni_time(dt.datetime(2024, 1, 31, 12, 0, 5, tzinfo=PLUS3)) == "2024-01-31 09:00:05"
    assert ooni_time(dt.datetime(2024, 1, 1, 1, 2, 3, 999999, tzinfo=dt.timezone.utc)) == "2024-01-01 01:02:03"


def test_envelope_fields_are_ooni_s() -> None:
    """Each base key holds what OONI's format says, from the right source: the two start times apart, the probe's
    and the resolver's AS numbers apart (each "AS"-prefixed), their network names apart, the runtime to the
    microsecond, the address scrubbed to 127.0.0.1, format 0.2.0."""
    m = _env()
    assert m["data_format_version"] == "0.2.0"
    assert m["measurement_start_time"] == "2024-01-31 09:00:05"
    assert m["test_start_time"] == "2024-01-31 10:00:00"
    assert (m["probe_asn"], m["probe_cc"], m["probe_network_name"]) == ("AS3320", "DE", "Telekom")
    assert (m["resolver_asn"], m["resolver_ip"], m["resolver_network_name"]) == ("AS64500", "198.18.0.53",
                                                                                 "Resolver Net")
    assert m["probe_ip"] == "127.0.0.1"
    assert m["test_runtime"] == 1.234568
    assert m["input"] == "https://example.org/" and _env(input=None)["input"] is None
    assert m["test_helpers"] == {} and m["test_keys"] == {"k": 1}
    assert (m["software_name"], m["software_version"]) == (SOFTWARE_NAME, __version__)
    assert (m["test_name"], m["test_version"], m["report_id"]) == ("web_connectivity", "0.4.3", "r1")


def test_unknown_probe_is_zz_and_as0_and_the_collector_takes_it() -> None:
    """A probe that knows nothing of where it is says ZZ and AS0, which the collector accepts as unknown."""
    m = _env(probe=ProbeInfo())
    assert (m["probe_cc"], m["probe_asn"], m["resolver_asn"]) == ("ZZ", "AS0", "AS0")
    check_measurement(orjson.loads(orjson.dumps(m)),
                      clock=lambda: dt.datetime(2024, 2, 1))


def test_caller_annotations_are_added_but_the_engine_name_comes_first() -> None:
    """Annotations join the engine's own; the written line still begins as the engine recognises its own lines
    (engine_name first), which is how a torn line is told from a foreign one."""
    m = _env(annotations={"network_type": "wifi"})
    assert list(m["annotations"])[0] == "engine_name"  # type: ignore[call-overload]
    assert m["annotations"]["network_type"] == "wifi"  # type: ignore[index]
    assert _begun_as_ours(orjson.dumps(m)[:60])


def test_report_id_parts() -> None:
    """<UTC time with Z>_<test name without underscores>_<cc>_<asn>_n1_<16 url-safe random characters>, unique,
    and a report id the collector accepts."""
    when = dt.datetime(2024, 1, 31, 9, 0, 5, tzinfo=dt.timezone.utc)
    rid = new_report_id("web_connectivity", PROBE, when)
    assert re.fullmatch(r"20240131T090005Z_webconnectivity_DE_3320_n1_[A-Za-z0-9_-]{16}", rid), rid
    check_report_id(rid)
    assert rid != new_report_id("web_connectivity", PROBE, when)
