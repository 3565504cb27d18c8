#!/usr/bin/env python3
"""Build the shipped blockpage fingerprint database from the third-party sources.

Reads the Censored Planet signatures and the Citizen Lab filtering annotations
(read-only copies under ../shared/data/fingerprints, see its README), and the
blockpages Citizen Lab captured in the field (../shared/data/blockpages/citizenlab,
each file named for whose page it is) to find the fingerprints named for someone
that match someone else's real page too (``also_on``), and writes

* ``src/tamperscope/wire/data/fingerprints.json``: every fingerprint in one
  compact JSON file (one entry per line, so diffs stay readable), plus the list
  of dropped entries and why;
* ``src/tamperscope/wire/data/FINGERPRINTS-LICENSES.md``: both licences
  verbatim, with repository @ commit for each source.

The product never reads ../shared: it ships what this script writes. Censored
Planet patterns are PCRE; constructs Python's ``re`` lacks are translated where
an exact equivalent exists, otherwise the entry is dropped and counted. Citizen
Lab HTTP patterns are plain substrings (they contain unescaped ``?``, ``(``,
``[`` and ``|`` meant literally), kept verbatim.

Usage: python scripts/build_fingerprints.py [--source DIR] [--out DIR] [--check]
"""

from __future__ import annotations

import argparse
import ast
import csv
import json
import re
import sys
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from tamperscope.wire.fingerprints import (  # noqa: E402  (needs the src path above)
    CENSOREDPLANET,
    CITIZENLAB,
    DATA_FORMAT,
    FingerprintDB,
    owner_of,
)
from tamperscope.wire.patterns import guard_pattern  # noqa: E402

DEFAULT_SOURCE = ROOT.parent / "shared" / "data" / "fingerprints"
DEFAULT_OUT = ROOT / "src" / "tamperscope" / "wire" / "data"


@dataclass(frozen=True)
class Source:
    key: str  # "censoredplanet" | "citizenlab"
    title: str
    repository: str  # owner/name on GitHub
    commit: str  # as given in ../shared/data/README.md
    licence_name: str
    licence_file: str  # file name inside the source folder
    files: tuple[str, ...]


SOURCES = (
    Source(
        CENSOREDPLANET,
        "Censored Planet blockpage and false-positive signatures",
        "censoredplanet/assets-censoredplanet",
        "fcbafca6",
        "BSD-3-Clause",
        "LICENSE",
        ("blockpage_signatures.json", "false_positive_signatures.json"),
    ),
    Source(
        CITIZENLAB,
        "Citizen Lab filtering annotations (HTTP and DNS fingerprints)",
        "citizenlab/filtering-annotations",
        "fad90899",
        "BSD-style (3-clause)",
        "LICENSE.md",
        ("http.csv", "dns.csv"),
    ),
)

CP_LABELS = ("a_prod", "b_nat", "c_isp", "d_corp", "e_unk", "f_gen")


class Untranslatable(ValueError):
    """A PCRE construct with no exact Python ``re`` equivalent."""


# --------------------------------------------------------------------------- PCRE -> Python re

_HSPACE = r"\t \xa0\u1680\u180e\u2000-\u200a\u202f\u205f\u3000"
_VSPACE = r"\n\x0b\f\r\x85\u2028\u2029"
_POSIX = {
    "alnum": r"a-zA-Z0-9",
    "alpha": r"a-zA-Z",
    "ascii": r"\x00-\x7f",
    "blank": r" \t",
    "cntrl": r"\x00-\x1f\x7f",
    "digit": r"0-9",
    "graph": r"\x21-\x7e",
    "lower": r"a-z",
    "print": r"\x20-\x7e",
    "punct": r"!-/:-@\[-`{-~",
    "space": r"\t\n\x0b\f\r ",
    "upper": r"A-Z",
    "word": r"\w",
    "xdigit": r"0-9A-Fa-f",
}
_UNSUPPORTED_ESCAPES = {
    "K": r"\K (reset match start)",
    "G": r"\G (continue anchor)",
    "X": r"\X (extended grapheme)",
    "C": r"\C (single code unit)",
    "p": r"\p{..} (Unicode property)",
    "P": r"\P{..} (Unicode property)",
    "N": r"\N (non-newline / named char)",
    "g": r"\g (backreference/subroutine syntax)",
    "k": r"\k (named backreference)",
}
_UNSUPPORTED_GROUPS = ("(?R)", "(?|", "(?&", "(?P>", "(?+", "(*", "(?C")


