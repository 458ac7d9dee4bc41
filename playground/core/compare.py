"""Run several configs over the same prompts, one model in memory at a time.

The first config is the baseline. For each config: build, benchmark (warmup +
repeats), score the evaluation text for quality against the baseline, then release
the model before the next one loads, so peak memory is the largest config's, not
the sum. Cancel is checked between prompts and tokens; configs that finished are
kept.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from playground.core import memory, quality
from playground.core.bench import ConfigResult, run_bench
from playground.core.config import RunConfig
from playground.core.pipeline import build_engine, preflight

Progress = Callable[[int, int, str], None]


@dataclass
class CompareResult:
    results: list[ConfigResult] = field(default_factory=list)
    cancelled: bool = False


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
    if len(configs) < 2:
        raise ValueError("compare: give at least two configs (the first is the baseline)")
    for config in configs:  # fail fast on a typo in the 4th config, before minutes of work
        preflight(config)
    per_config = (warmup + repeats) * len(conversations)
    total = per_config * len(configs)
    out = CompareResult()
    reference: quality.Reference | None = None
    baseline_replies: list[str] = []
    remote: list[tuple[ConfigResult, list[str], list[Any]]] = []  # endpoints to score
    for index, config in enumerate(configs):
        if should_stop():
            out.cancelled = True
            break
        label = config.format(only_changed=True) or "defaults"
        status(f"[{index + 1}/{len(configs)}] loading {label}")
        engine = build(config, progress=status)
        offset = index * per_config

        def step(done: int, _total: int, what: str, offset: int = offset, label: str = label):
            progress(offset + done, total, f"{label}: {what}")

        try:
            result = run_bench(engine, conversations, warmup=warmup, repeats=repeats,
                               progress=step, should_stop=should_stop)
        except RuntimeError:
            if should_stop():
                out.cancelled = True
                break
            raise
        if should_stop():  # stopped inside the last prompts: this config is incomplete
            out.cancelled = True
            break
        replies = [run["reply"] for run in result.runs[: len(conversations)]]
        if index == 0:
            baseline_replies = replies
        if with_quality and engine.model is None:  # a remote endpoint: scored at the end
            result.quality = {"greedy_match": quality.greedy_match(baseline_replies, replies)}
            remote.append((result, replies, [run.get("new_tokens") for run in
                                             result.runs[: len(conversations)]]))
        elif with_quality and (index == 0 or reference is not None):
            status(f"[{index + 1}/{len(configs)}] scoring quality of {label}")
            if reference is None:
                reference = quality.reference(engine.model, engine.tokenizer)
            result.quality = quality.compare_to(reference, engine.model)
            result.quality["greedy_match"] = quality.greedy_match(baseline_replies, replies)
        elif with_quality:
            result.quality = {"greedy_match": quality.greedy_match(baseline_replies, replies),
                              "note": "not available: the baseline is a remote endpoint"}
        result.info["baseline"] = index == 0
        out.results.append(result)
        on_result(result)
        del engine, result
        memory.release()
    if remote and reference is not None and not out.cancelled:
        _score_remote(configs[0], conversations, remote, build, status)
    return out


def _score_remote(baseline: RunConfig, conversations: list[Any], remote: list[Any],
                  build: Callable[..., Any], status: Callable[[str], None]) -> None:
    """Endpoints have no local logits: load the baseline once more and read how often its
    top next token is the one each endpoint chose along its replies."""
    status("scoring the endpoints' replies against the baseline")
    engine = build(baseline, progress=status)
    for result, replies, counted in remote:
        top1, note = quality.top1_on_replies(engine, conversations, replies, counted)
        result.quality.update(top1_agreement=top1, note=note)
    del engine
    memory.release()


def ratio_rows(results: list[ConfigResult]) -> list[dict[str, Any]]:
    """Each config's headline metrics and their ratio to the baseline (×1.00 for it)."""
    if not results:
        return []
    base = results[0].summary

    def ratio(value: float | None, reference: float | None) -> float | None:
        return value / reference if value is not None and reference else None

    rows = []
    for r in results:
        s, q = r.summary, r.quality or {}
        rows.append({
            "config": RunConfig.from_dict(r.config).format(only_changed=True) or "defaults",
            "ttft_ms": s["ttft_ms"]["mean"],
            "ttft_x": ratio(s["ttft_ms"]["mean"], base["ttft_ms"]["mean"]),
            "decode_tok_s": s["decode_tok_s"]["mean"],
            "decode_x": ratio(s["decode_tok_s"]["mean"], base["decode_tok_s"]["mean"]),
            "weights_mb": s["weights_mb"],
            "weights_x": ratio(s["weights_mb"], base["weights_mb"]),
            "peak_rss_mb": s["peak_rss_mb"],
            "kl_mean": q.get("kl_mean"),
            "top1_agreement": q.get("top1_agreement"),
            "ppl": q.get("ppl"),
            "greedy_match": q.get("greedy_match"),
        })
    return rows


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
