"""The emulator process inside one event loop: MQTT on 8883 and the REST API.

:class:`HubServer` is the asyncio core used by ``mcu-gateway hub``;
:mod:`simulators.hub.emulator` runs it in a background thread for tests.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import secrets
import socket
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from simulators.hub.adu.mount import install as install_adu
from simulators.hub.adu.mount import make_adu
from simulators.hub.broker import Broker
from simulators.hub.certs import CertPaths, ensure_certs, server_context
from simulators.hub.configurations import (
    MAX_CONFIGURATIONS,
    MAX_CONFIGURATIONS_FREE,
    ConfigurationEngine,
)
from simulators.hub.dps import Dps
from simulators.hub.errors import StartupError
from simulators.hub.iothub import IoTHub
from simulators.hub.registry import Enrollment, EnrollmentKind
from simulators.hub.rest import SERVICE_POLICY, ServiceApi
from simulators.hub.sas import new_key
from simulators.hub.store import Store
from simulators.hub.throttling import Throttle, Tier
from simulators.hub.timing import Timing

log = logging.getLogger(__name__)

MQTT_PORT = 8883  # fixed in azure-iot-device for both hub and DPS
DEFAULT_GROUP = "default"  # name of the group enrollment every state dir starts with
_STOP_GRACE = 5.0  # seconds to let connection handlers finish at stop


@dataclass(frozen=True)
class HubFacts:
    """Everything a client needs to reach this emulator; printed by ``mcu-gateway hub``."""

    hostname: str  # device-side HostName (and DPS assignedHub)
    mqtt_port: int
    ca_path: str  # PEM trust anchor for both MQTT and HTTPS
    service_hostname: str  # HostName of the service connection string (host:port)
    service_connection_string: str
    dps_host: str  # ProvisioningDeviceClient provisioning_host
    dps_id_scope: str
    group_enrollment: str
    group_enrollment_key: str
    state_dir: str
    # The local Device Update service (simulators/hub/adu): the SDK's endpoint and
    # instance, its bearer token, and the test root keys a gateway must be told to trust.
    adu_endpoint: str = ""
    adu_instance: str = ""
    adu_token: str = ""
    adu_root_keys: str = ""

    def device_connection_string(self, device_id: str, key: str) -> str:
        return f"HostName={self.hostname};DeviceId={device_id};SharedAccessKey={key}"

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


@dataclass(frozen=True)
class _Settings:
    service_key: str
    id_scope: str
    rest_port: int


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(512)
    sock.setblocking(False)
    return sock


class HubServer:
    def __init__(
        self,
        state_dir: Path,
        host: str = "127.0.0.1",
        *,
        timing: Timing | None = None,
        tier: Tier = Tier.S1,
        units: int = 1,
        content_merge: bool = False,
    ) -> None:
        self.state_dir = Path(state_dir).resolve()
        self.host = host
        self.timing = timing or Timing()
        self.tier = tier
        self.throttle = Throttle(tier, units)
        self.content_merge = content_merge
        self._config_soon = asyncio.Event()
        self._configs: ConfigurationEngine | None = None
        self._config_task: asyncio.Task[None] | None = None
        self._mqtt: asyncio.Server | None = None
        self._runner: web.AppRunner | None = None
        self._store: Store | None = None
        self._hub: IoTHub | None = None
        self._dps: Dps | None = None
        self._broker: Broker | None = None
        self._facts: HubFacts | None = None
        self._change = asyncio.Event()

    # ------------------------------------------------------------ accessors

    @property
    def hub(self) -> IoTHub:
        if self._hub is None:
            raise StartupError("hub emulator is not running")
        return self._hub

    @property
    def dps(self) -> Dps:
        if self._dps is None:
            raise StartupError("hub emulator is not running")
        return self._dps

    @property
    def broker(self) -> Broker:
        if self._broker is None:
            raise StartupError("hub emulator is not running")
        return self._broker

    @property
    def facts(self) -> HubFacts:
        if self._facts is None:
            raise StartupError("hub emulator is not running")
        return self._facts

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> HubFacts:
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            certs = ensure_certs(self.state_dir / "certs", self.host)
            self._store = Store(self.state_dir / "hub.sqlite3")
        except (OSError, ValueError) as exc:
            raise StartupError(f"state directory {self.state_dir}: {exc}") from exc
        try:
            await self._start_services(certs, self._store)
        except BaseException:
            await self.stop()
            raise
        return self.facts

    async def _start_services(self, certs: CertPaths, store: Store) -> None:
        settings = self._settings(store)
        self._hub = hub = IoTHub(store, self.host)
        hub.on_change = self._notify
        self._dps = Dps(store, hub, settings.id_scope)
        group = self._dps.enrollments.get((EnrollmentKind.GROUP, DEFAULT_GROUP))
        if group is None:
            group = self._dps.enroll(Enrollment(EnrollmentKind.GROUP, DEFAULT_GROUP))
        self._broker = Broker(hub, self._dps)
        ctx = server_context(certs)
        try:
            mqtt_sock = _bind(self.host, MQTT_PORT)
        except OSError as exc:
            raise StartupError(f"cannot listen on {self.host}:{MQTT_PORT}: {exc}") from exc
        self._mqtt = await asyncio.start_server(
            self._broker.handle, sock=mqtt_sock, ssl=ctx, ssl_handshake_timeout=10.0
        )
        rest_sock = self._rest_socket(store, settings.rest_port)
        rest_port = int(rest_sock.getsockname()[1])
        service_host = f"{self.host}:{rest_port}"
        self._configs = configs = ConfigurationEngine(
            store,
            lambda d, patch: hub.update_twin(d, {"properties": {"desired": patch}}, None),
            limit=MAX_CONFIGURATIONS_FREE if self.tier is Tier.F1 else MAX_CONFIGURATIONS,
            content_merge=self.content_merge,
        )
        self._config_task = asyncio.create_task(self._evaluate_configurations(configs))
        api = ServiceApi(
            hub, settings.service_key, (service_host, self.host), configs,
            timing=self.timing, throttle=self.throttle,
            on_configuration_change=self._config_soon.set,
        )  # fmt: skip
        app = api.app()
        adu_api, adu = make_adu(hub, store, self.state_dir, service_host)
        install_adu(app, adu_api)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.SockSite(self._runner, rest_sock, ssl_context=ctx).start()
        self._facts = HubFacts(
            hostname=self.host,
            mqtt_port=MQTT_PORT,
            ca_path=str(certs.ca_cert),
            service_hostname=service_host,
            service_connection_string=(
                f"HostName={service_host};SharedAccessKeyName={SERVICE_POLICY};"
                f"SharedAccessKey={settings.service_key}"
            ),
            dps_host=self.host,
            dps_id_scope=settings.id_scope,
            group_enrollment=group.name,
            group_enrollment_key=group.primary_key,
            state_dir=str(self.state_dir),
            adu_endpoint=adu.endpoint,
            adu_instance=adu.instance_id,
            adu_token=adu.token,
            adu_root_keys=adu.root_keys_path,
        )
        log.info("hub emulator listening on %s:%d, REST on %s", self.host, MQTT_PORT, service_host)

    def _settings(self, store: Store) -> _Settings:
        """Secrets and the REST port persist, so connection strings survive a restart."""
        values: dict[str, str] = {}
        defaults: dict[str, Callable[[], str]] = {
            "service_key": new_key,
            "id_scope": lambda: "0ne" + secrets.token_hex(4).upper(),
            "rest_port": lambda: "0",
        }
        for name, make in defaults.items():
            value = store.setting(name)
            if value is None:
                value = make()
                store.set_setting(name, value)
            values[name] = value
        return _Settings(values["service_key"], values["id_scope"], int(values["rest_port"]))

    def _rest_socket(self, store: Store, saved_port: int) -> socket.socket:
        if saved_port:
            try:
                return _bind(self.host, saved_port)
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise StartupError(f"cannot listen on {self.host}: {exc}") from exc
                log.warning("REST port %d is taken; choosing another", saved_port)
        try:
            sock = _bind(self.host, 0)
        except OSError as exc:
            raise StartupError(f"cannot listen on {self.host}: {exc}") from exc
        store.set_setting("rest_port", str(sock.getsockname()[1]))
        return sock

    @property
    def configurations(self) -> ConfigurationEngine:
        if self._configs is None:
            raise StartupError("hub emulator is not running")
        return self._configs

    async def _evaluate_configurations(self, configs: ConfigurationEngine) -> None:
        """Every five minutes (model time), and shortly after a configuration changed."""
        while True:
            try:
                configs.evaluate(self.hub.twins)
            except Exception:  # one bad pass must not end the loop
                log.exception("configuration evaluation failed")
            self._config_soon.clear()
            try:
                async with asyncio.timeout(self.timing.evaluation_interval):
                    await self._config_soon.wait()
                await asyncio.sleep(self.timing.first_evaluation)
            except TimeoutError:
                pass

    async def stop(self) -> None:
        if self._config_task is not None:
            self._config_task.cancel()
            await asyncio.gather(self._config_task, return_exceptions=True)
            self._config_task = None
        self._configs = None
        if self._mqtt is not None:
            self._mqtt.close()
        if self._broker is not None:
            await self._broker.close(_STOP_GRACE)
        if self._mqtt is not None:
            await self._mqtt.wait_closed()
            self._mqtt = None
        if self._runner is not None:
            # Abort rather than close: a graceful TLS close waits for the idle
            # client's close_notify, and the loop may be gone by then.
            if self._runner.server is not None:
                for transport in self._runner.server._connections.values():
                    transport.abort()
            await self._runner.cleanup()
            self._runner = None
        if self._hub is not None:
            await self._hub.close()
        if self._store is not None:
            self._store.close()
            self._store = None
        self._hub = self._dps = self._broker = None
        self._facts = None

    # ------------------------------------------------------------ waiting

    def _notify(self) -> None:
        self._change.set()
        self._change = asyncio.Event()

    async def wait_for(self, predicate: Callable[[], Any], within: float) -> Any:
        """Wait until ``predicate()`` is truthy after some hub change; bounded."""
        async with asyncio.timeout(within):
            while not (result := predicate()):
                await self._change.wait()
        return result
