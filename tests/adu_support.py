"""Helpers shared by the ADU tests: a static file server for imports, the SDK client, packages."""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from firmware import keys, package
from gateway.adu.importmanifest import SUFFIX, import_manifest
from gateway.cli.adu_service import StaticToken, make_client
from simulators.hub import HubFacts


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serve_dir(root: Path, host: str) -> Iterator[str]:
    """A plain HTTP server for ``root`` on ``host`` (where a publisher uploads files)."""
    handler = functools.partial(_Quiet, directory=str(root))
    server = http.server.ThreadingHTTPServer((host, 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="adu-files", daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def adu_client(facts: HubFacts, token: str | None = None) -> Any:
    """Microsoft's DeviceUpdateClient for the emulator (see make_client for the port)."""
    return make_client(
        facts.adu_endpoint,
        facts.adu_instance,
        StaticToken(token or facts.adu_token),
        ca_file=Path(facts.ca_path),
    )


def publish(
    root: Path,
    key: keys.PrivateKey,
    version: str,
    *,
    model: str,
    manufacturer: str = "contoso",
    name: str = "sensor-app",
    payload: bytes | None = None,
) -> tuple[Path, bytes]:
    """A signed package and its import manifest in ``root``; returns (manifest path, package)."""
    data = payload if payload is not None else (version.encode() * 512)[:4096]
    manifest = package.manifest_for(
        data, provider="contoso", name=name, version=version, manufacturer=manufacturer, model=model
    )
    blob = package.build(manifest, data, key)
    file_name = f"{name}-{model}-{version}.mcufw"
    (root / file_name).write_bytes(blob)
    doc = import_manifest(manifest, file_name=file_name, package=blob)
    path = root / f"{name}-{model}-{version}{SUFFIX}"
    path.write_text(json.dumps(doc))
    return path, blob
