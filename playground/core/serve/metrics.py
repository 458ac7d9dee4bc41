"""The server's counters and histograms, as Prometheus text (``GET /metrics``)."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

TTFT_BUCKETS_S = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
ITL_BUCKETS_S = (0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0)
PASS_BUCKETS_S = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0)


@dataclass
class Histogram:
    buckets: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    n: int = 0

    def observe(self, value: float) -> None:
        if not self.counts:
            self.counts = [0] * len(self.buckets)
        for i, edge in enumerate(self.buckets):
            if value <= edge:
                self.counts[i] += 1
        self.total += value
        self.n += 1

    def lines(self, name: str, label: str = "") -> list[str]:
        counts = self.counts or [0] * len(self.buckets)
        tag = f"{label}," if label else ""
        plain = f"{{{label}}}" if label else ""
        out = [f'{name}_bucket{{{tag}le="{edge}"}} {c}' for edge, c in zip(self.buckets, counts,
                                                                          strict=True)]
        out += [f'{name}_bucket{{{tag}le="+Inf"}} {self.n}', f"{name}_sum{plain} {self.total:.6f}",
                f"{name}_count{plain} {self.n}"]
        return out

    @property
    def mean(self) -> float | None:
        return self.total / self.n if self.n else None


@dataclass
class ServerMetrics:
    requests: int = 0
    failed: int = 0
    rejected: int = 0
    queued: int = 0
    running: int = 0
    running_max: int = 0  # the largest batch so far
    prompt_tokens: int = 0
    output_tokens: int = 0
    ttft: Histogram = field(default_factory=lambda: Histogram(TTFT_BUCKETS_S))
    itl: Histogram = field(default_factory=lambda: Histogram(ITL_BUCKETS_S))
    # batching on: how long a pass takes with and without prompt rows in it (the stall a
    # new prompt puts on the running requests is the difference)
    pass_decode: Histogram = field(default_factory=lambda: Histogram(PASS_BUCKETS_S))
    pass_prefill: Histogram = field(default_factory=lambda: Histogram(PASS_BUCKETS_S))
    prefix_store: Any = None  # batching on: the shared prefix cache (hits, reused tokens)
    wide_choice: Any = None  # batching on: how wide passes run (thread_choice.Way), as timed
    recent: deque = field(default_factory=lambda: deque(maxlen=200))  # the latest requests

    def set_running(self, n: int) -> None:
        self.running = n
        self.running_max = max(self.running_max, n)

    def record(self, result: Any, job: Any) -> None:
        """A finished request: TTFT from its arrival (queueing included; to the end when no
        token came), its ITLs."""
        self.requests += 1
        self.prompt_tokens += result.metrics.prompt_tokens
        self.output_tokens += result.metrics.new_tokens
        self.ttft.observe((job.first_at or time.perf_counter()) - job.arrived)
        for gap_ms in result.metrics.itl_ms:
            self.itl.observe(gap_ms / 1000.0)

    def prometheus(self) -> str:
        p = "playground"
        chosen = getattr(self.wide_choice, "chosen", None)
        lines = [
            f"# TYPE {p}_requests_total counter", f"{p}_requests_total {self.requests}",
            f"# TYPE {p}_requests_failed_total counter", f"{p}_requests_failed_total {self.failed}",
            f"# TYPE {p}_requests_rejected_total counter",
            f"{p}_requests_rejected_total {self.rejected}",
            f"# TYPE {p}_queue_depth gauge", f"{p}_queue_depth {self.queued}",
            f"# TYPE {p}_running_batch_size gauge", f"{p}_running_batch_size {self.running}",
            f"# TYPE {p}_running_batch_size_max gauge",
            f"{p}_running_batch_size_max {self.running_max}",
            f"# TYPE {p}_prompt_tokens_total counter", f"{p}_prompt_tokens_total {self.prompt_tokens}",
            f"# TYPE {p}_output_tokens_total counter", f"{p}_output_tokens_total {self.output_tokens}",
            f"# TYPE {p}_ttft_seconds histogram", *self.ttft.lines(f"{p}_ttft_seconds"),
            f"# TYPE {p}_itl_seconds histogram", *self.itl.lines(f"{p}_itl_seconds"),
            f"# TYPE {p}_prefix_cache_hits_total counter",
            f"{p}_prefix_cache_hits_total {getattr(self.prefix_store, 'hits', 0)}",
            f"# TYPE {p}_prefix_cache_tokens_total counter",
            f"{p}_prefix_cache_tokens_total {getattr(self.prefix_store, 'reused_tokens', 0)}",
            f"# TYPE {p}_prefix_cache_bytes gauge",
            f"{p}_prefix_cache_bytes {getattr(self.prefix_store, 'bytes', 0)}",
            f"# TYPE {p}_prefix_cache_budget_bytes gauge",
            f"{p}_prefix_cache_budget_bytes {getattr(self.prefix_store, 'max_bytes', 0)}",
            f"# TYPE {p}_wide_pass_threads gauge",
            f"{p}_wide_pass_threads {getattr(chosen, 'threads', 0)}",
            f"# TYPE {p}_wide_pass_parts gauge",
            f"{p}_wide_pass_parts {getattr(chosen, 'parts', 0)}",
            f"# TYPE {p}_pass_seconds histogram",
            *self.pass_decode.lines(f"{p}_pass_seconds", 'prefill="no"'),
            *self.pass_prefill.lines(f"{p}_pass_seconds", 'prefill="yes"'),
        ]
        return "\n".join(lines) + "\n"
