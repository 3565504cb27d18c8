"""A captured body whose declared charset would decode to lone surrogates (UTF-7 ``+2AA-``, or ``\\ud800`` read as
``unicode_escape``): the measurement is stored, and its page, its JSON twin and the sandboxed view must show
the body, not fail to encode it (a 500 on every view of that measurement). `decode_body` no longer takes such
labels for a charset (tests/unit/test_wire_charsets.py); `body_text` replaces a surrogate all the same."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest

from tamperscope.collector import samples
from tamperscope.collector.config import Settings
from tamperscope.collector.testing import SyncClient, running_app
from tamperscope.explorer.evidence import body_text


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SyncClient]:
    db = tmp_path_factory.mktemp("explorer-surrogates") / "s.duckdb"
    with running_app(Settings(db_path=db, announce=False, submit_rate=0, read_rate=0)) as c:
        yield c


# Not valid UTF-8 (the trailing 0xff), so the declared charset is what decodes it.
BODIES = {"utf-7": b"<title>+2AA-</title><p>x+2D3-y</p>\xff",
          "unicode_escape": b"<title>\\ud800</title><p>x\\udfffy</p>\xff",
          "raw_unicode_escape": b"<title>\\ud800</title><p>x\\udfffy</p>\xff"}


def _measurement(charset: str) -> dict[str, object]:
    m = samples.measurement("http.blockpage", url=f"http://{charset.replace('_', '-')}.surrogate.example/",
                            start="2026-05-27 00:00:00")
    response = m["test_keys"]["requests"][0]["response"]  # type: ignore[index]
    response["body"] = {"format": "base64", "data": base64.b64encode(BODIES[charset]).decode()}
    response["headers_list"] = [["Content-Type", f"text/html; charset={charset}"]]
    response["headers"] = {"Content-Type": f"text/html; charset={charset}"}
    return m


@pytest.mark.parametrize("charset", sorted(BODIES))
def test_body_text_never_holds_a_lone_surrogate(charset: str) -> None:
    text = body_text({"format": "base64", "data": base64.b64encode(BODIES[charset]).decode()},
                     [("Content-Type", f"text/html; charset={charset}")])
    text.encode("utf-8")  # raises on a lone surrogate
    assert "\ufffd" in text and "<title>" in text


@pytest.mark.parametrize("charset", sorted(BODIES))
def test_a_body_decoding_to_surrogates_is_shown_not_a_500(client: SyncClient, charset: str) -> None:
    r = client.post("/report/r1", json={"format": "json", "content": _measurement(charset)})
    assert r.status_code == 200, r.text
    uid = r.json()["measurement_uid"]
    page = client.get(f"/m/{uid}")
    assert page.status_code == 200 and "\ufffd" in page.text
    twin = client.get(f"/m/{uid}.json")
    assert twin.status_code == 200
    request = twin.json()["evidence"]["http"]["requests"][0]
    assert "\ufffd" in request["body_text"]  # the 0xff
    title = request["title"]  # the UTF-8 reading of the label-less bytes ("+2AA-"), or U+FFFD: never a surrogate
    assert title and not any("\ud800" <= ch <= "\udfff" for ch in title)
    body = client.get(f"/m/{uid}/body/0")
    assert body.status_code == 200 and "\ufffd" in body.text
    assert body.headers["content-security-policy"].startswith("sandbox")
