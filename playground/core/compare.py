"""Run several configs over the same prompts, interleaved round by round.

The first config is the baseline. Each round loads every config in turn (A B C,
A B C, …), one model in memory at a time, warms it and runs every prompt once;
the repeats are the rounds. A busy moment then slows every config of that round
alike instead of one config's whole measurement, and the round-to-round spread
shows how noisy the machine was: each config reports the median of its round
means with their min–max, and a config whose spread is wide is flagged. Reloading
each round (rather than keeping every model resident) keeps each config's memory
figures its own; it costs a load and one warm-up prompt per round.

Quality is scored in the last round, after that config's timing: the baseline's
reference distributions are parked in a file, so they are not resident while
later configs are measured. Cancel is checked between prompts and tokens; a stop
or a failure keeps every config's finished rounds (marked incomplete).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from playground.core import jobs, memory, quality
from playground.core.bench import ConfigResult, run_bench, summary_of
from playground.core.config import RunConfig
from playground.core.pipeline import build_engine, preflight

Progress = Callable[[int, int, str], None]
NOISY_SPREAD = 0.25  # (max - min) / median of the round means above this: flagged
DISTURBED = 1.25  # a round in which most configs ran this much slower than their best
SPREAD_KEYS = ("ttft_ms", "decode_tok_s")


@dataclass
class CompareResult:
    results: list[ConfigResult] = field(default_factory=list)
    cancelled: bool = False
    error: str | None = None  # what stopped it part-way (the finished rounds are kept)

    @property
    def complete(self) -> bool:
        return not self.cancelled and self.error is None


def disturbed_rounds(rounds: list[list[ConfigResult]],
                     threshold: float = DISTURBED) -> set[int]:
    """Rounds in which the machine was busy: configs alternate, so a round is one slice
    of time, and when most configs ran more than ``threshold`` slower than in their
    own best round (decode speed or TTFT), the round was disturbed. Contention does not
    slow configs alike (a compute-bound int8 kernel loses more to a CPU hog than a
    memory-bound float one), so such rounds are set aside from the medians rather than
    averaged in. Never all of them: if every round was disturbed, none is set aside."""
    count = max((len(r) for r in rounds), default=0)
    means = [([r.summary["decode_tok_s"]["mean"] for r in config_rounds],
              [r.summary["ttft_ms"]["mean"] for r in config_rounds]) for config_rounds in rounds]
    slowdowns = []
    for index in range(count):
        per_config = []
        for decode, ttft in means:
            if index >= len(decode):
                continue
            parts = []
            if decode[index]:
                parts.append(max(d for d in decode if d) / decode[index])
            if ttft[index]:
                parts.append(ttft[index] / min(t for t in ttft if t))
            if parts:
                per_config.append(max(parts))
        slowdowns.append(statistics.median(per_config) if per_config else 1.0)
    busy = {i for i, slow in enumerate(slowdowns) if slow > threshold}
    return busy if len(busy) < count else set()


def round_spread(results_by_round: list[ConfigResult],
                 set_aside: set[int] | None = None) -> dict[str, Any]:
    """Per metric: each round's mean, the median of the rounds not set aside (busy
    rounds), min and max over all of them, and whether the spread is wide."""
    set_aside = set_aside or set()
    out: dict[str, Any] = {"set_aside": sorted(i + 1 for i in set_aside
                                               if i < len(results_by_round))}
    for key in SPREAD_KEYS:
        means = [r.summary[key]["mean"] for r in results_by_round]
        present = [m for m in means if m is not None]
        kept = [m for i, m in enumerate(means) if m is not None and i not in set_aside]
        if not present:
            out[key] = {"rounds": [], "p50": None, "min": None, "max": None, "noisy": False}
            continue
        mid = statistics.median(kept or present)
        wide = len(present) > 1 and mid > 0 and (max(present) - min(present)) / mid > NOISY_SPREAD
        out[key] = {"rounds": means, "p50": mid, "min": min(present), "max": max(present),
                    "noisy": wide}
    return out


def run_compare(
    configs: list[RunConfig],
    conversations: list[list[dict[str, str]]],
    *,
    warmup: int = 1,
    repeats: int = 3,
    with_quality: bool = True,
    progress: Progress = lambda done, total, label: None,
    status: Callable[[str], None] = lambda message: None,
    should_stop: Callable[[], bool] = lambda: False,
    on_result: Callable[[ConfigResult], None] = lambda result: None,
    build: Callable[..., Any] = build_engine,
) -> CompareResult:
    """``repeats`` rounds over every config; ``warmup`` untimed passes over the prompts
    after the first load, one untimed prompt after each reload. ``on_result`` gets each
    config's result once its last round is done."""
    if len(configs) < 2:
        raise ValueError("compare: give at least two configs (the first is the baseline)")
    for config in configs:  # fail fast on a typo in the 4th config, before minutes of work
        preflight(config)
    n, units = len(configs), len(conversations)
    total = n * (warmup * units + repeats * units + (repeats - 1) * min(1, units))
    done = [0]
    rounds: list[list[ConfigResult]] = [[] for _ in configs]
    out = CompareResult()
    reference: quality.Reference | None = None
    baseline_replies: list[str] = []
    remote: list[tuple[int, list[str], list[Any]]] = []  # endpoints to score at the end
    qualities: list[dict[str, Any] | None] = [None] * n
    greedy: list[float | None] = [None] * n  # share of greedy replies equal to the baseline's
    finished: list[ConfigResult | None] = [None] * n
    try:
        for round_ in range(repeats):
            for index, config in enumerate(configs):
                jobs.check(should_stop, "comparison")
                label = config.format(only_changed=True) or "defaults"
                tag = f"[round {round_ + 1}/{repeats}, {index + 1}/{n}]"
                status(f"{tag} loading {label}")
                engine = build(config, progress=status, should_stop=should_stop)
                if round_ > 0 and units:  # a reloaded model: warm its caches on one prompt
                    engine.chat(conversations[0], should_stop=should_stop)
                    done[0] += 1
                first = done[0]

                def step(count: int, _total: int, what: str, first: int = first,
                         label: str = label, tag: str = tag) -> None:
                    done[0] = first + count
                    progress(done[0], total, f"{tag} {label}: {what}")

                try:
                    result = run_bench(engine, conversations,
                                       warmup=warmup if round_ == 0 else 0, repeats=1,
                                       progress=step, should_stop=should_stop)
                except RuntimeError:
                    jobs.check(should_stop, "comparison")
                    raise
                if len(result.runs) < units:  # stopped inside this round: not a round
                    raise jobs.Cancelled("comparison stopped")
                rounds[index].append(result)
                if round_ == 0:
                    replies = [run["reply"] for run in result.runs[:units]]
                    if index == 0:
                        baseline_replies = replies
                    greedy[index] = quality.greedy_match(baseline_replies, replies)
                if round_ == repeats - 1:
                    if with_quality:
                        reference = _score(index, engine, rounds[index][0], greedy[index],
                                           reference, qualities, remote, status,
                                           f"{tag} scoring quality of {label}", should_stop)
                    finished[index] = _merged(index, rounds[index], qualities[index])
                    on_result(finished[index])
                del engine, result
                memory.release()
    except jobs.Cancelled:  # between runs, in a load or in quality scoring
        out.cancelled = True
    except Exception as exc:  # keep what finished; the caller shows the error
        from playground.core.engine import GenerationError
        from playground.core.models import ModelError
        from playground.core.optimize import OptimizationError

        if not isinstance(exc, (GenerationError, ModelError, OptimizationError, OSError,
                                ValueError, RuntimeError)) or not any(rounds):
            raise
        out.error = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    busy = disturbed_rounds([r for r in rounds if r])
    for index, config_rounds in enumerate(rounds):  # stopped or failed: keep what finished
        result = finished[index]
        if result is None and config_rounds:
            result = _merged(index, config_rounds, qualities[index])
            result.info["incomplete"] = (f"{len(config_rounds)} of {repeats} rounds"
                                         if len(config_rounds) < repeats
                                         else "timed, but stopped before its quality was scored")
        if result is not None:
            # every config's medians without the rounds in which the machine was busy
            result.summary["spread"] = round_spread(config_rounds, busy)
            out.results.append(result)
    if reference is not None:
        reference.discard()
    if remote and reference is not None and out.complete:
        _score_remote(configs[0], conversations, remote, out.results, build, status,
                      should_stop)
    return out


