"""How a server's passes of many rows use the cores, chosen by timing them.

Every core for a wide pass (a batch of decodes, a prompt chunk) was faster on the AMD
machines (concurrency 8 on 2 cores: 109–116 -> 130–149 output tok/s), and slower on an
Intel Xeon (166–174 against 216–231 tok/s on one thread, rounds alternating): there the
event loop, the sockets and the clients preempt one of the two compute threads and the
other waits at every barrier of the pass. A third way meets once a pass instead of at
every product: the rows in parts of whole sequences, one thread a part. Which one wins
depends on the machine and on what else runs, so the scheduler measures it where it
matters, in its own passes: the first passes alternate between the ways, then the
fastest (seconds a row, averaged) runs, and one pass in ``EXPLORE_EVERY`` tries another
so a change of load is seen. Only for rows that give the same bits any way (the native
step's): the scheduler offers a single way otherwise.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

TRIAL_PASSES = 8  # passes each way before the first choice
EXPLORE_EVERY = 16  # then one pass in this many another way, the others in turn
WEIGHT = 0.2  # of the newest pass in a way's running average


@dataclass(frozen=True)
class Way:
    """A wide pass on ``threads`` threads that share each product, or with ``parts`` > 1
    its rows in that many parts of whole sequences, one thread a part."""

    threads: int
    parts: int = 0


class ThreadChoice:
    def __init__(self, ways: tuple[Hashable, ...]) -> None:
        """``ways``: what to choose from, thread counts or Ways (one distinct way: no
        choice)."""
        self.ways = tuple(dict.fromkeys(ways))
        if not self.ways:
            raise ValueError("no way to run a pass to choose from")
        self.per_row: dict[Hashable, float] = {}  # running seconds a row, per way
        self.seen = dict.fromkeys(self.ways, 0)
        self.passes = 0

    @property
    def chosen(self) -> Hashable:
        """The way that is fastest so far among those timed (the first one before any)."""
        timed = [w for w in self.ways if w in self.per_row]
        return min(timed, key=lambda w: self.per_row[w]) if timed else self.ways[0]

    def pick(self, allowed: tuple[Hashable, ...] | None = None) -> Hashable:
        """The way the next pass runs, among ``allowed`` (every way when None): a way
        this pass cannot take (rows that do not divide into parts) is neither tried nor
        chosen for it, so the trial of the others goes on."""
        ways = tuple(w for w in self.ways if allowed is None or w in allowed) or self.ways
        if len(ways) == 1:
            return ways[0]
        trial = [w for w in ways if self.seen[w] < TRIAL_PASSES]
        if trial:  # alternate while the trial lasts, so a busy moment hits each
            return trial[self.passes % len(trial)]
        chosen = min(ways, key=lambda w: self.per_row[w])
        if self.passes % EXPLORE_EVERY == EXPLORE_EVERY - 1:
            others = [w for w in ways if w != chosen]
            return others[self.passes // EXPLORE_EVERY % len(others)]
        return chosen

    def record(self, way: Hashable, seconds: float, rows: int) -> None:
        """A pass of ``rows`` rows took ``seconds`` run ``way``."""
        self.passes += 1
        if way not in self.seen or rows < 1:
            return
        self.seen[way] += 1
        value = seconds / rows
        old = self.per_row.get(way)
        self.per_row[way] = value if old is None else old + WEIGHT * (value - old)
