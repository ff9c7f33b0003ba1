"""One recipe for throwaway TLS: the image server's per-run PKI and the hub's CA agree."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from cryptography import x509

from simulators.hub.certs import ensure_certs
from simulators.image_tls import make_test_pki


def _check(ca_pem: bytes, cert_pem: bytes, host: str) -> None:
    ca = x509.load_pem_x509_certificate(ca_pem)
    cert = x509.load_pem_x509_certificate(cert_pem)
    cert.verify_directly_issued_by(ca)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address(host) in san.get_values_for_type(x509.IPAddress)
    # Strict verifiers (OpenSSL 3, X509_STRICT) want the key identifiers.
    ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_image_server_pki(tmp_path: Path) -> None:
    pki = make_test_pki("127.0.0.9")
    _check(pki.ca_pem, pki.cert_pem, "127.0.0.9")
    pki.server_context()  # the key matches the certificate


def test_hub_certs_are_kept_and_remade_for_a_new_host(tmp_path: Path) -> None:
    paths = ensure_certs(tmp_path, "127.0.0.8")
    _check(paths.ca_cert.read_bytes(), paths.server_cert.read_bytes(), "127.0.0.8")
    ca = paths.ca_cert.read_bytes()
    again = ensure_certs(tmp_path, "127.0.0.7")
    assert again.ca_cert.read_bytes() == ca  # same CA: a running gateway keeps trusting it
    _check(ca, again.server_cert.read_bytes(), "127.0.0.7")
    assert (tmp_path / "server.key").stat().st_mode & 0o777 == 0o600
