"""Tools → Quantization-aware training: a background job with its own worker slots.

``QatRunner`` lives in the model-worker thread (it shares the worker's stop event and
drops the chat model, which the training needs the memory of); ``QatJob`` lives in
the GUI thread, asks what to train, and shows progress and the before/after figures.
"""

from __future__ import annotations

import weakref
from typing import Any

from PySide6.QtCore import QObject, Signal, Slot
from PySide6.QtWidgets import QInputDialog, QMessageBox

from playground.core.config import QAT_QUANTS, ConfigError


def show_training_progress(window: Any, what: str, event: dict) -> None:
    """A training job's progress event (distill, qat) on the window's bar and status."""
    if event.get("stage") == "train":
        window.progress.setRange(0, event["total"])
        window.progress.setValue(event["step"])
        window.status_label.setText(
            f"{what}: step {event['step']}/{event['total']}, loss {event['loss']:.4f}, "
            f"about {event['eta_s'] / 60:.1f} min left")
    elif event.get("stage") == "corpus" and event.get("total"):
        window.progress.setRange(0, event["total"])
        window.progress.setValue(event["done"])
        window.status_label.setText(f"{what}: teacher replies {event['done']}/{event['total']}")
    elif "message" in event:
        window.status_label.setText(f"{what}: {event['message']}")


class QatRunner(QObject):
    progress = Signal(object)  # dict event from playground.core.qat
    done = Signal(object)  # QatReport
    failed = Signal(str)

    def __init__(self, worker: Any) -> None:
        super().__init__()
        self.worker = worker  # the model worker, in this same thread

    @Slot(object)
    def run(self, settings: Any) -> None:
        from playground.core.qat import qat

        self.worker.engine = None  # the float model and its trainee need the memory
        try:
            report = qat(settings, progress=self.progress.emit,
                         should_stop=self.worker.stop_event.is_set)
        except Exception as exc:
            self.failed.emit(str(exc).strip().splitlines()[0] if str(exc).strip()
                             else type(exc).__name__)
            return
        self.done.emit(report)


class QatJob(QObject):
    request = Signal(object)  # QatSettings
    shown = Signal()  # after the result is on screen (tests wait on it)

    def __init__(self, window: Any) -> None:
        super().__init__(window)
        # A weak reference: a strong one would make a window <-> job cycle that the
        # garbage collector may then break from the worker thread, where deleting Qt
        # widgets deadlocks (seen in the GUI tests).
        self.window = weakref.proxy(window)
        self.last_report = None
        self.runner = QatRunner(window.worker)  # the worker: no GUI objects
        self.runner.moveToThread(window.thread)
        window.thread.finished.connect(self.runner.deleteLater)
        self.request.connect(self.runner.run)
        self.runner.progress.connect(self.on_progress)
        self.runner.done.connect(self.on_done)
        self.runner.failed.connect(self.on_failed)

    def dialog(self) -> None:
        from playground.core.qat import QatSettings

        title = "Quantization-aware training"
        quant, ok = QInputDialog.getItem(
            self.window, title, "Train the model's weights for this quantization:",
            list(QAT_QUANTS), 0, False)
        if not ok:
            return
        minutes, ok = QInputDialog.getDouble(
            self.window, title, "Training minutes (more minutes, closer to the float model):",
            QatSettings.minutes, 1.0, 240.0, 1)
        if ok:
            self.start(quant=quant, minutes=minutes)

    def start(self, quant: str, **overrides: Any) -> None:
        from playground.core.qat import QatSettings

        window = self.window
        if window._refuse_if_busy():
            return
        try:
            cfg = window.controls.config().replace(quant=quant, qat=False, variant="base",
                                                   draft="none", prune=0.0)
        except ConfigError as exc:
            window.show_error(str(exc))
            return
        window._release_chat_model(f"quantization-aware training for {quant} is running "
                                   "(Tools → Stop current job to cancel)")
        window.progress.setRange(0, 0)
        window.begin_job()
        self.request.emit(QatSettings(config=cfg.format(only_changed=True), **overrides))

    @Slot(object)
    def on_progress(self, event: dict) -> None:
        show_training_progress(self.window, "QAT", event)

    @Slot(object)
    def on_done(self, report: Any) -> None:
        window = self.window
        self.last_report = report
        window.progress.setRange(0, 0)
        window.controls.refresh_qat()
        if report.cancelled:
            summary = f"QAT stopped after {report.steps} steps; nothing saved"
        else:
            b, a = report.before, report.after
            summary = (f"QAT weights for {report.quant} saved: KL to the float model "
                       f"{b['kl_mean']:.3f} → {a['kl_mean']:.3f} nats, top-1 "
                       f"{b['top1_agreement']:.0%} → {a['top1_agreement']:.0%} after "
                       f"{report.steps} steps. Tick 'QAT weights' to use them.")
        window.status_label.setText(summary)
        if window.show_dialogs and not report.cancelled:
            QMessageBox(QMessageBox.Icon.Information, "QAT weights ready", summary,
                        QMessageBox.StandardButton.Ok, window).open()
        window._after_side_job()
        self.shown.emit()

    @Slot(str)
    def on_failed(self, message: str) -> None:
        self.window.progress.setRange(0, 0)
        self.window.show_error(f"qat: {message}")
        self.window._after_side_job()
        self.shown.emit()
