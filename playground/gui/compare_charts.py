"""Charts of a comparison: TTFT, decode tok/s, weights MB and KL per config as bars, and
speed against quality: each config's decode speed-up over the baseline against its KL,
with the Pareto frontier drawn, so the configs that are fast *and* faithful stand out.

Used by the Compare view and by ``playground compare --plot`` (rendered offscreen).
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
import pyqtgraph as pg

from playground.core.compare import pareto_front, row_spread
from playground.gui import theme

# Short titles: a pyqtgraph title sets its plot's minimum width, and at 1024 px long
# ones pushed the second column of charts out of the window.
PANELS = (
    ("ttft_ms", "TTFT ms, p50 ↓"),
    ("decode_tok_s", "Decode tok/s, p50 ↑"),
    ("weights_mb", "Weights MB ↓"),
    ("kl_mean", "KL to baseline, nats ↓"),
)
COLORS = ("#455a64", "#1565c0", "#2e7d32", "#ef6c00", "#6a1b9a", "#c62828")
KL_FLOOR = 1e-4  # the log axis shows KL below this (the baseline's 0) at the floor


class CompareCharts(pg.GraphicsLayoutWidget):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.plots = {}
        for i, (key, title) in enumerate(PANELS):
            plot = self.addPlot(row=i // 2, col=i % 2, title=title)
            plot.showGrid(y=True, alpha=0.25)
            self.plots[key] = plot
        self.tradeoff = self.addPlot(row=2, col=0, colspan=2,
                                     title="Speed-up vs KL (line: Pareto frontier)")
        self.tradeoff.setLogMode(x=True, y=False)
        self.tradeoff.getAxis("bottom").enableAutoSIPrefix(False)  # "(x0.001)" on a log axis
        self.tradeoff.showGrid(x=True, y=True, alpha=0.25)
        self.tradeoff.setLabel("bottom", "KL to baseline, nats (log; ↓ better)")
        self.tradeoff.setLabel("left", "decode × baseline")
        theme.style_chart(self)

    def set_rows(self, rows: list[dict[str, Any]]) -> None:
        ticks = [(i, f"{chr(65 + i)}") for i in range(len(rows))]
        for key, plot in self.plots.items():
            plot.clear()
            values = [row.get(key) for row in rows]
            heights = [v if v is not None else 0.0 for v in values]
            brushes = [COLORS[i % len(COLORS)] for i in range(len(rows))]
            plot.addItem(pg.BarGraphItem(x=list(range(len(rows))), height=heights, width=0.6,
                                         brushes=brushes))
            tops = heights
            lo_hi = [row_spread(row, key) for row in rows]
            if any(lo is not None and hi is not None for lo, hi in lo_hi):
                # the rounds' min–max around the median round
                xs = [i for i, (lo, hi) in enumerate(lo_hi) if lo is not None and hi is not None]
                plot.addItem(pg.ErrorBarItem(
                    x=np.array(xs, dtype=float), y=np.array([heights[i] for i in xs]),
                    top=np.array([lo_hi[i][1] - heights[i] for i in xs]),
                    bottom=np.array([heights[i] - lo_hi[i][0] for i in xs]),
                    beam=0.2, pen=pg.mkPen(theme.chart_colors()[1], width=1.5)))
                tops = [max(h, lo_hi[i][1] or h) for i, h in enumerate(heights)]
            for i, v in enumerate(values):
                text = pg.TextItem("n/a" if v is None else f"{v:.3g}",
                                   color=theme.chart_colors()[1],
                                   anchor=(0.5, 1.0))
                text.setPos(i, tops[i])
                plot.addItem(text)
            plot.getAxis("bottom").setTicks([ticks])
            plot.setXRange(-0.6, len(rows) - 0.4, padding=0)
            top = max(tops, default=0.0)
            # room above the tallest bar for its value (a short chart needs a third)
            plot.setYRange(0, top * 1.35 if top > 0 else 1.0, padding=0)
        self._set_tradeoff(rows)
        legend = "   ".join(f"{chr(65 + i)}: {row['config']}" for i, row in enumerate(rows))
        self.setToolTip(legend)

    def _set_tradeoff(self, rows: list[dict[str, Any]]) -> None:
        plot = self.tradeoff
        plot.clear()
        points = [(i, max(r["kl_mean"], KL_FLOOR), r["decode_x"]) for i, r in enumerate(rows)
                  if r.get("kl_mean") is not None and r.get("decode_x") is not None]
        if not points:
            return
        front = pareto_front(rows)
        plot.plot([max(rows[i]["kl_mean"], KL_FLOOR) for i in front],
                  [rows[i]["decode_x"] for i in front], pen=pg.mkPen("#888", width=2))
        for i, kl, speed in points:
            color = COLORS[i % len(COLORS)]
            plot.plot([kl], [speed], pen=None, symbol="o", symbolSize=12,
                      symbolBrush=color if i in front else None, symbolPen=pg.mkPen(color, width=2))
            label = pg.TextItem(chr(65 + i), color=color, anchor=(-0.3, 0.5))
            label.setPos(math.log10(kl), speed)  # a log-mode axis places items in log10 units
            plot.addItem(label)
        speeds = [p[2] for p in points]
        plot.setYRange(0, max(speeds) * 1.15, padding=0)
        # Decades only: pyqtgraph's minor log labels ran into each other on a wide chart.
        low = math.floor(math.log10(min(p[1] for p in points)))
        high = math.ceil(math.log10(max(p[1] for p in points)))
        plot.setXRange(low - 0.1, max(high, low + 1) + 0.1, padding=0)
        floor = round(math.log10(KL_FLOOR))  # KL = 0 (the baseline's) is drawn there
        plot.getAxis("bottom").setTicks([[(k, f"≤{10.0 ** k:g} (0)" if k == floor else
                                           f"{10.0 ** k:g}")
                                          for k in range(low, max(high, low + 1) + 1)], []])


def save_compare_png(rows: list[dict[str, Any]], path: str) -> None:
    """Render the charts offscreen (no display needed) with a legend line and save a PNG."""
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication, QLabel, QVBoxLayout, QWidget

    app = QApplication.instance() or QApplication([])
    page = QWidget()
    page.setStyleSheet("background: white;")
    layout = QVBoxLayout(page)
    charts = CompareCharts()
    charts.set_rows(rows)
    layout.addWidget(charts, 1)
    for i, row in enumerate(rows):
        layout.addWidget(QLabel(f"{chr(65 + i)}: {row['config']}"))
    page.resize(1200, 820 + 22 * len(rows))
    page.show()
    app.processEvents()
    ok = page.grab().save(path)
    page.close()
    if not ok:
        raise OSError(f"could not write {path}")
