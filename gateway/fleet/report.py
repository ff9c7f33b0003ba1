"""``fleet status --html``: one self-contained page an operator can mail around.

No script, no external file: inline CSS and inline SVG bar charts (statuses
per ring or group, versions per model) and the failed MCUs as a table. Every
value from the hub is escaped, since twin values come from devices.
"""

from __future__ import annotations

import datetime as dt
from html import escape

from gateway.fleet.status import FleetStatus

COLOURS = {
    "current": "#2e9d4f",
    "downloading": "#3b82f6",
    "verifying": "#6366f1",
    "applying": "#0ea5e9",
    "rebooting": "#a855f7",
    "error": "#dc2626",
    "rolledback": "#f59e0b",
}
_PALETTE = ("#0f766e", "#7c3aed", "#b45309", "#1d4ed8", "#be185d", "#4d7c0f", "#64748b")
_OTHER = "#9ca3af"
BAR_H, GAP, LABEL_W, BAR_W = 26, 10, 150, 520


def _colour(key: str, index: int, by_status: bool) -> str:
    if by_status:
        return COLOURS.get(key, _OTHER)
    return _PALETTE[index % len(_PALETTE)]


def bar_chart(title: str, bars: dict[str, dict[str, int]], by_status: bool) -> str:
    """Horizontal stacked bars, one per key of ``bars``, segments per inner key."""
    keys = sorted({k for segs in bars.values() for k in segs})
    index = {k: i for i, k in enumerate(keys)}
    height = len(bars) * (BAR_H + GAP) + 60
    width = LABEL_W + BAR_W + 90
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'role="img" aria-label="{escape(title)}">',
        f'<text x="0" y="16" font-size="15" font-weight="bold">{escape(title)}</text>',
    ]
    for row, (name, segs) in enumerate(bars.items()):
        y = 28 + row * (BAR_H + GAP)
        total = sum(segs.values()) or 1
        parts.append(
            f'<text x="{LABEL_W - 8}" y="{y + BAR_H * 0.7:.0f}" font-size="13" '
            f'text-anchor="end">{escape(name)}</text>'
        )
        x = float(LABEL_W)
        for key in keys:
            n = segs.get(key, 0)
            if not n:
                continue
            w = BAR_W * n / total
            parts.append(
                f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{BAR_H}" '
                f'fill="{_colour(key, index[key], by_status)}">'
                f"<title>{escape(name)}: {escape(key)} {n}</title></rect>"
            )
            x += w
        parts.append(
            f'<text x="{LABEL_W + BAR_W + 8}" y="{y + BAR_H * 0.7:.0f}" '
            f'font-size="13">{sum(segs.values())}</text>'
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


def _table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_CSS = """
body { font-family: sans-serif; margin: 24px; color: #111827; background: #ffffff; }
h1 { font-size: 22px; } h2 { font-size: 17px; margin-top: 28px; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border: 1px solid #d1d5db; padding: 4px 8px; text-align: left; }
th { background: #f3f4f6; } .summary span { margin-right: 18px; }
.bad { color: #dc2626; font-weight: bold; }
"""


def _untagged(bars: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    return {("(untagged)" if k == "-" else k): v for k, v in bars.items()}


def render(status: FleetStatus, *, where: str | None, now: dt.datetime) -> str:
    charts = [
        bar_chart(f"Update status per {scope}", _untagged(bars), by_status=True)
        for scope, bars in (("ring", status.by_ring), ("group", status.by_group))
        if set(bars) - {"-"}
    ] or [bar_chart("Update status", {"all MCUs": status.by_status}, by_status=True)]
    summary = "".join(f"<span>{escape(k)}: <b>{v}</b></span>" for k, v in status.by_status.items())
    failures = [
        [f.device_id, f.gateway, f.port, f.model, f.status, f.version, f.code, f.phase,
         f.message, f.at]
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
<h2 class="{"bad" if failures else ""}">Failed or rolled back: {len(failures)}</h2>
{
        _table(
            [
                "device",
                "gateway",
                "port",
                "model",
                "status",
                "version",
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
