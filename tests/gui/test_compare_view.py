"""The Compare tab on tiny random models: run, cancel, A/B chat, export, history."""

from __future__ import annotations

import pytest

from playground.core.config import RunConfig
from playground.core.history import History

WAIT_MS = 120_000


@pytest.fixture
def window(open_window, tiny_dir):
    w = open_window(RunConfig(model=str(tiny_dir), max_new_tokens=4))
    w.tabs.setCurrentWidget(w.compare)
    w.compare.warmup.setValue(0)
    w.compare.repeats.setValue(1)
    return w


def test_compare_runs_and_shows_table_and_charts(qtbot, window, tmp_path):
    view = window.compare
    view.add_current.click()
    view.preset.setCurrentText("CPU latency")
    view.add_preset.click()
    assert view.specs()[1].quant == "int8-dynamic" and view.specs()[1].prefix_cache
    assert view.specs()[1].model == window.controls.config().model
    shown = view.configs.item(1).text()  # the whole spec, and what the controls added
    assert "quant=int8-dynamic" in shown and "← from the controls: model=" in shown
    assert "max_new_tokens=4" in shown.split("←")[1]  # inherited, and said so
    assert "quant" not in shown.split("←")[1]  # the preset's own key is not
    with qtbot.waitSignal(window.compare_shown, timeout=WAIT_MS):
        view.run.click()
    assert view.table.rowCount() == 2
    assert view.table.item(0, 1).text().endswith("\n×1.00")  # decode, × the baseline's
    from playground.core.optimize.device import leave_a_core

    expected = leave_a_core(RunConfig()).threads  # the chat's thread policy, stated
    assert all(r.config["threads"] == expected for r in view.results)
    assert view.table.item(0, 3).text() == "0"  # the baseline's KL
    assert float(view.table.item(1, 3).text()) > 0
    for name in ("c.csv", "c.json", "c.png"):
        view.export(str(tmp_path / name))
        assert (tmp_path / name).stat().st_size > 100
    assert len(History().recent(kind="compare")) == 2
    qtbot.waitUntil(lambda: window.loaded is not None, timeout=WAIT_MS)  # chat model is back


def test_compare_needs_two_configs_and_bad_specs_are_reported(qtbot, window):
    view = window.compare
    view.add_current.click()
    with qtbot.waitSignal(window.error_shown) as error:
        view.run.click()
    assert "2 to 6" in error.args[0]
    view.spec.setText("quant=int3")
    with qtbot.waitSignal(window.error_shown) as error:
        view.add_spec.click()
    assert "quant" in error.args[0]
    assert view.configs.count() == 1


def test_cancel_keeps_finished_configs(qtbot, window):
    view = window.compare
    for spec in ("", "quant=bf16", "quant=int8-dynamic"):
        view.spec.setText(spec or "quant=none")
        view.add_spec.click()
    window.worker.compare_result.connect(view.cancel.click)  # cancel after the first
    with qtbot.waitSignal(window.compare_shown, timeout=WAIT_MS):
        view.run.click()
    assert "Cancelled" in view.progress_label.text()
    assert 1 <= view.table.rowCount() < 3


def test_ab_chat_streams_both_replies(qtbot, window):
    view = window.compare
    view.add_current.click()
    view.spec.setText("quant=bf16")
    view.add_spec.click()
    view.ab_prompt.setText("Hello there!")
    with qtbot.waitSignal(window.ab_shown, timeout=WAIT_MS):
        view.ab_send.click()
    for pane in view.ab_views:
        assert "TTFT" in pane.toPlainText()
    assert "B: bf16" in view.ab_views[1].toPlainText()


def test_distilled_preset_says_what_is_missing(qtbot, window):
    view = window.compare
    view.preset.setCurrentText("Distilled")
    with qtbot.waitSignal(window.error_shown) as error:
        view.add_preset.click()
    assert "playground distill" in error.args[0]
    assert view.configs.count() == 0


def test_stop_between_the_ab_sides_frees_the_window(qtbot, window):
    view = window.compare
    view.add_current.click()
    view.spec.setText("quant=bf16")
    view.add_spec.click()
    view.ab_prompt.setText("Hello there!")
    window.worker.ab_done.connect(lambda side, _done: side == 0 and window.stop())
    with qtbot.waitSignal(window.ab_shown, timeout=WAIT_MS):
        view.ab_send.click()
    assert "stopped before this side started" in view.ab_views[1].toPlainText()
    assert not window.side_job and view.run.isEnabled()  # (the chat model reloads)


