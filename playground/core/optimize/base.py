"""The shape every optimization has: a name, a check, and an apply step.

``check`` runs before any weights are loaded and returns why the optimization
cannot run with this config on this machine (or None). ``load_kwargs`` lets an
optimization that works at load time (bitsandbytes) add ``from_pretrained``
arguments. ``apply`` changes the model (or the engine) in the ``Build`` and
returns a one-line note for the result, or None.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from playground.core.config import RunConfig


class OptimizationError(ValueError):
    """An optimization that cannot run here; the message names the key and why."""


@dataclass
class Build:
    """What the pipeline carries from one optimization to the next."""

    config: RunConfig
    device: str
    model: Any = None
    tokenizer: Any = None
    engine: Any = None
    source: Any = None
    notes: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    deferred_load_kwargs: dict[str, Any] = field(default_factory=dict)


class Optimization:
    name = "base"
    stage = "model"  # "model": changes ctx.model before the engine exists; "engine": after
    backends: tuple[str, ...] = ("torch",)  # the backends it applies to

    def wanted(self, cfg: RunConfig) -> bool:
        return False

    def check(self, cfg: RunConfig, device: str) -> str | None:
        return None

    def load_kwargs(self, cfg: RunConfig, device: str) -> dict[str, Any]:
        return {}

    def model_override(self, cfg: RunConfig) -> str | None:
        """Load this ``model=`` value instead of the config's (the distilled variant)."""
        return None

    def apply(self, ctx: Build) -> str | None:
        raise NotImplementedError


def linear_layers(model: Any) -> list[tuple[str, Any]]:
    """The decoder's Linear layers (embeddings and the LM head are left alone)."""
    import torch

    head = model.get_output_embeddings()
    return [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and module is not head
    ]
