"""Identity translation: an IoT Hub device identity for every MCU, and for the gateway.

Three providers share the :class:`IdentityProvider` protocol; pick one with
:func:`provider_from_config`:

- :class:`DpsProvider` registers through a DPS group enrollment. The per-device
  key is derived (HMAC-SHA256 of the registration id with the group key) each
  time it is needed and never stored. Successful assignments (hub hostname
  only) are cached in an :class:`AssignmentCache` (the journal) so a restart
  goes straight to the hub.
- :class:`RegistryProvider` creates the device with a service connection
  string through the official ``IoTHubRegistryManager`` if it is missing,
  then reads its primary key. That SDK is blocking, so it runs in a thread.
- :class:`StaticProvider` looks connection strings up by MCU uid.

The gateway's own identity is ``await provider.credentials(gateway_device_id)``
(``uid=None``). If the hub later refuses credentials (``CloudAuthError``), call
``provider.forget(device_id)`` and ask again: that re-registers instead of
reusing a stale assignment.

Device ids come from :func:`device_id_for` (``{model}-{uid hex}``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.config import DpsSettings, HubMode, HubSettings, RegistrySettings, StaticSettings
from gateway.errors import (
    CloudAuthError,
    CloudTimeout,
    ConfigError,
    IdentityError,
    JournalError,
)
from gateway.naming import check_device_id, device_id_for, normalise_uid
from gateway.secret import Secret

__all__ = [
    "AssignmentCache",
    "DeviceCredentials",
    "DpsProvider",
    "IdentityProvider",
    "RegistryProvider",
    "StaticProvider",
    "derive_device_key",
    "device_id_for",
    "provider_from_config",
]

log = logging.getLogger(__name__)
DEFAULT_TIMEOUT = 30.0


@dataclass(frozen=True)
class DeviceCredentials:
    """What a device client needs; exactly one of ``symmetric_key``/``connection_string``."""

    hostname: str  # the IoT Hub the device lives in
    device_id: str
    symmetric_key: Secret | None = None
    connection_string: Secret | None = None
    gateway_hostname: str | None = None  # connect through an Edge/protocol gateway
    ca_pem: str | None = None  # server trust anchor as PEM text; None: system store

    def __post_init__(self) -> None:
        if (self.symmetric_key is None) == (self.connection_string is None):
            raise ValueError("exactly one of symmetric_key and connection_string is needed")


class IdentityProvider(Protocol):
    mode: HubMode

    async def credentials(self, device_id: str, *, uid: str | None = None) -> DeviceCredentials:
        """Credentials for ``device_id``; ``uid`` (hex) is the MCU's, None for the gateway."""
        ...

    def forget(self, device_id: str) -> None:
        """Drop anything cached for ``device_id`` so the next call provisions afresh."""
        ...


class AssignmentCache(Protocol):
    """Where a provider remembers device id -> hub hostname; :class:`Journal` is one."""

    def get_assignment(self, device_id: str) -> str | None: ...
    def put_assignment(self, device_id: str, hostname: str) -> None: ...
    def drop_assignment(self, device_id: str) -> None: ...


def derive_device_key(group_key: Secret, registration_id: str) -> Secret:
    """DPS group enrollment: ``b64(HMAC-SHA256(b64decode(group_key), registration_id))``."""
    try:
        raw = base64.b64decode(group_key.reveal(), validate=True)
    except (binascii.Error, ValueError):
        raise IdentityError("the DPS group key is not valid base64") from None
    digest = hmac.new(raw, registration_id.encode("utf-8"), hashlib.sha256).digest()
    return Secret(base64.b64encode(digest).decode("ascii"))


# ---------------------------------------------------------------- DPS


