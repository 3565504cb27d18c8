"""Measurement content that would pass for something else on a page: characters no one sees (zero-width spaces
and joiners, a soft hyphen, tag characters, a byte order mark) are shown as the escapes that name them where no
script needs them, so "exa<U+200B>mple.com" does not read as example.com; a host name holding a joiner that IDNA
2003 maps away is not shown beside the name it imitates; and a value of a megabyte is cut on a page, with how
much was cut said, while links and data keep it whole."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tamperscope.analysis.report import MAX_SHOWN, clipped, host_shown, plot_text
from tamperscope.analysis.sheets import cell, shown
from tamperscope.collector import samples
from tamperscope.collector.config import Settings
from tamperscope.collector.schema import Limits
from tamperscope.collector.testing import SyncClient, running_app
from tamperscope.explorer import feeds
from tamperscope.explorer.display import Whole, finalize, isolated


@pytest.mark.parametrize("text, want", [
    ("exa\u200bmple.com", "exa\\u200bmple.com"), ("paypa\u200dl.com", "paypa\\u200dl.com"),
    ("goo\u200cgle", "goo\\u200cgle"), ("paypal\u00ad", "paypal\\u00ad"), ("\u2060x", "\\u2060x"),
    ("\ufeffBlocked", "\\ufeffBlocked"), ("a\u2028b", "a\\u2028b"), ("x\U000e0041y", "x\\U000e0041y"),
    ("\u3164", "\\u3164"), ("a\ufe0fb", "a\\ufe0fb"), ("ok\u2063", "ok\\u2063"),
    ("abc\u202edef", "abc\\u202edef"), ("nul\x00", "nul\ufffd"),
])
def test_invisible_characters_are_named(text: str, want: str) -> None:
    assert shown(text) == want
    assert cell(text) == want  # a spreadsheet's cell shows it alike


@pytest.mark.parametrize("text", [
    "می\u200cشود",  # Persian writes the zero-width non-joiner inside words
    "ဗမာ\u200bစာ",  # Burmese a zero-width space between words
    "क्\u200dष", "👨\u200d👩\u200d👧", "I ❤\ufe0f you", "Привет, мир", "plain ASCII",
])
def test_scripts_that_need_them_keep_them(text: str) -> None:
    assert shown(text) == text


@pytest.mark.parametrize("host, imitated", [("paypa\u200dl.com", "paypal.com"), ("goo\u200cgle.com", "google.com"),
                                            ("paypa\u00adl.com", "paypal.com"), ("exa\u200bmple.com", "example.com")])
def test_a_host_is_never_shown_beside_the_name_it_imitates(host: str, imitated: str) -> None:
    text = host_shown(host)
    assert f"({imitated})" not in text and "(xn--" in text, text
    assert "\\u" in text.split(" (")[0]  # the invisible character is named


def test_a_host_idna_reads_back_keeps_its_usual_ascii_form() -> None:
    assert host_shown("Яндекс.рф") == "Яндекс.рф (xn--d1acpjx3f.xn--p1ai)"
    assert host_shown("bücher.de") == "bücher.de (xn--bcher-kva.de)"


def test_clipped_says_how_much_was_cut() -> None:
    assert clipped("x" * MAX_SHOWN) == "x" * MAX_SHOWN
    assert clipped("x" * (MAX_SHOWN + 1234)) == "x" * MAX_SHOWN + "… (1,234 more characters)"
    assert len(plot_text("<" * 100_000)) < 5_000


def test_a_page_cuts_long_text_but_not_links_form_values_or_whole_text() -> None:
    long = "N" * 100_000
    page = (f"<h1>{finalize(long)}</h1><a href=\"/search?q={finalize(long)}\">x</a>"
            f"<input value=\"{finalize(long)}\"><title>{finalize(long)}</title>"
            f"<pre>{finalize(Whole(long))}</pre><script type=\"application/json\">{finalize(long)}</script>")
    out = isolated(page)
    cut = "N" * MAX_SHOWN + f"… ({100_000 - MAX_SHOWN:,} more characters)"
    assert f"<h1>{cut}</h1>" in out and f"<title>{cut}</title>" in out
    assert f"href=\"/search?q={long}\"" in out and f"value=\"{long}\"" in out
    assert f"<pre>{long}</pre>" in out and f">{long}</script>" in out
    assert "\ufdd2" not in out and "\ufdd3" not in out


def test_a_long_right_to_left_value_is_cut_inside_its_isolation() -> None:
    out = isolated(f"<p>{finalize('ש' * 5000)}</p>")
    assert out == f"<p><bdi>{'ש' * MAX_SHOWN}… ({5000 - MAX_SHOWN:,} more characters)</bdi></p>"


def test_a_feed_cuts_long_titles_and_summaries() -> None:
    entry = feeds.Entry(id="tag:x", title="T" * 100_000, updated="2026-01-01T00:00:00Z", link="/m/x",
                        summary="S" * 100_000)
    doc = feeds.atom(feeds.Feed(id="tag:f", title="f", self_url="/f.atom", page_url="/", entries=[entry])).decode()
    assert len(doc) < 20_000 and "more characters)" in doc


# --------------------------------------------------------------------------- the explorer, end to end

NAME = "Hostile Net " + "W" * 1_000_000


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SyncClient, str, str]]:
    db = tmp_path_factory.mktemp("clip") / "c.duckdb"
    # the collector refuses such a name (Limits.envelope); `analyze` stores what a file holds, as OONI's data
    # comes, and `serve` shows that store: the limit is raised here to put the name where analyze would
    limits = Limits(envelope=2 << 20)
    with running_app(Settings(db_path=db, announce=False, submit_rate=0, read_rate=0, limits=limits)) as c:
        uid = c.submit(samples.measurement("http.blockpage", network_name=NAME,
                                           url="https://exa\u200bmple.com/"))
        long_input = "https://www.example.org/" + "q" * 6000
        other = c.submit(samples.measurement("http.blockpage", url=long_input))
        yield c, uid, other


def test_a_megabyte_network_name_makes_no_megabyte_page(client: tuple[SyncClient, str, str]) -> None:
    c, uid, _ = client
    for path in (f"/m/{uid}", "/", "/country/IT", "/network/AS30722", "/search"):
        r = c.get(path)
        assert r.status_code == 200, path
        assert len(r.text) < 300_000, (path, len(r.text))  # 1.0-2.0 MB before (/m/ holds 256 KiB of raw JSON)
        assert path == "/" or "more characters)" in r.text, path
    assert c.get(f"/m/{uid}.json").json()["envelope"]["probe_network_name"] == NAME  # the data keeps it whole


def test_a_zero_width_space_is_named_on_the_page(client: tuple[SyncClient, str, str]) -> None:
    c, uid, _ = client
    page = c.get(f"/m/{uid}").text
    assert "exa\\u200bmple.com" in page and "exa\u200bmple.com" not in page


def test_a_long_input_is_whole_in_its_links(client: tuple[SyncClient, str, str]) -> None:
    c, _, other = client
    page = c.get(f"/m/{other}").text
    assert "q" * 6000 in page  # in its links, or shown whole: under the cut


def test_the_html_reports_tables_cut_long_values() -> None:
    from tamperscope.analysis.report import _html_table

    out = _html_table([{"network": "N" * 1_000_000, "count": 3}], [("network", "network"), ("count", "count")])
    assert len(out) < 10_000 and f"… ({1_000_000 - MAX_SHOWN:,} more characters)" in out
