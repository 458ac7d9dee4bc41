"""quant=gguf-native: compute with a GGUF file's own quantized blocks, not a float copy.

The default model is SmolLM2's Q4_1 GGUF de-quantized, so float32 is only a
lossless-looking, 4× larger copy of the file. Here every Q4_0/Q4_1/Q8_0 matrix keeps
its integers, scales and offsets (GGUF's own formats are the native kernels' formats,
playground/core/native), and so does every K-quant (Q4_K, Q5_K, Q6_K: their
sub-block scales kept as exact float32 products), so the weights are exactly the
file's and the only difference from the de-quantized baseline is arithmetic:
activations rounded to int16 per 32 inputs (measured KL 0.0000 on the default model).
With torch's kernels instead (no C compiler), activations and scales are bf16, Q8_0
(SmolLM2's embedding, which is also its LM head) is re-quantized to one int8 scale per
row, and K-quants stay de-quantized, as the note then says. Every tensor that is not
computed from its own blocks is named in the note with what happened to it.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from playground.core import models
from playground.core.config import RunConfig
from playground.core.optimize.base import Build, Optimization
from playground.core.optimize.quant_weight import check_cpu_kernels, replace_linears
from playground.core.quant import gguf_blocks, weight_quant
from playground.core.quant.weight_quant import QWeight


def gguf_path(source: models.ModelSource) -> Path:
    if source.kind == "default":
        return models.default_gguf_path()
    if source.kind == "gguf" and source.gguf_file:
        return source.path / source.gguf_file
    raise ValueError(f"quant: gguf-native needs a .gguf model, not {source.kind} {source.name}")


class QuantGguf(Optimization):
    name = "quant-gguf-native"

    def wanted(self, cfg: RunConfig) -> bool:
        return cfg.quant == "gguf-native"

    def check(self, cfg: RunConfig, device: str) -> str | None:
        return check_cpu_kernels(cfg, device)

    def apply(self, ctx: Build) -> str | None:
        report = getattr(ctx.model, "gguf_report", None)
        if report is not None:  # built from the file's blocks directly (gguf_load)
            ctx.info["gguf_load"] = "from the file's blocks (no float32 model first)"
            note = _note(ctx, *report)
            table = ctx.model.get_input_embeddings()
            if getattr(table, "mapped", False):
                ctx.info["embedding"] = (f"{table.type_name} blocks read from the file a row "
                                         f"at a time ({table.raw.nbytes / 1e6:.0f} MB, not resident)")
                note += f"; the input embedding's {ctx.info['embedding']}"
            return note
        tensors = gguf_blocks.read_blocks(gguf_path(ctx.source), ctx.model)
        tied = getattr(ctx.model.config, "tie_word_embeddings", False)
        head_source = "model.embed_tokens.weight" if tied else "lm_head.weight"
        used: Counter[str] = Counter()
        kept: Counter[str] = Counter()

        def quantize(name: str, linear: Any) -> QWeight | None:
            key = head_source if linear is ctx.model.get_output_embeddings() else f"{name}.weight"
            tensor = tensors.get(key)
            if tensor is None:
                kept["not in the file: float32 as loaded"] += 1
                return None
            blocks = gguf_blocks.kernel_weight(tensor, kept)
            if blocks is not None:
                used[tensor.type_name] += 1
            return blocks

        replace_linears(ctx.model, quantize)
        ctx.info["gguf_load"] = "de-quantized by transformers, then the blocks read again"
        return _note(ctx, dict(used), dict(kept))


def _note(ctx: Build, used: dict[str, int], kept: dict[str, int]) -> str:
    """What was kept as blocks and, one by one, what was not and what happened to it."""
    ctx.info["gguf_blocks"] = used
    ctx.info["gguf_not_native"] = kept
    blocks = ", ".join(f"{n} {t}" for t, n in sorted(used.items())) or "none"
    note = f"GGUF blocks kept: {blocks}, {weight_quant.activations()}"
    if used.get("Q8_0") and weight_quant.backend() == "torch":
        note += "; Q8_0 re-quantized to int8 per row (torch has no grouped int8 kernel)"
    if kept:
        note += "; NOT native: " + "; ".join(f"{n} × {what}" for what, n in sorted(kept.items()))
        if weight_quant.backend() == "torch":
            note += " (in bf16 with torch's kernels)"
    return note
