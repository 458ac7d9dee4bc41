"""Quantization that keeps the model: speed and quality of every quant value, and llama.cpp.

Every config is built once; rounds alternate fp32, int8-dynamic, int8-weight,
int4-weight, gguf-native and llama.cpp's ``llama-bench -p 0 -n 64 -t T`` on the same
GGUF (when benchmarks/llamacpp_build.sh has built it), so a busy moment hits all of
them alike. Reported: median decode tok/s over rounds, ratios to fp32, int8-dynamic
and llama.cpp, % of the bandwidth bound, weights MB, and KL / top-1 / perplexity
against fp32 on the evaluation text.

    .venv/bin/python benchmarks/quantization.py [--rounds 5] [--threads 2] [--prompts 4]
"""

from __future__ import annotations

import json
import statistics
import subprocess

from common import OUT, alternating_rounds, bench_parser, cpu_name, engines, prompts, save

from playground.core import models, quality
from playground.core.quant import weight_quant

CONFIGS = {
    "fp32": "quant=none",
    "int8-dynamic": "quant=int8-dynamic",
    "int8-weight": "quant=int8-weight",
    "int4-weight g32": "quant=int4-weight,quant_group=32",
    "int4-weight g128": "quant=int4-weight,quant_group=128",
    "gguf-native": "quant=gguf-native",
}
LLAMA_BENCH = OUT / "llamacpp" / "bin" / "llama-bench"


def llama_bench(threads: int, tokens: int) -> float | None:
    if not LLAMA_BENCH.is_file():
        return None
    out = subprocess.run(
        [str(LLAMA_BENCH), "-m", str(models.default_gguf_path()), "-p", "0", "-n", str(tokens),
         "-t", str(threads), "-r", "3", "-o", "json"],
        capture_output=True, text=True, check=True, timeout=300).stdout
    return float(json.loads(out)[0]["avg_ts"])


def one_pass(engine, conversations) -> dict[str, float]:
    decode, pct = [], []
    for messages in conversations:
        engine.reset()
        m = engine.chat(messages).metrics
        decode.append(m.decode_tok_s)
        pct.append(m.pct_of_bound or 0.0)
    return {"decode_tok_s": statistics.mean(decode), "pct_of_bound": statistics.mean(pct)}


def main() -> None:
    args = bench_parser().parse_args()
    common = f",threads={args.threads},max_new_tokens={args.max_new_tokens}"
    built = engines({k: v + common for k, v in CONFIGS.items()})
    convs = prompts()[: args.prompts]

    def with_llamacpp(engine, conversations):
        # llama.cpp runs once per round, right after the last torch config
        result = one_pass(engine, conversations)
        if engine is last:
            speed = llama_bench(args.threads, args.max_new_tokens)
            if speed is not None:
                rounds_llama.append({"decode_tok_s": speed, "pct_of_bound": None})
        return result

    last, rounds_llama = list(built.values())[-1], []
    rounds = alternating_rounds(built, convs, args.rounds, with_llamacpp)
    rounds["llama.cpp"] = rounds_llama
    print("scoring quality against fp32 on the evaluation text…", flush=True)
    ref = quality.reference(built["fp32"].model, built["fp32"].tokenizer)
    med = {k: statistics.median(x["decode_tok_s"] for x in v) for k, v in rounds.items() if v}
    rows = {}
    for name, engine in built.items():
        q = quality.compare_to(ref, engine.model)
        decode = [x["decode_tok_s"] for x in rounds[name]]
        rows[name] = {
            "config": engine.config.format(only_changed=True), "decode_tok_s_median": med[name],
            "decode_tok_s_rounds": decode, "x_fp32": med[name] / med["fp32"],
            "x_int8_dynamic": med[name] / med["int8-dynamic"],
            "x_llamacpp": med[name] / med["llama.cpp"] if "llama.cpp" in med else None,
            "pct_of_bound": statistics.median(x["pct_of_bound"] for x in rounds[name]),
            "weights_mb": engine.weights_mb, "decode_step": engine.info["decode_step"],
            "notes": engine.info.get("notes", []), **q,
        }
    if "llama.cpp" in med:
        rows["llama.cpp Q4_1"] = {"decode_tok_s_median": med["llama.cpp"],
                                  "decode_tok_s_rounds": [x["decode_tok_s"] for x in rounds["llama.cpp"]]}
    print(f"\nkernels: {weight_quant.backend()} ({'int16' if weight_quant.INT_ACT else 'f32'} "
          "activations on the native path)")
    print(f"{'config':<18} {'decode':>7} {'range':>13} {'×fp32':>6} {'×int8dyn':>8} {'×llama':>7} "
          f"{'%bound':>6} {'MB':>6} {'KL':>7} {'top-1':>6} {'ppl':>6}")
    for name, row in rows.items():
        rng = row["decode_tok_s_rounds"]
        if "kl_mean" not in row:
            print(f"{name:<18} {row['decode_tok_s_median']:>7.1f} {min(rng):>6.1f}–{max(rng):<6.1f}")
            continue
        llama = f"{row['x_llamacpp']:.2f}" if row["x_llamacpp"] else "–"
        print(f"{name:<18} {row['decode_tok_s_median']:>7.1f} {min(rng):>6.1f}–{max(rng):<6.1f} "
              f"{row['x_fp32']:>6.2f} {row['x_int8_dynamic']:>8.2f} {llama:>7} "
              f"{row['pct_of_bound']:>6.0f} {row['weights_mb']:>6.0f} {row['kl_mean']:>7.4f} "
              f"{row['top1_agreement']:>6.1%} {row['ppl']:>6.2f}")
    print("saved", save("quantization", {"args": vars(args), "rows": rows, "cpu": cpu_name()}))


if __name__ == "__main__":
    main()
