"""Where a served token's time goes at concurrency 1 and 8, and what batching could give.

One ``playground serve`` (threads auto, as a user starts it), ``playground load`` at
concurrency 1 and 8 in turn, rounds alternating. Around each step the server's own
``/metrics`` are read: how many passes ran and how long they took (decode passes and
passes with prompt rows), so a step's wall time splits into the worker's passes and
the rest (the HTTP hand-off, the client, the worker waiting for requests). Then, with
the server gone, the engine alone: passes of 1 and 8 sequences through the same
batched rows, on the threads the server gives them (cores − 1 for one row, every core
for a batch), which bounds what batching can give on this CPU whatever the server does.

    .venv/bin/python benchmarks/serve_profile.py [--config quant=gguf-native] [--requests 48] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from common import OUT, wait_healthy

PLAYGROUND = Path(sys.executable).parent / "playground"
PASSES = re.compile(r'playground_pass_seconds_(sum|count)\{prefill="(\w+)"\} (\S+)')


def passes(port: int) -> dict[tuple[str, str], float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return {(m[1], m[2]): float(m[3]) for m in PASSES.finditer(text)}


def step(port: int, concurrency: int, requests: int) -> dict[str, float]:
    before = passes(port)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "load.json"
        subprocess.run([PLAYGROUND, "load", "--endpoint", f"http://127.0.0.1:{port}/v1",
                        "--concurrency", str(concurrency), "--requests", str(requests),
                        "--max-tokens", "64", "--json", out], check=True,
                       stdout=subprocess.DEVNULL)
        load = json.loads(out.read_text())["load"]["steps"][0]
    after = passes(port)
    delta = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    wall = load["wall_s"]
    tokens = load["output_tok_s"] * wall
    decode_s, prefill_s = delta[("sum", "no")], delta[("sum", "yes")]
    decodes, prefills = delta[("count", "no")], delta[("count", "yes")]
    return {"concurrency": concurrency, "output_tok_s": load["output_tok_s"],
            "itl_p50_ms": load["itl_ms"]["p50"], "wall_s": wall, "tokens": tokens,
            "decode_passes": decodes, "decode_pass_ms": 1e3 * decode_s / max(1, decodes),
            "prefill_passes": prefills, "prefill_s": prefill_s, "decode_s": decode_s,
            "tokens_per_decode_pass": tokens / max(1, decodes + prefills),
            "in_passes": (decode_s + prefill_s) / wall}


def engine_alone(spec: str, sequences: tuple[int, ...] = (1, 8), passes_each: int = 40) -> dict[int, float]:
    """ms a decode pass of n sequences takes through the engine's batched rows alone."""
    import torch

    from playground.core.config import RunConfig
    from playground.core.optimize.device import WIDE_ROWS, leave_a_core, wide_pass_threads
    from playground.core.pipeline import build_engine
    from playground.core.serve.batching import batched_rows

    config = RunConfig.parse(spec)
    engine = build_engine(leave_a_core(config))
    narrow, wide = leave_a_core(config).threads, wide_pass_threads(config) or leave_a_core(config).threads
    rows = batched_rows(engine)
    ids = engine.prompt_ids([{"role": "user", "content": "What is the capital of France?"}])
    result = {}
    with torch.inference_mode():
        for n in sequences:
            torch.set_num_threads(wide if n >= WIDE_ROWS else narrow)
            caches = [engine.make_cache() for _ in range(n)]
            rows(ids * n, list(range(len(ids))) * n, [s for s in range(n) for _ in ids], caches, [0])
            times = []
            for k in range(passes_each):
                started = time.perf_counter()
                rows([100] * n, [len(ids) + k] * n, list(range(n)), caches, list(range(n)))
                times.append(time.perf_counter() - started)
            times.sort()
            result[n] = 1e3 * times[len(times) // 2]
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default="quant=gguf-native")
    parser.add_argument("--requests", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--port", type=int, default=8041)
    args = parser.parse_args()
    spec = f"{args.config},max_new_tokens=64"
    server = subprocess.Popen([PLAYGROUND, "serve", "--config", spec, "--port", str(args.port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rows = []
    try:
        wait_healthy(args.port, server)
        step(args.port, 8, 16)  # warm: the prompts' prefixes, the kernels' first calls
        for r in range(args.rounds):
            for c in (1, 8):
                row = step(args.port, c, args.requests)
                row["round"] = r + 1
                rows.append(row)
                print(json.dumps({k: round(v, 3) for k, v in row.items()}), flush=True)
    finally:
        server.terminate()
        server.wait(timeout=60)
    alone = engine_alone(args.config)
    print(json.dumps({"engine alone, ms a pass": alone}), flush=True)
    OUT.mkdir(exist_ok=True)
    (OUT / "serve_profile.json").write_text(json.dumps({"steps": rows, "alone_ms": alone}, indent=1))
    print("\n| round | concurrency | output tok/s | ITL p50 ms | decode pass ms (count) "
          "| prompt passes s (count) | worker in passes | tokens a pass |\n|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['round']} | {row['concurrency']} | {row['output_tok_s']:.1f} | "
              f"{row['itl_p50_ms']:.1f} | {row['decode_pass_ms']:.1f} ({row['decode_passes']:.0f}) | "
              f"{row['prefill_s']:.2f} ({row['prefill_passes']:.0f}) | {100 * row['in_passes']:.0f}% | "
              f"{row['tokens_per_decode_pass']:.1f} |")
    one, eight = alone[1], alone[8]
    print(f"\nengine alone: 1 sequence {one:.1f} ms a pass ({1e3 / one:.0f} tok/s), 8 sequences "
          f"{eight:.1f} ms ({8e3 / eight:.0f} tok/s): at most {one * 8 / eight:.2f}x from batching")


if __name__ == "__main__":
    main()
