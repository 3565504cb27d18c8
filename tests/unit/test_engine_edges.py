"""The probe engine's edges its other tests left open (found by mutation testing): resuming an output (one that
grew after its reading, a torn line after measurements a key does not count or of another nettest), inputs checked
before the run, one-line reasons, residual holds, what a helper may have scrubbed, run counts and --capture's
packets."""

from __future__ import annotations

import asyncio
import base64
import io
import types
from pathlib import Path
from typing import Any

import orjson
import pytest

from tamperscope.model.measurement import ProbeInfo
from tamperscope.nettests.base import Context, NettestError
from tamperscope.netx.sniffer import Packet
from tamperscope.probe import engine as engine_module
from tamperscope.probe.engine import (
    COULD_NOT_TELL,
    Engine,
    OutputError,
    Progress,
    RunStats,
    check_backend,
    check_input,
    measured_addresses,
    open_output,
    packets_of,
    scan_output,
    validate_inputs,
    why_not_measured,
)
from tamperscope.probe.privacy import Scrubber


def _measurement(input: str, test_name: str = "web_connectivity") -> bytes:
    return orjson.dumps({"test_name": test_name, "input": input, "test_keys": {"blocking": False,
                                                                             "accessible": True}}) + b"\n"


def _engine(residual_wait: float = 10.0) -> Engine:
    nettest = types.ModuleType("fake_nettest")
    nettest.NAME, nettest.VERSION, nettest.NEEDS_INPUT = "web_connectivity", "0.0.1", True  # type: ignore[attr-defined]
    return Engine(nettest, Context(), ProbeInfo(), Scrubber([], interfaces=False), residual_wait=residual_wait)


def test_an_output_that_grew_after_it_was_read_is_refused_untouched(tmp_path: Path) -> None:
    """Without the size check, a line another writer appended after the scan would be glued onto or cut."""
    out = tmp_path / "out.jsonl"
    out.write_bytes(_measurement("http://a.example/"))
    resume = scan_output(out, "web_connectivity")
    with out.open("ab") as f:
        f.write(_measurement("http://b.example/"))
    before = out.read_bytes()
    with pytest.raises(OutputError, match="changed while it was being read"):
        open_output(out, resume)
    assert out.read_bytes() == before
    # read again, it opens
    open_output(out, scan_output(out, "web_connectivity")).close()


def test_a_measurement_whose_key_names_nothing_still_counts_as_one_before_a_torn_line(tmp_path: Path) -> None:
    """A measurement the key does not count is still the probe's: a torn line after it is a kill in mid-write,
    cut off, not the user's JSON refused (breaks if a None key stops counting as a measurement seen)."""
    out = tmp_path / "out.jsonl"
    kept = _measurement("http://a.example/")
    out.write_bytes(kept + b'{"test_name": "web_connectivity", "inp')
    resume = scan_output(out, "web_connectivity", key=lambda m: None)
    assert resume.cut == len(kept) and len(resume.seen) == 0


@pytest.mark.parametrize("error,reason", [
    (NettestError("bad\n  input\tthere"), "bad input there"),
    (RuntimeError("line one\nline two"), "internal error (RuntimeError: line one line two); please report it"),
    (ValueError(""), "internal error (ValueError: no message); please report it"),
])
def test_the_reason_an_input_was_not_measured_is_one_line(error: Exception, reason: str) -> None:
    """The reason goes on one stderr line beside the progress line: a newline in an error must not split it."""
    assert why_not_measured(error) == reason


def test_residual_blocking_at_an_endpoint_without_a_port_holds_nothing() -> None:
    """An ``x_residual`` endpoint that names no port (a hostile or broken record) is no hold: not measured again."""
    engine = _engine()

    def m(*endpoints: Any) -> dict[str, Any]:
        return {"test_keys": {"x_status": "failure", "x_residual": [{"endpoint": e} for e in endpoints]}}

    assert engine.residual_held(m("198.19.1.5")) == ()
    assert engine.residual_held(m("198.19.1.5", "198.19.1.5:80", "198.19.1.5:80", 7)) == (("198.19.1.5", 80),)


def test_a_held_input_waits_for_the_latest_of_its_endpoints_holds() -> None:
    """An input held at two endpoints is free once both are: the wait runs from the censor's latest act."""
    engine = _engine(residual_wait=10.0)
    token = engine.ctx.residual.token()
    engine.ctx.residual.trigger("198.19.1.5", 80, token, at=100.0)
    engine.ctx.residual.trigger("198.19.1.6", 443, token, at=150.0)
    held = (("198.19.1.5", 80), ("198.19.1.6", 443))
    assert engine.free_at(held) == 160.0
    assert engine.free_at((("198.19.1.5", 80),)) == 110.0
    assert engine.free_at((("198.19.1.7", 80),)) == 0.0  # never acted there: free already


def test_the_progress_line_counts_inputs_not_measured_as_finished() -> None:
    """An input that could not be measured is finished for the run: without it the bar never reaches the total."""
    stats = RunStats(total=4, done=2, skipped=1, errors=1)
    line = Progress(stats, stream=io.StringIO(), enabled=False).line()
    assert "] 4/4 " in line and line.startswith("[" + "#" * 24 + "]"), line
    assert "ETA 0:00" in line and "resumed past 1" in line and "not measured 1" in line


@pytest.mark.parametrize("spec", ["198.19.1.5:0", "tcp://echo.example:0", "http://echo.example:0/"])
def test_a_backend_at_port_0_is_refused_before_the_run(spec: str) -> None:
    """Port 0 is no port a connection can be made to: without the check every measurement would fail instead."""
    with pytest.raises(NettestError, match="bad backend"):
        check_backend(spec)
    check_backend(spec.replace(":0", ":7"))  # the same with a port is taken


def test_a_tls_input_at_port_0_is_refused_before_the_run() -> None:
    """tls_mitm and echcheck read a URL or host[:port] as `_endpoint` does: port 0 is refused there too."""
    nettest = types.ModuleType("tls_mitm")
    nettest.NAME, nettest.NEEDS_INPUT = "tls_mitm", True  # type: ignore[attr-defined]
    with pytest.raises(NettestError, match="not a URL or domain"):
        check_input(nettest, "https://site.example:0/")
    check_input(nettest, "https://site.example:8443/")


@pytest.mark.parametrize("name", ["tls_mitm", "echcheck"])
def test_a_tls_input_of_another_scheme_is_refused_before_the_run(name: str) -> None:
    """An ftp:// or tcp:// input would reach the nettest and fail as a measurement instead of one line first."""
    nettest = types.ModuleType(name)
    nettest.NAME, nettest.NEEDS_INPUT = name, True  # type: ignore[attr-defined]
    for bad in ("ftp://site.example/", "tcp://site.example:443"):
        with pytest.raises(NettestError, match="not an http"):
            check_input(nettest, bad)
    for good in ("http://site.example/", "site.example", "site.example:8443"):
        check_input(nettest, good)


def test_a_nettest_that_needs_input_is_refused_an_empty_list() -> None:
    """An empty list (every line blank or commented out) for a nettest that needs input is one line, not a run
    that measures nothing."""
    nettest = types.ModuleType("web_connectivity")
    nettest.NAME, nettest.NEEDS_INPUT = "web_connectivity", True  # type: ignore[attr-defined]
    with pytest.raises(NettestError, match="needs --input or --list"):
        validate_inputs(nettest, [])
    validate_inputs(nettest, ["http://site.example/"])


