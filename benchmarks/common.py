"""Helpers shared by the benchmark scripts: prompt set, alternating rounds, medians."""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from playground.core import bench
from playground.core.config import RunConfig
from playground.core.engine import Engine
from playground.core.pipeline import build_engine

OUT = Path(__file__).parent / "out"


def prompts() -> list[list[dict[str, str]]]:
    return bench.read_prompts(bench.default_prompts_path())


def engines(specs: dict[str, str]) -> dict[str, Engine]:
    built = {}
    for name, spec in specs.items():
        print(f"building {name}: {spec}", file=sys.stderr, flush=True)
        built[name] = build_engine(RunConfig.parse(spec))
    return built


def mean_decode(engine: Engine, conversations) -> dict[str, float]:
    """One pass over the prompts: mean decode tok/s, mean TTFT ms, tokens."""
    decode, ttft, tokens = [], [], 0
    for messages in conversations:
        engine.reset()
        m = engine.chat(messages).metrics
        if m.decode_tok_s:
            decode.append(m.decode_tok_s)
        ttft.append(m.ttft_ms)
        tokens += m.new_tokens
    return {"decode_tok_s": statistics.mean(decode), "ttft_ms": statistics.mean(ttft),
            "tokens": tokens}


def save(name: str, data: dict) -> Path:
    OUT.mkdir(exist_ok=True)
    path = OUT / f"{name}.json"
    path.write_text(json.dumps(data, indent=1))
    return path
