"""Plain clients run inside a lab namespace: dnspython, sockets and ssl, nothing of ours.

Run as `python plainclient.py` with a JSON list of operations on stdin; prints
a JSON list of results. The lab tests use it to see, as any program would,
what the censor does; it deliberately shares no code with the probe.
"""

from __future__ import annotations

import json
import os
import select
import socket
import ssl
import struct
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import dns.message
import dns.rcode
import dns.rdatatype

TIMEOUT = float(os.environ.get("PLAIN_TIMEOUT", "1.5"))
CA = os.environ.get("TAMPERSCOPE_CA_BUNDLE")


def err(e: BaseException) -> str:
    if isinstance(e, (socket.timeout, TimeoutError)):
        return "timeout"
    if isinstance(e, ConnectionRefusedError):
        return "refused"
    if isinstance(e, ConnectionResetError):
        return "reset"
    if isinstance(e, ssl.SSLCertVerificationError):
        return "verify"
    if isinstance(e, ssl.SSLError):
        return "ssl:" + str(e.reason)
    if isinstance(e, socket.gaierror):
        return "gai:" + str(e.errno)
    return f"{type(e).__name__}:{e}"


def dns_udp(server: str, name: str, wait: float = 0.6, qtype: str = "A") -> dict:
    """Every response to one query within `wait` s after the first (injection shows as two)."""
    q = dns.message.make_query(name, qtype)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((server, 53))
    s.send(q.to_wire())
    answers = []
    deadline = time.monotonic() + TIMEOUT
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            r, _, _ = select.select([s], [], [], left)
            if not r:
                break
            try:
                data = s.recv(4096)
            except ConnectionRefusedError:
                # Linux reports a pending ICMP port-unreachable before datagrams already queued
                # (an injector's answer to a silent address): keep reading briefly.
                deadline = min(deadline, time.monotonic() + 0.2)
                continue
            m = dns.message.from_wire(data)
            if m.id != q.id:
                continue
            ips = [rd.address for rr in m.answer for rd in rr if rr.rdtype == dns.rdatatype.A]
            answers.append({"rcode": dns.rcode.to_text(m.rcode()), "ips": ips})
            deadline = min(deadline, time.monotonic() + wait) if len(answers) == 1 else deadline
    except OSError as e:
        return {"error": err(e), "responses": answers}
    finally:
        s.close()
    return {"responses": answers, "error": None if answers else "timeout"}


def dns_system(name: str) -> dict:
    try:
        infos = socket.getaddrinfo(name, 80, socket.AF_INET, socket.SOCK_STREAM)
        return {"ips": sorted({i[4][0] for i in infos}), "error": None}
    except OSError as e:
        return {"ips": [], "error": err(e)}


def tcp(ip: str, port: int) -> dict:
    try:
        s = socket.create_connection((ip, port), timeout=TIMEOUT)
        s.close()
        return {"error": None}
    except OSError as e:
        return {"error": err(e)}


def http_get(ip: str, host: str, path: str = "/", port: int = 80) -> dict:
    try:
        s = socket.create_connection((ip, port), timeout=TIMEOUT)
    except OSError as e:
        return {"stage": "connect", "error": err(e)}
    data = b""
    try:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1]) if lines and len(lines[0].split()) > 1 else None
        hdrs = dict(ln.split(": ", 1) for ln in lines[1:] if ": " in ln)
        return {"stage": "http", "error": None, "status": status, "headers": hdrs, "body": body.decode("utf-8", "replace")}
    except OSError as e:
        return {"stage": "http", "error": err(e), "received": len(data)}  # bytes before a stall: a freeze's
    finally:
        s.close()


