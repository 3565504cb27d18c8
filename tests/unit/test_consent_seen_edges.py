"""Edges found by mutation testing: the consent gate (where it is kept, what counts as a yes, a record that cannot
be written or read) and `Seen` (keys whose digests share their first half, keys that are not strings)."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pytest

from tamperscope.probe import consent
from tamperscope.probe import seen as seen_module
from tamperscope.probe.seen import Seen
from tests.unit.test_consent_record import _Terminal, config  # noqa: F401 (a fixture)

# --------------------------------------------------------------------------- consent


def test_without_xdg_config_home_consent_is_kept_under_the_home_directory(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """An unset (or empty) $XDG_CONFIG_HOME means ~/.config, not a path relative to the working directory."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for value in (None, ""):
        if value is None:
            monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
        else:
            monkeypatch.setenv("XDG_CONFIG_HOME", value)
        assert consent.consent_path() == tmp_path / "home" / ".config" / "tamperscope" / "consent.json"


def test_no_home_directory_means_no_consent_on_record(monkeypatch: pytest.MonkeyPatch) -> None:
    """consent_path's RuntimeError (no home) is "not on record", so the probe asks rather than crashing."""
    def nowhere() -> Path:
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.setattr(consent, "consent_path", nowhere)
    assert consent.has_consent() is False


def test_a_record_bigger_than_max_record_is_not_consent(config: Path) -> None:  # noqa: F811
    """Only the first MAX_RECORD bytes are read: a huge file is not ours, and it is not parsed whole."""
    config.parent.mkdir(parents=True)
    config.write_text(json.dumps({"informed_consent": True, "padding": "x" * (consent.MAX_RECORD + 10)}))
    assert consent.has_consent() is False


@pytest.mark.parametrize("typed", ["YES\n", "  Yes \n", "Y\n"])
def test_yes_typed_in_any_case_is_consent(config: Path, typed: str) -> None:  # noqa: F811
    """The answer is compared case-insensitively: "YES" typed with caps lock on is a yes."""
    consent.ensure_consent(False, stdin=_Terminal(typed), stderr=io.StringIO())
    assert consent.has_consent() is True


@pytest.mark.parametrize("typed", ["no\n", "\n", "yes please\n", "yess\n", ""])
def test_anything_but_yes_at_the_prompt_is_refusal(config: Path, typed: str) -> None:  # noqa: F811
    """Only "yes" or "y" is consent; nothing is recorded otherwise."""
    with pytest.raises(consent.ConsentRequired):
        consent.ensure_consent(False, stdin=_Terminal(typed), stderr=io.StringIO())
    assert not config.exists()


def test_consent_that_cannot_be_recorded_is_good_for_this_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An unwritable config directory (here: a file where the directory should be) costs one line, not the run."""
    blocker = tmp_path / "config"
    blocker.write_text("not a directory")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(blocker))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    err = io.StringIO()
    consent.ensure_consent(False, stdin=_Terminal("yes\n"), stderr=err)
    said = err.getvalue().split("Type 'yes' to accept and continue: ", 1)[1]
    assert "consent given, but it could not be recorded" in said and said.count("\n") == 1
    assert consent.has_consent() is False


def test_a_prompt_that_is_not_a_terminal_is_never_read(config: Path) -> None:  # noqa: F811
    """Piped input (a script) cannot give informed consent: it is refused without reading it."""
    piped = io.StringIO("yes\n")
    with pytest.raises(consent.ConsentRequired, match="interactively"):
        consent.ensure_consent(False, stdin=piped, stderr=io.StringIO())
    assert piped.tell() == 0 and not config.exists()


# --------------------------------------------------------------------------- Seen


def _colliding_digest(key: str) -> bytes:
    """Every key's first 64 bits the same: the lookups must fall back to the second halves."""
    return b"\x07" * 8 + hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest()


def test_keys_sharing_the_first_half_of_their_digest_are_told_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    """Digests equal in their first 64 bits are sorted and looked up by the second 64: holds and once stay exact."""
    monkeypatch.setattr(seen_module, "_digest", _colliding_digest)
    added = ["a", "b", "c", "b", "d", "e", "a", "f"]
    s = Seen(added)
    asked = ["a", "b", "c", "d", "e", "f", "g", "h", "f", "a"]
    assert len(s) == 6
    assert s.holds(asked) == bytes(k in added for k in asked)
    assert s.once(asked) == bytes(added.count(k) == 1 for k in asked)
    assert s.missing(asked) == ["g", "h"]


def test_a_lone_surrogate_is_not_confused_with_its_replacement() -> None:
    """A lone surrogate is hashed as it is, not replaced by "?": "\\ud800x" held must not make "?x" held."""
    s = Seen(["\ud800x"])
    assert "\ud800x" in s and "?x" not in s and "\ufffdx" not in s


def test_asking_about_something_that_is_not_a_string_is_a_plain_no() -> None:
    """``in`` with a non-string (a number from a JSON line) answers False, never raises."""
    s = Seen(["5"])
    assert 5 not in s and None not in s and "5" in s


def test_an_empty_set_answers_zero_for_every_key_asked() -> None:
    """An empty set still answers one byte per key (a generator too)."""
    s = Seen()
    assert s.holds(k for k in ["a", "b", "c"]) == b"\x00\x00\x00"
    assert s.once(["a"]) == b"\x00" and not s and len(s) == 0


def test_adding_after_asking_is_an_error() -> None:
    """A set asked is frozen: a key added after would be silently lost."""
    s = Seen(["a"])
    assert "a" in s
    with pytest.raises(RuntimeError, match="frozen"):
        s.add("b")


def test_missing_keeps_none_and_repeats_in_order() -> None:
    """None (a nettest without input) is never held; repeats of a missing key are all kept, in order."""
    s = Seen(["a", "b"])
    assert s.missing(["x", None, "a", "x", None, "b"]) == ["x", None, "x", None]
