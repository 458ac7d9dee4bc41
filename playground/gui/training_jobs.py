"""Tools → Build distilled variant and Quantization-aware training: background jobs
with their own worker slots.

Each is a pair: a runner that lives in the model-worker thread (it drops the chat
model, whose memory the training needs, and runs the core function with the job's
cancel token) and a GUI-side object that asks what to build and shows progress and
the before/after figures. Stopped while the teacher writes its corpus or while
layers are measured, a job ends at the next batch with nothing saved; stopped while
training, it ends at the next step and says how far it got.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Signal, Slot
from PySide6.QtWidgets import QInputDialog, QMessageBox

from playground.core import quality
from playground.core.config import QAT_QUANTS, ConfigError
from playground.core.jobs import Cancelled, Job


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


class TrainingRunner(QObject):
    """In the worker thread: runs ``work(settings, progress=, should_stop=)``."""

    progress = Signal(object)  # dict event from the core function
    done = Signal(object)  # its report
    failed = Signal(str)
    cancelled = Signal(str)

    def __init__(self, worker: Any, work: Callable[..., Any]) -> None:
        super().__init__()
        self.worker = worker  # the model worker, in this same thread
        self.work = work

    @Slot(object, object)
    def run(self, job: Job, settings: Any) -> None:
        self.worker.engine = None  # the teacher and its trainee need the memory
        try:
            report = self.work(settings, progress=self.progress.emit, should_stop=job.token)
        except Cancelled as exc:
            self.cancelled.emit(str(exc))
            return
        except Exception as exc:
            self.failed.emit(str(exc).strip().splitlines()[0] if str(exc).strip()
                             else type(exc).__name__)
            return
        self.done.emit(report)


class TrainingJob(QObject):
    """In the GUI thread: start, progress, the result. Subclasses say what to ask and show."""

    request = Signal(object, object)  # Job, settings
    shown = Signal()  # after the result is on screen (tests wait on it)
    what = "Training"
    kind = "training"  # the Job's kind

    def __init__(self, window: Any) -> None:
        super().__init__(window)
        self.last_report = None
        self.runner = TrainingRunner(window.worker, self.work)  # no GUI objects
        self.runner.moveToThread(window.thread)
        window.thread.finished.connect(self.runner.deleteLater)
        self.request.connect(self.runner.run)
        self.runner.progress.connect(self.on_progress)
        self.runner.done.connect(self.on_done)
        self.runner.failed.connect(self.on_failed)
        self.runner.cancelled.connect(self.on_cancelled)

    @property
    def window(self) -> Any:
        # The window is this job's Qt parent; no Python reference of our own: a strong one
        # would make a window <-> job cycle that the garbage collector may then break
        # from the worker thread, where deleting Qt widgets deadlocks (seen in the GUI
        # tests), and a weakref.proxy is refused as a dialog's parent by PySide6
        # (Tools → Build distilled variant… did nothing: TypeError, ProxyType).
        return self.parent()

    def launch(self, settings: Any, busy: str) -> None:
        window = self.window
        window._release_chat_model(f"{busy} (Tools → Stop current job to cancel)")
        window.progress.setRange(0, 0)
        self.request.emit(window.jobs.begin(self.kind), settings)

    @staticmethod
    def work(settings: Any, progress: Any, should_stop: Any) -> Any:
        """The core function (imported when it runs: it brings torch)."""
        raise NotImplementedError

    def summary(self, report: Any) -> tuple[str, str | None]:
        """The status line and, when a dialog should say it, the dialog's title."""
        raise NotImplementedError

    def refresh(self) -> None:
        """Let the controls offer what was built."""

    @Slot(object)
    def on_progress(self, event: dict) -> None:
        show_training_progress(self.window, self.what, event)

    @Slot(object)
    def on_done(self, report: Any) -> None:
        window = self.window
        self.last_report = report
        self.refresh()
        text, title = self.summary(report)
        if window.show_dialogs and title:
            QMessageBox(QMessageBox.Icon.Information, title, text,
                        QMessageBox.StandardButton.Ok, window).open()
        self._end(text)

    @Slot(str)
    def on_cancelled(self, message: str) -> None:
        self.last_report = None
        self._end(f"{self.what}: {message}; nothing was saved")

    @Slot(str)
    def on_failed(self, message: str) -> None:
        self.window.show_error(f"{self.what.lower()}: {message}")
        self._end(None)

    def _end(self, status: str | None) -> None:
        window = self.window
        window.progress.setRange(0, 0)
        window._after_side_job()
        if status:  # after: the chat model's reload writes its own status
            window.status_label.setText(status)
        self.shown.emit()


