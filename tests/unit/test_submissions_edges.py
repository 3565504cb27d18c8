"""Edges of the collector's submission endpoints: the exact size limits, a quoted charset, the public URL as an
origin of this site, and what is scrubbed from a measurement before it is stored."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson
import pytest

from tamperscope.collector import samples
from tamperscope.collector.config import Settings
from tamperscope.collector.schema import Limits, SubmissionError
from tamperscope.collector.submissions import serialise, without_address
from tamperscope.collector.testing import SyncClient, running_app

LIMIT = 16 * 1024
PUBLIC_URL = "https://observatory.example.org"
TOKEN = "submissions-edges-admin-token"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SyncClient]:
    db = tmp_path_factory.mktemp("edges") / "e.duckdb"
    settings = Settings(db_path=db, announce=False, submit_rate=0, read_rate=0, public_url=PUBLIC_URL,
                        admin_token=TOKEN, limits=Limits(measurement=LIMIT, bulk=4 * LIMIT, bulk_lines=3))
    with running_app(settings) as c:
        yield c


def _measurement(host: str) -> dict[str, Any]:
    return samples.measurement(url=f"https://{host}/", start="2026-05-20 10:00:00")


def _padded(host: str, size: int) -> bytes:
    """A submission envelope of exactly ``size`` bytes (valid JSON: trailing spaces)."""
    body = orjson.dumps({"format": "json", "content": _measurement(host)})
    assert len(body) < size
    return body + b" " * (size - len(body))


def _streamed(client: SyncClient, path: str, body: bytes) -> Any:
    """POST ``body`` without a Content-Length (chunked), so only the limit while reading applies."""
    async def send() -> Any:
        async def chunks() -> AsyncIterator[bytes]:
            for at in range(0, len(body), 1000):
                yield body[at:at + 1000]
        return await client.client.post(path, content=chunks())
    return client.run(send)


def test_a_body_of_exactly_the_limit_is_taken_and_one_byte_more_is_413(client: SyncClient) -> None:
    """Breaks if Content-Length equal to the limit is refused (>= instead of >)."""
    assert client.post("/report/r1", content=_padded("exact.example", LIMIT)).status_code == 200
    r = client.post("/report/r1", content=_padded("over.example", LIMIT + 1))
    assert r.status_code == 413 and r.json()["error"] == "too_large"


def test_a_streamed_body_one_byte_over_the_limit_is_413(client: SyncClient) -> None:
    """Breaks if the limit while reading a body without Content-Length is off by one."""
    r = _streamed(client, "/report/r1", _padded("stream-over.example", LIMIT + 1))
    assert r.status_code == 413 and r.json()["error"] == "too_large"
    assert _streamed(client, "/report/r1", _padded("stream-exact.example", LIMIT)).status_code == 200


def test_a_quoted_utf8_charset_is_accepted(client: SyncClient) -> None:
    """Breaks if the charset parameter's quotes are not removed (charset="UTF-8" refused as another charset)."""
    body = orjson.dumps({"format": "json", "content": _measurement("quoted-charset.example")})
    r = client.post("/report/r1", content=body, headers={"Content-Type": 'application/json; charset="UTF-8"'})
    assert r.status_code == 200, r.text


def test_a_page_of_the_public_url_may_submit(client: SyncClient) -> None:
    """Behind a proxy the Host differs from the public URL's: breaks if the public URL is not an origin of ours."""
    body = orjson.dumps({"format": "json", "content": _measurement("public-origin.example")})
    r = client.post("/report/r1", content=body, headers={"Origin": PUBLIC_URL})
    assert r.status_code == 200, r.text
    r = client.post("/report/r1", content=body, headers={"Origin": "https://observatory.example.net"})
    assert r.status_code == 403 and r.json()["error"] == "cross_origin"


def _poisoned_to(address: str) -> dict[str, Any]:
    """A DNS-poisoning measurement whose forged answer is ``address`` (what many censors answer: 0.0.0.0)."""
    m = samples.measurement("dns.poison", url="https://poisoned.example/", start="2026-05-20 10:00:00")
    for query in m["test_keys"]["queries"]:
        query["answers"][0]["ipv4"] = address
    return m


