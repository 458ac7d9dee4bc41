"""qat=on: load the weights that `playground qat` trained for this model and quant.

They are float weights, quantized afterwards by the quant optimization as usual; when
none were trained the check fails before anything loads, naming the command.
"""

from __future__ import annotations

import json
from pathlib import Path

from playground.core.config import RunConfig
from playground.core.optimize.base import Build, Optimization
from playground.core.quant import qat_registry


class QatWeights(Optimization):
    name = "qat-weights"
    backends = ("torch", "onnxruntime")  # it picks the weights; any backend runs them

    def wanted(self, cfg: RunConfig) -> bool:
        return cfg.qat

    def check(self, cfg: RunConfig, device: str) -> str | None:
        try:
            qat_registry.trained_for(cfg)
        except qat_registry.QatMissing as exc:
            return str(exc)
        return None

    def model_override(self, cfg: RunConfig) -> str | None:
        return qat_registry.trained_for(cfg)

    def apply(self, ctx: Build) -> str | None:
        note = f"quantization-aware weights for {ctx.config.quant} ({ctx.source.path})"
        try:
            report = json.loads((Path(ctx.source.path) / "qat_report.json").read_text())
        except (OSError, ValueError):
            return note
        before, after = report["before"]["kl_mean"], report["after"]["kl_mean"]
        return note + f": KL to the float model {before:.3f} → {after:.3f} nats after training"
