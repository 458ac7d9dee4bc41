"""The main window: controls | chat | charts, the Compare and Serve tabs, menus.

It wires the parts together: the worker thread and its jobs are the job controller's
(job_controller.py), the saved settings the store's (settings_store.py), the training
jobs theirs (training_jobs.py), exports in exports.py.
"""

from __future__ import annotations

import os
import sys
import time

import psutil
from PySide6.QtCore import Qt, QTimer, Signal, Slot
from PySide6.QtGui import QActionGroup, QGuiApplication
from PySide6.QtWidgets import (
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QScrollArea,
    QSplitter,
    QTabWidget,
)

from playground.core.config import ConfigError, RunConfig
from playground.core.jobs import Job
from playground.gui import about, exports, file_dialogs, saved_chats, theme
from playground.gui.charts import ChartsPanel
from playground.gui.chat_view import ChatView, metrics_line
from playground.gui.compare_view import CompareView
from playground.gui.controls import ControlsPanel
from playground.gui.history_view import HistoryDialog
from playground.gui.job_controller import JobController
from playground.gui.labels import chart_label
from playground.gui.serve_view import ServeView
from playground.gui.settings_store import SettingsStore, first_size, settings_path
from playground.gui.training_jobs import DistillJob, QatJob
from playground.gui.worker import Loaded, TokenEvent, TurnDone

__all__ = ["MainWindow", "settings_path"]

MEMORY_SAMPLE_MS = 250


CLOSE_WAIT_MS = 15_000


def exit_now(code: int) -> None:
    """End the process without joining the worker thread (Qt would abort on a running
    QThread's destruction)."""
    os._exit(code)


