"""`tamperscope lab …`: the command-line face of the lab."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time

from ..cli import path_arg
from . import addresses as A
from .manager import LabError, client_env

HELP = """A censoring ISP emulated in Linux network namespaces, with ground truth.

  client -> access router -> [censor bridge] -> border router -> internet
                                                       \\-> outside vantage

Needs root. Addresses come only from 198.18.0.0/15; nothing is routed outside.
Profiles: built-in names (none, tm-like, ru-like, gfw-like, middlebox) or a TOML
file written as docs/lab-profiles.md describes."""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("lab", help="the censorship lab (network namespaces)", description=HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    ls = p.add_subparsers(dest="lab_cmd", metavar="COMMAND")
    ls.required = True
    u = ls.add_parser("up", help="bring the lab up with a censor profile",
                      description="Create the namespaces, links and servers, start the censor with PROFILE. "
                                  "Refuses if a lab is already up (unless --switch); clears a stale one.")
    u.add_argument("--profile", default="none", help="built-in profile name or TOML file (default: none)")
    u.add_argument("--switch", action="store_true",
                   help="if a lab is up, give it PROFILE: restart only the censor and the servers that read the "
                        "profile (DNS, web farm, ISP, border box) and empty the ground-truth log; the helper, "
                        "bridges, VPN servers and Tor network keep running (under 1 s instead of 3-4)")
    u.add_argument("--json", action="store_true", help="print the state as JSON")
    d = ls.add_parser("down", help="remove every namespace, link, process and file of the lab",
                      description="Remove everything the lab made, even after a crash or kill -9.")
    d.add_argument("--quiet", "-q", action="store_true", help="print nothing")
    s = ls.add_parser("status", help="is the lab up, with which profile; every address",
                      description="Print whether the lab is up, its profile, processes and every address.")
    s.add_argument("--json", action="store_true", help="machine-readable output (addresses, censor_after_hop)")
    names = list(client_env({}))  # what the client's commands are given: the help names each
    e = ls.add_parser("exec", help="run a command in the client namespace",
                      description="Run CMD in the client namespace, with /etc/resolv.conf pointing at the ISP "
                                  f"resolver and {', '.join(names[:-1])} and {names[-1]} set.")
    e.add_argument("--ns", default="client", choices=["client", "outside", "inet", "access", "border", "censor"],
                   help="namespace to run in (default: client)")
    e.add_argument("cmd", nargs=argparse.REMAINDER, help="-- CMD [ARGS…]")
    lg = ls.add_parser("log", help="print the ground truth: one JSON line per censor action",
                       description='Print the censor\'s ground-truth log: {"t","rule","layer","action","client","server","name"} per line.')
    lg.add_argument("--follow", "-f", action="store_true", help="keep printing new lines")
    x = ls.add_parser("expect", help="what a correct probe concludes for each URL (CSV)",
                      description="Print CSV url,blocking,mechanism: what a correct probe concludes for each URL "
                                  "under PROFILE. Needs no root and no running lab.")
    x.add_argument("--profile", required=True, help="built-in profile name or TOML file")
    x.add_argument("--list", required=True, type=path_arg, help="Citizen Lab CSV test list or one URL per line")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from . import manager

    cmd = args.lab_cmd
    if cmd == "expect":
        return _expect(args)
    if cmd == "up":
        st = manager.up(args.profile, switch=args.switch)
        if args.json:
            print(json.dumps(manager.status(), indent=1))
        else:
            print(f"lab up: profile {st['profile']}; client {A.CLIENT}, ISP resolver {A.ISP_RESOLVER}, "
                  f"helper {A.Endpoints().helper_url}; censor after hop {A.CENSOR_AFTER_HOP}")
        return 0
    if cmd == "down":
        removed = manager.down()
        if not args.quiet:
            print(f"lab down: removed {len(removed)} items" if removed else "lab down: nothing to remove")
        return 0
    if cmd == "status":
        info = manager.status()
        if args.json:
            print(json.dumps(info, indent=1))
        else:
            print(f"lab: {'up' if info['up'] else 'down'}" + (f", profile {info.get('profile')}" if info.get("profile") else "")
                  + ("; a stale lab's namespaces are left (`tamperscope lab down` removes them)"
                     if not info["up"] and info["namespaces"] else ""))
            for k, v in info["addresses"].items():
                print(f"  {k:16} {v}")
        return 0 if info["up"] else 1
    if cmd == "exec":
        argv = list(args.cmd)
        if argv and argv[0] == "--":
            argv = argv[1:]
        if not argv:
            raise LabError("lab exec needs a command: tamperscope lab exec -- CMD [ARGS…]", 2)
        manager.require_root()
        if not manager.is_up():
            raise LabError("the lab is not up; run `tamperscope lab up --profile NAME` first", 2)
        ns = {"client": A.NS_CLIENT, "outside": A.NS_OUTSIDE, "inet": A.NS_INET, "access": A.NS_ACCESS,
              "border": A.NS_BORDER, "censor": A.NS_CENSOR}[args.ns]
        env = manager.client_env()
        _check_program(argv[0], env)
        sys.stdout.flush()
        os.execvpe("ip", manager.exec_argv(argv, ns), env)
    if cmd == "log":
        return _log(args.follow)
    raise LabError(f"unknown lab command {cmd}", 2)


def _check_program(name: str, env: dict[str, str]) -> None:
    """Refuse a program that cannot be run, with env(1)'s exit codes (127: not found, 126: not executable),
    before `ip netns exec` fails with its own message and exit 1 (which the program could have returned).
    The namespaces share this file system, so what is found here is found there."""
    if shutil.which(name, path=env.get("PATH", os.defpath)) is not None:
        return
    if os.sep in name and os.path.exists(name):
        raise LabError(f"lab exec: {name} is not an executable program", 126)
    raise LabError(f"lab exec: no program {name!r}" + ("" if os.sep in name else " on the PATH"), 127)


def _log(follow: bool) -> int:
    from .manager import PATHS

    if not PATHS.log.exists():
        raise LabError("no ground-truth log: the lab is not up", 2)
    with open(PATHS.log, encoding="utf-8") as f:
        while True:
            line = f.readline()
            if line:
                sys.stdout.write(line)
                continue
            if not follow:
                return 0
            sys.stdout.flush()
            time.sleep(0.2)


def _expect(args: argparse.Namespace) -> int:
    from ..model.inputs import MAX_LIST, BadInput, read_bounded
    from .expect import BadURL, expect_url, read_url_list, to_csv
    from .manager import resolve_profile

    profile = resolve_profile(args.profile)
    try:
        text = read_bounded(args.list, MAX_LIST, "list")  # as `tamperscope run --list` reads it: /dev/zero ends
    except BadInput as e:
        raise LabError(str(e), 2) from None
    try:
        urls = read_url_list(text, str(args.list))
    except BadURL as e:
        raise LabError(str(e), 2) from None
    sys.stdout.write(to_csv([expect_url(profile, u) for u in urls]))
    return 0
