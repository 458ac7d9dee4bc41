"""Steady RSS after loading vs the load's peak, per config: each in a fresh process, then
all in one process switching from config to config as the app does (the previous model
released first). 2 threads, the default model.

    .venv/bin/python benchmarks/load_memory.py
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
    print("| config | weights MB | fresh process: steady RSS / load peak MB | "
          "after switching from the previous row: steady / peak MB |")
    print("|---|---|---|---|")
    switched = {row[0]: row for row in run(CONFIGS)}
    for spec in CONFIGS:
        (fresh,) = run([spec])
        s = switched[spec]
        print(f"| `{spec}` | {fresh[1]} | {fresh[2]} / {fresh[3]} | {s[2]} / {s[3]} |")


if __name__ == "__main__":
    main()
