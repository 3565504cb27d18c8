"""tcp_freeze in the lab: ru-like freezes connections to its "foreign hosting" addresses after 16 KiB (the TSPU's
16-20 KB block, an ip freeze rule); the one connection stops dead, the same bytes over new connections all come,
and a server no rule names gives a whole 64 KiB on one connection."""

from __future__ import annotations

import json

import pytest

from tamperscope.lab import manager

from .conftest import run_nettest

pytestmark = pytest.mark.lab
FROZEN_RANGE = "https://hetzner.com/"   # its first response freezes: the split asks for ranges
FROZEN_REPEAT = "http://linode.com/"    # a 12 KB page comes whole, the second copy freezes: the split repeats it
FREE = "https://example.com/"


def test_a_freeze_is_found_confirmed_and_got_past(lab_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    lab = lab_factory("ru-like")
    got = run_nettest(tmp_path / "f.jsonl", "tcp_freeze", (FROZEN_RANGE, FROZEN_REPEAT, FREE))
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
    # the ground truth: one freeze per frozen connection (the single ones), none of the split's, none for example.com
    truth = [json.loads(line) for line in manager.PATHS.log.read_text().splitlines()]
    frozen = {(t["server"], t["after_kb"]) for t in truth if t["rule"] == "ru-freeze"}
    assert frozen == {(f"{lab.addr('hetzner.com')}:443", 16), (f"{lab.addr('linode.com')}:80", 16)}, truth
    assert sum(t["rule"] == "ru-freeze" for t in truth) == 2
