"""``fleet status --html``: one self-contained page an operator can mail around.

No script, no external file: inline CSS and inline SVG bar charts (statuses
per ring or group, versions per model, each rollout's latest ring), a
section per rollout, and the failed MCUs as a table with the version they
were asked for. Every bar carries its counts, and a non-zero category always
gets a visible segment, so one failure among ten thousand MCUs shows. Every
value from the hub is escaped, since twin values come from devices.
"""

from __future__ import annotations

import datetime as dt
from html import escape

from gateway.fleet.rollout import Rollout
from gateway.fleet.status import FleetStatus

COLOURS = {
    "current": "#2e9d4f",
    "downloading": "#3b82f6",
    "verifying": "#6366f1",
    "applying": "#0ea5e9",
    "rebooting": "#a855f7",
    "error": "#dc2626",
    "rolledback": "#f59e0b",
    "waiting": "#cbd5e1",
}
_PALETTE = ("#0f766e", "#7c3aed", "#b45309", "#1d4ed8", "#be185d", "#4d7c0f", "#64748b")
_OTHER = "#9ca3af"
BAR_H, GAP, LABEL_W, BAR_W, NOTE_W = 26, 10, 150, 520, 330
#: Pixels a non-zero segment always gets, however small its share.
MIN_SEGMENT = 6.0


def _colour(key: str, index: int, by_status: bool) -> str:
    if by_status:
        return COLOURS.get(key, _OTHER)
    return _PALETTE[index % len(_PALETTE)]


def widths(counts: list[int], total_w: float, min_w: float = MIN_SEGMENT) -> list[float]:
    """Segment widths proportional to ``counts``, but every non-zero one at least
    ``min_w`` wide: one failure among ten thousand MCUs must still show."""
    total = sum(counts)
    if not total:
        return [0.0] * len(counts)
    out = [total_w * n / total for n in counts]
    small = {i for i, n in enumerate(counts) if n and out[i] < min_w}
    if small and len(small) < len([n for n in counts if n]):
        rest = sum(n for i, n in enumerate(counts) if i not in small)
        room = total_w - min_w * len(small)
        out = [min_w if i in small else room * n / rest for i, n in enumerate(counts)]
    return out


def bar_chart(title: str, bars: dict[str, dict[str, int]], by_status: bool) -> str:
    """Horizontal stacked bars, one per key of ``bars``, segments per inner key,
    each with its count (inside the segment when it fits, and after the bar)."""
    keys = sorted({k for segs in bars.values() for k in segs})
    index = {k: i for i, k in enumerate(keys)}
    height = len(bars) * (BAR_H + GAP) + 60
    width = LABEL_W + BAR_W + NOTE_W
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'role="img" aria-label="{escape(title)}">',
        f'<text x="0" y="16" font-size="15" font-weight="bold">{escape(title)}</text>',
    ]
    for row, (name, segs) in enumerate(bars.items()):
        y = 28 + row * (BAR_H + GAP)
        parts.append(
            f'<text x="{LABEL_W - 8}" y="{y + BAR_H * 0.7:.0f}" font-size="13" '
            f'text-anchor="end">{escape(name)}</text>'
        )
        counts = [segs.get(k, 0) for k in keys]
        x = float(LABEL_W)
        for key, n, w in zip(keys, counts, widths(counts, BAR_W), strict=True):
            if not n:
                continue
            parts.append(
                f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{BAR_H}" '
                f'fill="{_colour(key, index[key], by_status)}">'
                f"<title>{escape(name)}: {escape(key)} {n}</title></rect>"
            )
            if w >= 9 * len(str(n)) + 6:
                parts.append(
                    f'<text x="{x + w / 2:.1f}" y="{y + BAR_H * 0.7:.0f}" font-size="12" '
                    f'fill="#ffffff" text-anchor="middle">{n}</text>'
                )
            x += w
        note = f"{sum(counts)}: " + ", ".join(
            f"{k} {n}" for k, n in zip(keys, counts, strict=True) if n
        )
        parts.append(
            f'<text x="{LABEL_W + BAR_W + 8}" y="{y + BAR_H * 0.7:.0f}" '
            f'font-size="12">{escape(note)}</text>'
        )
    legend_y = 28 + len(bars) * (BAR_H + GAP) + 8
    x = 0
    for key in keys:
        parts.append(
            f'<rect x="{x}" y="{legend_y}" width="12" height="12" '
            f'fill="{_colour(key, index[key], by_status)}"/>'
            f'<text x="{x + 16}" y="{legend_y + 11}" font-size="12">{escape(key)}</text>'
        )
        x += 24 + 8 * len(key)
    parts.append("</svg>")
    return "".join(parts)


