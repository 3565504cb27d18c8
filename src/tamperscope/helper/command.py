"""`tamperscope helper`: run the control test helper."""

from __future__ import annotations

import argparse

from .server import add_arguments


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("helper", help="run the control test helper (OONI's web-connectivity TH protocol)",
                       description="Serve the control test helper: the uncensored vantage that measures the same "
                                   "target for comparison. Speaks OONI's web-connectivity test-helper protocol "
                                   "(POST / with {http_request, http_request_headers, tcp_connect}). Writes nothing.")
    add_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import uvloop

    from ..cli import UsageError
    from .server import BadOption, check_options, serve_forever

    try:
        check_options(args)  # before anything starts
        uvloop.run(serve_forever(args))
    except BadOption as e:
        raise UsageError(str(e)) from None
    except KeyboardInterrupt:
        pass
    return 0