def _score(index: int, engine: Any, first: ConfigResult, greedy_match: float | None,
           reference: quality.Reference | None, qualities: list[dict[str, Any] | None],
           remote: list[Any], status: Callable[[str], None],
           message: str, should_stop: Callable[[], bool]) -> quality.Reference | None:
    """Quality of one config (last round, after its timing); the baseline's reference
    is built at index 0 and parked on disk until the candidates are scored."""
    greedy = {"greedy_match": greedy_match}
    if engine.model is None:  # a remote endpoint: no logits; scored along its replies
        qualities[index] = greedy
        remote.append((index, [r["reply"] for r in first.runs],
                       [r.get("new_tokens") for r in first.runs]))
    elif index == 0 or reference is not None:
        status(message)
        if reference is None:
            reference = quality.reference(engine.model, engine.tokenizer, should_stop)
            reference.park()
        qualities[index] = {**quality.compare_to(reference, engine.model, should_stop), **greedy}
    else:
        qualities[index] = {**greedy, "note": "not available: the baseline is a remote endpoint"}
    return reference


def _merged(index: int, config_rounds: list[ConfigResult],
            quality_: dict[str, Any] | None) -> ConfigResult:
    """One config's rounds as one result: every run, summaries over all of them, the
    spread of the round means, the first round's build facts."""
    first = config_rounds[0]
    turns = [t for r in config_rounds for t in r.turns]
    summary = summary_of(turns, first.summary["weights_mb"]) if turns else first.summary
    summary["spread"] = round_spread(config_rounds)
    info = {**first.info, "rounds": len(config_rounds), "baseline": index == 0}
    return ConfigResult(first.config, summary, [run for r in config_rounds for run in r.runs],
                        info, quality_, turns=turns)


