"""The gateway's TOML configuration, validated into frozen dataclasses.

``load_config(path)`` is the only entry point. Every problem is a
:class:`~gateway.errors.ConfigError` naming the file, the dotted key and what
was expected. Secrets (the DPS group key, the service connection string,
static device connection strings) come only from ``*_file`` or ``*_env`` keys,
are read once at load time and are held as :class:`~gateway.secret.Secret`.
Relative paths resolve against the config file's directory.
``config/gateway.example.toml`` documents every key.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType

from firmware.errors import FirmwareError
from firmware.keys import load_public_key
from gateway.adu.settings import AduSettings, adu_settings
from gateway.confread import Table, default_environ, load_toml
from gateway.naming import check_device_id, normalise_uid
from gateway.secret import Secret

DEFAULT_STATE_DIR = "/var/lib/mcu-gateway"
DEFAULT_CACHE_MAX = 512 * 1024 * 1024
_VIDPID = re.compile(r"([0-9a-fA-F]{4}):([0-9a-fA-F]{4})")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class LogFormat(StrEnum):
    TEXT = "text"  # one human-readable line per event
    JSON = "json"  # one JSON object per line, for log shippers


class HubMode(StrEnum):
    DPS = "dps"  # group-enrollment symmetric key; per-device keys derived, never stored
    REGISTRY = "registry"  # the gateway creates devices with a service connection string
    STATIC = "static"  # one pre-made device connection string per MCU uid


@dataclass(frozen=True)
class GatewaySettings:
    device_id: str  # the gateway's own IoT Hub device id
    state_dir: Path  # journal and other state that must survive restarts
    cache_dir: Path  # content-addressed firmware cache
    cache_max_bytes: int
    log_format: LogFormat = LogFormat.TEXT
    log_level: str = "INFO"


@dataclass(frozen=True)
class DpsSettings:
    dps_host: str
    id_scope: str
    group_key: Secret


@dataclass(frozen=True)
class RegistrySettings:
    service_connection_string: Secret


@dataclass(frozen=True)
class StaticSettings:
    # MCU uid (lower-case hex) -> device connection string
    connection_strings: Mapping[str, Secret]
    gateway_connection_string: Secret


@dataclass(frozen=True)
class HubSettings:
    mode: HubMode
    ca_file: Path | None  # None: the system CA store (real Azure)
    hostname: str | None  # IoT Hub host for registry mode; None: from the connection string
    dps: DpsSettings | None = None
    registry: RegistrySettings | None = None
    static: StaticSettings | None = None
    connect_timeout_s: float = 30.0
    call_timeout_s: float = 15.0
    report_interval_s: float = 1.0  # minimum spacing of reported-property PATCHes per device
    retry_interval_s: int = 10  # SDK reconnect interval after a dropped connection
    keep_alive_s: int = 60

    @property
    def ca_pem(self) -> str | None:
        """The CA file's text (the SDK takes PEM text, not a path)."""
        return self.ca_file.read_text(encoding="ascii") if self.ca_file else None


@dataclass(frozen=True)
class UsbFilter:
    vid: int
    pid: int

    def __str__(self) -> str:
        return f"{self.vid:04x}:{self.pid:04x}"


@dataclass(frozen=True)
class PortRule:
    """``[[serial.port]]``: how to talk to the ports a glob (or URL) matches."""

    match: str
    bootloader: str | None = None  # None: probe with the [serial] order
    baud: int | None = None
    options: Mapping[str, str | int | bool] = field(default_factory=dict)


@dataclass(frozen=True)
class SerialSettings:
    ports: tuple[str, ...] = ()  # paths, globs or pyserial URLs (socket://, loop://)
    usb: tuple[UsbFilter, ...] = ()
    baud: int = 115200
    rescan_interval_s: float = 5.0
    probe_timeout_s: float = 2.0
    #: Drivers to try, in order, on a port no rule names one for; empty: all, by rank.
    bootloaders: tuple[str, ...] = ()
    rules: tuple[PortRule, ...] = ()

    def rule_for(self, port: str) -> PortRule | None:
        """The first ``[[serial.port]]`` whose ``match`` (a glob) matches ``port``."""
        for rule in self.rules:
            if fnmatch.fnmatchcase(port, rule.match):
                return rule
        return None


@dataclass(frozen=True)
class TrustSettings:
    public_keys: tuple[Path, ...] = ()
    allow_unsigned: bool = False


