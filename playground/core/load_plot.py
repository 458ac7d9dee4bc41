"""``playground load --plot F``: latency against throughput across the steps of one or
more load runs, as a standalone SVG (no Qt, no plotting library: headless runs and CI
machines make it too). Each run is a line through its steps (labelled by concurrency or
rate); TTFT p50 solid and ITL p50 dashed, on a log latency axis."""

from __future__ import annotations

import math
from html import escape
from pathlib import Path
from typing import Any

COLORS = ("#1565c0", "#c62828", "#2e7d32", "#ef6c00", "#6a1b9a")
W, H = 900, 520
LEFT, RIGHT, TOP, BOTTOM = 80, 200, 50, 60


def svg(runs: list[tuple[str, list[dict[str, Any]]]], title: str = "") -> str:
    """``runs``: (label, steps) pairs; steps as in the result file's ``load.steps``."""
    points = [(s["output_tok_s"], s[k]["p50"]) for _l, steps in runs for s in steps
              for k in ("ttft_ms", "itl_ms") if s[k]["p50"]]
    if not points:
        raise ValueError("load --plot: no step has latency figures to draw")
    step = nice_step(max(p[0] for p in points) * 1.05 / 5)
    x_max = step * math.ceil(max(p[0] for p in points) * 1.05 / step)
    lo = math.floor(math.log10(max(min(p[1] for p in points), 0.1)))
    hi = math.ceil(math.log10(max(p[1] for p in points)))
    hi = hi if hi > lo else lo + 1
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM

    def px(x: float) -> float:
        return LEFT + pw * x / x_max

    def py(y: float) -> float:
        return TOP + ph * (1 - (math.log10(max(y, 10 ** lo)) - lo) / (hi - lo))

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W / 2}" y="24" text-anchor="middle" font-size="15">'
           f'{escape(title or "Latency against throughput")}</text>']
    for e in range(lo, hi + 1):  # log grid, one line a decade
        y = py(10 ** e)
        out.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + pw}" y2="{y:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{10 ** e:g}</text>')
    for i in range(round(x_max / step) + 1):
        x = step * i
        out.append(f'<text x="{px(x):.1f}" y="{TOP + ph + 18}" text-anchor="middle">{x:.0f}</text>')
    out.append(f'<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>')
    out.append(f'<text x="{LEFT + pw / 2}" y="{H - 18}" text-anchor="middle">output tokens/s '
               '(all requests of a step)</text>')
    out.append(f'<text transform="translate(22,{TOP + ph / 2}) rotate(-90)" '
               'text-anchor="middle">ms (log): TTFT p50 solid, ITL p50 dashed</text>')
    for i, (label, steps) in enumerate(runs):
        color = COLORS[i % len(COLORS)]
        for key, dash in (("ttft_ms", ""), ("itl_ms", ' stroke-dasharray="6,4"')):
            pts = [(px(s["output_tok_s"]), py(s[key]["p50"]), s) for s in steps if s[key]["p50"]]
            if len(pts) > 1:
                path = " ".join(f"{x:.1f},{y:.1f}" for x, y, _s in pts)
                out.append(f'<polyline points="{path}" fill="none" stroke="{color}" '
                           f'stroke-width="2"{dash}/>')
            for x, y, s in pts:
                out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{color}"/>')
                if key == "ttft_ms":
                    tag = f"c{s['concurrency']}" if s.get("concurrency") else f"{s['rate']}/s"
                    out.append(f'<text x="{x + 5:.1f}" y="{y - 6:.1f}" fill="{color}">{tag}</text>')
        y = TOP + 10 + 20 * i
        out.append(f'<rect x="{W - RIGHT + 14}" y="{y - 9}" width="12" height="12" fill="{color}"/>')
        out.append(f'<text x="{W - RIGHT + 32}" y="{y + 1}">{escape(label[:26])}</text>')
    out.append("</svg>")
    return "\n".join(out)


def nice_step(raw: float) -> float:
    """1, 2 or 5 times a power of ten, at least ``raw`` (round axis ticks)."""
    raw = max(raw, 1e-9)
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def write(path: Path, runs: list[tuple[str, list[dict[str, Any]]]], title: str = "") -> None:
    path.write_text(svg(runs, title))
