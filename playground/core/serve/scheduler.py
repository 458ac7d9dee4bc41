"""Requests to one engine, from an asyncio server: a queue and a worker thread.

``Scheduler`` is the queue and the thread; ``batching.py``'s continuous scheduler runs
on it (``--batching off`` is that scheduler with one slot). The engine runs in the worker
thread; tokens come back to the request's asyncio queue with ``call_soon_threadsafe``. A
request whose client went away is marked cancelled: the engine stops between tokens (or
the request is skipped if it has not started), so its slot is free at once. A full queue
refuses new requests.
"""

from __future__ import annotations

import asyncio
import dataclasses
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from playground.core.serve.metrics import ServerMetrics

END = object()  # put on a request's queue after its last piece


class QueueFull(RuntimeError):
    """The waiting line is at --max-queue: answer 429 with Retry-After."""


@dataclass
class Job:
    messages: list[dict[str, str]] | str  # a chat, or a plain prompt (/v1/completions)
    max_tokens: int
    temperature: float
    loop: asyncio.AbstractEventLoop
    top_p: float = 1.0
    seed: int = 0  # the request's own (a random one when the client sent none)
    top_logprobs: int | None = None  # None: no logprobs asked; else how many alternatives
    logprobs: list = field(default_factory=list)  # one entry a token (serve/logprobs.py)
    # where each entry's token begins in the reply's text (characters of the pieces before
    # it): the server sends an entry once the text from there on has been sent
    logprob_starts: list = field(default_factory=list)
    pieces: asyncio.Queue = field(default_factory=asyncio.Queue)
    cancelled: bool = False
    result: Any = None
    error: str | None = None
    arrived: float = field(default_factory=time.perf_counter)
    # what the live request table shows (the GUI's Serve & load tab)
    tokens: int = 0
    started_at: float | None = None  # the scheduler took it (out of the waiting line)
    first_at: float | None = None
    done_at: float | None = None

    def config(self, base: Any) -> Any:
        """The engine's config with this request's sampling. OpenAI's seed is any int64;
        the engine's generator seeds take 32 bits, so larger seeds fold into them (a
        seed above 2^32 - 1 raised in the scheduler's thread, which then served nobody)."""
        from playground.core.config import MAX_SEED

        return dataclasses.replace(base, max_new_tokens=self.max_tokens,
                                   temperature=self.temperature, top_p=self.top_p,
                                   seed=self.seed % (MAX_SEED + 1))

    def emit(self, item: Any) -> None:
        if item is END:
            self.done_at = time.perf_counter()
        self.loop.call_soon_threadsafe(self.pieces.put_nowait, item)

    def count_token(self) -> None:
        self.tokens += 1
        if self.first_at is None:
            self.first_at = time.perf_counter()

    @property
    def state(self) -> str:
        if self.done_at is not None:
            return "failed" if self.error else ("cancelled" if self.cancelled and (
                self.result is None or self.result.finish_reason == "cancelled") else "done")
        return "running" if self.first_at is not None else "waiting"


class Scheduler:
    """A waiting line and one worker thread running ``_run`` over the engine; ``submit``
    refuses when the line is full, ``close`` lets queued work finish (a ``None`` marks
    the end of the line)."""

    def __init__(self, engine: Any, metrics: ServerMetrics, max_queue: int = 64) -> None:
        self.engine = engine
        self.metrics = metrics
        self.max_queue = max_queue
        self._jobs: queue.Queue[Job | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="engine", daemon=True)
        self._thread.start()

    def submit(self, job: Job) -> None:
        if self._jobs.qsize() >= self.max_queue:
            self.metrics.rejected += 1
            raise QueueFull(f"the queue is full ({self.max_queue} waiting); retry shortly")
        self.metrics.queued += 1
        self.metrics.recent.append(job)
        self._jobs.put(job)

    def close(self, timeout: float = 60.0) -> None:
        self._jobs.put(None)
        self._thread.join(timeout=timeout)

    def _run(self) -> None:
        raise NotImplementedError
