"""Live pyqtgraph charts: tokens/sec, TTFT per turn, ITL of the current turn, memory.

Slots only append to ring buffers; one QTimer redraws at about 10 Hz (the
pyqtgraph scrolling-plot pattern), so a fast token stream never floods the GUI.
"""

from __future__ import annotations

import time
from collections import deque

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QGridLayout, QWidget

HISTORY = 2000  # points kept per time series
REDRAW_MS = 100
WINDOW_S = 120.0  # visible time span of the scrolling charts
ONE_COLUMN_BELOW_PX = 440  # a chart under ~220 px wide cuts its title and axis labels
STEP_S = 10.0  # the time axes jump by this much: repainting axes on every tick is what costs


def _plot(title: str, left: str, bottom: str) -> pg.PlotWidget:
    plot = pg.PlotWidget(title=title)
    plot.setBackground("w")
    plot.showGrid(x=True, y=True, alpha=0.25)
    plot.setLabel("left", left)
    plot.setLabel("bottom", bottom)
    plot.addLegend(offset=(-10, -10))  # bottom right: turn labels use the top
    return plot


def _label_opts(color: str) -> dict:
    # Right-aligned near the right edge, where the newest data is.
    return {"position": 0.8, "color": color, "anchors": [(1, 1), (1, 1)]}


