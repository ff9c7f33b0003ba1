"""Throwaway TLS material for loopback servers: a per-run CA and a server certificate.

The server certificate carries an IP SAN, because tests and the demo connect
to 127.x.y.z addresses, not names.
"""

from __future__ import annotations

import datetime as dt
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

from simulators import tls


@dataclass(frozen=True)
class LoopbackPki:
    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        # load_cert_chain reads files only; the key lives there just for this call.
        with tempfile.TemporaryDirectory() as tmp:
            cert, key = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
            cert.write_bytes(self.cert_pem + self.ca_pem)
            key.touch(mode=0o600)
            key.write_bytes(self.key_pem)
            ctx.load_cert_chain(cert, key)
        return ctx


def make_test_pki(ip: str, *, days: int = 2) -> LoopbackPki:
    validity = dt.timedelta(days=days)
    ca, ca_key = tls.make_ca(tls.name("mcu-gateway test CA"), validity)
    cert, key = tls.make_server(ip, ca, ca_key, validity)
    return LoopbackPki(
        ca_pem=tls.cert_pem(ca), cert_pem=tls.cert_pem(cert), key_pem=tls.key_pem(key)
    )
