"""The files of Censored Planet's published scans that hold no measurement, which analyze does not read.

A scan (``CP_Satellite-<date>/``, ``CP_Quack-<service>-<date>/``, or the tarball of either) holds its
measurements (Hyperquack's and Satellite v2's ``results.json``, Satellite v1's ``interference.json`` and
``answers_err.json``), the pages Satellite fetched (``blockpages.json``, joined to the measurements), and
the steps that led to them (docs/satellitev1.rst and satellitev2.rst of censoredplanet/censoredplanet):
the resolvers found and tagged, the answers before they were compared with the control resolvers' (the
same queries again), the query packet, logs and statistics. Read line by line, those are many times
the measurements and every line of them is "bad input"; inside a scan's directory or tarball they are
not read, as a README beside OONI's files is not, but counted in analyze's summary. Named on the command
line, a file is read whatever its name. A scan's ``tagged_resolvers.json`` is read with its Satellite v1
lines, for their resolvers' countries (`censoredplanet.with_country`). Lines no control resolver answered (v1's
``interference_err.json``) and a control resolver's own (``answers_control.json``) are still read and
counted as rejected with their reason: they say how much of the scan could not be judged.
"""

from __future__ import annotations

OTHER_FILES = frozenset((
    # Satellite v1 (raw/): answers before the comparison, the answers' addresses and tags, the resolvers' discovery
    "answers.json", "answers_ip.json", "answers_raw.json", "tagged_answers.json",
    # Satellite v1 and v2: the resolvers' discovery and tags
    "resolvers.json", "resolvers_err.json", "resolvers_ip.json", "resolvers_ptr.json", "resolvers_raw.json",
    "tagged_resolvers.json",
    # Satellite v2: the answers before the comparison, their tags; results_verified.json repeats results.json's
    # anomalies with a flag
    "responses.json", "responses_control.json", "responses_ip.json", "responses_raw.json", "tagged_responses.json",
    "results_verified.json",
    # a scan's log
    "log.json",
))
_SCAN_PREFIXES = ("cp_satellite-", "cp-satellite-", "cp_quack-", "cp-quack-")
_READ = (".json", ".jsonl")


def in_scan(path: str) -> bool:
    """Whether ``path`` (a file's, or ``archive!member``) lies in a Censored Planet scan: a directory or an archive
    above it is named as one."""
    parts = path.replace("!", "/").split("/")[:-1]
    return any(part.lower().startswith(_SCAN_PREFIXES) for part in parts)


def not_measurements(path: str) -> bool:
    """Whether ``path`` (a file's, or ``archive!member``) is a file of a Censored Planet scan that holds no
    measurement (`OTHER_FILES`, a statistics file ``stat_*.json``, an archive member that is not JSON: ``dns.pkt``,
    ``servers.txt``), and is not read when found in a directory or an archive."""
    if not in_scan(path):
        return False
    name = path.replace("!", "/").rsplit("/", 1)[-1].lower().removesuffix(".gz")
    member = "!" in path  # in a directory, only the suffixes analyze reads are looked at (reader._kind)
    return name in OTHER_FILES or name.startswith("stat_") or (member and not name.endswith(_READ))


__all__ = ["OTHER_FILES", "in_scan", "not_measurements"]