class ChartsPanel(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.t0 = time.perf_counter()
        self.grid = QGridLayout(self)
        # short titles: a chart can be about 220 px wide (see ONE_COLUMN_BELOW_PX)
        self.speed = _plot("Tokens / second", "tok/s", "time (s)")
        self.ttft = _plot("TTFT per turn", "ms", "")  # ticks: turn + config
        self.itl = _plot("Inter-token latency", "ms", "token (this turn)")
        self.memory = _plot("Memory", "MB", "time (s)")
        self.columns = 0
        self._arrange(2)

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
        for curve in (self.inst_curve, self.avg_curve):
            curve.setClipToView(True)  # only the visible window of the ring buffer is drawn
        dashed = pg.QtCore.Qt.DashLine
        self.bound_line = pg.InfiniteLine(angle=0, pen=pg.mkPen("#c62828", style=dashed),
                                          label="bandwidth bound {value:.0f}",
                                          labelOpts=_label_opts("#c62828"))
        self.ttft_bars = pg.BarGraphItem(x=[], height=[], width=0.6, brush="#2e7d32")
        self.ttft.addItem(self.ttft_bars)
        self.itl_curve = self.itl.plot(pen=pg.mkPen("#6a1b9a", width=2), name="ITL")
        self.rss_curve = self.memory.plot(pen=pg.mkPen("#ef6c00", width=2), name="RSS")
        self.cuda_curve = None  # created on the first CUDA sample, so CPU runs show no empty legend
        self.weights_line = pg.InfiniteLine(angle=0, pen=pg.mkPen("#555", style=dashed),
                                            label="weights {value:.0f} MB",
                                            labelOpts=_label_opts("#555"))
        self._turn_tokens = 0
        self._first_token = 0.0
        self._last_token: float | None = None
        self._turn_labels: list[str] = []
        self.turns = 0
        self.dirty: set[str] = set()
        self._x_end = 0.0
        self._y_top: dict[int, float] = {}
        self._weights = self._bound = 0.0
        self.timer = QTimer(self)
        self.timer.timeout.connect(self.redraw)
        self.timer.start(REDRAW_MS)

    def _arrange(self, columns: int) -> None:
        """2 × 2, or one column when the panel is too narrow for two readable charts."""
        if columns == self.columns:
            return
        self.columns = columns
        for i, plot in enumerate((self.speed, self.ttft, self.itl, self.memory)):
            self.grid.removeWidget(plot)
            self.grid.addWidget(plot, i // columns, i % columns)
            legend = plot.getPlotItem().legend
            if legend is not None:  # in one short column a legend would cover the data
                legend.setVisible(columns == 2)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._arrange(2 if self.width() >= ONE_COLUMN_BELOW_PX else 1)

    def now(self, t: float | None = None) -> float:
        return (t if t is not None else time.perf_counter()) - self.t0

    # -- data in (slots run in the GUI thread) --------------------------------
    def set_reference(self, weights_mb: float | None, bound_tok_s: float | None) -> None:
        self._weights, self._bound = weights_mb or 0.0, bound_tok_s or 0.0
        self.dirty |= {"speed", "memory"}
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
        self._gap()
        changed = not self._turn_labels or label != self._turn_labels[-1]
        self._turn_labels.append(label)
        self._last_token = None
        self._turn_tokens = 0
        self.itl_ms = []
        # Staggered heights, so labels of turns close in time do not overlap.
        height = (0.97, 0.9, 0.83)[len(self._turn_labels) % 3]
        for plot in (self.speed, self.memory):
            marker = pg.InfiniteLine(
                pos=self.now(t), angle=90,
                pen=pg.mkPen("#c62828" if changed else "#bbb", style=pg.QtCore.Qt.DotLine),
                label=label if changed else None,
                labelOpts={"position": height, "color": "#333", "anchors": [(0, 0), (0, 0)],
                           "fill": (255, 255, 255, 200)},
            )
            plot.addItem(marker)
        self.dirty |= {"speed", "memory", "itl"}

    def _gap(self) -> None:
        # A NaN between turns, so the curves do not draw a line across the idle time.
        if self.speed_t:
            nan = float("nan")
            self.speed_t.append(self.speed_t[-1])
            self.speed_inst.append(nan)
            self.speed_avg.append(nan)

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
        self.dirty |= {"speed", "itl"}

    def turn_finished(self, ttft_ms: float | None) -> None:
        self.turns += 1
        if ttft_ms is not None:
            self.ttft_turn.append(self.turns)
            self.ttft_ms.append(ttft_ms)
        self.dirty.add("ttft")

    def add_memory(self, t: float, rss_mb: float, cuda_mb: float | None = None) -> None:
        self.mem_t.append(self.now(t))
        self.mem_rss.append(rss_mb)
        self.mem_cuda.append(cuda_mb if cuda_mb is not None else float("nan"))
        self.dirty.add("memory")

    # -- drawing ----------------------------------------------------------------
    def redraw(self) -> None:
        """Redraw only the charts whose data changed since the last tick."""
        dirty, self.dirty = self.dirty, set()
        if not dirty:
            return
        if "speed" in dirty:
            t = np.asarray(self.speed_t)
            inst = np.asarray(self.speed_inst)
            self.inst_curve.setData(t, inst, connect="finite")
            self.avg_curve.setData(t, np.asarray(self.speed_avg), connect="finite")
            finite = inst[np.isfinite(inst)]
            if len(finite):
                # The bandwidth-bound line stays in view: the ceiling is the point.
                self._grow_y(self.speed, max(float(np.percentile(finite, 99)), self._bound))
        if "itl" in dirty:
            n = len(self.itl_ms)
            self.itl_curve.setData(np.arange(2, n + 2), np.asarray(self.itl_ms))
            self.itl.setXRange(0, 64 * (n // 64 + 1) + 1, padding=0)
            if n:
                self._grow_y(self.itl, max(self.itl_ms))
        if "ttft" in dirty:
            self.ttft_bars.setOpts(x=self.ttft_turn, height=self.ttft_ms, width=0.6)
            if self.ttft_turn:
                self.ttft.setXRange(0.4, max(self.ttft_turn) + 0.6, padding=0)
                # Each bar names its config under it (the label wraps at commas).
                ticks = [(n, f"{n}\n{self._turn_labels[n - 1].replace(', ', chr(10))}"
                          if n - 1 < len(self._turn_labels) else str(n))
                         for n in self.ttft_turn[-8:]]
                self.ttft.getAxis("bottom").setTicks([ticks])
        if "memory" in dirty:
            t = np.asarray(self.mem_t)
            rss = np.asarray(self.mem_rss)
            self.rss_curve.setData(t, rss)
            self._grow_y(self.memory, max(float(rss.max(initial=0.0)), self._weights))
            cuda = np.asarray(self.mem_cuda)
            if np.isfinite(cuda).any():
                if self.cuda_curve is None:
                    self.cuda_curve = self.memory.plot(pen=pg.mkPen("#00838f", width=2),
                                                       name="CUDA allocated")
                self.cuda_curve.setData(t, cuda, connect="finite")
        if dirty & {"speed", "memory"}:
            latest = self.now()
            if latest > self._x_end - 0.5:  # jump, do not crawl
                self._x_end = latest + STEP_S
                for plot in (self.speed, self.memory):
                    plot.setXRange(max(0.0, self._x_end - WINDOW_S), self._x_end, padding=0)

    def _grow_y(self, plot, value: float) -> None:
        """Raise a y range only when data outgrows it (by steps), never on every point."""
        top = self._y_top.get(id(plot), 0.0)
        if value > top or value < top / 4:
            top = max(value * 1.25, 1.0)
            self._y_top[id(plot)] = top
            plot.setYRange(0, top, padding=0)

    def point_counts(self) -> dict[str, int]:
        return {"speed": len(self.speed_t), "ttft": len(self.ttft_ms), "itl": len(self.itl_ms),
                "memory": len(self.mem_t)}
