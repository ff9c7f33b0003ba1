"""A complete local lab: hub + DPS emulator, HTTPS image server, virtual MCUs on ptys.

Used by ``mcu-gateway demo`` and by the end-to-end tests, so both exercise the
same real pieces: the azure-iot-device SDK over TLS, real HTTPS downloads and
simulator processes on pseudo-terminals.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import random
import signal
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from firmware import keys, package
from simulators import registry as simulators
from simulators.hub import HubEmulator, HubFacts
from simulators.image_server import ImageServer
from simulators.image_tls import make_test_pki
from simulators.mcu import launch

SIM_START_TIMEOUT_S = launch.START_TIMEOUT_S
#: The demo's gateway configuration, a template filled in by :meth:`Lab.config_text`.
DEMO_TEMPLATE = Path(__file__).resolve().parents[1] / "config" / "demo.toml"


@dataclass
class SimHandle:
    index: int
    link: Path
    state: Path
    model: str
    uid: str
    args: list[str]
    proc: asyncio.subprocess.Process | None = None
    pty: str = ""

    async def start(self) -> None:
        args = ["--state", str(self.state), "--model", self.model, "--uid", self.uid,
                "--link", str(self.link), *self.args]  # fmt: skip
        try:
            self.proc, ptys = await launch.start_async(args, start_timeout=SIM_START_TIMEOUT_S)
        except launch.SimStartError as exc:
            raise RuntimeError(f"simulator {self.index} did not start: {exc}") from exc
        self.pty = ptys[0]

    async def kill(self) -> None:
        """Unplug: the process dies at once (its symlink is left dangling)."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
            await self.proc.wait()
        with contextlib.suppress(FileNotFoundError):
            self.link.unlink()

    async def stop(self) -> None:
        if self.proc is not None:
            await launch.stop_async(self.proc)


@dataclass
class SimGroup:
    """One ``sim --count N`` process serving several MCUs of one model (for scale runs).

    Its MCUs' uids are ``uid`` with the last byte counting up from 0; their links
    are ``LINK-000``, ``LINK-001``, ... Every MCU lives and dies with the process.
    """

    link: Path
    state: Path
    model: str
    uid: str  # the first MCU's; its last byte is 00
    count: int
    args: list[str]
    proc: asyncio.subprocess.Process | None = None
    ptys: list[str] = field(default_factory=list)

    def uid_of(self, i: int) -> str:
        return self.uid[:-2] + f"{i:02x}"

    def link_of(self, i: int) -> Path:
        if self.count == 1:
            return self.link  # `sim --count 1` links LINK itself
        return self.link.with_name(f"{self.link.name}-{i:03d}")

    async def start(self) -> None:
        args = ["--state", str(self.state), "--model", self.model, "--uid", self.uid,
                "--count", str(self.count), "--link", str(self.link), *self.args]  # fmt: skip
        try:
            self.proc, self.ptys = await launch.start_async(
                args, count=self.count, start_timeout=SIM_START_TIMEOUT_S + 0.1 * self.count
            )
        except launch.SimStartError as exc:
            raise RuntimeError(f"simulator group {self.link.name} did not start: {exc}") from exc

    async def stop(self) -> None:
        if self.proc is not None:
            await launch.stop_async(self.proc)


@dataclass(frozen=True)
class SimKind:
    """How the lab runs one simulator model and what its packages must say."""

    bootloader: str  # driver registry name
    manufacturer: str
    device_model: str  # the model the driver reports (packages name it)
    sim_args: tuple[str, ...] = ()
    #: ``[[serial.port]]`` options for the gateway (e.g. how to reach the ROM loader).
    port_options: tuple[tuple[str, str | int | bool], ...] = ()
    #: Wraps a payload into the image the driver installs (an MCUboot image); None: as is.
    make_image: Callable[[bytes, str], bytes] | None = None

    def payload(self, body: bytes, version: str) -> bytes:
        """The bytes the package carries: MCUboot boards take a signed-format image."""
        return body if self.make_image is None else self.make_image(body, version)


def _other_kinds() -> dict[str, SimKind]:
    """Every model of a simulator other than mcugw's, built in or a plug-in's."""
    kinds = {}
    for spec in simulators.available().values():
        for name, board in spec.models.items():
            args = ("--bootloader", spec.name, *spec.sim_args, *board.sim_args)
            options = tuple(spec.driver_options.items())
            kinds[name] = SimKind(spec.name, board.manufacturer, board.device_model, args,
                                  options, spec.make_image)  # fmt: skip
    return kinds


