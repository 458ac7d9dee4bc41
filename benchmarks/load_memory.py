"""Steady RSS after loading vs the load's peak, per config: each in a fresh process, then
all in one process switching from config to config as the app does (the previous model
released first). 2 threads, the default model.

    .venv/bin/python benchmarks/load_memory.py [SPEC ...]

With specs, those in that order (a spec may repeat: switching back must land where
a fresh start does), e.g. threads=2 quant=int8-dynamic,threads=2
quant=bnb-4bit-nf4,threads=2 threads=2.
"""

from __future__ import annotations

import subprocess
import sys

CONFIGS = ["threads=2", "quant=int8-dynamic,threads=2", "quant=int8-weight,threads=2",
           "quant=int4-weight,threads=2", "quant=gguf-native,threads=2"]

ONE = """
import sys
from playground.core import memory, pipeline
from playground.core.config import RunConfig
engine = None
for spec in sys.argv[1:]:
    engine = None
    memory.release()
    engine = pipeline.build_engine(RunConfig.parse(spec))
    i = engine.info
    print(f"{spec}|{engine.weights_mb:.0f}|{i['rss_mb']:.0f}|{i['load_peak_rss_mb']:.0f}", flush=True)
"""


def run(specs: list[str]) -> list[list[str]]:
    out = subprocess.run([sys.executable, "-c", ONE, *specs], capture_output=True, text=True,
                         check=True).stdout
    return [line.split("|") for line in out.splitlines() if line.count("|") == 3]


def main() -> None:
    configs = sys.argv[1:] or CONFIGS
    print("| config | weights MB | fresh process: steady RSS / load peak MB | "
          "after switching from the previous row: steady / peak MB | steady, switched / fresh |")
    print("|---|---|---|---|---|")
    switched = run(configs)
    for spec, s in zip(configs, switched, strict=True):
        (fresh,) = run([spec])
        print(f"| `{spec}` | {fresh[1]} | {fresh[2]} / {fresh[3]} | {s[2]} / {s[3]} | "
              f"{float(s[2]) / float(fresh[2]):.2f} |")


if __name__ == "__main__":
    main()
