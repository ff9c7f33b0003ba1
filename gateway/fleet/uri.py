"""Checking a package URI before a rollout sends every MCU to it.

A HEAD request (the gateways will GET the same URL): a URI that does not
answer 2xx, or whose length differs from ``--size``, is refused up front
instead of failing on every MCU of the first ring.
"""

from __future__ import annotations

import base64
import ssl
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from firmware.urls import redact_url
from gateway.fleet.errors import FleetError
from gateway.fleet.rollout import Package

TIMEOUT_S = 15.0


def check_package(package: Package, ca_file: Path | None = None) -> None:
    uri = package.uri
    try:
        context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    except (OSError, ssl.SSLError) as exc:
        raise FleetError(f"--package-ca-file {ca_file}: {exc}") from None
    request = _head(uri)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S, context=context) as response:
            length = response.headers.get("Content-Length")
    except urllib.error.HTTPError as exc:
        exc.close()  # its response holds the connection
        raise FleetError(
            f"package URI fails: HTTP {exc.code} {exc.reason} from {redact_url(uri)}"
        ) from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise FleetError(f"package URI fails: {reason} ({redact_url(uri)})") from None
    if length is not None and length.isdigit() and int(length) != package.size:
        raise FleetError(
            f"package URI serves {length} bytes but --size says {package.size} ({redact_url(uri)})"
        )


def _head(uri: str) -> urllib.request.Request:
    """A HEAD request; ``user:password@`` becomes Basic auth, as the gateway's GET does.

    urllib would take the userinfo for part of the host name. The header is
    *unredirected*, so a redirect to another host never receives it.
    """
    try:
        parts = urllib.parse.urlsplit(uri)
        host, port = parts.hostname, parts.port
    except ValueError:
        return urllib.request.Request(uri, method="HEAD")  # the request reports it
    if "@" not in parts.netloc or host is None:
        return urllib.request.Request(uri, method="HEAD")
    netloc = f"[{host}]" if ":" in host else host
    netloc += "" if port is None else f":{port}"
    user = urllib.parse.unquote(parts.username or "")
    password = urllib.parse.unquote(parts.password or "")
    bare = urllib.parse.urlunsplit(parts._replace(netloc=netloc))
    request = urllib.request.Request(bare, method="HEAD")
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    request.add_unredirected_header("Authorization", f"Basic {token}")
    return request
