"""The Serve & load tab on the tiny model: start a server from the controls, sweep load
against it, watch the live table and the charts, stop; bad input is a dialog."""

from __future__ import annotations

import httpx
import pytest

from playground.core.config import RunConfig

pytest.importorskip("fastapi")
WAIT_MS = 120_000


def test_serve_tab_starts_sweeps_and_stops(qtbot, open_window, tiny_dir):
    from conftest import free_port

    window = open_window(RunConfig(model=str(tiny_dir), max_new_tokens=4))
    view = window.serve
    window.tabs.setCurrentWidget(view)
    view.use_controls()
    assert f"model={tiny_dir}" in view.spec.text()
    view.port.setValue(free_port())
    with qtbot.waitSignal(view.server_started, timeout=WAIT_MS):
        view.start_button.click()
    assert view.handle is not None and "Serving tiny" in view.server_status.text()
    assert "batching on" in view.server_status.text()
    assert httpx.get(view.handle.url.removesuffix("/v1") + "/health").status_code == 200

    view.concurrency.setText("1,2")
    view.requests.setValue(3)
    view.max_tokens.setValue(4)
    with qtbot.waitSignal(view.load_done, timeout=WAIT_MS):
        view.load_button.click()
    steps = view.sweeps[-1]["steps"]
    assert [s["concurrency"] for s in steps] == [1, 2]
    assert all(s["errors"] == 0 and s["output_tok_s"] > 0 for s in steps)
    assert "batching on" in view.sweeps[-1]["label"] and "Done: 2 steps" in view.load_status.text()
    view.refresh_table()
    assert view.table.rowCount() == 6 and view.table.item(0, 1).text() == "done"
    assert "6 served" in view.totals.text()
    assert all(len(p.listDataItems()) == (1 if key == "output_tok_s" else 2)
               for key, p in view.plots.items())

    with qtbot.waitSignal(view.server_stopped, timeout=WAIT_MS):
        view.start_button.click()
    assert view.handle is None and view.server_status.text() == "Stopped."
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{view.port.value()}/health", timeout=2)


def test_serve_tab_bad_input_is_a_message_and_nothing_starts(qtbot, open_window, tiny_dir):
    window = open_window(RunConfig(model=str(tiny_dir), max_new_tokens=4))
    view = window.serve
    view.spec.setText("quant=int9")
    view.start_button.click()
    assert view.handle is None and "quant" in window.errors[-1]
    view.concurrency.setText("1,two")
    view.endpoint.setText("http://127.0.0.1:9/v1")
    view.load_button.click()
    assert "Concurrency steps" in window.errors[-1] and not view.sweeps
    view.spec.setText(f"model={tiny_dir}/missing")
    with qtbot.waitSignal(view.server_failed, timeout=WAIT_MS):
        view.start_button.click()
    assert "did not start" in window.errors[-1] and view.start_button.isEnabled()


def test_the_ttft_axis_spans_labelled_ticks_around_the_data():
    """150-410 ms lay between the labels 100/200/500 with none drawn at full HD: the
    axis now runs from the tick below the data to the tick above it."""
    import math

    from playground.gui.serve_view import LOG_MS_TICKS, ttft_ticks_around

    assert ttft_ticks_around(151, 414) == (100, 500)
    assert ttft_ticks_around(20, 20) == (20, 20)
    low, high = ttft_ticks_around(0.03, 3e6)  # past the table: its ends
    labels = {round(v, 6) for v, _ in LOG_MS_TICKS}
    assert round(math.log10(low), 6) in labels and round(math.log10(high), 6) in labels
