"""``tamperscope serve``: the collector, the JSON API and the web explorer, on one port."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from urllib.parse import urlsplit

from tamperscope.cli import path_arg, utf8_path_arg


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "serve",
        help="accept measurements, serve the API and the web explorer",
        description="Serve the collector (OONI's report protocol and a bulk JSONL upload), the JSON API "
                    "(OpenAPI at /openapi.json) and the web explorer from one store. Writes acknowledged "
                    "measurements to NAME.collector/incoming/*.jsonl beside the store NAME.duckdb (fsync'd, "
                    "append-only) and their verdicts into the store. See docs/collector-api.md.",
    )
    p.add_argument("--db", type=utf8_path_arg, default=None, metavar="FILE",
                   help="the analysis store (default: $TAMPERSCOPE_DB or ~/.local/share/tamperscope/"
                        "tamperscope.duckdb); created if missing")
    p.add_argument("--host", default="127.0.0.1",
                   help="address or name to listen on (default 127.0.0.1; 0.0.0.0 for every IPv4 interface, "
                        ":: for every IPv6 one)")
    p.add_argument("--port", type=int, default=8080, help="port to listen on, 1-65535 (default 8080)")
    p.add_argument("--read-only", action="store_true", help="serve the explorer and API only; refuse submissions")
    p.add_argument("--max-body-mib", type=float, default=5.0, metavar="MIB",
                   help="largest submission (one measurement) in MiB (default 5)")
    p.add_argument("--rate", type=float, default=20.0, metavar="N",
                   help="submissions per second per client address; 0 disables the limit (default 20)")
    p.add_argument("--burst", type=float, default=400.0, metavar="N",
                   help="submissions a client may send at once before --rate applies (default 400)")
    p.add_argument("--read-rate", type=float, default=50.0, metavar="N",
                   help="page and API requests per second per client address; 0 disables (default 50)")
    p.add_argument("--admin-token-file", type=path_arg, default=None, metavar="FILE",
                   help="file holding the admin token, at least 16 characters on one line (else "
                        "$TAMPERSCOPE_ADMIN_TOKEN; without either, admin actions are disabled)")
    p.add_argument("--public-url", default=None, metavar="URL",
                   help="the server's address as its users reach it (https://explorer.example.org), for the absolute "
                        "links of the API and the feeds (next_url, measurement_url, Atom ids); default: the address "
                        "each request names in its Host header, which the client chooses")
    p.add_argument("--trusted-proxy", action="append", default=[], metavar="CIDR",
                   help="a reverse proxy (address or network) whose X-Forwarded-For names the client, so that "
                        "rate limits and export slots are per client (repeatable; default: this machine only, "
                        "127.0.0.1 and ::1)")
    p.add_argument("--test-list", type=utf8_path_arg, action="append", default=[], metavar="FILE", dest="test_lists",
                   help="a Citizen Lab test list (url,category_code,...) whose categories the store keeps before "
                        "serving, so that the explorer and API count blocked sites by category (repeatable; as "
                        "tamperscope analyze --test-list: tm.csv is for TM, any other name for every country)")
    p.add_argument("--findings", type=path_arg, default=None, metavar="DIR",
                   help="a directory of findings, one NAME.md file each (a TOML header with a title, a date and "
                        "the measurements it is about, then the text; docs/findings.md): the explorer publishes "
                        "them with their evidence counted live, and reads the directory again when a file changes")
    p.add_argument("--fingerprints", type=path_arg, default=None, metavar="FILE",
                   help="blockpage fingerprints of your own, beside the shipped ones (as tamperscope analyze "
                        "--fingerprints: Citizen Lab's http.csv columns, as /new-blockpages.csv proposes them): "
                        "submissions are judged with them, and POST /api/v1/admin/reanalyse with "
                        '{"stale": true} judges again those stored before; default $TAMPERSCOPE_FINGERPRINTS')
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tamperscope.analysis.command import store_path
    from tamperscope.cli import UsageError
    from tamperscope.collector.admin import TokenError
    from tamperscope.collector.schema import Limits, MiB
    from tamperscope.collector.server import ServeError, StartupError, serve, settings_from_env
    from tamperscope.model.inputs import BadInput, listen_host

    try:
        host = listen_host(args.host)
    except BadInput as exc:
        raise UsageError(f"--host: {exc}") from None
    if not 0 < args.port < 65536:
        raise UsageError("--port must be between 1 and 65535")
    if not all(math.isfinite(v) for v in (args.max_body_mib, args.rate, args.burst, args.read_rate)):
        raise UsageError("--max-body-mib, --rate, --burst and --read-rate must be numbers (not nan or inf)")
    if not 0 < args.max_body_mib <= 64:
        raise UsageError("--max-body-mib must be more than 0 and at most 64")
    if args.rate < 0 or args.read_rate < 0 or args.burst < 1:
        raise UsageError("--rate and --read-rate must not be negative, --burst at least 1")
    proxies = _networks(args.trusted_proxy) if args.trusted_proxy else None
    public = _public_url(args.public_url)
    token = _admin_token(args.admin_token_file) if args.admin_token_file is not None else None
    db = store_path(args.db)  # $TAMPERSCOPE_DB's bytes checked too: DuckDB cannot open a name not in UTF-8
    if args.findings is not None:  # a typo in a finding stops the server here, in one line naming the file
        from tamperscope.collector.findings import FindingError, Findings

        try:
            count = Findings(args.findings).check()
        except FindingError as exc:
            raise UsageError(str(exc)) from None
        if not args.quiet:
            print(f"tamperscope: {count} finding(s) in {args.findings}", file=sys.stderr)
    from tamperscope.analysis.verdicts import use_fingerprints_given

    try:  # a bad file stops the server here, in one line
        local = use_fingerprints_given(args.fingerprints)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if local is not None and not args.quiet:
        print(f"tamperscope: {len(local.entries)} fingerprint(s) of your own in {local.path}", file=sys.stderr)
    if args.test_lists:  # kept in the store before the server opens it
        from tamperscope.analysis.command import keep_test_lists

        keep_test_lists(db, args.test_lists, quiet=args.quiet)
    try:
        settings = settings_from_env(
            db, host, args.port, admin_token=token, findings_dir=args.findings,
            limits=Limits(measurement=int(args.max_body_mib * MiB)),
            submit_rate=args.rate, submit_burst=args.burst, read_rate=args.read_rate,
            accept_submissions=not args.read_only, announce=not args.quiet, public_url=public,
            **({"trusted_proxies": proxies} if proxies else {}))
    except TokenError as exc:
        raise UsageError(str(exc)) from None
    for wide in _too_wide(proxies or ()):  # QA: 0.0.0.0/0 was taken without a word
        print(f"tamperscope: warning: --trusted-proxy {wide} trusts the X-Forwarded-For of a large part of the "
              "internet: any client there can pass for another, and the rate limits and export slots stop holding "
              "per client; name your reverse proxy's own address", file=sys.stderr)
    try:
        return serve(settings)
    except StartupError as exc:
        if exc.exit_code == 2:
            raise UsageError(str(exc)) from None
        print(f"tamperscope: {exc}", file=sys.stderr)  # the machine's fault (a full disk): not a usage error
        return exc.exit_code
    except ServeError as exc:
        raise UsageError(str(exc)) from None


def _public_url(value: str | None) -> str | None:
    """``--public-url`` as links are made with it: an http(s) origin, no trailing ``/``; the explorer's links are
    from its root, so a path, a query or a fragment is refused, as a URL with credentials is."""
    from tamperscope.cli import UsageError
    from tamperscope.model.inputs import BadInput, parse_url

    if value is None:
        return None
    try:
        parse_url(value)
    except BadInput as exc:
        raise UsageError(f"--public-url: {exc}") from None
    parts = urlsplit(value.strip())
    if parts.path not in ("", "/") or parts.query or parts.fragment or value.strip().endswith(("?", "#")):
        raise UsageError(f"--public-url must be an origin, scheme://host[:port], not {value.strip()[:200]!r}: the "
                         "explorer is served from the root of it")
    return f"{parts.scheme.lower()}://{parts.netloc}"


def _admin_token(path: Path) -> str:
    """The admin token in ``path``: one line of text. An empty file is refused rather than taken to mean
    "admin disabled" (that is what leaving out the option says), and so is one of several lines, which a
    request's header, one line, could never match."""
    from tamperscope.cli import UsageError
    from tamperscope.model.inputs import lines_of

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:  # a binary file named by mistake (a key, an image): a usage error too
        raise UsageError(f"{path} is not UTF-8 text: the admin token is one line of text") from None
    lines = [line.strip() for line in lines_of(text.removeprefix("\ufeff")) if line.strip()]
    if not lines:
        raise UsageError(f"{path} is empty: it must hold the admin token, one line (leave out --admin-token-file "
                         "to disable admin actions)")
    if len(lines) > 1:
        raise UsageError(f"{path} holds {len(lines)} lines: the admin token is one line, as a request's "
                         "Authorization header carries it")
    return lines[0]


def _too_wide(networks: tuple[str, ...]) -> list[str]:
    """The trusted proxies that are no proxy: a network of public addresses wider than a /16 (IPv4) or a /32
    (IPv6, a whole provider's allocation)."""
    import ipaddress

    out = []
    for text in networks:
        net = ipaddress.ip_network(text)
        if net.prefixlen < (16 if net.version == 4 else 32) and not net.is_private:
            out.append(text)
    return out


def _networks(values: list[str]) -> tuple[str, ...]:
    """``--trusted-proxy`` values as networks; a usage error names the first that is not one."""
    import ipaddress

    from tamperscope.cli import UsageError

    out = []
    for value in values:
        try:
            out.append(str(ipaddress.ip_network(value.strip(), strict=False)))
        except ValueError:
            raise UsageError(f"--trusted-proxy takes an address or a network like 10.0.0.0/8, not {value[:64]!r}") \
                from None
    return tuple(out)
