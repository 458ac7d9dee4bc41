"""The Compare tab: 2–6 configs on the same prompts, a ratio table, bar charts, A/B chat.

The view only collects configs and shows results; the main window hands the work to
the worker and routes its signals here.
"""

from __future__ import annotations

import html
import json
import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import QEvent, Qt, Signal
from PySide6.QtGui import QColor, QTextCharFormat
from PySide6.QtWidgets import (
    QComboBox,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from playground.core.config import ConfigError, RunConfig, spec_keys
from playground.core.models import ModelError
from playground.core.presets import PRESETS, preset
from playground.gui import file_dialogs
from playground.gui.compare_charts import CompareCharts
from playground.gui.labels import chart_label, short_label

MIN_CONFIGS, MAX_CONFIGS = 2, 6
# ten columns that fit beside the config list at 1024 px: each speed and size figure
# carries the rounds' range and its ratio to the baseline on lines below it (each ratio
# was a column of its own, and the quality columns sat past the right edge); a header's
# tooltip says it in full
COLUMNS = (
    ("config", "config"), ("decode_tok_s", "decode\ntok/s"), ("ttft_ms", "TTFT\nms"),
    ("kl_mean", "KL\nnats"),
    ("top1_agreement", "top-1\nagree"), ("greedy_match", "greedy\n= base"), ("ppl", "ppl"),
    ("weights_mb", "weights\nMB"), ("peak_rss_mb", "peak\nRSS MB"), ("note", "note"),
)
RATIO_OF = {"decode_tok_s": "decode_x", "ttft_ms": "ttft_x", "weights_mb": "weights_x"}
HEADER_TIPS = {
    "ttft_ms": "time to first token, median over the runs; below it, the fastest–slowest "
               "run and × the baseline's",
    "decode_tok_s": "decode tokens per second, median over the runs; below it, the "
                    "slowest–fastest run and × the baseline's",
    "weights_mb": "weights as stored; below it, × the baseline's",
    "peak_rss_mb": "peak resident memory while it ran",
    "kl_mean": "mean KL divergence from the baseline's next-token distribution (0: same)",
    "top1_agreement": "share of positions where the most likely next token is the baseline's",
    "ppl": "perplexity on the calibration text", "greedy_match":
        "share of prompts whose greedy reply is the baseline's, word for word"}
CONFIG_WIDTH = 90  # the least the config column gets; the full spec is its tooltip
NOTE_MIN = 160


class CompareView(QWidget):
    run_requested = Signal(object)  # list[RunConfig]
    cancel_requested = Signal()
    ab_requested = Signal(object, str)  # [RunConfig, RunConfig], prompt
    error = Signal(str)

    def __init__(self, current_config, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.current_config = current_config  # callable -> RunConfig (the Playground controls)
        self.rows: list[dict[str, Any]] = []
        self.results: list[Any] = []
        outer = QHBoxLayout(self)

        left = QVBoxLayout()
        picker = QGroupBox(f"Configs ({MIN_CONFIGS}–{MAX_CONFIGS}; the first is the baseline)")
        pick = QVBoxLayout(picker)
        self.configs = QListWidget()
        pick.addWidget(self.configs)
        row = QHBoxLayout()
        self.add_current = QPushButton("Add current controls")
        self.remove = QPushButton("Remove")
        row.addWidget(self.add_current)
        row.addWidget(self.remove)
        pick.addLayout(row)
        row = QHBoxLayout()
        self.preset = QComboBox()
        self.preset.addItems(list(PRESETS))
        self.add_preset = QPushButton("Add preset")
        row.addWidget(self.preset, 1)
        row.addWidget(self.add_preset)
        pick.addLayout(row)
        row = QHBoxLayout()
        self.spec = QLineEdit()
        self.spec.setPlaceholderText("spec, e.g. quant=bf16,threads=2")
        self.add_spec = QPushButton("Add spec")
        row.addWidget(self.spec, 1)
        row.addWidget(self.add_spec)
        pick.addLayout(row)
        row = QHBoxLayout()
        self.repeats = QSpinBox()
        self.repeats.setRange(1, 20)
        self.repeats.setValue(3)  # rounds: the spread needs a few
        self.repeats.setToolTip("Rounds: each round runs every config once, alternating, so "
                                "a busy moment slows all of them alike; the table shows the "
                                "median round and the min–max")
        self.warmup = QSpinBox()
        self.warmup.setRange(0, 5)
        self.warmup.setValue(1)
        row.addWidget(QLabel("Warmup"))
        row.addWidget(self.warmup)
        row.addWidget(QLabel("Rounds"))
        row.addWidget(self.repeats)
        pick.addLayout(row)
        row = QHBoxLayout()
        self.run = QPushButton("Run comparison")
        self.cancel = QPushButton("Cancel")
        self.cancel.setEnabled(False)
        row.addWidget(self.run)
        row.addWidget(self.cancel)
        pick.addLayout(row)
        self.progress = QProgressBar()
        self.progress.setFormat("%v / %m")
        pick.addWidget(self.progress)
        self.progress_label = QLabel("")
        self.progress_label.setWordWrap(True)
        pick.addWidget(self.progress_label)
        row = QHBoxLayout()
        self.export_csv = QPushButton("Export CSV…")
        self.export_json = QPushButton("Export JSON…")
        self.export_png = QPushButton("Export PNG…")
        for b in (self.export_csv, self.export_json, self.export_png):
            row.addWidget(b)
        pick.addLayout(row)
        left.addWidget(picker)

        ab = QGroupBox("A/B chat: one prompt, two configs, replies side by side")
        ab_layout = QVBoxLayout(ab)
        row = QHBoxLayout()
        self.ab_a, self.ab_b = QComboBox(), QComboBox()
        row.addWidget(QLabel("A"))
        row.addWidget(self.ab_a, 1)
        row.addWidget(QLabel("B"))
        row.addWidget(self.ab_b, 1)
        ab_layout.addLayout(row)
        row = QHBoxLayout()
        self.ab_prompt = QLineEdit()
        self.ab_prompt.setPlaceholderText("Prompt for A and B")
        self.ab_send = QPushButton("Send to A and B")
        row.addWidget(self.ab_prompt, 1)
        row.addWidget(self.ab_send)
        ab_layout.addLayout(row)
        replies = QHBoxLayout()
        self.ab_views = (QTextBrowser(), QTextBrowser())
        for view in self.ab_views:
            replies.addWidget(view)
        ab_layout.addLayout(replies, 1)
        left.addWidget(ab, 1)

        right = QSplitter()
        right.setOrientation(right.orientation().Vertical)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels([title for _, title in COLUMNS])
        # the note takes what the figures leave (it may be elided: its tooltip has it)
        self.table.horizontalHeader().setSectionResizeMode(len(COLUMNS) - 1,
                                                           QHeaderView.ResizeMode.Stretch)
        self.table.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.table.resizeColumnsToContents()  # empty, too: the headers' widths, no scroll bar
        self.table.viewport().installEventFilter(self)  # its width sets the config column's
        for c, (key, _title) in enumerate(COLUMNS):
            if key in HEADER_TIPS:
                self.table.horizontalHeaderItem(c).setToolTip(HEADER_TIPS[key])
        self.charts = CompareCharts()
        right.addWidget(self.table)
        right.addWidget(self.charts)
        right.setSizes([250, 550])
        left_widget = QWidget()
        left_widget.setLayout(left)
        left_widget.setMaximumWidth(390)  # the table and charts need the rest at 1024 px
        outer.addWidget(left_widget)
        outer.addWidget(right, 1)

        self.add_current.clicked.connect(self._add_current)
        self.add_preset.clicked.connect(self._add_preset)
        self.add_spec.clicked.connect(self._add_spec)
        self.remove.clicked.connect(self._remove)
        self.run.clicked.connect(self._run)
        self.cancel.clicked.connect(self.cancel_requested)
        self.ab_send.clicked.connect(self._ab)
        self.export_csv.clicked.connect(lambda: self._export("csv"))
        self.export_json.clicked.connect(lambda: self._export("json"))
        self.export_png.clicked.connect(lambda: self._export("png"))

    # -- the config list ------------------------------------------------------------
    def specs(self) -> list[RunConfig]:
        return [RunConfig.parse(self._spec(i)) for i in range(self.configs.count())]

    def _spec(self, row: int) -> str:
        return self.configs.item(row).data(Qt.ItemDataRole.UserRole)

    def add_config(self, config: RunConfig, own: set[str] | None = None) -> bool:
        """Add ``config``, its whole spec shown; keys it has that are not ``own`` (the
        preset's or the typed spec's) came from the Playground controls and are named."""
        if self.configs.count() >= MAX_CONFIGS:
            self.error.emit(f"compare: at most {MAX_CONFIGS} configs")
            return False
        spec = config.format(only_changed=True) or "model=default"
        inherited = [] if own is None else [
            part for part in spec.split(",") if "=" in part and part.split("=")[0] not in own]
        text = spec + (f"   ← from the controls: {', '.join(inherited)}" if inherited else "")
        item = QListWidgetItem(text)
        item.setData(Qt.ItemDataRole.UserRole, spec)
        item.setToolTip(f"runs: {spec}" + (f"\nfrom the Playground controls: "
                                            f"{', '.join(inherited)}" if inherited else ""))
        self.configs.addItem(item)
        self._refresh_ab()
        return True

    def state(self) -> dict[str, Any]:
        """What a restart gives back: the configs (spec and shown text), warmup, rounds."""
        return {"configs": [[self._spec(i), self.configs.item(i).text(),
                             self.configs.item(i).toolTip()] for i in range(self.configs.count())],
                "warmup": self.warmup.value(), "repeats": self.repeats.value()}

    def restore_state(self, state: Any) -> str | None:
        """The saved state back; what could not come back, in one line, or None. A saved
        config that no longer parses (a key renamed by a later version) is left out alone;
        an unreadable state raises ValueError."""
        if not isinstance(state, dict) or not isinstance(state.get("configs"), list):
            raise ValueError("the Compare tab's saved state is unreadable")
        rows, dropped = [], []
        for entry in state["configs"][:MAX_CONFIGS]:
            if not (isinstance(entry, list) and len(entry) == 3
                    and all(isinstance(x, str) for x in entry)):
                raise ValueError("a saved Compare config is unreadable")
            try:
                RunConfig.parse(entry[0])
            except ConfigError as exc:
                dropped.append(f"{entry[0]} ({exc})")
                continue
            rows.append(entry)
        self.configs.clear()
        for spec, text, tip in rows:
            item = QListWidgetItem(text)
            item.setData(Qt.ItemDataRole.UserRole, spec)
            item.setToolTip(tip)
            self.configs.addItem(item)
        for box, key in ((self.warmup, "warmup"), (self.repeats, "repeats")):
            if isinstance(state.get(key), int):
                box.setValue(state[key])  # the spin box clamps it to its range
        self._refresh_ab()
        return (f"Compare: a saved config no longer parses and was left out: "
                f"{'; '.join(dropped)}") if dropped else None

    def _add_current(self) -> None:
        try:
            self.add_config(self.current_config())
        except ConfigError as exc:
            self.error.emit(str(exc))

    def _add_preset(self) -> None:
        name = self.preset.currentText()
        try:
            own = set(preset(name, RunConfig()).changed_keys())  # what the preset itself sets
            self.add_config(preset(name, self.current_config()), own)
        except (ConfigError, ValueError, ModelError) as exc:
            self.error.emit(str(exc))

    def _add_spec(self) -> None:
        try:
            config = RunConfig.parse(self.spec.text(), base=self.current_config())
        except ConfigError as exc:
            self.error.emit(str(exc))
            return
        own = set(spec_keys(self.spec.text()))
        if self.add_config(config, own):
            self.spec.clear()

    def _remove(self) -> None:
        for item in self.configs.selectedItems():
            self.configs.takeItem(self.configs.row(item))
        self._refresh_ab()

    def _refresh_ab(self) -> None:
        items = [self._spec(i) for i in range(self.configs.count())]
        for combo, default in ((self.ab_a, 0), (self.ab_b, 1)):
            keep = combo.currentText()
            combo.clear()
            combo.addItems(items)
            if keep in items:
                combo.setCurrentText(keep)
            elif len(items) > default:
                combo.setCurrentIndex(default)
        if len(items) >= 2 and self.ab_a.currentIndex() == self.ab_b.currentIndex():
            self.ab_b.setCurrentIndex(1 if self.ab_a.currentIndex() != 1 else 0)

    # -- running --------------------------------------------------------------------
    def _run(self) -> None:
        if not MIN_CONFIGS <= self.configs.count() <= MAX_CONFIGS:
            self.error.emit(f"compare: pick {MIN_CONFIGS} to {MAX_CONFIGS} configs "
                            f"(now {self.configs.count()})")
            return
        self.rows, self.results = [], []
        self._show_rows()
        self.started = time.monotonic()
        self.run_requested.emit(self.specs())

    def _ab(self) -> None:
        text = self.ab_prompt.text().strip()
        if not text or self.configs.count() < 1:
            self.error.emit("A/B chat: add configs and type a prompt first")
            return
        configs = [RunConfig.parse(c.currentText()) for c in (self.ab_a, self.ab_b)]
        for side, (view, config) in enumerate(zip(self.ab_views, configs, strict=True)):
            view.setHtml(f"<p><b>{'AB'[side]}: {html.escape(short_label(config))}</b></p>")
            view.append("")  # the reply streams into its own paragraph
        self.ab_requested.emit(configs, text)

    def set_running(self, running: bool) -> None:
        for w in (self.run, self.ab_send, self.add_current, self.add_preset, self.add_spec,
                  self.remove):
            w.setEnabled(not running)
        self.cancel.setEnabled(running)

    def on_progress(self, done: int, total: int, label: str) -> None:
        self.progress.setMaximum(total)
        self.progress.setValue(done)
        self.progress_label.setText(label)

    def eta_text(self, done: int, total: int) -> str:
        """'Running comparison: 12 of 40 runs, about 3 min left' (from the pace so far)."""
        text = f"Running comparison: {done} of {total} runs"
        elapsed = time.monotonic() - getattr(self, "started", time.monotonic())
        if done and total > done and elapsed > 1:
            left = elapsed / done * (total - done)
            text += (f", about {left / 60:.0f} min left" if left >= 90
                     else f", about {left:.0f} s left")
        return text

    def on_result(self, result: Any) -> None:
        from playground.core.compare import ratio_rows

        self.results.append(result)
        self.rows = ratio_rows(self.results)
        self._show_rows()

    def on_done(self, outcome: Any) -> None:
        from playground.core.compare import ratio_rows

        # A stopped or failed run also brings the configs with unfinished rounds.
        self.results = list(outcome.results)
        self.rows = ratio_rows(self.results)
        self._show_rows()
        n = len(outcome.results)
        if outcome.error:
            text = f"Failed: {outcome.error} (kept {n} configs' finished rounds)"
        elif outcome.cancelled:
            text = f"Cancelled: kept {n} configs' finished rounds"
        else:
            noisy = sum(1 for row in self.rows if row.get("noisy"))
            text = f"Done: {n} configs" + (f"; {noisy} noisy (run more rounds)" if noisy else "")
        self.progress_label.setText(text)

    def on_ab_token(self, side: int, piece: str) -> None:
        view = self.ab_views[side]
        cursor = view.textCursor()
        cursor.movePosition(cursor.MoveOperation.End)
        cursor.insertText(piece, QTextCharFormat())  # plain, not the header's bold

    def on_ab_done(self, side: int, line: str) -> None:
        self.ab_views[side].append(f"<span style='color:#666; font-size:small'>"
                                   f"{html.escape(line)}</span>")

    def _show_rows(self) -> None:
        self.table.setRowCount(len(self.rows))
        for r, row in enumerate(self.rows):
            for c, (key, _) in enumerate(COLUMNS):
                text = _cell(key, row.get(key), r, row)
                if key in RATIO_OF and row.get(RATIO_OF[key]) is not None:
                    text += "\n" + _cell(RATIO_OF[key], row[RATIO_OF[key]], r, row)
                item = QTableWidgetItem(text)
                if key == "config":
                    item.setToolTip(row["config"])
                if key == "note" and item.text():
                    item.setToolTip(item.text())
                    item.setForeground(QColor("#b35900"))
                self.table.setItem(r, c, item)
        self.table.resizeColumnsToContents()
        self._config_contents = self.table.columnWidth(0)
        self._fit_config_column()
        self.table.resizeRowsToContents()
        self.charts.set_rows(self.rows)

    def _fit_config_column(self) -> None:
        """The config column as wide as its specs, within what the figures and a note of
        NOTE_MIN px leave of the table (at least CONFIG_WIDTH): at full HD a fixed 90 px
        cut specs that had room."""
        contents = getattr(self, "_config_contents", 0)
        if not contents:
            return
        figures = sum(self.table.columnWidth(c) for c in range(1, len(COLUMNS) - 1))
        room = self.table.viewport().width() - figures - NOTE_MIN
        self.table.setColumnWidth(0, max(CONFIG_WIDTH, min(contents, room)))

    def eventFilter(self, watched, event) -> bool:  # noqa: N802 (Qt's name)
        if watched is self.table.viewport() and event.type() == QEvent.Type.Resize:
            self._fit_config_column()
        return super().eventFilter(watched, event)

    # -- export ---------------------------------------------------------------------
    def export(self, path: str) -> None:
        from playground.core import bench

        if path.endswith(".png"):
            if not self.charts.grab().save(path):
                raise OSError(f"could not write {path}")
        elif path.endswith(".json"):
            Path(path).write_text(json.dumps(bench.result_file(self.results), indent=1))
        else:
            bench.write_csv(self.results, Path(path))

    def _export(self, kind: str) -> None:
        if not self.results:
            self.error.emit("compare: nothing to export yet; run a comparison first")
            return
        path = file_dialogs.save_file(self, "Export comparison", f"compare.{kind}",
                                      f"{kind.upper()} (*.{kind})")
        if path:
            try:
                self.export(path)
            except OSError as exc:
                self.error.emit(str(exc))


def _cell(key: str, value: Any, row: int, data: dict[str, Any] | None = None) -> str:
    from playground.core.compare import noisy_note, row_spread

    data = data or {}
    if key == "note":
        notes = [noisy_note(data)]
        if data.get("incomplete"):
            notes.append(f"incomplete: {data['incomplete']}")
        return "; ".join(n for n in notes if n)
    if key in ("ttft_ms", "decode_tok_s") and value is not None:
        lo, hi = row_spread(data, key)
        digits = 0 if key == "ttft_ms" else 1
        if lo is not None and hi is not None and hi > lo:
            wide = 0 if hi >= 100 else digits  # a range's tenths past 100 only widen it
            return f"{value:.{digits}f}\n{lo:.{wide}f}–{hi:.{wide}f}"  # the range below
        return f"{value:.{digits}f}"
    if key == "config":
        try:
            # the model too: configs of different models side by side are told apart
            name = chart_label(RunConfig.parse("" if value == "defaults" else value))
        except ConfigError:
            name = value
        return f"{chr(65 + row)}: {name}"
    if value is None:
        return "–"
    if key.endswith("_x"):
        return f"×{value:.2f}"
    if key in ("top1_agreement", "greedy_match"):
        return f"{100 * value:.0f}%"
    if key == "kl_mean":
        return "0" if value == 0 else f"{value:.3g}"
    if key in ("weights_mb", "peak_rss_mb"):
        return f"{value:.0f}"
    return f"{value:.1f}"
