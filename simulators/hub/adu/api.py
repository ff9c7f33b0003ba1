"""Device Update's data-plane REST API over :class:`AduService`, for the official SDK.

Paths, verbs and bodies are those of ``azure-iot-deviceupdate`` (its
``operations/_operations.py`` request builders; API version 2022-10-01 and later).
Requests carry ``Authorization: Bearer <token>``; the emulator's token is in its
connection facts (``adu_token``). Lists answer ``{"value": [...]}`` (one page).
Files and the root key package are served, without a token, under ``/adu-files/``
as ADU's download CDN serves them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web

from simulators.hub.adu.errors import AduRequestError
from simulators.hub.adu.service import AduService

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
API_PREFIX = "/deviceUpdate/{instance}"
#: Deployments with a future start time and rollback policies are checked this often.
TICK_S = 1.0


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(body, status=status, headers=headers)


def _page(items: list[Any]) -> web.Response:
    return _json({"value": items})


class AduApi:
    def __init__(self, service: AduService, token: str, instance_id: str) -> None:
        self.service = service
        self.token = token
        self.instance_id = instance_id

    def routes(self) -> list[web.RouteDef]:
        p = API_PREFIX
        u = f"{p}/updates"
        v = f"{u}/providers/{{provider}}/names/{{name}}/versions/{{version}}"
        m = f"{p}/management"
        g = f"{m}/groups/{{group}}"
        d = f"{g}/deployments/{{deployment}}"
        s = f"{g}/deviceClassSubgroups/{{cls}}"
        sd = f"{s}/deployments/{{deployment}}"
        return [
            web.post(f"{u}:import", self.import_update),
            web.get(u, self.list_updates),
            web.get(f"{u}/providers", self.list_providers),
            web.get(f"{u}/providers/{{provider}}/names", self.list_names),
            web.get(f"{u}/providers/{{provider}}/names/{{name}}/versions", self.list_versions),
            web.get(v, self.get_update),
            web.delete(v, self.delete_update),
            web.get(f"{v}/files", self.list_files),
            web.get(f"{v}/files/{{file}}", self.get_file),
            web.get(f"{u}/operations", self.list_operations),
            web.get(f"{u}/operations/{{op}}", self.get_operation),
            web.get(f"{m}/deviceClasses", self.list_device_classes),
            web.get(f"{m}/deviceClasses/{{cls}}", self.get_device_class),
            web.get(f"{m}/deviceClasses/{{cls}}/installableUpdates", self.installable_updates),
            web.get(f"{m}/devices", self.list_devices),
            web.get(f"{m}/devices/{{device}}", self.get_device),
            web.get(f"{m}/updateCompliance", self.compliance),
            web.get(f"{m}/groups", self.list_groups),
            web.get(g, self.get_group),
            web.delete(g, self.delete_group),
            web.get(f"{g}/updateCompliance", self.group_compliance),
            web.get(f"{g}/bestUpdates", self.best_updates),
            web.get(f"{g}/deployments", self.list_deployments),
            web.get(d, self.get_deployment),
            web.put(d, self.put_deployment),
            web.delete(d, self.delete_deployment),
            web.get(f"{d}/status", self.deployment_status),
            web.get(f"{g}/deviceClassSubgroups", self.list_subgroups),
            web.get(s, self.get_subgroup),
            web.get(f"{s}/bestUpdates", self.subgroup_best_update),
            web.get(f"{s}/updateCompliance", self.subgroup_compliance),
            web.get(sd, self.get_subgroup_deployment),
            web.post(f"{sd}:cancel", self.cancel),
            web.post(f"{sd}:retry", self.retry),
            web.get(f"{sd}/status", self.subgroup_deployment_status),
            web.get(f"{sd}/devicestates", self.device_states),
            web.get("/adu-files/rootkeypackage.json", self.root_key_package),
            web.get("/adu-files/{sha256}/{name}", self.download),
        ]

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith("/deviceUpdate/"):
            return await handler(request)
        auth = request.headers.get("Authorization", "")
        if not hmac.compare_digest(auth.encode(), f"Bearer {self.token}".encode()):
            return _json(
                {"error": {"code": "Unauthorized", "message": "bad or no bearer token"}}, 401
            )
        if request.match_info.get("instance") != self.instance_id:
            return _json(
                {"error": {"code": "InstanceNotFound", "message": "no such instance"}}, 404
            )
        try:
            return await handler(request)
        except AduRequestError as exc:
            return _json(exc.body(), exc.status)

    async def ticker(self, app: web.Application) -> AsyncIterator[None]:
        """aiohttp cleanup context: start deployments when due, apply rollback policies."""

        async def loop() -> None:
            while True:
                try:
                    self.service.tick()
                except Exception:  # one bad pass must not end the loop
                    log.exception("ADU tick failed")
                await asyncio.sleep(TICK_S)

        task = asyncio.create_task(loop())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await self.service.close()

    async def _body(self, request: web.Request) -> Any:
        try:
            return await request.json(loads=json.loads)
        except ValueError as exc:
            raise AduRequestError(400, "BadRequest", "body is not JSON") from exc

    # ------------------------------------------------------------ updates

    async def import_update(self, request: web.Request) -> web.Response:
        op = self.service.catalog.begin_import(await self._body(request))
        where = (
            f"{request.scheme}://{request.host}/deviceUpdate/{self.instance_id}/updates/operations/"
            f"{op['operationId']}?api-version={request.query.get('api-version', '2022-10-01')}"
        )
        return web.Response(status=202, headers={"Operation-Location": where})

    def _updates(self) -> list[dict[str, Any]]:
        return [self.service.catalog.public_update(u) for u in self.service.updates.values()]

    async def list_updates(self, request: web.Request) -> web.Response:
        return _page(self._updates())

    async def list_providers(self, request: web.Request) -> web.Response:
        return _page(sorted({u["updateId"]["provider"] for u in self._updates()}))

    async def list_names(self, request: web.Request) -> web.Response:
        p = request.match_info["provider"]
        return _page(
            sorted(
                {u["updateId"]["name"] for u in self._updates() if u["updateId"]["provider"] == p}
            )
        )

    async def list_versions(self, request: web.Request) -> web.Response:
        p, n = request.match_info["provider"], request.match_info["name"]
        return _page(
            [
                u["updateId"]["version"]
                for u in self._updates()
                if u["updateId"]["provider"] == p and u["updateId"]["name"] == n
            ]
        )

    def _update(self, request: web.Request) -> dict[str, Any]:
        i = request.match_info
        return self.service.catalog.update(i["provider"], i["name"], i["version"])

    async def get_update(self, request: web.Request) -> web.Response:
        return _json(self.service.catalog.public_update(self._update(request)))

    async def delete_update(self, request: web.Request) -> web.Response:
        i = request.match_info
        self.service.delete_update(i["provider"], i["name"], i["version"])
        return web.Response(status=204)

    async def list_files(self, request: web.Request) -> web.Response:
        return _page([f["file_id"] for f in self._update(request)["_files"]])

    async def get_file(self, request: web.Request) -> web.Response:
        return _json(
            self.service.catalog.file_record(self._update(request), request.match_info["file"])
        )

    async def list_operations(self, request: web.Request) -> web.Response:
        return _page(list(self.service.catalog.operations.values()))

    async def get_operation(self, request: web.Request) -> web.Response:
        op = self.service.catalog.operations.get(request.match_info["op"])
        if op is None:
            raise AduRequestError(404, "OperationNotFound", "no such operation")
        headers = {"Retry-After": "1"} if op["status"] in ("NotStarted", "Running") else None
        return _json(op, headers=headers)

    # ------------------------------------------------------------ devices and classes

    def _class_json(self, class_id: str) -> dict[str, Any]:
        record = self.service.classes[class_id]
        best = self.service.best_update(class_id)
        out: dict[str, Any] = {
            "deviceClassId": class_id,
            "friendlyName": ",".join(record["compat"].values()),
            "deviceClassProperties": {
                "compatProperties": record["compat"],
                "contractModel": {"id": record["model"], "name": "Device Update Model"},
            },
        }
        if best is not None:
            out["bestCompatibleUpdate"] = {"updateId": best["updateId"]}
        return out

    async def list_device_classes(self, request: web.Request) -> web.Response:
        self.service.devices()
        return _page([self._class_json(c) for c in self.service.classes])

    async def get_device_class(self, request: web.Request) -> web.Response:
        self.service.devices()
        cls = request.match_info["cls"]
        if cls not in self.service.classes:
            raise AduRequestError(404, "DeviceClassNotFound", "no such device class")
        return _json(self._class_json(cls))

    async def installable_updates(self, request: web.Request) -> web.Response:
        from simulators.hub.adu.fleet import compatible

        cls = self.service.classes.get(request.match_info["cls"])
        if cls is None:
            raise AduRequestError(404, "DeviceClassNotFound", "no such device class")
        return _page(
            [
                {"updateId": u["updateId"]}
                for u in self._updates()
                if compatible(cls["compat"], u["compatibility"])
            ]
        )

    async def list_devices(self, request: web.Request) -> web.Response:
        devices = self.service.devices()
        want = request.query.get("filter", "")
        if want.startswith("groupId eq "):
            group = want.removeprefix("groupId eq ").strip("'")
            devices = [d for d in devices if d.group_id == group]
        return _page([self.service.device_json(d) for d in devices])

    async def get_device(self, request: web.Request) -> web.Response:
        for d in self.service.devices():
            if d.device_id == request.match_info["device"]:
                return _json(self.service.device_json(d))
        raise AduRequestError(404, "DeviceNotFound", "no such Device Update device")

    async def compliance(self, request: web.Request) -> web.Response:
        return _json(self.service.compliance(self.service.devices()))

    # ------------------------------------------------------------ groups

    def _members(self, group_id: str) -> list[Any]:
        devices = self.service.devices()
        self.service.group(group_id)
        return [d for d in devices if d.group_id == group_id]

    def _group_json(self, group_id: str) -> dict[str, Any]:
        record = self.service.groups[group_id]
        members = [d for d in self.service.devices() if d.group_id == group_id]
        deps = [
            r["deploymentId"]
            for r in self.service.deployments.values()
            if r["groupId"] == group_id and self.service._active(r)
        ]
        return {
            "groupId": group_id,
            "groupType": record["groupType"],
            "createdDateTime": record["createdDateTime"],
            "deviceCount": len(members),
            "deployments": deps,
        }

    async def list_groups(self, request: web.Request) -> web.Response:
        self.service.devices()
        return _page([self._group_json(g) for g in self.service.groups])

    async def get_group(self, request: web.Request) -> web.Response:
        self._members(request.match_info["group"])
        return _json(self._group_json(request.match_info["group"]))

    async def delete_group(self, request: web.Request) -> web.Response:
        group = request.match_info["group"]
        if self._members(group):
            raise AduRequestError(409, "GroupNotEmpty", "a group with devices cannot be deleted")
        del self.service.groups[group]
        self.service.save()
        return web.Response(status=204)

    async def group_compliance(self, request: web.Request) -> web.Response:
        return _json(self.service.compliance(self._members(request.match_info["group"])))

    def _best(self, group: str, members: list[Any]) -> list[dict[str, Any]]:
        out = []
        for cls in sorted({d.class_id for d in members}):
            best = self.service.best_update(cls)
            if best is not None:
                count = sum(d.class_id == cls for d in members)
                out.append(
                    {
                        "groupId": group,
                        "deviceClassId": cls,
                        "deviceCount": count,
                        "update": {"updateId": best["updateId"]},
                    }
                )
        return out

    async def best_updates(self, request: web.Request) -> web.Response:
        group = request.match_info["group"]
        return _page(self._best(group, self._members(group)))

    # ------------------------------------------------------------ deployments

    def _deployment(self, request: web.Request) -> dict[str, Any]:
        return self.service.deployment(
            request.match_info["group"], request.match_info["deployment"]
        )

    def _with_subgroups(self, record: dict[str, Any]) -> dict[str, Any]:
        out = self.service.public_deployment(record)
        out["deviceClassSubgroups"] = sorted(self.service.subgroups(record, self.service.devices()))
        return out

    async def list_deployments(self, request: web.Request) -> web.Response:
        group = request.match_info["group"]
        self.service.group(group)
        return _page(
            [
                self._with_subgroups(r)
                for r in self.service.deployments.values()
                if r["groupId"] == group
            ]
        )

    async def get_deployment(self, request: web.Request) -> web.Response:
        return _json(self._with_subgroups(self._deployment(request)))

    async def put_deployment(self, request: web.Request) -> web.Response:
        i = request.match_info
        self.service.put_deployment(i["group"], i["deployment"], await self._body(request))
        return _json(self._with_subgroups(self._deployment(request)))

    async def delete_deployment(self, request: web.Request) -> web.Response:
        self.service.delete_deployment(
            request.match_info["group"], request.match_info["deployment"]
        )
        return web.Response(status=204)

    async def deployment_status(self, request: web.Request) -> web.Response:
        return _json(self.service.deployment_status(self._deployment(request)))

    def _subgroup(self, request: web.Request) -> tuple[str, list[Any]]:
        group, cls = request.match_info["group"], request.match_info["cls"]
        members = [d for d in self._members(group) if d.class_id == cls]
        if not members:
            raise AduRequestError(404, "DeviceClassSubgroupNotFound", "no such subgroup")
        return cls, members

    async def list_subgroups(self, request: web.Request) -> web.Response:
        group = request.match_info["group"]
        members = self._members(group)
        return _page(
            [
                {
                    "groupId": group,
                    "deviceClassId": c,
                    "createdDateTime": self.service.groups[group]["createdDateTime"],
                    "deviceCount": sum(d.class_id == c for d in members),
                }
                for c in sorted({d.class_id for d in members})
            ]
        )

    async def get_subgroup(self, request: web.Request) -> web.Response:
        cls, members = self._subgroup(request)
        group = request.match_info["group"]
        return _json(
            {
                "groupId": group,
                "deviceClassId": cls,
                "deviceCount": len(members),
                "createdDateTime": self.service.groups[group]["createdDateTime"],
            }
        )

    async def subgroup_best_update(self, request: web.Request) -> web.Response:
        _, members = self._subgroup(request)
        best = self._best(request.match_info["group"], members)
        if not best:
            raise AduRequestError(404, "UpdateNotFound", "no update fits this subgroup")
        return _json(best[0])

    async def subgroup_compliance(self, request: web.Request) -> web.Response:
        _, members = self._subgroup(request)
        return _json(self.service.compliance(members))

    def _subgroup_deployment(self, request: web.Request) -> tuple[dict[str, Any], str, list[Any]]:
        record = self._deployment(request)
        cls = request.match_info["cls"]
        members = self.service.subgroups(record, self.service.devices()).get(cls)
        if not members:
            raise AduRequestError(404, "DeploymentNotFound", "the deployment has no such subgroup")
        return record, cls, members

    async def get_subgroup_deployment(self, request: web.Request) -> web.Response:
        record, _, _ = self._subgroup_deployment(request)
        return _json(self._with_subgroups(record))

    async def cancel(self, request: web.Request) -> web.Response:
        record, cls, _ = self._subgroup_deployment(request)
        self.service.cancel(record["groupId"], record["deploymentId"], cls)
        return _json(self._with_subgroups(record))

    async def retry(self, request: web.Request) -> web.Response:
        record, cls, _ = self._subgroup_deployment(request)
        self.service.retry(record["groupId"], record["deploymentId"], cls)
        return _json(self._with_subgroups(record))

    async def subgroup_deployment_status(self, request: web.Request) -> web.Response:
        record, cls, members = self._subgroup_deployment(request)
        return _json(self.service.subgroup_status(record, cls, members))

    async def device_states(self, request: web.Request) -> web.Response:
        record, _, members = self._subgroup_deployment(request)
        out = []
        for d in members:
            state = self.service.device_state(record, d)
            out.append(
                {
                    "deviceId": d.device_id,
                    "deviceState": state,
                    "retryCount": int(d.device_id in record["_retries"]),
                    "movedOnToNewDeployment": False,
                }
            )
        want = request.query.get("filter", "")
        if want.startswith("deviceState eq "):
            wanted = want.removeprefix("deviceState eq ").strip("'")
            out = [o for o in out if o["deviceState"] == wanted]
        return _page(out)

    # ------------------------------------------------------------ downloads

    async def root_key_package(self, request: web.Request) -> web.Response:
        return _json(self.service.signer.root_key_package())

    async def download(self, request: web.Request) -> web.StreamResponse:
        path = self.service.catalog.file_path(request.match_info["sha256"])
        if path is None:
            raise web.HTTPNotFound()
        return web.FileResponse(path)  # Range requests included, as the CDN answers them
