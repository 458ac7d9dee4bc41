"""How many compute threads a server's passes of many rows run on, chosen by timing them.

Every core for a wide pass (a batch of decodes, a prompt chunk) was faster on the AMD
machines (concurrency 8 on 2 cores: 109–116 -> 130–149 output tok/s), and slower on an
Intel Xeon (166–174 against 216–231 tok/s on one thread, rounds alternating): there the
event loop, the sockets and the clients preempt one of the two compute threads and the
other waits at every barrier of the pass. Which one wins depends on the machine and on
what else runs, so the scheduler measures it where it matters, in its own passes: the
first passes alternate between the two counts, then the faster one (seconds a row,
averaged) runs, and one pass in ``EXPLORE_EVERY`` tries the other so a change of load
is seen. Only for rows that give the same bits on any count (the native step's): the
scheduler passes a single count otherwise.
"""

from __future__ import annotations

TRIAL_PASSES = 8  # passes on each count before the first choice
EXPLORE_EVERY = 16  # then one pass in this many on the other count
WEIGHT = 0.2  # of the newest pass in a count's running average


class ThreadChoice:
    def __init__(self, counts: tuple[int, ...]) -> None:
        """``counts``: the thread counts to choose from (one distinct count: no choice)."""
        self.counts = tuple(dict.fromkeys(c for c in counts if c > 0))
        if not self.counts:
            raise ValueError("thread counts must be at least 1")
        self.per_row: dict[int, float] = {}  # running seconds a row, per count
        self.seen = dict.fromkeys(self.counts, 0)
        self.passes = 0

    @property
    def chosen(self) -> int:
        """The count that is faster so far (the first one until each has been timed)."""
        if len(self.per_row) < len(self.counts):
            return self.counts[0]
        return min(self.counts, key=lambda c: self.per_row[c])

    def pick(self) -> int:
        """The count the next pass runs on."""
        if len(self.counts) == 1:
            return self.counts[0]
        trial = [c for c in self.counts if self.seen[c] < TRIAL_PASSES]
        if trial:  # alternate while the trial lasts, so a busy moment hits both
            return trial[self.passes % len(trial)]
        chosen = self.chosen
        if self.passes % EXPLORE_EVERY == EXPLORE_EVERY - 1:
            return next(c for c in self.counts if c != chosen)
        return chosen

    def record(self, count: int, seconds: float, rows: int) -> None:
        """A pass of ``rows`` rows took ``seconds`` on ``count`` threads."""
        self.passes += 1
        if count not in self.seen or rows < 1:
            return
        self.seen[count] += 1
        value = seconds / rows
        old = self.per_row.get(count)
        self.per_row[count] = value if old is None else old + WEIGHT * (value - old)
