"""Tools → Quantization-aware training: runs in the worker, then 'QAT weights' works."""

from __future__ import annotations

import pytest

from playground.core.config import RunConfig

WAIT_MS = 180_000


@pytest.fixture
def window(open_window, tiny_dir):
    return open_window(RunConfig(model=str(tiny_dir), max_new_tokens=4, quant="int8-dynamic"))


def small(tmp_path, **extra):
    prompts = tmp_path / "p.txt"
    prompts.write_text("Hello there.\nWhat is the capital of France?\nNumbers: 1 2 3\n")
    return dict(seq_len=32, batch=2, reply_tokens=24, prompts=str(prompts), openings="",
                out=str(tmp_path / "qat"), **extra)


def test_train_then_use_the_qat_weights(qtbot, window, tmp_path):
    controls = window.controls
    assert not controls.qat.isEnabled()  # none trained yet: the tooltip names the command
    assert "playground qat --config" in controls.qat.toolTip()
    with qtbot.waitSignal(window.qat_job.shown, timeout=WAIT_MS):
        window.qat_job.start("int8-dynamic", **small(tmp_path, steps=3))
    report = window.qat_job.last_report
    assert not report.cancelled and report.steps == 3
    assert "QAT weights for int8-dynamic saved" in window.status_label.text()
    qtbot.waitUntil(lambda: window.loaded is not None, timeout=WAIT_MS)
    assert controls.qat.isEnabled()
    controls.quant.setCurrentText("int4-weight")
    assert not controls.qat.isEnabled()  # trained for int8-dynamic only
    controls.quant.setCurrentText("int8-dynamic")
    controls.qat.setChecked(True)
    with qtbot.waitSignal(window.model_ready, timeout=WAIT_MS):
        window.apply_controls()
    assert window.loaded.config.qat
    assert any("quantization-aware" in note for note in window.worker.engine.info["notes"])


def test_qat_can_be_cancelled(qtbot, window, tmp_path):
    def stop_on_training(event):
        if event.get("stage") == "train":
            window.stop()

    window.qat_job.runner.progress.connect(stop_on_training)
    with qtbot.waitSignal(window.qat_job.shown, timeout=WAIT_MS):
        window.qat_job.start("int8-dynamic", **small(tmp_path, steps=10_000))
    assert window.qat_job.last_report.cancelled
    assert "stopped" in window.status_label.text()
