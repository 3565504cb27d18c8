"""What a regular expression requires and what it risks: the analysis behind the fingerprint matcher.

What lives here: a walk over Python's parsed form of a pattern (``re._parser``) that
finds its *required literals* (strings any match contains: the matcher's index),
rejects shapes that backtrack exponentially (nested quantifiers, ambiguous
alternation under a quantifier, adjacent overlapping quantifiers) or
polynomially, and turns a DOTALL ``A.*B.*C`` chain into a linear sequence of
searches. `wire.fingerprints` builds its database with it; the lab refuses a
profile's risky regex with `backtracking_risk` (the censor runs it on names from
hostile traffic). Pure functions, no I/O.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from re import _constants as _sre  # type: ignore[attr-defined]  # private (no stubs), stable on 3.11+
from re import _parser as _sre_parse  # type: ignore[attr-defined]  # likewise
from typing import Any, TypeAlias

MIN_LITERAL = 4  # shortest literal (and anchor) worth indexing
MAX_LITERAL = 48  # literals are cut to this many characters
MAX_ALTERNATIVES = 8  # most alternatives in one required-literal set

_FINAL_SIGMA = str.maketrans({"ς": "σ"})


def fold(text: str) -> str:
    """Lowercase without changing length, so offsets in the folded text are offsets in ``text``."""
    if "\u0130" in text:  # the one code point whose lower() is two characters
        text = text.replace("\u0130", "i")
    folded = text.lower()
    return folded.translate(_FINAL_SIGMA) if "ς" in folded else folded  # lower() knows word ends


_Items: TypeAlias = Any  # re._parser.SubPattern, or a list of (op, av) pairs
_UNBOUNDED = 64  # a repeat allowing more iterations than this counts as unbounded
_REPEATS = (_sre.MAX_REPEAT, _sre.MIN_REPEAT, _sre.POSSESSIVE_REPEAT)
_BACKTRACKING_REPEATS = (_sre.MAX_REPEAT, _sre.MIN_REPEAT)
_ZERO_WIDTH = (_sre.AT, _sre.ASSERT, _sre.ASSERT_NOT)


def parse(pattern: str, flags: int) -> _Items:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return _sre_parse.parse(pattern, flags)


def _product(left: set[str], right: set[str]) -> set[str] | None:
    return None if len(left) * len(right) > MAX_ALTERNATIVES else {a + b for a in left for b in right}


def _exact(op: Any, av: Any) -> set[str] | None:
    """The few strings one parsed item can match, or None when unknown or too many."""
    if op is _sre.LITERAL:
        return {chr(av)}
    if op in _ZERO_WIDTH:
        return {""}
    if op is _sre.SUBPATTERN:
        return _exact_seq(av[3])
    if op is _sre.IN and len(av) <= MAX_ALTERNATIVES and all(o is _sre.LITERAL for o, _ in av):
        return {chr(a) for _, a in av}
    if op is _sre.BRANCH:
        out: set[str] = set()
        for branch in av[1]:
            if (sub := _exact_seq(branch)) is None:
                return None
            out |= sub
        return out if len(out) <= MAX_ALTERNATIVES else None
    if op in _REPEATS and av[0] == av[1] <= MAX_LITERAL:
        return _exact_seq(list(av[2]) * av[0])
    return None


def _exact_seq(items: _Items) -> set[str] | None:
    acc: set[str] | None = {""}
    for op, av in items:
        unit = _exact(op, av)
        if unit is None or acc is None:
            return None
        acc = _product(acc, unit)
    return acc


def _candidates(items: _Items) -> list[frozenset[str]]:
    """Sets of strings such that every match of ``items`` contains a member of each set."""
    found: list[frozenset[str]] = []
    run: set[str] = {""}
    for op, av in [*items, (None, None)]:  # the sentinel flushes the last run
        unit = _exact(op, av) if op is not None else None
        if unit is not None and (joined := _product(run, unit)) is not None:
            run = joined
            continue
        if "" not in run:
            found.append(frozenset(run))
        run = unit if unit is not None else {""}
        if unit is None and op is not None:
            found.extend(_candidates_of(op, av))
    return found


def _candidates_of(op: Any, av: Any) -> list[frozenset[str]]:
    if op is _sre.SUBPATTERN:
        return _candidates(av[3])
    if op is _sre.ATOMIC_GROUP:
        return _candidates(av)
    if op in _REPEATS and av[0] >= 1:
        unit = _exact_seq(av[2])
        return [frozenset(unit)] if unit and "" not in unit else _candidates(av[2])
    if op is _sre.BRANCH:
        union: set[str] = set()
        for branch in av[1]:
            if (best := _best(_candidates(branch))) is None:
                return []
            union |= best
        return [frozenset(union)] if len(union) <= MAX_ALTERNATIVES else []
    return []


def _best(sets: Iterable[frozenset[str]]) -> frozenset[str] | None:
    """The most selective set: longest shortest member, then fewest members."""
    scored = [(min(map(len, s)), -len(s), sorted(s)) for s in sets if s]
    return frozenset(max(scored)[2]) if scored else None


def literals_of(parsed: _Items) -> tuple[str, ...]:
    best = _best(_candidates(parsed))
    if best is None or min(map(len, best)) < MIN_LITERAL:
        return ()
    return tuple(sorted({fold(s)[:MAX_LITERAL] for s in best}))


def required_literals(pattern: str, flags: int = 0) -> tuple[str, ...]:
    """Lowercased literals one of which every match of ``pattern`` contains; () when none is usable."""
    try:
        return literals_of(parse(pattern, flags))
    except (re.error, RecursionError, Warning):
        return ()


def _single_char(op: Any, av: Any) -> frozenset[int] | None:
    """Code points a one-character item matches; None when unknown or any."""
    if op is _sre.LITERAL:
        return frozenset({av})
    if op is _sre.IN and all(o is _sre.LITERAL for o, _ in av):
        return frozenset(a for _, a in av)
    return None


def _first_chars(items: _Items) -> frozenset[int] | None:
    solid = [(op, av) for op, av in items if op not in _ZERO_WIDTH]
    if not solid:
        return None
    op, av = solid[0]
    return _first_chars(av[3]) if op is _sre.SUBPATTERN else _single_char(op, av)


def _overlap(a: frozenset[int] | None, b: frozenset[int] | None) -> bool:
    return a is None or b is None or bool(a & b)


def _top_branches(items: _Items) -> list[_Items]:
    out: list[_Items] = []
    for op, av in items:
        if op is _sre.BRANCH:
            out.extend(av[1])
        elif op is _sre.SUBPATTERN:
            out.extend(_top_branches(av[3]))
    return out


_SINGLE = (_sre.ANY, _sre.IN, _sre.LITERAL, _sre.NOT_LITERAL, _sre.CATEGORY)
_NONE = frozenset({-1})  # "no unbounded one-char repeat just before"


def _risk(items: _Items, loop: str | None) -> str | None:
    """Exponential-backtracking shape in ``items``; ``loop``: None, "bounded" or "unbounded" enclosing repeat."""
    previous: frozenset[int] | None = _NONE
    for op, av in items:
        if op in _BACKTRACKING_REPEATS:
            lo, hi, body = av
            unbounded = hi > _UNBOUNDED
            if lo != hi and hi > 1 and loop is not None and (unbounded or loop == "unbounded"):
                return "nested quantifiers, like (a+)+"
            heads = [_first_chars(b) for b in _top_branches(body)] if unbounded else []
            if any(_overlap(x, y) for i, x in enumerate(heads) for y in heads[i + 1 :]):
                return "overlapping alternatives under a quantifier, like (a|ab)*"
            inner = loop if hi <= 1 else ("unbounded" if unbounded or loop == "unbounded" else "bounded")
            if reason := _risk(body, inner):
                return reason
            if hi > _SPLITS and _splits(body):
                return "a repeated group whose iterations can divide the same text many ways, like (a?){30} or (aa?)*"
            if unbounded and len(body) == 1 and body[0][0] in _SINGLE:
                chars = _single_char(*body[0])
                if previous is not _NONE and _overlap(previous, chars):
                    return "adjacent overlapping unbounded quantifiers, like .*.*"
                previous = chars
                continue
        elif op is _sre.SUBPATTERN and (reason := _risk(av[3], loop)):
            return reason
        elif op is _sre.BRANCH and (reason := next(filter(None, (_risk(b, loop) for b in av[1])), None)):
            return reason
        elif op in (_sre.ASSERT, _sre.ASSERT_NOT) and (reason := _risk(av[1], loop)):
            return reason
        elif op is _sre.POSSESSIVE_REPEAT and (reason := _risk(av[2], None)):
            return reason  # never backtracked into as a whole, but its body may be risky itself
        elif op is _sre.ATOMIC_GROUP and (reason := _risk(av, None)):
            return reason
        if op not in _ZERO_WIDTH:
            previous = _NONE
    return None


_SPLITS = 10  # iterations of a group below which its ways of dividing a text (2**n at most) stay few


def _last_solid(items: _Items) -> tuple[Any, Any] | None:
    solid = [(op, av) for op, av in items if op not in _ZERO_WIDTH]
    if not solid:
        return None
    op, av = solid[-1]
    return _last_solid(av[3]) if op is _sre.SUBPATTERN else (op, av)


def _splits(body: _Items) -> bool:
    """Whether one iteration of ``body`` can end early and leave its last characters to the next one:
    ``(a?){30}`` and ``(aa?){30}`` divide a run of a's in exponentially many ways, which the engine tries
    one by one when the rest fails; ``(ab?){30}`` cannot (each iteration starts at an ``a``)."""
    last = _last_solid(body)
    if last is None or last[0] not in _BACKTRACKING_REPEATS or last[1][0] == last[1][1]:
        return False
    return _overlap(_first_chars(last[1][2]), _first_chars(body))


def backtracking_risk(pattern: str, flags: int = 0) -> str | None:
    """Why ``pattern`` may backtrack exponentially, or None."""
    try:
        return _risk(parse(pattern, flags), loop=None)
    except RecursionError:
        return "too deeply nested"
    except (re.error, Warning, OverflowError) as exc:  # OverflowError: a{4294967296}
        return f"does not compile: {exc}"


def polynomial_risk(pattern: str, flags: int = 0, most: int = 2) -> str | None:
    """Why ``pattern`` may backtrack polynomially, or None: more than ``most`` unbounded quantifiers. A search
    with k of them tries about n**(k+1) ways on a name of n a's: ``.*a.*a.*c`` 0.3 s at n=253, and
    ``.*a.*a.*a.*a.*c`` 3.5 s at n=100, 3 minutes at n=200. What does not compile is `backtracking_risk`'s."""
    try:
        count = _unbounded_repeats(parse(pattern, flags))
    except (re.error, Warning, OverflowError, RecursionError):
        return None
    return f"{count} unbounded quantifiers, like .*a.*a.*c" if count > most else None


