"""Live pyqtgraph charts: tokens/sec, TTFT per turn, ITL of the current turn, memory.

Slots only append to ring buffers; one QTimer redraws at about 10 Hz (the
pyqtgraph scrolling-plot pattern), so a fast token stream never floods the GUI.

Tokens/sec is drawn against the token count across turns, so each turn is a
segment as wide as its reply and stays in view (the last few turns), however
long the pauses between them. Turns are numbered on the charts; configs are
letters, named once in the key under the charts (elided, whole in the tooltip),
so no label has to hold a whole spec. Series are named in the titles, in their
colours, not in legends that would sit on the data.
"""

from __future__ import annotations

import time
from collections import deque

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QGridLayout, QLabel, QWidget

from playground.gui import theme

HISTORY = 2000  # points kept per time series
REDRAW_MS = 100
WINDOW_S = 120.0  # visible time span of the scrolling charts
ONE_COLUMN_BELOW_PX = 440  # a chart under ~220 px wide cuts its title and axis labels
STEP_S = 10.0  # the time axes jump by this much: repainting axes on every tick is what costs
TURNS_SHOWN = 8  # the tokens/sec and TTFT charts keep this many recent turns in view
WEIGHTS_GREY = "#8a8a8a"  # readable on the light and the dark theme's charts
KEY_CHARS = 48  # one config's name in the key, before eliding


def _plot(title: str, left: str, bottom: str) -> pg.PlotWidget:
    plot = pg.PlotWidget(title=title)
    plot.showGrid(x=True, y=True, alpha=0.25)
    plot.setLabel("left", left)
    plot.setLabel("bottom", bottom)
    theme.style_chart(plot)
    return plot


def _title(name: str, *series: tuple[str, str]) -> str:
    """A chart title naming its series in their colours (instead of a legend)."""
    names = " · ".join(f"<span style='color:{color}'>{label}</span>" for label, color in series)
    return f"{name}: {names}" if series else name