class DistillJob(TrainingJob):
    what = "Distilling"
    kind = "distill"

    @staticmethod
    def work(settings: Any, progress: Any, should_stop: Any) -> Any:
        from playground.core.distill import distill

        return distill(settings, progress=progress, should_stop=should_stop)

    def dialog(self) -> None:
        from playground.core.distill import preset_layers
        from playground.core.models import ModelError

        window = self.window
        sizes = ["Speed: a third of the layers", "Balanced: half of the layers",
                 "Quality: two thirds of the layers"]
        size, ok = QInputDialog.getItem(
            window, "Build distilled variant",
            "Student size (smaller is faster and answers worse):", sizes, 1, False)
        if not ok:
            return
        minutes, ok = QInputDialog.getDouble(
            window, "Build distilled variant",
            "Training minutes (more minutes, better quality):", 14.0, 1.0, 240.0, 1)
        if not ok:
            return
        layers = None
        try:
            if not size.startswith("Balanced"):
                teacher = window.controls.config().model
                layers = preset_layers(teacher, "speed" if size.startswith("Speed") else "quality")
        except (ConfigError, ModelError, OSError, ValueError) as exc:
            window.show_error(str(exc))
            return
        self.start(minutes=minutes, layers=layers)

    def start(self, **overrides: Any) -> None:
        from playground.core.distill import DistillSettings

        window = self.window
        if window._refuse_if_busy():
            return
        try:
            teacher = window.controls.config().model
        except ConfigError as exc:
            window.show_error(str(exc))
            return
        self.launch(DistillSettings(teacher=teacher, **overrides),
                    "a distilled variant is being built")

    def refresh(self) -> None:
        self.window.controls.refresh_student()

    def summary(self, report: Any) -> tuple[str, str | None]:
        if report.cancelled:
            return (f"Distillation stopped after {report.steps} steps; checkpoint kept in "
                    f"{report.out}", None)
        return (
            f"Student saved to {report.out}: {len(report.kept_layers)} of "
            f"{len(report.layer_kl)} layers, {report.params / 1e6:.0f} M params "
            f"({report.weights_mb:.0f} MB). KL to teacher {report.kl_before:.2f} → "
            f"{report.kl_after:.2f} nats, top-1 agreement {report.top1_after:.0%} after "
            f"{report.steps} steps: {quality.disagreement(report.kl_after, report.top1_after)}."
            " Compare before relying on it.", "Distilled variant ready")


class QatJob(TrainingJob):
    what = "QAT"
    kind = "qat"

    @staticmethod
    def work(settings: Any, progress: Any, should_stop: Any) -> Any:
        from playground.core.quant.qat import qat

        return qat(settings, progress=progress, should_stop=should_stop)

    def dialog(self) -> None:
        from playground.core.quant.qat import QatSettings

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
        from playground.core.quant.qat import QatSettings

        window = self.window
        if window._refuse_if_busy():
            return
        try:
            cfg = window.controls.config().replace(quant=quant, qat=False, variant="base",
                                                   draft="none", prune=0.0)
        except ConfigError as exc:
            window.show_error(str(exc))
            return
        self.launch(QatSettings(config=cfg.format(only_changed=True), **overrides),
                    f"quantization-aware training for {quant} is running")

    def refresh(self) -> None:
        self.window.controls.refresh_qat()

    def summary(self, report: Any) -> tuple[str, str | None]:
        if report.cancelled:
            return f"QAT stopped after {report.steps} steps; nothing saved", None
        b, a = report.before, report.after
        return (f"QAT weights for {report.quant} saved: KL to the float model "
                f"{b['kl_mean']:.3f} → {a['kl_mean']:.3f} nats, top-1 "
                f"{b['top1_agreement']:.0%} → {a['top1_agreement']:.0%} after "
                f"{report.steps} steps. Tick 'QAT weights' to use them.", "QAT weights ready")
