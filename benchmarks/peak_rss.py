"""Peak RSS of a turn two ways, per config, in one process as a comparison runs them
(each config loaded after the previous one is released): the 50 Hz samples alone,
and the kernel's counter (VmHWM) reset when the turn starts, which the app reports.
2 threads, the default model, the shipped prompts' first two, 64 greedy tokens.

    .venv/bin/python benchmarks/peak_rss.py [SPEC ...]
"""

from __future__ import annotations

import sys

from playground.core import bench, memory
from playground.core.config import RunConfig
from playground.core.pipeline import build_engine

CONFIGS = ["threads=2", "quant=int8-dynamic,threads=2", "quant=bnb-4bit-nf4,threads=2",
           "prune=0.3,prune_method=structured,threads=2"]


def main() -> None:
    specs = sys.argv[1:] or CONFIGS
    prompts = bench.read_prompts(bench.default_prompts_path())[:2]
    print("| config | weights MB | steady RSS MB | turn peak, samples MB | "
          "turn peak, kernel counter MB | load peak MB |")
    print("|---|---|---|---|---|---|")
    engine = None
    for spec in specs:
        engine = None
        memory.release()
        config = RunConfig.parse(f"{spec},max_new_tokens=64")
        engine = build_engine(config)
        engine.chat(prompts[0])  # warm
        sampled, kernel = [], []
        for messages in prompts:
            with memory.RssSampler() as sampler:
                engine.chat(messages)
            sampled.append(sampler.sampled_peak_mb)
            kernel.append(sampler.peak_mb)
        info = engine.info
        print(f"| {spec} | {engine.weights_mb:.0f} | {info['rss_mb']:.0f} | "
              f"{max(sampled):.0f} | {max(kernel):.0f} | {info['load_peak_rss_mb']:.0f} |",
              flush=True)


if __name__ == "__main__":
    main()
