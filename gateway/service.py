"""The gateway process: discovery, one agent per MCU, the gateway's own twin, shutdown.

One asyncio loop serves every MCU. Each MCU's work runs in its own tasks, so a
failure, hang or unplug of one never blocks another; flashes are capped by a
semaphore and downloads are shared through the content-addressed cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from typing import Any

from firmware.download import Downloader
from firmware.errors import CacheError, KeyFileError
from firmware.policy import TrustPolicy
from gateway.adu.wiring import adu_agent, adu_model_id
from gateway.agent import McuAgent
from gateway.cloud import DeviceTwinLink, LinkOptions, link_for
from gateway.config import Config
from gateway.discovery import Probe, candidate_ports, plan_for, port_present, probe
from gateway.errors import CloudError, ConfigError, GatewayError
from gateway.identity import IdentityProvider, provider_from_config
from gateway.journal import Journal
from gateway.naming import device_id_for
from gateway.update import UpdateEnv
from protocols.backoff import Backoff
from protocols.driver import DriverError

log = logging.getLogger("gateway.service")

#: A port where no bootloader answered is probed again after 30 s, doubling each time
#: up to an hour: reported in the gateway's twin, not hammered forever.
_REPROBE_BACKOFF = Backoff(30.0, 3600.0)
#: Waits between attempts to bring the gateway's own identity online.
_IDENTITY_BACKOFF = Backoff(1.0, 30.0)
#: Silent ports listed by name in the gateway's own twin.
_SILENT_LIST_MAX = 50
#: MCUs listed by id in the gateway's own twin (about 50 bytes each).
_TWIN_LIST_MAX = 400
#: Probes running at once (each holds a port for up to a few hundred ms).
_PROBE_CONCURRENCY = 32


class Gateway:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.agents: dict[str, McuAgent] = {}  # by uid hex: stable across ports
        self.scans = 0
        self.online = asyncio.Event()  # set after the first scan
        #: port -> (monotonic time of the next probe, current interval, why it failed)
        #: port -> (when to probe it again, silent probes in a row, why)
        self._silent: dict[str, tuple[float, int, str]] = {}
        self._env: UpdateEnv | None = None
        self._provider: IdentityProvider | None = None
        self._gw_link: DeviceTwinLink | None = None
        self._gw_task: asyncio.Task[None] | None = None
        self._scan_lock = asyncio.Lock()

    async def run(self, stop: asyncio.Event) -> None:
        cfg = self.config
        where = str(cfg.path)
        try:
            cfg.gateway.state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # checked at load; this is what changed since
            why = f"{cfg.gateway.state_dir}: {exc.strerror or exc}"
            raise ConfigError(where, "gateway.state_dir", why) from None
        journal = Journal.open(cfg.gateway.state_dir)
        try:
            self._provider = provider_from_config(
                cfg.hub, gateway_device_id=cfg.gateway.device_id, cache=journal
            )
            try:
                trust = TrustPolicy.from_files(
                    cfg.trust.public_keys,
                    allow_unsigned=cfg.trust.allow_unsigned,
                    max_size=cfg.policy.max_download_bytes,
                )
                downloads = Downloader(
                    cfg.gateway.cache_dir,
                    cfg.gateway.cache_max_bytes,
                    ca_file=cfg.policy.download_ca_file,
                    # ADU serves files over plain HTTP, trusted by the signed manifest's hash.
                    allow_http="http" in cfg.policy.allowed_schemes or cfg.adu.active,
                )
            except KeyFileError as exc:
                raise ConfigError(where, "trust.public_keys", exc.message) from None
            except CacheError as exc:
                raise ConfigError(where, "gateway.cache_dir", exc.message) from None
            async with downloads as downloader:
                self._env = UpdateEnv(
                    journal=journal,
                    downloader=downloader,
                    trust=trust,
                    policy=cfg.policy,
                    flash_slots=asyncio.Semaphore(cfg.policy.max_concurrent_flashes),
                    confirm_timeout_s=cfg.policy.confirm_timeout_s,
                )
                self._gw_task = asyncio.create_task(self._gateway_identity())
                await self._serve(stop)
        finally:
            await self._shutdown()
            journal.close()

    async def _serve(self, stop: asyncio.Event) -> None:
        interval = self.config.serial.rescan_interval_s
        while not stop.is_set():
            await self.scan()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await stop.wait()

    async def _shutdown(self) -> None:
        log.info("shutting down: parking %d MCU agents", len(self.agents))
        await asyncio.gather(*(a.close() for a in self.agents.values()), return_exceptions=True)
        if self._gw_task is not None:
            self._gw_task.cancel()
            await asyncio.gather(self._gw_task, return_exceptions=True)
        if self._gw_link is not None:
            with contextlib.suppress(Exception):
                await self._gw_link.close(flush_timeout=3.0)

    # ------------------------------------------------------------ the gateway's own twin

    async def _gateway_identity(self) -> None:
        assert self._provider is not None
        delays = _IDENTITY_BACKOFF.counter()
        while True:
            try:
                creds = await self._provider.credentials(self.config.gateway.device_id)
                link = link_for(creds, LinkOptions.from_settings(self.config.hub))
                await link.connect()
                self._gw_link = link
                await self._report_attached()
                return
            except (GatewayError, CloudError) as exc:
                log.warning("gateway identity not online yet (%s); retrying", exc)
            await asyncio.sleep(delays.next())

    async def _report_attached(self) -> None:
        if self._gw_link is None:
            return
        # Device id -> connected. Each MCU's own twin has the details; this stays
        # compact so the gateway's twin fits IoT Hub's 32 KB reported limit.
        agents = sorted(self.agents.values(), key=lambda a: a.device_id)
        mcus: dict[str, Any] = {a.device_id: a.connected for a in agents[:_TWIN_LIST_MAX]}
        patch = {
            "mcus": None,  # replace, not merge: MCUs gone from the list must vanish
            "attachedCount": len(agents),
            "connectedCount": sum(a.connected for a in agents),
            "mcusTruncated": len(agents) > _TWIN_LIST_MAX,
            # Ports where nothing answered: an operator sees a miswired or unknown device.
            # A list, since port names may hold dots, which twin keys may not.
            "silentPorts": [
                {"port": port, "reason": why}
                for port, (_, _, why) in sorted(self._silent.items())[:_SILENT_LIST_MAX]
            ],
            "silentPortCount": len(self._silent),
        }
        try:
            await self._gw_link.report(patch)
            await self._gw_link.report({"mcus": mcus})
        except CloudError as exc:
            log.warning("gateway twin update deferred: %s", exc)

    # ------------------------------------------------------------ discovery

    async def scan(self) -> None:
        async with self._scan_lock:
            await self._scan()
        self.scans += 1
        self.online.set()

    async def _scan(self) -> None:
        ports = candidate_ports(self.config.serial)
        changed = False
        for agent in list(self.agents.values()):
            if agent.connected and not port_present(agent.port):
                await agent.mark_disconnected()
                changed = True
        in_use = {a.port for a in self.agents.values() if a.connected}
        now = time.monotonic()
        todo = [p for p in ports if p not in in_use and now >= self._silent.get(p, (0.0, 0, ""))[0]]
        cfg = self.config
        limit = asyncio.Semaphore(_PROBE_CONCURRENCY)

        async def one(port: str) -> Probe | None:
            async with limit:
                try:
                    plan = plan_for(port, cfg.serial, cfg.policy.confirm_timeout_s)
                    limit_s = (cfg.serial.probe_timeout_s + 2) * max(1, len(plan.order))
                    async with asyncio.timeout(limit_s):
                        return await probe(port, plan)
                except (DriverError, TimeoutError, OSError) as exc:
                    self._note_silent(port, str(exc) or type(exc).__name__)
                    return None

        probes = await asyncio.gather(*(one(p) for p in todo))
        results = await asyncio.gather(
            *(self._attach(p) for p in probes if p is not None), return_exceptions=True
        )
        for r in results:
            if isinstance(r, BaseException):
                log.error("attaching an MCU failed: %s", r)
        if changed or any(p is not None for p in probes):
            await self._report_attached()

    def _note_silent(self, port: str, why: str) -> None:
        _, failures, _ = self._silent.get(port, (0.0, 0, ""))
        failures += 1
        interval = _REPROBE_BACKOFF.delay(failures)
        self._silent[port] = (time.monotonic() + interval, failures, why[:200])
        log.warning("%s; probing %s again in %.0f s", why, port, interval)

    async def _attach(self, found: Probe) -> None:
        uid = found.facts.uid
        self._silent.pop(found.port, None)
        agent = self.agents.get(uid)
        if agent is not None:
            await agent.reattach(found)
            return
        assert self._provider is not None and self._env is not None
        device_id = device_id_for(bytes.fromhex(uid), found.facts.model)
        log.info("MCU %s (%s, %s bootloader) found on %s", device_id, found.facts.model,
                 found.driver.name, found.port)  # fmt: skip
        creds = await self._provider.credentials(device_id, uid=uid)
        options = LinkOptions.from_settings(self.config.hub)
        adu = self.config.adu.selects(found.port, found.facts.model)
        if adu:  # an ADU device: the contract model id, and ADU as its update master
            options = dataclasses.replace(options, product_info=adu_model_id())
        link = link_for(creds, options)
        kwargs: dict[str, Any] = {
            "env": self._env,
            "probe": found,
            "device_id": device_id,
            "gateway_id": self.config.gateway.device_id,
            "link": link,
            "allowed_schemes": self.config.policy.allowed_schemes,
        }
        agent = adu_agent(self.config, **kwargs) if adu else McuAgent(**kwargs)
        self.agents[uid] = agent
        await agent.start()
