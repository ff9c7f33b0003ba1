"""``mcu-gateway adu``: Azure Device Update tools.

``verify FILE`` checks a ``deviceUpdate.service`` value as ADU writes it into a twin
(signature chain up to a root key, manifest hash) and says what it holds, so an
operator can diagnose a deployment. ``import``, ``deploy`` and ``status`` drive an ADU
instance through Microsoft's ``azure-iot-deviceupdate`` SDK.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from gateway.cli.common import CommandError


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("adu", help="Azure Device Update: verify, import, deploy, status")
    cmds = p.add_subparsers(dest="adu_command", required=True, metavar="ACTION")
    v = cmds.add_parser(
        "verify",
        help="check a deviceUpdate.service value (signature chain, manifest hash)",
        description="Verify a deviceUpdate.service desired value as ADU sends it: the "
        "updateManifestSignature chain up to a root key, and the updateManifest hash. "
        "Exits non-zero on any failure.",
    )
    v.add_argument("file", type=Path, help="JSON file: the service value, or a twin holding one")
    v.add_argument(
        "--root-key-package", type=Path, help="a root key package to apply (disabled keys)"
    )
    v.add_argument(
        "--test-root-keys",
        type=Path,
        help="also trust these test root keys (JWK set), e.g. the emulator's",
    )
    v.add_argument("--json", action="store_true", help="print one JSON object")
    v.set_defaults(func=_verify)
    from gateway.cli import adu_service

    adu_service.register(cmds)


def _service_value(data: Any) -> Any:
    """The value itself, or the one inside a twin / desired section / component."""
    for path in (
        ("properties", "desired", "deviceUpdate", "service"),
        ("desired", "deviceUpdate", "service"),
        ("deviceUpdate", "service"),
        ("service",),
    ):
        node = data
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict):
            return node
    return data


def _verify(args: argparse.Namespace) -> int:
    from gateway.adu.errors import AduError
    from gateway.adu.manifest import verify_service
    from gateway.adu.rootkeys import RootKeyStore

    try:
        data = json.loads(args.file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CommandError(f"{args.file}: not a readable JSON file ({exc})") from exc
    try:
        store = (
            RootKeyStore.with_test_keys(args.test_root_keys)
            if args.test_root_keys
            else RootKeyStore.production()
        )
        if args.root_key_package:
            store = store.accept(args.root_key_package.read_bytes())
        verified = verify_service(_service_value(data), store)
    except OSError as exc:
        raise CommandError(str(exc)) from exc
    except AduError as exc:
        raise CommandError(f"{args.file}: {exc.message} (ERC {exc.erc:08X})") from exc
    m = verified.manifest
    summary = {
        "ok": True,
        "workflow": {
            "action": verified.workflow.action,
            "id": verified.workflow.id,
            "retryTimestamp": verified.workflow.retry_timestamp,
        },
        "rootKey": verified.chain.root_kid,
        "signingKey": verified.chain.signing_kid,
        "updateId": {
            "provider": m.update_id.provider,
            "name": m.update_id.name,
            "version": m.update_id.version,
        },
        "manifestVersion": m.manifest_version,
        "compatibility": [dict(c) for c in m.compatibility],
        "steps": [
            {
                "handler": s.handler,
                "files": list(s.files),
                "installedCriteria": s.installed_criteria,
            }
            if s.handler is not None
            else {"reference": s.detached_manifest}
            for s in m.steps
        ],
        "files": [
            {
                "id": f.file_id,
                "name": f.file_name,
                "size": f.size,
                "sha256": f.sha256_hex,
                "url": verified.file_urls.get(f.file_id),
            }
            for f in m.files.values()
        ],
        "created": m.created,
    }
    if args.json:
        print(json.dumps(summary, indent=1))
        return 0
    out = sys.stdout
    out.write(
        f"OK: signed by {verified.chain.signing_kid} under root key "
        f"{verified.chain.root_kid}; manifest hash matches\n"
    )
    out.write(f"update    {m.update_id} (manifest v{m.manifest_version}, created {m.created})\n")
    w = verified.workflow
    retry = f", retry {w.retry_timestamp}" if w.retry_timestamp else ""
    out.write(f"workflow  action {w.action}, id {w.id}{retry}\n")
    for c in m.compatibility:
        out.write("compat    " + ", ".join(f"{k}={v}" for k, v in c.items()) + "\n")
    for i, s in enumerate(m.steps):
        if s.handler is None:
            out.write(f"step {i}    reference to detached manifest {s.detached_manifest}\n")
        else:
            out.write(
                f"step {i}    {s.handler} files {', '.join(s.files) or '-'} "
                f"installedCriteria {s.installed_criteria}\n"
            )
    for f in m.files.values():
        out.write(f"file      {f.file_id} {f.file_name} {f.size} B sha256 {f.sha256_hex}\n")
    return 0
