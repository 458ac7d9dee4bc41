"""Tiny random models of the families the native step covers (decode/family.py), saved as
folders the engine loads. Each switch the family has is made to count: windows shorter
than the test's sequences, q/k and (1 + w) norm weights away from their initial values,
scores large enough for the soft cap to bend and the rotary to matter, partial rotary, longrope crossing its
original context inside the test."""

from __future__ import annotations

from pathlib import Path

WINDOW = 6
FAMILIES = ("qwen3", "mistral", "qwen2-sliding", "gemma2", "gemma3", "phi3", "phi3-longrope",
            "llama-yarn")


def _config(kind: str, common: dict):
    shape = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                 **common)
    if kind == "qwen3":
        from transformers import Qwen3Config, Qwen3ForCausalLM

        return Qwen3ForCausalLM, Qwen3Config(head_dim=16, **shape)
    if kind == "mistral":
        from transformers import MistralConfig, MistralForCausalLM

        return MistralForCausalLM, MistralConfig(sliding_window=WINDOW, **shape)
    if kind == "qwen2-sliding":
        from transformers import Qwen2Config, Qwen2ForCausalLM

        return Qwen2ForCausalLM, Qwen2Config(use_sliding_window=True, sliding_window=WINDOW,
                                             max_window_layers=1, **shape)
    if kind == "gemma2":
        from transformers import Gemma2Config, Gemma2ForCausalLM

        return Gemma2ForCausalLM, Gemma2Config(
            head_dim=16, query_pre_attn_scalar=16, sliding_window=WINDOW,
            attn_logit_softcapping=2.0, final_logit_softcapping=1.5, **shape)
    if kind == "gemma3":
        from transformers import Gemma3ForCausalLM, Gemma3TextConfig

        return Gemma3ForCausalLM, Gemma3TextConfig(
            head_dim=16, query_pre_attn_scalar=16, sliding_window=WINDOW,
            layer_types=["sliding_attention", "full_attention", "sliding_attention"], **shape)
    if kind in ("phi3", "phi3-longrope"):
        from transformers import Phi3Config, Phi3ForCausalLM

        rope = {"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5}
        extra: dict = {"sliding_window": WINDOW}
        if kind == "phi3-longrope":
            half = 16 * 1 // 2 // 2  # rotary dims / 2 (head 16, partial 0.5)
            rope = {"rope_type": "longrope", "rope_theta": 10000.0, "partial_rotary_factor": 0.5,
                    "short_factor": [1.0 + 0.1 * i for i in range(half)],
                    "long_factor": [2.0 + 0.5 * i for i in range(half)],
                    "original_max_position_embeddings": 24}
            extra = {"sliding_window": None, "original_max_position_embeddings": 24}
            shape = {**shape, "max_position_embeddings": 96}
        return Phi3ForCausalLM, Phi3Config(rope_parameters=rope, **extra, **shape)
    if kind == "llama-yarn":
        from transformers import LlamaConfig, LlamaForCausalLM

        rope = {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0,
                "original_max_position_embeddings": 256}
        return LlamaForCausalLM, LlamaConfig(rope_parameters=rope, **shape)
    raise ValueError(kind)


def save_family(folder: Path, kind: str, vocab: int = 320) -> Path:
    import torch

    from tests.conftest import make_tokenizer

    tokenizer = make_tokenizer(vocab)
    common = dict(vocab_size=len(tokenizer), eos_token_id=tokenizer.eos_token_id,
                  bos_token_id=tokenizer.bos_token_id, pad_token_id=tokenizer.pad_token_id,
                  tie_word_embeddings=True)
    cls, config = _config(kind, common)
    torch.manual_seed(0)
    model = cls(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:  # ones (Llama) or zeros (Gemma's 1 + w): make them count
                p.add_(torch.randn_like(p) * 0.3)
            elif any(k in name for k in ("q_proj", "k_proj", "qkv_proj")):
                p.mul_(12.0)  # sharp attention, so rotary, windows and caps change the result
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder
