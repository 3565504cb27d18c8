"""tcp_freeze in the lab: ru-like freezes connections to its "foreign hosting" addresses after 16 KiB (the TSPU's
16-20 KB block, an ip freeze rule); the one connection stops dead, the same bytes over new connections all come,
and a server no rule names gives a whole 64 KiB on one connection. The control helper, outside, fetches each page
whole: a reset it did not get is blocking, a port closed to it too is a site down, not blocking."""

from __future__ import annotations

import json

import pytest

from tamperscope.lab import farm, manager

from .conftest import run_nettest

pytestmark = pytest.mark.lab
FROZEN_RANGE = "https://hetzner.com/"   # its first response freezes: the split asks for ranges
FROZEN_REPEAT = "http://linode.com/"    # a 12 KB page comes whole, the second copy freezes: the split repeats it
FREE = "https://example.com/"
RESET = "https://linkedin.com/"  # ru-sni resets its handshake; the helper's completes
DOWN = "https://example.com:9/"  # nothing listens there, for the probe or the helper


def test_a_freeze_is_found_confirmed_and_got_past(lab_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    lab = lab_factory("ru-like")
    got = run_nettest(tmp_path / "f.jsonl", "tcp_freeze", (FROZEN_RANGE, FROZEN_REPEAT, FREE, RESET, DOWN))
    for url, m in got.items():  # asked while the one connection ran, from outside: every page came whole there
        assert m["test_helpers"]["backend"]["address"] == manager.client_env()["TAMPERSCOPE_HELPER"], url
        tk = m["test_keys"]
        assert tk["control_failure"] is None, (url, tk["control_failure"])
        ep = tk["x_address"]
        if url == DOWN:
            assert tk["control"]["tcp_connect"][ep] == {"status": False, "failure": "connection_refused"}
            continue
        assert tk["control"]["tcp_connect"][ep]["status"] is True
        assert tk["control"]["http_request"]["status_code"] == 200, url
    page = farm.respond("https", "hetzner.com", "/").body
    assert got[FROZEN_RANGE]["test_keys"]["control"]["http_request"]["body_length"] == len(page)
    for url, mode in ((FROZEN_RANGE, "range"), (FROZEN_REPEAT, "repeat")):
        tk = got[url]["test_keys"]
        assert (tk["x_status"], tk["x_mechanism"], tk["x_confidence"], tk["blocking"]) == \
            ("anomaly", "tcp.freeze", 0.9, "http-failure"), (url, tk["x_freeze"])
        single, split = tk["x_freeze"]["single"], tk["x_freeze"]["split"]
        # the connection carried under the rule's 16 KiB (TLS included), then nothing until the 10 s timeout
        assert single["frozen"] and 12 * 1024 < single["received"] <= 16 * 1024, single
        assert single["failure"] == "generic_timeout_error" and single["silence_s"] >= 9, single
        assert split["mode"] == mode and split["failure"] is None and split["completed"] == split["connections"] >= 2
        assert split["received"] > single["received"] - 2048 and not split["range_ignored"], split
    assert got[FROZEN_REPEAT]["test_keys"]["x_freeze"]["single"]["requests"] == 1
    free = got[FREE]["test_keys"]
    assert (free["x_status"], free["x_mechanism"], free["failure"]) == ("ok", "none", None)
    assert free["x_freeze"]["single"]["received"] >= 64 * 1024 and free["x_freeze"]["split"] is None
    # the handshake the censor reset here completed from outside: blocking, at the control's confidence
    reset = got[RESET]["test_keys"]
    assert (reset["x_status"], reset["x_mechanism"], reset["x_confidence"]) == ("anomaly", "tls.rst", 0.7), reset
    assert reset["x_freeze"]["single"]["stage"] == "tls"
    # refused here and from outside: the site is down for everyone, which is no censorship
    down = got[DOWN]["test_keys"]
    assert down["x_freeze"]["single"]["failure"] == "connection_refused"
    assert (down["x_status"], down["x_mechanism"], down["blocking"]) == ("failure", "none", None), down
    # the ground truth: one freeze per frozen connection (the single ones), none of the split's, none for example.com
    truth = [json.loads(line) for line in manager.PATHS.log.read_text().splitlines()]
    frozen = {(t["server"], t["after_kb"]) for t in truth if t["rule"] == "ru-freeze"}
    assert frozen == {(f"{lab.addr('hetzner.com')}:443", 16), (f"{lab.addr('linode.com')}:80", 16)}, truth
    assert sum(t["rule"] == "ru-freeze" for t in truth) == 2
