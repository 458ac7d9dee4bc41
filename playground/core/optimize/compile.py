"""compile=on: torch.compile of the one-token decode step with a static KV cache.

The static cache keeps every decode step the same shape, so the graph compiles once.
Prefill has a new length every turn and stays eager. Compilation happens in a warmup
turn at build time; its duration is reported as ``compile_s`` and never lands in a
measured turn's TTFT.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from typing import Any

from playground.core.config import RunConfig
from playground.core.decode.decoders import ForwardDecoder
from playground.core.optimize.base import Build, Optimization

MAX_CACHE_LEN = 2048


class Compile(Optimization):
    name = "compile"
    stage = "engine"

    def wanted(self, cfg: RunConfig) -> bool:
        return cfg.compile

    def check(self, cfg: RunConfig, device: str) -> str | None:
        if not cfg.kv_cache:
            return "compile: 'on' needs kv_cache=on (it compiles the cached decode step)"
        if cfg.prefix_cache:
            return "compile: 'on' cannot be combined with prefix_cache=on yet (static cache)"
        if cfg.quant.startswith("bnb") or cfg.quant == "int8-dynamic":
            return f"compile: 'on' is not supported with quant={cfg.quant}; use none, fp16 or bf16"
        if device == "cpu" and not (shutil.which("cc") or shutil.which("gcc")):
            return "compile: 'on' on cpu needs a C compiler (cc/gcc) on PATH"
        return None

    def apply(self, ctx: Build) -> str | None:
        import torch
        from transformers import StaticCache

        engine = ctx.engine
        model = engine.model
        limit = getattr(model.config, "max_position_embeddings", MAX_CACHE_LEN) or MAX_CACHE_LEN
        length = min(limit, MAX_CACHE_LEN)
        eager = model.forward
        compiled = torch.compile(model.forward, dynamic=False)

        def forward(input_ids: Any, **kwargs: Any) -> Any:
            step = compiled if input_ids.shape[1] == 1 else eager
            return step(input_ids=input_ids, **kwargs)

        engine.decoder = ForwardDecoder(
            forward, lambda: StaticCache(config=model.config, max_cache_len=length), ctx.device,
            "compiled transformers forward (compile=on)")
        started = time.perf_counter()
        _warmup(engine)
        ctx.info["compile_s"] = time.perf_counter() - started
        return f"torch.compile: decode step compiled in {ctx.info['compile_s']:.1f} s (static cache)"


def _warmup(engine: Any) -> None:
    """Two short turns: the first compiles, the second checks no recompile is pending."""
    saved, cache = engine.config, engine.response_cache
    engine.config = dataclasses.replace(saved, max_new_tokens=4, response_cache=False)
    engine.response_cache = None
    try:
        for _ in range(2):
            engine.chat([{"role": "user", "content": "Hello"}])
    finally:
        engine.config, engine.response_cache = saved, cache
        engine.reset()
