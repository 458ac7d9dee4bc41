"""Soak: many chat turns in one engine, then many config switches in one process (as
the app's worker does them: the previous model released, the next built), RSS read
after each. A leak shows as RSS after the last far above RSS after the first ten.

    .venv/bin/python benchmarks/soak.py [--turns 500] [--switches 50]
"""

from __future__ import annotations

import argparse
import time

from playground.core import memory, pipeline
from playground.core.config import RunConfig

PROMPTS = ["What is the capital of France?", "Name two colours.", "What is 2+2?",
           "Say hello in French.", "Give me one tip for fast Python."]
SWITCH_CONFIGS = ["threads=2,max_new_tokens=4", "quant=int8-dynamic,threads=2,max_new_tokens=4",
                  "quant=int4-weight,threads=2,max_new_tokens=4",
                  "quant=gguf-native,threads=2,max_new_tokens=4"]


def soak_turns(turns: int) -> None:
    engine = pipeline.build_engine(RunConfig.parse("threads=2,max_new_tokens=8,prefix_cache=on"))
    messages: list[dict[str, str]] = []
    rss: list[float] = []
    started = time.perf_counter()
    for i in range(turns):
        if i % 20 == 0:  # a new chat every 20 turns keeps the context bounded
            messages = []
            engine.reset()
        messages.append({"role": "user", "content": PROMPTS[i % len(PROMPTS)]})
        result = engine.chat(messages)
        messages.append({"role": "assistant", "content": result.reply})
        rss.append(memory.rss_mb())
    first10 = rss[9]
    print(f"{turns} chat turns in {time.perf_counter() - started:.0f} s: RSS after turn 10 "
          f"{first10:.0f} MB, after turn {turns} {rss[-1]:.0f} MB "
          f"({rss[-1] / first10:.3f}×), max {max(rss):.0f} MB")


def soak_switches(switches: int) -> None:
    engine = None
    rss: list[float] = []
    started = time.perf_counter()
    for i in range(switches):
        engine = None
        memory.release()
        engine = pipeline.build_engine(RunConfig.parse(SWITCH_CONFIGS[i % len(SWITCH_CONFIGS)]))
        engine.chat([{"role": "user", "content": "Hello."}])
        rss.append(memory.rss_mb())
    n = len(SWITCH_CONFIGS)
    # compare like with like: the same config after the first ten switches and at the end
    last = len(rss) - 1
    early = max(j for j in range(min(10, len(rss))) if j % n == last % n)
    print(f"{switches} config switches ({', '.join(c.split(',')[0] for c in SWITCH_CONFIGS)} "
          f"in turn) in {time.perf_counter() - started:.0f} s: RSS after switch {early + 1} "
          f"{rss[early]:.0f} MB, after switch {switches} (same config) {rss[-1]:.0f} MB "
          f"({rss[-1] / rss[early]:.3f}×), max {max(rss):.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=500)
    parser.add_argument("--switches", type=int, default=50)
    args = parser.parse_args()
    soak_turns(args.turns)
    soak_switches(args.switches)


if __name__ == "__main__":
    main()
