"""Compare under noise: the same comparison on a quiet machine, then with a CPU hog
(busy loops, one per core) started halfway through. Configs alternate round by
round, so the hog slows every config of the rounds it overlaps alike: the p50
ratios should stay close to the quiet run's, and the spread flags the noisy configs.

    .venv/bin/python benchmarks/compare_noise.py [--rounds 4] [--configs SPEC ...]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from playground.core import bench
from playground.core.compare import ratio_rows, run_compare
from playground.core.config import RunConfig

HOG = "import time\nend = time.time() + 3600\nwhile time.time() < end: pass\n"


def run(configs: list[RunConfig], prompts, rounds: int, hog: bool) -> list[dict]:
    hogs: list[subprocess.Popen] = []

    def progress(done: int, total: int, _label: str) -> None:
        if hog and not hogs and done >= total // 2:
            hogs.extend(subprocess.Popen([sys.executable, "-c", HOG])
                        for _ in range(os.cpu_count() or 1))

    try:
        out = run_compare(configs, prompts, warmup=1, repeats=rounds, with_quality=False,
                          progress=progress)
    finally:
        for p in hogs:
            p.kill()
    return ratio_rows(out.results)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--configs", nargs="+",
                        default=["threads=2,max_new_tokens=24",
                                 "quant=int8-dynamic,threads=2,max_new_tokens=24"])
    args = parser.parse_args()
    configs = [RunConfig.parse(spec) for spec in args.configs]
    prompts = bench.read_prompts(bench.default_prompts_path())[:3]
    quiet = run(configs, prompts, args.rounds, hog=False)
    noisy = run(configs, prompts, args.rounds, hog=True)
    print(f"CPU: {bench.hardware()['cpu']}, {os.cpu_count()} cores; {args.rounds} rounds, "
          f"3 prompts; hog: {os.cpu_count()} busy loops from half-way")
    print("| config | run | TTFT p50 ms (min–max) | ×base | decode p50 tok/s (min–max) | ×base "
          "| flagged |")
    print("|---|---|---|---|---|---|---|")
    for name, rows in (("quiet", quiet), ("hog half-way", noisy)):
        for r in rows:
            print(f"| `{r['config']}` | {name} | {r['ttft_ms']:.0f} ({r['ttft_lo']:.0f}–"
                  f"{r['ttft_hi']:.0f}) | {r['ttft_x']:.2f} | {r['decode_tok_s']:.1f} "
                  f"({r['decode_lo']:.1f}–{r['decode_hi']:.1f}) | {r['decode_x']:.2f} | "
                  f"{', '.join(r['noisy']) or '-'} |")
    for q, n in zip(quiet[1:], noisy[1:], strict=True):
        print(f"{q['config']}: decode ×base quiet {q['decode_x']:.2f} vs hog {n['decode_x']:.2f} "
              f"({100 * (n['decode_x'] / q['decode_x'] - 1):+.0f}%); TTFT ×base "
              f"{q['ttft_x']:.2f} vs {n['ttft_x']:.2f} ({100 * (n['ttft_x'] / q['ttft_x'] - 1):+.0f}%)")


if __name__ == "__main__":
    main()
