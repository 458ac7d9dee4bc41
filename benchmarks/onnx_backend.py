"""torch vs ONNX Runtime GenAI on the default model: speed next to quality, one run.

Every config is built once (the ONNX ones export into the cache first: the export's
time and size are reported); rounds then alternate all configs over the same prompts,
so a busy moment hits them alike. Reported: median decode tok/s and TTFT, ratios to
torch fp32 and torch int8-dynamic, weights MB, KL / top-1 / perplexity against torch
fp32 on the evaluation text (the ONNX model scores its own logits), and how many
greedy replies equal torch fp32's. Then a five-turn chat with the ONNX int4 config,
prefix cache on and off: TTFT per turn.

    .venv/bin/python benchmarks/onnx_backend.py [--rounds 5] [--threads 2] [--prompts 4]
"""

from __future__ import annotations

import statistics

from common import alternating_rounds, bench_parser, cpu_name, engines, prompts, save

from playground.core import quality

CONFIGS = {
    "torch fp32": "quant=none",
    "torch int8-dynamic": "quant=int8-dynamic",
    "torch int8-weight": "quant=int8-weight",
    "torch int4-weight": "quant=int4-weight,quant_group=32",
    "onnx fp32": "backend=onnxruntime,quant=none",
    "onnx int8": "backend=onnxruntime,quant=int8-weight,quant_group=32",
    "onnx int4": "backend=onnxruntime,quant=int4-weight,quant_group=32",
}
TURNS = ["Hi! Who are you?", "Name three colours.", "Which of them is warmest?",
         "Write one sentence about it.", "Now say it shorter."]


def one_pass(engine, conversations) -> dict[str, list]:
    out: dict[str, list] = {"decode": [], "ttft": [], "replies": [], "pct": []}
    for messages in conversations:
        engine.reset()
        result = engine.chat(messages)
        out["decode"].append(result.metrics.decode_tok_s)
        out["ttft"].append(result.metrics.ttft_ms)
        out["pct"].append(result.metrics.pct_of_bound or 0.0)
        out["replies"].append(result.reply)
    return out


def five_turns(engine) -> list[dict]:
    engine.reset()
    messages, rows = [], []
    for text in TURNS:
        messages.append({"role": "user", "content": text})
        result = engine.chat(messages)
        rows.append({"ttft_ms": result.metrics.ttft_ms, "prompt_tokens": result.metrics.prompt_tokens,
                     "reused": result.prefix_reused})
        messages.append({"role": "assistant", "content": result.reply})
    return rows


def main() -> None:
    args = bench_parser().parse_args()
    common = f",threads={args.threads},max_new_tokens={args.max_new_tokens}"
    built = engines({k: v + common for k, v in CONFIGS.items()})
    convs = prompts()[: args.prompts]
    rounds = alternating_rounds(built, convs, args.rounds, one_pass)
    print("scoring quality against torch fp32 on the evaluation text…", flush=True)
    base = built["torch fp32"]
    ref = quality.reference(base.model, base.tokenizer)
    base_replies = rounds["torch fp32"][0]["replies"]
    med = {k: statistics.median(statistics.mean(p["decode"]) for p in v) for k, v in rounds.items()}
    rows = {}
    for name, engine in built.items():
        q = quality.compare_to(ref, engine.model)
        rows[name] = {
            "config": engine.config.format(only_changed=True),
            "decode_tok_s_median": med[name],
            "decode_tok_s_rounds": [statistics.mean(p["decode"]) for p in rounds[name]],
            "ttft_ms_median": statistics.median(t for p in rounds[name] for t in p["ttft"]),
            "x_torch_fp32": med[name] / med["torch fp32"],
            "x_int8_dynamic": med[name] / med["torch int8-dynamic"],
            "pct_of_bound": statistics.median(x for p in rounds[name] for x in p["pct"]),
            "weights_mb": engine.weights_mb,
            "greedy_match": quality.greedy_match(base_replies, rounds[name][0]["replies"]),
            "export_s": engine.info.get("export_s"), "notes": engine.info.get("notes", []), **q,
        }
    chat = {}
    for prefix in ("on", "off"):
        spec = f"backend=onnxruntime,quant=int4-weight,prefix_cache={prefix}{common}"
        engine = engines({f"onnx int4 prefix {prefix}": spec})[f"onnx int4 prefix {prefix}"]
        five_turns(engine)  # warmup
        chat[prefix] = five_turns(engine)
        del engine
    print(f"\n{'config':<20} {'decode':>7} {'range':>13} {'TTFT':>6} {'×fp32':>6} {'×int8dyn':>8} "
          f"{'%bound':>6} {'MB':>6} {'KL':>7} {'top-1':>6} {'ppl':>6} {'greedy':>6}")
    for name, row in rows.items():
        rng = row["decode_tok_s_rounds"]
        print(f"{name:<20} {row['decode_tok_s_median']:>7.1f} {min(rng):>6.1f}–{max(rng):<6.1f} "
              f"{row['ttft_ms_median']:>6.0f} {row['x_torch_fp32']:>6.2f} {row['x_int8_dynamic']:>8.2f} "
              f"{row['pct_of_bound']:>6.0f} {row['weights_mb']:>6.0f} {row['kl_mean']:>7.4f} "
              f"{row['top1_agreement']:>6.1%} {row['ppl']:>6.2f} {row['greedy_match']:>6.0%}")
    for prefix, turns in chat.items():
        print(f"onnx int4, prefix_cache={prefix}: TTFT per turn "
              + ", ".join(f"{t['ttft_ms']:.0f} ms ({t['reused']}/{t['prompt_tokens']} reused)"
                          for t in turns))
    print("saved", save("onnx_backend", {
        "args": vars(args), "rows": rows, "five_turns": chat,
        "cpu": cpu_name()}))


if __name__ == "__main__":
    main()
