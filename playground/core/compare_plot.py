"""``playground compare --plot F.svg``: a comparison's charts as a standalone SVG, without
Qt (headless machines and CI make it too): TTFT, decode tok/s, weights and KL per config
as bars, and decode speed-up against KL with the Pareto frontier, as the app's Compare
tab draws them (playground/gui/compare_charts.py renders the PNG form)."""

from __future__ import annotations

import math
from html import escape
from pathlib import Path
from typing import Any

from playground.core.compare import pareto_front, row_spread
from playground.core.load_plot import nice_step

PANELS = (("ttft_ms", "TTFT ms (lower is better)"),
          ("decode_tok_s", "Decode tok/s (higher is better)"),
          ("weights_mb", "Weights MB (lower is better)"),
          ("kl_mean", "KL to baseline, nats (lower is better)"))
COLORS = ("#455a64", "#1565c0", "#2e7d32", "#ef6c00", "#6a1b9a", "#c62828")
PW, PH = 420, 200  # one panel's plot area
KL_FLOOR = 1e-4


def _bars(x0: float, y0: float, title: str, values: list[float | None],
          spreads: list[tuple[float | None, float | None]] | None = None) -> list[str]:
    """Bars with their values; ``spreads`` (lo, hi) per bar draw the rounds' min–max."""
    spreads = spreads or [(None, None)] * len(values)
    highs = [hi if hi is not None else v for v, (_lo, hi) in zip(values, spreads, strict=True)]
    top = max((v for v in highs if v is not None), default=0.0) or 1.0
    step = nice_step(top * 1.1 / 4)
    top = step * math.ceil(top * 1.1 / step)
    out = [f'<text x="{x0 + PW / 2}" y="{y0 - 10}" text-anchor="middle">{escape(title)}</text>',
           f'<rect x="{x0}" y="{y0}" width="{PW}" height="{PH}" fill="none" stroke="#444"/>']
    for i in range(round(top / step) + 1):
        y = y0 + PH - PH * i * step / top
        out.append(f'<line x1="{x0}" y1="{y:.1f}" x2="{x0 + PW}" y2="{y:.1f}" stroke="#e4e4e4"/>')
        out.append(f'<text x="{x0 - 5}" y="{y + 4:.1f}" text-anchor="end">{i * step:g}</text>')
    slot = PW / max(len(values), 1)
    for i, v in enumerate(values):
        cx = x0 + slot * (i + 0.5)
        out.append(f'<text x="{cx:.1f}" y="{y0 + PH + 16}" text-anchor="middle">{chr(65 + i)}</text>')
        if v is None:
            out.append(f'<text x="{cx:.1f}" y="{y0 + PH - 4}" text-anchor="middle">n/a</text>')
            continue
        h = PH * v / top
        out.append(f'<rect x="{cx - slot * 0.3:.1f}" y="{y0 + PH - h:.1f}" width="{slot * 0.6:.1f}" '
                   f'height="{h:.1f}" fill="{COLORS[i % len(COLORS)]}"/>')
        lo, hi = spreads[i]
        label_y = y0 + PH - h
        if lo is not None and hi is not None and hi > lo:
            y_lo, y_hi = y0 + PH - PH * lo / top, y0 + PH - PH * hi / top
            out.append(f'<path d="M{cx:.1f},{y_lo:.1f}V{y_hi:.1f}M{cx - 6:.1f},{y_lo:.1f}'
                       f'h12M{cx - 6:.1f},{y_hi:.1f}h12" stroke="#222" stroke-width="1.5"/>')
            label_y = min(label_y, y_hi)
        out.append(f'<text x="{cx:.1f}" y="{label_y - 4:.1f}" text-anchor="middle" '
                   f'font-size="11">{v:.3g}</text>')
    return out


def _tradeoff(x0: float, y0: float, width: float, rows: list[dict[str, Any]]) -> list[str]:
    points = [(max(r["kl_mean"], KL_FLOOR), r["decode_x"], i) for i, r in enumerate(rows)
              if r.get("kl_mean") is not None and r.get("decode_x") is not None]
    out = [f'<text x="{x0 + width / 2}" y="{y0 - 10}" text-anchor="middle">Speed-up × baseline '
           'against KL (log; line: Pareto frontier)</text>',
           f'<rect x="{x0}" y="{y0}" width="{width}" height="{PH}" fill="none" stroke="#444"/>']
    if not points:
        return out + [f'<text x="{x0 + width / 2}" y="{y0 + PH / 2}" text-anchor="middle">'
                      'no quality figures</text>']
    lo = math.floor(math.log10(min(p[0] for p in points)))
    hi = max(math.ceil(math.log10(max(p[0] for p in points))), lo + 1)
    y_top = max(p[1] for p in points) * 1.15

    def at(kl: float, speed: float) -> tuple[float, float]:
        return (x0 + width * (math.log10(kl) - lo) / (hi - lo), y0 + PH - PH * speed / y_top)

    for e in range(lo, hi + 1):
        x = at(10 ** e, 0)[0]
        out.append(f'<text x="{x:.1f}" y="{y0 + PH + 16}" text-anchor="middle">1e{e}</text>')
    front = [at(max(rows[i]["kl_mean"], KL_FLOOR), rows[i]["decode_x"]) for i in pareto_front(rows)]
    if len(front) > 1:
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in front)
        out.append(f'<polyline points="{path}" fill="none" stroke="#999" stroke-dasharray="5,4"/>')
    for kl, speed, i in points:
        x, y = at(kl, speed)
        color = COLORS[i % len(COLORS)]
        out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="5" fill="{color}"/>')
        out.append(f'<text x="{x + 7:.1f}" y="{y - 6:.1f}" fill="{color}">{chr(65 + i)} '
                   f'×{speed:.2f}</text>')
    out.append(f'<text x="{x0 + width / 2}" y="{y0 + PH + 34}" text-anchor="middle">'
               'KL to baseline, nats (lower is better)</text>')
    return out


def svg(rows: list[dict[str, Any]]) -> str:
    """``rows``: compare.ratio_rows of one comparison."""
    left, gap = 70, 90
    width = left + 2 * PW + gap + 30
    height = 60 + 3 * (PH + 70) + 20 * len(rows) + 20
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           'font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>']
    for n, (key, title) in enumerate(PANELS):
        out += _bars(left + (n % 2) * (PW + gap), 40 + (n // 2) * (PH + 70), title,
                     [r.get(key) for r in rows], [row_spread(r, key) for r in rows])
    out += _tradeoff(left, 40 + 2 * (PH + 70), 2 * PW + gap, rows)
    y = 40 + 3 * (PH + 70) + 10
    for i, r in enumerate(rows):
        out.append(f'<text x="{left}" y="{y + 20 * i}" fill="{COLORS[i % len(COLORS)]}">'
                   f'{chr(65 + i)}: {escape(str(r["config"]))}</text>')
    out.append("</svg>")
    return "\n".join(out)


def write(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text(svg(rows))
