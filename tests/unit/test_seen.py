"""`probe.seen.Seen`: the keys a resume skips, in 16 bytes each, answering as a Python set (a multiset) would."""

from __future__ import annotations

import random
import subprocess
import sys
import tracemalloc
from collections import Counter
from pathlib import Path

import pytest

from tamperscope.probe import seen as seen_module
from tamperscope.probe.seen import Seen


def test_it_answers_as_a_set_would_on_a_seeded_walk(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(seen_module, "_CHUNK", 97)  # many chunks, one of them short
    rng = random.Random(20261206)
    pool = [f"198.18.{rng.randrange(4)}.{rng.randrange(9)} d{rng.randrange(5000)}.example" for _ in range(3000)]
    pool += ["", " ", "ü.example", "xn--bcher-kva.de", "\ud800 lone surrogate", "a\x00b"]
    added = [rng.choice(pool) for _ in range(4000)]
    counts = Counter(added)
    s = Seen(added)
    asked = [rng.choice(pool) for _ in range(2500)] + [f"never {i}" for i in range(100)]
    assert len(s) == len(counts)
    assert s.holds(asked) == bytes(k in counts for k in asked)
    assert s.once(asked) == bytes(counts[k] == 1 for k in asked)
    assert s.missing(asked) == [k for k in asked if k not in counts]
    assert all(k in s for k in counts) and not [k for k in asked if k not in counts and k in s]


def test_an_empty_set_holds_nothing_and_asks_no_numpy() -> None:
    s = Seen()
    assert len(s) == 0 and not s and "x" not in s
    assert s.holds(["a", "b"]) == b"\0\0" and s.once(["a"]) == b"\0" and s.missing(["a", "a"]) == ["a", "a"]


def test_a_first_run_never_imports_numpy(tmp_path: Path) -> None:
    """numpy is for an output that holds something: a first run (no output yet, or an empty one) asks without it."""
    (tmp_path / "empty.jsonl").write_bytes(b"")
    code = ("import sys\nfrom pathlib import Path\nfrom tamperscope.probe import engine, remote\n"
            "for name in sys.argv[1:]:\n"
            "    r = engine.scan_output(Path(name), 'remote_dns', key=remote._key, recheck=True)\n"
            "    assert r.seen.missing(['a', None]) == ['a', None] and not r.seen and not r.lone\n"
            "    assert remote._held(r.seen, ['198.18.2.7'], ['x.org']) == {}\n"
            "print('numpy' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code, str(tmp_path / "none.jsonl"), str(tmp_path / "empty.jsonl")],
                         capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "False"


def test_none_is_never_held_and_keeps_its_place() -> None:
    s = Seen(["a", "c"])
    assert s.missing([None, "a", "b", None, "c"]) == [None, "b", None]


def test_repeats_are_counted_once_in_its_length_and_make_a_key_not_once() -> None:
    s = Seen(["a", "b", "a", "a", "c"])
    assert len(s) == 3
    assert s.once(["a", "b", "c", "d"]) == b"\0\1\1\0"
    assert s.holds(["a", "b", "c", "d"]) == b"\1\1\1\0"


def test_an_output_holding_everything_twice_keeps_each_key_once() -> None:
    """Two runs' outputs joined (``cat a b``): every key twice. Each is kept once and none is "once"."""
    keys = [f"http://site{i}.example/" for i in range(5000)]
    s = Seen(keys + keys[::-1])
    assert len(s) == 5000 and len(s._hi) == 5000  # kept once each
    assert s.holds(keys) == b"\1" * 5000 and s.once(keys) == b"\0" * 5000 and s.missing(keys) == []


def test_keys_sharing_the_first_half_of_their_digest_are_told_apart_by_the_second(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A 64-bit collision (one pair in 2^64) must not make one key stand for another: the second half decides."""
    def digest(key: str) -> bytes:  # every key the same first 8 bytes; the second from the key
        return b"\x07" * 8 + key.encode().ljust(8, b"\0")[:8]

    monkeypatch.setattr(seen_module, "_digest", digest)
    s = Seen(["k1", "k2", "k2", "k5"])
    assert len(s) == 3
    assert s.holds(["k1", "k2", "k3", "k5", "k9"]) == b"\1\1\0\1\0"
    assert s.once(["k1", "k2", "k5"]) == b"\1\0\1"
    assert s.missing(["k3", "k2", "k4"]) == ["k3", "k4"]


def test_adding_after_it_was_asked_is_refused() -> None:
    s = Seen(["a"])
    assert "a" in s
    with pytest.raises(RuntimeError, match="frozen"):
        s.add("b")


def test_it_keeps_16_bytes_a_key_where_a_set_of_the_keys_took_over_100() -> None:
    """The point of it: at TMC's 15.5M keys a set of strings took 1.7 GiB. Measured on 200,000 keys made as a
    scan makes them (new strings, not a list's), with numpy's buffers counted by tracemalloc."""
    import numpy  # noqa: F401  # imported before measuring: its import is not the set's cost

    n = 200_000
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        as_set = {f"198.18.2.7 domain-{i}.example.com" for i in range(n)}
        set_bytes = tracemalloc.get_traced_memory()[0] - base
        del as_set
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        s = Seen(f"198.18.2.7 domain-{i}.example.com" for i in range(n)).freeze()
        kept, peak = (b - base for b in tracemalloc.get_traced_memory())
    finally:
        tracemalloc.stop()
    assert len(s) == n
    assert set_bytes / n > 100  # what it replaces
    assert kept / n < 17, kept / n  # two 8-byte halves a key
    assert peak / n < 48, peak / n  # the buffer, the sort's order and the sorted halves at once
