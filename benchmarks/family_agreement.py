"""Does the playground read a family's GGUF as llama.cpp does? Next-token distributions
of both on the same file and the same token ids.

llama-server (benchmarks/llamacpp_build.sh) decodes greedily from a prompt given as token
ids and returns each step's top-k probabilities (``n_probs``, from the raw logits); the
playground (``quant=gguf-native``) is fed the same ids and the tokens llama.cpp chose, and
its probabilities are read at the same positions. Per step: whether the top-1 token is
the same, and the KL divergence on llama.cpp's top-k (both renormalised over those k).
A wrong rotary table, window, norm or scale would show as a large KL; what remains is
llama.cpp's own rounding (its activations go to int8 on Q4/Q8 files, ours stay int16).
Never part of ``make test``.

    .venv/bin/python benchmarks/family_agreement.py --rungs gemma-3-1b,qwen3-0.6b,llama-3.2-1b
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

from common import OUT, wait_healthy

LLAMA = OUT / "llamacpp" / "bin" / "llama-server"
PROMPT = ("The history of the printing press begins in the fifteenth century, when a "
          "goldsmith in Mainz combined movable metal type with an oil-based ink and")


def llama_cpp(path: Path, ids: list[int], steps: int, k: int, port: int = 8089) -> list[dict]:
    import httpx

    server = subprocess.Popen([str(LLAMA), "-m", str(path), "-t", "2", "-c", "2048",
                               "--port", str(port), "-np", "1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_healthy(port, server, limit_s=120)
        reply = httpx.post(f"http://127.0.0.1:{port}/completion", timeout=600, json={
            "prompt": ids, "n_predict": steps, "temperature": 0, "n_probs": k,
            "post_sampling_probs": False, "cache_prompt": False}).json()
        return reply["completion_probabilities"]
    finally:
        server.terminate()
        server.wait()


def playground(path: Path, ids: list[int], chosen: list[int]) -> list[list[float]]:
    import torch

    from playground.core.config import RunConfig
    from playground.core.pipeline import build_engine

    engine = build_engine(RunConfig.parse(f"model={path},quant=gguf-native"))
    out = []
    with torch.inference_mode():
        cache = engine.make_cache()
        logits = engine.decoder.prefill(ids, cache, lambda: False)
        for token in chosen:
            out.append(torch.log_softmax(logits.float(), -1).tolist())
            logits = engine.decoder.logits([token], cache)
    return out


def compare(path: Path, steps: int, k: int) -> dict:
    from playground.core.config import RunConfig
    from playground.core.pipeline import build_engine

    # long enough to pass Gemma 3's 512-token window, so the local layers' windows count
    ids = build_engine(RunConfig.parse(f"model={path},quant=gguf-native")).prompt_ids(
        " ".join([PROMPT] * 24))
    theirs = llama_cpp(path, ids, steps, k)
    chosen = [step["id"] for step in theirs]
    ours = playground(path, ids, chosen)
    same, kls = 0, []
    for step, logp in zip(theirs, ours, strict=True):
        top = step["top_logprobs"]
        tids = [t["id"] for t in top]
        same += int(max(range(len(logp)), key=logp.__getitem__) == tids[0])
        p = [math.exp(t["logprob"]) for t in top]
        q = [math.exp(logp[i]) for i in tids]
        sp, sq = sum(p), sum(q)
        kls.append(sum(a / sp * math.log((a / sp) / (b / sq)) for a, b in zip(p, q, strict=True)))
    return {"file": str(path.relative_to(OUT)), "prompt_tokens": len(ids), "steps": len(kls),
            "top1_agree": same / len(kls), "kl_topk_mean": sum(kls) / len(kls),
            "kl_topk_max": max(kls), "k": k}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rungs", default="gemma-3-1b,qwen3-0.6b,llama-3.2-1b")
    parser.add_argument("--formats", default="Q8_0,Q4_K_M")
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args()
    rows = []
    for rung in args.rungs.split(","):
        for fmt in args.formats.split(","):
            path = OUT / "ladder" / rung / f"{fmt}.gguf"
            if not path.is_file():
                print(f"skip {path}: make it with benchmarks/ladder.py make", file=sys.stderr)
                continue
            rows.append(compare(path, args.steps, args.k))
            print(json.dumps(rows[-1]), flush=True)
    out = OUT / "family_agreement.json"
    done = {r["file"] for r in rows}
    old = json.loads(out.read_text()) if out.is_file() else []
    out.write_text(json.dumps([r for r in old if r["file"] not in done] + rows, indent=1))


if __name__ == "__main__":
    main()
