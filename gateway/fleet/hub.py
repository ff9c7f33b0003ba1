"""The service side of IoT Hub, as the fleet code needs it.

:class:`FleetHub` is the seam: the rollout logic and the status view talk to
it, tests give them an in-memory fake, and :class:`ServiceHub` implements it
with the official ``azure-iot-hub`` SDK (``IoTHubConfigurationManager`` and
``IoTHubRegistryManager``). SDK errors become :class:`FleetError` here, at
this one boundary, and the connection string never appears in a message.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.fleet.errors import FleetError, HubRefused

PAGE = 1000  # IoT Hub's largest query page


@dataclass(frozen=True)
class Config:
    """One automatic device configuration, as read back from the hub."""

    id: str
    content: Mapping[str, Any]  # deviceContent: {"properties.desired.x": value}
    target_condition: str = ""
    priority: int = 0
    labels: Mapping[str, str] = field(default_factory=dict)
    metric_queries: Mapping[str, str] = field(default_factory=dict)
    metrics: Mapping[str, int] = field(default_factory=dict)
    system_metrics: Mapping[str, int] = field(default_factory=dict)
    created: str = ""
    etag: str = ""


class FleetHub(Protocol):
    """What fleet commands need from IoT Hub's service API."""

    def query(self, text: str) -> list[dict[str, Any]]:
        """All result rows of a query, every page."""

    def configurations(self) -> list[Config]: ...

    def get_configuration(self, config_id: str) -> Config | None: ...

    def create_configuration(self, config: Config) -> Config: ...

    def update_configuration(self, config: Config) -> Config:
        """Replace target, priority, labels and metrics; ``config.etag`` must be current."""

    def delete_configuration(self, config_id: str, etag: str) -> None: ...

    def test_queries(self, target: str, metrics: Mapping[str, str]) -> list[str]:
        """The errors IoT Hub finds in a target condition and metric queries."""

    def set_tags(self, device_id: str, tags: Mapping[str, Any]) -> None: ...


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def literal(value: str) -> str:
    """A string literal for the IoT Hub query language."""
    return _quote(value)


class ServiceHub:
    """:class:`FleetHub` over the official service SDK."""

    def __init__(self, connection_string: str, ca_file: str | None = None) -> None:
        from azure.iot.hub import IoTHubConfigurationManager, IoTHubRegistryManager

        if ca_file:
            # requests (under msrest) reads its trust anchors from here.
            os.environ["REQUESTS_CA_BUNDLE"] = ca_file
        try:
            self._configs = IoTHubConfigurationManager.from_connection_string(connection_string)
            self._registry = IoTHubRegistryManager.from_connection_string(connection_string)
        except Exception as exc:  # the SDK raises bare ValueError/KeyError on bad strings
            raise FleetError(
                "the service connection string does not parse "
                "(HostName=...;SharedAccessKeyName=...;SharedAccessKey=...)"
            ) from exc

    def _call(self, what: str, fn: Any, *args: Any) -> Any:
        from msrest.exceptions import ClientRequestError, HttpOperationError

        try:
            return fn(*args)
        except HttpOperationError as exc:
            status = getattr(exc.response, "status_code", 0) or 0
            raise HubRefused(f"{what}: IoT Hub answered {_describe(exc)}", status) from None
        except ClientRequestError as exc:
            raise FleetError(f"{what}: cannot reach IoT Hub ({_first_line(exc)})") from None

    def query(self, text: str) -> list[dict[str, Any]]:
        from azure.iot.hub.models import QuerySpecification

        rows: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            # raw=True: the SDK would force every row into a Twin and drop
            # projections and aggregates, so read the JSON ourselves.
            raw = self._call(
                "query", self._registry.protocol.query.get_twins,
                QuerySpecification(query=text), token, str(PAGE), None, True,
            )  # fmt: skip
            rows.extend(raw.response.json())
            token = raw.response.headers.get("x-ms-continuation")
            if not token:
                return rows

    def configurations(self) -> list[Config]:
        found = self._call("list configurations", self._configs.get_configurations, 100)
        return [_config(c) for c in found]

    def get_configuration(self, config_id: str) -> Config | None:
        from msrest.exceptions import HttpOperationError

        try:
            return _config(self._configs.get_configuration(config_id))
        except HttpOperationError as exc:
            if exc.response is not None and exc.response.status_code == 404:
                return None
            raise FleetError(f"get configuration {config_id}: {_describe(exc)}") from None

    def create_configuration(self, config: Config) -> Config:
        made = self._call(
            f"create configuration {config.id}", self._configs.create_configuration,
            _sdk_config(config),
        )  # fmt: skip
        return _config(made)

    def update_configuration(self, config: Config) -> Config:
        made = self._call(
            f"update configuration {config.id}", self._configs.update_configuration,
            _sdk_config(config), config.etag,
        )  # fmt: skip
        return _config(made)

    def delete_configuration(self, config_id: str, etag: str) -> None:
        self._call(
            f"delete configuration {config_id}", self._configs.delete_configuration,
            config_id, etag or "*",
        )  # fmt: skip

    def test_queries(self, target: str, metrics: Mapping[str, str]) -> list[str]:
        from azure.iot.hub.models import ConfigurationQueriesTestInput

        answer = self._call(
            "check queries", self._configs.test_configuration_queries,
            ConfigurationQueriesTestInput(
                target_condition=target, custom_metric_queries=dict(metrics)
            ),
        )  # fmt: skip
        errors = [f"target condition: {answer.target_condition_error}"] * bool(
            answer.target_condition_error
        )
        for name, error in (answer.custom_metric_query_errors or {}).items():
            if error:
                errors.append(f"metric {name}: {error}")
        return errors

    def set_tags(self, device_id: str, tags: Mapping[str, Any]) -> None:
        from azure.iot.hub.models import Twin

        self._call(
            f"tag {device_id}", self._registry.update_twin, device_id, Twin(tags=dict(tags)), "*"
        )


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:200]


def _describe(exc: Any) -> str:
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", "?")
    message = ""
    try:
        body = json.loads(response.text) if response is not None else {}
        message = str(body.get("Message") or body.get("message") or "")
    except (ValueError, AttributeError):
        message = ""
    if message.startswith("ErrorCode:"):
        message = message.split(";", 1)[-1]
    return f"{status}: {message or _first_line(exc)}"[:300]


def _config(c: Any) -> Config:
    content = c.content.device_content if c.content is not None else {}
    metrics = c.metrics
    system = c.system_metrics
    created = c.created_time_utc
    return Config(
        id=c.id,
        content=dict(content or {}),
        target_condition=c.target_condition or "",
        priority=int(c.priority or 0),
        labels=dict(c.labels or {}),
        metric_queries=dict((metrics.queries if metrics else None) or {}),
        metrics={k: int(v) for k, v in ((metrics.results if metrics else None) or {}).items()},
        system_metrics={k: int(v) for k, v in ((system.results if system else None) or {}).items()},
        created=created.isoformat() if hasattr(created, "isoformat") else str(created or ""),
        etag=c.etag or "",
    )


def _sdk_config(config: Config) -> Any:
    from azure.iot.hub.models import Configuration, ConfigurationContent, ConfigurationMetrics

    return Configuration(
        id=config.id,
        schema_version="1.0",
        labels=dict(config.labels),
        content=ConfigurationContent(device_content=dict(config.content)),
        target_condition=config.target_condition,
        priority=config.priority,
        metrics=ConfigurationMetrics(queries=dict(config.metric_queries)),
        etag=config.etag or None,
    )
