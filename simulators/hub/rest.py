"""The service-side HTTPS REST API, shaped for ``IoTHubRegistryManager``.

Requests carry ``Authorization: SharedAccessSignature ...&skn=iothubowner``,
checked against the hub's service policy key. Errors come back with IoT Hub's
status codes and a JSON body naming the cause. Every operation is throttled
at the tier's documented rate (429 with ``Retry-After``), a query page holds
at most 100 records, and queries read a view that trails the twins by up to
the query lag (see :mod:`simulators.hub.timing`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

from aiohttp import web

from simulators.hub import sas
from simulators.hub.configurations import (
    ConfigurationEngine,
    check_metric_query,
    check_target_condition,
)
from simulators.hub.errors import AuthError, BadRequest, RequestError
from simulators.hub.iothub import IoTHub
from simulators.hub.query import parse_query
from simulators.hub.registry import Device, DeviceStatus
from simulators.hub.sas import new_key
from simulators.hub.throttling import Operation, Throttle
from simulators.hub.timing import Timing
from simulators.hub.twins import Twin, loads_object

SERVICE_POLICY = "iothubowner"
DEFAULT_PAGE = 100
#: "Query twins": a page holds at most 100 records (x-ms-max-item-count).
MAX_PAGE = 100
MAX_METHOD_TIMEOUT = 300.0
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: Device Update's routes check their own bearer token (simulators/hub/adu/api.py).
OWN_AUTH_PREFIXES = ("/deviceUpdate/", "/adu-files/")


def twin_json(
    hub: IoTHub, twin: Twin, configs: ConfigurationEngine | None = None
) -> dict[str, Any]:
    """A twin as the service sees it, with IoT Hub's field names."""
    device = hub.devices.get(twin.device_id)
    connected = hub.is_connected(twin.device_id)
    view = twin.device_view()
    return {
        "deviceId": twin.device_id,
        "etag": twin.etag,
        "deviceEtag": device.etag if device else None,
        "version": twin.version,
        "status": device.status.value if device else "enabled",
        "connectionState": "Connected" if connected else "Disconnected",
        "authenticationType": "sas",
        "cloudToDeviceMessageCount": 0,
        "tags": twin.tags,
        "properties": view,
        "capabilities": {"iotEdge": False},
        **({"modelId": hub.model_ids[twin.device_id]} if twin.device_id in hub.model_ids else {}),
        **({"configurations": configs.statuses(twin.device_id)} if configs else {}),
    }


def _json(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status)


def _operation(request: web.Request) -> Operation | None:
    """Which throttle a request counts against (direct methods are metered by size: not here)."""
    path, method = request.path, request.method
    if path == "/devices/query":
        return Operation.QUERY
    if path.startswith("/devices/"):
        return Operation.REGISTRY
    if path.startswith("/twins/"):
        if path.endswith("/methods"):
            return None
        return Operation.TWIN_READ if method == "GET" else Operation.TWIN_UPDATE
    if path.startswith("/configurations"):
        return Operation.CONFIGURATION
    if path.startswith("/jobs"):
        return Operation.JOB
    return None


class QueryViews:
    """What queries read: the twins as they were up to ``QUERY_LAG`` model seconds ago."""

    def __init__(self, hub: IoTHub, configs: ConfigurationEngine | None, timing: Timing) -> None:
        self._hub, self._configs, self._timing = hub, configs, timing
        self._rows: list[tuple[Twin, dict[str, Any]]] | None = None
        self._at = 0.0

    def rows(self) -> list[tuple[Twin, dict[str, Any]]]:
        now = self._timing.now()
        if self._rows is None or now - self._at >= self._timing.query_lag:
            twins = sorted(self._hub.twins_for_query(), key=lambda t: t.device_id)
            self._rows = [(t, self._view(t)) for t in twins]
            self._at = now
        return self._rows

    def _view(self, twin: Twin) -> dict[str, Any]:
        return self._configs.view(twin) if self._configs else twin.query_view()