def _score_remote(baseline: RunConfig, conversations: list[Any], remote: list[Any],
                  results: list[ConfigResult], build: Callable[..., Any],
                  status: Callable[[str], None], should_stop: Callable[[], bool]) -> None:
    """Endpoints have no local logits: load the baseline once more and read how often its
    top next token is the one each endpoint chose along its replies."""
    status("scoring the endpoints' replies against the baseline")
    engine = build(baseline, progress=status)
    for index, replies, counted in remote:
        units = len(conversations)
        try:
            top1, note = quality.top1_on_replies(engine, conversations, replies[:units],
                                                 counted[:units], should_stop)
        except jobs.Cancelled:
            raise
        except Exception as exc:  # a scoring failure must not lose the timed results
            line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            top1, note = None, f"not available: scoring the replies failed ({line})"
        results[index].quality.update(top1_agreement=top1, note=note)
    del engine
    memory.release()


def ratio_rows(results: list[ConfigResult]) -> list[dict[str, Any]]:
    """Each config's headline metrics and their ratio to the baseline (×1.00 for it).
    TTFT and decode speed are the median of the round means (the mean of the runs for
    a result without rounds), with the rounds' min–max as ``*_lo``/``*_hi`` and
    ``noisy`` naming the metrics whose spread is wide."""
    if not results:
        return []

    def centre(r: ConfigResult, key: str) -> tuple[float | None, float | None, float | None]:
        spread = r.summary.get("spread", {}).get(key)
        if spread and spread["p50"] is not None:
            return spread["p50"], spread["min"], spread["max"]
        mean = r.summary[key]["mean"]
        return mean, mean, mean

    def ratio(value: float | None, reference: float | None) -> float | None:
        return value / reference if value is not None and reference else None

    base_ttft, base_decode = centre(results[0], "ttft_ms")[0], centre(results[0], "decode_tok_s")[0]
    rows = []
    for r in results:
        s, q = r.summary, r.quality or {}
        ttft, ttft_lo, ttft_hi = centre(r, "ttft_ms")
        decode, decode_lo, decode_hi = centre(r, "decode_tok_s")
        noisy = [key for key in SPREAD_KEYS if s.get("spread", {}).get(key, {}).get("noisy")]
        rows.append({
            "config": RunConfig.from_dict(r.config).format(only_changed=True) or "defaults",
            "ttft_ms": ttft, "ttft_lo": ttft_lo, "ttft_hi": ttft_hi,
            "ttft_x": ratio(ttft, base_ttft),
            "decode_tok_s": decode, "decode_lo": decode_lo, "decode_hi": decode_hi,
            "decode_x": ratio(decode, base_decode),
            "rounds": r.info.get("rounds"),
            "noisy": noisy,
            "set_aside": s.get("spread", {}).get("set_aside", []),
            "incomplete": r.info.get("incomplete"),
            "weights_mb": s["weights_mb"],
            "weights_x": ratio(s["weights_mb"], results[0].summary["weights_mb"]),
            "peak_rss_mb": s["peak_rss_mb"],
            "kl_mean": q.get("kl_mean"),
            "top1_agreement": q.get("top1_agreement"),
            "ppl": q.get("ppl"),
            "greedy_match": q.get("greedy_match"),
        })
    return rows