#: Other bootloaders' simulated models (simulators.registry); every other model is mcugw's.
OTHER_KINDS = _other_kinds()


def sim_kind(model: str) -> SimKind:
    kind = OTHER_KINDS.get(model) or _other_kinds().get(model)  # a plug-in installed since
    if kind is not None:
        return kind
    from simulators.mcu.models import MODELS

    return SimKind("mcugw", MODELS[model].manufacturer, model)


@dataclass(frozen=True)
class Release:
    version: str
    model: str
    url: str
    sha256: str
    size: int
    payload_sha256: str
    blob: bytes = field(default=b"", repr=False)

    def desired(self, **extra: Any) -> dict[str, Any]:
        return {
            "fwVersion": self.version,
            "fwPackageURI": self.url,
            "fwPackageCheckValue": self.sha256,
            "fwPackageSize": self.size,
            **extra,
        }


@dataclass
class Lab:
    root: Path
    host: str
    models: Sequence[str]
    sim_args: Sequence[str] = ("--baud", "921600")
    gateway_baud: int = 921600
    hub: HubEmulator | None = None
    images: ImageServer | None = None
    sims: list[SimHandle] = field(default_factory=list)
    signing_key: Any = None
    #: Serve all MCUs of a model from one ``sim --count N`` process instead of one
    #: process each (scale benchmarks). Their handles then have no process of their own.
    grouped_sims: bool = False
    groups: list[SimGroup] = field(default_factory=list)
    #: Facts of a hub emulator running elsewhere (its own process, for kill -9 tests);
    #: when set, the lab starts no emulator of its own.
    external_hub: HubFacts | None = None
    #: How much faster than IoT Hub the emulator runs all its cadences together
    #: (configuration evaluation, query lag, throttles); 1.0 is IoT Hub's own pace.
    hub_time_scale: float = 1.0

    @property
    def facts(self) -> HubFacts:
        if self.external_hub is not None:
            return self.external_hub
        assert self.hub is not None
        return self.hub.facts

    @property
    def ports_glob(self) -> str:
        return str(self.root / "ports" / "mcu-*")

    async def __aenter__(self) -> Lab:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        (self.root / "ports").mkdir(parents=True, exist_ok=True)
        if self.external_hub is None:
            self.hub = HubEmulator(self.root / "hub", self.host, time_scale=self.hub_time_scale)
            await asyncio.to_thread(self.hub.start)
        pki = make_test_pki(self.host)
        (self.root / "images-ca.pem").write_bytes(pki.ca_pem)
        self.images = ImageServer(self.host, ssl_context=pki.server_context())
        await self.images.start()
        self.signing_key = keys.generate(keys.Algorithm.ED25519)
        (self.root / "release.pub").write_bytes(keys.public_pem(self.signing_key))
        group_key = self.root / "group.key"
        group_key.touch(mode=0o600)
        group_key.write_text(self.facts.group_enrollment_key)
        if self.grouped_sims:
            await self._start_groups()
            return
        for i, model in enumerate(self.models):
            sim = SimHandle(
                index=i,
                link=self.root / "ports" / f"mcu-{i:03d}",
                state=self.root / "sims" / f"mcu-{i:03d}",
                model=model,
                uid=hashlib.sha256(f"{self.root}:{i}".encode()).hexdigest()[:24],
                args=[*self.sim_args, *sim_kind(model).sim_args],
            )
            self.sims.append(sim)
        await asyncio.gather(*(s.start() for s in self.sims))

    async def _start_groups(self) -> None:
        by_model: dict[str, list[int]] = {}
        for i, model in enumerate(self.models):
            by_model.setdefault(model, []).append(i)
        for model, indices in by_model.items():
            if len(indices) > 256:
                raise ValueError("a simulator group serves at most 256 MCUs (uids count up)")
            base = hashlib.sha256(f"{self.root}:{model}".encode()).hexdigest()[:22] + "00"
            group = SimGroup(
                link=self.root / "ports" / f"mcu-{model}",
                state=self.root / "sims" / model,
                model=model,
                uid=base,
                count=len(indices),
                args=list(self.sim_args),
            )
            self.groups.append(group)
            for k, i in enumerate(indices):
                self.sims.append(
                    SimHandle(index=i, link=group.link_of(k), state=group.state / f"mcu-{k:03d}",
                              model=model, uid=group.uid_of(k), args=group.args)
                )  # fmt: skip
        self.sims.sort(key=lambda h: h.index)
        await asyncio.gather(*(g.start() for g in self.groups))
        by_link = {h.link: h for h in self.sims}
        for group in self.groups:
            for k, pty in enumerate(group.ptys):
                by_link[group.link_of(k)].pty = pty

    async def stop(self) -> None:
        await asyncio.gather(*(s.stop() for s in self.sims), return_exceptions=True)
        await asyncio.gather(*(g.stop() for g in self.groups), return_exceptions=True)
        if self.images is not None:
            await self.images.stop()
        if self.hub is not None:
            await asyncio.to_thread(self.hub.stop)

    def release(
        self, version: str, model: str, size: int = 64 * 1024, *, name: str | None = None,
        signed: bool = True, key: Any = None, body: bytes | None = None,
    ) -> Release:  # fmt: skip
        """Build a signed package, publish it on the image server, return twin values.

        The payload is seeded noise, which no encoder shrinks, so a transfer takes
        its full wire time; pass ``body`` (e.g. code) to exercise compression.
        """
        assert self.images is not None
        kind = sim_kind(model)
        if body is None:
            body = random.Random(f"{model} {version}").randbytes(size)
        payload = kind.payload(body[:size], version)
        manifest = package.manifest_for(
            payload, provider="contoso", name="sensor-app", version=version,
            manufacturer=kind.manufacturer, model=kind.device_model,
        )  # fmt: skip
        blob = package.build(manifest, payload, (key or self.signing_key) if signed else None)
        return self.publish(name or f"{model}-{version}.mcufw", blob, version, model, payload)

    def publish(
        self, name: str, blob: bytes, version: str, model: str, payload: bytes = b""
    ) -> Release:
        """Serve ``blob`` (any bytes, tampered ones included) and describe it for a twin."""
        assert self.images is not None
        self.images.add(name, blob)
        return Release(
            version=version,
            model=model,
            url=self.images.url(name, tls=True),
            sha256=hashlib.sha256(blob).hexdigest(),
            size=len(blob),
            payload_sha256=hashlib.sha256(payload).hexdigest(),
            blob=blob,
        )

    def config_text(self, *, state: Path | None = None, **policy: Any) -> str:
        """``config/demo.toml`` filled in for this lab, plus extra ``[policy]`` keys."""
        f = self.facts
        template = string.Template(DEMO_TEMPLATE.read_text())
        text = template.substitute(
            state=state or self.root / "gateway",
            ca_file=f.ca_path,
            dps_host=f.dps_host,
            id_scope=f.dps_id_scope,
            group_key_file=self.root / "group.key",
            ports=self.ports_glob,
            baud=self.gateway_baud,
            public_key=self.root / "release.pub",
            download_ca_file=self.root / "images-ca.pem",
        )
        text += "".join(f"{k} = {_toml(v)}\n" for k, v in policy.items())
        return text + self._port_rules()

    def _port_rules(self) -> str:
        """``[[serial.port]]`` for every MCU that is not on our protocol."""
        rules = []
        for sim in self.sims:
            kind = sim_kind(sim.model)
            if kind.bootloader == "mcugw":
                continue
            rule = f'\n[[serial.port]]\nmatch = "{sim.link}"\nbootloader = "{kind.bootloader}"\n'
            if kind.port_options:
                opts = ", ".join(f"{k} = {_toml(v)}" for k, v in kind.port_options)
                rule += f"options = {{ {opts} }}\n"
            rules.append(rule)
        return "".join(rules)

    def write_config(self, **policy: Any) -> Path:
        path = self.root / "gateway.toml"
        path.write_text(self.config_text(**policy))
        return path

    def registry(self) -> Any:
        """The official service SDK's registry manager, trusting the emulator's CA."""
        from azure.iot.hub import IoTHubRegistryManager

        os.environ["REQUESTS_CA_BUNDLE"] = self.facts.ca_path
        return IoTHubRegistryManager.from_connection_string(self.facts.service_connection_string)


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string, escapes included
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return str(value)
