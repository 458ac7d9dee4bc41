"""Where one decode step's time goes, for the fastest config (default: gguf-native).

Measures, on the default model with ``threads`` threads: the whole native step (one C
call a token) at several cache lengths; each layer's matrix products alone through
the same kernels (qkv, o, gate/up, down × layers, and the LM head), less the Python
call overhead of timing them one by one; the rest of the step (norms, rotary,
attention over the cache, residuals, OpenMP fork/join) by difference; and the Python
lean step over the same layers, for comparison.

    .venv/bin/python benchmarks/decode_profile.py [--config quant=gguf-native] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from common import save

from playground.core.config import RunConfig
from playground.core.decode import lean_decode
from playground.core.native import step as native_step
from playground.core.pipeline import build_engine


def timed(fn, repeats: int = 200) -> float:
    """Median seconds of ``fn()`` over ``repeats`` calls, after 10 untimed."""
    for _ in range(10):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def step_ms(engine, step, context: int) -> float:
    """Median ms of one step with ``context`` tokens in the cache (+100 during the run)."""
    with torch.inference_mode():
        cache = engine.make_cache()
        engine.model(input_ids=torch.tensor([[5] * context]), cache=cache, use_cache=True)
        for _ in range(5):
            step(7, cache)
        times = []
        for _ in range(100):
            start = time.perf_counter()
            step(7, cache)
            times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default="quant=gguf-native")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    engine = build_engine(RunConfig.parse(f"{args.config},threads={args.threads}"))
    torch.set_num_threads(args.threads)
    model = engine.model
    print("decode path:", engine.info["decode_step"])
    rows: dict[str, float] = {}
    for context in (64, 512, 1024):
        rows[f"native step, {context} tokens in cache"] = step_ms(engine, engine.decoder.step, context)

    layer = model.model.layers[0]
    parts = {"q/k/v": layer.self_attn.__dict__["fused_qkv"], "o": layer.self_attn.o_proj,
             "gate/up": layer.mlp.__dict__["fused_gate_up"], "down": layer.mlp.down_proj}
    from playground.core.quant import weight_quant

    # the Python call overhead: the same wrapper on a 32x32 layer
    small = weight_quant.pack([weight_quant.quantize_int8(torch.randn(32, 32))])
    fn, call_args = small.kernel()
    x32 = torch.randn(1, 32)
    overhead = timed(lambda: fn(x32, *call_args))
    kernels = 0.0
    layers = len(model.model.layers)
    with torch.inference_mode():
        for name, module in parts.items():
            fn, call_args = module.kernel()
            x = torch.randn(1, module.in_features)
            seconds = max(timed(lambda fn=fn, x=x, a=call_args: fn(x, *a)) - overhead, 0.0)
            rows[f"{name} matmul ×{layers} layers"] = 1000 * seconds * layers
            kernels += seconds * layers
        head = model.lm_head
        fn, call_args = head.kernel()
        x = torch.randn(1, head.in_features)
        seconds = max(timed(lambda: fn(x, *call_args)) - overhead, 0.0)
        rows["LM head matmul"] = 1000 * seconds
        kernels += seconds
    rows["all matrix products"] = 1000 * kernels
    whole = rows["native step, 64 tokens in cache"]
    rows["rest of the step at 64 tokens (norms, rotary, attention, fork/join)"] = whole - 1000 * kernels

    real_build = native_step.build
    native_step.build = lambda *a, **k: (None, "profiling the Python step")
    try:
        python_step, note = lean_decode.build(model)
    finally:
        native_step.build = real_build
    rows[f"Python lean step at 64 tokens ({note})"] = step_ms(engine, python_step, 64)

    print(f"\n{'part':<72} {'ms/token':>9} {'share':>6}")
    for name, ms in rows.items():
        share = f"{100 * ms / whole:5.0f}%" if "native step" not in name and "Python" not in name else ""
        print(f"{name:<72} {ms:>9.3f} {share:>6}")
    print(f"python call overhead per kernel call (subtracted): {overhead * 1e6:.1f} µs")
    print("saved", save("decode_profile", {"args": vars(args), "rows": rows,
                                            "call_overhead_us": overhead * 1e6}))


if __name__ == "__main__":
    main()
