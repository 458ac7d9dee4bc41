"""draft=distilled: speculative decoding with the student as the draft model.

transformers' assisted generation: the student proposes a few tokens, the teacher
checks them in one forward pass and keeps the longest agreeing prefix, so greedy
output is the teacher's own. The turn's metrics report the draft acceptance rate.
"""

from __future__ import annotations

from playground.core import registry
from playground.core.config import RunConfig
from playground.core.decode.decoders import AssistedDecoder
from playground.core.models import load
from playground.core.optimize.base import Build, Optimization, OptimizationError


class SpeculativeDraft(Optimization):
    name = "speculative-draft"
    stage = "engine"

    def wanted(self, cfg: RunConfig) -> bool:
        return cfg.draft == "distilled"

    def check(self, cfg: RunConfig, device: str) -> str | None:
        if not cfg.kv_cache:
            return "draft: speculative decoding needs kv_cache=on"
        if cfg.compile or cfg.prefix_cache:
            return "draft: speculative decoding cannot be combined with compile or prefix_cache yet"
        try:
            registry.student_for(cfg.model, key="draft")
        except registry.StudentMissing as exc:
            return str(exc)
        return None

    def apply(self, ctx: Build) -> str | None:
        student = registry.student_for(ctx.config.model)
        draft = load(student, allow_pickle=ctx.config.allow_pickle)
        if draft.tokenizer.get_vocab() != ctx.tokenizer.get_vocab():
            raise OptimizationError(
                f"draft: the student {draft.source.name} has a different tokenizer from the "
                "teacher; speculative decoding needs the same tokenizer"
            )
        dtype = next(ctx.model.parameters()).dtype
        ctx.engine.decoder = AssistedDecoder(
            ctx.model, draft.model.to(device=ctx.device, dtype=dtype).eval(),
            ctx.tokenizer.pad_token_id, ctx.device)
        layers = getattr(draft.model.config, "num_hidden_layers", "?")
        return f"speculative decoding with {draft.source.name} ({layers} layers) as draft"
