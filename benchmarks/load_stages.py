"""Where a GGUF load's memory goes: RSS sampled every 5 ms while ``build_engine`` loads a
file, each sample labelled by the loader's progress stage at that moment; prints the
peak RSS per stage (the file's pages and the unpacking temporaries show as such).

    .venv/bin/python benchmarks/load_stages.py FILE.gguf [--spec quant=gguf-native,threads=2]
"""

from __future__ import annotations

import argparse
import re
import threading
import time

import psutil

from playground.core.config import RunConfig
from playground.core.pipeline import build_engine


def stage_of(message: str) -> str:
    # "Loading X from its blocks: 12 of 112 matrices…" -> "filling the layers", etc.
    if "matrices" in message:
        return "filling the layers from their blocks"
    if re.search(r"tensor \d+ of", message) or "from its blocks" in message:
        return "norms and other small tensors"
    if message.startswith("Reading"):
        return "reading the file (tokenizer, config, skeleton, block index)"
    return message[:60]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("gguf")
    parser.add_argument("--spec", default="quant=gguf-native,threads=2")
    args = parser.parse_args()
    process = psutil.Process()
    current = ["imports (Python, torch, transformers)"]
    peaks: dict[str, float] = {}
    order: list[str] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            mb = process.memory_info().rss / 2**20
            label = current[0]
            if label not in peaks:
                order.append(label)
            peaks[label] = max(peaks.get(label, 0.0), mb)
            time.sleep(0.005)  # the sampler's period, not a wait for a result

    import transformers  # noqa: F401  (counted in the first stage)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    engine = build_engine(RunConfig.parse(f"model={args.gguf},{args.spec}"),
                          progress=lambda message: current.__setitem__(0, stage_of(message)))
    current[0] = "ready (steady)"
    time.sleep(0.05)
    done.set()
    sampler.join()
    print(f"{args.gguf}: ready in {time.perf_counter() - started:.1f} s, weights "
          f"{engine.weights_mb:.0f} MB, steady {engine.info['rss_mb']:.0f} MB, load peak "
          f"{engine.info['load_peak_rss_mb']:.0f} MB")
    print("| stage | peak RSS MB |\n|---|---|")
    for label in order:
        print(f"| {label} | {peaks[label]:.0f} |")


if __name__ == "__main__":
    main()
