"""GUI responsiveness on the default model: time to window, and event-loop lateness.

1. Time from process start to the window being shown and painted, while the model
   still loads in the background.
2. During a 128-token reply, a 10 ms QTimer's lateness (actual gap − 10 ms):
   p50/p90/p99/max. The GUI thread never waits on the model, so this stays small.

    QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/gui_responsiveness.py
"""

from __future__ import annotations

import time

T0 = time.perf_counter()  # before Qt or torch are imported

import json  # noqa: E402
import sys  # noqa: E402

from common import save  # noqa: E402
from PySide6.QtCore import QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from playground.core.config import RunConfig  # noqa: E402
from playground.core.metrics import percentile  # noqa: E402
from playground.gui.main_window import MainWindow  # noqa: E402

TICK_MS = 10


def main() -> int:
    app = QApplication(sys.argv[:1])
    window = MainWindow(RunConfig(max_new_tokens=128), show_dialogs=False, persist=False)
    window.show()
    result: dict = {}

    def painted() -> None:
        result["time_to_window_s"] = time.perf_counter() - T0
        result["model_loaded_at_window"] = window.loaded is not None
        window.start()

    QTimer.singleShot(0, painted)
    gaps: list[float] = []
    last = [0.0]
    ticker = QTimer()
    ticker.setInterval(TICK_MS)

    def tick() -> None:
        now = time.perf_counter()
        if last[0]:
            gaps.append((now - last[0]) * 1000.0 - TICK_MS)
        last[0] = now

    ticker.timeout.connect(tick)

    def on_ready() -> None:
        if "loaded_s" in result:
            return
        result["loaded_s"] = time.perf_counter() - T0
        window.worker.engine.eos_ids = set()  # exactly 128 tokens
        window.chat.input.setPlainText("Write a long story about a lighthouse keeper.")
        ticker.start()
        window.chat.send.click()

    def on_turn() -> None:
        ticker.stop()
        turn = window.chat.turns[-1]
        result["reply_tokens"] = turn.metrics["new_tokens"]
        result["decode_tok_s"] = turn.metrics["decode_tok_s"]
        window.close()
        app.quit()

    window.model_ready.connect(on_ready)
    window.turn_shown.connect(on_turn)
    window.error_shown.connect(lambda msg: (print("error:", msg), app.quit()))
    app.exec()
    result["timer_lateness_ms"] = {
        "samples": len(gaps),
        "p50": percentile(gaps, 50), "p90": percentile(gaps, 90),
        "p99": percentile(gaps, 99), "max": max(gaps) if gaps else None,
    }
    print(json.dumps(result, indent=1))
    save("gui_responsiveness", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
