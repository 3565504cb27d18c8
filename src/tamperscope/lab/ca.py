"""Certificate authorities of the lab: the lab CA and the interception CA.

The lab CA signs the web farm's certificates, issued on demand for any SNI;
clients in the lab trust it (TAMPERSCOPE_CA_BUNDLE, SSL_CERT_FILE). The
interception CA is what a MITM box uses: clients do not trust it, so
interception shows up as `ssl_unknown_authority`, with its issuer as evidence.
Leaf keys are one ECDSA P-256 key per authority, so issuing is ~1 ms.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import ssl
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_PEM = serialization.Encoding.PEM
MAX_CONTEXTS = 4096  # per-SNI server contexts kept (names are the clients'); past it they are made again


def _name(cn: str, org: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn), x509.NameAttribute(NameOID.ORGANIZATION_NAME, org)])


def create_ca(directory: Path, stem: str, cn: str, org: str) -> None:
    """Write `stem`.pem (certificate) and `stem`.key (private key) into `directory`."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn, org))
        .issuer_name(_name(cn, org))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{stem}.pem").write_bytes(cert.public_bytes(_PEM))
    keyfile = directory / f"{stem}.key"
    keyfile.write_bytes(key.private_bytes(_PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    keyfile.chmod(0o600)


class Issuer:
    """Issues leaf certificates for any name from one CA, with SSLContexts cached per name."""

    def __init__(self, directory: Path, stem: str, cache_dir: Path, alpn: tuple[str, ...] = ("h2", "http/1.1")) -> None:
        self.ca_cert = x509.load_pem_x509_certificate((directory / f"{stem}.pem").read_bytes())
        self.ca_key = serialization.load_pem_private_key((directory / f"{stem}.key").read_bytes(), None)
        self.leaf_key = ec.generate_private_key(ec.SECP256R1())
        self.cache_dir = cache_dir
        cache_dir.mkdir(parents=True, exist_ok=True)
        self.alpn = alpn
        self._contexts: dict[str, ssl.SSLContext] = {}
        self._credentials: dict[str, tuple[x509.Certificate, list[x509.Certificate], Any]] = {}
        self._leaves: dict[str, x509.Certificate] = {}
        self._lock = threading.Lock()
        self._key_pem = self.leaf_key.private_bytes(_PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())

    def leaf(self, name: str) -> x509.Certificate:
        """A certificate for `name`, or for several names given comma-separated (first is the CN)."""
        now = dt.datetime.now(dt.timezone.utc)
        sans: list[x509.GeneralName] = []
        for n in name.split(","):
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(n)))
            except ValueError:
                sans.append(x509.DNSName(n))
        name = name.split(",")[0]
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name[:64])]))
            .issuer_name(self.ca_cert.subject)
            .public_key(self.leaf_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=90))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.ca_cert.public_key()), critical=False)  # type: ignore[arg-type]
            .sign(self.ca_key, hashes.SHA256())  # type: ignore[arg-type]
        )

    def context(self, name: str) -> ssl.SSLContext:
        """A server SSLContext presenting a certificate for `name`.

        Names are the clients' SNIs: the contexts kept are bounded (`MAX_CONTEXTS`), and the PEM file a
        context is loaded from is removed once read, where one file per name stayed on disk for ever (a
        client sending random SNIs filled both)."""
        name = name.lower().rstrip(".")[:253] or "unknown"
        ctx = self._contexts.get(name)
        if ctx is not None:
            return ctx
        with self._lock:
            ctx = self._contexts.get(name)
            if ctx is not None:
                return ctx
            scratch = self.cache_dir / f".loading-{threading.get_ident()}.pem"
            self._write_chain(name, scratch)
            try:
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                ctx.load_cert_chain(scratch)
            finally:
                scratch.unlink(missing_ok=True)
            ctx.set_alpn_protocols(list(self.alpn))
            if len(self._contexts) >= MAX_CONTEXTS:
                self._contexts.clear()
            self._contexts[name] = ctx
            return ctx

    def _write_chain(self, name: str, path: Path) -> None:
        """The leaf for `name`, the CA and the leaf key, as one PEM file. Called under the lock."""
        cert = self._leaf_for(name)
        path.write_bytes(cert.public_bytes(_PEM) + self.ca_cert.public_bytes(_PEM) + self._key_pem)

    def sni_context(self, default_name: str, others: Mapping[str, Issuer] | None = None) -> ssl.SSLContext:
        """A server context that switches to a per-SNI certificate; from another authority for the names
        ``others`` gives one (a service whose certificates are its own CA's, as RiseupVPN's API)."""
        base = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        base.load_cert_chain(self.chain_file(default_name))
        base.set_alpn_protocols(list(self.alpn))
        delegates = {name.lower(): issuer for name, issuer in (others or {}).items()}

        def pick(sslobj: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, _ctx: ssl.SSLContext) -> None:
            if server_name:
                issuer = delegates.get(server_name.lower().rstrip("."), self)
                sslobj.context = issuer.context(server_name)
            else:
                try:
                    local = sslobj.getsockname()[0] if isinstance(sslobj, ssl.SSLSocket) else None
                except OSError:
                    local = None
                if local:
                    sslobj.context = self.context(local)

        base.sni_callback = pick
        return base

    def credentials(self, name: str) -> tuple[x509.Certificate, list[x509.Certificate], Any]:
        """(leaf for `name`, chain, private key), for servers that take objects (the QUIC farm)."""
        name = name.lower().rstrip(".")[:253] or "unknown"
        with self._lock:
            got = self._credentials.get(name)
            if got is None:
                if len(self._credentials) >= 65536:  # names are the clients' SNI: bounded
                    self._credentials.clear()
                got = self._credentials[name] = (self._leaf_for(name), [self.ca_cert], self.leaf_key)
            return got

    def _leaf_for(self, name: str) -> x509.Certificate:
        """One certificate per name, whichever server presents it (TLS over TCP and QUIC show the same, as a
        real site's do). Called under the lock."""
        cert = self._leaves.get(name)
        if cert is None:
            if len(self._leaves) >= 65536:
                self._leaves.clear()
            cert = self._leaves[name] = self.leaf(name)
        return cert

    def chain_file(self, name: str) -> Path:
        """A PEM file for `name` that stays: its leaf, the CA and the leaf key (a server's default certificate, or
        one a program reads by path, as openvpn's --cert and --key)."""
        name = name.lower().rstrip(".")[:253] or "unknown"
        path = self.cache_dir / (hashlib.sha1(name.encode()).hexdigest() + ".pem")
        with self._lock:
            self._write_chain(name, path)
        return path
