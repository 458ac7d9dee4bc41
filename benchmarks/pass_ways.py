"""A decode pass of many sequences, each way a server can run it, the engine alone.

The batched native rows of one model, a pass of N sequences (one row each) timed on
one thread, on every core sharing each product (a barrier after each), and in parts of
whole sequences a thread each (qstep_rows_split): rounds alternating the ways, the
logits compared bit for bit each time. No server, no client: what each way costs when
nothing preempts it (serve/thread_choice.py picks among them inside the server).

    .venv/bin/python benchmarks/pass_ways.py [--config quant=gguf-native] [--sequences 8] [--rounds 30]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default="quant=gguf-native")
    parser.add_argument("--sequences", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()

    import torch

    from playground.core.config import RunConfig
    from playground.core.pipeline import build_engine
    from playground.core.serve.batching import batched_rows

    engine = build_engine(RunConfig.parse(args.config))
    rows = batched_rows(engine)
    if rows is None or not hasattr(rows, "parts"):
        raise SystemExit(f"{args.config}: no native batched rows here ({engine.info.get('decode_step')})")
    cores = os.cpu_count() or 1
    ways = {"one thread": (1, 0), f"{cores} threads sharing each product": (cores, 0),
            f"{cores} parts, a thread each": (cores, cores)}
    n = args.sequences
    if rows.parts(list(range(n)), list(range(n)), cores) is None:
        raise SystemExit(f"{n} sequences do not divide into {cores} parts: --sequences {cores} or more")
    ids = engine.prompt_ids([{"role": "user", "content": "What is the capital of France?"}])
    times: dict[str, list[float]] = {w: [] for w in ways}
    with torch.inference_mode():
        caches = [engine.make_cache() for _ in range(n)]
        rows(ids * n, list(range(len(ids))) * n, [s for s in range(n) for _ in ids], caches, [0])
        first = None
        for _ in range(args.rounds):
            for way, (threads, parts) in ways.items():
                torch.set_num_threads(threads)
                for cache in caches:  # the same position each time
                    for layer in cache.layers:
                        layer.length = len(ids)
                started = time.perf_counter()
                logits = rows([100] * n, [len(ids)] * n, list(range(n)), caches, list(range(n)),
                              split=parts)
                times[way].append(time.perf_counter() - started)
                first = logits if first is None else first
                if not torch.equal(first, logits):
                    raise SystemExit(f"{way}: other logits than the first way's")
    print(f"{platform.processor() or platform.machine()}, {cores} cores, {args.config}, "
          f"{n} sequences a pass, {args.rounds} rounds alternating, same bits each way")
    for way, seconds in times.items():
        print(f"{way:34s} median {1e3 * statistics.median(seconds):6.2f} ms  "
              f"min {1e3 * min(seconds):6.2f} ms")


if __name__ == "__main__":
    main()
