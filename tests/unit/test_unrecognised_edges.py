"""Edges of `analysis.unrecognised`, the pure parts alone: which page of a measurement is taken, when a page judged
accessible is a suspect, when a page is the site's own, how a site is named, and the bounds of a group's counts."""

from __future__ import annotations

from typing import Any

import orjson

from tamperscope.analysis import unrecognised


def _raw(responses: list[dict[str, Any]], control: dict[str, Any] | None = None) -> bytes:
    m: dict[str, Any] = {"test_keys": {"requests": [{"t": float(i), "response": r} for i, r in enumerate(responses)]}}
    if control is not None:
        m["test_keys"]["control"] = {"http_request": control}
    return orjson.dumps(m)


def _row(mechanism: str = "http.blockpage", uid: str = "u") -> dict[str, Any]:
    return {"measurement_uid": uid, "mechanism": mechanism, "domain": "a.example", "probe_cc": "RU",
            "probe_asn": "AS1"}


def test_a_300_response_with_a_body_is_a_redirect_not_the_page() -> None:
    """3xx answers are redirects, 300 included: were the bound 300 < code, a "Multiple Choices" body would be taken
    for the page the censor served."""
    raw = _raw([{"code": 300, "body": "<title>Choices</title> pick one of these pages"}])
    assert unrecognised.page_of(raw, _row()) is None
    raw = _raw([{"code": 200, "body": "the page"}, {"code": 300, "body": "choices"}])
    seen = unrecognised.page_of(raw, _row())
    assert seen is not None and seen.text == "the page" and seen.status == 200


def test_the_sites_own_title_in_another_case_or_spacing_is_the_sites_own_page() -> None:
    """A page whose title is the control's, but for case and surrounding spaces, is the site's own (a DNS answer
    that led to a mirror): compared exactly, it would be grouped as an unknown blockpage."""
    control = {"title": "  Example Domain ", "body_length": 100}
    raw = _raw([{"code": 200, "body": "<html><title>EXAMPLE DOMAIN</title>the site</html>"}], control)
    assert unrecognised.page_of(raw, _row("dns.poison")) is None
    other = _raw([{"code": 200, "body": "<html><title>Blocked</title>the site</html>"}], control)
    assert unrecognised.page_of(other, _row("dns.poison")) is not None


def test_a_page_judged_accessible_at_exactly_70_percent_of_the_controls_length_is_a_suspect() -> None:
    """OONI's length check matches only a proportion over 0.7: a body of exactly 70% fails it, so with the title
    check failing too the page is a suspect (`ACCESSIBLE`); one byte more and the length check passes."""
    control = {"title": "Site", "body_length": 100}
    at = _raw([{"code": 200, "body": "<title>No</title>" + "x" * 53}], control)  # 70 bytes
    seen = unrecognised.page_of(at, _row("none"))
    assert seen is not None and seen.mechanism == unrecognised.ACCESSIBLE
    over = _raw([{"code": 200, "body": "<title>No</title>" + "x" * 54}], control)  # 71 bytes
    assert unrecognised.page_of(over, _row("none")) is None


def test_a_page_judged_accessible_without_a_control_title_is_not_a_suspect() -> None:
    """Without the control's title OONI's title check did not fail: the page is no suspect, however short (were
    the missing title let through, every short page of an accessible site would be a candidate blockpage)."""
    raw = _raw([{"code": 200, "body": "<title>Other</title>short"}], {"body_length": 10_000})
    assert unrecognised.page_of(raw, _row("none")) is None
    raw = _raw([{"code": 200, "body": "<title>Other</title>short"}], {"title": "", "body_length": 10_000})
    assert unrecognised.page_of(raw, _row("")) is None
    titled = _raw([{"code": 200, "body": "<title>Other</title>short"}], {"title": "Site", "body_length": 10_000})
    assert unrecognised.page_of(titled, _row("")) is not None


def test_a_label_of_exactly_four_characters_names_the_site() -> None:
    """Labels of four characters or more (but the last and "www") are how a page names the site: "news" of
    news.bbc.co.uk is one, so no proposal can hold it."""
    assert unrecognised.site_names("news.bbc.co.uk") == ["news%2ebbc%2eco%2euk", "news"]
    assert unrecognised.site_names("www.abcd.org") == ["www%2eabcd%2eorg", "abcd"]