class MainWindow(QMainWindow):
    # Emitted after the GUI has updated its widgets (what tests and self-test wait on).
    model_ready = Signal()
    turn_shown = Signal()
    error_shown = Signal(str)
    compare_shown = Signal()
    ab_shown = Signal()

    def __init__(
        self, config: RunConfig | None = None, *, show_dialogs: bool = True, persist: bool = True
    ) -> None:
        super().__init__()
        from playground.core.optimize.device import available_devices

        self.setWindowTitle("LLM Latency Playground")
        self.show_dialogs = show_dialogs
        # A scripted run (self-test) neither restores nor overwrites the user's layout.
        self.persist = persist
        self.store = SettingsStore(persist)
        self.notice: str | None = None
        self.busy: str | None = None
        self.side_job = False  # a comparison, A/B chat or distillation holds the worker
        self.loaded: Loaded | None = None
        self.pending_config: RunConfig | None = None
        # the controls' config of the load in flight, of the last one that loaded, and why
        # the last load failed: settings keep only a config that loaded, and Send says
        # what is true when there is no model
        self.requested_config: RunConfig | None = None
        self.good_config: RunConfig | None = None
        self.load_error: str | None = None
        self.load_clicked: float | None = None  # when the running load was asked for
        self.errors: list[str] = []

        self.controls = ControlsPanel(available_devices())
        self.chat = ChatView()
        self.charts = ChartsPanel()
        splitter = QSplitter(Qt.Orientation.Horizontal)
        # The controls scroll: their form is taller than a 700-pixel screen allows, and
        # it must not set the window's minimum height
        scroll = QScrollArea()
        scroll.setWidget(self.controls)
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setMinimumWidth(self.controls.minimumSizeHint().width()
                               + scroll.verticalScrollBar().sizeHint().width())
        splitter.addWidget(scroll)
        splitter.addWidget(self.chat)
        splitter.addWidget(self.charts)
        splitter.setChildrenCollapsible(False)  # a dragged handle never hides a panel
        splitter.setStretchFactor(0, 0)
        splitter.setStretchFactor(1, 2)
        splitter.setStretchFactor(2, 3)
        splitter.setSizes([300, 480, 720])
        self.splitter = splitter
        self.compare = CompareView(self.controls.config)
        self.tabs = QTabWidget()
        self.tabs.addTab(splitter, "Playground")
        self.tabs.addTab(self.compare, "Compare")
        self.serve = ServeView(self.controls.config)
        self.tabs.addTab(self.serve, "Serve && load")
        self.setCentralWidget(self.tabs)
        self.resize(*first_size(self))

        self.status_label = QLabel("Starting…")
        self.progress = QProgressBar()
        self.progress.setRange(0, 0)  # busy indicator
        self.progress.setMaximumWidth(160)
        self.statusBar().addWidget(self.status_label, 1)
        self.statusBar().addPermanentWidget(self.progress)
        self._build_menus()

        self.jobs = JobController(self)
        self.thread, self.worker = self.jobs.thread, self.jobs.worker
        self.worker.progress.connect(self.on_progress)
        self.worker.loaded.connect(self.on_loaded)
        self.worker.started.connect(self.on_started)
        self.worker.token.connect(self.on_token)
        self.worker.finished.connect(self.on_finished)
        self.worker.failed.connect(self.on_failed)
        self.worker.cancelled.connect(self.on_cancelled)
        self.worker.compare_progress.connect(self.compare.on_progress)
        self.worker.compare_progress.connect(
            lambda done, total, _label: self.status_label.setText(
                self.compare.eta_text(done, total)))
        self.worker.compare_result.connect(self.compare.on_result)
        self.worker.compare_done.connect(self.on_compare_done)
        self.worker.ab_token.connect(self.compare.on_ab_token)
        self.worker.ab_done.connect(self.on_ab_done)
        self.worker.ab_stopped.connect(self.on_ab_stopped)
        self.distill_job = DistillJob(self)
        self.qat_job = QatJob(self)
        self.jobs.start()
        self.compare.run_requested.connect(self.run_compare)
        self.compare.ab_requested.connect(self.run_ab)
        self.compare.cancel_requested.connect(self.stop)
        self.compare.error.connect(self.show_error)
        self.serve.error.connect(self.show_error)
        self.serve.status.connect(self.status_label.setText)

        self.controls.apply_requested.connect(self.apply_controls)
        self.controls.model.returnPressed.connect(self.apply_controls)  # Enter applies
        self.chat.send_requested.connect(self.send)
        self.chat.stop_requested.connect(self.stop)
        self.chat.new_chat_requested.connect(self.new_chat)
        self.chat.regenerate_requested.connect(self.jobs.drop_last_turn)
        self.chat.chat_picked.connect(self.open_chat)

        self.memory_timer = QTimer(self)
        self.memory_timer.timeout.connect(self._sample_memory)
        self.memory_timer.start(MEMORY_SAMPLE_MS)
        self.pending_chat: str | None = None  # a saved chat to open once a reply ends
        self.charted: set[str] = set()  # chats whose turns are on the charts
        self._restore(config)
        saved_theme = self.store.settings.value("theme", "system")
        self.theme = saved_theme if saved_theme in theme.THEMES else "system"
        theme.apply(self.theme, self)
        self.theme_actions[self.theme].setChecked(True)
        QGuiApplication.styleHints().colorSchemeChanged.connect(self._system_scheme_changed)

    # -- menus -------------------------------------------------------------------
    def _build_menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        file_menu.addAction("Models on this machine…", self.controls.pick_model).setShortcut("Ctrl+O")
        file_menu.addAction("Export charts as PNG…", self.export_charts_dialog)
        file_menu.addAction("Export session turns as CSV…", lambda: self.export_turns_dialog("csv"))
        file_menu.addAction("Export session turns as JSON…", lambda: self.export_turns_dialog("json"))
        file_menu.addSeparator()
        file_menu.addAction("Quit", self.close).setShortcut("Ctrl+Q")
        view = self.menuBar().addMenu("&View")
        view.addAction("History…", self.show_history)
        view.addAction("Saved chats…", self.show_saved_chats)
        themes = view.addMenu("Theme")
        group = QActionGroup(self)
        self.theme_actions = {}
        for name in theme.THEMES:
            action = themes.addAction(name.capitalize() + (" (follows the desktop)"
                                                           if name == "system" else ""))
            action.setCheckable(True)
            group.addAction(action)
            action.triggered.connect(lambda _=False, n=name: self.set_theme(n))
            self.theme_actions[name] = action
        markdown = view.addAction("Replies as Markdown")
        markdown.setCheckable(True)
        markdown.setChecked(self.chat.markdown)
        markdown.toggled.connect(self.chat.set_markdown)
        tools = self.menuBar().addMenu("&Tools")
        tools.addAction("Build distilled variant…", lambda: self.distill_job.dialog())
        tools.addAction("Quantization-aware training…", lambda: self.qat_job.dialog())
        tools.addAction("Stop current job", self.stop)
        help_menu = self.menuBar().addMenu("&Help")
        help_menu.addAction("Keyboard shortcuts", lambda: self._info_box(
            "Keyboard shortcuts", about.shortcuts_html()))
        help_menu.addAction("About Latency Playground", lambda: self._info_box(
            "About Latency Playground", about.about_html()))

    def _info_box(self, title: str, html: str) -> None:
        box = QMessageBox(QMessageBox.Icon.Information, title, html,
                          QMessageBox.StandardButton.Ok, self)
        box.open()  # not exec(): never block the event loop

    # -- settings ----------------------------------------------------------------
    def _restore(self, config: RunConfig | None) -> None:
        saved, self.notice = self.store.restore(self)
        self.controls.set_config(config or saved or RunConfig())
        if self.notice:
            self.status_label.setText(self.notice)

    def _save_settings(self) -> None:
        self.store.save(self, self.good_config)

    # -- actions -----------------------------------------------------------------
    def start(self) -> None:
        """Load the model of the controls in the background (the window is already shown),
        with the last chat back in the chat pane."""
        self._reopen_last_chat()
        self.apply_controls()

    def _reopen_last_chat(self) -> None:
        try:
            last = saved_chats.last_chat()
        except Exception as exc:  # an unreadable history costs the old chat, nothing else
            self.status_label.setText(f"the last chat could not be read back: {exc}")
            return
        if last is not None and not self.chat.turns:
            self.chat.restore(*last)
            self._replay(*last)
        self._refresh_chats()

    def _replay(self, session: str, turns) -> None:
        """A reopened chat's turns on the charts, from their records: once a window (the
        charts add turns up; a chat opened again, or one charted live, is on them)."""
        if session in self.charted:
            return
        self.charted.add(session)
        for turn in turns:
            try:
                label = chart_label(RunConfig.parse(turn.config))
            except ConfigError:  # a spec an older version wrote
                label = turn.config
            self.charts.replay_turn(label, turn.metrics or {})

    def _refresh_chats(self) -> None:
        """The chat pane's Chat list, from the history."""
        try:
            self.chat.set_chats(saved_chats.chat_list())
        except Exception as exc:  # an unreadable history costs the list, nothing else
            self.status_label.setText(f"the saved chats could not be read: {exc}")

    def set_theme(self, name: str) -> None:
        self.theme = name
        theme.apply(name, self)
        self.store.settings.setValue("theme", name)

    def _system_scheme_changed(self, *_args) -> None:
        if self.theme == "system":
            theme.apply("system", self)

    def show_saved_chats(self) -> None:
        dialog = saved_chats.SavedChats(self)
        dialog.chosen.connect(self.open_chat)
        dialog.deleted.connect(self._chat_deleted)
        dialog.error.connect(self.show_error)
        dialog.changed.connect(self._refresh_chats)
        dialog.open()
        self.saved_chats_dialog = dialog

    @Slot(str)
    def _chat_deleted(self, session: str) -> None:
        """The open chat deleted: the window starts a new one (later turns would bring the
        deleted chat back)."""
        if session == self.chat.chat_id and not self.chat.streaming:
            self.new_chat()

    @Slot(str)
    def open_chat(self, session: str) -> None:
        if self.chat.streaming:
            # the reply ends in its own chat first (its pieces are still on their way),
            # then the saved chat opens: see _open_pending_chat
            self.pending_chat = session
            self.stop()
            return
        if session == self.chat.chat_id:
            return
        turns = saved_chats.load_chat(session)
        self.chat.restore(session, turns)
        self._replay(session, turns)
        self._refresh_chats()
        self.jobs.new_chat()  # the engine's cached conversation is another one

    def _open_pending_chat(self) -> None:
        session, self.pending_chat = self.pending_chat, None
        if session is not None:
            self.open_chat(session)

    @Slot()
    def apply_controls(self) -> None:
        try:
            config = self.controls.config()
        except ConfigError as exc:
            self.show_error(str(exc))
            return
        job = self.jobs.job
        if self.busy and job is not None and job.kind == "load":
            # the button says "Stop loading" while a load runs; a second click while the
            # load winds down must not queue the same settings to load again after it
            self.stop()
            self.controls.apply.setText("Stopping…")  # at once, whatever the load is doing
            self.status_label.setText("Stopping the load after its current step…")
            return
        if self.busy:
            # Never race the worker: the change waits until the current job is done.
            self.pending_config = config
            self.status_label.setText("New settings queued until the current reply ends")
            return
        self._request_load(config)

    def _request_load(self, config: RunConfig) -> None:
        self.load_clicked = time.perf_counter()  # the wait a person sees: click to ready
        self._set_busy(f"loading {config.endpoint or config.model}")
        self.requested_config = config
        self.status_label.setText(f"Loading {config.format(only_changed=True) or 'defaults'}…")
        self.jobs.load(config)
        self.controls.offer_stop("loading")

    @Slot(str)
    def send(self, text: str) -> None:
        if self.loaded is None:
            self.chat.fail_reply("")
            self.show_error(self._why_no_model())
            return
        if self._refuse_if_busy():
            self.chat.fail_reply("")
            return
        try:
            controls = self.controls.config()
        except ConfigError:
            controls = None
        self._set_busy("a reply is streaming")
        self.chat.begin_reply()
        # sampling keys (max new tokens, temperature, top-p, seed) apply without a reload;
        # other changed controls stay marked as unapplied (see _mark_unapplied)
        self.jobs.generate(self.chat.messages(), controls, self.chat.chat_id)

    @Slot(object)
    def run_compare(self, configs: list[RunConfig]) -> None:
        from playground.core import bench

        if self._refuse_if_busy():
            return
        conversations = [bench.with_system(c, self.chat.system.text().strip() or None)
                         for c in bench.read_prompts(bench.default_prompts_path())]
        self._release_chat_model("a comparison is running")
        self.compare.set_running(True)
        self.jobs.compare(configs, conversations, self.compare.warmup.value(),
                          self.compare.repeats.value())

    @Slot(object, str)
    def run_ab(self, configs: list[RunConfig], prompt: str) -> None:
        if self._refuse_if_busy():
            return
        self._release_chat_model("an A/B chat is running")
        self.compare.set_running(True)
        system = self.chat.system.text().strip()
        messages = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": prompt}]
        self.jobs.ab_chat(configs, messages)

    def start_distill(self, **overrides) -> None:
        self.distill_job.start(**overrides)

    def _why_no_model(self) -> str:
        if self.side_job:
            return (f"No model to chat with while {self.busy or 'another job runs'}: wait for "
                    "it to finish or cancel it (Compare tab); the chat model comes back after.")
        if self.requested_config is not None:
            return "The model is still loading: wait for it (status bar)."
        if self.load_error:
            return (f"No model is loaded: the last load failed ({self.load_error}). Fix the "
                    "model or settings and press Load / apply.")
        return "No model is loaded: press Load / apply."

    def _release_chat_model(self, reason: str) -> None:
        # The worker drops the chat model while it runs other configs; it comes back after.
        self.loaded = None
        self.side_job = True
        self._set_busy(reason)

    def _after_side_job(self) -> None:
        self.side_job = False
        self.compare.set_running(False)
        self._set_busy(None)
        self.apply_controls()  # bring the chat model back

    @Slot(object)
    def on_compare_done(self, outcome) -> None:
        self.compare.on_done(outcome)
        self._after_side_job()
        self.compare_shown.emit()

    @Slot(int, object)
    def on_ab_done(self, side: int, done: TurnDone) -> None:
        label = done.config.format(only_changed=True) or "defaults"
        self.compare.on_ab_done(side, metrics_line(done.metrics, label))
        if side == 1 or done.finish_reason == "cancelled":
            self._after_side_job()
            self.ab_shown.emit()

    @Slot(int)
    def on_ab_stopped(self, side: int) -> None:
        self.compare.on_ab_done(side, "stopped before this side started")
        self._after_side_job()
        self.ab_shown.emit()

    @Slot()
    def stop(self) -> None:
        self.jobs.stop()

    @Slot()
    def new_chat(self) -> None:
        if self.chat.streaming:  # a reply: stop it; a comparison or a build runs on
            self.stop()
        self.chat.clear()
        self.jobs.new_chat()
        self._refresh_chats()

    # -- worker signals (run in the GUI thread: methods of a GUI-thread QObject) ----
    @Slot(str)
    def on_progress(self, message: str) -> None:
        self.status_label.setText(message)

    @Slot(object)
    def on_loaded(self, loaded: Loaded) -> None:
        self.loaded = loaded
        if self.requested_config is not None:
            self.good_config, self.requested_config = self.requested_config, None
        self.load_error = None
        info = loaded.info
        params = info.get("params") or 0
        notes = "; ".join(info.get("notes") or [])
        decode = str(info.get("decode_step") or "unknown")
        runs = {"onnxruntime": f"ONNX Runtime ({info.get('provider')})",
                "llamacpp": f"llama.cpp (llama-cpp-python {info.get('llama_cpp_version')})"
                }.get(info.get("backend"), "torch")
        if info.get("endpoint"):  # a remote server: nothing local to describe
            self.controls.model_info.setText(
                f"{info.get('model_name')} on {info['endpoint']} · remote endpoint: "
                "weights, memory and bandwidth are the server's, not measured here")
            self.controls.model_info.setToolTip(f"Decode path: {decode}")
            self.charts.set_reference(None, None)
            self.status_label.setText(f"Ready: {loaded.config.format(only_changed=True)}")
            self._set_busy(None)
            self.model_ready.emit()
            return
        self.controls.model_info.setText(
            f"{info.get('model_name')} ({info.get('architecture')}) · {runs}\n"
            + (f"{params / 1e6:.0f} M params · " if params else "")
            + f"weights {loaded.weights_mb:.0f} MB · "
            + (f"RSS {info['rss_mb']:.0f} MB, {info['load_peak_rss_mb']:.0f} while loading · "
               if info.get("rss_mb") else "")
            + f"ready in {self._click_to_ready(info):.1f} s · {info.get('device')} · "
            f"{info.get('threads')} thread{'' if info.get('threads') == 1 else 's'} · decode: "
            f"{decode.split(' (')[0]}"  # the path's name; the reason is in the tooltip
            + (f"\n{notes}" if notes else "")
        )
        self.controls.model_info.setToolTip(f"Decode path: {decode}")
        self.charts.set_reference(loaded.weights_mb, loaded.bandwidth_bound_tok_s)
        ready = f"Ready: {loaded.config.format(only_changed=True) or 'defaults'}"
        # what costs memory or speed unasked is said where it is seen, not in grey notes
        loud = [n for n in info.get("notes") or [] if n.startswith("WARNING")
                or "NOT native" in n]
        self.controls.model_info.setStyleSheet("color: #b00020;" if loud else "")
        self.status_label.setText(ready + (f" · {loud[0]}" if loud else ""))
        self._set_busy(None)
        self.model_ready.emit()

    def _click_to_ready(self, info: dict) -> float:
        """Seconds from the click (or the start) to this model being ready: the load, its
        optimizations, the kernels' first compile and any wait behind another job."""
        clicked = self.load_clicked
        return time.perf_counter() - clicked if clicked else float(info.get("load_s") or 0)

    @Slot(float)
    def on_started(self, t: float) -> None:
        self.charts.turn_started(t, chart_label(self.loaded.config) if self.loaded else "")

    @Slot(object)
    def on_token(self, event: TokenEvent) -> None:
        self.chat.append_piece(event.piece)
        self.charts.add_token(event.t)

    @Slot(object)
    def on_finished(self, done: TurnDone) -> None:
        label = done.config.format(only_changed=True) or "defaults"
        reused = done.prefix_reused if done.config.prefix_cache else None
        line = metrics_line(done.metrics, label, reused)
        if done.finish_reason == "cancelled":
            line += " (stopped)"
        self.chat.end_reply(done.reply, line, label, done.metrics.to_dict())
        self.charts.turn_finished(done.metrics.ttft_ms, done.metrics.bandwidth_bound_tok_s)
        self.charted.add(self.chat.chat_id)
        self._refresh_chats()
        self._set_busy(None)
        self._open_pending_chat()
        self.turn_shown.emit()

    @Slot(object, str)
    def on_cancelled(self, job: Job, message: str) -> None:
        """A load stopped part-way (the old model was already released)."""
        if job.kind == "load":
            self.requested_config = None
            self._no_model("loading was stopped")
        self._set_busy(None)
        self.status_label.setText(message)

    def _no_model(self, why: str) -> None:
        """The old model was released for the new one, which did not come: nothing of the
        old one stays on screen as if it were loaded."""
        self.loaded = None
        self.controls.model_info.setText(f"No model loaded: {why}.")
        self.controls.model_info.setToolTip("")
        self.charts.set_reference(None, None)

    @Slot(object, str)
    def on_failed(self, job: Job, message: str) -> None:
        if job.kind == "load":
            self.requested_config = None
            self.load_error = message
            if self.worker.engine is None:  # released before the failure: nothing to chat with
                self._no_model("the last load failed")
        if self.chat.streaming:
            self.chat.fail_reply(message)
        self._set_busy(None)
        self._open_pending_chat()
        if job.kind == "load":
            # the old model is kept; the field keeps what was typed, so a typo can be
            # fixed, and the button says that is not what runs
            self._mark_unapplied()
        self.show_error(message)
        if self.side_job:
            self._after_side_job()

    def show_error(self, message: str) -> None:
        self.errors.append(message)
        self.status_label.setText(f"Error: {message}")
        if self.show_dialogs:
            box = QMessageBox(QMessageBox.Icon.Warning, "Latency Playground", message,
                              QMessageBox.StandardButton.Ok, self)
            box.open()  # not exec(): never block the event loop
        self.error_shown.emit(message)

    def _refuse_if_busy(self) -> bool:
        """While a job runs, a new request is refused with a message (never queued)."""
        if self.busy:
            self.show_error(f"Busy ({self.busy}); try again when it is done.")
        return self.busy is not None

    def _set_busy(self, reason: str | None) -> None:
        self.busy = reason
        self.controls.set_busy(reason)
        # Send is off, saying why, while nothing could answer it (a reply streaming
        # disables it on its own)
        self.chat.hold(None if reason in (None, "a reply is streaming") else reason)
        self.progress.setVisible(reason is not None)
        if reason is None and self.pending_config is not None:
            config, self.pending_config = self.pending_config, None
            self._request_load(config)

    def _mark_unapplied(self) -> None:
        """Controls that differ from the loaded config in more than sampling keys are not
        in effect until Load / apply: say so on the button and in the status bar."""
        from playground.core.optimize.device import leave_a_core
        from playground.gui.worker import unapplied_keys

        if self.loaded is None or self.busy:
            return
        try:
            wanted = leave_a_core(self.controls.config())
        except ConfigError:
            return
        running = self.loaded.config
        pending = unapplied_keys(running, wanted)
        text = "Load / apply (unapplied changes)" if pending else "Load / apply"
        if self.controls.apply.text() != text:
            self.controls.apply.setText(text)
            self.controls.apply.setToolTip(
                f"not in effect until applied: {', '.join(pending)}" if pending else "")
            if pending:
                self.status_label.setText(
                    f"Unapplied changes ({', '.join(pending)}): press Load / apply; replies "
                    f"still use {running.format(only_changed=True) or 'defaults'}")

    def _sample_memory(self) -> None:
        rss = psutil.Process().memory_info().rss / 1e6
        cuda = None
        if self.loaded and str(self.loaded.info.get("device", "cpu")).startswith("cuda"):
            import torch

            cuda = torch.cuda.memory_allocated() / 1e6
        self.charts.add_memory(time.perf_counter(), rss, cuda)
        self._mark_unapplied()

    # -- export and history --------------------------------------------------------
    def export_charts(self, path: str) -> None:
        exports.export_charts(self.charts, path)

    def export_turns(self, path: str) -> None:
        exports.export_turns(self.chat.session(), path)

    def export_charts_dialog(self) -> None:
        path = file_dialogs.save_file(self, "Export charts", "charts.png", "PNG (*.png)")
        if path:
            self._guarded(self.export_charts, path)

    def export_turns_dialog(self, kind: str) -> None:
        path = file_dialogs.save_file(self, "Export turns", f"turns.{kind}",
                                      f"{kind.upper()} (*.{kind})")
        if path:
            self._guarded(self.export_turns, path)

    def _guarded(self, func, *args) -> None:
        try:
            func(*args)
            self.status_label.setText(f"Wrote {args[0]}")
        except OSError as exc:
            self.show_error(str(exc))

    def show_history(self) -> None:
        HistoryDialog(self).open()

    # -- shutdown ------------------------------------------------------------------
    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._balance_panels()

    def showEvent(self, event) -> None:
        super().showEvent(event)
        QTimer.singleShot(0, self._balance_panels)  # once the splitter has its sizes

    def _balance_panels(self) -> None:
        # The panels' minimum widths could leave the charts a sliver on a small screen:
        # when the charts have less than half of what the controls leave, split that
        # 40/60 between chat and charts (the chat never under its minimum).
        sizes = self.splitter.sizes()
        rest = sum(sizes) - sizes[0]
        if rest > 0 and sizes[2] < rest / 2:
            chat = max(self.chat.minimumSizeHint().width(), int(rest * 0.4))
            self.splitter.setSizes([sizes[0], chat, rest - chat])

    def closeEvent(self, event) -> None:
        self._save_settings()
        self.memory_timer.stop()
        self.charts.timer.stop()
        self.serve.timer.stop()
        self.serve.shutdown()
        # The job stops at its next token, batch or stage; one step that still runs long
        # (a conversion, one big matrix) gets a bounded wait, then the app leaves without
        # it (settings are saved and every history turn is already committed).
        if not self.jobs.close(CLOSE_WAIT_MS):
            print(f"the worker did not stop within {CLOSE_WAIT_MS / 1000:.0f} s; "
                  "leaving without it", file=sys.stderr, flush=True)
            exit_now(0)
        notice = self.jobs.close_history()  # the worker has stopped: safe from here
        if notice:
            print(notice, file=sys.stderr, flush=True)
        super().closeEvent(event)

