"""An in-memory :class:`FleetHub` on the emulator's own configuration and query code.

Fast and deterministic for the rollout logic: devices are twins the test
updates by hand, and :meth:`FakeHub.evaluate` is one IoT Hub evaluation pass.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from gateway.fleet.errors import HubRefused
from gateway.fleet.hub import Config
from gateway.reported import utc_now
from simulators.hub.configurations import (
    ConfigurationEngine,
    check_metric_query,
    check_target_condition,
)
from simulators.hub.errors import RequestError
from simulators.hub.query import parse_query
from simulators.hub.twins import JsonObject, Twin


class _MemoryStore:
    def __init__(self) -> None:
        self.records: dict[str, str] = {}

    def configurations(self) -> list[str]:
        return list(self.records.values())

    def save_configuration(self, config_id: str, record: str) -> None:
        self.records[config_id] = record

    def delete_configuration(self, config_id: str) -> None:
        self.records.pop(config_id, None)


class FakeHub:
    def __init__(self, content_merge: bool = False) -> None:
        self.twins: dict[str, Twin] = {}
        self.engine = ConfigurationEngine(_MemoryStore(), self._apply, content_merge=content_merge)
        self.writes = 0  # configuration writes, to prove "nothing created"

    # ---------------------------------------------------------------- devices

    def add(self, device_id: str, model: str = "m1", version: str = "1.0.0", **tags: Any) -> None:
        twin = Twin(device_id).patch_tags(tags).patch_reported(
            {"mcu": {"model": model, "gatewayDeviceId": "gw1", "serialPort": f"/dev/{device_id}"},
             "firmware": {"fwUpdateStatus": "current", "currentFwVersion": version}}
        )  # fmt: skip
        self.twins[device_id] = twin

    def report(self, device_id: str, **firmware: Any) -> None:
        self.twins[device_id] = self.twins[device_id].patch_reported({"firmware": firmware})

    def desired_version(self, device_id: str) -> str | None:
        fw = self.twins[device_id].desired.get("firmware") or {}
        return fw.get("fwVersion")

    def _apply(self, device_id: str, patch: JsonObject) -> None:
        self.twins[device_id] = self.twins[device_id].patch_desired(patch)

    def evaluate(self) -> None:
        self.engine.evaluate(self.twins)

    def finish(self, version: str, fail: Collection[str] = (), skip: Collection[str] = ()) -> None:
        """Every MCU whose desired is ``version`` reports success (or an error)."""
        for device_id in self.twins:
            if self.desired_version(device_id) != version or device_id in skip:
                continue
            if device_id in fail:
                self.report(device_id, fwUpdateStatus="error",
                            error={"code": "MODEL_MISMATCH", "message": "refused",
                                   "phase": "verifying", "at": utc_now()})  # fmt: skip
            else:
                self.report(device_id, fwUpdateStatus="current", currentFwVersion=version,
                            error=None)  # fmt: skip
        self.evaluate()

    # ---------------------------------------------------------------- FleetHub

    def _guard(self, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except RequestError as exc:
            raise HubRefused(
                f"IoT Hub answered {int(exc.status)}: {exc}", int(exc.status)
            ) from None

    def query(self, text: str) -> list[dict[str, Any]]:
        query = self._guard(parse_query, text)
        views = [
            self.engine.view(t) for t in sorted(self.twins.values(), key=lambda t: t.device_id)
        ]
        if query.is_star:
            return [v for v in views if query.matches(v)]
        return list(query.run(views))

    def configurations(self) -> list[Config]:
        return [_config(self.engine.to_json(c)) for c in self.engine.list(None)]

    def get_configuration(self, config_id: str) -> Config | None:
        c = self.engine.configs.get(config_id)
        return None if c is None else _config(self.engine.to_json(c))

    def _put(self, config: Config, etag: str | None) -> Config:
        body = {
            "id": config.id, "labels": dict(config.labels), "priority": config.priority,
            "targetCondition": config.target_condition,
            "content": {"deviceContent": dict(config.content)},
            "metrics": {"queries": dict(config.metric_queries)},
        }  # fmt: skip
        stored = self._guard(self.engine.put, config.id, body, etag)
        self.writes += 1
        self.evaluate()
        return _config(self.engine.to_json(stored))

    def create_configuration(self, config: Config) -> Config:
        return self._put(config, None)

    def update_configuration(self, config: Config) -> Config:
        return self._put(config, config.etag or "*")

    def delete_configuration(self, config_id: str, etag: str) -> None:
        self._guard(self.engine.delete, config_id, etag)
        self.writes += 1
        self.evaluate()

    def test_queries(self, target: str, metrics: Mapping[str, str]) -> list[str]:
        errors = [f"target condition: {e}" for e in [check_target_condition(target)] if e]
        return errors + [f"metric {n}: {e}" for n, q in metrics.items()
                         if (e := check_metric_query(q))]  # fmt: skip

    def set_tags(self, device_id: str, tags: Mapping[str, Any]) -> None:
        self.twins[device_id] = self.twins[device_id].patch_tags(dict(tags))


def _config(j: dict[str, Any]) -> Config:
    return Config(
        id=j["id"], content=j["content"]["deviceContent"], target_condition=j["targetCondition"],
        priority=j["priority"], labels=j["labels"], metric_queries=j["metrics"]["queries"],
        metrics=j["metrics"]["results"], system_metrics=j["systemMetrics"]["results"],
        created=j["createdTimeUtc"], etag=j["etag"],
    )  # fmt: skip