@dataclass(frozen=True)
class PolicySettings:
    # Measured: 64 links at 921600 baud stay above 0.9 efficiency on 2 cores, simulators
    # included (bench/README.md, "bench.cpu"); 32 leaves room for a slower box.
    max_concurrent_flashes: int = 32
    allowed_schemes: tuple[str, ...] = ("https",)
    max_download_bytes: int = 16 * 1024 * 1024
    download_deadline_s: float = 600.0
    confirm_timeout_s: float = 60.0
    download_ca_file: Path | None = None  # extra trust anchor for package downloads
    # Automatic retries of transient update failures (see gateway.retry).
    retry_attempts: int = 5  # failed attempts in a row before giving up (1 = never retry)
    retry_base_s: float = 30.0  # wait before the first retry; doubles each time
    retry_max_s: float = 900.0  # longest wait between two attempts


@dataclass(frozen=True)
class Config:
    path: Path
    gateway: GatewaySettings
    hub: HubSettings
    serial: SerialSettings = field(default_factory=SerialSettings)
    trust: TrustSettings = field(default_factory=TrustSettings)
    policy: PolicySettings = field(default_factory=PolicySettings)
    adu: AduSettings = field(default_factory=AduSettings)  # gateway/adu/settings.py


def load_config(path: Path | str, environ: Mapping[str, str] | None = None) -> Config:
    """Read and validate ``path``; ``environ`` (default ``os.environ``) feeds ``*_env`` keys."""
    file = Path(path).expanduser().resolve()
    root = Table(file, "", load_toml(file), environ if environ is not None else default_environ())
    config = Config(
        path=file,
        gateway=_gateway(root.table("gateway")),
        hub=_hub(root.table("hub")),
        serial=_serial(root.table("serial")),
        trust=_trust(root.table("trust")),
        policy=_policy(root.table("policy")),
        adu=adu_settings(root.table("adu")),
    )
    root.finish()
    return config


def _gateway(t: Table) -> GatewaySettings:
    device_id = t.text("device_id")
    try:
        check_device_id(device_id)
    except ValueError as exc:
        raise t.error("device_id", str(exc)) from None
    state_dir = t.directory("state_dir", Path(DEFAULT_STATE_DIR))
    level = t.text("log_level", "INFO").upper()
    if level not in _LOG_LEVELS:
        raise t.error("log_level", f"expected one of {', '.join(_LOG_LEVELS)}")
    settings = GatewaySettings(
        device_id=device_id,
        state_dir=state_dir,
        cache_dir=t.directory("cache_dir", state_dir / "cache"),
        cache_max_bytes=t.integer("cache_max_bytes", DEFAULT_CACHE_MAX, low=1),
        log_format=t.choice("log_format", LogFormat, LogFormat.TEXT),
        log_level=level,
    )
    t.finish()
    return settings


def _hub(t: Table) -> HubSettings:
    mode = t.choice("mode", HubMode, HubMode.DPS)
    ca_file: Path | None = t.path("ca_file", None)
    if ca_file is not None and not ca_file.is_file():
        raise t.error("ca_file", f"{ca_file} is not a readable file")
    dps = registry = static = None
    if mode is HubMode.DPS:
        dps = DpsSettings(
            dps_host=t.text("dps_host", "global.azure-devices-provisioning.net"),
            id_scope=t.text("id_scope"),
            group_key=_required(t.secret("group_key")),
        )
    elif mode is HubMode.REGISTRY:
        registry = RegistrySettings(_required(t.secret("service_connection_string")))
    else:
        static = _static(t)
    settings = HubSettings(
        mode=mode,
        ca_file=ca_file,
        hostname=t.text("hostname", None),
        dps=dps,
        registry=registry,
        static=static,
        connect_timeout_s=t.number("connect_timeout_s", 30.0, low=0.1),
        call_timeout_s=t.number("call_timeout_s", 15.0, low=0.1),
        report_interval_s=t.number("report_interval_s", 1.0, low=0.0),
        retry_interval_s=t.integer("retry_interval_s", 10, low=1),
        keep_alive_s=t.integer("keep_alive_s", 60, low=5),
    )
    t.finish()
    return settings


def _static(t: Table) -> StaticSettings:
    path, data = t.mapping_file("connection_strings_file")
    strings: dict[str, Secret] = {}
    for uid, value in data.items():
        # Keys are uids, not secrets, so they may be named; values never are.
        where = f"connection_strings_file ({path}) entry {uid!r:.40}"
        try:
            key = normalise_uid(uid)
        except ValueError:
            raise t.error(where, "keys must be MCU uids in hex") from None
        if not isinstance(value, str) or "SharedAccessKey=" not in value:
            raise t.error(where, "expected a device connection string with SharedAccessKey=")
        strings[key] = Secret(value.strip())
    return StaticSettings(
        connection_strings=MappingProxyType(strings),
        gateway_connection_string=_required(t.secret("gateway_connection_string")),
    )


