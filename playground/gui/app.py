"""Start the desktop app; ``--self-test --screenshot PATH`` drives it and exits.

The window is shown first and the model loads in the background, so the window
appears in well under a second of Qt start-up even on the first (converting) start.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

SELF_TEST_PROMPTS = (
    "What is the capital of France?",
    "Give me two tips for writing fast Python code.",
)
SELF_TEST_TIMEOUT_S = 600


def run_gui(args) -> int:
    from PySide6.QtCore import Qt, QTimer
    from PySide6.QtWidgets import QApplication

    from playground.core.config import ConfigError, RunConfig
    from playground.gui.main_window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("LLM Latency Playground")
    try:
        config = RunConfig.parse(args.config) if getattr(args, "config", None) else None
    except ConfigError as exc:
        print(f"playground: error: {exc}", file=sys.stderr)
        return 2
    self_test = bool(getattr(args, "self_test", False))
    window = MainWindow(config, show_dialogs=not self_test, persist=not self_test)
    if getattr(args, "system", None):
        window.chat.system.setText(args.system)
    window.show()
    close_on_signals(window)
    if self_test:
        window.resize(1500, 900)  # the screenshot shows the full layout, whatever the screen
        return SelfTest(app, window, getattr(args, "screenshot", None)).run()
    # Load after the first paint: the window appears at once, the model follows.
    QTimer.singleShot(0, window.start)
    # one line when the first model is ready: scripts (and tests) wait on it, not a sleep
    window.model_ready.connect(lambda: print("playground: ready", file=sys.stderr, flush=True),
                               Qt.ConnectionType.SingleShotConnection)
    return app.exec()


def close_on_signals(window) -> None:
    """Ctrl+C (SIGINT) and SIGTERM close the window as its close button does: settings
    saved, the running reply stopped, the worker joined. Python runs signal handlers
    only between its own bytecodes, so a timer hands it control a few times a second;
    without a handler SIGINT raised KeyboardInterrupt inside whatever slot ran (a chart
    redraw) and the window stayed up, and SIGTERM ended the process unsaved."""
    import signal

    from PySide6.QtCore import QTimer

    def close(signum, _frame) -> None:
        print(f"\n{signal.Signals(signum).name}: closing the window", file=sys.stderr)
        QTimer.singleShot(0, window.close)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, close)
    tick = QTimer(window)
    tick.timeout.connect(lambda: None)
    tick.start(200)


class SelfTest:
    """Two scripted prompts through the real controls and worker, then a screenshot."""

    def __init__(self, app, window, screenshot: str | None) -> None:
        self.app, self.window = app, window
        self.screenshot = Path(screenshot) if screenshot else None
        self.replies = 0
        self.failure: str | None = None

    def run(self) -> int:
        import psutil
        from PySide6.QtCore import QTimer

        born = psutil.Process().create_time()  # seconds since the epoch, at process start
        self.since_start = lambda: time.time() - born
        QTimer.singleShot(0, lambda: setattr(self, "window_s", self.since_start()))
        w = self.window
        w.model_ready.connect(self._send_next)
        w.turn_shown.connect(self._on_turn)
        w.error_shown.connect(self._fail)
        QTimer.singleShot(SELF_TEST_TIMEOUT_S * 1000, lambda: self._fail("timed out"))
        started = time.perf_counter()
        QTimer.singleShot(0, w.start)  # as in normal use: the window first, then the model
        self.app.exec()
        if self.failure:
            print(f"self-test failed: {self.failure}", file=sys.stderr)
            return 1
        print(f"self-test passed: {self.replies} replies in {time.perf_counter() - started:.1f} s"
              + (f", screenshot {self.screenshot}" if self.screenshot else ""))
        print(f"from process start: window shown {self.window_s:.2f} s, "
              f"first reply done {self.first_reply_s:.2f} s")
        return 0

    def _send_next(self) -> None:
        w = self.window
        if self.replies >= len(SELF_TEST_PROMPTS):
            return
        w.chat.input.setPlainText(SELF_TEST_PROMPTS[self.replies])
        w.chat.send.click()  # the real button, the real worker

    def _on_turn(self) -> None:
        self.replies += 1
        if self.replies == 1:
            self.first_reply_s = self.since_start()
        turn = self.window.chat.turns[-1]
        if not turn.metrics:
            self._fail(f"reply {self.replies} came back without metrics")
            return
        if self.replies < len(SELF_TEST_PROMPTS):
            self._send_next()
        else:
            self._finish()

    def _finish(self) -> None:
        from PySide6.QtCore import QTimer

        # One more chart refresh so the last points are drawn, then capture.
        QTimer.singleShot(300, self._capture)

    def _capture(self) -> None:
        w = self.window
        w.charts.redraw()
        if self.screenshot is not None:
            self.screenshot.parent.mkdir(parents=True, exist_ok=True)
            if not w.grab().save(str(self.screenshot)):
                self._fail(f"could not write {self.screenshot}")
                return
        w.close()
        self.app.quit()

    def _fail(self, message: str) -> None:
        if self.failure is None:
            self.failure = message
        self.window.close()
        self.app.quit()
