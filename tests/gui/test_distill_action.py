"""Tools → Build distilled variant: runs in the worker, then the student toggles work."""

from __future__ import annotations

import pytest

from playground.core.config import RunConfig

WAIT_MS = 180_000


@pytest.fixture
def window(open_window, tiny4_dir):
    return open_window(RunConfig(model=str(tiny4_dir), max_new_tokens=4))


def small(tmp_path, **extra):
    prompts = tmp_path / "p.txt"
    prompts.write_text("Hello there.\nWhat is the capital of France?\nNumbers: 1 2 3\n")
    return dict(layers=2, seq_len=32, batch=2, reply_tokens=24, gen_batch=3,
                prompts=str(prompts), openings="", out=str(tmp_path / "student"), **extra)


def test_build_then_use_the_distilled_variant(qtbot, window, tmp_path):
    assert not window.controls.distilled.isEnabled()  # no student yet, tooltip says why
    assert "playground distill" in window.controls.distilled.toolTip()
    with qtbot.waitSignal(window.distill_job.shown, timeout=WAIT_MS):
        window.start_distill(**small(tmp_path, steps=3))
    assert not window.distill_job.last_report.cancelled
    qtbot.waitUntil(lambda: window.loaded is not None, timeout=WAIT_MS)
    assert window.controls.distilled.isEnabled() and window.controls.speculative.isEnabled()
    window.controls.distilled.setChecked(True)
    assert not window.controls.speculative.isEnabled()  # one or the other
    with qtbot.waitSignal(window.model_ready, timeout=WAIT_MS):
        window.apply_controls()
    assert window.loaded.config.variant == "distilled"
    assert len(window.worker.engine.model.model.layers) == 2


def test_distillation_can_be_cancelled(qtbot, window, tmp_path):
    def stop_on_training(event):
        if event.get("stage") == "train":
            window.stop()

    window.distill_job.runner.progress.connect(stop_on_training)
    with qtbot.waitSignal(window.distill_job.shown, timeout=WAIT_MS):
        window.start_distill(**small(tmp_path, steps=10_000))
    assert window.distill_job.last_report.cancelled and window.distill_job.last_report.steps < 10_000
    assert "stopped" in window.status_label.text()


def test_the_tools_menu_opens_its_dialogs(qtbot, window):
    """Both Tools entries open their first question as a dialog of the window, triggered
    as a click on the menu would (a weakref.proxy parent made PySide6 refuse the dialog:
    the entries did nothing)."""
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    seen = []

    def answer() -> None:  # runs inside the dialog's own event loop
        dialog = QApplication.activeModalWidget()
        seen.append((type(dialog).__name__, dialog.windowTitle(), dialog.parent() is window))
        dialog.reject()

    tools = next(a.menu() for a in window.menuBar().actions() if a.text().strip("&") == "Tools")
    for text in ("Build distilled variant…", "Quantization-aware training…"):
        QTimer.singleShot(0, answer)
        next(a for a in tools.actions() if a.text() == text).trigger()
    assert [s[0] for s in seen] == ["QInputDialog", "QInputDialog"]
    assert seen[0][1] == "Build distilled variant" and all(s[2] for s in seen)