def test_no_proposal_starts_with_a_character_a_spreadsheet_would_run() -> None:
    """A proposed pattern is pasted into Citizen Lab's CSV: one starting with "+", "-" or "@" (not only "=") would be
    run as a formula by a spreadsheet, so no such piece is proposed."""
    for lead in "+-@=":
        page = f"Notice\n{lead}this site is blocked by order\n"
        assert unrecognised.propose([page, page]) is None, lead
    page = "Notice\nthis site is blocked by order\n"
    assert unrecognised.propose([page, page]) == "this site is blocked by order"


_BLOCKED_HEAD = ("<html><title>Blocked</title><p>This site is blocked by order of the regulator</p><!--" + "a" * 17000
                 + "-->")  # past SHAPE_CHARS: what follows it does not change the template


def _group_rows(tails: list[str]) -> tuple[list[dict[str, Any]], dict[str, bytes]]:
    rows = [{"measurement_uid": f"u{i}", "probe_cc": "IT", "probe_asn": "AS1", "domain": f"s{i}.example",
             "measurement_start_time": None, "mechanism": "http.blockpage"} for i in range(len(tails))]
    raws = {f"u{i}": _raw([{"code": 200, "body": _BLOCKED_HEAD + tail}]) for i, tail in enumerate(tails)}
    return rows, raws


def test_a_false_positive_in_half_a_groups_pages_does_not_withhold_its_proposal() -> None:
    """A known false positive (Cloudflare's browser check) withholds a group's proposal only when it is in more than
    half of its pages: in one page of two the group is still proposed for; in two of three it is not."""
    check = "<p>Checking your browser before accessing</p>"
    rows, raws = _group_rows([check, "<p>nothing</p>"])
    (group,), read, more = unrecognised.groups(rows, raws)
    assert (read, more, group.measurements) == (2, 0, 2)
    assert group.false_positives == ()
    assert group.pattern == "<p>This site is blocked by order of the regulator</p>" and group.pattern_matches == 2
    rows, raws = _group_rows([check, check, "<p>nothing</p>"])
    (group,), _, _ = unrecognised.groups(rows, raws)
    assert group.false_positives == ("cp/x_cloudflare_check",) and group.pattern is None


def test_a_page_memo_keeps_exactly_its_size_newest_pages() -> None:
    """The memo is bounded: of three pages remembered by a memo of size 2, the oldest is forgotten, the two newest
    are known."""
    memo = unrecognised.PageMemo(size=2)
    rows = [_row(uid=f"u{i}") for i in range(3)]
    for row in rows:
        memo.remember(row, None)
    assert sorted(memo.known(rows)) == [1, 2]


def test_networks_named_lists_exactly_most_networks_without_an_ellipsis() -> None:
    """The ellipsis says networks were left out: with exactly ``most`` networks none was."""
    assert unrecognised.networks_named(["AS1", "AS2"], 2) == "AS1, AS2"
    assert unrecognised.networks_named(["AS1", "AS2", "AS3"], 2) == "AS1, AS2, …"
    assert unrecognised.networks_named(["AS1", "AS1", "AS0"], 1) == "AS1 and networks not known"


def test_a_row_the_memo_knows_has_no_page_is_not_read_again() -> None:
    """A row `known` to have no page (None) is not parsed again, even when its raw line is given: counted again,
    a memo would not save the parsing it exists to save, and a re-read page would be counted twice over."""
    rows, raws = _group_rows(["<p>nothing</p>"])
    assert unrecognised.groups(rows, raws)[1] == 1
    found, read, more = unrecognised.groups(rows, raws, known={0: None})
    assert (found, read, more) == ([], 0, 0)


def test_only_the_first_max_text_bytes_of_a_page_are_kept() -> None:
    """A page can be 16 MiB: only its first `MAX_TEXT` characters are kept in the `Seen` a memo and a group hold."""
    raw = _raw([{"code": 200, "body": "<title>Blocked</title>" + "x" * (unrecognised.MAX_TEXT + 5000)}])
    seen = unrecognised.page_of(raw, _row())
    assert seen is not None and len(seen.text) == unrecognised.MAX_TEXT


def test_a_boolean_status_code_is_no_status() -> None:
    """JSON's true is no HTTP status (Python's bool is an int): the page is kept without one."""
    raw = _raw([{"code": True, "body": "<title>Blocked</title>the page"}])
    seen = unrecognised.page_of(raw, _row())
    assert seen is not None and seen.status is None


def test_a_phrase_shorter_than_min_pattern_is_not_proposed() -> None:
    """Three words in fewer than `MIN_PATTERN` characters ("No go at") match far too many pages to be a pattern."""
    assert unrecognised.propose(["No go at\n", "No go at\n"]) is None
    assert unrecognised.propose(["No go at all here\n", "No go at all here\n"]) == "No go at all here"
