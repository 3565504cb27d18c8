"""Interception gear on the border router: a rewriting HTTP proxy and a TLS MITM box.

nftables in the border namespace redirects port-80 and port-443 flows from
the ISP side into these listeners (NAT `redirect`); they recover the original
destination with SO_ORIGINAL_DST, as real transparent proxies do.

- The HTTP proxy re-serialises each request head (header-name case, added
  headers) before relaying; a request line it cannot parse gets its own 400.
- The MITM box peeks at the ClientHello: names under a `tls mitm` rule are
  terminated with a certificate from the interception CA and relayed over a
  fresh, verified TLS connection; everything else is spliced through untouched.

Threads, not asyncio: peeking with MSG_PEEK and wrapping a socket in TLS
afterwards is simplest on blocking sockets, and the lab's load is small.
"""

from __future__ import annotations

import logging
import select
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable

from ..model.profile import Profile, Rule
from ..wire import httphead
from ..wire.tlshello import MAX_HELLO, ClientHello, parse_client_hello
from .ca import Issuer

log = logging.getLogger("tamperscope.lab.proxy")
SO_ORIGINAL_DST = 80
TIMEOUT = 15.0  # s: idle limit of a relayed connection, and the time a request head has to arrive whole
HELLO_WAIT = 5.0  # s a ClientHello split over several segments has to arrive whole
MAX_CONNECTIONS = 1024  # per listener; past it new connections are closed at once (a thread each)
PROXY_RULE = Rule(id="proxy", layer="http", action="proxy")


def original_dst(sock: socket.socket) -> tuple[str, int]:
    raw = sock.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
    port = struct.unpack_from("!H", raw, 2)[0]
    return socket.inet_ntoa(raw[4:8]), port


def pipe(a: socket.socket | ssl.SSLSocket, b: socket.socket | ssl.SSLSocket, idle: float = TIMEOUT) -> None:
    """Relay bytes both ways until both sides have closed (half-closes are passed on) or `idle` s pass.

    poll, not select: past descriptor 1023 select raises ValueError, and with two sockets a connection the
    proxy failed every connection past about the 500th, far below its MAX_CONNECTIONS."""
    open_ = [a, b]
    poller = select.poll()
    by_fd: dict[int, socket.socket | ssl.SSLSocket] = {}
    for s in open_:
        poller.register(s, select.POLLIN)
        by_fd[s.fileno()] = s
    try:
        while open_:
            ready: list[socket.socket | ssl.SSLSocket]
            ready = [s for s in open_ if isinstance(s, ssl.SSLSocket) and s.pending()]
            ready = ready or [by_fd[fd] for fd, _ in poller.poll(idle * 1000)]
            if not ready:
                return
            for s in ready:
                other = b if s is a else a
                data = s.recv(65536)
                if data:
                    other.sendall(data)
                    continue
                open_.remove(s)
                poller.unregister(s)
                try:
                    if isinstance(other, ssl.SSLSocket):
                        return  # TLS has no half-close worth keeping
                    other.shutdown(socket.SHUT_WR)
                except OSError:
                    return
    except (OSError, ssl.SSLError):
        return


def read_head(conn: socket.socket, deadline_s: float | None = None) -> bytes:
    """A request's first bytes, through its head's blank line or MAX_HEAD, within `deadline_s` in all.

    TimeoutError past it: the socket's own timeout is per recv, and a client sending a byte every
    few seconds held its thread for days (and re-scanning the whole buffer per byte was quadratic)."""
    end = time.monotonic() + (TIMEOUT if deadline_s is None else deadline_s)
    buf = bytearray()
    try:
        while len(buf) < httphead.MAX_HEAD:
            left = end - time.monotonic()
            if left <= 0:
                raise TimeoutError("request head not complete in time")
            conn.settimeout(left)
            data = conn.recv(65536)
            if not data:
                break
            scan = max(0, len(buf) - 3)
            buf += data
            if buf.find(b"\r\n\r\n", scan) >= 0 or buf.find(b"\n\n", scan) >= 0:
                break
    finally:
        conn.settimeout(TIMEOUT)
    return bytes(buf)


def peek_hello(conn: socket.socket, deadline_s: float | None = None) -> ClientHello | None:
    """The ClientHello at the start of `conn`, left unread; None if it is not one or not whole in time.

    MSG_PEEK returns at once while any byte is queued, so a hello split over segments is waited for
    by polling: the loop that replaced it once gave up within a millisecond and spliced the flow."""
    end = time.monotonic() + (HELLO_WAIT if deadline_s is None else deadline_s)
    try:
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return None
            conn.settimeout(left)
            data = conn.recv(MAX_HELLO, socket.MSG_PEEK)
            if not data:
                raise ConnectionResetError("closed before its ClientHello")
            result = parse_client_hello(data)
            if result is not False:
                return result if isinstance(result, ClientHello) else None
            if len(data) >= MAX_HELLO:
                return None
            time.sleep(min(0.02, left))
    finally:
        conn.settimeout(TIMEOUT)