def _hex_escape(code: int) -> str:
    return re.escape(chr(code))


def _escape(pattern: str, i: int, in_class: bool) -> tuple[str, int]:
    """Translate the escape at ``pattern[i] == '\\'``; returns (python text, next index)."""
    if i + 1 >= len(pattern):
        raise Untranslatable("trailing backslash")
    ch = pattern[i + 1]
    if ch == "Q":
        end = pattern.find(r"\E", i + 2)
        text = pattern[i + 2 :] if end < 0 else pattern[i + 2 : end]
        return (re.escape(text), len(pattern) if end < 0 else end + 2)
    if ch == "E":
        return "", i + 2
    if ch == "x" and pattern.startswith("{", i + 2):
        end = pattern.index("}", i + 3)
        return _hex_escape(int(pattern[i + 3 : end], 16)), end + 1
    if ch == "o" and pattern.startswith("{", i + 2):
        end = pattern.index("}", i + 3)
        return _hex_escape(int(pattern[i + 3 : end], 8)), end + 1
    if ch == "c" and i + 2 < len(pattern):
        return _hex_escape(ord(pattern[i + 2].upper()) ^ 0x40), i + 3
    if ch == "e":
        return r"\x1b", i + 2
    if ch in "hv":
        inner = _HSPACE if ch == "h" else _VSPACE
        return (inner if in_class else f"[{inner}]"), i + 2
    if ch in "HV":
        if in_class:
            raise Untranslatable(f"\\{ch} inside a character class")
        return f"[^{_HSPACE if ch == 'H' else _VSPACE}]", i + 2
    if ch == "R" and not in_class:
        return rf"(?:\r\n|[{_VSPACE}])", i + 2
    if ch == "z" and not in_class:
        return r"\Z", i + 2
    if ch == "Z" and not in_class:
        return r"(?=\n?\Z)", i + 2
    if ch in _UNSUPPORTED_ESCAPES:
        raise Untranslatable(_UNSUPPORTED_ESCAPES[ch])
    return pattern[i : i + 2], i + 2


def _char_class(pattern: str, i: int) -> tuple[str, int]:
    """Translate the class opening at ``pattern[i] == '['``; returns (text, next index)."""
    out = ["["]
    j = i + 1
    if pattern.startswith("^", j):
        out.append("^")
        j += 1
    if pattern.startswith("]", j):  # a leading ] is literal in PCRE
        out.append(r"\]")
        j += 1
    while j < len(pattern):
        ch = pattern[j]
        if ch == "]":
            out.append("]")
            return "".join(out), j + 1
        if ch == "\\":
            text, j = _escape(pattern, j, in_class=True)
            out.append(text)
            continue
        if ch == "[":
            m = re.match(r"\[:(\^?)([a-z]+):\]", pattern[j:])
            if m:
                if m.group(1) or m.group(2) not in _POSIX:
                    raise Untranslatable(f"POSIX class {m.group(0)}")
                out.append(_POSIX[m.group(2)])
                j += m.end()
                continue
            out.append(r"\[")  # literal in PCRE; Python warns about set operations
            j += 1
            continue
        if ch in "&~|-" and pattern.startswith(ch * 2, j):  # Python reserves doubled ones
            out.append("\\" + ch)
            j += 1
            continue
        out.append(ch)
        j += 1
    raise Untranslatable("unterminated character class")


