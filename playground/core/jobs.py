"""Jobs and their cancel tokens: every long piece of work can be stopped part-way.

A ``Job`` is one request (a load, a reply, a comparison, a build) with its own
``CancelToken``: a Stop cancels that job only, so a Stop never leaks into the next job
and is never lost while a job waits in a queue (each job's token is made when it is
requested). A token is a ``should_stop`` callable, which the token loops poll between
tokens; work without such a loop (a load, quality scoring, a teacher's corpus, layer
importance) calls ``check`` at its own steps and ends with ``Cancelled``.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

ShouldStop = Callable[[], bool]

_ids = itertools.count(1)


class Cancelled(Exception):
    """A job was stopped part-way; what it had finished is said in the message."""


class CancelToken:
    """Set from any thread (an Event), polled by the job's thread."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    def __call__(self) -> bool:
        return self._event.is_set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()


@dataclass
class Job:
    kind: str  # "load", "reply", "compare", "ab", "distill", "qat"
    token: CancelToken = field(default_factory=CancelToken)
    id: int = field(default_factory=lambda: next(_ids))
    chat: str | None = None  # a reply's chat (its turns' history session)

    def cancel(self) -> None:
        self.token.cancel()


def check(should_stop: ShouldStop | None, what: str) -> None:
    """A cancellation point: raise ``Cancelled`` ("<what> stopped") once stopped."""
    if should_stop is not None and should_stop():
        raise Cancelled(f"{what} stopped")


def checked(progress: Callable[[str], None], should_stop: ShouldStop | None,
            what: str) -> Callable[[str], None]:
    """``progress`` that is also a cancellation point: a load reports each stage
    (loading, converting, each optimization, measuring bandwidth), and stops there."""
    if should_stop is None:
        return progress

    def report(message: str) -> None:
        check(should_stop, what)
        progress(message)

    return report