class DpsProvider:
    mode = HubMode.DPS

    def __init__(
        self,
        settings: DpsSettings,
        *,
        ca_pem: str | None,
        cache: AssignmentCache | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        gateway_hostname: str | None = None,
    ) -> None:
        self._settings = settings
        self._ca_pem = ca_pem
        self._cache = cache
        self._timeout = timeout
        self._gateway_hostname = gateway_hostname
        self._stale: set[str] = set()  # forgotten, though the cache could not drop them

    async def credentials(self, device_id: str, *, uid: str | None = None) -> DeviceCredentials:
        check_device_id(device_id)
        key = derive_device_key(self._settings.group_key, device_id)
        cached = self._cache is not None and device_id not in self._stale
        hostname = self._cache.get_assignment(device_id) if self._cache and cached else None
        if hostname is None:
            hostname, device_id = await self._register(device_id, key)
            if self._cache is not None:
                try:
                    self._cache.put_assignment(device_id, hostname)
                    self._stale.discard(device_id)
                except JournalError as exc:  # a full disk: register again next start
                    log.warning("assignment of %s not cached: %s", device_id, exc)
        return DeviceCredentials(
            hostname=hostname,
            device_id=device_id,
            symmetric_key=key,
            gateway_hostname=self._gateway_hostname,
            ca_pem=self._ca_pem,
        )

    def forget(self, device_id: str) -> None:
        if self._cache is not None:
            try:
                self._cache.drop_assignment(device_id)
            except JournalError as exc:
                self._stale.add(device_id)
                log.warning("stale assignment of %s not dropped: %s", device_id, exc)

    async def _register(self, registration_id: str, key: Secret) -> tuple[str, str]:
        from azure.iot.device import exceptions as sdk
        from azure.iot.device.aio import ProvisioningDeviceClient

        options: dict[str, Any] = {}
        if self._ca_pem is not None:
            options["server_verification_cert"] = self._ca_pem
        client = ProvisioningDeviceClient.create_from_symmetric_key(
            provisioning_host=self._settings.dps_host,
            registration_id=registration_id,
            id_scope=self._settings.id_scope,
            symmetric_key=key.reveal(),
            **options,
        )
        where = f"DPS registration of {registration_id} at {self._settings.dps_host}"
        try:
            async with asyncio.timeout(self._timeout):
                result = await client.register()
        except TimeoutError:
            raise CloudTimeout(f"{where}: no answer within {self._timeout:g}s") from None
        except sdk.CredentialError as exc:
            raise CloudAuthError(f"{where}: credentials refused") from exc
        except (sdk.ClientError, sdk.ServiceError, sdk.OperationTimeout) as exc:
            raise IdentityError(f"{where}: {type(exc).__name__}") from exc
        state = getattr(result, "registration_state", None)
        if result is None or result.status != "assigned" or state is None:
            status = getattr(result, "status", None)
            raise IdentityError(f"{where}: status {status!r}, not 'assigned'")
        log.info("registered %s with DPS: assigned to %s", registration_id, state.assigned_hub)
        return str(state.assigned_hub), str(state.device_id)


# ---------------------------------------------------------------- registry