def tls(ip: str, sni: str, path: str | None = None, port: int = 443, alpn: list[str] | None = None) -> dict:
    ctx = ssl.create_default_context(cafile=CA)
    ctx.set_alpn_protocols(alpn or ["http/1.1"])
    try:
        raw = socket.create_connection((ip, port), timeout=TIMEOUT)
    except OSError as e:
        return {"stage": "connect", "error": err(e)}
    out: dict = {"stage": "tls"}
    try:
        t = ctx.wrap_socket(raw, server_hostname=sni)
    except ssl.SSLCertVerificationError:
        raw.close()
        # look at who issued what we were shown
        ctx2 = ssl.create_default_context()
        ctx2.check_hostname = False
        ctx2.verify_mode = ssl.CERT_NONE
        try:
            r2 = socket.create_connection((ip, port), timeout=TIMEOUT)
            t2 = ctx2.wrap_socket(r2, server_hostname=sni)
            der = t2.getpeercert(binary_form=True)
            t2.close()
            from cryptography import x509

            out["issuer"] = x509.load_der_x509_certificate(der).issuer.rfc4514_string()
        except OSError:
            pass
        out["error"] = "verify"
        return out
    except OSError as e:
        raw.close()
        out["error"] = err(e)
        return out
    out["alpn"] = t.selected_alpn_protocol()
    out["issuer"] = ", ".join(f"{k}={v}" for rdn in t.getpeercert()["issuer"] for k, v in rdn)
    out["error"] = None
    if path is not None:
        data = b""
        try:
            t0 = time.monotonic()
            t.settimeout(4)  # seconds without a byte: a throttled flow (150 kbit/s) delivers many times a second
            t.sendall(f"GET {path} HTTP/1.1\r\nHost: {sni}\r\nConnection: close\r\n\r\n".encode())
            while True:
                chunk = t.recv(65536)
                if not chunk:
                    break
                data += chunk
            dt = time.monotonic() - t0
            head, _, body = data.partition(b"\r\n\r\n")
            out.update({"stage": "http", "status": int(head.split()[1]), "bytes": len(body), "seconds": dt,
                        "kbps": len(body) * 8 / 1000 / dt if dt > 0 else None,
                        "headers": dict(ln.split(": ", 1) for ln in head.decode("latin-1").split("\r\n")[1:] if ": " in ln),
                        "body": body[:65536].decode("utf-8", "replace")})
        except OSError as e:
            out.update({"stage": "http", "error": err(e), "received": len(data)})
    t.close()
    return out


def tls_split(ip: str, sni: str, first: int = 40, port: int = 443) -> dict:
    """Send the ClientHello in two TCP segments; report whether the server answered or we were reset."""
    ctx = ssl.create_default_context(cafile=CA)
    inc, outg = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, outg, server_hostname=sni)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    hello = outg.read()
    try:
        s = socket.create_connection((ip, port), timeout=TIMEOUT)
    except OSError as e:
        return {"stage": "connect", "error": err(e)}
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        s.sendall(hello[:first])
        time.sleep(0.05)
        s.sendall(hello[first:])
        data = s.recv(4096)
        return {"stage": "tls", "error": None if data else "eof", "segments": 2, "hello_len": len(hello)}
    except OSError as e:
        return {"stage": "tls", "error": err(e)}
    finally:
        s.close()


