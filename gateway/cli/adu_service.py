"""``mcu-gateway adu import | deploy | status``: an ADU instance through Microsoft's SDK.

Every call goes through ``azure.iot.deviceupdate.DeviceUpdateClient`` (the official
``azure-iot-deviceupdate`` package), so what works against the local emulator works
against a real instance with its endpoint, instance id and an Entra ID credential.
The credential is a bearer token from ``--token-env VAR`` (the emulator prints one as
``adu_token``), else ``azure-identity``'s DefaultAzureCredential when installed.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import hashlib
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from gateway.cli.common import CommandError

_UPDATE = re.compile(r"([a-zA-Z0-9.-]+)/([a-zA-Z0-9.-]+)/(\d+(?:\.\d+){1,3})")


def register(cmds: argparse._SubParsersAction[Any]) -> None:
    bun = cmds.add_parser(
        "bundle",
        help="merge several models' import manifests into one update for a mixed group",
        description="ADU deploys one update per group; for a group of several MCU models, "
        "bundle each model's package (from `image pack --adu-manifest`) into one update.",
    )
    bun.add_argument("manifests", nargs="+", type=Path, help="one .importmanifest.json per model")
    bun.add_argument("-o", "--out", required=True, type=Path)
    bun.add_argument("--provider", required=True)
    bun.add_argument("--name", required=True, help="the bundle's update name")
    bun.set_defaults(func=_bundle)

    imp = cmds.add_parser(
        "import",
        help="import an update (import manifest v5 and its files) into ADU",
        description="Import an update: its import manifest (from `image pack --adu-manifest`) "
        "and files must already be downloadable from --base-url, as ADU fetches them itself.",
    )
    imp.add_argument("manifest", type=Path, help="the .importmanifest.json file")
    imp.add_argument(
        "--base-url", required=True, help="URL prefix under which the manifest and files lie"
    )
    imp.add_argument("--friendly-name", help="a name shown in the portal")
    _connection(imp)
    imp.set_defaults(func=_import)

    dep = cmds.add_parser(
        "deploy",
        help="deploy an imported update to an ADU group; or cancel or retry a deployment",
    )
    dep.add_argument("--group", required=True, help="the group: the devices' tags.ADUGroup")
    dep.add_argument("--update", help="PROVIDER/NAME/VERSION of the update to deploy")
    dep.add_argument("--deployment-id", help="default: made from the update and the time")
    dep.add_argument("--start", help="ISO 8601 start time (default: now)")
    dep.add_argument("--rollback-to", help="PROVIDER/NAME/VERSION for cloud-initiated rollback")
    dep.add_argument("--rollback-failed-count", type=int, default=1)
    dep.add_argument("--rollback-failed-percent", type=float, default=0.0)
    act = dep.add_mutually_exclusive_group()
    act.add_argument("--cancel", action="store_true", help="cancel --deployment-id")
    act.add_argument("--retry", action="store_true", help="retry --deployment-id's failed devices")
    _connection(dep)
    dep.set_defaults(func=_deploy)

    st = cmds.add_parser(
        "status", help="a group's compliance and deployment, with every failed device's result"
    )
    st.add_argument("--group", required=True)
    st.add_argument("--deployment-id", help="default: the group's newest deployment")
    _connection(st)
    st.set_defaults(func=_status)


def _connection(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--endpoint",
        default=os.environ.get("MCU_GATEWAY_ADU_ENDPOINT"),
        help="ADU endpoint host[:port] (default $MCU_GATEWAY_ADU_ENDPOINT)",
    )
    p.add_argument(
        "--instance",
        default=os.environ.get("MCU_GATEWAY_ADU_INSTANCE"),
        help="ADU instance id (default $MCU_GATEWAY_ADU_INSTANCE)",
    )
    p.add_argument("--token-env", metavar="VAR", help="environment variable holding a bearer token")
    p.add_argument("--ca-file", type=Path, help="extra CA to trust (the emulator's)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


class StaticToken:
    """A TokenCredential that hands out one bearer token (the emulator's)."""

    def __init__(self, token: str) -> None:
        self._token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        return AccessToken(self._token, int(time.time()) + 3600)


def _client(args: argparse.Namespace) -> Any:
    if not args.endpoint or not args.instance:
        raise CommandError("--endpoint and --instance are required (or $MCU_GATEWAY_ADU_*)")
    try:
        import azure.iot.deviceupdate  # noqa: F401 - a clear error before anything else
    except ImportError as exc:
        raise CommandError("the azure-iot-deviceupdate package is not installed") from exc
    credential: Any
    if args.token_env:
        token = os.environ.get(args.token_env)
        if not token:
            raise CommandError(f"--token-env {args.token_env}: the variable is empty or unset")
        credential = StaticToken(token)
    else:
        try:
            from azure.identity import DefaultAzureCredential
        except ImportError as exc:
            raise CommandError(
                "no credential: pass --token-env VAR, or install azure-identity to sign in"
            ) from exc
        credential = DefaultAzureCredential()
    return make_client(args.endpoint, args.instance, credential, ca_file=args.ca_file)


def make_client(
    endpoint: str, instance: str, credential: Any, *, ca_file: Path | None = None
) -> Any:
    """A DeviceUpdateClient; ``host:port`` endpoints (the emulator's) work too.

    The SDK only takes a host name (it builds ``https://{endpoint}`` and escapes a
    colon), as the real service listens on 443. For another port, azure-core's
    ``raw_request_hook`` puts it into each request's URL.
    """
    from azure.iot.deviceupdate import DeviceUpdateClient

    host, _, port = endpoint.removeprefix("https://").rstrip("/").partition(":")
    kwargs: dict[str, Any] = {}
    if ca_file is not None:
        kwargs["connection_verify"] = str(ca_file)
    if port:

        def add_port(request: Any) -> None:
            parts = urlsplit(request.http_request.url)
            if parts.hostname == host and parts.port is None:
                request.http_request.url = urlunsplit(parts._replace(netloc=f"{host}:{port}"))

        kwargs["raw_request_hook"] = add_port
    return DeviceUpdateClient(host, instance, credential, **kwargs)


def _service_error(exc: Exception) -> CommandError:
    from azure.core.exceptions import HttpResponseError

    if isinstance(exc, HttpResponseError):
        code = getattr(exc.error, "code", None) if exc.error else None
        message = getattr(exc.error, "message", None) if exc.error else None
        return CommandError(f"ADU refused: {code or exc.status_code}: {message or exc.reason}")
    return CommandError(f"ADU request failed: {type(exc).__name__}: {exc}")


def _update_id(text: str, option: str) -> dict[str, str]:
    match = _UPDATE.fullmatch(text or "")
    if match is None:
        raise CommandError(f"{option}: expected PROVIDER/NAME/VERSION, got {text!r:.80}")
    return {"provider": match[1], "name": match[2], "version": match[3]}


def _emit(args: argparse.Namespace, obj: dict[str, Any], text: str) -> None:
    print(json.dumps(obj, indent=1) if args.json else text)


# ------------------------------------------------------------ bundle


def _bundle(args: argparse.Namespace) -> int:
    from gateway.adu.errors import AduManifestError
    from gateway.adu.importmanifest import bundle

    docs = []
    for path in args.manifests:
        try:
            docs.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            raise CommandError(f"{path}: not a readable import manifest ({exc})") from exc
    try:
        merged = bundle(docs, provider=args.provider, name=args.name)
    except (AduManifestError, KeyError, TypeError, ValueError) as exc:
        message = exc.message if isinstance(exc, AduManifestError) else f"malformed: {exc!r}"
        raise CommandError(f"bundle: {message}") from exc
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text(json.dumps(merged, indent=2) + "\n", encoding="utf-8")
    tmp.replace(args.out)
    uid = merged["updateId"]
    print(
        f"wrote {args.out}: {uid['provider']}/{uid['name']}/{uid['version']} for {len(docs)} models"
    )
    return 0


# ------------------------------------------------------------ import


def _import(args: argparse.Namespace) -> int:
    try:
        raw = args.manifest.read_bytes()
        manifest = json.loads(raw)
        files = [f["filename"] for f in manifest.get("files") or []]
        uid = manifest["updateId"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CommandError(f"{args.manifest}: not a readable import manifest ({exc})") from exc
    base = args.base_url if args.base_url.endswith("/") else args.base_url + "/"
    item: dict[str, Any] = {
        "importManifest": {
            "url": base + args.manifest.name,
            "sizeInBytes": len(raw),
            "hashes": {"sha256": base64.b64encode(hashlib.sha256(raw).digest()).decode()},
        },
        "files": [{"filename": name, "url": base + name} for name in files],
    }
    if args.friendly_name:
        item["friendlyName"] = args.friendly_name
    client = _client(args)
    try:
        poller = client.device_update.begin_import_update([item], polling_interval=1)
        poller.result(timeout=600)
    except Exception as exc:
        raise _service_error(exc) from exc
    key = f"{uid['provider']}/{uid['name']}/{uid['version']}"
    _emit(args, {"ok": True, "updateId": uid}, f"imported {key}")
    return 0


# ------------------------------------------------------------ deploy


def _deploy(args: argparse.Namespace) -> int:
    client = _client(args)
    mgmt = client.device_management
    try:
        if args.cancel or args.retry:
            if not args.deployment_id:
                raise CommandError("--cancel and --retry need --deployment-id")
            dep = mgmt.get_deployment(args.group, args.deployment_id)
            for cls in dep.get("deviceClassSubgroups") or []:
                if args.cancel:
                    mgmt.stop_deployment(args.group, cls, args.deployment_id)
                else:
                    mgmt.retry_deployment(args.group, cls, args.deployment_id)
            verb = "cancelled" if args.cancel else "retried"
            _emit(args, {"ok": True, verb: args.deployment_id}, f"{verb} {args.deployment_id}")
            return 0
        uid = _update_id(args.update, "--update")
        dep_id = args.deployment_id or re.sub(
            r"[^a-zA-Z0-9.-]", "-", f"{uid['name']}-{uid['version']}-{int(time.time())}"
        )
        start = args.start or dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body: dict[str, Any] = {
            "deploymentId": dep_id,
            "groupId": args.group,
            "startDateTime": start,
            "update": {"updateId": uid},
        }
        if args.rollback_to:
            body["rollbackPolicy"] = {
                "update": {"updateId": _update_id(args.rollback_to, "--rollback-to")},
                "failure": {
                    "devicesFailedCount": args.rollback_failed_count,
                    "devicesFailedPercentage": args.rollback_failed_percent,
                },
            }
        result = mgmt.create_or_update_deployment(args.group, dep_id, body)
    except CommandError:
        raise
    except Exception as exc:
        raise _service_error(exc) from exc
    subgroups = result.get("deviceClassSubgroups") or []
    _emit(
        args,
        {"ok": True, "deploymentId": dep_id, "deviceClassSubgroups": subgroups},
        f"deployment {dep_id}: {'/'.join(uid.values())} to group {args.group} "
        f"({len(subgroups)} device class(es))",
    )
    return 0


# ------------------------------------------------------------ status


def _status(args: argparse.Namespace) -> int:
    client = _client(args)
    mgmt = client.device_management
    try:
        compliance = mgmt.get_update_compliance_for_group(args.group)
        deployments = list(mgmt.list_deployments_for_group(args.group))
        chosen = args.deployment_id or (
            max(deployments, key=lambda d: d.get("startDateTime", ""))["deploymentId"]
            if deployments
            else None
        )
        status: dict[str, Any] | None = None
        devices: list[dict[str, Any]] = []
        if chosen is not None:
            status = mgmt.get_deployment_status(args.group, chosen)
            for sub in status.get("subgroupStatus") or []:
                cls = sub["deviceClassId"]
                for state in mgmt.list_device_states_for_device_class_subgroup_deployment(
                    args.group, cls, chosen
                ):
                    entry = {"deviceId": state["deviceId"], "state": state["deviceState"]}
                    if state["deviceState"] == "Failed":
                        info = mgmt.get_device(state["deviceId"])
                        result = info.get("lastInstallResult") or {}
                        entry["resultCode"] = result.get("resultCode")
                        entry["extendedResultCode"] = (
                            f"{int(result.get('extendedResultCode') or 0) & 0xFFFFFFFF:08X}"
                        )
                        entry["resultDetails"] = result.get("resultDetails")
                    devices.append(entry)
    except Exception as exc:
        raise _service_error(exc) from exc
    summary = {
        "group": args.group,
        "compliance": compliance,
        "deploymentId": chosen,
        "deployment": status,
        "devices": devices,
    }
    if args.json:
        print(json.dumps(summary, indent=1))
        return 0
    out = sys.stdout
    c = compliance
    out.write(
        f"group {args.group}: {c['onLatestUpdateDeviceCount']}/{c['totalDeviceCount']} on the "
        f"latest update, {c['updatesInProgressDeviceCount']} in progress, "
        f"{c['newUpdatesAvailableDeviceCount']} with a new update available\n"
    )
    if status is not None:
        out.write(f"deployment {chosen}: {status.get('deploymentState')}\n")
    for d in devices:
        line = f"  {d['deviceId']}: {d['state']}"
        if d["state"] == "Failed":
            line += f" (ERC {d['extendedResultCode']}) {d.get('resultDetails') or ''}"
        out.write(line.rstrip() + "\n")
    return 0