def _serial(t: Table) -> SerialSettings:
    from protocols import registry

    known = registry.names()

    def driver_name(table: Table, key: str, name: str) -> str:
        if name not in known:
            raise table.error(
                key, f"unknown bootloader {name!r}; known: {', '.join(sorted(known))}"
            )
        return name

    order = t.strings("bootloaders", ())
    settings = SerialSettings(
        ports=tuple(_port(t, p) for p in t.strings("ports", ())),
        usb=t.items("usb", _usb_filter, "VID:PID as 4+4 hex digits, e.g. 0403:6001"),
        baud=t.integer("baud", 115200, low=300, high=12_000_000),
        rescan_interval_s=t.number("rescan_interval_s", 5.0, low=0.1),
        probe_timeout_s=t.number("probe_timeout_s", 2.0, low=0.05),
        bootloaders=tuple(driver_name(t, f"bootloaders[{i}]", n) for i, n in enumerate(order)),
        rules=tuple(_rule(r, driver_name, order) for r in t.tables("port")),
    )
    t.finish()
    return settings


def _rule(
    t: Table, driver_name: Callable[[Table, str, str], str], order: Sequence[str]
) -> PortRule:
    from protocols import registry

    raw = t.text("match")
    bootloader = t.text("bootloader", None)
    rule = PortRule(
        match=_port(t, raw),
        bootloader=None if bootloader is None else driver_name(t, "bootloader", bootloader),
        baud=t.integer("baud", None, low=300, high=12_000_000),
        options=t.scalars("options"),
    )
    # A misspelt option would be ignored by every driver: refuse it as any unknown key.
    try:
        registry.check_options(
            rule.options, registry.probe_order([rule.bootloader] if rule.bootloader else order)
        )
    except registry.UnknownOption as exc:
        raise t.error(f"options.{exc.key}", str(exc)) from None
    t.finish()
    return rule


def _trust(t: Table) -> TrustSettings:
    keys = tuple(t.resolve(p) for p in t.strings("public_keys", ()))
    for i, key in enumerate(keys):
        if not key.is_file():
            raise t.error(f"public_keys[{i}]", f"{key} is not a readable file")
        try:
            load_public_key(key)  # now, not as a traceback when the service starts
        except FirmwareError as exc:
            raise t.error(f"public_keys[{i}]", exc.message) from None
    settings = TrustSettings(public_keys=keys, allow_unsigned=t.flag("allow_unsigned", False))
    if not keys and not settings.allow_unsigned:
        raise t.error("public_keys", "expected at least one key file (or allow_unsigned = true)")
    t.finish()
    return settings


def _policy(t: Table) -> PolicySettings:
    schemes = tuple(s.lower() for s in t.strings("allowed_schemes", ("https",)))
    for i, scheme in enumerate(schemes):
        if scheme not in ("https", "http"):
            raise t.error(f"allowed_schemes[{i}]", f"expected https or http, not {scheme!r:.20}")
    settings = PolicySettings(
        max_concurrent_flashes=t.integer("max_concurrent_flashes", 32, low=1, high=1024),
        allowed_schemes=schemes,
        max_download_bytes=t.integer("max_download_bytes", 16 * 1024 * 1024, low=1),
        download_deadline_s=t.number("download_deadline_s", 600.0, low=1.0),
        confirm_timeout_s=t.number("confirm_timeout_s", 60.0, low=1.0),
        download_ca_file=t.path("download_ca_file", None),
        retry_attempts=t.integer("retry_attempts", 5, low=1, high=1000),
        retry_base_s=t.number("retry_base_s", 30.0, low=0.01),
        retry_max_s=t.number("retry_max_s", 900.0, low=0.01),
    )
    if settings.retry_max_s < settings.retry_base_s:
        raise t.error("retry_max_s", "must not be less than retry_base_s")
    if settings.download_ca_file is not None and not settings.download_ca_file.is_file():
        raise t.error("download_ca_file", f"{settings.download_ca_file} is not a readable file")
    t.finish()
    return settings


def _port(t: Table, raw: str) -> str:
    # pyserial URLs pass through; paths and globs resolve like every other path.
    return raw if "://" in raw else str(t.resolve(raw))


def _usb_filter(raw: str) -> UsbFilter:
    match = _VIDPID.fullmatch(raw.strip())
    if match is None:
        raise ValueError(raw)
    return UsbFilter(int(match[1], 16), int(match[2], 16))


def _required(secret: Secret | None) -> Secret:
    # Table.secret(required=True) never returns None; this narrows the type.
    assert secret is not None
    return secret