def _ring_bars(rollout: Rollout) -> dict[str, dict[str, int]]:
    """The latest ring's MCUs by state (earlier rings' MCUs are counted in it)."""
    ring = rollout.current_ring
    if ring is None:
        return {}
    waiting = max(0, ring.applied - ring.current - ring.in_progress - ring.failures)
    segs = {"current": ring.current, "downloading": ring.in_progress, "error": ring.failed,
            "rolledback": ring.rolled_back, "waiting": waiting}  # fmt: skip
    return {f"{rollout.plan.name} ring {ring.index + 1}": segs}


def rollout_section(rollouts: list[Rollout]) -> str:
    """Each rollout: its state (and why), and per ring targeted / applied / current /
    in progress / failed / rolled back."""
    if not rollouts:
        return "<h2>Rollouts: 0</h2><p>None.</p>"
    parts = [f"<h2>Rollouts: {len(rollouts)}</h2>"]
    for r in rollouts:
        state = r.state.value + (f": {r.reason}" if r.reason else "")
        cls = "bad" if r.state.value in ("halted", "rolledback") else ""
        parts.append(
            f"<h3>{escape(r.plan.name)}: version {escape(r.plan.package.version)} "
            f'<span class="{cls}">{escape(state)}</span></h3>'
            f"<p>target: {escape(r.plan.target)}</p>"
        )
        last = len(r.rings) - 1
        rows = []
        for ring in r.rings:
            if ring.index < last:
                rows.append([str(ring.index + 1), ring.name, "passed", str(ring.targeted),
                             *["counted in the next ring"] + [""] * 4])  # fmt: skip
                continue
            rows.append([str(ring.index + 1), ring.name, r.state.value, str(ring.targeted),
                         str(ring.applied), str(ring.current), str(ring.in_progress),
                         str(ring.failed), str(ring.rolled_back)])  # fmt: skip
        for k in range(len(r.rings), len(r.plan.rings)):
            rows.append([str(k + 1), r.plan.rings[k], "not started", *[""] * 6])
        parts.append(_table(["ring", "name", "state", "targeted", "applied", "current",
                             "in progress", "failed", "rolled back"], rows))  # fmt: skip
        if bars := _ring_bars(r):
            parts.append(bar_chart(f"{r.plan.name}: latest ring", bars, by_status=True))
    return "".join(parts)


def _table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_CSS = """
body { font-family: sans-serif; margin: 24px; color: #111827; background: #ffffff; }
h1 { font-size: 22px; } h2 { font-size: 17px; margin-top: 28px; } h3 { font-size: 15px; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border: 1px solid #d1d5db; padding: 4px 8px; text-align: left; }
th { background: #f3f4f6; } .summary span { margin-right: 18px; }
.bad { color: #dc2626; font-weight: bold; }
"""


def _untagged(bars: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    return {("(untagged)" if k == "-" else k): v for k, v in bars.items()}


def render(
    status: FleetStatus,
    *,
    where: str | None,
    now: dt.datetime,
    rollouts: list[Rollout] | None = None,
) -> str:
    charts = [
        bar_chart(f"Update status per {scope}", _untagged(bars), by_status=True)
        for scope, bars in (("ring", status.by_ring), ("group", status.by_group))
        if set(bars) - {"-"}
    ] or [bar_chart("Update status", {"all MCUs": status.by_status}, by_status=True)]
    summary = "".join(f"<span>{escape(k)}: <b>{v}</b></span>" for k, v in status.by_status.items())
    failures = [
        [f.device_id, f.gateway, f.port, f.model, f.status, f.version, f.target, f.code,
         f.phase, f.message, f.at]
        for f in status.failures
    ]  # fmt: skip
    busy = [
        [b.device_id, b.model, b.status, b.pending, f"{b.progress}%"] for b in status.in_progress
    ]
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>MCU fleet status</title>
<style>{_CSS}</style></head><body>
<h1>MCU fleet status</h1>
<p>{status.total} MCUs{escape(f" where {where}") if where else ""};
generated {escape(now.strftime("%Y-%m-%d %H:%M:%S UTC"))}</p>
<p class="summary">{summary}</p>
{"".join(charts)}
{bar_chart("Installed version per model", status.versions_by_model, by_status=False)}
{rollout_section(rollouts or [])}
<h2 class="{"bad" if failures else ""}">Failed or rolled back: {len(failures)}</h2>
{
        _table(
            [
                "device",
                "gateway",
                "port",
                "model",
                "status",
                "running",
                "target version",
                "error",
                "phase",
                "message",
                "at",
            ],
            failures,
        )
        if failures
        else "<p>None.</p>"
    }
<h2>In progress: {len(busy)}</h2>
{_table(["device", "model", "status", "pending", "progress"], busy) if busy else "<p>None.</p>"}
</body></html>
"""
