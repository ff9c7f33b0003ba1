"""Plugging the local Device Update service into the hub emulator's REST server."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from simulators.hub.adu.api import AduApi
from simulators.hub.adu.service import AduService, Settings
from simulators.hub.adu.signer import TestSigner
from simulators.hub.iothub import IoTHub
from simulators.hub.store import Store

INSTANCE_ID = "emulator"


@dataclass(frozen=True)
class AduFacts:
    endpoint: str  # the SDK's endpoint: host:port, no scheme
    instance_id: str
    token: str  # the bearer token the service accepts
    root_keys_path: str  # JWK set of the test root key: a gateway's [adu] test_root_keys_file


class HubTwins:
    """The hub's twins as the ADU service sees them."""

    def __init__(self, hub: IoTHub) -> None:
        self.hub = hub

    def adu_twins(self) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
        return [(t.device_id, t.tags, t.reported) for t in self.hub.twins.values()]

    def model_ids(self) -> dict[str, str]:
        return self.hub.model_ids

    def write_desired(self, device_id: str, patch: dict[str, Any]) -> None:
        self.hub.update_twin(device_id, {"properties": {"desired": patch}}, None)


def make_adu(
    hub: IoTHub, store: Store, state_dir: Path, service_host: str
) -> tuple[AduApi, AduFacts]:
    token = store.setting("adu_token")
    if token is None:
        token = secrets.token_urlsafe(32)
        store.set_setting("adu_token", token)
    adu_dir = state_dir / "adu"
    adu_dir.mkdir(parents=True, exist_ok=True)
    signer = TestSigner.load_or_create(adu_dir)
    keys_path = adu_dir / "test-root-keys.json"
    keys_path.write_text(json.dumps(signer.root_jwks(), indent=1), encoding="utf-8")
    settings = Settings(INSTANCE_ID, f"https://{service_host}/adu-files", adu_dir)
    service = AduService(HubTwins(hub), settings, signer)
    api = AduApi(service, token, INSTANCE_ID)
    return api, AduFacts(service_host, INSTANCE_ID, token, str(keys_path))


def install(app: web.Application, api: AduApi) -> None:
    app.middlewares.insert(0, api.middleware)
    app.add_routes(api.routes())
    app.cleanup_ctx.append(api.ticker)
