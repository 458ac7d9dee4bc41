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