def _unbounded_repeats(items: _Items) -> int:
    count = 0
    for op, av in items:
        if op in _BACKTRACKING_REPEATS:
            count += (av[1] > _UNBOUNDED) + _unbounded_repeats(av[2])
        elif op is _sre.SUBPATTERN:
            count += _unbounded_repeats(av[3])
        elif op is _sre.BRANCH:
            count += max(_unbounded_repeats(b) for b in av[1])
    return count


_CATEGORY_TEXT = {
    _sre.CATEGORY_DIGIT: r"\d",
    _sre.CATEGORY_NOT_DIGIT: r"\D",
    _sre.CATEGORY_SPACE: r"\s",
    _sre.CATEGORY_NOT_SPACE: r"\S",
    _sre.CATEGORY_WORD: r"\w",
    _sre.CATEGORY_NOT_WORD: r"\W",
}


def _fixed_text(op: Any, av: Any) -> str | None:
    """Regex text of a one-position item (literal, ., class, X{n}); None for anything else."""
    if op is _sre.LITERAL:
        return re.escape(chr(av))
    if op is _sre.NOT_LITERAL:
        return f"[^{re.escape(chr(av))}]"
    if op is _sre.ANY:
        return "."
    if op is _sre.IN:
        parts = []
        for o, a in av:
            if o is _sre.NEGATE:
                parts.append("^")
            elif o is _sre.LITERAL:
                parts.append(re.escape(chr(a)))
            elif o is _sre.RANGE:
                parts.append(f"{re.escape(chr(a[0]))}-{re.escape(chr(a[1]))}")
            elif o is _sre.CATEGORY and a in _CATEGORY_TEXT:
                parts.append(_CATEGORY_TEXT[a])
            else:
                return None
        return "[" + "".join(parts) + "]"
    if op in _REPEATS and av[0] == av[1] and len(av[2]) == 1 and (unit := _fixed_text(*av[2][0])):
        return f"(?:{unit}){{{av[0]}}}"
    return None


