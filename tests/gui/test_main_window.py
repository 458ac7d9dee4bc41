"""The desktop app, offscreen, on a tiny random model: real window, controls, worker."""

from __future__ import annotations

import json

import pytest

from playground.core.config import RunConfig
from playground.gui.main_window import MainWindow, settings_path

WAIT_MS = 60_000


@pytest.fixture
def make_window(open_window, tiny_dir):
    def make(spec: str = "max_new_tokens=12", no_eos: bool = True) -> MainWindow:
        window = open_window(RunConfig.parse(spec, base=RunConfig(model=str(tiny_dir))))
        if no_eos:
            window.worker.engine.eos_ids = set()  # random weights: run to max_new_tokens
        return window

    return make


def send(qtbot, window, text="Hello there!", wait=True):
    window.chat.input.setPlainText(text)
    if not wait:
        window.chat.send.click()
        return
    with qtbot.waitSignal(window.turn_shown, timeout=WAIT_MS):
        window.chat.send.click()


def test_controls_produce_the_right_config(qtbot):
    from playground.gui.controls import ControlsPanel

    panel = ControlsPanel(["cpu"])
    qtbot.addWidget(panel)
    panel.quant.setCurrentText("int8-dynamic")
    panel.prune.setValue(30)
    panel.prune_method.setCurrentText("structured")
    panel.threads.setValue(2)
    panel.prefix_cache.setChecked(True)
    panel.response_cache.setChecked(True)
    panel.max_new_tokens.setValue(64)
    panel.temperature.setValue(0.7)
    panel.seed.setValue(5)
    expected = RunConfig.parse("quant=int8-dynamic,prune=0.3,prune_method=structured,threads=2,"
                               "prefix_cache=on,response_cache=on,max_new_tokens=64,"
                               "temperature=0.7,seed=5")
    assert panel.config() == expected
    other = RunConfig.parse("quant=bnb-4bit-nf4,kv_cache=off,compile=on,top_p=0.9")
    panel.set_config(other)
    assert panel.config() == other
    assert not panel.prefix_cache.isEnabled()  # needs the KV cache
    cuda = panel.device.model().item(panel.device.findText("cuda"))
    assert not cuda.isEnabled() and "not present" in cuda.toolTip()


def test_backend_control_offers_only_what_onnx_runtime_runs(qtbot):
    from playground.gui.controls import ControlsPanel

    panel = ControlsPanel(["cpu"])
    qtbot.addWidget(panel)
    panel.set_config(RunConfig.parse("quant=int8-dynamic,prune=0.3,compile=on,kv_cache=off"))
    panel.backend.setCurrentText("onnxruntime")
    # what it cannot run is switched off where it is offered, and says why
    assert panel.config() == RunConfig.parse("backend=onnxruntime")
    dynamic = panel.quant.model().item(panel.quant.findText("int8-dynamic"))
    assert not dynamic.isEnabled() and "torch only" in dynamic.toolTip()
    assert not panel.prune.isEnabled() and not panel.compile.isEnabled()
    panel.quant.setCurrentText("int8-weight")
    assert panel.quant_group.isEnabled()  # ONNX Runtime's int8 is block-wise
    spec = "backend=onnxruntime,quant=int4-weight,quant_group=64,prefix_cache=on"
    panel.set_config(RunConfig.parse(spec))
    assert panel.config() == RunConfig.parse(spec)
    panel.backend.setCurrentText("torch")
    assert panel.prune.isEnabled() and dynamic.isEnabled()