def _case(name: str, how: str) -> str:
    if how == "lower":
        return name.lower()
    if how == "upper":
        return name.upper()
    if how == "title":
        return "-".join(p[:1].upper() + p[1:].lower() for p in name.split("-"))
    return name


def rewrite_head(head: httphead.RequestHead, case: str, add: tuple[tuple[str, str], ...], client_ip: str = "") -> bytes:
    """The head as the proxy sends it on: names re-cased, headers added ({client_ip} filled in)."""
    lines = [f"{head.method} {head.target} {head.version}"]
    lines += [f"{_case(k, case)}: {v}" for k, v in head.headers]
    present = {k.lower() for k, _ in head.headers}
    lines += [f"{k}: {v.replace('{client_ip}', client_ip)}" for k, v in add if k.lower() not in present]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class Interceptor:
    """Serves the HTTP proxy and the MITM listener, one thread per connection."""

    def __init__(self, profile: Profile, issuer: Issuer, lab_ca: str, truth: Callable[..., None]) -> None:
        self.p = profile
        self.issuer = issuer
        self.truth = truth
        self.mitm_rules = [r for r in profile.rules_for("tls") if r.action == "mitm"]
        self.upstream_ctx = ssl.create_default_context(cafile=lab_ca)
        self.upstream_ctx.set_alpn_protocols(["http/1.1"])

    def serve(self, port: int, handler: Callable[[socket.socket], None], host: str = "0.0.0.0") -> socket.socket:
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind((host, port))
        srv.listen(512)
        slots = threading.BoundedSemaphore(MAX_CONNECTIONS)

        def loop() -> None:
            while True:
                try:
                    conn, _ = srv.accept()
                except OSError:
                    return
                if not slots.acquire(blocking=False):
                    conn.close()  # full: a thread per connection, and a failed thread start ended this loop
                    continue
                try:
                    threading.Thread(target=self._guard, args=(handler, conn, slots), daemon=True).start()
                except RuntimeError:  # "can't start new thread"
                    slots.release()
                    conn.close()

        threading.Thread(target=loop, daemon=True).start()
        return srv

    def _guard(self, handler: Callable[[socket.socket], None], conn: socket.socket,
               slots: threading.BoundedSemaphore | None = None) -> None:
        try:
            conn.settimeout(TIMEOUT)
            handler(conn)
        except (OSError, ssl.SSLError, ValueError):
            pass
        except Exception:
            log.exception("interceptor connection failed")
        finally:
            conn.close()
            if slots is not None:
                slots.release()

    # -- HTTP ------------------------------------------------------------
    def http(self, conn: socket.socket) -> None:
        dst = original_dst(conn)
        peer = conn.getpeername()
        buf = read_head(conn)
        head = httphead.parse_request_head(buf)
        self.truth(PROXY_RULE, f"{peer[0]}:{peer[1]}", f"{dst[0]}:{dst[1]}", head.host if head else None)
        if head is None:
            body = b"<html><body><h1>400 Bad Request</h1><p>Your request could not be understood.</p></body></html>\n"
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\nServer: lab-rewriting-proxy\r\nContent-Type: text/html\r\n"
                         + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
            return
        out = rewrite_head(head, self.p.proxy.header_case, self.p.proxy.add_headers, peer[0]) + buf[head.raw_len :]
        with socket.create_connection(dst, timeout=TIMEOUT) as up:
            up.sendall(out)
            pipe(conn, up)

    # -- TLS -------------------------------------------------------------
    def _mitm_rule(self, sni: str | None) -> Rule | None:
        for r in self.mitm_rules:
            if r.applies_to("egress") and r.matches_name(sni):
                return r
        return None

    def tls(self, conn: socket.socket) -> None:
        dst = original_dst(conn)
        peer = conn.getpeername()
        hello = peek_hello(conn)
        rule = self._mitm_rule(hello.sni if hello else None)
        if rule is None or hello is None or hello.sni is None:
            with socket.create_connection(dst, timeout=TIMEOUT) as up:
                pipe(conn, up)
            return
        sni = hello.sni
        self.truth(rule, f"{peer[0]}:{peer[1]}", f"{dst[0]}:{dst[1]}", sni)
        ctx = self.issuer.context(sni)
        with ctx.wrap_socket(conn, server_side=True) as client_tls:
            with socket.create_connection(dst, timeout=TIMEOUT) as raw_up:
                with self.upstream_ctx.wrap_socket(raw_up, server_hostname=sni) as up:
                    pipe(client_tls, up)
