"""The job controller: the model-worker thread, the requests sent to it, and the
current job's cancel token.

Every request makes a ``Job`` (playground/core/jobs.py) here, in the GUI thread, as
it is sent: Stop cancels that job's own token, so a Stop clicked while the job still
waits in the worker's queue is kept, and it can never stop the job after it. Closing
cancels the job and waits a bounded time for the thread (a load stops at its next
stage, a score at its next batch).
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QObject, QThread, Signal

from playground.core.config import RunConfig
from playground.core.jobs import Job
from playground.gui.worker import Worker


class JobController(QObject):
    # Requests to the worker: queued across the thread boundary, each with its Job.
    load_request = Signal(object, object)  # job, config
    generate_request = Signal(object, object, object)  # job, messages, the controls' config
    new_chat_request = Signal()
    drop_turn_request = Signal(str)  # a chat's last turn, from the history (regenerate)
    compare_request = Signal(object, object, object, int, int)
    ab_request = Signal(object, object, object)

    def __init__(self, parent: QObject) -> None:
        super().__init__(parent)
        self.job: Job | None = None
        self.thread = QThread(parent)
        self.thread.setObjectName("model-worker")
        self.worker = Worker()
        self.worker.moveToThread(self.thread)
        self.thread.finished.connect(self.worker.deleteLater)
        self.load_request.connect(self.worker.load)
        self.generate_request.connect(self.worker.generate)
        self.new_chat_request.connect(self.worker.new_chat)
        self.drop_turn_request.connect(self.worker.drop_last_turn)
        self.compare_request.connect(self.worker.compare)
        self.ab_request.connect(self.worker.ab_chat)

    def start(self) -> None:
        self.thread.start()

    def begin(self, kind: str) -> Job:
        """A new job, current from now on (its Stop is its own)."""
        self.job = Job(kind)
        return self.job

    def stop(self) -> None:
        if self.job is not None:
            self.job.cancel()  # an Event underneath: safe to set from this thread

    # -- requests ----------------------------------------------------------------
    def load(self, config: RunConfig) -> Job:
        job = self.begin("load")
        self.load_request.emit(job, config)
        return job

    def generate(self, messages: list[dict[str, str]], sampling: RunConfig | None,
                 chat: str | None = None) -> Job:
        job = self.begin("reply")
        job.chat = chat
        self.generate_request.emit(job, messages, sampling)
        return job

    def compare(self, configs: list[RunConfig], conversations: Any, warmup: int,
                repeats: int) -> Job:
        job = self.begin("compare")
        self.compare_request.emit(job, configs, conversations, warmup, repeats)
        return job

    def ab_chat(self, configs: list[RunConfig], messages: list[dict[str, str]]) -> Job:
        job = self.begin("ab")
        self.ab_request.emit(job, configs, messages)
        return job

    def new_chat(self) -> None:
        self.new_chat_request.emit()

    def drop_last_turn(self, chat: str) -> None:
        """In the worker's thread, before the next job: the history connection that
        wrote the turn removes it, so the regenerated one takes its place."""
        self.drop_turn_request.emit(chat)

    # -- shutdown ----------------------------------------------------------------
    def close(self, wait_ms: int) -> bool:
        """Stop the job and the thread; False when it did not end within ``wait_ms``."""
        self.stop()
        self.thread.quit()
        return self.thread.wait(wait_ms)

    def close_history(self) -> str | None:
        """Once the thread has stopped: write what a locked history kept waiting."""
        return self.worker.close_history()
