"""Measurement overhead: `playground bench` against a bare `model.generate()` loop.

Same model (default, fp32), same prompts, same greedy lengths, alternating rounds.
The bare decode rate is (n - 1) / (t(n) - t(1)): generate() with n new tokens
minus generate() with one, so it needs no streamer or hook of ours.

    .venv/bin/python benchmarks/overhead.py [--rounds 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from common import engines, prompts, save


def bare_decode(model, ids, n: int) -> float:
    with torch.inference_mode():
        start = time.perf_counter()
        model.generate(ids, max_new_tokens=1, min_new_tokens=1, do_sample=False)
        one = time.perf_counter() - start
        start = time.perf_counter()
        model.generate(ids, max_new_tokens=n, min_new_tokens=n, do_sample=False)
        full = time.perf_counter() - start
    return (n - 1) / (full - one)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    args = parser.parse_args()
    n = args.max_new_tokens
    engine = engines({"playground": f"threads={args.threads},max_new_tokens={n}"})["playground"]
    engine.eos_ids = set()  # both sides generate exactly n tokens
    convs = prompts()
    ids = [torch.tensor([engine.prompt_ids(c)]) for c in convs]
    engine.chat(convs[0])
    bare_decode(engine.model, ids[0], 8)
    ours, bare = [], []
    for r in range(args.rounds):
        ours.append(statistics.mean(engine.chat(c).metrics.decode_tok_s for c in convs))
        bare.append(statistics.mean(bare_decode(engine.model, i, n) for i in ids))
        print(f"round {r + 1}: playground {ours[-1]:.1f} tok/s, bare generate {bare[-1]:.1f} tok/s",
              flush=True)
    ratio = statistics.median(ours) / statistics.median(bare)
    print(f"median: playground {statistics.median(ours):.1f} / bare {statistics.median(bare):.1f}"
          f" = {ratio:.3f}×")
    save("overhead", {"args": vars(args), "playground": ours, "bare": bare, "ratio": ratio})


if __name__ == "__main__":
    main()
