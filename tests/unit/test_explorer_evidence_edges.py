"""Edges of what the measurement page says: DNS answers with no control to judge them by, the HTTP diff against
the control (titles, body proportion, which response of a redirect chain), the technique's words beside an
outcome, skipped bodies, remote measurements, echo exchanges and the middlebox tests' lines and flags."""

from __future__ import annotations

import base64
from typing import Any

from tamperscope.collector import samples
from tamperscope.explorer.evidence import LINE_PREVIEW, evidence

SITE = "http://www.example.com/"


def _response(code: int, body: str, *headers: tuple[str, str]) -> dict[str, Any]:
    return {"code": code, "body": body, "headers_list": [list(h) for h in headers]}


def _http(requests: list[dict[str, Any]], control: dict[str, Any] | None, **m: Any) -> dict[str, Any]:
    """The page's HTTP section for a measurement of ``requests`` (as listed) beside a control's http_request."""
    tk: dict[str, Any] = {"requests": requests, "control": {"http_request": control} if control else {}}
    got = evidence({"test_name": "web_connectivity", "test_keys": tk, **m})["http"]
    assert isinstance(got, dict)
    return got


def _control(title: str = "Example Domain", body_length: int = 100, code: int = 200) -> dict[str, Any]:
    return {"status_code": code, "body_length": body_length, "title": title, "failure": None,
            "headers": {"Content-Type": "text/html"}}


def _echo(sent: str, received: str | dict[str, str], failure: str | None) -> dict[str, Any]:
    m = {"test_name": "remote_web", "test_keys": {"vantage": "198.18.0.7", "x_echo": [
        {"transaction_id": 1, "tags": ["echo", "test"], "sent": sent, "received": received, "failure": failure}]}}
    (shown,) = evidence(m)["echo"]
    assert isinstance(shown, dict)
    return shown


# --------------------------------------------------------------------------- DNS


def test_with_no_control_addresses_no_dns_answer_is_called_unexpected() -> None:
    """Without the control's addresses there is nothing to compare with: the page must not flag every answer as
    'not the site's' (it did, marking a plain lookup as if poisoned)."""
    m = samples.measurement("ok")
    del m["test_keys"]["control"]["dns"]
    queries = evidence(m)["dns"]["queries"]
    assert queries and all(q["answers"] == [samples.SITE_IP] for q in queries)
    assert [q["unexpected"] for q in queries] == [[]] * len(queries)
    m["test_keys"]["control"]["dns"] = {"failure": "dns_nxdomain_error", "addrs": []}  # the control found none
    assert [q["unexpected"] for q in evidence(m)["dns"]["queries"]] == [[]] * len(queries)


# --------------------------------------------------------------------------- the HTTP diff


def test_titles_differing_only_in_case_are_shown_as_matching_the_control() -> None:
    """OONI compares titles without regard to case: 'Example Domain' against the control's 'EXAMPLE DOMAIN' must
    read as a match, not as a page that differs from the uncensored one."""
    body = "<html><title>Example Domain</title></html>"
    title = _http([{"request": {"url": SITE}, "response": _response(200, body)}],
                  _control("EXAMPLE DOMAIN", len(body)))["diff"]["title"]
    assert title == {"measured": "Example Domain", "control": "EXAMPLE DOMAIN", "match": True}


def test_the_body_proportion_is_the_smaller_length_over_the_larger() -> None:
    """A body three times the control's must read as a proportion of 0.33, as OONI writes it, never as 3.03 (a
    'proportion' above 1 the page would show beside a 0-to-1 scale)."""
    longer = _http([{"request": {"url": SITE}, "response": _response(200, "x" * 303)}], _control(body_length=100))
    assert longer["diff"]["body_length"] == {"measured": 303, "control": 100, "proportion": 0.33, "match": None}
    shorter = _http([{"request": {"url": SITE}, "response": _response(200, "x" * 100)}], _control(body_length=303))
    assert shorter["diff"]["body_length"]["proportion"] == 0.33


def test_on_a_redirect_chain_the_final_response_is_the_one_compared_with_the_control() -> None:
    """A chain that starts at the input (301, then the page) must compare the page's 200 with the control's 200,
    not the redirect's 301: the page would otherwise report a status mismatch and a missing title."""
    first = {"request": {"url": SITE}, "response": _response(301, "", ("Location", "https://www.example.com/"))}
    final = {"request": {"url": "https://www.example.com/"},
             "response": _response(200, "<title>Example Domain</title>" + "x" * 71)}
    diff = _http([first, final], _control(), input=SITE)["diff"]
    assert diff["status_code"] == {"measured": 200, "control": 200, "match": True}
    assert diff["title"]["measured"] == "Example Domain" and diff["title"]["match"] is True
    assert diff["body_length"]["measured"] == 100 and diff["body_length"]["proportion"] == 1.0


def test_on_a_redirect_chain_listed_newest_first_as_ooni_does_the_final_response_is_compared() -> None:
    """OONI (and our probe) list requests newest first: the page, then the redirect to it. The page took the
    last listed, the 301, and said the status did not match the control's and the page had no title (QA)."""
    redirect = {"request": {"url": SITE}, "response": _response(301, "", ("Location", "https://www.example.com/"))}
    page = {"request": {"url": "https://www.example.com/"},
            "response": _response(200, "<title>Example Domain</title>" + "x" * 71)}
    for m in ({"input": SITE}, {}):  # the input known, or not (OONI's order is the default)
        diff = _http([page, redirect], _control(), **m)["diff"]
        assert diff["status_code"] == {"measured": 200, "control": 200, "match": True}, m
        assert diff["title"]["measured"] == "Example Domain" and diff["title"]["match"] is True