def test_new_chat_does_not_cancel_a_running_comparison(qtbot, window):
    view = window.compare
    for spec in ("quant=none", "quant=bf16"):
        view.spec.setText(spec)
        view.add_spec.click()
    window.worker.compare_progress.connect(
        lambda done, _total, _label: done == 1 and window.chat.new_chat.click())
    with qtbot.waitSignal(window.compare_shown, timeout=WAIT_MS):
        view.run.click()
    assert view.progress_label.text().startswith("Done: 2 configs")


def test_the_speed_kl_chart_names_its_floor_as_zero(qtbot):
    """KL = 0 (the baseline) is drawn at the log axis' floor: its tick says so, and no SI
    prefix rescales the decades."""
    from playground.gui.compare_charts import CompareCharts

    charts = CompareCharts()
    qtbot.addWidget(charts)
    charts.set_rows([{"config": "A", "kl_mean": 0.0, "decode_x": 1.0, "ttft_ms": 10.0},
                     {"config": "B", "kl_mean": 0.02, "decode_x": 3.0, "ttft_ms": 8.0}])
    axis = charts.tradeoff.getAxis("bottom")
    labels = [text for _value, text in axis._tickLevels[0]]
    assert labels[0] == "≤0.0001 (0)" and "0.01" in labels and not axis.autoSIPrefix


def test_every_column_fits_at_1024_px(qtbot, window):
    """At 1024×700 the whole table, quality columns included, is visible without a
    horizontal scroll bar (13 columns scrolled before), with realistic figures."""
    window.resize(1024, 700)
    window.show()
    qtbot.waitExposed(window)
    view = window.compare
    qtbot.waitUntil(lambda: view.table.viewport().width() > 0)
    if view.isVisible():  # empty, before a run: no scroll bar either
        qtbot.waitUntil(lambda: view.table.horizontalScrollBar().maximum() == 0, timeout=5000)
    spec = "model=/home/me/models/Llama-3.2-1B-Instruct-Q4_K_M.gguf,quant=gguf-native,threads=2"
    view.rows = [
        {"config": spec, "decode_tok_s": 212.34, "decode_lo": 205.1, "decode_hi": 220.4,
         "decode_x": 1.0, "ttft_ms": 85.2, "ttft_lo": 80.1, "ttft_hi": 90.7, "ttft_x": 1.0,
         "weights_mb": 838.2, "weights_x": 1.0, "peak_rss_mb": 1250.3, "kl_mean": 0.0,
         "top1_agreement": 1.0, "ppl": 22.41, "greedy_match": 1.0},
        {"config": spec + ",prefix_cache=on", "decode_tok_s": 1212.3, "decode_lo": 1105.1,
         "decode_hi": 1320.4, "decode_x": 5.71, "ttft_ms": 1285.2, "ttft_lo": 1180.1,
         "ttft_hi": 1390.7, "ttft_x": 15.08, "weights_mb": 1838.2, "weights_x": 2.19,
         "peak_rss_mb": 11250.3, "kl_mean": 0.01234, "top1_agreement": 0.955, "ppl": 122.41,
         "greedy_match": 0.5},
    ]
    view._show_rows()
    qtbot.waitUntil(lambda: view.table.viewport().width() > 0)
    used = sum(view.table.columnWidth(c) for c in range(view.table.columnCount() - 1))
    assert used + 40 <= view.table.viewport().width()  # and the note column has room
    # the note column takes what is left once the layout settles (a vertical scroll bar)
    qtbot.waitUntil(lambda: view.table.horizontalScrollBar().maximum() == 0, timeout=5000)


def test_the_config_column_widens_where_there_is_room(qtbot, window):
    """At full HD the config column shows its specs whole (it was capped at 90 px at
    every size); at 1024 it keeps its least width and the table still fits."""
    view = window.compare
    spec = "model=/home/me/models/Qwen2.5-0.5B-Q4_K_M.gguf,quant=gguf-native"
    view.rows = [{"config": spec, "decode_tok_s": 212.3, "decode_x": 1.0, "kl_mean": 0.0},
                 {"config": spec + ",threads=1", "decode_tok_s": 150.1, "decode_x": 0.71}]
    window.resize(1900, 1000)
    window.show()
    qtbot.waitExposed(window)
    window.tabs.setCurrentWidget(view)
    view._show_rows()
    qtbot.waitUntil(lambda: view.table.columnWidth(0) == view._config_contents, timeout=5000)
    assert view.table.columnWidth(0) > 200
    qtbot.waitUntil(lambda: view.table.horizontalScrollBar().maximum() == 0, timeout=5000)
    window.resize(1024, 700)
    qtbot.waitUntil(lambda: view.table.columnWidth(0) < view._config_contents, timeout=5000)
    qtbot.waitUntil(lambda: view.table.horizontalScrollBar().maximum() == 0, timeout=5000)
