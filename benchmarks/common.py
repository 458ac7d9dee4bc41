"""Helpers shared by the benchmark scripts: prompt set, alternating rounds, medians."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from playground.core import bench
from playground.core.config import RunConfig
from playground.core.engine import Engine
from playground.core.pipeline import build_engine

OUT = Path(__file__).parent / "out"


def prompts() -> list[list[dict[str, str]]]:
    return bench.read_prompts(bench.default_prompts_path())


def engines(specs: dict[str, str]) -> dict[str, Engine]:
    built = {}
    for name, spec in specs.items():
        print(f"building {name}: {spec}", file=sys.stderr, flush=True)
        built[name] = build_engine(RunConfig.parse(spec))
    return built


def mean_decode(engine: Engine, conversations) -> dict[str, float]:
    """One pass over the prompts: mean decode tok/s, mean TTFT ms, tokens."""
    decode, ttft, tokens = [], [], 0
    for messages in conversations:
        engine.reset()
        m = engine.chat(messages).metrics
        if m.decode_tok_s:
            decode.append(m.decode_tok_s)
        ttft.append(m.ttft_ms)
        tokens += m.new_tokens
    return {"decode_tok_s": statistics.mean(decode), "ttft_ms": statistics.mean(ttft),
            "tokens": tokens}


def save(name: str, data: dict) -> Path:
    OUT.mkdir(exist_ok=True)
    path = OUT / f"{name}.json"
    path.write_text(json.dumps(data, indent=1))
    return path


def bench_parser(prompts_default: int = 4):
    """The arguments every alternating-rounds benchmark takes."""
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--prompts", type=int, default=prompts_default,
                        help="use the first N default prompts")
    return parser


def alternating_rounds(built: dict[str, Engine], conversations, rounds: int,
                       one_pass=None) -> dict[str, list]:
    """Warm every engine up once (untimed), then ``rounds`` rounds that each run every
    config in turn over the same prompts: a busy moment hits all configs alike."""
    one_pass = one_pass or mean_decode
    for engine in built.values():
        engine.chat(conversations[0])
    out: dict[str, list] = {k: [] for k in built}
    for r in range(rounds):
        for name, engine in built.items():
            out[name].append(one_pass(engine, conversations))
        print(f"round {r + 1}/{rounds} done", flush=True)
    return out


def cpu_name() -> str:
    """The CPU named as the results need it: a shared host's "AMD EPYC" is a Zen 3 (family
    25, AVX2 only) on one machine and a Zen 5 (family 26, AVX-512 VNNI) on the next."""
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    fields = dict(line.split(":", 1) for line in text.split("\n\n")[0].splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    if "model name" not in fields:
        return platform.processor()
    isa = "AVX-512 VNNI" if "avx512_vnni" in fields.get("flags", "") else "AVX2"
    return (f"{fields['model name']} (family {fields.get('cpu family')} model "
            f"{fields.get('model')}, {isa}), {os.cpu_count()} cores")


def wait_healthy(port: int, server: subprocess.Popen, limit_s: float = 300) -> None:
    """Until the server this script started (a Popen) answers /health on ``port``; its
    exit, or the limit, ends the script with one line."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited ({server.returncode}) before it was ready")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
            return
        except OSError:
            time.sleep(0.5)  # polling a process we started, not a test waiting on a timer
    raise SystemExit(f"the server on port {port} was not ready in {limit_s:.0f} s")
