"""device= and threads=: which devices are present, resolving ``auto``, torch threads."""

from __future__ import annotations

import os

from playground.core.config import RunConfig
from playground.core.optimize.base import Build, Optimization


def available_devices() -> list[str]:
    import torch

    found = ["cpu"]
    if torch.cuda.is_available():
        found += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    return found


def resolve_device(device: str) -> str:
    present = available_devices()
    if device == "auto":
        for candidate in ("cuda", "mps"):
            if candidate in present:
                return "cuda:0" if candidate == "cuda" else candidate
        return "cpu"
    if device not in present:
        raise ValueError(
            f"device: '{device}' is not present on this machine; present: {', '.join(present)}"
        )
    return "cuda:0" if device == "cuda" else device


def default_threads() -> int:
    return os.cpu_count() or 1


def leave_a_core(config: RunConfig) -> RunConfig:
    """threads=0 (auto) in a process whose other threads need a core means cores − 1: the
    app's window (on 2 cores one torch thread decodes as fast as two while the GUI runs),
    a server's event loop and sockets (a compute thread they preempt stalls the other at
    every barrier of a step: one stream on 2 cores 74–90 tok/s on 2 threads, 125–154 on
    1; BENCHMARKS.md). A remote endpoint chooses its own."""
    import dataclasses

    if config.threads or config.endpoint:
        return config
    return dataclasses.replace(config, threads=max(1, default_threads() - 1))


# A pass of this many rows or more (a batch of decodes, a prompt chunk) does enough work
# between barriers that a second compute thread pays even beside the event loop.
WIDE_ROWS = 4


def wide_pass_threads(config: RunConfig) -> int:
    """A server's compute threads for passes of WIDE_ROWS rows or more when threads is
    auto (0 where the user set threads, or for an endpoint): every core. One row a pass
    keeps cores − 1 (leave_a_core). On 2 AMD cores concurrency 8 went from 109–116 to
    130–149 output tok/s, one stream unchanged; on 2 Intel Xeon cores it went down (174
    against 229), so the scheduler times its wide passes each way (every core sharing
    each product, cores − 1, or in parts a core each) and keeps the fastest
    (serve/thread_choice.py; benchmarks/serve_wide.sh, BENCHMARKS.md)."""
    if config.threads or config.endpoint:
        return 0
    return default_threads()


class Device(Optimization):
    name = "device"

    def wanted(self, cfg: RunConfig) -> bool:
        return True

    def apply(self, ctx: Build) -> str | None:
        import torch

        threads = ctx.config.threads or default_threads()
        torch.set_num_threads(threads)
        ctx.info["threads"] = threads
        # bitsandbytes layers are placed at load time; moving them again would requantize.
        if not getattr(ctx.model, "is_loaded_in_4bit", False) and not getattr(
            ctx.model, "is_loaded_in_8bit", False
        ):
            ctx.model.to(ctx.device)
        if threads > default_threads():
            ctx.notes.append(
                f"threads={threads} is more than this machine's {default_threads()} cores: the "
                "extra threads only wait on each other (usually slower); threads=0 picks for you")
        return None if ctx.device == "cpu" else f"on {ctx.device}"
