"""What backend=llamacpp's loop costs a token, against llama.cpp's own clock.

llama.cpp counts the time spent inside ``llama_decode`` (``llama_perf_context``); the
engine's decode tok/s is wall clock. Their difference is what the binding and the
engine's loop (sampling, detokenizing, the timeline) add, whatever else the machine
is doing. Turns alternate torch's thread count (2, 1), the one setting of ours that
could compete with llama.cpp's threads. Benchmarks only, never part of `make test`:

    .venv/bin/python benchmarks/llamacpp_overhead.py benchmarks/out/ladder/qwen2.5-0.5b/Q4_K_M.gguf
"""

from __future__ import annotations

import argparse
import statistics


def main() -> None:
    import llama_cpp
    import torch

    from playground.core.config import RunConfig
    from playground.core.pipeline import build_engine

    parser = argparse.ArgumentParser()
    parser.add_argument("gguf")
    parser.add_argument("--turns", type=int, default=6)
    parser.add_argument("--spec", default="threads=2")
    args = parser.parse_args()
    engine = build_engine(RunConfig.parse(
        f"model={args.gguf},backend=llamacpp,max_new_tokens=64,{args.spec}"))
    engine.eos_ids = set()  # random weights or not: every turn decodes 64 tokens
    messages = [{"role": "user", "content": "Write a short story about a lighthouse keeper."}]
    ctx = engine.llm._ctx.ctx
    engine.chat(messages)  # warm
    seen: dict[int, list[tuple[float, float]]] = {2: [], 1: []}
    for _ in range(args.turns):
        for threads in seen:
            torch.set_num_threads(threads)
            llama_cpp.llama_perf_context_reset(ctx)
            metrics = engine.chat(messages).metrics
            perf = llama_cpp.llama_perf_context(ctx)
            seen[threads].append((metrics.decode_tok_s, perf.t_eval_ms / perf.n_eval))
    for threads, rows in seen.items():
        wall = statistics.median(r[0] for r in rows)
        inside = statistics.median(r[1] for r in rows)
        print(f"torch threads {threads}: engine decode {wall:.1f} tok/s ({1000 / wall:.2f} ms), "
              f"inside llama_decode {inside:.2f} ms a token ({1000 / inside:.1f} tok/s): the "
              f"binding and the loop add {1000 / wall - inside:.2f} ms "
              f"({(1000 / wall - inside) / inside:.1%}); turns {[round(r[0], 1) for r in rows]}")


if __name__ == "__main__":
    main()
