"""A QUIC handshake cut short by its caller (a measurement's deadline, a stopped run) against a server that
never answers: the socket it opened must go with it."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import pytest

from tamperscope.netx import quic
from tamperscope.netx.trace import Trace

try:
    from . import test_netx_servers as srv
except ImportError:
    import test_netx_servers as srv  # type: ignore[no-redef]

FDS = Path("/proc/self/fd")


@pytest.mark.skipif(not FDS.is_dir(), reason="counts descriptors in /proc")
def test_a_cancelled_quic_handshake_closes_its_socket() -> None:
    """`except Exception` let the cancellation through before the socket was closed: each cancelled handshake
    left a UDP socket open and registered with the loop (a probe runs thousands: EMFILE, too many open files)."""
    async def main() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:  # a server that drops every datagram
            silent.bind((srv.LOOPBACK, 0))
            port = silent.getsockname()[1]
            before = len(os.listdir(FDS))
            for _ in range(20):
                with pytest.raises(TimeoutError):
                    async with asyncio.timeout(0.02):  # the caller's deadline, well before the handshake's own
                        await quic.handshake(srv.LOOPBACK, port, server_name="quic.test", trace=Trace(), timeout=5)
            # 20 with the leak; slack for what other threads of the run may open meanwhile
            assert len(os.listdir(FDS)) - before <= 2

    srv.run(main())