def udp_probe(ip: str, port: int = 443) -> dict:
    """A UDP datagram to a port nobody serves: 'refused' (ICMP came back) or 'timeout' (dropped)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(TIMEOUT)
    s.connect((ip, port))
    try:
        s.send(b"\xc0\x00\x00\x00\x01" + b"\0" * 1195)  # looks like a QUIC Initial
        s.recv(2048)
        return {"error": None}
    except OSError as e:
        return {"error": err(e)}
    finally:
        s.close()


def quic(ip: str, sni: str, port: int = 443) -> dict:
    """A QUIC handshake (aioquic's own client, verifying against the lab CA): error None, 'timeout', or why."""
    import asyncio

    from aioquic.asyncio import connect
    from aioquic.quic.configuration import QuicConfiguration

    async def go() -> dict:
        cfg = QuicConfiguration(is_client=True, alpn_protocols=["h3"], server_name=sni)
        if CA:
            cfg.load_verify_locations(CA)
        async with asyncio.timeout(TIMEOUT * 2):
            async with connect(ip, port, configuration=cfg) as client:
                return {"error": None, "alpn": client._quic.tls.alpn_negotiated}

    try:
        return asyncio.run(go())
    except Exception as e:  # noqa: BLE001 - the test reads the kind
        return {"error": err(e) if isinstance(e, (OSError, TimeoutError)) else f"quic:{type(e).__name__}"}


def raw_echo(ip: str, data: str, port: int = 80) -> dict:
    try:
        s = socket.create_connection((ip, port), timeout=TIMEOUT)
        s.sendall(data.encode("latin-1"))
        s.shutdown(socket.SHUT_WR)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
        s.close()
        return {"error": None, "data": out.decode("latin-1")}
    except OSError as e:
        return {"error": err(e)}


def sniff_rst(ip: str, host: str, port: int = 80, sni: bool = False) -> dict:
    """Trigger a rule and capture the forged RST's header values on an AF_PACKET socket."""
    cap = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
    cap.settimeout(0.2)
    res = tls(ip, host, port=port) if sni else http_get(ip, host, port=port)
    deadline = time.monotonic() + 1.0
    found = None
    while time.monotonic() < deadline:
        try:
            frame = cap.recv(65535)
        except (socket.timeout, TimeoutError):
            continue
        ipb = frame[14:] if frame[12:14] == b"\x08\x00" else frame
        if len(ipb) < 40 or ipb[9] != 6 or socket.inet_ntoa(ipb[12:16]) != ip:
            continue
        ihl = (ipb[0] & 15) * 4
        flags = ipb[ihl + 13]
        if flags & 0x04:
            found = {"ip_id": struct.unpack("!H", ipb[4:6])[0], "ttl": ipb[8],
                     "window": struct.unpack("!H", ipb[ihl + 14 : ihl + 16])[0], "flags": flags}
            break
    cap.close()
    return {"result": res, "rst": found}


def url(u: str, truth: dict) -> dict:
    """Walk a URL as a plain client would and name what happened (see the lab tests)."""
    parts = urlsplit(u)
    scheme, host, path = parts.scheme, parts.hostname, parts.path or "/"
    throttled = quic_dropped = False
    for hop in range(11):
        sysres = dns_system(host)
        udp = dns_udp(os.environ["TAMPERSCOPE_PUBLIC_RESOLVER"], host)
        true_ip = truth[host]
        if true_ip is None:
            return {"mechanism": "none", "note": "nxdomain site"}
        if len(udp["responses"]) > 1 and udp["responses"][0]["ips"] != [true_ip]:
            return {"mechanism": "dns.injection"}
        if sysres["error"] == "gai:-2" or (udp["responses"] and udp["responses"][0]["rcode"] == "NXDOMAIN"):
            return {"mechanism": "dns.nxdomain"}
        if udp["error"] == "timeout" or sysres["error"] == "gai:-3":
            return {"mechanism": "dns.drop"}
        if sysres["ips"] != [true_ip]:
            return {"mechanism": "dns.poison"}
        c = tcp(true_ip, 443 if scheme == "https" else 80)
        if c["error"] == "timeout":
            return {"mechanism": "tcp.drop"}
        if c["error"] in ("refused", "reset"):
            return {"mechanism": "tcp.rst"}
        if scheme == "https":
            r = tls(true_ip, host, path="/blob?size=60000")
            if r["error"] == "reset" or (r["error"] or "").startswith("ssl:") and "EOF" in (r["error"] or ""):
                return {"mechanism": "tls.rst"}
            if r["error"] == "timeout" and r["stage"] == "tls":
                return {"mechanism": "tls.drop"}
            if r["error"] == "verify":
                return {"mechanism": "tls.mitm"}
            if r.get("kbps") and r["kbps"] < 1000:
                throttled = True
            r = tls(true_ip, host, path=path)
            if r["error"] == "timeout" and r.get("received"):  # the page started, then not a byte more
                return {"mechanism": "tcp.freeze"}
            if hop == 0 and "h3=" in r.get("headers", {}).get("Alt-Svc", ""):  # it says it speaks HTTP/3
                quic_dropped = quic(true_ip, host)["error"] == "timeout"
        else:
            r = http_get(true_ip, host, path)
            if r["error"] == "reset":
                return {"mechanism": "http.rst"}
            if r["error"] == "timeout":
                return {"mechanism": "tcp.freeze" if r.get("received") else "http.drop"}
            if r.get("status") == 200 and host not in r.get("body", "") and "<title>" in r.get("body", ""):
                return {"mechanism": "http.blockpage"}
        if r.get("error"):
            return {"mechanism": "unexpected", "detail": r}
        loc = r.get("headers", {}).get("Location")
        if r.get("status") in (301, 302) and loc:
            p2 = urlsplit(loc)
            scheme, host, path = p2.scheme, p2.hostname, p2.path or "/"
            continue
        break
    return {"mechanism": "throttle" if throttled else "quic.drop" if quic_dropped else "none"}


OPS = {"dns_udp": dns_udp, "dns_system": dns_system, "tcp": tcp, "http_get": http_get, "tls": tls,
       "udp_probe": udp_probe, "quic": quic, "tls_split": tls_split, "raw_echo": raw_echo, "sniff_rst": sniff_rst,
       "url": url}


def main() -> None:
    ops = json.load(sys.stdin)
    parallel = int(os.environ.get("PLAIN_PARALLEL", "1"))

    def one(op: dict) -> dict:
        try:
            return OPS[op["op"]](*op.get("args", []), **op.get("kwargs", {}))
        except Exception as e:  # report, don't die: the test decides
            return {"error": f"client-crash:{type(e).__name__}:{e}"}

    if parallel > 1:
        with ThreadPoolExecutor(parallel) as ex:
            results = list(ex.map(one, ops))
    else:
        results = [one(op) for op in ops]
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
