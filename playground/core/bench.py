"""Benchmark one engine over a prompt set (or a scripted chat) and build the result file.

Warmup runs are untimed and excluded from ``runs``; summaries are mean/p50/p90/p99
over the measured runs. The result file follows docs/ARCHITECTURE.md (schema 1).
"""

from __future__ import annotations

import csv
import json
import os
import platform
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playground.core import paths
from playground.core.engine import Engine, TurnResult
from playground.core.messages import MessageError, check_messages, check_text
from playground.core.metrics import summarize

SCHEMA = 1
Progress = Callable[[int, int, str], None]  # done, total, label


@dataclass
class ConfigResult:
    config: dict[str, Any]
    summary: dict[str, Any]
    runs: list[dict[str, Any]]
    info: dict[str, Any] = field(default_factory=dict)
    quality: dict[str, Any] | None = None
    turns: list[TurnResult] = field(default_factory=list, repr=False)  # not in result files

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "summary": self.summary,
            "quality": self.quality,
            "info": self.info,
            "runs": self.runs,
        }


def default_prompts_path() -> Path:
    return paths.assets_dir() / "prompts" / "default.txt"


def read_prompts(path: Path) -> list[list[dict[str, str]]]:
    """Conversations from a text file (one prompt per line) or a .jsonl of messages,
    every one checked (before any model loads); errors name the file and line."""
    text = read_text(path)
    conversations: list[list[dict[str, str]]] = []
    if str(path).endswith(".jsonl"):
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as exc:
                raise ValueError(f"{path}:{number}: not JSON ({exc}); each line is "
                                 '{"messages": [{"role": ..., "content": ...}]}') from None
            if not isinstance(record, dict) or "messages" not in record:
                raise ValueError(f"{path}:{number}: expected "
                                 '{"messages": [{"role": ..., "content": ...}]}')
            try:
                conversations.append(check_messages(record["messages"]))
            except MessageError as exc:
                raise ValueError(f"{path}:{number}: {exc}") from None
    else:
        conversations = [[{"role": "user", "content": p}] for p in _lines(text)]
    if not conversations:
        raise ValueError(f"{path}: no prompts found")
    return conversations


def read_text(path: Path) -> str:
    """A prompt file's text; one line naming the file when it is missing or not UTF-8."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at "
                         f"offset {exc.start}); prompt files must be UTF-8") from None
    except IsADirectoryError:
        raise ValueError(f"{path}: is a folder; give a prompt file") from None


def read_lines(path: Path) -> list[str]:
    return _lines(read_text(path))


def _lines(text: str) -> list[str]:
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def with_system(messages: list[dict[str, str]], system: str | None) -> list[dict[str, str]]:
    if system:
        check_text(system, "--system")
    return ([{"role": "system", "content": system}] if system else []) + list(messages)


def hardware() -> dict[str, Any]:
    import torch
    import transformers

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "cpu": _cpu_name(),
        "cores": os.cpu_count(),
        "gpu": gpu,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "os": platform.platform(),
    }


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_record(result: TurnResult, turn: int | None = None) -> dict[str, Any]:
    m = result.metrics
    record = {
        "prompt_tokens": m.prompt_tokens,
        "new_tokens": m.new_tokens,
        "ttft_ms": m.ttft_ms,
        "itl_ms": m.itl_ms,
        "e2e_s": m.e2e_s,
        "decode_tok_s": m.decode_tok_s,
        "prefill_tok_s": m.prefill_tok_s,
        "peak_rss_mb": m.peak_rss_mb,
        "cache_hit": m.cache_hit,
        "draft_acceptance": m.draft_acceptance,
        "prefix_reused": result.prefix_reused,
        "finish_reason": result.finish_reason,
        "reply": result.reply,
    }
    if turn is not None:
        record["turn"] = turn
    return record


def summary_of(runs: list[TurnResult], weights_mb: float | None) -> dict[str, Any]:
    ms = [r.metrics for r in runs]
    itl = [v for m in ms for v in m.itl_ms]
    cuda = [m.cuda_peak_mb for m in ms if m.cuda_peak_mb is not None]
    bound = ms[0].bandwidth_bound_tok_s if ms else None
    decode = summarize([m.decode_tok_s for m in ms])
    return {
        "ttft_ms": summarize([m.ttft_ms for m in ms]),
        "decode_tok_s": decode,
        "prefill_tok_s": summarize([m.prefill_tok_s for m in ms]),
        "itl_ms": summarize(itl),
        "e2e_s": summarize([m.e2e_s for m in ms]),
        # None where nothing was measured here (a remote endpoint), not a 0 MB that misleads
        "peak_rss_mb": max((m.peak_rss_mb for m in ms if m.peak_rss_mb is not None),
                           default=None),
        "cuda_peak_mb": max(cuda) if cuda else None,
        "weights_mb": weights_mb,
        "bandwidth_bound_tok_s": bound,
        "pct_of_bound": 100.0 * decode["mean"] / bound if bound and decode["mean"] else None,
        "cache_hits": sum(1 for m in ms if m.cache_hit),
        "draft_acceptance": summarize([m.draft_acceptance for m in ms])["mean"],
    }


def run_bench(
    engine: Engine,
    conversations: list[list[dict[str, str]]],
    *,
    warmup: int = 1,
    repeats: int = 3,
    chat: bool = False,
    progress: Progress = lambda done, total, label: None,
    should_stop: Callable[[], bool] = lambda: False,
) -> ConfigResult:
    """Run every conversation ``warmup`` times untimed, then ``repeats`` times measured.

    With ``chat`` the conversations are the user turns of one dialogue, sent in
    order with the model's replies kept in the context.
    """
    units = 1 if chat else len(conversations)
    total = (warmup + repeats) * units
    done = 0
    measured: list[TurnResult] = []
    records: list[dict[str, Any]] = []
    for round_ in range(warmup + repeats):
        timed = round_ >= warmup
        label = f"repeat {round_ - warmup + 1}/{repeats}" if timed else f"warmup {round_ + 1}"
        if chat:
            results = _run_chat(engine, conversations, should_stop)
            if timed:
                measured += results
                records += [run_record(r, turn=i + 1) for i, r in enumerate(results)]
            done += 1
            progress(done, total, label)
            continue
        for messages in conversations:
            if should_stop():
                break
            engine.reset()  # independent prompts: no KV carried between them
            result = engine.chat(messages, should_stop=should_stop)
            if timed and not result.cancelled:  # a stopped run is not a measurement
                measured.append(result)
                records.append(run_record(result))
            done += 1
            progress(done, total, label)
    if not measured:
        raise RuntimeError("benchmark stopped before any measured run")
    info = {k: v for k, v in engine.info.items() if _jsonable(v)}
    return ConfigResult(engine.config.to_dict(), summary_of(measured, engine.weights_mb), records,
                        info, turns=measured)


def _run_chat(engine: Engine, turns: list[list[dict[str, str]]], should_stop) -> list[TurnResult]:
    engine.reset()
    history: list[dict[str, str]] = []
    results = []
    for turn in turns:
        if should_stop():
            break
        history = history + turn
        result = engine.chat(history, should_stop=should_stop)
        history = history + [{"role": "assistant", "content": result.reply}]
        results.append(result)
    return results


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
        return True
    except (TypeError, ValueError):
        return False


def result_file(results: list[ConfigResult]) -> dict[str, Any]:
    return {"schema": SCHEMA, "hardware": hardware(), "results": [r.to_dict() for r in results]}


CSV_FIELDS = (
    "ttft_ms", "decode_tok_s", "prefill_tok_s", "itl_ms", "e2e_s",
)


def write_csv(results: list[ConfigResult], path: Path) -> None:
    """One row per config: its spec string and the summary (mean and p50/p90/p99)."""
    from playground.core.config import RunConfig

    rows = []
    for r in results:
        row: dict[str, Any] = {"config": RunConfig.from_dict(r.config).format(only_changed=True)}
        for name in CSV_FIELDS:
            for stat, value in r.summary[name].items():
                row[f"{name}_{stat}"] = value
        for name in ("peak_rss_mb", "cuda_peak_mb", "weights_mb", "bandwidth_bound_tok_s",
                     "pct_of_bound", "cache_hits"):
            row[name] = r.summary.get(name)
        for name, value in (r.quality or {}).items():
            row[f"quality_{name}"] = value
        row["runs"] = len(r.runs)
        rows.append(row)
    fieldnames = list(dict.fromkeys(k for row in rows for k in row))
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fieldnames)
        writer.writeheader()
        writer.writerows(rows)
