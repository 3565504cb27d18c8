"""Informed consent, asked once before the first measurement.

Running a probe can be risky where it matters most: measurements are public,
and a network operator can see that a device tests blocked sites. The probe
says so, and what it will and will not record, and waits for an explicit
"yes", which is kept in the user's config directory. `--yes` gives consent for
that run only, for automation, and is not kept: a run in the lab
(`lab exec -- tamperscope run … --yes`, and the demo) or a script leaves no
consent behind for a later run on a real network. Only a record written by
the prompt counts (`{"informed_consent": true, …}`), not anything that merely
looks true.

It is asked before the probe contacts anything (not even a DNS lookup of the
helper's name), so the notice names what this run would contact from the
settings alone. Consent given but impossible to record (a read-only home) is
good for this run: the probe says so in one line and asks again next time.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import textwrap
from pathlib import Path
from typing import TextIO

NOTICE = """\
tamperscope measures whether, how and where your network interferes with traffic.

Before you start, please know:
  * Anyone watching your network (your ISP, your government) can see that this
    device connects to the sites being tested, some of which may be blocked or
    illegal to access where you are.
  * Measurements are written to files you choose and, only if you pass --submit,
    sent to the collector you name. Published measurements are public.
  * tamperscope never records your IP address: it writes probe_ip 127.0.0.1 and
    replaces your address with [scrubbed] where a server echoes it back, in
    every spelling it knows (docs/measurement-format.md lists them). A server
    set on hiding it in a form of its own could still get it into a page.
    Behind NAT it knows your public address only if the control helper or a
    STUN server (--stun) tells it.
    It records your country and network (AS number) when it can tell them.
  * Nothing is sent anywhere but the sites under test, the resolvers and the
    control helper, until you ask it to submit.
"""


class ConsentRequired(Exception):
    """No consent on record and no way to ask for it."""


MAX_RECORD = 64 * 1024  # bytes of consent.json read: it is a few dozen; more is not ours


def consent_path() -> Path:
    """Where consent is kept; RuntimeError when there is neither $XDG_CONFIG_HOME nor a home directory."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "tamperscope" / "consent.json"


def has_consent() -> bool:
    """Whether consent given at the prompt is on record: ``informed_consent`` exactly true ("no", "false" or
    [false] is not consent, nor is a record saying it was revoked)."""
    try:
        with open(consent_path(), "rb") as f:
            record = json.loads(f.read(MAX_RECORD))
    except (OSError, ValueError, RuntimeError):
        return False
    return isinstance(record, dict) and record.get("informed_consent") is True and not record.get("revoked")


def record_consent(how: str) -> None:
    """Keep consent on record; OSError (or RuntimeError: no home) when it cannot be written."""
    p = consent_path()
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps({"informed_consent": True, "how": how,
                             "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}))


def _record_or_say(how: str, stderr: TextIO) -> None:
    """Record consent; if that is impossible, say so in one line: consent was given, the run goes on."""
    try:
        record_consent(how)
    except (OSError, RuntimeError) as e:
        try:
            where = str(consent_path())
        except RuntimeError:
            where = "$XDG_CONFIG_HOME (no home directory)"
        reason = getattr(e, "strerror", None) or str(e)
        stderr.write(f"tamperscope: consent given, but it could not be recorded in {where} ({reason}): "
                     "you will be asked again next time\n")
        stderr.flush()


def ensure_consent(yes: bool, stdin: TextIO | None = None, stderr: TextIO | None = None,
                   plan: str | None = None) -> None:
    """Return once consent is on record (or given for this run); raise ConsentRequired if it cannot be
    obtained. `plan` says what this run would contact; it is shown with the notice."""
    stdin = sys.stdin if stdin is None else stdin  # looked up now: the caller (or a test) may have replaced it
    stderr = sys.stderr if stderr is None else stderr
    if yes or has_consent():
        return  # --yes is consent for this run only: nothing is recorded
    if stdin is None or not stdin.isatty():
        raise ConsentRequired("the probe needs your informed consent: run it once interactively, or pass --yes")
    if plan:  # wrapped like the notice; URLs are never broken
        plan = textwrap.fill(plan, 78, break_long_words=False, break_on_hyphens=False)
    stderr.write(NOTICE + (f"\n{plan}\n" if plan else "") + "\nType 'yes' to accept and continue: ")
    stderr.flush()
    answer = stdin.readline().strip().lower()
    if answer not in ("yes", "y"):
        raise ConsentRequired("consent not given; nothing was measured")
    _record_or_say("prompt", stderr)
