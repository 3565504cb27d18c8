"""Traced TLS over an existing TCP stream, keeping the peer's chain even when it fails to verify.

We run OpenSSL through ``ssl.SSLObject`` and memory BIOs over our own
:class:`~tamperscope.netx.stream.TCPStream` instead of ``loop.start_tls``: that
way a FIN and an RST during the handshake stay distinguishable
(``eof_error`` vs ``connection_reset``) and the ``SSLObject`` survives a failed
verification, so ``get_unverified_chain()`` (public on 3.13, on the C object
on 3.11/3.12) still yields the certificates an interception box presented:
that chain is the evidence of ``tls.mitm``.

Verification is OpenSSL's, during the handshake (``failure`` is
``ssl_unknown_authority`` / ``ssl_invalid_hostname`` / ``ssl_invalid_certificate``
from the ``verify_code``). With ``verify=False`` the handshake completes
(``no_tls_verify: true``) and the chain is checked afterwards with
``cryptography`` to fill ``x_verified``/``x_verify_failure``, so a nettest can
both read an interception blockpage and know the certificate was bad.

SSL contexts are built once per ``(ca_bundle, alpn, verify, check_hostname)``
and cached: loading a CA bundle costs milliseconds, a handshake must not.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import hashlib
import ipaddress
import ssl
import warnings
from collections.abc import Sequence
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509 import verification as xv
from cryptography.x509.general_name import DNSName, IPAddress

from tamperscope.model import failures as F
from tamperscope.netx.classify import TLSError, classify
from tamperscope.netx.stream import READ_SIZE, TCPStream
from tamperscope.netx.trace import Record, Trace, binary

DEFAULT_ALPN = ("h2", "http/1.1")
DEFAULT_TLS_TIMEOUT = 10.0
_ENCODING_DER = 2  # _ssl.ENCODING_DER

# OpenSSL's TLS 1.2 names -> IANA names (what OONI's Go probe writes); TLS 1.3 names already match.
_IANA_CIPHERS = {
    "ECDHE-ECDSA-AES128-GCM-SHA256": "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256": "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384": "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384": "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305": "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    "ECDHE-RSA-CHACHA20-POLY1305": "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    "ECDHE-ECDSA-AES128-SHA256": "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
    "ECDHE-RSA-AES128-SHA256": "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
    "ECDHE-ECDSA-AES128-SHA": "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    "ECDHE-ECDSA-AES256-SHA": "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    "ECDHE-RSA-AES128-SHA": "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "ECDHE-RSA-AES256-SHA": "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    "DHE-RSA-AES128-GCM-SHA256": "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256",
    "DHE-RSA-AES256-GCM-SHA384": "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384",
    "AES128-GCM-SHA256": "TLS_RSA_WITH_AES_128_GCM_SHA256",
    "AES256-GCM-SHA384": "TLS_RSA_WITH_AES_256_GCM_SHA384",
    "AES128-SHA": "TLS_RSA_WITH_AES_128_CBC_SHA",
    "AES256-SHA": "TLS_RSA_WITH_AES_256_CBC_SHA",
}


@functools.lru_cache(maxsize=64)
def client_context(ca_bundle: str | None = None, alpn: tuple[str, ...] = DEFAULT_ALPN,
                   verify: bool = True, check_hostname: bool = True, extra_ca: str | None = None) -> ssl.SSLContext:
    """A cached client context. ``ca_bundle=None`` means the system's trust store; ``extra_ca`` (PEM text) is
    trusted beside it (a service's own CA that its apps pin, as Signal's)."""
    if verify:
        ctx = ssl.create_default_context(cafile=ca_bundle)
        if extra_ca:
            ctx.load_verify_locations(cadata=extra_ca)
        ctx.check_hostname = check_hostname
    else:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


class TLSStream:
    """A TLS session over a :class:`TCPStream`; closing it closes the TCP stream too."""

    __slots__ = ("tcp", "address", "transaction_id", "trace", "server_name", "_sslobj",
                 "_incoming", "_outgoing", "_alpn")

    def __init__(self, tcp: TCPStream, sslobj: ssl.SSLObject, incoming: ssl.MemoryBIO,
                 outgoing: ssl.MemoryBIO, server_name: str | None) -> None:
        self.tcp = tcp
        self.address = tcp.address
        self.transaction_id = tcp.transaction_id
        self.trace = tcp.trace
        self.server_name = server_name
        self._sslobj = sslobj
        self._incoming = incoming
        self._outgoing = outgoing
        self._alpn = sslobj.selected_alpn_protocol()

    @property
    def alpn(self) -> str | None:
        return self._alpn

    async def read(self, max_bytes: int = READ_SIZE) -> bytes:
        """Up to ``max_bytes`` of plaintext; ``b""`` at close_notify or at a bare EOF."""
        sslobj = self._sslobj
        while True:
            try:
                return sslobj.read(max_bytes)
            except ssl.SSLWantReadError:
                await self._flush()
                data = await self.tcp.read(READ_SIZE)
                if data:
                    self._incoming.write(data)
                else:
                    self._incoming.write_eof()
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                # A truncated body is still detected by the HTTP framing above us.
                return b""

    async def write(self, data: bytes) -> None:
        self._sslobj.write(data)
        await self._flush()

    async def _flush(self) -> None:
        pending = self._outgoing.read()
        if pending:
            await self.tcp.write(pending)

    async def aclose(self) -> None:
        """Send close_notify when possible (without waiting for the peer's), then close TCP."""
        try:
            self._sslobj.unwrap()
        except (ssl.SSLError, ValueError):
            pass
        pending = self._outgoing.read()
        if pending:
            try:
                await self.tcp.write(pending, drain=False)  # the TCP close bounds the wait
            except OSError:
                pass
        await self.tcp.aclose()

    async def __aenter__(self) -> TLSStream:
        return self

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        await self.aclose()


async def handshake(tcp: TCPStream, *, server_name: str | None, trace: Trace | None = None,
                    alpn: Sequence[str] = DEFAULT_ALPN, ca_bundle: str | None = None,
                    verify: bool = True, timeout: float = DEFAULT_TLS_TIMEOUT,
                    tags: Sequence[str] = (), extra_ca: str | None = None) -> TLSStream:
    """TLS client handshake over ``tcp`` with SNI ``server_name``, recorded in ``tls_handshakes``.

    On failure the TCP stream is closed and :class:`TLSError` is raised, carrying
    the failure and any certificates received (also written in the record).
    """
    trace = tcp.trace if trace is None else trace
    check_hostname = verify and bool(server_name)
    ctx = client_context(ca_bundle, tuple(alpn), verify, check_hostname, extra_ca)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    sslobj = ctx.wrap_bio(incoming, outgoing, server_hostname=server_name or None)
    t0 = trace.now()
    try:
        async with asyncio.timeout(timeout):
            await _drive_handshake(tcp, sslobj, incoming, outgoing)
    except BaseException as exc:
        failure = classify(exc, operation=F.TLS_HANDSHAKE)
        chain = peer_chain(sslobj)
        trace.tls_handshakes.append(_record(trace, tcp, server_name, t0, failure, chain, None,
                                            verify, None, tags))
        await _abandon(tcp, outgoing)
        if isinstance(exc, Exception):
            raise TLSError(failure, endpoint=tcp.address, peer_certificates=chain) from exc
        raise
    chain = peer_chain(sslobj)
    try:
        verify_failure = None if verify else verify_offline(chain, server_name, ca_bundle)
    except Exception:  # noqa: BLE001 - a certificate the checker cannot even read must not leak the stream
        verify_failure = F.SSL_INVALID_CERTIFICATE
    trace.tls_handshakes.append(_record(trace, tcp, server_name, t0, None, chain, sslobj,
                                        verify, verify_failure, tags))
    return TLSStream(tcp, sslobj, incoming, outgoing, server_name)


async def _drive_handshake(tcp: TCPStream, sslobj: ssl.SSLObject, incoming: ssl.MemoryBIO,
                           outgoing: ssl.MemoryBIO) -> None:
    while True:
        try:
            sslobj.do_handshake()
            break
        except ssl.SSLWantReadError:
            pending = outgoing.read()
            if pending:
                await tcp.write(pending)
            data = await tcp.read(READ_SIZE)
            if data:
                incoming.write(data)
            else:
                raise EOFError("EOF during the TLS handshake") from None
    pending = outgoing.read()
    if pending:
        await tcp.write(pending)


async def _abandon(tcp: TCPStream, outgoing: ssl.MemoryBIO) -> None:
    """Send our alert if OpenSSL produced one, then close the TCP stream."""
    pending = outgoing.read()
    try:
        if pending:
            await tcp.write(pending, drain=False)
    except OSError:
        pass
    finally:
        await tcp.aclose()


def peer_chain(sslobj: ssl.SSLObject) -> tuple[bytes, ...]:
    """The certificates the peer sent (DER, leaf first), verified or not; ``()`` if none."""
    public = getattr(sslobj, "get_unverified_chain", None)  # Python >= 3.13
    if public is not None:
        return tuple(public() or ())
    inner = getattr(sslobj, "_sslobj", None)
    private = getattr(inner, "get_unverified_chain", None)  # C object, Python >= 3.10
    if private is not None:
        certs = private()
        return tuple(cert.public_bytes(_ENCODING_DER) for cert in certs) if certs else ()
    try:
        leaf = sslobj.getpeercert(binary_form=True)
    except ValueError:
        return ()
    return (leaf,) if leaf else ()


@functools.lru_cache(maxsize=1024)
def leaf_info(der: bytes) -> tuple[str | None, str | None]:
    """``(issuer RFC 4514 string, hex SHA-256 of the SubjectPublicKeyInfo)`` of a certificate."""
    try:
        cert = x509.load_der_x509_certificate(der)
        spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        return cert.issuer.rfc4514_string(), hashlib.sha256(spki).hexdigest()
    except Exception:  # hostile input: an unparsable certificate is evidence, not a crash
        return None, None


def _record(trace: Trace, tcp: TCPStream, server_name: str | None, t0: float, failure: str | None,
            chain: tuple[bytes, ...], sslobj: ssl.SSLObject | None, verify: bool,
            verify_failure: str | None, tags: Sequence[str]) -> Record:
    cipher = version = alpn = ""
    if sslobj is not None:
        name = (sslobj.cipher() or ("", "", 0))[0]
        cipher = _IANA_CIPHERS.get(name, name)
        version = sslobj.version() or ""
        alpn = sslobj.selected_alpn_protocol() or ""
    issuer, spki = leaf_info(chain[0]) if chain else (None, None)
    record: Record = {
        "network": "tcp", "address": tcp.address, "cipher_suite": cipher, "failure": failure,
        "negotiated_protocol": alpn, "no_tls_verify": not verify,
        "peer_certificates": [binary(der) for der in chain] if chain else None,
        "server_name": server_name or "", "t0": t0, "t": trace.now(), "tags": list(tags),
        "tls_version": version, "transaction_id": tcp.transaction_id,
        "x_verified": failure is None and (verify or verify_failure is None),
        "x_issuer": issuer, "x_spki_sha256": spki,
    }
    if not verify:
        record["x_verify_failure"] = verify_failure
    return record


# --- offline verification (for verify=False) ------------------------------------------------

@functools.lru_cache(maxsize=16)
def _store(ca_bundle: str | None) -> xv.Store | None:
    path = ca_bundle
    if path is None:
        paths = ssl.get_default_verify_paths()
        path = paths.cafile or paths.openssl_cafile
    try:
        with open(path, "rb") as fh:
            pem = fh.read()
    except (OSError, TypeError):
        return None
    certs: list[x509.Certificate] = []
    for block in pem.split(b"-----END CERTIFICATE-----"):
        if b"-----BEGIN CERTIFICATE-----" in block:
            try:
                certs.append(x509.load_pem_x509_certificate(block + b"-----END CERTIFICATE-----\n"))
            except ValueError:
                continue
    return xv.Store(certs) if certs else None


def _permissive(policy: Any, required: type[x509.ExtensionType]) -> Any:
    return policy.require_present(required, xv.Criticality.AGNOSTIC, None)


def verify_offline(chain: Sequence[bytes], server_name: str | None,
                   ca_bundle: str | None) -> str | None:
    """Check ``chain`` for ``server_name`` against ``ca_bundle``; the failure, or ``None``.

    Mirrors OpenSSL's checks (path to a root, validity, name) without the Web PKI
    profile's extra extension rules, which OpenSSL does not enforce either.
    cryptography gives no error codes, so its message is matched here.
    """
    if not chain:
        return F.SSL_FAILED_HANDSHAKE
    # cryptography warns about what servers send (a serial number of 0, negative serials), and so do nine
    # roots of Debian's store: the server's certificate is hostile input, not the caller's mistake
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _verify_offline(chain, server_name, ca_bundle)


def _verify_offline(chain: Sequence[bytes], server_name: str | None, ca_bundle: str | None) -> str | None:
    store = _store(ca_bundle)
    if store is None:
        return F.SSL_UNKNOWN_AUTHORITY
    try:
        certs = [x509.load_der_x509_certificate(der) for der in chain]
        name: DNSName | IPAddress
        try:
            name = IPAddress(ipaddress.ip_address(server_name or ""))
        except ValueError:
            name = DNSName(server_name or "")
        builder = (xv.PolicyBuilder().store(store)
                   .time(datetime.datetime.now(datetime.timezone.utc))
                   .extension_policies(
                       ca_policy=_permissive(xv.ExtensionPolicy.permit_all(), x509.BasicConstraints),
                       ee_policy=_permissive(xv.ExtensionPolicy.permit_all(),
                                             x509.SubjectAlternativeName)))
        builder.build_server_verifier(name).verify(certs[0], certs[1:])
    except xv.VerificationError as exc:
        # what cryptography says, without the certificate it names after " (encountered processing": the server
        # wrote that part, and an expired certificate for "match.test" read as a wrong name (a helper's remark)
        text = str(exc).lower().split(" (encountered", 1)[0]
        if "subjectaltname" in text or "name" in text and "match" in text:
            return F.SSL_INVALID_HOSTNAME
        if "expired" in text or "not yet valid" in text or "validity" in text or "not valid at validation time" in text:
            return F.SSL_INVALID_CERTIFICATE
        if "candidates exhausted" in text or "issuer" in text:
            return F.SSL_UNKNOWN_AUTHORITY
        return F.SSL_INVALID_CERTIFICATE
    except ValueError:
        return F.SSL_INVALID_CERTIFICATE
    return None
