"""variant=distilled and draft=distilled: need a student model registered for ``model``.

Until a student has been built or registered (the distillation feature), asking for
one is a clear error that says what is missing, before anything is loaded.
"""

from __future__ import annotations

from playground.core.config import RunConfig
from playground.core.optimize.base import Build, Optimization


class Variants(Optimization):
    name = "variants"

    def wanted(self, cfg: RunConfig) -> bool:
        return cfg.variant != "base" or cfg.draft != "none"

    def check(self, cfg: RunConfig, device: str) -> str | None:
        key = "variant" if cfg.variant != "base" else "draft"
        return (
            f"{key}: no distilled student is registered for model={cfg.model}; "
            "allowed now: variant=base, draft=none"
        )

    def apply(self, ctx: Build) -> str | None:  # check() always refuses for now
        raise AssertionError("unreachable")
