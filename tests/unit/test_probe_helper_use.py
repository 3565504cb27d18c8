"""The control helper is named, contacted and recorded only by a nettest that asks it (``USES_HELPER``): a run of
telegram with the lab's TAMPERSCOPE_HELPER set says nothing of a helper it never contacts."""

from __future__ import annotations

import inspect

import orjson
import pytest

from tamperscope import nettests
from tests.unit.test_probe_input_checks import Probe, probe  # noqa: F401 (a fixture)
from tests.unit.test_telegram import refuse_consent

HELPER = "http://198.19.0.10:80/"


@pytest.mark.parametrize("name", nettests.names())
def test_the_flag_says_what_the_code_does(name: str) -> None:
    module = nettests.load(name)
    asks = "ask_helper(" in inspect.getsource(module)
    assert nettests.uses_helper(module) is asks, f"{name}: USES_HELPER must be {asks}"


@pytest.mark.parametrize("nettest, args, uses", [
    ("web_connectivity", ("-i", "https://example.org/"), True),
    ("tcp_freeze", ("-i", "https://example.org/"), True),
    ("telegram", (), False),
    ("wireguard", ("-i", "198.18.5.5:51820"), False),
])
def test_the_helper_is_named_and_recorded_only_where_it_is_asked(probe: Probe,  # noqa: F811
                                                                 monkeypatch: pytest.MonkeyPatch, nettest: str,
                                                                 args: tuple[str, ...], uses: bool) -> None:
    monkeypatch.setenv("TAMPERSCOPE_HELPER", HELPER)
    if nettest == "wireguard":
        conf = probe.dir / "wg.conf"
        conf.write_text("[Interface]\nPrivateKey = " + "A" * 43 + "=\n[Peer]\nPublicKey = " + "B" * 43 +
                        "=\nEndpoint = 198.18.5.5:51820\n")
        conf.chmod(0o600)
        args = (*args, "--wg-config", str(conf))
    res = probe.main("run", nettest, "--yes", "--no-progress", "-o", "out.jsonl", *args)
    assert res.code == 0, res.err
    opening = next(line for line in res.err.splitlines() if line.startswith(f"tamperscope: {nettest} on "))
    assert (f"helper {HELPER}" in opening) is uses, opening
    (m,) = [orjson.loads(x) for x in (probe.dir / "out.jsonl").read_bytes().splitlines()]
    assert m["test_helpers"] == ({"backend": {"address": HELPER, "type": "https"}} if uses else {})
    asked = refuse_consent(monkeypatch)
    assert probe.main("run", nettest, "-o", "other.jsonl", *args).code == 2
    (plan,) = asked
    assert (f"the control helper {HELPER}" in plan) is uses, plan
