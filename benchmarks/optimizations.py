"""Optimization ratios on the default model (issue: the optimization pipeline).

Every config is built once; then rounds alternate A/B/C... over the same prompts so
that machine noise hits all configs alike. Reported: the median over rounds of each
config's mean decode tok/s, its ratio to fp32, and weights MB ratios.

    .venv/bin/python benchmarks/optimizations.py [--rounds 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics

from common import engines, mean_decode, prompts, save

CONFIGS = {
    "fp32": "quant=none",
    "int8-dynamic": "quant=int8-dynamic",
    "bf16": "quant=bf16",
    "bnb-4bit-nf4": "quant=bnb-4bit-nf4",
    "bnb-8bit": "quant=bnb-8bit",
    "pruned-0.5-structured": "prune=0.5,prune_method=structured",
    "kv_cache-off": "kv_cache=off",
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--only", nargs="*", help="config names to run (fp32 always runs)")
    parser.add_argument("--prompts", type=int, default=8, help="use the first N default prompts")
    args = parser.parse_args()
    common = f",threads={args.threads},max_new_tokens={args.max_new_tokens}"
    chosen = {k: v for k, v in CONFIGS.items() if not args.only or k in args.only or k == "fp32"}
    built = engines({k: v + common for k, v in chosen.items()})
    convs = prompts()[: args.prompts]
    for engine in built.values():  # warmup, untimed
        engine.chat(convs[0])
    rounds: dict[str, list[dict]] = {k: [] for k in built}
    for r in range(args.rounds):
        for name, engine in built.items():
            rounds[name].append(mean_decode(engine, convs))
        print(f"round {r + 1}/{args.rounds} done", flush=True)
    base_decode = statistics.median(x["decode_tok_s"] for x in rounds["fp32"])
    base_weights = built["fp32"].weights_mb
    rows = {}
    print(f"\n{'config':<24} {'decode tok/s':>12} {'× fp32':>7} {'range':>15} {'TTFT ms':>8} "
          f"{'weights MB':>10} {'× fp32':>7}")
    for name, engine in built.items():
        decode = [x["decode_tok_s"] for x in rounds[name]]
        med = statistics.median(decode)
        rows[name] = {
            "config": engine.config.format(only_changed=True),
            "decode_tok_s_median": med,
            "decode_tok_s_rounds": decode,
            "decode_ratio": med / base_decode,
            "ttft_ms_median": statistics.median(x["ttft_ms"] for x in rounds[name]),
            "weights_mb": engine.weights_mb,
            "weights_ratio": engine.weights_mb / base_weights,
            "notes": engine.info.get("notes", []),
        }
        row = rows[name]
        print(f"{name:<24} {med:>12.1f} {row['decode_ratio']:>7.2f} "
              f"{min(decode):>7.1f}–{max(decode):<7.1f} {row['ttft_ms_median']:>8.1f} "
              f"{engine.weights_mb:>10.1f} {row['weights_ratio']:>7.2f}")
    print("saved", save("optimizations", {"args": vars(args), "rows": rows}))


if __name__ == "__main__":
    main()
