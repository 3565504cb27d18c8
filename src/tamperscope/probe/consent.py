"""Informed consent, asked once before the first measurement.

Running a probe can be risky where it matters most: measurements are public,
and a network operator can see that a device tests blocked sites. The probe
says so, and what it will and will not record, and waits for an explicit
"yes". `--yes` records consent for automation. Consent is kept in the user's
config directory.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
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
    replaces your address with [scrubbed] wherever a server echoes it back.
    It records your country and network (AS number) when it can tell them.
  * Nothing is sent anywhere but the sites under test, the resolvers and the
    control helper, until you ask it to submit.
"""


class ConsentRequired(Exception):
    """No consent on record and no way to ask for it."""


def consent_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "tamperscope" / "consent.json"


def has_consent() -> bool:
    try:
        return bool(json.loads(consent_path().read_text()).get("informed_consent"))
    except (OSError, ValueError, AttributeError):
        return False


def record_consent(how: str) -> None:
    p = consent_path()
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps({"informed_consent": True, "how": how,
                             "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}))


def ensure_consent(yes: bool, stdin: TextIO = sys.stdin, stderr: TextIO = sys.stderr) -> None:
    """Return once consent is on record; raise ConsentRequired if it cannot be obtained."""
    if has_consent():
        return
    if yes:
        record_consent("--yes")
        return
    if not stdin.isatty():
        raise ConsentRequired("the probe needs your informed consent: run it once interactively, or pass --yes")
    stderr.write(NOTICE + "\nType 'yes' to accept and continue: ")
    stderr.flush()
    answer = stdin.readline().strip().lower()
    if answer not in ("yes", "y"):
        raise ConsentRequired("consent not given; nothing was measured")
    record_consent("prompt")