def translate_pcre(pattern: str) -> str:
    """A Python ``re`` pattern with the same meaning as the PCRE ``pattern``.

    Raises Untranslatable for constructs with no exact equivalent (recursion,
    \\K, Unicode properties, branch reset, verbs, mid-pattern flags before an
    alternation...).
    """
    for construct in _UNSUPPORTED_GROUPS:
        if construct in pattern.replace("\\(", ""):
            raise Untranslatable(f"{construct}... group")
    out: list[str] = []
    closers: list[int] = [0]  # per open group: how many ")" a scoped flag change still needs
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            text, i = _escape(pattern, i, in_class=False)
            out.append(text)
        elif ch == "[":
            text, i = _char_class(pattern, i)
            out.append(text)
        elif ch == "(":
            m = re.match(r"\(\?(?:<([A-Za-z_]\w*)>|'([A-Za-z_]\w*)')", pattern[i:])
            flags = re.match(r"\(\?([imsx]*)(?:-([imsx]+))?\)", pattern[i:])
            if m:
                out.append(f"(?P<{m.group(1) or m.group(2)}>")
                closers.append(0)
                i += m.end()
            elif flags and (out or len(closers) > 1):
                # PCRE applies a mid-pattern (?i) to the rest of the enclosing group.
                rest_depth, k = 0, i + flags.end()
                while k < len(pattern):  # refuse if an alternation follows at this level
                    c = pattern[k]
                    if c == "\\":
                        k += 2
                        continue
                    rest_depth += {"(": 1, ")": -1}.get(c, 0)
                    if rest_depth < 0:
                        break
                    if c == "|" and rest_depth == 0:
                        raise Untranslatable("mid-pattern flag change before an alternation")
                    k += 1
                off = f"-{flags.group(2)}" if flags.group(2) else ""
                out.append(f"(?{flags.group(1)}{off}:")
                closers[-1] += 1
                i += flags.end()
            else:
                out.append("(")
                closers.append(0)
                i += 1
        elif ch == ")":
            if len(closers) == 1:
                raise Untranslatable("unbalanced parenthesis")
            out.append(")" * closers.pop() + ")")
            i += 1
        elif ch == "{" and re.match(r"\{,\d+\}", pattern[i:]):
            out.append(r"\{")  # "{,n}" is literal in PCRE, a quantifier in Python
            i += 1
        else:
            out.append(ch)
            i += 1
    out.append(")" * closers.pop())
    return "".join(out)


# --------------------------------------------------------------------------- sources


