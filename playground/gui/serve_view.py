"""The Serve & load tab: start a local OpenAI-compatible server from the current
controls, watch its requests stream in a live table, and sweep load against it (or any
endpoint) in the background, with TTFT, ITL and output tok/s charted against
concurrency, one series per sweep (batching on beside batching off).

Its jobs (building the server's engine, a load sweep) run in their own Python threads
and report through this view's signals; the chat's model worker is not involved. The
server loads its own copy of the model (the chat keeps its own).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer, Signal, Slot
from PySide6.QtWidgets import (
    QCheckBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from playground.core.config import RunConfig
from playground.gui import theme

COLUMNS = ("#", "state", "wait ms", "TTFT ms", "tokens", "tok/s", "e2e s")
SERIES_COLORS = ("#1565c0", "#c62828", "#2e7d32", "#ef6c00", "#6a1b9a")
MAX_SERIES = 5
# log-axis ticks for milliseconds, 0.1 ms to 100 s (the axis holds log10 values)
LOG_MS_VALUES = [round(m * 10.0 ** e, 6) for e in range(-1, 6) for m in (1, 2, 5)]
LOG_MS_TICKS = [(math.log10(v), f"{v:g}") for v in LOG_MS_VALUES]
def ttft_ticks_around(low_ms: float, high_ms: float) -> tuple[float, float]:
    """The 1-2-5 ticks just below ``low_ms`` and just above ``high_ms``: the TTFT axis
    spans them, so its labels show however narrow the data (150-400 ms had none)."""
    values = LOG_MS_VALUES
    below = max((v for v in values if v <= low_ms), default=values[0])
    above = min((v for v in values if v >= high_ms), default=values[-1])
    return below, above


PANELS = (("ttft_ms", "TTFT ms, log scale (p50 solid, p99 dashed)"),
          ("itl_ms", "ITL ms (p50 solid, p99 dashed)"),
          ("output_tok_s", "Output tok/s (all requests)"))


class ServeView(QWidget):
    # from the background threads (queued to the GUI thread)
    server_started = Signal(object)
    server_failed = Signal(str)
    server_stopped = Signal()
    load_step = Signal(object)
    load_done = Signal(object)
    load_failed = Signal(str)
    error = Signal(str)
    status = Signal(str)  # a line for the window's status bar

    def __init__(self, current_config: Callable[[], RunConfig], parent: QWidget | None = None
                 ) -> None:
        super().__init__(parent)
        self.current_config = current_config
        self.handle: Any = None
        self.sweeps: list[dict[str, Any]] = []  # {"label", "steps"}
        self._stop_load = threading.Event()
        self._loading = False

        self.spec = QLineEdit()
        self.spec.setPlaceholderText("the current controls' spec (Use controls)")
        from_controls = QPushButton("Use controls")
        from_controls.clicked.connect(self.use_controls)
        self.batching = QCheckBox("Batching on (continuous)")
        self.batching.setChecked(True)
        self.port = QSpinBox()
        self.port.setRange(1024, 65535)
        self.port.setValue(8000)
        self.start_button = QPushButton("Start server")
        self.start_button.clicked.connect(self.toggle_server)
        self.server_status = QLabel("Stopped.")
        self.server_status.setWordWrap(True)
        # a long status line wraps; it must not widen the column (buttons would move)
        self.server_status.setSizePolicy(QSizePolicy.Policy.Ignored,
                                         QSizePolicy.Policy.Preferred)
        # room for the serving line (four lines at 1024 px) from the start: the form stays put
        self.server_status.setMinimumHeight(4 * self.server_status.fontMetrics().lineSpacing())
        self.server_status.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        spec_row = QHBoxLayout()
        spec_row.addWidget(self.spec, 1)
        spec_row.addWidget(from_controls)
        run_row = QHBoxLayout()
        run_row.addWidget(self.batching)
        run_row.addWidget(QLabel("Port"))
        run_row.addWidget(self.port)
        run_row.addStretch(1)
        run_row.addWidget(self.start_button)
        server_box = QGroupBox("Local server (OpenAI-compatible, 127.0.0.1 only)")
        server_layout = QVBoxLayout(server_box)
        server_layout.addLayout(spec_row)
        server_layout.addLayout(run_row)
        server_layout.addWidget(self.server_status)

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().setVisible(False)
        header = self.table.horizontalHeader()
        # the figures share the width the box has: sized to their contents, the last
        # column went off the edge at 1024 px
        header.setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setMinimumSectionSize(36)
        self.table.setToolTip("wait: in the queue before the scheduler took it; TTFT: from "
                              "arrival to the first token; tok/s: after the first token")
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.totals = QLabel("")
        self.totals.setWordWrap(True)  # the counts wrap; they never widen the column
        self.totals.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.totals.setMinimumHeight(2 * self.totals.fontMetrics().lineSpacing())
        requests_box = QGroupBox("Requests (latest first)")
        requests_layout = QVBoxLayout(requests_box)
        requests_layout.addWidget(self.totals)
        requests_layout.addWidget(self.table)

        self.endpoint = QLineEdit()
        self.endpoint.setPlaceholderText("http://127.0.0.1:8000/v1 (the local server when empty)")
        self.concurrency = QLineEdit("1,2,4,8")
        self.requests = QSpinBox()
        self.requests.setRange(1, 10000)
        self.requests.setValue(16)
        self.max_tokens = QSpinBox()
        self.max_tokens.setRange(1, 8192)
        self.max_tokens.setValue(64)
        self.load_button = QPushButton("Run load sweep")
        self.load_button.clicked.connect(self.toggle_load)
        self.load_progress = QProgressBar()
        self.load_progress.setFormat("%v of %m steps")
        self.load_status = QLabel("")
        self.load_status.setWordWrap(True)
        self.load_status.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        form = QFormLayout()
        form.addRow("Endpoint", self.endpoint)
        form.addRow("Concurrency steps", self.concurrency)
        form.addRow("Requests per step", self.requests)
        form.addRow("Max tokens", self.max_tokens)
        load_box = QGroupBox("Load sweep")
        load_layout = QVBoxLayout(load_box)
        load_layout.addLayout(form)
        buttons = QHBoxLayout()
        buttons.addWidget(self.load_button)
        buttons.addWidget(self.load_progress, 1)
        load_layout.addLayout(buttons)
        load_layout.addWidget(self.load_status)

        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(server_box)
        left_layout.addWidget(load_box)
        left_layout.addWidget(requests_box, 1)

        self.charts = pg.GraphicsLayoutWidget()
        self.plots = {}
        for i, (key, title) in enumerate(PANELS):
            plot = self.charts.addPlot(row=i, col=0, title=title)
            plot.showGrid(x=True, y=True, alpha=0.25)
            plot.setLabel("bottom", "concurrency")
            # TTFT spans 20 ms (batched) to seconds (queued): a log axis shows both
            plot.setLogMode(x=True, y=key == "ttft_ms")
            if key == "ttft_ms":  # 1-2-5 a decade: pyqtgraph labelled every minor tick
                plot.getAxis("left").setTicks([LOG_MS_TICKS, []])
            self.plots[key] = plot
        theme.style_chart(self.charts)
        self.legend = QLabel("Run a sweep: each one is a series (start the server with "
                             "batching off and sweep again to compare).")
        self.legend.setWordWrap(True)
        self.legend.setTextFormat(Qt.TextFormat.RichText)
        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        right_layout.addWidget(self.legend)
        right_layout.addWidget(self.charts, 1)

        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(left)
        splitter.addWidget(right)
        splitter.setStretchFactor(0, 1)
        splitter.setStretchFactor(1, 1)
        layout = QVBoxLayout(self)
        layout.addWidget(splitter)

        self.server_started.connect(self._on_started)
        self.server_failed.connect(self._on_server_failed)
        self.server_stopped.connect(self._on_stopped)
        self.load_step.connect(self._on_step)
        self.load_done.connect(self._on_load_done)
        self.load_failed.connect(self._on_load_failed)
        self._set_ticks([1, 2, 4, 8])
        self.timer = QTimer(self)
        self.timer.timeout.connect(self.refresh_table)
        self.timer.start(500)

    # -- saved state (settings_store) ------------------------------------------------
    def state(self) -> dict[str, Any]:
        """What a restart gives back: the server's spec, batching and port, the sweep's
        endpoint, concurrencies, requests and max tokens."""
        return {"spec": self.spec.text(), "batching": self.batching.isChecked(),
                "port": self.port.value(), "endpoint": self.endpoint.text(),
                "concurrency": self.concurrency.text(), "requests": self.requests.value(),
                "max_tokens": self.max_tokens.value()}

    def restore_state(self, state: Any) -> None:
        """The saved state back, each field of the right type (a wrong one keeps its
        default; a spin box clamps a number to its range)."""
        if not isinstance(state, dict):
            raise ValueError("the Serve tab's saved state is unreadable")
        for key, widget in (("spec", self.spec), ("endpoint", self.endpoint),
                            ("concurrency", self.concurrency)):
            if isinstance(state.get(key), str):
                widget.setText(state[key])
        for key, box in (("port", self.port), ("requests", self.requests),
                         ("max_tokens", self.max_tokens)):
            if isinstance(state.get(key), int) and not isinstance(state.get(key), bool):
                box.setValue(state[key])
        if isinstance(state.get("batching"), bool):
            self.batching.setChecked(state["batching"])

    # -- the server ----------------------------------------------------------------
    @Slot()
    def use_controls(self) -> None:
        try:
            self.spec.setText(self.current_config().format(only_changed=True))
        except ValueError as exc:
            self.error.emit(str(exc))

    @Slot()
    def toggle_server(self) -> None:
        if self.handle is not None:
            self.stop_server()
            return
        try:
            spec = self.spec.text().strip()
            config = RunConfig.parse(spec) if spec else self.current_config()
        except ValueError as exc:
            self.error.emit(str(exc))
            return
        if config.endpoint:
            self.error.emit("serve: the server runs a local model; endpoint= is for "
                            "measuring other servers (put its URL in Endpoint below)")
            return
        self.start_button.setEnabled(False)
        self.server_status.setText(f"Loading {config.format(only_changed=True) or 'defaults'}…")
        port, batching = self.port.value(), self.batching.isChecked()

        def start() -> None:
            from playground.core.serve.runner import ServerHandle

            try:
                handle = ServerHandle(config, port=port, batching=batching)
            except Exception as exc:  # shown as a dialog; the app keeps running
                self.server_failed.emit(str(exc).strip().splitlines()[0] if str(exc).strip()
                                        else type(exc).__name__)
                return
            self.server_started.emit(handle)

        threading.Thread(target=start, name="serve-start", daemon=True).start()

    def stop_server(self) -> None:
        handle, self.handle = self.handle, None
        if handle is None:
            return
        self.start_button.setEnabled(False)
        self.server_status.setText("Stopping: running requests finish first…")
        threading.Thread(target=lambda: (handle.stop(), self.server_stopped.emit()),
                         name="serve-stop", daemon=True).start()

    @Slot(object)
    def _on_started(self, handle: Any) -> None:
        self.handle = handle
        self.start_button.setEnabled(True)
        self.start_button.setText("Stop server")
        spec = handle.config.format(only_changed=True) or "defaults"
        self.server_status.setText(f"Serving {handle.engine.info.get('model_name')} ({spec}) on "
                                   f"{handle.url} — {handle.describe}")
        self.status.emit(f"Serving on {handle.url}")
        self.spec.setEnabled(False)
        self.batching.setEnabled(False)
        self.port.setEnabled(False)

    @Slot(str)
    def _on_server_failed(self, message: str) -> None:
        self.start_button.setEnabled(True)
        self.server_status.setText(f"Not started: {message}")
        self.error.emit(f"The server did not start: {message}")

    @Slot()
    def _on_stopped(self) -> None:
        self.start_button.setEnabled(True)
        self.start_button.setText("Start server")
        self.server_status.setText("Stopped.")
        self.status.emit("Server stopped")
        for widget in (self.spec, self.batching, self.port):
            widget.setEnabled(True)

    @Slot()
    def refresh_table(self) -> None:
        if self.handle is None:
            return
        m = self.handle.metrics
        self.totals.setText(f"{m.requests} served · {m.running} running (largest batch "
                            f"{m.running_max}) · {m.queued} waiting · {m.failed} failed · "
                            f"{m.rejected} refused · {m.output_tokens} tokens out")
        jobs = list(m.recent)[-50:][::-1]
        self.table.setRowCount(len(jobs))
        now = time.perf_counter()
        for row, job in enumerate(jobs):
            first = job.first_at
            end = job.done_at or now
            ttft = (first - job.arrived) * 1000 if first else None
            rate = (job.tokens - 1) / (end - first) if first and job.tokens > 1 and end > first \
                else None
            started = job.started_at or now  # admitted by the scheduler (a batch slot)
            values = (str(len(m.recent) - row), job.state,
                      f"{(started - job.arrived) * 1000:.0f}",
                      "" if ttft is None else f"{ttft:.0f}", str(job.tokens),
                      "" if rate is None else f"{rate:.1f}", f"{end - job.arrived:.2f}")
            for col, text in enumerate(values):
                item = QTableWidgetItem(text)
                if col >= 2:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(row, col, item)

    # -- load sweeps ---------------------------------------------------------------
    @Slot()
    def toggle_load(self) -> None:
        if self._loading:
            self._stop_load.set()
            self.load_status.setText("Cancelling after the running requests…")
            return
        from playground.core import bench
        from playground.core.load import LoadSettings

        endpoint = self.endpoint.text().strip() or (self.handle.url if self.handle else "")
        if not endpoint.startswith(("http://", "https://")):
            self.error.emit("Load: give an endpoint URL (http://host:port/v1) or start the "
                            "local server first")
            return
        try:
            steps = [int(v) for v in self.concurrency.text().split(",") if v.strip()]
            if not steps or any(v < 1 for v in steps):
                raise ValueError
        except ValueError:
            self.error.emit(f"Concurrency steps: '{self.concurrency.text()}' is not a list of "
                            "positive whole numbers, e.g. 1,2,4,8")
            return
        import os

        settings = LoadSettings(endpoint=endpoint,
                                prompts=bench.read_prompts(bench.default_prompts_path()),
                                requests=self.requests.value(),
                                max_tokens=self.max_tokens.value(), concurrency=steps,
                                api_key=os.environ.get("OPENAI_API_KEY"))
        label = self._series_label(endpoint)
        self.sweeps.append({"label": label, "steps": []})
        self.sweeps = self.sweeps[-MAX_SERIES:]
        self._stop_load.clear()
        self._loading = True
        self.load_button.setText("Cancel sweep")
        self.load_progress.setRange(0, len(steps))
        self.load_progress.setValue(0)
        self.load_status.setText(f"Sweeping {endpoint}: concurrency {steps[0]} first…")
        self.status.emit(f"Load sweep running against {endpoint}")

        def run() -> None:
            from playground.core.load import run_load

            try:
                done = run_load(settings, progress=self.load_step.emit,
                                should_stop=self._stop_load.is_set)
            except Exception as exc:
                self.load_failed.emit(str(exc).strip().splitlines()[0] if str(exc).strip()
                                      else type(exc).__name__)
                return
            self.load_done.emit(done)

        threading.Thread(target=run, name="load-sweep", daemon=True).start()

    def _series_label(self, endpoint: str) -> str:
        if self.handle is not None and endpoint == self.handle.url:
            on = "batching on" if self.handle.batching else "batching off"
            return f"local, {on} ({self.handle.config.format(only_changed=True) or 'defaults'})"
        return endpoint

    @Slot(object)
    def _on_step(self, step: dict[str, Any]) -> None:
        self.sweeps[-1]["steps"].append(step)
        self.load_progress.setValue(len(self.sweeps[-1]["steps"]))
        t = step["ttft_ms"]["p50"]
        self.load_status.setText(
            f"concurrency {step['concurrency']}: {step['output_tok_s']:.1f} tok/s, TTFT p50 "
            f"{'–' if t is None else f'{t:.0f}'} ms, {step['errors']} errors")
        self.redraw()

    @Slot(object)
    def _on_load_done(self, steps: list[Any]) -> None:
        self._loading = False
        self.load_button.setText("Run load sweep")
        cancelled = self._stop_load.is_set()
        self.load_status.setText(("Cancelled after " if cancelled else "Done: ")
                                 + f"{len(steps)} steps.")
        self.status.emit(f"Load sweep {'cancelled' if cancelled else 'done'}")

    @Slot(str)
    def _on_load_failed(self, message: str) -> None:
        self._loading = False
        self.load_button.setText("Run load sweep")
        self.load_status.setText(f"Failed: {message}")
        self.error.emit(f"Load sweep failed: {message}")

    def redraw(self) -> None:
        legend = []
        for plot in self.plots.values():
            plot.clear()
        for i, sweep in enumerate(self.sweeps):
            color = SERIES_COLORS[i % len(SERIES_COLORS)]
            legend.append(f'<span style="color:{color}">■</span> {sweep["label"]}')
            steps = [s for s in sweep["steps"] if s["concurrency"]]
            x = [s["concurrency"] for s in steps]
            if not x:
                continue
            for key, plot in self.plots.items():
                if key == "output_tok_s":
                    plot.plot(x, [s[key] for s in steps], pen=pg.mkPen(color, width=2),
                              symbol="o", symbolBrush=color, symbolSize=7)
                    continue
                for pct, style in (("p50", Qt.PenStyle.SolidLine), ("p99", Qt.PenStyle.DashLine)):
                    pts = [(c, s[key][pct]) for c, s in zip(x, steps, strict=True)
                           if s[key][pct] is not None]
                    if pts:
                        plot.plot([p[0] for p in pts], [p[1] for p in pts],
                                  pen=pg.mkPen(color, width=2, style=style), symbol="o",
                                  symbolBrush=color, symbolSize=6)
        if legend:
            self.legend.setText(" &nbsp; ".join(legend))
        levels = sorted({s["concurrency"] for sweep in self.sweeps for s in sweep["steps"]
                         if s["concurrency"]})
        if levels:
            self._set_ticks(levels)
        ttft = [s["ttft_ms"][pct] for sweep in self.sweeps for s in sweep["steps"]
                if s["concurrency"] for pct in ("p50", "p99") if s["ttft_ms"][pct]]
        if ttft:  # from a labelled tick below the data to one above it, so both show
            low, high = ttft_ticks_around(min(ttft), max(ttft))
            self.plots["ttft_ms"].setYRange(math.log10(low) - 0.03, math.log10(high) + 0.03,
                                            padding=0)

    def _set_ticks(self, levels: list[int]) -> None:
        for plot in self.plots.values():  # log axis: ticks at the steps run, not 0.4 … 0.9
            plot.getAxis("bottom").setTicks([[(math.log10(c), str(c)) for c in levels]])
            plot.setXRange(math.log10(levels[0]) - 0.08, math.log10(levels[-1]) + 0.08,
                           padding=0)

    def shutdown(self) -> None:
        """Window closing: stop the sweep and the server (bounded waits)."""
        self._stop_load.set()
        if self.handle is not None:
            handle, self.handle = self.handle, None
            handle.stop(timeout=10)