def test_a_request_with_no_response_does_not_say_its_body_was_skipped() -> None:
    """A request that failed before any response has no body at all: the page must not say 'Body not shown' for
    it (that note is for bodies past the ones the page decodes), nor for a body it did show."""
    failed = {"request": {"url": SITE}, "failure": "connection_reset", "response": None}
    shown = {"request": {"url": SITE}, "response": _response(200, "<title>Example Domain</title>")}
    requests = _http([failed, shown], None)["requests"]
    assert [(r["failure"], r["status_code"], r["body_skipped"]) for r in requests] == [
        ("connection_reset", None, False), (None, 200, False)]
    assert requests[0]["body_text"] == "" and requests[1]["title"] == "Example Domain"


# --------------------------------------------------------------------------- the verdict in words


def test_the_technique_is_put_in_words_only_beside_an_anomaly_or_confirmed_blocking() -> None:
    """A failed measurement draws no conclusion: its page must not say 'the resolver answered with addresses that
    are not the site's' because a mechanism was recorded beside the failure."""
    m = samples.measurement("dns.poison")
    failed = evidence(m, {"mechanism": "dns.poison", "outcome": "failure"})["verdict"]
    assert failed["mechanism"] == "dns.poison" and failed["mechanism_meaning"] is None
    assert failed["outcome_meaning"] is not None and "no conclusion" in failed["outcome_meaning"]
    for outcome in ("anomaly", "confirmed"):
        said = evidence(m, {"mechanism": "dns.poison", "outcome": outcome})["verdict"]["mechanism_meaning"]
        assert said == "the resolver answered with addresses that are not the site's"


# --------------------------------------------------------------------------- remote measurements


def test_only_a_remote_measurement_says_it_was_measured_through_a_vantage() -> None:
    """A web_connectivity measurement carrying a ``vantage`` key (a probe's stray field) was measured on the spot:
    the page must not box it as 'measured through a web server' in another country."""
    m = samples.measurement("ok", extra={"vantage": "198.18.0.7"})
    assert m["test_name"] == "web_connectivity" and evidence(m)["remote"] is None
    remote = evidence({"test_name": "remote_web", "test_keys": {"vantage": "198.18.0.7"}})["remote"]
    assert remote == {"vantage": "198.18.0.7", "kind": "a web server"}


# --------------------------------------------------------------------------- echo exchanges


def test_an_echo_reply_that_is_not_utf8_is_shown_as_binary_not_as_mojibake() -> None:
    """Bytes that are not UTF-8 came back in place of the request: the page shows their length, not a line of
    replacement characters passed off as the text the middlebox sent."""
    garbled = {"format": "base64", "data": base64.b64encode(b"\xff\xfe\xfdHTTP/1.1 403\xc3").decode()}
    shown = _echo(f"GET / HTTP/1.1\r\nHost: {samples.DOMAINS[0]}\r\n\r\n", garbled, "echo_mismatch")
    assert (shown["intact"], shown["received_length"], shown["received"]) == (False, 16, None)
    text = _echo("GET / HTTP/1.1\r\nHost: a.example\r\n\r\n", "HTTP/1.1 403 Forbidden\r\n\r\n", "echo_mismatch")
    assert text["received"] == "HTTP/1.1 403 Forbidden\r\n\r\n"  # text that differs is shown


def test_an_intact_echo_does_not_also_show_what_came_back() -> None:
    """The very bytes back need no second copy: the page says 'intact' and shows no received text."""
    sent = "GET / HTTP/1.1\r\nHost: a.example\r\n\r\n"
    shown = _echo(sent, sent, None)
    assert (shown["intact"], shown["failure"], shown["received"]) == (True, None, None)
    assert shown["sent"] == "an HTTP request" and shown["name"] == "a.example"


def test_an_echo_that_sent_nothing_and_got_nothing_is_not_called_intact() -> None:
    """Nothing sent and nothing back proves nothing about the path: the page must not say the bytes came back
    intact."""
    shown = _echo("", "", None)
    assert (shown["intact"], shown["received_length"], shown["failure"]) == (False, 0, None)


# --------------------------------------------------------------------------- middlebox tests


def test_a_request_line_exactly_the_preview_long_is_shown_whole_without_an_ellipsis() -> None:
    """A line of exactly LINE_PREVIEW characters is shown whole: a '…' would tell the reader it was cut."""
    whole, longer = "G" * LINE_PREVIEW, "G" * (LINE_PREVIEW + 1)
    tk = {"sent": [whole, longer], "received": [whole, longer], "tampering": False}
    lines = evidence({"test_name": "http_invalid_request_line", "test_keys": tk})["rewritten"]["lines"]
    assert [(line["sent"], line["received"], line["same"]) for line in lines] == [
        (whole, whole, True), (longer[:LINE_PREVIEW] + "…", longer[:LINE_PREVIEW] + "…", True)]


def test_a_tampering_total_written_as_the_string_false_is_not_shown_as_tampered() -> None:
    """OONI writes ``total`` as a boolean; a hostile or broken ``"false"`` (a non-empty string) must not make the
    page say the headers were tampered with."""
    def tampered(total: object) -> object:
        tk = {"tampering": {"total": total, "header_field_name": "true"}, "sent": "a", "received": "a"}
        shown = evidence({"test_name": "http_header_field_manipulation", "test_keys": tk})["rewritten"]
        assert shown["changed"] == []  # a string "true" is no flag either
        return shown["tampered"]

    assert [tampered(v) for v in ("false", "true", 1, None, False, True)] == [False] * 5 + [True]
