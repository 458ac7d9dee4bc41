"""backend=llamacpp's kv_type at a 4,000-token context: KV memory, decode speed, KL.

One long prompt (this repository's own prose, cut to --tokens tokens) through the
default model's GGUF, flash attention on for every KV type (llama.cpp quantizes the V
cache only with it), 2 threads:
- KV memory: llama.cpp's own "KV buffer size" (the engine's llama_cpp_buffers_mb);
- decode: `playground bench --ignore-eos` on that prompt, 64 tokens after it, the types
  alternating round by round;
- KL and top-1 against f16's cache: every position's logits over the whole prompt
  (llama.cpp's logits_all context, as the quality scoring reads them), the last 512
  positions reported apart, where each reads the longest stretch of quantized cache.

    .venv/bin/python benchmarks/llamacpp_kv.py [--rounds 2] [--tokens 3900]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TYPES = ("f16", "q8_0", "q4_0")


def spec(kv: str) -> str:
    return f"backend=llamacpp,kv_type={kv},flash_attn=on,threads=2,max_new_tokens=64"


def long_prompt(tokenizer, tokens: int) -> tuple[str, list[int]]:
    text = "\n\n".join(p.read_text() for p in (ROOT / "README.md", ROOT / "BENCHMARKS.md"))
    ids = tokenizer(text, add_special_tokens=False)["input_ids"][:tokens]
    return tokenizer.decode(ids), ids


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=3900)
    args = parser.parse_args()

    from playground.core import quality
    from playground.core.config import RunConfig
    from playground.core.pipeline import build_engine

    kv_mb, logits = {}, {}
    for kv in TYPES:
        engine = build_engine(RunConfig.parse(spec(kv)))
        text, ids = long_prompt(engine.tokenizer, args.tokens)
        kv_mb[kv] = engine.info["llama_cpp_buffers_mb"]["kv"]
        logits[kv] = engine.model.row_logits(ids)
        del engine
    out = {"tokens": len(ids), "kv_mb": kv_mb, "quality": {}, "decode_tok_s": {k: [] for k in TYPES},
           "ttft_ms": {k: [] for k in TYPES}}
    for kv in TYPES[1:]:
        kl = quality.kl_divergence(logits["f16"], logits[kv])
        out["quality"][kv] = {
            "kl_mean": float(kl.mean()), "kl_last_512": float(kl[-512:].mean()),
            "top1": quality.top1_agreement(logits["f16"], logits[kv]),
            "top1_last_512": quality.top1_agreement(logits["f16"][-512:], logits[kv][-512:])}
    logits.clear()

    with tempfile.TemporaryDirectory() as tmp:
        prompt = Path(tmp) / "long.jsonl"
        prompt.write_text(json.dumps({"messages": [{"role": "user", "content": text}]}) + "\n")
        for _round in range(args.rounds):
            for kv in TYPES:
                result = Path(tmp) / f"{kv}.json"
                subprocess.run([ROOT / ".venv/bin/playground", "bench", "--config", spec(kv),
                                "--prompts", prompt, "--ignore-eos", "--warmup", "0",
                                "--repeats", "1", "--json", result], check=True,
                               stdout=subprocess.DEVNULL)
                summary = json.loads(result.read_text())["results"][0]["summary"]
                out["decode_tok_s"][kv].append(summary["decode_tok_s"]["p50"])
                out["ttft_ms"][kv].append(summary["ttft_ms"]["p50"])
    json.dump(out, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