def row_spread(row: dict[str, Any], key: str) -> tuple[float | None, float | None]:
    """The rounds' (min, max) of ``key`` in a ratio row; (None, None) for a metric
    without rounds (weights, KL)."""
    if key not in SPREAD_KEYS:
        return None, None
    prefix = key.split("_")[0]
    return row.get(f"{prefix}_lo"), row.get(f"{prefix}_hi")


def noisy_note(row: dict[str, Any]) -> str | None:
    """The warning a wide spread earns, in words, or None."""
    if not row.get("noisy"):
        return None
    names = {"ttft_ms": "TTFT", "decode_tok_s": "decode speed"}
    which = " and ".join(names.get(k, k) for k in row["noisy"])
    aside = row.get("set_aside") or []
    busy = (f"; round{'s' if len(aside) > 1 else ''} {', '.join(map(str, aside))} "
            f"set aside from the p50 (the machine was busy)") if aside else ""
    return (f"noisy: {which} varied more than {NOISY_SPREAD:.0%} between rounds{busy}; "
            "run more repeats on a quieter machine")


def pareto_front(rows: list[dict[str, Any]]) -> list[int]:
    """Indices of the configs no other config beats on both speed-up and KL (faster and
    at least as faithful, or as fast and more faithful), in order of KL."""
    points = [(r["kl_mean"], r["decode_x"], i) for i, r in enumerate(rows)
              if r.get("kl_mean") is not None and r.get("decode_x") is not None]
    front, best = [], float("-inf")
    for _kl, speed, i in sorted(points, key=lambda p: (p[0], -p[1])):
        if speed > best:
            front.append(i)
            best = speed
    return front


def history_rows(results: list[ConfigResult], rows: list[dict[str, Any]], *,
                 complete: bool = True, **extra: Any) -> list[tuple[Any, ...]]:
    """One history row per compared config (its summary and quality) for
    ``History.add_many``; ``rows`` are ``ratio_rows(results)``, ``extra`` the row's
    other fields (hardware, session); ``complete=False`` marks a comparison that
    stopped or failed before its last config."""
    from playground.core.history import row

    return [row("compare", r["config"], metrics={"summary": result.summary,
                                                 "quality": result.quality},
                complete=complete, **extra)
            for result, r in zip(results, rows, strict=True)]
