"""``fleet deploy``'s package check takes a ``user:password@`` URI as the gateway does
(issue 17.8): Basic auth to the host, never the userinfo read as part of the host name."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from gateway.fleet.errors import FleetError
from gateway.fleet.rollout import Package
from gateway.fleet.uri import check_package
from tests.net import addr

SHA = "ab" * 32
CREDENTIAL = "bob:PW-s3cr3t"


class _Handler(BaseHTTPRequestHandler):
    seen: ClassVar[list[str | None]] = []

    def do_HEAD(self) -> None:
        auth = self.headers.get("Authorization")
        self.seen.append(auth)
        good = "Basic " + base64.b64encode(CREDENTIAL.encode()).decode()
        self.send_response(200 if auth == good else 401)
        self.send_header("Content-Length", "100")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer((addr(9, 17), 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"{addr(9, 17)}:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def test_a_user_password_uri_is_checked_with_basic_auth(server: str) -> None:
    _Handler.seen = []
    check_package(Package("2.0.0", f"http://{CREDENTIAL}@{server}/fw.mcufw", SHA, 100))
    assert _Handler.seen == ["Basic " + base64.b64encode(CREDENTIAL.encode()).decode()]


def test_a_wrong_password_fails_without_showing_it(server: str) -> None:
    with pytest.raises(FleetError) as err:
        check_package(Package("2.0.0", f"http://bob:wrong-pw@{server}/fw.mcufw", SHA, 100))
    assert "HTTP 401" in str(err.value)
    assert "wrong-pw" not in str(err.value) and "bob" not in str(err.value)