def test_an_interface_address_the_helper_names_is_scrubbed_even_where_it_was_measured(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The helper's word is not taken for an address that was measured, unless an interface of this machine has
    it: then it is ours for sure and scrubbed everywhere (breaks if the interfaces are not asked)."""
    ours = "198.51.100.7"
    monkeypatch.setattr(engine_module, "interface_addresses", lambda: {ours})

    async def run(input: str | None, ctx: Context) -> dict[str, Any]:
        ctx.own_addresses.add(ours)  # what a helper answers: the address it saw
        return {"tcp_connect": [{"ip": ours, "port": 80, "status": {"success": True}}],
                "requests": [{"response": {"body": f"you are {ours}"}}]}

    nettest = types.ModuleType("fake_nettest")
    nettest.NAME, nettest.VERSION, nettest.run = "web_connectivity", "0.0.1", run  # type: ignore[attr-defined]
    engine = Engine(nettest, Context(), ProbeInfo(), Scrubber([], interfaces=False))

    async def main() -> dict[str, Any]:
        async with asyncio.timeout(10):
            return await engine.measure("http://site.example/")

    m = asyncio.run(main())
    assert ours not in orjson.dumps(m).decode()
    assert m["input"] == "http://site.example/"


def test_only_a_failure_that_met_residual_blocking_is_held() -> None:
    """A measurement that found blocking (or access) with ``x_residual`` beside it told: it is not measured again;
    nor is anything when the run waits for nothing."""
    held = [{"endpoint": "198.19.1.5:80", "step": "tcp_connect"}]
    engine = _engine()
    assert engine.residual_held({"test_keys": {"x_status": "failure", "x_residual": held}}) == (("198.19.1.5", 80),)
    for status in ("anomaly", "ok", None):
        assert engine.residual_held({"test_keys": {"x_status": status, "x_residual": held}}) == (), status
    assert _engine(residual_wait=0.0).residual_held({"test_keys": {"x_status": "failure", "x_residual": held}}) == ()
    assert engine.residual_held({"test_keys": "hostile"}) == ()
    assert engine.residual_held({"test_keys": {"x_status": "failure", "x_residual": "198.19.1.5:80"}}) == ()


def test_the_addresses_a_measurement_measured_are_read_from_every_record_it_has() -> None:
    """What a helper's word for our address may not scrub: the input's, the answers', the connects', the
    control's (breaks if any one source is dropped); junk of any type is skipped."""
    m = {"input": "http://198.51.100.1:8080/", "test_keys": {
        "queries": [{"answers": [{"ipv4": "198.51.100.2"}, {"ipv6": "2001:db8::3"}, "junk"]}, 7],
        "tcp_connect": [{"ip": "198.51.100.4", "port": 443}],
        "tls_handshakes": [{"address": "198.51.100.5:443"}],
        "quic_handshakes": [{"address": "[2001:db8::6]:443"}],
        "requests": [{"request": {"url": "https://198.51.100.7/x"}}, {"request": "junk"}],
        "control": {"dns": {"addrs": ["198.51.100.8", "not an address", None]},
                    "tcp_connect": {"198.51.100.9:443": {"status": True}},
                    "tls_handshake": {"[2001:db8::a]:443": {}}},
    }}
    assert measured_addresses(m) == {"198.51.100.1", "198.51.100.2", "2001:db8::3", "198.51.100.4", "198.51.100.5",
                                     "2001:db8::6", "198.51.100.7", "198.51.100.8", "198.51.100.9", "2001:db8::a"}
    assert measured_addresses({"input": "198.51.100.1", "test_keys": "hostile"}) == {"198.51.100.1"}
    assert measured_addresses({"input": "http://[::1/", "test_keys": {"control": {"dns": {"addrs": "x"}}}}) == set()


def test_run_stats_keep_three_examples_a_row_whatever_the_run_measures() -> None:
    """Examples are a summary's, three a mechanism: kept for every input, a run over millions would hold them all."""
    stats = RunStats()
    for i in range(50):
        stats.add({"input": f"http://{i}.example/", "test_keys": {"blocking": "dns", "accessible": False,
                                                                   "x_mechanism": "dns.injection"}})
    stats.add({"input": "http://x.example/", "test_keys": {"x_status": "failure", "x_mechanism": "none"}})
    stats.add({"input": None, "test_name": "telegram",
               "test_keys": {"blocking": "tcp_ip", "x_mechanism": "tcp.rst", "x_evidence": ["test_keys.tcp_connect"]}})
    assert stats.examples["dns.injection"] == ["http://0.example/", "http://1.example/", "http://2.example/"]
    assert stats.by_mechanism == {"dns.injection": 50, COULD_NOT_TELL: 1, "tcp.rst": 1}
    assert stats.examples[COULD_NOT_TELL] == ["http://x.example/"]
    assert stats.examples["tcp.rst"] == ["telegram (tcp_connect)"]
    assert stats.blocked == 51 and stats.failures == 1


class _Sniffer:
    def __init__(self, packets: list[Packet]) -> None:
        self.packets = packets
        self.asked: list[tuple[set[str], float, float]] = []

    def packets_for(self, remotes: set[str], since: float, until: float) -> list[Packet]:
        self.asked.append((remotes, since, until))
        return self.packets


def test_packets_of_keeps_resets_fins_with_data_and_the_dns_answers_this_measurement_got() -> None:
    """--capture's evidence: an ordinary close or a DNS answer to another measurement is noise (breaks if a FIN
    carrying a block page, or the answer's match, is dropped, or the noise kept)."""
    ours, other = b"\x12\x34\x81\x80answer", b"\x56\x78\x81\x80someone else's"

    def pkt(remote: str, proto: str, flags: str, payload: bytes = b"") -> Packet:
        return Packet(1000.5, remote, proto, 1, 57, flags, 0 if proto == "tcp" else None, payload)

    sniffer = _Sniffer([
        pkt("198.51.100.1:443", "tcp", "RA"),  # a reset
        pkt("198.51.100.1:443", "tcp", "FA"),  # an ordinary close
        pkt("198.51.100.1:443", "tcp", "FPA", b"HTTP/1.1 403 Forbidden\r\n\r\n"),  # a block page, then FIN
        pkt("198.51.100.1:443", "tcp", "PA", b"data"),  # data on its own: the measurement has it
        pkt("192.0.2.53:53", "udp", "", ours),
        pkt("192.0.2.53:53", "udp", "", other),
    ])
    tk = {"tcp_connect": [{"ip": "198.51.100.1", "port": 443}],
          "queries": [{"engine": "doh", "resolver_address": "https://dns.example/dns-query"},
                      {"engine": "udp", "resolver_address": "192.0.2.53:53",
                       "raw_response": base64.b64encode(ours).decode()}]}
    out = packets_of(tk, sniffer, 1000.0, 1002.0)
    assert sniffer.asked == [({"198.51.100.1:443", "192.0.2.53:53"}, 1000.0, 1002.0)]
    assert [(r["flags"], r.get("matches")) for r in out] == [("RA", None), ("FPA", None),
                                                             (None, "test_keys.queries[1]")]
    assert out[0]["t"] == 0.5 and out[2]["payload_len"] == len(ours)


def test_a_torn_line_after_another_nettests_measurements_is_cut_as_a_kill_in_mid_write(tmp_path: Path) -> None:
    """An output shared by nettests: a measurement of any of them before the torn line makes it the probe's own
    write cut short, cut off and measured again, not the user's JSON refused."""
    out = tmp_path / "out.jsonl"
    kept = _measurement("a.example", test_name="dnscheck") + b"\n"  # a blank line between: kept, not counted
    out.write_bytes(kept + b'{"test_name": "web_connectivity", "inp')
    resume = scan_output(out, "web_connectivity")
    assert resume.cut == len(kept) and len(resume.seen) == 0
    with open_output(out, resume) as f:
        f.write(_measurement("http://b.example/"))
    assert out.read_bytes() == kept + _measurement("http://b.example/")


def test_a_control_failure_is_counted_by_its_first_80_characters() -> None:
    """A helper's failure is free text: a hostile one must not make the summary's row as long as it likes."""
    stats = RunStats()
    for tail in ("x" * 5000, "y" * 5000):
        stats.add({"input": "http://a.example/", "test_keys": {"blocking": False, "accessible": True,
                                                               "control_failure": "generic_timeout_error " + tail}})
    stats.add({"input": "http://b.example/", "test_keys": {"control_failure": "control_disabled"}})
    rows = [("generic_timeout_error " + c * 80)[:80] for c in "xy"]
    assert stats.no_control == {rows[0]: 1, rows[1]: 1}
