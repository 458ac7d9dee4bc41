"""Live pyqtgraph charts: tokens/sec, TTFT per turn, ITL of the current turn, memory.

Slots only append to ring buffers; one QTimer redraws at about 10 Hz (the
pyqtgraph scrolling-plot pattern), so a fast token stream never floods the GUI.
"""

from __future__ import annotations

import time
from collections import deque

import pyqtgraph as pg
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QGridLayout, QWidget

HISTORY = 2000  # points kept per time series
REDRAW_MS = 100
WINDOW_S = 120.0  # visible time span of the scrolling charts


def _plot(title: str, left: str, bottom: str) -> pg.PlotWidget:
    plot = pg.PlotWidget(title=title)
    plot.setBackground("w")
    plot.showGrid(x=True, y=True, alpha=0.25)
    plot.setLabel("left", left)
    plot.setLabel("bottom", bottom)
    plot.addLegend(offset=(-10, 10))
    return plot


def _label_opts(color: str) -> dict:
    # Right-aligned near the right edge, where the newest data is.
    return {"position": 0.8, "color": color, "anchors": [(1, 1), (1, 1)]}


class ChartsPanel(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.t0 = time.perf_counter()
        grid = QGridLayout(self)
        self.speed = _plot("Tokens / second", "tok/s", "time (s)")
        self.ttft = _plot("Time to first token per turn", "ms", "turn")
        self.itl = _plot("Inter-token latency, current turn", "ms", "token")
        self.memory = _plot("Memory", "MB", "time (s)")
        grid.addWidget(self.speed, 0, 0)
        grid.addWidget(self.ttft, 0, 1)
        grid.addWidget(self.itl, 1, 0)
        grid.addWidget(self.memory, 1, 1)

        self.speed_t: deque[float] = deque(maxlen=HISTORY)
        self.speed_inst: deque[float] = deque(maxlen=HISTORY)
        self.speed_avg: deque[float] = deque(maxlen=HISTORY)
        self.ttft_turn: list[int] = []
        self.ttft_ms: list[float] = []
        self.itl_ms: list[float] = []
        self.mem_t: deque[float] = deque(maxlen=HISTORY)
        self.mem_rss: deque[float] = deque(maxlen=HISTORY)
        self.mem_cuda: deque[float] = deque(maxlen=HISTORY)

        self.inst_curve = self.speed.plot(pen=pg.mkPen("#9ab", width=1), name="instantaneous")
        self.avg_curve = self.speed.plot(pen=pg.mkPen("#1565c0", width=2), name="running average")
        dashed = pg.QtCore.Qt.DashLine
        self.bound_line = pg.InfiniteLine(angle=0, pen=pg.mkPen("#c62828", style=dashed),
                                          label="bandwidth bound {value:.0f}",
                                          labelOpts=_label_opts("#c62828"))
        self.ttft_bars = pg.BarGraphItem(x=[], height=[], width=0.6, brush="#2e7d32")
        self.ttft.addItem(self.ttft_bars)
        self.itl_curve = self.itl.plot(pen=pg.mkPen("#6a1b9a", width=2), symbol="o", symbolSize=4,
                                       name="ITL")
        self.rss_curve = self.memory.plot(pen=pg.mkPen("#ef6c00", width=2), name="RSS")
        self.cuda_curve = None  # created on the first CUDA sample, so CPU runs show no empty legend
        self.weights_line = pg.InfiniteLine(angle=0, pen=pg.mkPen("#555", style=dashed),
                                            label="weights {value:.0f} MB",
                                            labelOpts=_label_opts("#555"))
        self._turn_tokens = 0
        self._first_token = 0.0
        self._last_token: float | None = None
        self._last_label: str | None = None
        self.turns = 0
        self.dirty = False
        self.timer = QTimer(self)
        self.timer.timeout.connect(self.redraw)
        self.timer.start(REDRAW_MS)

    def now(self, t: float | None = None) -> float:
        return (t if t is not None else time.perf_counter()) - self.t0

    # -- data in (slots run in the GUI thread) --------------------------------
    def set_reference(self, weights_mb: float | None, bound_tok_s: float | None) -> None:
        for plot, line, value in ((self.memory, self.weights_line, weights_mb),
                                  (self.speed, self.bound_line, bound_tok_s)):
            if value:
                line.setValue(value)
                if line.scene() is None:
                    plot.addItem(line)
            elif line.scene() is not None:
                plot.removeItem(line)

    def turn_started(self, t: float, label: str) -> None:
        """Mark the turn on the time axes; name its config when it differs from the last."""
        self._last_token = None
        self._turn_tokens = 0
        self.itl_ms = []
        changed = label != self._last_label
        self._last_label = label
        for plot, height in ((self.speed, 0.97), (self.memory, 0.97)):
            marker = pg.InfiniteLine(
                pos=self.now(t), angle=90,
                pen=pg.mkPen("#c62828" if changed else "#bbb", style=pg.QtCore.Qt.DotLine),
                label=label if changed else None,
                labelOpts={"position": height, "color": "#333", "anchors": [(1, 0), (1, 0)],
                           "fill": (255, 255, 255, 200)},
            )
            plot.addItem(marker)
        self.dirty = True

    def add_token(self, t: float) -> None:
        self._turn_tokens += 1
        if self._last_token is not None:
            gap = t - self._last_token
            self.itl_ms.append(gap * 1000.0)
            if gap > 0:
                self.speed_t.append(self.now(t))
                self.speed_inst.append(1.0 / gap)
                elapsed = t - self._first_token
                self.speed_avg.append((self._turn_tokens - 1) / elapsed if elapsed > 0 else 0.0)
        else:
            self._first_token = t
        self._last_token = t
        self.dirty = True

    def turn_finished(self, ttft_ms: float | None) -> None:
        self.turns += 1
        if ttft_ms is not None:
            self.ttft_turn.append(self.turns)
            self.ttft_ms.append(ttft_ms)
        self.dirty = True

    def add_memory(self, t: float, rss_mb: float, cuda_mb: float | None = None) -> None:
        self.mem_t.append(self.now(t))
        self.mem_rss.append(rss_mb)
        self.mem_cuda.append(cuda_mb if cuda_mb is not None else float("nan"))
        self.dirty = True

    # -- drawing ----------------------------------------------------------------
    def redraw(self) -> None:
        if not self.dirty:
            return
        self.dirty = False
        self.inst_curve.setData(list(self.speed_t), list(self.speed_inst))
        self.avg_curve.setData(list(self.speed_t), list(self.speed_avg))
        self.ttft_bars.setOpts(x=self.ttft_turn, height=self.ttft_ms, width=0.6)
        if self.ttft_turn:
            self.ttft.setXRange(0.4, max(self.ttft_turn) + 0.6, padding=0)
        self.itl_curve.setData(list(range(2, len(self.itl_ms) + 2)), self.itl_ms)
        self.rss_curve.setData(list(self.mem_t), list(self.mem_rss))
        if any(v == v for v in self.mem_cuda):  # any non-NaN
            if self.cuda_curve is None:
                self.cuda_curve = self.memory.plot(pen=pg.mkPen("#00838f", width=2),
                                                   name="CUDA allocated")
            self.cuda_curve.setData(list(self.mem_t), list(self.mem_cuda), connect="finite")
        latest = self.now()
        for plot in (self.speed, self.memory):
            plot.setXRange(max(0.0, latest - WINDOW_S), latest + 1.0, padding=0)

    def point_counts(self) -> dict[str, int]:
        return {"speed": len(self.speed_t), "ttft": len(self.ttft_ms), "itl": len(self.itl_ms),
                "memory": len(self.mem_t)}
