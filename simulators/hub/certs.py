"""A per-state-directory CA and a server certificate with an IP SAN.

The device SDK always checks the hostname, and for a 127.x.y.z host that means
an IP SAN. Both are reused on restart so a running gateway keeps trusting the
hub; the server certificate is remade (by the same CA) when the host changes.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from simulators import tls

_VALIDITY = dt.timedelta(days=3650)
_ORG = "mcu-gateway hub emulator"


@dataclass(frozen=True)
class CertPaths:
    ca_cert: Path
    server_cert: Path
    server_key: Path


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _make_ca(directory: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert, key = tls.make_ca(tls.name("mcu-gateway emulator CA", _ORG), _VALIDITY)
    _write_private(directory / "ca.key", tls.key_pem(key))
    (directory / "ca.pem").write_bytes(tls.cert_pem(cert))
    return cert, key


def _load_ca(directory: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert = x509.load_pem_x509_certificate((directory / "ca.pem").read_bytes())
    key = serialization.load_pem_private_key((directory / "ca.key").read_bytes(), None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("ca.key is not an EC key")
    return cert, key


def _server_covers(path: Path, host: str) -> bool:
    if not path.exists():
        return False
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    return ipaddress.ip_address(host) in san.get_values_for_type(x509.IPAddress)


def _make_server(
    directory: Path, host: str, ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey
) -> None:
    cert, key = tls.make_server(
        host, ca, ca_key, _VALIDITY, organization=_ORG, dns_names=("localhost",)
    )
    _write_private(directory / "server.key", tls.key_pem(key))
    (directory / "server.pem").write_bytes(tls.cert_pem(cert))


def ensure_certs(directory: Path, host: str) -> CertPaths:
    """Create or reuse the CA, and a server certificate valid for ``host``."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = CertPaths(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    if paths.ca_cert.exists() and (directory / "ca.key").exists():
        ca, ca_key = _load_ca(directory)
    else:
        ca, ca_key = _make_ca(directory)
    if not _server_covers(paths.server_cert, host):
        _make_server(directory, host, ca, ca_key)
    return paths


def server_context(paths: CertPaths) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(paths.server_cert, paths.server_key)
    return ctx
