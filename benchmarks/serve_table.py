"""The BENCHMARKS.md tables of benchmarks/serve_load.sh: one row per server and
concurrency step, round by round, with each step's output tok/s as a multiple of the
same server's concurrency 1 in the same round.

    .venv/bin/python benchmarks/serve_table.py gguf fp32
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"


def fmt(v: float | None) -> str:
    return "–" if v is None else f"{v:.0f}"


def table(name: str) -> str:
    rows = ["| server | round | concurrency | output tok/s | × conc. 1 | TTFT p50 / p99 ms | "
            "ITL p50 / p99 ms | goodput |", "|---|---|---|---|---|---|---|---|"]
    files = sorted(OUT.glob(f"load-{name}-*-r*.json"))
    servers = sorted({f.stem.rsplit("-r", 1)[0] for f in files},
                     key=lambda s: ["on", "on-noprefix", "off", "llamacpp"].index(s.split("-", 2)[-1])
                     if s.split("-", 2)[-1] in ["on", "on-noprefix", "off", "llamacpp"] else 9)
    for server in servers:
        for f in sorted(OUT.glob(f"{server}-r*.json")):
            steps = json.loads(f.read_text())["load"]["steps"]
            base = steps[0]["output_tok_s"]
            for s in steps:
                t, i = s["ttft_ms"], s["itl_ms"]
                rows.append(f"| {server.removeprefix('load-')} | {f.stem.rsplit('-r', 1)[1]} | "
                            f"{s['concurrency']} | {s['output_tok_s']:.1f} | "
                            f"{s['output_tok_s'] / base:.2f} | {fmt(t['p50'])} / {fmt(t['p99'])} | "
                            f"{fmt(i['p50'])} / {fmt(i['p99'])} | {s['goodput']:.0%} |")
    return "\n".join(rows)


if __name__ == "__main__":
    for name in sys.argv[1:] or ["gguf"]:
        print(table(name))
        print()
