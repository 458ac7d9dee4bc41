"""variant=distilled: load the teacher's registered (or built) student instead of it.

The student is found in the registry (playground/core/registry.py); when none is
available locally the check fails before anything loads, saying which model is
missing and how to get or build it.
"""

from __future__ import annotations

import json
from pathlib import Path

from playground.core import quality, registry
from playground.core.config import RunConfig
from playground.core.optimize.base import Build, Optimization


class DistilledVariant(Optimization):
    name = "distilled-variant"
    backends = ("torch", "onnxruntime")  # it picks the weights; any backend runs them

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
        note = f"distilled student of {ctx.config.model}: {ctx.source.name}"
        report = student_report(ctx.source.path)
        if report:
            # Say plainly what the speed costs: the student's quality, next to it.
            ctx.info["student_quality"] = {k: report[k] for k in ("kl_after", "top1_after")}
            note += (
                f" ({len(report['kept_layers'])} of {len(report['layer_kl'])} layers; "
                f"{quality.disagreement(report['kl_after'], report['top1_after'])})"
            )
        return note


def student_report(folder: Path) -> dict | None:
    """The distill_report.json a built student carries, if any."""
    try:
        return json.loads((Path(folder) / "distill_report.json").read_text())
    except (OSError, ValueError):
        return None
