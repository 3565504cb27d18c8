"""Words for a listening server (the helper, the collector): where it listens, and why it cannot.

One place for both, so `tamperscope helper` and `tamperscope serve` say the same things.
"""

from __future__ import annotations

import errno
import resource

EVERY_INTERFACE = {"0.0.0.0": " (every IPv4 interface)", "::": " (every IPv6 interface)"}


def shown(address: tuple[object, ...]) -> str:
    """``host:port``, or ``[host]:port`` for an IPv6 address (a sockname or a (host, port) pair)."""
    host, port = str(address[0]), address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def bind_failure(exc: OSError, host: str) -> str:
    """Why binding to ``host`` failed, in words a user can act on."""
    why = {errno.EADDRINUSE: "the port is in use",
           errno.EADDRNOTAVAIL: f"{host} is not an address of this machine",
           errno.EACCES: "permission denied (a port below 1024 needs root)"}.get(exc.errno or 0)
    return why or exc.strerror or str(exc)


__all__ = ["EVERY_INTERFACE", "bind_failure", "shown"]


def open_files() -> int | None:
    """This process's open-file limit (None: unlimited), its soft limit raised to the hard one first: every
    socket is a descriptor, and out of them a server serves no one and a probe's failures are its own."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or hard > soft):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return None if soft == resource.RLIM_INFINITY else soft