@pytest.mark.parametrize("submitter", ["0.0.0.0", "::", "127.0.0.1", "::ffff:127.0.0.1"])
def test_an_unspecified_or_loopback_submitter_scrubs_nothing(submitter: str) -> None:
    """Breaks if 0.0.0.0 (or the mapped form of 127.0.0.1) were scrubbed: the censor's forged answer is evidence."""
    for answer in ("0.0.0.0", "127.0.0.1"):
        m = _poisoned_to(answer)
        assert without_address(m, submitter) == m


def test_a_probe_ip_of_0_0_0_0_is_replaced_but_a_forged_answer_of_it_kept() -> None:
    """Breaks if the probe's own unspecified address were scrubbed from the rest of the measurement."""
    m = {**_poisoned_to("0.0.0.0"), "probe_ip": "0.0.0.0"}
    out = without_address(m, None)
    assert out["probe_ip"] == "127.0.0.1"
    assert [q["answers"][0]["ipv4"] for q in out["test_keys"]["queries"]] == ["0.0.0.0", "0.0.0.0"]
    assert list(out) == list(m)  # the same key order: the uid is derived from these bytes


def test_a_measurement_of_exactly_the_limit_is_stored_and_one_byte_less_is_not() -> None:
    """Breaks if serialise refused a re-encoded measurement of exactly the limit (>= instead of >)."""
    m = _measurement("serialise-limit.example")
    size = len(orjson.dumps(m))
    assert serialise(m, size) == orjson.dumps(m)
    with pytest.raises(SubmissionError) as refused:
        serialise(m, size - 1)
    assert refused.value.status == 413 and refused.value.error == "too_large"


def test_a_bulk_line_over_the_limit_is_refused_even_if_it_would_shrink(client: SyncClient) -> None:
    """Breaks if a bulk line's own length is not checked (only its compact re-encoding, far smaller)."""
    over = orjson.dumps(_measurement("bulk-over.example"))
    exact = orjson.dumps(_measurement("bulk-exact.example"))
    body = over + b" " * (LIMIT + 1 - len(over)) + b"\n" + exact + b" " * (LIMIT - len(exact))
    r = client.post("/api/v1/submit", content=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert (out["stored"], out["refused"]) == (1, 1)
    assert out["results"][0]["line"] == 1 and out["results"][0]["error"] == "too_large"
    assert out["results"][1]["line"] == 2 and out["results"][1]["duplicate"] is False


def test_blank_lines_of_spaces_or_carriage_returns_in_a_bulk_body_are_not_measurements(client: SyncClient) -> None:
    """Breaks if a line of only whitespace (CRLF line ends, a trailing blank line) counts as a refused measurement."""
    line = orjson.dumps(_measurement("crlf.example"))
    r = client.post("/api/v1/submit", content=b"\r\n" + line + b"\r\n  \t \r\n\r\n")
    assert r.status_code == 200, r.text
    out = r.json()
    assert (out["stored"], out["duplicates"], out["refused"]) == (1, 0, 0)
    assert [result["line"] for result in out["results"]] == [2]


def test_a_deleted_measurement_submitted_again_is_410_or_named_deleted_in_a_bulk(client: SyncClient) -> None:
    """Breaks if either endpoint answered a deleted measurement's resubmission as a bare refusal without its uid."""
    m = _measurement("deleted-again.example")
    uid = client.submit(m)
    r = client.post(f"/api/v1/admin/delete/{uid}", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200, r.text
    r = client.post("/report/r1", json={"format": "json", "content": m})
    assert r.status_code == 410 and r.json()["error"] == "deleted" and r.json()["measurement_uid"] == uid
    r = client.post("/api/v1/submit", content=orjson.dumps(m))
    assert r.status_code == 422, r.text
    out = r.json()
    assert (out["stored"], out["duplicates"], out["refused"]) == (0, 0, 1)
    assert out["results"] == [{"line": 1, "error": "deleted", "measurement_uid": uid,
                               "detail": "an administrator deleted this measurement"}]