def _safe_id(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", lambda m: f"_u{ord(m.group()):04x}", name)


def _cp_label(name: str, kind: str) -> str:
    if kind == "false_positive":
        return "fp"
    for label in CP_LABELS:
        if name.startswith(label + "_"):
            return label
    return "e_unk"


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            rows.append(json.loads(line))
    return rows


def _list_field(value: str) -> list[str]:
    value = value.strip()
    if not value:
        return []
    parsed = ast.literal_eval(value)
    return [str(v).strip() for v in parsed if str(v).strip()]


def _confidence(value: str) -> int | None:
    value = value.strip()
    return int(value) if value else None


@dataclass
class Build:
    entries: list[dict[str, Any]]
    dropped: list[dict[str, Any]]
    translated: int = 0

    def add(self, entry: dict[str, Any]) -> None:
        self.entries.append(entry)

    def drop(self, entry: dict[str, Any], reason: str) -> None:
        self.dropped.append({k: entry[k] for k in ("id", "name", "source", "kind", "pattern")} | {"reason": reason})


def _unique_id(seen: Counter[str], base: str) -> str:
    seen[base] += 1
    return base if seen[base] == 1 else f"{base}~{seen[base]}"


def _censoredplanet(folder: Path, build: Build) -> None:
    seen: Counter[str] = Counter()
    for filename, kind in (
        ("blockpage_signatures.json", "blockpage"),
        ("false_positive_signatures.json", "false_positive"),
    ):
        for row in _read_jsonl(folder / filename):
            name, pcre = row["fingerprint"], row["pattern"]
            entry: dict[str, Any] = {
                "id": _unique_id(seen, "cp/" + _safe_id(name)),
                "name": name,
                "source": CENSOREDPLANET,
                "kind": kind,
                "syntax": "regex",
                "pattern": pcre,
                "flags": "s",  # PCRE over the whole response, DOTALL
                "where": "response",
                "label": _cp_label(name, kind),
            }
            try:
                python = translate_pcre(pcre)
            except (Untranslatable, ValueError) as exc:
                build.drop(entry, f"untranslatable PCRE: {exc}")
                continue
            if python != pcre:
                entry["pattern"], entry["pcre"] = python, pcre
                build.translated += 1
            if reason := _regex_problem(python):
                build.drop(entry, reason)
                continue
            build.add(entry)


def _regex_problem(pattern: str) -> str | None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            re.compile(pattern, re.DOTALL)
        except (re.error, Warning) as exc:
            return f"does not compile in Python re: {exc}"
    return guard_pattern(pattern, re.DOTALL).rejected  # the same guard the loader applies


def _citizenlab(folder: Path, build: Build) -> None:
    with (folder / "http.csv").open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            entry = {
                "id": "cl/" + _safe_id(row["name"]),
                "name": row["name"],
                "source": CITIZENLAB,
                "kind": "blockpage",
                "syntax": "substring",
                "pattern": row["pattern"],
                "flags": "",
                "where": row["location_found"].strip(),
                "label": row["scope"].strip(),
                "expected_countries": _list_field(row["expected_countries"]),
                "confidence": _confidence(row["confidence_no_fp"]),
                "title": row["common_name"].strip(),
            }
            if entry["where"] not in ("body", "header"):
                build.drop(entry, f"unknown location_found {entry['where']!r}")
            elif not entry["pattern"]:
                build.drop(entry, "empty pattern")
            else:
                build.add(entry)
    with (folder / "dns.csv").open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            entry = {
                "id": "cl/" + _safe_id(row["name"]),
                "name": row["name"],
                "source": CITIZENLAB,
                "kind": "dns",
                "syntax": "ip",
                "pattern": row["response"].strip(),
                "flags": "",
                "where": "dns",
                "label": row["scope"].strip(),
                "expected_countries": _list_field(row["expected_countries"]),
                "confidence": _confidence(row["confidence_no_fp"]),
            }
            if entry["pattern"]:
                build.add(entry)
            else:
                build.drop(entry, "empty DNS response")


# --------------------------------------------------------------------------- output


def _verify_provenance(source_root: Path) -> None:
    readme = source_root.parent / "README.md"
    if not readme.exists():
        return
    text = readme.read_text(encoding="utf-8")
    for src in SOURCES:
        if f"{src.repository} @ {src.commit}" not in text:
            raise SystemExit(f"build_fingerprints: {readme} no longer says {src.repository} @ {src.commit}")


def _pages_of(pages: Path) -> list[tuple[str, bytes]]:
    return [(p.stem, p.read_bytes()) for p in sorted(pages.glob("*.html"))]


def sightings(build: Build, pages: Path) -> None:
    """Give each fingerprint that names someone (an ISP, a product, an institution, a company) the real captured
    pages of someone else it matches (``also_on``): Citizen Lab's own captures, filed by whose they are. A
    product's fingerprint on an ISP's or a school's page is that product at work there, so a product's counts
    only other products' pages; a national system's, a generic or an unknown one's names no one to doubt; and a
    page that names the fingerprint's owner in its text (a word of four letters or more: IdOLA, on Lintasarta's
    page, is Lintasarta's own service) may be theirs."""
    db = FingerprintDB.from_entries(build.entries)
    by_id = {e["id"]: e for e in build.entries}
    for stem, body in _pages_of(pages):
        page = owner_of(stem)
        text = body.decode("utf-8", "replace").lower()
        for match in db.match_response(body):
            fp = db.get(match.id)
            mine = fp.owner
            if not mine.named or mine.same_as(page) or (mine.scope == "prod" and page.scope != "prod"):
                continue
            if any(len(w) >= 4 and w in text for w in mine.words):
                continue  # the page names the fingerprint's owner (IdOLA on Lintasarta's, its own service): QA
            also = by_id[fp.id].setdefault("also_on", [])
            if stem not in also:
                also.append(stem)
    for entry in build.entries:
        if "also_on" in entry:
            entry["also_on"] = sorted(entry["also_on"])


def render_json(build: Build) -> str:
    counts = Counter(f"{e['source']}/{e['kind']}" for e in build.entries)
    head = {
        "format": DATA_FORMAT,
        "generated_by": "scripts/build_fingerprints.py",
        "licenses": "FINGERPRINTS-LICENSES.md",
        "sources": [
            {
                "name": s.key,
                "repository": f"https://github.com/{s.repository}",
                "commit": s.commit,
                "files": list(s.files),
                "license": s.licence_name,
            }
            for s in SOURCES
        ],
        "counts": dict(sorted(counts.items())) | {"translated": build.translated, "dropped": len(build.dropped)},
        "dropped": build.dropped,
    }
    dump = json.dumps(head, ensure_ascii=False, separators=(",", ":"))
    lines = ",\n".join(json.dumps(e, ensure_ascii=False, separators=(",", ":")) for e in build.entries)
    return dump[:-1] + ',"entries":[\n' + lines + "\n]}\n"


def render_licences(source_root: Path) -> str:
    parts = [
        "# Licences of the bundled blockpage fingerprints\n",
        "`fingerprints.json` next to this file is derived from the two sources below by",
        "`scripts/build_fingerprints.py` (patterns kept verbatim, Censored Planet PCRE translated",
        "to Python `re` only where needed; see `docs/fingerprints.md`). Both licences require",
        "their copyright notice, conditions and disclaimer to travel with redistributions:",
        "they are reproduced verbatim below.\n",
    ]
    for src in SOURCES:
        licence = (source_root / src.key / src.licence_file).read_text(encoding="utf-8").strip("\n")
        parts += [
            f"## {src.title}\n",
            f"- Source: https://github.com/{src.repository} @ commit `{src.commit}`",
            f"- Files: {', '.join(f'`{f}`' for f in src.files)}",
            f"- Licence: {src.licence_name} (`{src.licence_file}` in that repository), verbatim:\n",
            "```text",
            licence,
            "```\n",
        ]
    return "\n".join(parts)


def build_all(source_root: Path) -> Build:
    build = Build(entries=[], dropped=[])
    _censoredplanet(source_root / CENSOREDPLANET, build)
    _citizenlab(source_root / CITIZENLAB, build)
    ids = Counter(e["id"] for e in build.entries)
    if dupes := [i for i, n in ids.items() if n > 1]:
        raise SystemExit(f"build_fingerprints: duplicate ids {dupes}")
    return build


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="fingerprints folder of the shared data")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="package data folder to write")
    parser.add_argument("--pages", type=Path, default=None,
                        help="Citizen Lab's captured blockpages (default: blockpages/citizenlab beside --source)")
    parser.add_argument("--check", action="store_true", help="fail if the committed files are out of date")
    args = parser.parse_args(argv)
    _verify_provenance(args.source)
    build = build_all(args.source)
    pages = args.pages or args.source.parent / "blockpages" / CITIZENLAB
    if not any(pages.glob("*.html")):
        raise SystemExit(f"build_fingerprints: no captured pages (*.html) in {pages}")
    sightings(build, pages)
    outputs = {
        "fingerprints.json": render_json(build),
        "FINGERPRINTS-LICENSES.md": render_licences(args.source),
    }
    counts = Counter(f"{e['source']}/{e['kind']}" for e in build.entries)
    for key, n in sorted(counts.items()):
        print(f"{key:32} {n:5}")
    print(f"{'translated from PCRE':32} {build.translated:5}")
    print(f"{'dropped':32} {len(build.dropped):5}")
    for d in build.dropped:
        print(f"  dropped {d['id']}: {d['reason']}")
    for e in build.entries:
        if e.get("also_on"):
            print(f"  {e['id']} names {owner_of(e['name']).in_words()}, matches pages of "
                  + ", ".join(dict.fromkeys(owner_of(p).in_words() for p in e["also_on"])))
    stale = []
    for filename, content in outputs.items():
        path = args.out / filename
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != content:
                stale.append(filename)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content, encoding="utf-8")
            print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    if stale:
        print(f"out of date: {', '.join(stale)} (run scripts/build_fingerprints.py)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
