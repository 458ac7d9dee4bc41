"""The worker: a QObject moved to a QThread that owns the model.

The GUI never touches a model; it calls the worker's slots through queued signals
and gets plain dataclasses back. Each request carries its ``Job`` (playground/core/
jobs.py): its own cancel token, which the GUI cancels directly (Stop), and its id on
the failure and stop signals, so the window knows which job ended how.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QObject, Signal, Slot

from playground.core.config import RunConfig
from playground.core.jobs import Cancelled, Job
from playground.core.optimize.device import leave_a_core

# Keys that change only how we sample: no reload needed when just these differ.
SAMPLING_KEYS = ("max_new_tokens", "temperature", "top_p", "seed")


@dataclass
class TokenEvent:
    piece: str
    t: float  # perf_counter seconds


@dataclass
class TurnDone:
    reply: str
    metrics: Any  # TurnMetrics
    config: RunConfig
    finish_reason: str
    prefix_reused: int

    @classmethod
    def of(cls, result: Any) -> TurnDone:
        """The parts of an engine TurnResult the GUI shows."""
        return cls(result.reply, result.metrics, result.config, result.finish_reason,
                   result.prefix_reused)


@dataclass
class Loaded:
    config: RunConfig
    info: dict[str, Any]
    weights_mb: float
    bandwidth_bound_tok_s: float | None


class Worker(QObject):
    progress = Signal(str)
    compare_progress = Signal(int, int, str)
    compare_result = Signal(object)  # ConfigResult, as each config finishes
    compare_done = Signal(object)  # CompareResult
    ab_token = Signal(int, str)  # side (0 = A, 1 = B), piece
    ab_done = Signal(int, object)  # side, TurnDone
    ab_stopped = Signal(int)  # the side that never started (Stop between the sides)
    loaded = Signal(object)  # Loaded
    started = Signal(float)  # perf_counter at request
    token = Signal(object)  # TokenEvent
    finished = Signal(object)  # TurnDone
    failed = Signal(object, str)  # the Job, one line
    cancelled = Signal(object, str)  # the Job, what was stopped (a load, a score, a corpus)

    def __init__(self) -> None:
        super().__init__()
        self.engine = None
        self._history = None

    @Slot(object, object)
    def load(self, job: Job, config: RunConfig) -> None:
        config = leave_a_core(config)
        from playground.core import memory
        from playground.core.metrics import bandwidth_bound
        from playground.core.pipeline import build_engine, preflight

        try:
            current = self.engine.config if self.engine is not None else None
            if current is not None and _only_sampling_changed(current, config):
                self.engine.config = config
            else:
                # Cheap checks first: a typo or an impossible combination keeps the old model.
                preflight(config)
                self.engine = None  # release the old model before loading the next
                memory.release()
                self.engine = build_engine(config, progress=self.progress.emit,
                                           should_stop=job.token)
            engine = self.engine
            self.loaded.emit(
                Loaded(config, dict(engine.info), engine.weights_mb,
                       # as each turn's record counts it: the bytes a token reads
                       bandwidth_bound(engine.bandwidth_gb_s,
                                       getattr(engine, "read_mb", None) or engine.weights_mb))
            )
        except Cancelled:
            self.cancelled.emit(job, "Loading stopped: no model is loaded; press Load / apply")
        except Exception as exc:  # shown in the window; the app keeps running
            self.failed.emit(job, _one_line(exc))
        if self.engine is None:
            # out here: inside the except block the traceback's frames still hold the
            # half-built model
            memory.release()

    @Slot(object, object, object)
    def generate(self, job: Job, messages: list[dict[str, str]],
                 sampling: RunConfig | None = None) -> None:
        """``sampling``: the controls' config when only sampling keys changed since the
        load: they apply to this and later turns without a reload."""
        if self.engine is None:
            self.failed.emit(job, "no model is loaded yet; wait for loading to finish or pick a model")
            return
        if sampling is not None and _only_sampling_changed(self.engine.config,
                                                           leave_a_core(sampling)):
            self.engine.config = leave_a_core(sampling)
        self.started.emit(time.perf_counter())
        try:
            result = self.engine.chat(
                messages,
                on_token=lambda piece: self.token.emit(TokenEvent(piece, time.perf_counter())),
                should_stop=job.token,
            )
        except Exception as exc:
            self.failed.emit(job, _one_line(exc))
            return
        self._record(messages, result, job.chat)
        self.finished.emit(TurnDone.of(result))

    @Slot(object, object, object, int, int)
    def compare(self, job: Job, configs: list[RunConfig], conversations, warmup: int,
                repeats: int) -> None:
        """Run a comparison; the chat model is released first so memory figures are its own."""
        from playground.core.compare import history_rows, ratio_rows, run_compare

        # one thread policy in the app: comparisons run as the chat does (cores - 1 when
        # threads=auto), and each result's spec says how many
        configs = [leave_a_core(c) for c in configs]
        self.engine = None
        try:
            outcome = run_compare(
                configs, conversations, warmup=warmup, repeats=repeats,
                progress=self.compare_progress.emit, status=self.progress.emit,
                should_stop=job.token, on_result=self.compare_result.emit,
            )
        except Exception as exc:
            self.failed.emit(job, _one_line(exc))
            return
        try:
            self._open_history().add_many(history_rows(
                outcome.results, ratio_rows(outcome.results), complete=outcome.complete))
        except Exception as exc:  # history must never cost the user a comparison
            self.progress.emit(f"history not saved: {_one_line(exc)}")
        self.compare_done.emit(outcome)

    @Slot(object, object, object)
    def ab_chat(self, job: Job, configs: list[RunConfig], messages: list[dict[str, str]]) -> None:
        """One prompt to two configs, one after the other (running both at once on the
        same cores would slow both and make the figures meaningless)."""
        from playground.core.pipeline import build_engine, preflight

        configs = [leave_a_core(c) for c in configs]  # as the chat and Compare run
        self.engine = None
        try:
            for config in configs:
                preflight(config)
            for side, config in enumerate(configs):
                if job.token.cancelled:  # stopped between the sides: say so
                    self.ab_stopped.emit(side)
                    break
                engine = build_engine(config, progress=self.progress.emit, should_stop=job.token)
                result = engine.chat(
                    messages,
                    on_token=lambda piece, side=side: self.ab_token.emit(side, piece),
                    should_stop=job.token,
                )
                del engine
                self.ab_done.emit(side, TurnDone.of(result))
        except Cancelled:  # stopped while a side loaded
            self.ab_stopped.emit(side)
        except Exception as exc:
            self.failed.emit(job, _one_line(exc))

    def close_history(self) -> str | None:
        """Write what a locked database kept waiting (to a side file if it still
        refuses); the notice, if any. Called once the worker thread has stopped."""
        if self._history is None:
            return None
        self._history.close()
        notice = self._history.notice if self._history.pending else None
        self._history = None
        return notice

    def _open_history(self):
        from playground.core.history import History

        if self._history is None:
            self._history = History()
            if self._history.notice:
                self.progress.emit(self._history.notice)
        return self._history

    @Slot()
    def new_chat(self) -> None:
        if self.engine is not None:
            self.engine.reset()

    @Slot(str)
    def drop_last_turn(self, chat: str) -> None:
        try:
            history = self._open_history()
            if not history.drop_last_turn(chat):
                self.progress.emit(history.notice or "history not changed")
        except Exception as exc:  # history must never cost the user a reply
            self.progress.emit(f"history not changed: {_one_line(exc)}")

    def _record(self, messages, result, chat: str | None = None) -> None:
        try:
            metrics = {**result.metrics.to_dict(), "finish_reason": result.finish_reason}
            history = self._open_history()
            if history.add("chat", result.config.format(), metrics=metrics,
                           prompt=messages[-1]["content"], reply=result.reply,
                           session=chat) is None:
                self.progress.emit(history.notice or "history not written yet")
        except Exception as exc:  # history must never cost the user a reply
            self.progress.emit(f"history not saved: {_one_line(exc)}")


def unapplied_keys(running: RunConfig, wanted: RunConfig) -> list[str]:
    """Keys of ``wanted`` that differ from the ``running`` config and need a reload
    (sampling keys apply to the next message as they are)."""
    return [key for key in wanted.changed_keys(running) if key not in SAMPLING_KEYS]


def _only_sampling_changed(a: RunConfig, b: RunConfig) -> bool:
    return not unapplied_keys(a, b)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    message = text[0] if text else type(exc).__name__
    if not isinstance(exc, (ValueError, RuntimeError, OSError)):
        traceback.print_exception(exc)
    return message
