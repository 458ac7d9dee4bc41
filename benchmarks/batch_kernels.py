"""Why batching gains what it gains with the native kernels: each layer's matrix product
timed at 1 to 8 rows (µs per call and per row), and the whole batched step at 1-8
sequences. 2 threads, the default model as gguf-native unless --config says otherwise.

    .venv/bin/python benchmarks/batch_kernels.py [--config quant=gguf-native,threads=2]
"""

from __future__ import annotations

import argparse
import time

import torch

from playground.core.config import RunConfig
from playground.core.pipeline import build_engine
from playground.core.serve.batching import batched_rows


def per_call_us(fn, args, x, n: int) -> float:
    for _ in range(3):
        fn(x, *args)
    t = time.perf_counter()
    for _ in range(n):
        fn(x, *args)
    return (time.perf_counter() - t) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default="quant=gguf-native,threads=2")
    config = RunConfig.parse(parser.parse_args().config)
    engine = build_engine(config)
    torch.set_num_threads(config.threads or torch.get_num_threads())
    model, layer = engine.model, engine.model.model.layers[0]
    modules = {"q/k/v": layer.self_attn.__dict__.get("fused_qkv"), "o": layer.self_attn.o_proj,
               "gate/up": layer.mlp.__dict__.get("fused_gate_up"), "down": layer.mlp.down_proj,
               "LM head": model.lm_head}
    print("| matrix | " + " | ".join(f"{m} rows µs (per row)" for m in (1, 2, 4, 8)) + " |")
    print("|---|---|---|---|---|")
    with torch.inference_mode():
        for name, module in modules.items():
            if module is None or not hasattr(module, "kernel"):
                continue
            fn, args = module.kernel()
            cells = []
            for m in (1, 2, 4, 8):
                us = per_call_us(fn, args, torch.randn(m, module.in_features),
                                 20 if name == "LM head" else 200)
                cells.append(f"{us:.0f} ({us / m:.0f})")
            print(f"| {name} | " + " | ".join(cells) + " |")
        rows = batched_rows(engine)
        ids = engine.prompt_ids([{"role": "user", "content": "What is the capital of France?"}])
        print("\n| sequences in the pass | ms per pass | tok/s |\n|---|---|---|")
        for b in (1, 2, 4, 8):
            caches = [engine.make_cache() for _ in range(b)]
            rows(ids * b, list(range(len(ids))) * b, [s for s in range(b) for _ in ids],
                 caches, [0])
            t = time.perf_counter()
            for k in range(20):
                rows([100] * b, [len(ids) + k] * b, list(range(b)), caches, list(range(b)))
            dt = (time.perf_counter() - t) / 20
            print(f"| {b} | {dt * 1e3:.1f} | {b / dt:.0f} |")


if __name__ == "__main__":
    main()