def _gapped_chain(items: _Items) -> tuple[str, ...] | None:
    """``A.*B.*C`` (fixed-width segments joined by unbounded dot gaps) as ("A", "B", "C")."""
    if len(items) == 1 and items[0][0] is _sre.SUBPATTERN:
        return _gapped_chain(items[0][1][3])
    segments = [""]
    for op, av in items:
        if op in _BACKTRACKING_REPEATS and av[0] == 0 and av[1] > _UNBOUNDED and list(av[2]) == [(_sre.ANY, None)]:
            segments.append("")
        elif (text := _fixed_text(op, av)) is not None:
            segments[-1] += text
        else:
            return None
    chain = tuple(s for s in segments if s)  # a leading or trailing .* matches the empty string
    return chain if len(segments) > 1 and chain else None


def _cased(ch: str) -> bool:
    """Letters of scripts that space their words (Latin, Cyrillic, Greek...), and digits."""
    return ch.isdigit() or ch.lower() != ch.upper()


def word_edges(items: _Items) -> tuple[bool, bool]:
    """Whether a regex starts / ends with a cased letter (so a word edge is meaningful there)."""
    if len(items) == 1 and items[0][0] is _sre.SUBPATTERN:
        return word_edges(items[0][1][3])
    solid = [(op, av) for op, av in items if op not in _ZERO_WIDTH]
    if not solid:
        return False, False
    (op0, av0), (op1, av1) = solid[0], solid[-1]
    return (op0 is _sre.LITERAL and _cased(chr(av0)), op1 is _sre.LITERAL and _cased(chr(av1)))


@dataclass(frozen=True)
class Guarded:
    """What the load-time guard decided for one regex."""

    chain: tuple[str, ...]  # for A.*B.*C: the segments, searched one after another; else ()
    rejected: str | None  # why the regex was refused, or None


def guard_pattern(pattern: str, flags: int = 0) -> Guarded:
    """Reject exponential shapes; turn ``A.*B.*C`` into a linear chain of searches.

    Rejected: nested quantifiers, ambiguous alternation under a quantifier,
    adjacent overlapping quantifiers, and two or more unbounded quantifiers
    (polynomial) unless the regex is a DOTALL gapped chain of fixed-width
    segments. Such a chain runs as: first A, then first B after it, then first
    C after that. A fixed-width segment's earliest occurrence also ends
    earliest and leaves the most room for the rest, so a match exists iff the
    sequence finds one; only the reported end differs (first C, not last).
    """
    try:
        parsed = parse(pattern, flags)
    except RecursionError:
        return Guarded((), "too deeply nested")
    except (re.error, Warning) as exc:
        return Guarded((), f"does not compile: {exc}")
    return guard(parsed, flags)


def guard(parsed: _Items, flags: int) -> Guarded:
    if reason := _risk(parsed, loop=None):
        return Guarded((), f"catastrophic backtracking risk: {reason}")
    unbounded = _unbounded_repeats(parsed)
    if unbounded and flags & re.DOTALL and (chain := _gapped_chain(parsed)):
        return Guarded(chain, None)
    if unbounded >= 2:
        return Guarded((), "polynomial backtracking risk: two or more unbounded quantifiers")
    return Guarded((), None)


__all__ = ["MAX_ALTERNATIVES", "MAX_LITERAL", "MIN_LITERAL", "Guarded", "backtracking_risk", "fold",
           "guard", "guard_pattern", "literals_of", "parse", "polynomial_risk", "required_literals", "word_edges"]
