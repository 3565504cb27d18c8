"""One box, one key: `locate` and a measurement's signature key the same forged page alike
(model.location.carriers). The lab's MTS page, cut into three segments, was "PA" for locate and "FPA" for
web_connectivity."""

from __future__ import annotations

from typing import Any

from tamperscope.model.location import carriers, signature, signature_key
from tamperscope.model.signature import signature_from


def _seg(flags: str, ip_id: int, payload: int, t: float) -> dict[str, Any]:
    return {"kind": "tcp", "proto": "tcp", "src": "198.18.1.80", "remote": "198.18.1.80:80", "flags": flags,
            "ip_id": ip_id, "ttl": 60, "initial_ttl": 64, "window": 65535, "payload_len": payload, "t": t}


def test_a_page_in_segments_is_keyed_by_its_data_with_the_fin_by_both() -> None:
    page = [_seg("PA", 100, 1400, 0.1), _seg("PA", 101, 1400, 0.1), _seg("FPA", 102, 300, 0.1)]
    located = signature(carriers(page), hop=2)
    assert located is not None and located["flags"] == "FPA" and located["ip_id"] == 102 and located["packets"] == 1
    m = {"test_keys": {"x_packets": page, "x_mechanism": "http.blockpage", "x_evidence": [],
                       "x_fingerprints": []}}
    measured = signature_from(m)
    assert measured is not None
    assert signature_key(located) == measured["key"] == "tcp/FPA/ttl64/win65535/ipid102"
    # the packets locate saw alone would have been keyed by the first segment
    assert signature_key(signature(page)) == "tcp/PA/ttl64/win65535/ipid*"


def test_without_a_page_every_forged_packet_counts() -> None:
    rsts = [_seg("RA", 7, 0, 0.1), _seg("RA", 7, 0, 0.2)]
    assert carriers(rsts) == rsts
    # a FIN without data carries no page: a reset's FIN+ACK stays with the rest
    fin = [_seg("FA", 7, 0, 0.1), _seg("RA", 7, 0, 0.1)]
    assert carriers(fin) == fin
    assert carriers([]) == []
