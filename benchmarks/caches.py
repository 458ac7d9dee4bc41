"""Prefix cache and response cache on the default model.

prefix_cache: a scripted five-turn chat (assets/prompts/chat5.txt) with the cache on
and off, alternating, several rounds; the 5th turn's TTFT is compared.
response_cache: the same greedy request twice; the repeat's TTFT and cache_hit.

    .venv/bin/python benchmarks/caches.py [--rounds 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics

from common import engines, save

from playground.core import bench, paths


def chat_ttfts(engine, turns) -> list[float]:
    engine.reset()
    history, ttfts = [], []
    for turn in turns:
        history = history + turn
        result = engine.chat(history)
        history = history + [{"role": "assistant", "content": result.reply}]
        ttfts.append(result.metrics.ttft_ms)
    return ttfts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    common = f"threads={args.threads},max_new_tokens=64"
    built = engines({"prefix-on": f"prefix_cache=on,{common}", "prefix-off": common,
                     "response-cache": f"response_cache=on,{common}"})
    turns = bench.read_prompts(paths.assets_dir() / "prompts" / "chat5.txt")
    runs: dict[str, list[list[float]]] = {"prefix-on": [], "prefix-off": []}
    for r in range(args.rounds):
        for name in runs:
            runs[name].append(chat_ttfts(built[name], turns))
        print(f"round {r + 1}/{args.rounds}", flush=True)
    fifth = {name: statistics.median(x[4] for x in values) for name, values in runs.items()}
    per_turn = {name: [statistics.median(x[i] for x in values) for i in range(5)]
                for name, values in runs.items()}
    print("\nTTFT ms per turn (median over rounds)")
    for name, values in per_turn.items():
        print(f"  {name:<11} " + "  ".join(f"{v:7.1f}" for v in values))
    ratio = fifth["prefix-off"] / fifth["prefix-on"]
    print(f"5th turn: off {fifth['prefix-off']:.1f} ms / on {fifth['prefix-on']:.1f} ms = {ratio:.2f}×")

    engine = built["response-cache"]
    request = [{"role": "user", "content": "What is the capital of France?"}]
    first = engine.chat(request)
    again = engine.chat(request)
    print(f"response cache: first TTFT {first.metrics.ttft_ms:.1f} ms hit={first.metrics.cache_hit}; "
          f"repeat TTFT {again.metrics.ttft_ms:.3f} ms hit={again.metrics.cache_hit}")
    save("caches", {"args": vars(args), "per_turn_ttft_ms": per_turn, "fifth_turn_ratio": ratio,
                    "response_cache": {"first_ttft_ms": first.metrics.ttft_ms,
                                       "repeat_ttft_ms": again.metrics.ttft_ms,
                                       "repeat_cache_hit": again.metrics.cache_hit}})


if __name__ == "__main__":
    main()
