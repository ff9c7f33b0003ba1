"""The service side of IoT Hub, as the fleet code needs it.

:class:`FleetHub` is the seam: the rollout logic and the status view talk to
it, tests give them an in-memory fake, and :class:`ServiceHub` implements it
with the official ``azure-iot-hub`` SDK (``IoTHubConfigurationManager`` and
``IoTHubRegistryManager``). SDK errors become :class:`FleetError` here, at
this one boundary, and the connection string never appears in a message.

Every call goes through :meth:`ServiceHub._call`, which retries a throttled
(429), unavailable (503) or unreachable hub with backoff, honouring the
hub's ``Retry-After``. This is the one place that does it for every request,
POST included: the SDK's msrest stack leaves POSTs (queries among them) to the
caller ("Quotas and throttling": "the client should back off and retry").
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.fleet.errors import FleetError, HubRefused, UntrustedHub

log = logging.getLogger(__name__)

PAGE = 100  # IoT Hub's largest query page ("Query twins": at most 100 records)
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
#: Seconds one call keeps retrying a throttled or busy hub before it gives up with
#: a one-line error, and (shorter) an unreachable one.
RETRY_BUDGET = 900.0
UNREACHABLE_BUDGET = 120.0
_BACKOFF_FIRST, _BACKOFF_CAP = 1.0, 60.0


@dataclass
class RetryPolicy:
    """How :class:`ServiceHub` waits out a throttled or unreachable hub."""

    budget: float = RETRY_BUDGET
    unreachable_budget: float = UNREACHABLE_BUDGET
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    #: Calls retried so far, by HTTP status (0: connection error); read by benchmarks.
    retried: dict[int, int] = field(default_factory=dict)

    def backoff(self, attempt: int) -> float:
        """Exponential with full jitter, so parallel rollouts do not retry in step."""
        return float(random.uniform(0.5, 1.0) * min(_BACKOFF_CAP, _BACKOFF_FIRST * 2.0**attempt))


def retry_after(response: Any) -> float | None:
    """The hub's ``retry-after-ms`` or ``Retry-After`` (seconds), if it sent one."""
    headers = getattr(response, "headers", None) or {}
    for name, factor in (("retry-after-ms", 0.001), ("Retry-After", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) * factor
        except ValueError:
            continue
        if 0 <= seconds < 3600:
            return seconds
    return None


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

    def __init__(
        self, connection_string: str, ca_file: str | None = None, retry: RetryPolicy | None = None
    ) -> None:
        from azure.iot.hub import IoTHubConfigurationManager, IoTHubRegistryManager

        self.retry = retry or RetryPolicy()
        if ca_file:
            # requests (under msrest) reads its trust anchors from here.
            os.environ["REQUESTS_CA_BUNDLE"] = ca_file
        try:
            self._configs = IoTHubConfigurationManager.from_connection_string(connection_string)
            self._registry = IoTHubRegistryManager.from_connection_string(connection_string)
            for manager in (self._configs, self._registry):
                # One retry loop, ours: msrest's own would sleep on connection
                # errors for every attempt and retries no POST anyway.
                manager.protocol.config.retry_policy.retries = 0
        except Exception as exc:  # the SDK raises bare ValueError/KeyError on bad strings
            raise FleetError(
                "the service connection string does not parse "
                "(HostName=...;SharedAccessKeyName=...;SharedAccessKey=...)"
            ) from exc

    def _call(self, what: str, fn: Any, *args: Any) -> Any:
        """``fn(*args)``, retried on 429/5xx and connection errors within the budget."""
        from msrest.exceptions import ClientRequestError, HttpOperationError

        policy = self.retry
        started = policy.clock()
        deadline = started + policy.budget
        attempt = 0
        while True:
            try:
                return fn(*args)
            except HttpOperationError as exc:
                status = getattr(exc.response, "status_code", 0) or 0
                wait = retry_after(exc.response) if status in RETRY_STATUSES else None
                if status not in RETRY_STATUSES or policy.clock() >= deadline:
                    raise HubRefused(f"{what}: IoT Hub answered {_describe(exc)}", status) from None
                wait = wait if wait is not None else policy.backoff(attempt)
            except ClientRequestError as exc:
                # A certificate the CA does not vouch for will not heal by waiting.
                untrusted = _certificate_error(exc)
                if untrusted is not None:
                    raise UntrustedHub(
                        f"{what}: cannot reach IoT Hub: its TLS certificate is not trusted "
                        f"({untrusted})"
                    ) from None
                if policy.clock() >= started + policy.unreachable_budget:
                    raise FleetError(f"{what}: cannot reach IoT Hub ({_first_line(exc)})") from None
                if not attempt:
                    log.warning("%s: cannot reach IoT Hub (%s); retrying for up to %.0f s",
                                what, _first_line(exc), policy.unreachable_budget)  # fmt: skip
                status, wait = 0, policy.backoff(attempt)
            policy.retried[status] = policy.retried.get(status, 0) + 1
            log.debug("%s: IoT Hub status %s; retrying in %.2fs", what, status or "-", wait)
            policy.sleep(min(wait, max(0.0, deadline - policy.clock())))
            attempt += 1

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
        try:
            found = self._call(
                f"get configuration {config_id}", self._configs.get_configuration, config_id
            )
        except HubRefused as exc:
            if exc.status == 404:
                return None
            raise
        return _config(found)

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


def _certificate_error(exc: BaseException) -> str | None:
    """The verifier's reason when ``exc`` comes from a failed certificate check, else None."""
    import ssl

    chain: list[BaseException] = []
    cause: BaseException | None = exc
    while cause is not None and all(cause is not seen for seen in chain):
        chain.append(cause)
        inner = getattr(cause, "inner_exception", None)
        cause = (
            inner if isinstance(inner, BaseException) else (cause.__cause__ or cause.__context__)
        )
    for cause in chain:
        if isinstance(cause, ssl.SSLCertVerificationError) and cause.verify_message:
            return str(cause.verify_message)
    if any("CERTIFICATE_VERIFY_FAILED" in str(c) for c in chain):
        return "certificate verify failed"  # requests may keep only the text of the cause
    return None


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