class RegistryProvider:
    mode = HubMode.REGISTRY

    def __init__(
        self,
        settings: RegistrySettings,
        *,
        hostname: str | None,
        ca_file: str | None,
        ca_pem: str | None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self._settings = settings
        fields = _connection_string_fields(settings.service_connection_string)
        # The device endpoint is the service HostName without a port unless configured.
        self._hostname = hostname or fields.get("HostName", "").split(":")[0]
        if not self._hostname:
            raise IdentityError("service connection string has no HostName")
        self._ca_file = ca_file
        self._ca_pem = ca_pem
        self._timeout = timeout
        self._manager: Any = None
        self._lock = asyncio.Lock()

    async def credentials(self, device_id: str, *, uid: str | None = None) -> DeviceCredentials:
        check_device_id(device_id)
        key = await self._call(f"reading/creating device {device_id}", self._ensure, device_id)
        return DeviceCredentials(
            hostname=self._hostname,
            device_id=device_id,
            symmetric_key=Secret(key),
            ca_pem=self._ca_pem,
        )

    def forget(self, device_id: str) -> None:
        """Nothing is cached: the key is read from the registry every time."""

    async def _call(self, what: str, fn: Any, *args: Any) -> Any:
        # One registry call at a time: the manager's HTTP session is not thread-safe.
        async with self._lock:
            try:
                async with asyncio.timeout(self._timeout):
                    return await asyncio.to_thread(fn, *args)
            except TimeoutError:
                raise CloudTimeout(
                    f"registry: {what}: no answer within {self._timeout:g}s"
                ) from None

    def _manager_(self) -> Any:
        if self._manager is None:
            from azure.iot.hub import IoTHubRegistryManager

            manager = IoTHubRegistryManager.from_connection_string(
                self._settings.service_connection_string.reveal()
            )
            connection = manager.protocol.config.connection
            connection.timeout = self._timeout
            if self._ca_file is not None:
                connection.verify = self._ca_file
            self._manager = manager
        return self._manager

    def _ensure(self, device_id: str) -> str:
        """Runs in a worker thread: get the device, creating it if it is missing."""
        from msrest.exceptions import ClientRequestError, HttpOperationError

        manager = self._manager_()
        try:
            try:
                device = manager.get_device(device_id)
            except HttpOperationError as exc:
                if _status(exc) != 404:
                    raise
                device = self._create(manager, device_id)
        except HttpOperationError as exc:
            status = _status(exc)
            if status in (401, 403):
                raise CloudAuthError(
                    f"registry refused the service credentials ({status})"
                ) from exc
            raise IdentityError(f"registry: device {device_id}: HTTP {status}") from exc
        except ClientRequestError as exc:
            raise IdentityError(f"registry: device {device_id}: {type(exc).__name__}") from exc
        auth = device.authentication
        key = getattr(getattr(auth, "symmetric_key", None), "primary_key", None)
        if not key:
            raise IdentityError(f"registry: device {device_id} has no symmetric key")
        return str(key)

    def _create(self, manager: Any, device_id: str) -> Any:
        from msrest.exceptions import HttpOperationError

        primary, secondary = _new_key(), _new_key()
        try:
            device = manager.create_device_with_sas(device_id, primary, secondary, "enabled")
        except HttpOperationError as exc:
            if _status(exc) != 409:
                raise
            # Someone else created it between our GET and PUT; theirs wins.
            return manager.get_device(device_id)
        log.info("created device %s in the registry", device_id)
        return device


def _status(exc: Any) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def _new_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def _connection_string_fields(secret: Secret) -> dict[str, str]:
    fields: dict[str, str] = {}
    for part in secret.reveal().split(";"):
        name, sep, value = part.partition("=")
        if sep:
            fields[name.strip()] = value.strip()
    return fields


# ---------------------------------------------------------------- static


class StaticProvider:
    mode = HubMode.STATIC

    def __init__(
        self, settings: StaticSettings, *, gateway_device_id: str, ca_pem: str | None
    ) -> None:
        self._settings = settings
        self._gateway_device_id = gateway_device_id
        self._ca_pem = ca_pem

    async def credentials(self, device_id: str, *, uid: str | None = None) -> DeviceCredentials:
        if uid is None:
            if device_id != self._gateway_device_id:
                raise IdentityError(f"static mode: {device_id} is neither an MCU nor the gateway")
            secret: Secret | None = self._settings.gateway_connection_string
        else:
            secret = self._settings.connection_strings.get(normalise_uid(uid))
        if secret is None:
            raise IdentityError(f"static mode: no connection string for uid {uid} ({device_id})")
        fields = _connection_string_fields(secret)
        hostname, actual = fields.get("HostName"), fields.get("DeviceId")
        if not hostname or not actual or "SharedAccessKey" not in fields:
            raise IdentityError(
                f"static mode: the connection string for {device_id} lacks HostName, "
                "DeviceId or SharedAccessKey"
            )
        return DeviceCredentials(
            hostname=hostname,
            device_id=actual,  # the operator's device id wins over the derived one
            connection_string=secret,
            gateway_hostname=fields.get("GatewayHostName"),
            ca_pem=self._ca_pem,
        )

    def forget(self, device_id: str) -> None:
        """Nothing to forget: the strings come from the configuration."""


# ---------------------------------------------------------------- factory


def provider_from_config(
    hub: HubSettings, *, gateway_device_id: str, cache: AssignmentCache | None = None
) -> IdentityProvider:
    """The provider the ``[hub]`` section selects."""
    try:
        ca_pem = hub.ca_pem
    except OSError as exc:
        raise ConfigError(str(hub.ca_file), "hub.ca_file", f"cannot read: {exc.strerror}") from None
    timeout = hub.connect_timeout_s
    if hub.mode is HubMode.DPS and hub.dps is not None:
        return DpsProvider(hub.dps, ca_pem=ca_pem, cache=cache, timeout=timeout)
    if hub.mode is HubMode.REGISTRY and hub.registry is not None:
        return RegistryProvider(
            hub.registry,
            hostname=hub.hostname,
            ca_file=str(hub.ca_file) if hub.ca_file else None,
            ca_pem=ca_pem,
            timeout=timeout,
        )
    if hub.mode is HubMode.STATIC and hub.static is not None:
        return StaticProvider(hub.static, gateway_device_id=gateway_device_id, ca_pem=ca_pem)
    raise ConfigError("<config>", "hub.mode", f"settings for mode {hub.mode.value} are missing")
