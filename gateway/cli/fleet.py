"""`mcu-gateway fleet`: phased firmware rollouts and fleet status, on IoT Hub itself.

A service-side tool: it speaks to IoT Hub's service API through the official
SDK with a service connection string read from ``--service-cs-file`` or
``MCU_GATEWAY_SERVICE_CS`` (never from a flag, which would land in shell
history), and keeps no state of its own: a rollout lives in IoT Hub's
configurations, so ``fleet deploy`` can be stopped and rerun anywhere.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from firmware.urls import redact_url
from gateway.cli.common import CommandError

if TYPE_CHECKING:
    from gateway.fleet.hub import FleetHub
    from gateway.fleet.rollout import Package, Rollout

CS_ENV = "MCU_GATEWAY_SERVICE_CS"
EXIT_HALTED = 2  # a rollout breached its failure threshold
EXIT_TIMEOUT = 3  # --wait gave up before the rollout finished


def register(sub: argparse._SubParsersAction[Any]) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--service-cs-file",
        type=Path,
        metavar="FILE",
        help=f"file holding the IoT Hub service connection string (default: ${CS_ENV})",
    )
    common.add_argument(
        "--ca-file",
        type=Path,
        metavar="PEM",
        help="CA to trust for the hub, e.g. the emulator's ca.pem "
        "(default: $REQUESTS_CA_BUNDLE, else the system CAs)",
    )
    p = sub.add_parser(
        "fleet",
        help="fleet rollouts and status on IoT Hub (service side)",
        description="Phased firmware rollouts over IoT Hub automatic device configurations, "
        "and a fleet status view that pinpoints failed MCUs.",
    )
    fleet = p.add_subparsers(dest="fleet_command", required=True, metavar="ACTION")

    s = fleet.add_parser("status", parents=[common], help="counts, failures and progress")
    s.add_argument(
        "--where", help="narrow to twins matching this query condition (default: every twin)"
    )
    s.add_argument("--json", action="store_true", help="print JSON instead of tables")
    s.add_argument(
        "--html", type=Path, metavar="FILE",
        help="also write a self-contained report (default: none)",
    )  # fmt: skip
    s.set_defaults(func=_status)

    d = fleet.add_parser("deploy", parents=[common], help="create or continue a phased rollout")
    d.add_argument("--name", required=True, help="rollout name: lower-case letters, digits, '-'")
    d.add_argument("--package-uri", required=True, metavar="URL",
                   help="where the gateways download the package (https)")  # fmt: skip
    d.add_argument("--check-value", required=True, help="SHA-256 of the package (64 hex)")
    d.add_argument("--size", required=True, type=int, help="package size in bytes")
    d.add_argument("--version", required=True, dest="fw_version", help="firmware version")
    d.add_argument(
        "--target",
        required=True,
        help="query condition: which twins, e.g. \"tags.[[group]] = 'plant-a'\"",
    )
    rings = d.add_mutually_exclusive_group()
    rings.add_argument(
        "--rings",
        help="ring names from tags.ring, in order; 'all' is the whole target (default: all)",
    )
    rings.add_argument(
        "--percent",
        help="cumulative percentages of the target, e.g. 1,10,100 (default: use --rings)",
    )
    d.add_argument(
        "--max-failure-rate",
        type=float,
        default=0.05,
        help="halt when more than this share of a ring fails, 0-1",
    )
    d.add_argument(
        "--min-success",
        type=int,
        help="successes a ring needs before the next (default: all but the failures allowed)",
    )
    d.add_argument(
        "--start", help="scheduled start, ISO-8601, UTC unless a zone is given (default: now)"
    )
    d.add_argument(
        "--window",
        help="install window HH:MM-HH:MM (UTC) on the MCUs' gateways (default: any time)",
    )
    d.add_argument(
        "--wait",
        action="store_true",
        help="follow the rollout ring by ring until done; exit 2 on a halt",
    )
    d.add_argument(
        "--interval",
        type=float,
        default=60.0,
        help="seconds between checks: IoT Hub recounts metrics every 5 minutes, and each "
        "check spends one of the 20 configuration operations a minute per unit",
    )
    d.add_argument(
        "--timeout",
        type=float,
        default=6 * 3600.0,
        help="--wait gives up after this many seconds: each ring takes at least one 5-minute "
        "evaluation plus the MCUs' update time (default: %(default).0f = 6 h)",
    )
    d.add_argument(
        "--package-ca-file",
        type=Path,
        metavar="PEM",
        help="CA for checking --package-uri (default: the system CAs)",
    )
    _limit_options(d)
    d.set_defaults(func=_deploy)

    pr = fleet.add_parser(
        "prune",
        parents=[common],
        help="delete superseded rollout configurations (never changes an MCU's firmware)",
    )
    pr.add_argument("--dry-run", action="store_true", help="only show what would go and why")
    pr.add_argument("--keep", type=int, default=None, metavar="N",
                    help="newest rollouts per target kept whole (default: 2)")  # fmt: skip
    pr.set_defaults(func=_prune)

    r = fleet.add_parser("rollouts", parents=[common], help="list rollouts and their state")
    r.add_argument("--json", action="store_true", help="print JSON instead of a table")
    r.set_defaults(func=_rollouts)

    sh = fleet.add_parser("show", parents=[common], help="one rollout, ring by ring")
    sh.add_argument("name", help="rollout name")
    sh.add_argument("--json", action="store_true", help="print JSON instead of tables")
    sh.set_defaults(func=_show)

    c = fleet.add_parser("cancel", parents=[common], help="stop: no new ring, no new MCU")
    c.add_argument("name", help="rollout name")
    c.set_defaults(func=_cancel)

    rt = fleet.add_parser("retry", parents=[common], help="re-target only the failed MCUs")
    rt.add_argument("name", help="rollout name")
    _limit_options(rt)
    rt.set_defaults(func=_retry)

    rb = fleet.add_parser(
        "rollback",
        parents=[common],
        help="deploy the previous version to the MCUs the rollout reached",
    )
    rb.add_argument("name", help="rollout name")
    earlier = "(default: the earlier rollout's)"
    rb.add_argument(
        "--package-uri",
        metavar="URL",
        help=f"previous package, when no earlier rollout recorded it {earlier}",
    )
    rb.add_argument("--check-value", help=f"SHA-256 of that package (64 hex) {earlier}")
    rb.add_argument("--size", type=int, help=f"that package's size in bytes {earlier}")
    rb.add_argument("--version", dest="fw_version", help=f"that package's version {earlier}")
    rb.add_argument(
        "--package-ca-file",
        type=Path,
        metavar="PEM",
        help="CA for checking --package-uri (default: the system CAs)",
    )
    _limit_options(rb)
    rb.set_defaults(func=_rollback)

    t = fleet.add_parser("tag", parents=[common], help="put MCUs into a group and/or ring")
    t.add_argument("devices", nargs="*", metavar="DEVICE_ID", help="MCUs to tag, by device id")
    t.add_argument(
        "--where", help="tag every twin matching this condition (default: only the DEVICE_IDs)"
    )
    unchanged = "(default: unchanged)"
    t.add_argument("--group", help=f"set tags.group; queries write it tags.[[group]] {unchanged}")
    t.add_argument("--ring", help=f"set tags.ring {unchanged}")
    t.add_argument(
        "--adu-group",
        help=f"set tags.ADUGroup: the MCUs' Azure Device Update group, docs/adu.md {unchanged}",
    )
    t.set_defaults(func=_tag)


# ------------------------------------------------------------------ plumbing


def _connection_string(args: argparse.Namespace) -> str:
    if args.service_cs_file is not None:
        try:
            text: str = args.service_cs_file.read_text().strip()
        except OSError as exc:
            raise CommandError(
                f"--service-cs-file: {exc.strerror}: {args.service_cs_file}"
            ) from None
        if not text:
            raise CommandError(f"--service-cs-file {args.service_cs_file} is empty")
        return text
    text = os.environ.get(CS_ENV, "").strip()
    if not text:
        raise CommandError(f"no service connection string: use --service-cs-file FILE or ${CS_ENV}")
    return text


def _hub(args: argparse.Namespace) -> FleetHub:
    from gateway.fleet import FleetError
    from gateway.fleet.hub import ServiceHub

    ca = args.ca_file
    if ca is not None and not ca.is_file():
        raise CommandError(f"--ca-file {ca}: no such file")
    try:
        return ServiceHub(_connection_string(args), str(ca) if ca else None)
    except FleetError as exc:
        raise CommandError(str(exc)) from None


def _limit_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--max-configurations",
        type=int,
        default=100,
        metavar="N",
        help="the hub's configuration limit (10 on the free tier): superseded rollout "
        "configurations are pruned before a new one would pass it",
    )
    p.add_argument(
        "--keep",
        type=int,
        default=2,
        metavar="N",
        help="newest rollouts per target that pruning keeps whole",
    )


def _limits(args: argparse.Namespace) -> Any:
    from gateway.fleet.deploy import Limits

    if args.max_configurations < 1 or args.keep < 1:
        raise CommandError("--max-configurations and --keep must be at least 1")

    def report(removal: Any) -> None:
        print(f"pruned {removal.config.id}: {removal.reason}", flush=True)

    return Limits(args.max_configurations, args.keep, report)


def _run(fn: Any, *args: Any) -> Any:
    """Call into the fleet package; its errors become one-line CLI errors."""
    from gateway.fleet import FleetError
    from gateway.fleet.errors import UntrustedHub

    try:
        return fn(*args)
    except UntrustedHub as exc:
        # A private CA (the emulator's, a lab's): say which switch trusts it.
        hint = "give the hub's CA with --ca-file PEM or REQUESTS_CA_BUNDLE"
        raise CommandError(f"{exc}; {hint}") from None
    except FleetError as exc:
        raise CommandError(str(exc)) from None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _console() -> Any:
    from rich.console import Console

    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=200)  # a pipe or a file: do not cut columns
    return console


# ------------------------------------------------------------------ status


def _status(args: argparse.Namespace) -> int:
    from gateway.fleet.report import render
    from gateway.fleet.status import collect

    hub = _hub(args)
    status = _run(collect, hub, args.where)
    if args.html is not None:
        try:
            page = render(status, where=args.where, now=_now(), rollouts=_all_rollouts(hub))
            args.html.write_text(page)
        except OSError as exc:
            raise CommandError(f"--html {args.html}: {exc.strerror}") from None
    if args.json:
        print(json.dumps(status.to_json(), indent=2, sort_keys=True))
        return 0
    _print_status(status)
    if args.html is not None:
        print(f"report written to {args.html}")
    return 0


def _print_status(status: Any) -> None:
    from rich.table import Table

    console = _console()
    console.print(
        f"[bold]{status.total} MCUs[/]  "
        + "  ".join(f"{k}: {v}" for k, v in status.by_status.items())
    )
    table = Table(title="versions by model")
    table.add_column("model")
    table.add_column("version")
    table.add_column("MCUs", justify="right")
    for model, versions in status.versions_by_model.items():
        for version, n in versions.items():
            table.add_row(model, version, str(n))
    console.print(table)
    if status.failures:
        failed = Table(title=f"failed or rolled back: {len(status.failures)}")
        for col in ("device", "gateway", "port", "model", "status", "running", "target",
                    "error", "phase", "message", "at"):  # fmt: skip
            failed.add_column(col)
        for f in status.failures:
            failed.add_row(f.device_id, f.gateway, f.port, f.model, f.status, f.version, f.target,
                           f.code, f.phase, f.message, f.at)  # fmt: skip
        console.print(failed)
    else:
        console.print("no failed MCUs")
    if status.in_progress:
        busy = Table(title=f"in progress: {len(status.in_progress)}")
        for col in ("device", "model", "status", "pending", "%"):
            busy.add_column(col)
        for b in status.in_progress:
            busy.add_row(b.device_id, b.model, b.status, b.pending, str(b.progress))
        console.print(busy)


# ------------------------------------------------------------------ deploy


def _check_uri(ca_file: Path | None) -> Any:
    from gateway.fleet.uri import check_package

    return lambda package: check_package(package, ca_file)


def _package(uri: str, check: str, size: int, version: str, window: str | None) -> Package:
    from gateway.fleet.rollout import Package

    return Package(version=version, uri=uri, check_value=check, size=size, window=window)


def _deploy(args: argparse.Namespace) -> int:
    from gateway.fleet import deploy
    from gateway.fleet.rollout import ALL, Plan

    if args.start is not None:
        from gateway.fleet.rollout import parse_time

        start = _run(parse_time, args.start).astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    else:
        start = None
    if args.percent:
        rings = tuple(f"{p.strip()}%" for p in args.percent.split(","))
    else:
        rings = tuple(r.strip() for r in (args.rings or ALL).split(","))
    for flag, value in (("--interval", args.interval), ("--timeout", args.timeout)):
        if not (math.isfinite(value) and value > 0):
            raise CommandError(f"{flag} must be a positive number of seconds, not {value}")
    package = _package(args.package_uri, args.check_value, args.size, args.fw_version, args.window)
    plan = _run(
        lambda: Plan(
            name=args.name,
            package=package,
            target=args.target,
            rings=rings,
            max_failure_rate=args.max_failure_rate,
            min_success=args.min_success,
            start=start,
        )
    )
    hub = _hub(args)
    limits = _limits(args)
    rollout = _run(deploy.create, hub, plan, _now(), _check_uri(args.package_ca_file), limits)
    print(
        f"rollout {plan.name}: version {plan.package.version} to {plan.target}; "
        f"rings {', '.join(plan.rings)}; state {rollout.state.value}",
        flush=True,
    )
    if not args.wait:
        result = _run(deploy.step, hub, plan.name, _now(), limits)
        print(f"rollout {plan.name}: {_describe(result.decision)}")
        return EXIT_HALTED if result.rollout.state.value == "halted" else 0
    return _follow(hub, plan.name, args.interval, args.timeout, limits)


def _describe(decision: Any) -> str:
    from gateway.fleet.rollout import Activate, Finish, Halt, StartRing, Wait

    match decision:
        case Activate():
            return "scheduled start reached; ring 0 started"
        case StartRing(index=k, reason=reason):
            return f"{reason}; ring {k + 1} started"
        case Halt(reason=reason):
            return f"HALTED: {reason}"
        case Finish(reason=reason):
            return f"done: {reason}"
        case Wait(reason=reason):
            return f"waiting: {reason}"
    return str(decision)


def _follow(hub: FleetHub, name: str, interval: float, timeout: float, limits: Any) -> int:
    from rich.live import Live

    from gateway.fleet import deploy
    from gateway.fleet.rollout import State

    console = _console()
    deadline = time.monotonic() + timeout
    last = ""
    started = {0: time.monotonic()}
    with Live(console=console, refresh_per_second=4, transient=not console.is_terminal) as live:
        while True:
            result = _run(deploy.step, hub, name, _now(), limits)
            rollout = result.rollout
            line = _describe(result.decision)
            for ring in rollout.rings:
                started.setdefault(ring.index, time.monotonic())
            live.update(_ring_table(rollout, started))
            if line != last:
                live.console.print(f"{time.strftime('%H:%M:%S')} rollout {name}: {line}")
                last = line
            if rollout.state is State.DONE:
                return 0
            if rollout.state is State.HALTED:
                live.console.print(f"rollout {name} halted: {rollout.reason}")
                return EXIT_HALTED
            if rollout.state in (State.CANCELLED, State.ROLLEDBACK):
                live.console.print(f"rollout {name} was {rollout.state.value} meanwhile")
                return EXIT_HALTED
            if time.monotonic() >= deadline:
                live.console.print(
                    f"rollout {name}: still {line} after {timeout:g}s; "
                    "rerun the same command to carry on"
                )
                return EXIT_TIMEOUT
            time.sleep(min(interval, max(0.0, deadline - time.monotonic())))


def _ring_table(rollout: Rollout, started: dict[int, float] | None = None) -> Any:
    """Rings as rows. Rings are cumulative and the newest configuration wins, so
    an earlier ring's MCUs are counted in the latest ring's row."""
    from rich.table import Table

    plan = rollout.plan
    table = Table(title=f"rollout {plan.name}: {plan.package.version} ({rollout.state.value})")
    for col in ("ring", "name", "state", "targeted", "applied", "current", "in progress",
                "failed", "rolled back", "seconds"):  # fmt: skip
        table.add_column(col, justify="left" if col in ("ring", "name", "state") else "right")
    times = started or {}
    now = time.monotonic()
    last = len(rollout.rings) - 1
    for ring in rollout.rings:
        since, until = times.get(ring.index), times.get(ring.index + 1, now)
        seconds = f"{until - since:.0f}" if since is not None else ""
        if ring.index < last:
            table.add_row(str(ring.index + 1), ring.name, "passed", str(ring.targeted),
                          *["in next"] * 5, seconds)  # fmt: skip
            continue
        table.add_row(
            str(ring.index + 1), ring.name, rollout.state.value, str(ring.targeted),
            str(ring.applied), str(ring.current), str(ring.in_progress), str(ring.failed),
            str(ring.rolled_back), seconds,
        )  # fmt: skip
    for k in range(len(rollout.rings), len(plan.rings)):
        table.add_row(str(k + 1), plan.rings[k], "not started", *[""] * 7)
    return table


# ------------------------------------------------------------------ rollouts, show


def _rollout_json(r: Rollout) -> dict[str, Any]:
    return {
        "name": r.plan.name,
        "version": r.plan.package.version,
        "target": r.plan.target,
        "rings": list(r.plan.rings),
        "state": r.state.value,
        "reason": r.reason,
        "created": r.created,
        "maxFailureRate": r.plan.max_failure_rate,
        "minSuccess": r.plan.min_success,
        "start": r.plan.start,
        "started": [
            {
                "index": s.index,
                "ring": s.name,
                "configuration": s.config_id,
                "targeted": s.targeted,
                "applied": s.applied,
                "current": s.current,
                "inProgress": s.in_progress,
                "failed": s.failed,
                "rolledBack": s.rolled_back,
            }
            for s in r.rings
        ],
        "extra": [c.id for c in r.extra],
    }


def _all_rollouts(hub: FleetHub) -> list[Rollout]:
    from gateway.fleet.rollout import load, rollout_names

    configs = _run(hub.configurations)
    found = [_run(load, n, configs) for n in rollout_names(configs)]
    return [r for r in found if r is not None]


def _rollouts(args: argparse.Namespace) -> int:
    from rich.table import Table

    rollouts = _all_rollouts(_hub(args))
    if args.json:
        print(json.dumps([_rollout_json(r) for r in rollouts], indent=2))
        return 0
    if not rollouts:
        print("no rollouts")
        return 0
    table = Table(title="rollouts")
    for col in ("name", "version", "state", "ring", "current", "failed", "target", "reason"):
        table.add_column(col)
    for r in rollouts:
        ring = r.current_ring
        table.add_row(
            r.plan.name,
            r.plan.package.version,
            r.state.value,
            f"{ring.index + 1}/{len(r.plan.rings)} {ring.name}" if ring else "-",
            str(ring.current) if ring else "-",
            str(ring.failures) if ring else "-",
            r.plan.target,
            r.reason,
        )
    _console().print(table)
    return 0


def _show(args: argparse.Namespace) -> int:
    from gateway.fleet import deploy

    rollout = _run(deploy.get, _hub(args), args.name)
    if args.json:
        print(json.dumps(_rollout_json(rollout), indent=2))
        return 0
    console = _console()
    console.print(_ring_table(rollout))
    plan = rollout.plan
    console.print(
        f"target: {plan.target}\npackage: {redact_url(plan.package.uri)} ({plan.package.size} "
        f"bytes)\nmax failure rate {plan.max_failure_rate:g}, min success "
        f"{plan.min_success if plan.min_success is not None else 'auto'}"
    )
    if rollout.reason:
        console.print(f"{rollout.state.value}: {rollout.reason}")
    for extra in rollout.extra:
        console.print(
            f"also: {extra.id} ({extra.labels.get('mcuFleet')}, version "
            f"{extra.labels.get('version')})"
        )
    return 0


# ------------------------------------------------------------------ cancel, retry, rollback, tag


def _cancel(args: argparse.Namespace) -> int:
    from gateway.fleet import deploy

    rollout = _run(deploy.cancel, _hub(args), args.name)
    print(
        f"rollout {args.name} cancelled: no new ring or MCU; "
        f"{len(rollout.rings)} started ring(s) keep the MCUs they reached"
    )
    return 0


def _retry(args: argparse.Namespace) -> int:
    from gateway.fleet import deploy

    config, devices = _run(deploy.retry, _hub(args), args.name, _limits(args))
    print(
        f"rollout {args.name}: {config.id} re-targets {len(devices)} failed MCU(s): "
        + ", ".join(devices[:20])
        + (" ..." if len(devices) > 20 else "")
    )
    return 0


def _rollback(args: argparse.Namespace) -> int:
    from gateway.fleet import deploy

    given = [args.package_uri, args.check_value, args.size, args.fw_version]
    package = None
    if any(v is not None for v in given):
        if any(v is None for v in given):
            raise CommandError("give all of --package-uri, --check-value, --size and --version")
        from gateway.fleet.rollout import Package

        package = Package(args.fw_version, args.package_uri, args.check_value, args.size)
        _run(package.validate)
    config, devices = _run(
        deploy.rollback,
        _hub(args),
        args.name,
        package,
        _check_uri(args.package_ca_file),
        _limits(args),
    )
    version = config.labels.get("version")
    print(f"rollout {args.name}: rolling {len(devices)} MCU(s) back to {version} ({config.id})")
    return 0


def _prune(args: argparse.Namespace) -> int:
    from gateway.fleet import prune

    keep = prune.DEFAULT_KEEP if args.keep is None else args.keep
    hub = _hub(args)
    configs = _run(hub.configurations)
    removals = _run(prune.plan, configs, keep)
    if not removals:
        print(f"nothing to prune: {len(configs)} configurations, none fully superseded")
        return 0
    for removal in removals:
        if not args.dry_run:
            _run(prune.delete, hub, removal.config)
        verb = "would delete" if args.dry_run else "deleted"
        print(f"{verb} {removal.config.id}: {removal.reason}", flush=True)
    left = len(configs) - (0 if args.dry_run else len(removals))
    done = "would be deleted" if args.dry_run else "deleted"
    print(f"{len(removals)} of {len(configs)} configurations {done}; {left} remain")
    return 0


def _tag(args: argparse.Namespace) -> int:
    from gateway.fleet import deploy

    given = (("group", args.group), ("ring", args.ring), ("ADUGroup", args.adu_group))
    tags = {k: v for k, v in given if v is not None}
    if not tags:
        raise CommandError("nothing to set: give --group, --ring and/or --adu-group")
    if not args.devices and not args.where:
        raise CommandError("no MCUs named: give DEVICE_IDs or --where CONDITION")
    if args.devices and args.where:
        raise CommandError("name the MCUs either as DEVICE_IDs or with --where, not both")
    hub = _hub(args)
    devices = list(args.devices) or _run(deploy.device_ids, hub, args.where)
    if not devices:
        raise CommandError(f"--where matches no MCU: {args.where}")
    for n, device_id in enumerate(devices, 1):
        _run(hub.set_tags, device_id, tags)
        if sys.stderr.isatty() and n % 50 == 0:
            print(f"tagged {n}/{len(devices)}", file=sys.stderr)
    print(f"tagged {len(devices)} MCU(s): " + ", ".join(f"{k}={v}" for k, v in tags.items()))
    return 0