def config_letter(index: int) -> str:
    return chr(65 + index % 26) + ("" if index < 26 else str(index // 26))


class ChartsPanel(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.t0 = time.perf_counter()
        self.grid = QGridLayout(self)
        # short titles: a chart can be about 220 px wide (see ONE_COLUMN_BELOW_PX)
        self.speed = _plot(_title("Tok/s", ("instant", "#7a9bb0"), ("average", "#1565c0")),
                           "tok/s", "token (all turns)")
        self.ttft = _plot("TTFT per turn", "ms", "turn · config")
        self.itl = _plot("ITL, this turn", "ms", "token")
        self.memory = _plot(_title("Memory", ("RSS", "#ef6c00")), "MB", "time (s)")
        self.key = QLabel()  # letters → configs
        self.key.setWordWrap(True)
        self.key.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
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

        self.inst_curve = self.speed.plot(pen=pg.mkPen("#7a9bb0", width=1))
        self.avg_curve = self.speed.plot(pen=pg.mkPen("#1565c0", width=2))
        for curve in (self.inst_curve, self.avg_curve):
            curve.setClipToView(True)  # only the visible window of the ring buffer is drawn
        dashed = pg.QtCore.Qt.DashLine
        # The reference lines are named in the titles (with their values): a label on
        # the line collided with the turn numbers in a short chart.
        # The bandwidth bound of each turn, drawn over that turn's tokens only: the
        # config (and so the bound) can change between turns, and a line across every
        # turn put measured speed above a "ceiling" that was not its own
        self.bound_curve = self.speed.plot(pen=pg.mkPen("#c62828", style=dashed))
        self.bound_segments: list[list[float]] = []  # [first token, last token, tok/s]
        self.ttft_bars = pg.BarGraphItem(x=[], height=[], width=0.6, brush="#2e7d32")
        self.ttft.addItem(self.ttft_bars)
        self.itl_curve = self.itl.plot(pen=pg.mkPen("#6a1b9a", width=2))
        self.rss_curve = self.memory.plot(pen=pg.mkPen("#ef6c00", width=2))
        self.cuda_curve = None  # created on the first CUDA sample: CPU runs do not name it
        self.weights_line = pg.InfiniteLine(angle=0, pen=pg.mkPen(WEIGHTS_GREY, style=dashed))
        self._turn_tokens = 0
        self._first_token = 0.0
        self._last_token: float | None = None
        self._turn_labels: list[str] = []
        self.configs: list[str] = []  # distinct config labels in order: letter = index
        self.turn_x: list[float] = []  # where each turn starts on the token axis
        self.tokens_total = 0
        self.turns = 0
        self.dirty: set[str] = set()
        self._x_end = 0.0
        self._speed_start = self._speed_end = 0.0
        self._y_top: dict[int, float] = {}
        self._weights = self._bound = 0.0
        self._cuda = False
        self._titled_widths = (0, 0)
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
        self.grid.removeWidget(self.key)
        self.grid.addWidget(self.key, 4 // columns + 1, 0, 1, columns)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._arrange(2 if self.width() >= ONE_COLUMN_BELOW_PX else 1)

    def now(self, t: float | None = None) -> float:
        return (t if t is not None else time.perf_counter()) - self.t0

    # -- data in (slots run in the GUI thread) --------------------------------
    def set_reference(self, weights_mb: float | None, bound_tok_s: float | None) -> None:
        self._weights, self._bound = weights_mb or 0.0, bound_tok_s or 0.0
        self.dirty |= {"speed", "memory"}
        for plot, line, value in ((self.memory, self.weights_line, weights_mb),):
            if value:
                line.setValue(value)
                if line.scene() is None:
                    plot.addItem(line)
            elif line.scene() is not None:
                plot.removeItem(line)
        self._set_titles()

    def _set_titles(self, cuda: bool | None = None) -> None:
        """Titles that fit: the longest form that the chart's width holds (a pyqtgraph
        title is one line and is cut, not wrapped). Each series has its words in three
        forms, long to tiny; None leaves it out of that form."""
        self._cuda = self._cuda if cuda is None else cuda
        bound, weights = f"{self._bound:.0f}", f"{self._weights:.0f}"
        speed = [("#7a9bb0", ("instant", "inst", None)), ("#1565c0", ("average", "avg", None))]
        if self._bound:  # the dashed red line
            speed.append(("#c62828", (f"bandwidth bound {bound}", f"bound {bound}",
                                      f"bound {bound}")))
        memory = [("#ef6c00", ("RSS", "RSS", None))]
        if self._cuda:
            memory.append(("#00838f", ("CUDA", "CUDA", None)))
        if self._weights:  # the dashed line; the tiny title's name already says MB
            memory.append((WEIGHTS_GREY, (f"weights {weights} MB", f"weights {weights} MB",
                                    f"weights {weights}")))
        for plot, names, series in ((self.speed, ("Tokens / second", "Tok/s", "Tok/s"), speed),
                                    (self.memory, ("Memory", "Memory", "MB"), memory)):
            room = plot.width() - 60  # the title keeps margins of its own
            for form in range(3):
                parts = [(words[form], color) for color, words in series if words[form]]
                plot.setTitle(_title(names[form], *parts))
                if plot.getPlotItem().titleLabel.item.boundingRect().width() <= room:
                    break  # the drawn width, measured: this form fits

    def replay_turn(self, label: str, metrics: dict) -> None:
        """A saved turn (a chat reopened) drawn from its record: its TTFT, its tokens at
        their recorded gaps, its bound. The memory chart is this process's own, over
        time: a turn of an earlier run has no place on it."""
        itl = [float(x) for x in metrics.get("itl_ms") or [] if isinstance(x, (int, float))]
        if not metrics.get("new_tokens"):
            return
        self.turn_started(None, label)
        t = 0.0
        for gap in [0.0, *itl]:
            t += gap / 1000.0
            self.add_token(t)
        ttft, bound = metrics.get("ttft_ms"), metrics.get("bandwidth_bound_tok_s")
        self.turn_finished(ttft if isinstance(ttft, (int, float)) else None,
                           bound if isinstance(bound, (int, float)) else None)

    def turn_started(self, t: float | None, label: str) -> None:
        """Number the turn on the charts; mark a config change in red with its letter
        (t None: a saved turn, not marked on the memory chart's time axis)."""
        self._gap()
        changed = not self._turn_labels or label != self._turn_labels[-1]
        if label not in self.configs:
            self.configs.append(label)
            self._update_key()
        self._turn_labels.append(label)
        self.turn_x.append(float(self.tokens_total))
        if self._bound:  # this turn's, until its own measured bound replaces it
            self.bound_segments.append([float(self.tokens_total)] * 2 + [self._bound])
        self._last_token = None
        self._turn_tokens = 0
        self.itl_ms = []
        number = len(self._turn_labels)
        letter = config_letter(self.configs.index(label))
        text = f"{number} {letter}" if changed else str(number)
        color = "#c62828" if changed else "#999"
        # Three heights in turn: numbers of short turns side by side would overlap.
        height = (0.96, 0.7, 0.44)[(number - 1) % 3]
        marks = [(self.speed, float(self.tokens_total))]
        if t is not None:
            marks.append((self.memory, self.now(t)))
        for plot, x in marks:
            plot.addItem(pg.InfiniteLine(
                pos=x, angle=90, pen=pg.mkPen(color, style=pg.QtCore.Qt.DotLine),
                label=text, labelOpts={"position": height, "color": color,
                                       "anchors": [(0, 0), (0, 0)],
                                       "fill": (*theme.chart_colors()[0].getRgb()[:3], 220)}))
        self.dirty |= {"speed", "memory", "itl"}

    def _update_key(self) -> None:
        entries = []
        for i, label in enumerate(self.configs):
            short = label if len(label) <= KEY_CHARS else label[: KEY_CHARS - 1] + "…"
            entries.append(f"<b>{config_letter(i)}</b> {short}")
        self.key.setText("Configs: " + " &nbsp; ".join(entries))
        self.key.setToolTip("\n".join(f"{config_letter(i)}: {label}"
                                      for i, label in enumerate(self.configs)))

    def _gap(self) -> None:
        # A NaN between turns, so the curves do not draw a line across the idle time.
        if self.speed_t:
            nan = float("nan")
            self.speed_t.append(self.speed_t[-1])
            self.speed_inst.append(nan)
            self.speed_avg.append(nan)

    def add_token(self, t: float) -> None:
        self._turn_tokens += 1
        self.tokens_total += 1
        if self.bound_segments and self.turn_x and self.bound_segments[-1][0] == self.turn_x[-1]:
            self.bound_segments[-1][1] = float(self.tokens_total)
        if self._last_token is not None:
            gap = t - self._last_token
            self.itl_ms.append(gap * 1000.0)
            if gap > 0:
                self.speed_t.append(float(self.tokens_total))
                self.speed_inst.append(1.0 / gap)
                elapsed = t - self._first_token
                self.speed_avg.append((self._turn_tokens - 1) / elapsed if elapsed > 0 else 0.0)
        else:
            self._first_token = t
        self._last_token = t
        self.dirty |= {"speed", "itl"}

    def turn_finished(self, ttft_ms: float | None, bound_tok_s: float | None = None) -> None:
        """``bound_tok_s``: the turn's own bandwidth bound (bytes it read per token), as
        its record has it."""
        self.turns += 1
        if self.bound_segments and self.bound_segments[-1][0] == self.turn_x[-1]:
            if bound_tok_s:
                self.bound_segments[-1][2] = bound_tok_s
            self.dirty.add("speed")
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
        widths = (self.speed.width(), self.memory.width())
        if widths != self._titled_widths:  # the layout settles after resize events
            self._titled_widths = widths
            self._set_titles()
        dirty, self.dirty = self.dirty, set()
        if not dirty:
            return
        if "speed" in dirty:
            t = np.asarray(self.speed_t)
            inst = np.asarray(self.speed_inst)
            self.inst_curve.setData(t, inst, connect="finite")
            self.avg_curve.setData(t, np.asarray(self.speed_avg), connect="finite")
            segments = np.asarray(self.bound_segments[-TURNS_SHOWN * 2:], dtype=float)
            if len(segments):
                self.bound_curve.setData(segments[:, :2].reshape(-1),
                                         np.repeat(segments[:, 2], 2), connect="pairs")
            finite = inst[np.isfinite(inst)]
            if len(finite):
                # The bandwidth bounds stay in view: the ceiling is the point.
                # (with headroom: the turn numbers sit above the bound's label)
                top = float(segments[:, 2].max()) if len(segments) else 0.0
                self._grow_y(self.speed, 1.15 * max(float(np.percentile(finite, 99)), top))
        if "itl" in dirty:
            n = len(self.itl_ms)
            self.itl_curve.setData(np.arange(2, n + 2), np.asarray(self.itl_ms))
            self.itl.setXRange(0, 64 * (n // 64 + 1) + 1, padding=0)
            if n:
                self._grow_y(self.itl, max(self.itl_ms))
        if "ttft" in dirty:
            self.ttft_bars.setOpts(x=self.ttft_turn, height=self.ttft_ms, width=0.6)
            if self.ttft_turn:
                last = max(self.ttft_turn)
                self.ttft.setXRange(max(0.4, last - TURNS_SHOWN + 0.4), last + 0.6, padding=0)
                # turn number over the config's letter: short enough never to run together
                ticks = [(n, f"{n}\n{config_letter(self.configs.index(self._turn_labels[n - 1]))}"
                          if n - 1 < len(self._turn_labels) else str(n))
                         for n in self.ttft_turn[-TURNS_SHOWN:]]
                self.ttft.getAxis("bottom").setTicks([ticks])
                self._grow_y(self.ttft, max(self.ttft_ms[-TURNS_SHOWN:]))
        if "memory" in dirty:
            t = np.asarray(self.mem_t)
            rss = np.asarray(self.mem_rss)
            self.rss_curve.setData(t, rss)
            self._grow_y(self.memory, max(float(rss.max(initial=0.0)), self._weights))
            cuda = np.asarray(self.mem_cuda)
            if np.isfinite(cuda).any():
                if self.cuda_curve is None:
                    self.cuda_curve = self.memory.plot(pen=pg.mkPen("#00838f", width=2))
                    self._set_titles(cuda=True)
                self.cuda_curve.setData(t, cuda, connect="finite")
        if "speed" in dirty and self.turn_x:
            # the last few turns, each as wide as its reply, with room for the next tokens
            start = self.turn_x[-TURNS_SHOWN:][0]
            end = self.tokens_total + max(16.0, 0.15 * (self.tokens_total - start))
            if end > self._speed_end or start > self._speed_start:
                self._speed_start, self._speed_end = start, end + 32  # jump, do not crawl
                self.speed.setXRange(start, self._speed_end, padding=0)
        if "memory" in dirty:
            latest = self.now()
            if latest > self._x_end - 0.5:  # jump, do not crawl
                self._x_end = latest + STEP_S
                self.memory.setXRange(max(0.0, self._x_end - WINDOW_S), self._x_end, padding=0)

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
