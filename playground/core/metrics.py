"""Per-turn metrics from one timeline of token timestamps (definitions in docs/ARCHITECTURE.md).

Pure functions over plain dataclasses: a ``TokenTimeline`` is what the engine records,
``TurnMetrics`` is what everyone else shows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field


@dataclass
class TokenTimeline:
    """Timestamps (``time.perf_counter()`` seconds) of one turn."""

    t_request: float
    prompt_tokens: int = 0
    t_first_logits: float | None = None  # prefill done (first token's logits on host)
    # prompt tokens actually run through the model (the prefix cache reuses the rest);
    # None: all of them
    prefilled_tokens: int | None = None
    token_times: list[float] = field(default_factory=list)  # each new token decoded to text

    @property
    def new_tokens(self) -> int:
        return len(self.token_times)


@dataclass
class TurnMetrics:
    prompt_tokens: int
    new_tokens: int
    ttft_ms: float | None
    prefill_tok_s: float | None
    itl_ms: list[float]
    itl_p50_ms: float | None
    itl_p90_ms: float | None
    itl_p99_ms: float | None
    tpot_ms: float | None
    decode_tok_s: float | None
    e2e_s: float
    e2e_tok_s: float | None
    peak_rss_mb: float | None = None
    cuda_peak_mb: float | None = None
    weights_mb: float | None = None
    bandwidth_bound_tok_s: float | None = None
    pct_of_bound: float | None = None
    cache_hit: bool = False
    draft_acceptance: float | None = None  # speculative decoding: accepted / drafted tokens

    def to_dict(self) -> dict:
        return asdict(self)


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (numpy's default), q in 0..100; None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def summarize(values: Sequence[float | None]) -> dict[str, float | None]:
    """mean / p50 / p90 / p99 of the values that are present."""
    present = [v for v in values if v is not None]
    if not present:
        return {"mean": None, "p50": None, "p90": None, "p99": None}
    return {
        "mean": sum(present) / len(present),
        "p50": percentile(present, 50),
        "p90": percentile(present, 90),
        "p99": percentile(present, 99),
    }


def inter_token_latencies_ms(token_times: Sequence[float]) -> list[float]:
    """Gaps between arrivals. Tokens that arrive together (speculative decoding accepts
    a run of draft tokens at once, a server may send several in one chunk) share one
    timestamp: they are one arrival, and a 0 ms "latency" per extra token would make
    ITL look better than anything a reader waits. TPOT still counts every token."""
    arrivals = [t for i, t in enumerate(token_times) if i == 0 or t != token_times[i - 1]]
    return [(b - a) * 1000.0 for a, b in zip(arrivals, arrivals[1:], strict=False)]


def turn_metrics(
    timeline: TokenTimeline,
    *,
    peak_rss_mb: float | None = None,
    cuda_peak_mb: float | None = None,
    weights_mb: float | None = None,
    bandwidth_gb_s: float | None = None,
    cache_hit: bool = False,
    read_mb: float | None = None,
) -> TurnMetrics:
    """``read_mb``: weight bytes read per decoded token (defaults to ``weights_mb``); the
    bandwidth bound divides by it."""
    n = timeline.new_tokens
    ttft = e2e = None
    if n:
        ttft = timeline.token_times[0] - timeline.t_request
        e2e = timeline.token_times[-1] - timeline.t_request
    prefill = None
    prefilled = (timeline.prompt_tokens if timeline.prefilled_tokens is None
                 else timeline.prefilled_tokens)
    if timeline.t_first_logits is not None and prefilled:
        elapsed = timeline.t_first_logits - timeline.t_request
        prefill = prefilled / elapsed if elapsed > 0 else None
    itl = inter_token_latencies_ms(timeline.token_times)
    tpot = decode = None
    if n > 1 and e2e is not None and ttft is not None and e2e > ttft:
        tpot = (e2e - ttft) / (n - 1)
        decode = (n - 1) / (e2e - ttft)
    bound = bandwidth_bound(bandwidth_gb_s, read_mb if read_mb is not None else weights_mb)
    return TurnMetrics(
        prompt_tokens=timeline.prompt_tokens,
        new_tokens=n,
        ttft_ms=None if ttft is None else ttft * 1000.0,
        prefill_tok_s=prefill,
        itl_ms=itl,
        itl_p50_ms=percentile(itl, 50),
        itl_p90_ms=percentile(itl, 90),
        itl_p99_ms=percentile(itl, 99),
        tpot_ms=None if tpot is None else tpot * 1000.0,
        decode_tok_s=decode,
        e2e_s=e2e or 0.0,
        e2e_tok_s=n / e2e if e2e else None,
        peak_rss_mb=peak_rss_mb,
        cuda_peak_mb=cuda_peak_mb,
        weights_mb=weights_mb,
        bandwidth_bound_tok_s=bound,
        pct_of_bound=100.0 * decode / bound if decode and bound else None,
        cache_hit=cache_hit,
    )


def bandwidth_bound(bandwidth_gb_s: float | None, weights_mb: float | None) -> float | None:
    """tok/s ceiling when every decoded token reads all weights once."""
    if not bandwidth_gb_s or not weights_mb:
        return None
    return bandwidth_gb_s * 1e9 / (weights_mb * 1e6)