class ServiceApi:
    def __init__(
        self,
        hub: IoTHub,
        service_key: str,
        service_hosts: tuple[str, ...],
        configs: ConfigurationEngine | None = None,
        *,
        timing: Timing | None = None,
        throttle: Throttle | None = None,
        on_configuration_change: Callable[[], None] = lambda: None,
    ) -> None:
        self._hub = hub
        self._key = service_key
        self._hosts = service_hosts
        self._configs = configs
        self._timing = timing or Timing()
        self._throttle = throttle or Throttle()
        self._views = QueryViews(hub, configs, self._timing)
        self._config_changed = on_configuration_change

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._errors, self._auth, self._throttled])
        app.add_routes(
            [
                web.post("/devices/query", self.query),
                web.get("/devices/{id}", self.get_device),
                web.put("/devices/{id}", self.put_device),
                web.delete("/devices/{id}", self.delete_device),
                web.get("/twins/{id}", self.get_twin),
                web.patch("/twins/{id}", self.patch_twin),
                web.put("/twins/{id}", self.put_twin),
                web.post("/twins/{id}/methods", self.invoke_method),
                web.post("/configurations/testQueries", self.test_queries),
                web.get("/configurations", self.list_configurations),
                web.get("/configurations/{id}", self.get_configuration),
                web.put("/configurations/{id}", self.put_configuration),
                web.delete("/configurations/{id}", self.delete_configuration),
            ]
        )
        return app

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except AuthError as exc:
            return _json({"Message": f"ErrorCode:IotHubUnauthorizedAccess;{exc}"}, 401)
        except RequestError as exc:
            code = f"{int(exc.status)}001"
            return _json(
                {"Message": f"ErrorCode:{code};{exc}", "ExceptionMessage": str(exc)}, exc.status
            )

    @web.middleware
    async def _auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(OWN_AUTH_PREFIXES):
            return await handler(request)
        token = sas.parse_token(request.headers.get("Authorization", ""))
        if token.key_name != SERVICE_POLICY:
            raise AuthError("only the iothubowner policy is known")
        if not any(sas.resource_matches(token, host) for host in self._hosts):
            raise AuthError("token resource does not name this hub")
        sas.verify(token, (self._key,), time.time())
        return await handler(request)

    @web.middleware
    async def _throttled(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        op = _operation(request)
        wait = self._throttle.take(op, self._timing.now()) if op is not None else 0.0
        if not wait:
            return await handler(request)
        real = self._timing.real(wait)
        return web.json_response(
            {"Message": f"ErrorCode:ThrottlingException;{op.value if op else ''}: the hub's "
                        f"{self._throttle.tier} rate is exceeded; retry after {real:.3f}s"},
            status=HTTPStatus.TOO_MANY_REQUESTS,
            headers={"Retry-After": str(max(1, math.ceil(real))),
                     "retry-after-ms": str(max(1, math.ceil(real * 1000)))},
        )  # fmt: skip

    async def _body(self, request: web.Request) -> dict[str, Any]:
        raw = await request.read()
        if not raw:
            raise BadRequest("body is not JSON")
        return loads_object(raw, "body")  # its nesting is bounded before parsing

    # ---------------------------------------------------------------- devices

    async def get_device(self, request: web.Request) -> web.Response:
        device = self._hub.device(request.match_info["id"])
        return _json(device.service_view(self._hub.is_connected(device.device_id)))

    async def put_device(self, request: web.Request) -> web.Response:
        device_id = request.match_info["id"]
        body = await self._body(request)
        auth = body.get("authentication") or {}
        keys = auth.get("symmetricKey") or {}
        if auth.get("type", "sas") != "sas":
            raise BadRequest("only symmetric-key (sas) devices are supported")
        try:
            status = DeviceStatus(body.get("status") or "enabled")
        except ValueError as exc:
            raise BadRequest("status must be 'enabled' or 'disabled'") from exc
        device = Device(
            device_id,
            keys.get("primaryKey") or new_key(),
            keys.get("secondaryKey") or new_key(),
            status,
        )
        stored = self._hub.put_device(device, request.headers.get("If-Match"))
        return _json(stored.service_view(self._hub.is_connected(device_id)))

    async def delete_device(self, request: web.Request) -> web.Response:
        self._hub.delete_device(request.match_info["id"], request.headers.get("If-Match"))
        return web.Response(status=204)

    # ---------------------------------------------------------------- twins

    async def get_twin(self, request: web.Request) -> web.Response:
        twin = self._hub.get_twin(request.match_info["id"])
        return _json(twin_json(self._hub, twin, self._configs))

    async def patch_twin(self, request: web.Request) -> web.Response:
        twin = self._hub.update_twin(
            request.match_info["id"], await self._body(request), request.headers.get("If-Match")
        )
        return _json(twin_json(self._hub, twin))

    async def put_twin(self, request: web.Request) -> web.Response:
        twin = self._hub.replace_twin(
            request.match_info["id"], await self._body(request), request.headers.get("If-Match")
        )
        return _json(twin_json(self._hub, twin))

    # ---------------------------------------------------------------- query, methods

    async def query(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        query = parse_query(str(body.get("query", "")))
        try:
            start = int(request.headers.get("x-ms-continuation") or 0)
            page = int(request.headers.get("x-ms-max-item-count") or DEFAULT_PAGE)
        except ValueError as exc:
            raise BadRequest("bad continuation token or item count") from exc
        if not 1 <= page <= MAX_PAGE:
            raise BadRequest(f"x-ms-max-item-count must be 1-{MAX_PAGE}, not {page}")
        rows = self._views.rows()
        if query.is_star:
            matched = query.limit([t for t, v in rows if query.matches(v)])
            return self._page(matched, start, page, "twin")
        return self._page(query.run(v for _, v in rows), start, page, "raw")

    def _page(self, items: list[Any], start: int, page: int, kind: str) -> web.Response:
        chunk = items[start : start + max(page, 1)]
        headers = {"x-ms-item-type": kind}
        if start + len(chunk) < len(items):
            headers["x-ms-continuation"] = str(start + len(chunk))
        if kind == "twin":
            chunk = [twin_json(self._hub, t, self._configs) for t in chunk]
        return web.json_response(chunk, headers=headers)

    async def invoke_method(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        name = body.get("methodName")
        if not isinstance(name, str) or not name:
            raise BadRequest("methodName is required")
        timeout = float(body.get("responseTimeoutInSeconds") or 30)
        status, payload = await self._hub.invoke_method(
            request.match_info["id"],
            name,
            body.get("payload"),
            min(max(timeout, 1.0), MAX_METHOD_TIMEOUT),
        )
        return _json({"status": status, "payload": payload})

    # ---------------------------------------------------------------- configurations

    @property
    def configs(self) -> ConfigurationEngine:
        if self._configs is None:
            raise RequestError("configurations are not enabled", HTTPStatus.NOT_FOUND)
        return self._configs

    async def get_configuration(self, request: web.Request) -> web.Response:
        configs = self.configs
        return _json(configs.to_json(configs.get(request.match_info["id"])))

    async def put_configuration(self, request: web.Request) -> web.Response:
        configs = self.configs
        config_id = request.match_info["id"]
        existed = config_id in configs.configs
        stored = configs.put(config_id, await self._body(request), request.headers.get("If-Match"))
        self._config_changed()  # IoT Hub evaluates a new or changed one shortly
        return _json(configs.to_json(stored), 200 if existed else 201)

    async def delete_configuration(self, request: web.Request) -> web.Response:
        self.configs.delete(request.match_info["id"], request.headers.get("If-Match"))
        self._config_changed()
        return web.Response(status=204)

    async def list_configurations(self, request: web.Request) -> web.Response:
        configs = self.configs
        try:
            top = int(request.query.get("top") or 0) or None
        except ValueError as exc:
            raise BadRequest("top must be an integer") from exc
        return _json([configs.to_json(c) for c in configs.list(top)])

    async def test_queries(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        target = body.get("targetCondition") or ""
        metrics = body.get("customMetricQueries") or {}
        if not isinstance(target, str) or not isinstance(metrics, dict):
            raise BadRequest("targetCondition must be a string, customMetricQueries an object")
        errors = {name: check_metric_query(str(q)) or "" for name, q in metrics.items()}
        return _json(
            {
                "targetConditionError": check_target_condition(target) or "",
                "customMetricQueryErrors": errors,
            }
        )
