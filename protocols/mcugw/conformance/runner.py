"""Run the checks in order against one device and collect a :class:`SuiteReport`."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable

from protocols.errors import TransportDisconnected
from protocols.mcugw.conformance.checks import CHECKS, Ctx, Failed, Skipped
from protocols.mcugw.conformance.link import ProbeLink
from protocols.mcugw.conformance.report import CheckResult, SuiteReport
from protocols.mcugw.constants import Mode, ResetMode
from protocols.mcugw.timing import LinkTiming
from protocols.transport import Transport


async def run_suite(
    transport: Transport,
    *,
    port: str,
    baud: int,
    write: bool = False,
    only: set[str] | None = None,
    progress: Callable[[CheckResult], None] | None = None,
) -> SuiteReport:
    """Every check in order; write checks only with ``write``. Leaves an app running if found so."""
    report = SuiteReport(port=port, write=write)
    async with ProbeLink(transport) as link:
        await link.send_raw(b"\x00")  # flush whatever the device holds (§3.1)
        ctx = Ctx(link=link, timing=LinkTiming(baud))
        for check in CHECKS:
            if only is not None and check.id not in only:
                continue
            start = time.monotonic()
            if check.write and not write:
                result = CheckResult(check.id, check.section, check.title, "skip", "needs --write")
            else:
                try:
                    note = await check.fn(ctx)
                    result = CheckResult(check.id, check.section, check.title, "pass", note or "")
                except Failed as exc:
                    result = CheckResult(check.id, check.section, check.title, "fail", str(exc))
                except Skipped as exc:
                    result = CheckResult(check.id, check.section, check.title, "skip", str(exc))
                except TransportDisconnected as exc:
                    result = CheckResult(
                        check.id, check.section, check.title, "fail", f"device went away: {exc}"
                    )
            result = dataclasses.replace(
                result, seconds=round(time.monotonic() - start, 3), rules=check.rules
            )
            report.results.append(result)
            if progress is not None:
                progress(result)
            if link.closed or result.detail.startswith("device went away"):
                break
        if ctx.info is not None:
            i = ctx.info
            report.device = {
                "model": i.model,
                "compat": i.compat,
                "uid": i.uid.hex(),
                "bootloader_version": i.bootloader_version,
            }
        if ctx.started_in_app and ctx.info is not None and ctx.info.mode is Mode.BOOTLOADER:
            # Leave it as found: the app running again.
            with contextlib.suppress(TransportDisconnected, Failed):
                await ctx.reset(ResetMode.RUN)
                hello = await ctx.hello_ok("after the final RESET(RUN)")
                report.device["mode_after"] = hello.mode.name.lower()
    return report
