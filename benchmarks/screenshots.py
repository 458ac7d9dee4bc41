"""Screenshots of the real app under Xvfb: mid-reply, and after three turns with three
different optimizations (the README shows them).

    Xvfb :99 -screen 0 1600x1000x24 &  DISPLAY=:99 .venv/bin/python benchmarks/screenshots.py
    DISPLAY=:99 .venv/bin/python benchmarks/screenshots.py --compare   # the Compare tab
"""

from __future__ import annotations

import sys
from pathlib import Path

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from playground.core.config import RunConfig
from playground.gui.main_window import MainWindow

OUT = Path(__file__).resolve().parents[1] / "assets" / "screenshots"
TURNS = [
    ("quant=none,threads=2,max_new_tokens=96", "Explain in a few sentences why the sky is blue."),
    ("quant=int8-dynamic,threads=2,max_new_tokens=96", "Explain how a bicycle works, step by step."),
    ("prune=0.3,prune_method=structured,threads=2,max_new_tokens=96",
     "Write a short poem about a cat watching the rain."),
]
MID_REPLY_TOKENS = 10  # into the second or a later turn, so the charts show a change


COMPARE = ["threads=2,max_new_tokens=48", "quant=int8-dynamic,threads=2,max_new_tokens=48",
           "quant=int8-weight,threads=2,max_new_tokens=48",
           "quant=int4-weight,threads=2,max_new_tokens=48",
           "quant=gguf-native,threads=2,max_new_tokens=48",
           "prune=0.3,prune_method=structured,threads=2,max_new_tokens=48"]


def compare_shot() -> int:
    app = QApplication(sys.argv[:1])
    window = MainWindow(RunConfig.parse(COMPARE[0]), show_dialogs=False, persist=False)
    window.move(0, 0)
    window.resize(1600, 1000)
    window.show()
    view = window.compare
    window.tabs.setCurrentWidget(view)
    view.warmup.setValue(1)
    view.repeats.setValue(1)
    for spec in COMPARE:
        view.spec.setText(spec)
        view.add_spec.click()
    state = {"compared": False, "ab_sent": False}

    def ready() -> None:
        # The chat model (re)loads before the comparison and again after it.
        if not state["compared"]:
            view.run.click()
        elif not state["ab_sent"]:
            state["ab_sent"] = True
            view.ab_a.setCurrentIndex(0)
            view.ab_b.setCurrentIndex(4)  # gguf-native
            view.ab_prompt.setText("What is the capital of France?")
            view.ab_send.click()

    def compared() -> None:
        state["compared"] = True

    def done() -> None:
        QTimer.singleShot(500, finish)

    def finish() -> None:
        OUT.mkdir(parents=True, exist_ok=True)
        app.primaryScreen().grabWindow(0).save(str(OUT / "compare.png"))
        print("saved", OUT / "compare.png")
        window.close()
        app.quit()

    window.model_ready.connect(ready)
    window.compare_shown.connect(compared)
    window.ab_shown.connect(done)
    window.error_shown.connect(lambda m: (print("error:", m), app.quit()))
    window.start()
    return app.exec()


def main() -> int:
    if "--compare" in sys.argv:
        return compare_shot()
    app = QApplication(sys.argv[:1])
    window = MainWindow(RunConfig.parse(TURNS[0][0]), show_dialogs=False, persist=False)
    window.move(0, 0)
    window.resize(1600, 1000)
    window.show()
    OUT.mkdir(parents=True, exist_ok=True)
    state = {"turn": 0, "mid": False}

    def shot(name: str) -> None:
        path = OUT / name
        app.primaryScreen().grabWindow(0).save(str(path))
        print("saved", path)

    def on_ready() -> None:
        window.chat.input.setPlainText(TURNS[state["turn"]][1])
        window.chat.send.click()

    def poll_mid_reply() -> None:
        # A GUI-thread timer, not a slot on the worker's signal (that would run in the
        # worker thread).
        if (state["turn"] >= 1 and not state["mid"] and window.chat.streaming
                and len(window.charts.itl_ms) >= MID_REPLY_TOKENS):
            state["mid"] = True
            window.charts.redraw()
            shot("mid-reply.png")

    poller = QTimer()
    poller.timeout.connect(poll_mid_reply)
    poller.start(50)

    def on_turn() -> None:
        state["turn"] += 1
        if state["turn"] < len(TURNS):
            window.controls.set_config(RunConfig.parse(TURNS[state["turn"]][0]))
            window.apply_controls()
            return
        QTimer.singleShot(400, finish)

    def finish() -> None:
        window.charts.redraw()
        shot("three-turns.png")
        window.close()
        app.quit()

    window.model_ready.connect(on_ready)
    window.turn_shown.connect(on_turn)
    window.error_shown.connect(lambda m: (print("error:", m), app.quit()))
    window.start()
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