def test_an_onnx_runtime_model_answers_in_the_window(qtbot, make_window, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime_genai")
    monkeypatch.setenv("PLAYGROUND_CACHE", str(tmp_path / "cache"))
    window = make_window("max_new_tokens=6,backend=onnxruntime")
    assert "ONNX Runtime (CPUExecutionProvider)" in window.controls.model_info.text()
    send(qtbot, window)
    assert window.worker.engine.info["backend"] == "onnxruntime"
    from playground.core.history import History

    history = History()
    assert "backend=onnxruntime" in history.recent(1)[0].config
    history.close()


def test_chatting_with_a_remote_endpoint_fills_the_same_charts(qtbot, make_window, server):
    pytest.importorskip("fastapi")
    url, _engine = server(batching=False)
    window = make_window()
    controls = window.controls
    controls.endpoint.setText(url + "/v1")
    assert not controls.opt_box.isEnabled() and not controls.model.isEnabled()
    assert "endpoint runs its own model" in controls.model.toolTip()
    config = controls.config()
    assert config.endpoint == url + "/v1" and config.quant == "none"
    with qtbot.waitSignal(window.model_ready, timeout=WAIT_MS):
        controls.apply.click()
    assert f"tiny on {url}/v1" in controls.model_info.text()
    send(qtbot, window)
    turn = window.chat.turns[-1]
    assert turn.reply and "TTFT" in turn.metrics_line
    qtbot.waitUntil(lambda: window.charts.point_counts()["speed"] > 0, timeout=5000)
    assert window.charts.point_counts()["ttft"] == 1
    controls.endpoint.setText("")
    assert controls.opt_box.isEnabled() and "a local folder" in controls.model.toolTip()


def test_a_turn_streams_into_the_chat_and_every_chart(qtbot, make_window):
    window = make_window()
    assert "decode: lean decode step" in window.controls.model_info.text()  # tiny Llama
    window.chat.set_markdown(False)  # random tokens: Markdown would fold their whitespace
    send(qtbot, window)
    turn = window.chat.turns[-1]
    assert turn.reply and turn.reply in window.chat.transcript.toPlainText()
    assert "TTFT" in turn.metrics_line and "tok/s" in turn.metrics_line
    assert turn.metrics_line in window.chat.transcript.toPlainText()
    qtbot.waitUntil(lambda: all(v > 0 for v in window.charts.point_counts().values()),
                    timeout=5000)
    counts = window.charts.point_counts()
    assert counts["itl"] == 11 and counts["ttft"] == 1 and counts["speed"] == 11
    send(qtbot, window, "And again?")
    assert window.charts.point_counts()["ttft"] == 2
    assert len(window.chat.messages()) == 4  # multi-turn context is kept


def test_controls_are_locked_while_a_reply_streams(qtbot, make_window):
    window = make_window("max_new_tokens=400")
    send(qtbot, window, wait=False)
    qtbot.waitUntil(lambda: bool(window.chat.turns[-1].reply), timeout=WAIT_MS)
    assert not window.controls.apply.isEnabled()
    assert "streaming" in window.controls.busy_reason.text()
    window.controls.quant.setCurrentText("bf16")
    window.apply_controls()  # queued, not racing the worker
    assert window.pending_config is not None
    with qtbot.waitSignal(window.model_ready, timeout=WAIT_MS):
        window.chat.stop.click()
    assert window.loaded.config.quant == "bf16"


def test_stop_cancels_mid_reply(qtbot, make_window):
    window = make_window("max_new_tokens=900")  # the tiny model: 1024 tokens of context
    send(qtbot, window, wait=False)
    qtbot.waitUntil(lambda: len(window.chat.turns[-1].reply) > 0, timeout=WAIT_MS)
    with qtbot.waitSignal(window.turn_shown, timeout=WAIT_MS):
        window.chat.stop.click()
    turn = window.chat.turns[-1]
    assert "(stopped)" in turn.metrics_line
    assert turn.metrics["new_tokens"] < 900
    assert window.chat.send.isEnabled()


def test_worker_errors_show_a_message_and_the_window_stays_usable(qtbot, make_window):
    window = make_window()
    send(qtbot, window)
    window.controls.model.setText("/no/such/model")
    with qtbot.waitSignal(window.error_shown, timeout=WAIT_MS) as error:
        window.apply_controls()
    assert "does not exist" in error.args[0]
    assert "does not exist" in window.status_label.text()
    assert window.controls.model.text() == "/no/such/model"  # kept, to fix the typo
    assert "unapplied" in window.controls.apply.text()
    send(qtbot, window, "Still there?")  # the previous model is kept
    assert len(window.chat.turns) == 2

    def boom(*args, **kwargs):
        raise RuntimeError("simulated failure in generation")

    window.worker.engine.chat = boom
    with qtbot.waitSignal(window.error_shown, timeout=WAIT_MS) as error:
        send(qtbot, window, "This one fails", wait=False)
    assert "simulated failure" in error.args[0]
    assert len(window.chat.turns) == 2  # history kept, failed turn not added
    assert window.chat.input.toPlainText() == "This one fails"  # the text is not lost
    assert window.chat.send.isEnabled() and window.controls.apply.isEnabled()


def test_sampling_changes_apply_at_once_and_others_are_marked_unapplied(qtbot, make_window):
    window = make_window("max_new_tokens=12")
    window.controls.max_new_tokens.setValue(5)  # no Load / apply
    send(qtbot, window)
    assert window.chat.turns[-1].metrics["new_tokens"] == 5
    assert "max_new_tokens=5" in window.chat.turns[-1].config
    window.controls.quant.setCurrentText("bf16")
    qtbot.waitUntil(lambda: "unapplied" in window.controls.apply.text(), timeout=5000)
    assert "quant" in window.controls.apply.toolTip()
    assert "Unapplied changes (quant)" in window.status_label.text()
    send(qtbot, window, "Again?")
    assert "bf16" not in window.chat.turns[-1].config  # not silently half-applied
    with qtbot.waitSignal(window.model_ready, timeout=WAIT_MS):
        window.controls.apply.click()
    qtbot.waitUntil(lambda: window.controls.apply.text() == "Load / apply", timeout=5000)


def test_a_failed_load_is_not_saved_and_send_says_why(qtbot, make_window, monkeypatch):
    window = make_window("max_new_tokens=9")
    window.persist = True
    from playground.core import pipeline

    def broken(*args, **kwargs):  # fails after the old model was released
        raise RuntimeError("weights are corrupt")

    monkeypatch.setattr(pipeline, "build_engine", broken)
    window.controls.max_new_tokens.setValue(10)
    window.controls.quant.setCurrentText("bf16")
    with qtbot.waitSignal(window.error_shown, timeout=WAIT_MS):
        window.apply_controls()
    assert window.loaded is None
    with qtbot.waitSignal(window.error_shown, timeout=WAIT_MS) as error:
        send(qtbot, window, "Anyone?", wait=False)
    assert "the last load failed (weights are corrupt)" in error.args[0]
    assert "still loading" not in error.args[0]
    window._save_settings()
    saved = window.store.settings.value("config")
    assert "max_new_tokens=9" in saved and "bf16" not in saved  # what last loaded


def test_closing_during_a_reply_shuts_down_cleanly(qtbot, tiny_dir):
    window = MainWindow(RunConfig(model=str(tiny_dir), max_new_tokens=900), show_dialogs=False)
    window.show()
    with qtbot.waitSignal(window.model_ready, timeout=WAIT_MS):
        window.start()
    window.worker.engine.eos_ids = set()
    send(qtbot, window, wait=False)
    qtbot.waitUntil(lambda: len(window.chat.turns[-1].reply) > 0, timeout=WAIT_MS)
    window.close()
    qtbot.waitUntil(window.thread.isFinished, timeout=WAIT_MS)


def test_settings_persist_and_corrupt_settings_fall_back(qtbot, tiny_dir, make_window):
    window = make_window("max_new_tokens=7,quant=bf16")
    window.close()
    qtbot.waitUntil(window.thread.isFinished, timeout=WAIT_MS)
    restored = MainWindow(show_dialogs=False)
    qtbot.addWidget(restored)
    assert restored.controls.config().quant == "bf16"
    assert restored.controls.config().max_new_tokens == 7
    restored.close()
    qtbot.waitUntil(restored.thread.isFinished, timeout=WAIT_MS)
    settings_path().write_text("[General]\nconfig=quant=int99\ngeometry=@Invalid()\n")
    broken = MainWindow(show_dialogs=False)
    qtbot.addWidget(broken)
    assert broken.notice and "default" in broken.notice
    assert broken.controls.config() == RunConfig()
    broken.close()
    qtbot.waitUntil(broken.thread.isFinished, timeout=WAIT_MS)


def test_the_compare_and_serve_tabs_come_back_after_a_restart(qtbot, tiny_dir, make_window):
    """The Compare tab's configs (their whole specs and what came from the controls),
    warmup and rounds, and the Serve tab's server and sweep settings survive a restart;
    a saved config that no longer parses is left out alone, named in a notice, and the
    loaded config stays."""
    window = make_window("max_new_tokens=5")
    window.compare.add_config(RunConfig.parse("quant=bf16", base=window.controls.config()),
                              own={"quant"})
    window.compare.add_config(RunConfig.parse("quant=int8-dynamic"))
    window.compare.warmup.setValue(2)
    window.compare.repeats.setValue(5)
    window.serve.spec.setText("quant=bf16")
    window.serve.batching.setChecked(False)
    window.serve.port.setValue(8123)
    window.serve.endpoint.setText("http://127.0.0.1:9000/v1")
    window.serve.concurrency.setText("1,4")
    window.serve.requests.setValue(7)
    window.serve.max_tokens.setValue(33)
    serve = window.serve.state()
    shown = [window.compare.configs.item(i).text() for i in range(2)]
    specs = [c.format() for c in window.compare.specs()]
    window.close()
    qtbot.waitUntil(window.thread.isFinished, timeout=WAIT_MS)
    again = MainWindow(show_dialogs=False)
    qtbot.addWidget(again)
    assert [c.format() for c in again.compare.specs()] == specs
    assert [again.compare.configs.item(i).text() for i in range(2)] == shown
    assert "from the controls" in shown[0]
    assert (again.compare.warmup.value(), again.compare.repeats.value()) == (2, 5)
    assert again.compare.ab_a.count() == 2
    assert again.serve.state() == serve and serve["port"] == 8123 and not serve["batching"]
    again.close()
    qtbot.waitUntil(again.thread.isFinished, timeout=WAIT_MS)
    text = settings_path().read_text()
    settings_path().write_text(text.replace("quant=int8-dynamic", "quant=int99"))
    broken = MainWindow(show_dialogs=False)
    qtbot.addWidget(broken)
    assert [c.format() for c in broken.compare.specs()] == specs[:1]
    assert "quant=int99" in broken.notice and "left out" in broken.notice
    assert broken.controls.config().max_new_tokens == 5
    broken.close()
    qtbot.waitUntil(broken.thread.isFinished, timeout=WAIT_MS)


def test_exports_and_history(qtbot, make_window, tmp_path):
    from playground.gui.history_view import HistoryDialog

    window = make_window()
    send(qtbot, window)
    window.new_chat()  # a new chat: the earlier one's turns are still the session's
    send(qtbot, window, "Second chat")
    window.export_turns(str(tmp_path / "t.json"))
    window.export_turns(str(tmp_path / "t.csv"))
    window.export_charts(str(tmp_path / "c.png"))
    rows = json.loads((tmp_path / "t.json").read_text())
    assert rows[0]["prompt"] == "Hello there!" and rows[0]["ttft_ms"] > 0
    assert rows[0]["time"][:2] == "20" and rows[0]["stopped"] is False
    assert [(r["turn"], r["chat"], r["prompt"]) for r in rows] == [
        (1, 1, "Hello there!"), (2, 2, "Second chat")]
    header = (tmp_path / "t.csv").read_text().splitlines()[0].split(",")
    assert header[:3] == ["turn", "time", "stopped"] and "ttft_ms" in header
    from PySide6.QtGui import QImage

    png = QImage(str(tmp_path / "c.png"))  # every chart at a readable size, not the column
    assert (png.width(), png.height()) == (1600, 960)
    from playground.core.history import History

    history = History()  # a compared config: its medians and quality, not empty cells
    history.add("compare", "quant=int8-dynamic", metrics={
        "summary": {"ttft_ms": {"p50": 12.5}, "decode_tok_s": {"p50": 150.0},
                    "peak_rss_mb": 730.0},
        "quality": {"kl_mean": 0.0123, "top1_agreement": 0.955}})
    history.close()
    dialog = HistoryDialog(window)
    qtbot.addWidget(dialog)
    column = {dialog.table.horizontalHeaderItem(c).text(): c
              for c in range(dialog.table.columnCount())}
    cell = lambda row, name: dialog.table.item(row, column[name]).text()  # noqa: E731
    assert [cell(0, k) for k in ("kind", "TTFT ms", "decode tok/s", "peak MB", "KL", "top-1")] \
        == ["compare", "12.5", "150.0", "730", "0.012", "95.5%"]
    assert cell(1, "prompt") == "Second chat"  # newest first
    assert cell(1, "ended") == "max tokens"  # how it ended; "stopped" if cut
    assert float(cell(1, "TTFT ms")) > 0 and float(cell(1, "peak MB")) > 0
    config = dialog.table.item(1, column["config"])
    assert config.toolTip().startswith("model=") and len(config.text()) <= 60
    dialog.show_details(1)  # double-click: everything recorded with the row
    assert "Second chat" in dialog.details.text() and "ttft_ms" in dialog.details.text()
    dialog.details.close()


def test_auto_threads_says_what_runs(qtbot, monkeypatch):
    import os

    from playground.gui.controls import ControlsPanel

    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    panel = ControlsPanel(["cpu"])
    qtbot.addWidget(panel)
    assert panel.threads.value() == 0
    assert panel.threads.specialValueText() == "auto: 1 of 2 cores (1 for the window)"


def test_file_dialogs_start_in_documents_and_remember_the_last_folder(qtbot, tmp_path,
                                                                        monkeypatch):
    from pathlib import Path

    from playground.gui import file_dialogs

    monkeypatch.chdir(tmp_path)  # never the working directory
    first = file_dialogs.start_folder()
    assert Path(first).is_dir() and Path(first) != tmp_path
    (tmp_path / "models").mkdir()
    file_dialogs.remember(str(tmp_path / "models" / "x.gguf"))
    assert file_dialogs.start_folder() == str(tmp_path / "models")
    (tmp_path / "models").rmdir()  # a folder that went away: back to documents
    assert file_dialogs.start_folder() == first


def _occupy_worker(window, seconds):
    """Keep the worker thread busy (as an uninterruptible load would): a functor run
    in the worker's own thread."""
    import time

    from PySide6.QtCore import QTimer

    QTimer.singleShot(0, window.worker, lambda: time.sleep(seconds))


def test_a_stop_clicked_while_the_reply_waits_in_the_queue_is_kept(qtbot, make_window):
    window = make_window("max_new_tokens=900")
    _occupy_worker(window, 1.0)
    send(qtbot, window, wait=False)  # queued behind the busy worker
    window.chat.stop.click()  # before the reply has started
    with qtbot.waitSignal(window.turn_shown, timeout=WAIT_MS):
        pass
    assert window.chat.turns[-1].metrics["new_tokens"] <= 1


def test_closing_waits_a_bounded_time_for_a_job_that_cannot_stop(qtbot, make_window,
                                                                   monkeypatch):
    import time

    from playground.gui import main_window

    window = make_window()
    exits: list[int] = []
    monkeypatch.setattr(main_window, "CLOSE_WAIT_MS", 300)
    monkeypatch.setattr(main_window, "exit_now", exits.append)
    _occupy_worker(window, 2.0)  # stands in for a load: it ignores the stop event
    qtbot.wait(100)
    started = time.perf_counter()
    window.close()
    assert exits == [0] and time.perf_counter() - started < 1.5
    qtbot.waitUntil(window.thread.isFinished, timeout=WAIT_MS)  # (the test's own cleanup)


def test_a_turn_kept_while_the_history_was_locked_is_written_at_close(qtbot, make_window,
                                                                     monkeypatch):
    import sqlite3

    from playground.core import history as history_module
    from playground.core.history import History

    monkeypatch.setattr(history_module, "LOCK_TIMEOUT_S", 0.2)
    window = make_window()
    send(qtbot, window, "first")  # opens the history
    path = window.worker._history.path
    holder = sqlite3.connect(path)
    holder.execute("BEGIN EXCLUSIVE")  # another program takes the database
    window.worker._history.conn.execute("PRAGMA busy_timeout = 200")
    send(qtbot, window, "second")
    qtbot.waitUntil(lambda: "history not written yet" in window.status_label.text(),
                    timeout=WAIT_MS)
    holder.rollback()
    holder.close()
    window.close()
    qtbot.waitUntil(window.thread.isFinished, timeout=WAIT_MS)
    assert [t.prompt for t in History(path).recent(kind="chat")] == ["second", "first"]


def test_the_wheel_over_an_unfocused_control_does_not_change_it(qtbot):
    from PySide6.QtCore import QPoint, QPointF, Qt
    from PySide6.QtGui import QWheelEvent
    from PySide6.QtWidgets import QApplication

    from playground.gui.controls import ControlsPanel

    panel = ControlsPanel(["cpu"])
    qtbot.addWidget(panel)
    panel.show()
    spin = panel.max_new_tokens
    before = spin.value()

    def wheel():
        centre = QPointF(spin.rect().center())
        event = QWheelEvent(centre, QPointF(spin.mapToGlobal(centre.toPoint())), QPoint(0, 0),
                            QPoint(0, 120), Qt.MouseButton.NoButton,
                            Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
        QApplication.sendEvent(spin, event)

    wheel()  # scrolling past it
    assert spin.value() == before
    spin.setFocus()
    qtbot.waitUntil(spin.hasFocus)
    wheel()  # clicked into: the wheel steps it, as before
    assert spin.value() != before


def test_a_load_can_be_stopped_part_way(qtbot, make_window):
    """Stop during a load ends it at its next stage: the window is free again, says
    so, and Send says there is no model (the old one was released for the new)."""
    window = make_window()
    window.controls.quant.setCurrentText("int8-dynamic")
    _occupy_worker(window, 0.5)
    window.apply_controls()  # the load waits behind the busy worker
    assert window.controls.apply.text() == "Stop loading" and window.controls.apply.isEnabled()
    assert not window.controls.quant.isEnabled()
    window.controls.apply.click()
    assert window.controls.apply.text() == "Stopping…"  # acknowledged at once
    assert window.status_label.text().startswith("Stopping the load")
    window.controls.apply.click()  # a second click while it winds down: no reload queued
    qtbot.waitUntil(lambda: window.busy is None, timeout=WAIT_MS)
    assert window.pending_config is None and window.requested_config is None
    assert window.controls.apply.text().startswith("Load / apply")
    assert window.status_label.text().startswith("Loading stopped")
    assert window.loaded is None and window.worker.engine is None and not window.errors
    assert window.controls.model_info.text() == "No model loaded: loading was stopped."
    with qtbot.waitSignal(window.model_ready, timeout=WAIT_MS):
        window.apply_controls()  # and loads when asked again
    assert window.loaded.config.quant == "int8-dynamic"


def test_a_stop_belongs_to_its_own_job(qtbot, make_window):
    """A Stop clicked after a reply ended never stops the next reply (each job has its
    own token; a shared event had to be cleared by hand at the right moment)."""
    window = make_window()
    send(qtbot, window)
    window.stop()  # nothing runs: a no-op for the finished job
    send(qtbot, window)
    assert window.chat.turns[-1].metrics["new_tokens"] == 12 and not window.chat.turns[-1].stopped


def test_send_waits_while_a_model_loads_and_enter_applies(qtbot, make_window, tiny_dir):
    """Enter in the Model field applies; while the model loads Send is off and says why,
    the typed text stays; when it is ready Send is back."""
    from PySide6.QtCore import Qt

    window = make_window()
    window.chat.input.setPlainText("typed while loading")
    window.controls.quant.setCurrentText("int8-dynamic")
    with qtbot.waitSignal(window.model_ready, timeout=WAIT_MS):
        window.controls.model.setFocus()
        qtbot.keyClick(window.controls.model, Qt.Key.Key_Return)
        assert window.busy and window.busy.startswith("loading")
        assert not window.chat.send.isEnabled()
        assert window.chat.send.toolTip().startswith("Send waits: loading")
    assert window.loaded.config.quant == "int8-dynamic"
    assert window.chat.send.isEnabled() and "Ctrl+Enter" in window.chat.send.toolTip()
    assert window.chat.input.toPlainText() == "typed while loading"
    assert "ready in " in window.controls.model_info.text()


def test_chart_keys_name_the_model():
    from playground.gui.labels import chart_label

    a = chart_label(RunConfig.parse("model=/m/Llama-3.2-1B-Q4_K_M.gguf,quant=gguf-native,prefix_cache=on"))
    b = chart_label(RunConfig.parse("prefix_cache=on"))
    assert a.startswith("Llama-3.2-1B-Q4_K_M.gguf · ") and b.startswith("default model · ")
    assert a != b


def test_the_window_opens_within_a_small_screen(qtbot, monkeypatch):
    """A 1024 x 700 screen gets a window inside it, not 1500 x 900."""
    from PySide6.QtCore import QRect

    from playground.gui import settings_store

    window = MainWindow(RunConfig(), show_dialogs=False)
    qtbot.addWidget(window)

    class Small:
        def availableGeometry(self):
            return QRect(0, 0, 1024, 700)

    monkeypatch.setattr(window, "screen", lambda: Small())
    width, height = settings_store.first_size(window)
    assert width <= 1024 and height <= 700
    window.resize(width, height)
    assert window.width() <= 1024 and window.height() <= 700  # no minimum pushes it out
    window.close()
    qtbot.waitUntil(window.thread.isFinished, timeout=WAIT_MS)


def test_the_reply_line_separates_the_response_cache_from_the_prefix_cache(qtbot, make_window):
    """"cache miss" used to stand for both: now the response cache's hit or miss and the
    prompt tokens the prefix cache reused are separate figures."""
    import re

    window = make_window("max_new_tokens=4,prefix_cache=on")
    send(qtbot, window)
    send(qtbot, window, "And once more")
    first, second = window.chat.turns[0].metrics_line, window.chat.turns[1].metrics_line
    assert "response cache: miss" in second and "cache miss ·" not in second
    assert re.search(r"prefix: 0 of \d+ prompt tokens reused", first)
    reused = re.search(r"prefix: (\d+) of (\d+) prompt tokens reused", second)
    assert reused and 0 < int(reused[1]) < int(reused[2])


def test_every_menu_action_opens_its_dialog_and_cancels(qtbot, make_window):
    """Each menu entry, triggered as a click would: the dialogs it opens appear as the
    window's and can be cancelled, nothing fails (the training dialogs once did
    nothing), and the app is still usable after."""
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    window = make_window("max_new_tokens=3")
    seen: dict[str, str] = {}

    def cancel(text: str) -> None:
        dialog = QApplication.activeModalWidget()
        if dialog is not None:
            seen[text] = type(dialog).__name__
            dialog.reject()

    for menu in (a.menu() for a in window.menuBar().actions()):
        for action in menu.actions():
            if action.isSeparator() or action.text() == "Quit":
                continue
            text = action.text()
            timer = QTimer(singleShot=True, interval=0)  # fires in a dialog's own loop
            timer.timeout.connect(lambda t=text: cancel(t))
            timer.start()
            action.trigger()
            timer.stop()  # not left to fire in the next action's dialog
            cancel(action.text())  # a dialog opened without blocking (open())
            qtbot.waitUntil(lambda: QApplication.activeModalWidget() is None, timeout=WAIT_MS)
    assert seen == {
        "Models on this machine…": "ModelPicker",
        "Export charts as PNG…": "QFileDialog", "Export session turns as CSV…": "QFileDialog",
        "Export session turns as JSON…": "QFileDialog", "History…": "HistoryDialog",
        "Saved chats…": "SavedChats",
        "Build distilled variant…": "QInputDialog", "Quantization-aware training…": "QInputDialog",
        "Keyboard shortcuts": "QMessageBox", "About Latency Playground": "QMessageBox"}
    assert not window.errors
    send(qtbot, window)  # still answers


def test_a_wrong_model_path_keeps_the_typo_to_fix(qtbot, make_window):
    """A model that cannot load is an error; the Model field keeps what was typed (the
    old model stays loaded), so the typo can be fixed instead of typed again."""
    window = make_window("max_new_tokens=3")
    window.controls.model.setText("/nope/my-modle.gguf")
    with qtbot.waitSignal(window.error_shown, timeout=WAIT_MS) as error:
        window.apply_controls()
    assert "/nope/my-modle.gguf" in error.args[0]
    assert window.controls.model.text() == "/nope/my-modle.gguf"
    assert "unapplied" in window.controls.apply.text()  # the field is not what runs
    send(qtbot, window)  # the model that was loaded still answers
