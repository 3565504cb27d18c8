"""The collector scrubs the address a submission came from, wherever it appears in the measurement: a second
line of defence for a probe behind NAT that could not know its public address (no helper, no --stun), which is
the address a collector sees. Real sockets: uvicorn on 127.0.0.1, the submitter's address forwarded by a trusted
proxy (X-Forwarded-For from 127.0.0.1, as `serve` trusts by default), as a reverse proxy in front would."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import orjson

from tamperscope.collector import samples
from tamperscope.collector.app import create_app
from tamperscope.collector.config import Settings
from tamperscope.collector.testing import uvicorn_server
from tamperscope.probe.privacy import SCRUBBED

PUBLIC = "203.0.113.7"
SCRUBBED_PAGE = f"<p>Your IP is {SCRUBBED} (port {SCRUBBED})</p>"


def _measurement(n: int) -> dict[str, Any]:
    m = samples.measurement(url=f"https://site{n}.example/")
    m["test_keys"]["requests"][0]["response"]["body"] = f"<p>Your IP is {PUBLIC} (port {PUBLIC}:52282)</p>"
    return m


def _submit_and_read(db: Path, forwarded: str | None, probe_ip: str | None = None) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        app = create_app(Settings(db_path=db, announce=False, submit_rate=0, read_rate=0))
        async with uvicorn_server(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
            headers = {"X-Forwarded-For": forwarded} if forwarded else {}
            m = _measurement(1 if forwarded else 2)
            if probe_ip is not None:
                m["probe_ip"] = probe_ip
            opened = await client.post("/report", json={k: m[k] for k in (
                "test_name", "probe_cc", "probe_asn", "software_name", "software_version", "test_version",
                "data_format_version", "format") if k in m} | {"format": "json"}, headers=headers)
            assert opened.status_code == 200, opened.text
            sent = await client.post(f"/report/{opened.json()['report_id']}", headers=headers,
                                     json={"format": "json", "content": m})
            assert sent.status_code == 200, sent.text
            uid = sent.json()["measurement_uid"]
            m = _measurement(3 if forwarded else 4)
            if probe_ip is not None:
                m["probe_ip"] = probe_ip
            bulk = await client.post("/api/v1/submit", headers={**headers, "Content-Type": "application/x-ndjson"},
                                     content=orjson.dumps(m) + b"\n")
            assert bulk.status_code == 200, bulk.text
            await app.state.collector.ingestor.settled()
            one = await client.get(f"/api/v1/measurement/{uid}")
            other = await client.get(f"/api/v1/measurement/{bulk.json()['results'][0]['measurement_uid']}")
            assert one.status_code == 200 and other.status_code == 200, (one.text, other.text)
            return {"report": one.json(), "bulk": other.json()}

    return asyncio.run(asyncio.wait_for(main(), 60))


def test_the_submitters_address_is_scrubbed_from_what_is_stored(tmp_path: Path) -> None:
    got = _submit_and_read(tmp_path / "c.duckdb", PUBLIC)
    for how, m in got.items():
        body = m["test_keys"]["requests"][0]["response"]["body"]
        assert body == f"<p>Your IP is {SCRUBBED} (port {SCRUBBED})</p>", how
        assert PUBLIC not in orjson.dumps(m).decode() and m["probe_ip"] == "127.0.0.1"


def test_from_another_address_the_measurement_is_stored_as_sent(tmp_path: Path) -> None:
    """The control: submitted from 127.0.0.1 itself, the same address in the page is someone else's."""
    got = _submit_and_read(tmp_path / "c.duckdb", None)
    for how, m in got.items():
        assert m["test_keys"]["requests"][0]["response"]["body"] == f"<p>Your IP is {PUBLIC} (port {PUBLIC}:52282)</p>", how


def test_an_address_forwarded_in_its_ipv4_mapped_form_is_scrubbed_in_every_spelling(tmp_path: Path) -> None:
    # A dual-stack proxy forwards ::ffff:203.0.113.7: only that spelling was scrubbed, the plain address kept (QA)
    got = _submit_and_read(tmp_path / "c.duckdb", f"::ffff:{PUBLIC}")
    for how, m in got.items():
        assert m["test_keys"]["requests"][0]["response"]["body"] == SCRUBBED_PAGE, how
        assert PUBLIC not in orjson.dumps(m).decode()


def test_an_address_the_probe_sent_as_probe_ip_is_scrubbed_everywhere_else_too(tmp_path: Path) -> None:
    # probe_ip was replaced by 127.0.0.1, but the address it gave stayed in the page that echoed it (QA); here
    # submitted from 127.0.0.1 itself, so that only probe_ip names it
    got = _submit_and_read(tmp_path / "c.duckdb", None, probe_ip=PUBLIC)
    for how, m in got.items():
        assert m["test_keys"]["requests"][0]["response"]["body"] == SCRUBBED_PAGE, how
        assert PUBLIC not in orjson.dumps(m).decode() and m["probe_ip"] == "127.0.0.1"
