"""Bar charts of a comparison: TTFT, decode tok/s, weights MB and KL per config.

Used by the Compare view and by ``playground compare --plot`` (rendered offscreen).
"""

from __future__ import annotations

import os
from typing import Any

import pyqtgraph as pg

PANELS = (
    ("ttft_ms", "TTFT (ms, lower is better)"),
    ("decode_tok_s", "Decode tok/s (higher is better)"),
    ("weights_mb", "Weights MB (lower is better)"),
    ("kl_mean", "KL to baseline, nats (lower is better)"),
)
COLORS = ("#455a64", "#1565c0", "#2e7d32", "#ef6c00", "#6a1b9a", "#c62828")


class CompareCharts(pg.GraphicsLayoutWidget):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setBackground("w")
        self.plots = {}
        for i, (key, title) in enumerate(PANELS):
            plot = self.addPlot(row=i // 2, col=i % 2, title=title)
            plot.showGrid(y=True, alpha=0.25)
            self.plots[key] = plot

    def set_rows(self, rows: list[dict[str, Any]]) -> None:
        ticks = [(i, f"{chr(65 + i)}") for i in range(len(rows))]
        for key, plot in self.plots.items():
            plot.clear()
            values = [row.get(key) for row in rows]
            heights = [v if v is not None else 0.0 for v in values]
            brushes = [COLORS[i % len(COLORS)] for i in range(len(rows))]
            plot.addItem(pg.BarGraphItem(x=list(range(len(rows))), height=heights, width=0.6,
                                         brushes=brushes))
            for i, v in enumerate(values):
                text = pg.TextItem("n/a" if v is None else f"{v:.3g}", color="#222",
                                   anchor=(0.5, 1.0))
                text.setPos(i, heights[i])
                plot.addItem(text)
            plot.getAxis("bottom").setTicks([ticks])
            plot.setXRange(-0.6, len(rows) - 0.4, padding=0)
            top = max(heights, default=0.0)
            plot.setYRange(0, top * 1.2 if top > 0 else 1.0, padding=0)
        legend = "   ".join(f"{chr(65 + i)}: {row['config']}" for i, row in enumerate(rows))
        self.setToolTip(legend)


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
