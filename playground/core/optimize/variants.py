"""variant=distilled: load the teacher's registered (or built) student instead of it.

The student is found in the registry (playground/core/registry.py); when none is
available locally the check fails before anything loads, saying which model is
missing and how to get or build it.
"""

from __future__ import annotations

from playground.core import registry
from playground.core.config import RunConfig
from playground.core.optimize.base import Build, Optimization


class DistilledVariant(Optimization):
    name = "distilled-variant"

    def wanted(self, cfg: RunConfig) -> bool:
        return cfg.variant == "distilled"

    def check(self, cfg: RunConfig, device: str) -> str | None:
        try:
            registry.student_for(cfg.model)
        except registry.StudentMissing as exc:
            return str(exc)
        return None

    def model_override(self, cfg: RunConfig) -> str | None:
        return registry.student_for(cfg.model)

    def apply(self, ctx: Build) -> str | None:
        return f"distilled student of {ctx.config.model}: {ctx.source.name}"
