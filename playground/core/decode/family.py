"""A decoder-only family described as data, for the one-call native step (qstep.c).

Llama, Mistral, Qwen2/2.5, Qwen3, Gemma 2, Gemma 3 (text) and Phi-3 are one layer shape
with a handful of switches: where q/k/v and gate/up live, which activation, whether
norms scale by (1 + w), per-head q/k norms, norms after attention and MLP (Gemma's
"sandwich"), an embedding scale, soft-capped scores and logits, a sliding window per
layer, partial rotary, and which rotary table a layer uses (Gemma 3's local layers;
Phi-3's longrope switches to its long factors past the original context). ``describe``
reads those switches from a loaded transformers model, as llama.cpp's per-architecture
builders or gpt-fast's ModelArgs do, so qstep.c has no per-family branches: only data.
Anything the step does not compute exactly the way transformers does is refused with
its one reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

LLAMA_NAMES = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))
PHI3_NAMES = (("qkv_proj",), ("gate_up_proj",))

# model_type -> (q/k/v names, gate/up names, Gemma's (1 + w) norms and sandwich norms)
FAMILIES: dict[str, tuple[tuple[tuple[str, ...], tuple[str, ...]], bool]] = {
    "llama": (LLAMA_NAMES, False),
    "mistral": (LLAMA_NAMES, False),
    "qwen2": (LLAMA_NAMES, False),
    "qwen3": (LLAMA_NAMES, False),
    "phi3": (PHI3_NAMES, False),
    "gemma2": (LLAMA_NAMES, True),
    "gemma3_text": (LLAMA_NAMES, True),
}
ACTIVATIONS = {"silu": 0, "gelu_pytorch_tanh": 1}  # qstep.c's codes
STATIC_ROPE = {"default", "linear", "llama3", "yarn"}  # inv_freq fixed once built


@dataclass(frozen=True)
class Family:
    kind: str
    qkv: tuple[str, ...]
    gate_up: tuple[str, ...]
    act: int  # ACTIVATIONS' code
    gemma_norms: bool  # norms scale by (1 + w), and the sandwich norms exist
    qk_norm: bool
    embed_scale: float
    attn_softcap: float  # 0: none
    final_softcap: float
    windows: tuple[int, ...]  # per layer: keys visible to a query (0: all)
    rope_tables: tuple[int, ...]  # per layer: 0 the model's table, 1 the local one
    long_from: int  # longrope: the first position that uses the long factors (-1: never)

    @property
    def sliding(self) -> bool:
        return any(self.windows)


def describe(model: Any) -> tuple[Family | None, str]:
    """The family's switches, or None and the reason the native step cannot run it."""
    config = getattr(model, "config", None)
    kind = getattr(config, "model_type", None)
    if kind not in FAMILIES:
        return None, f"{kind} is not one of the native step's families ({', '.join(FAMILIES)})"
    (qkv, gate_up), gemma = FAMILIES[kind]
    core = getattr(model, "model", None)
    if core is None or not hasattr(core, "layers"):
        return None, "the model has no decoder layers where transformers puts them"
    why = computed_elsewhere(model)
    if why:
        return None, why
    act_name = getattr(config, "hidden_activation", None) or config.hidden_act
    if act_name not in ACTIVATIONS:
        return None, f"activation {act_name} (the step has {', '.join(ACTIVATIONS)})"
    windows, why = _windows(model)
    if why:
        return None, why
    tables, long_from, why = _rope(model)
    if why:
        return None, why
    attn0 = core.layers[0].self_attn
    qk_norm = hasattr(attn0, "q_norm")
    if qk_norm and not all(hasattr(layer.self_attn, "k_norm") for layer in core.layers):
        return None, "q norms without k norms"
    return Family(
        kind=kind, qkv=qkv, gate_up=gate_up, act=ACTIVATIONS[act_name], gemma_norms=gemma,
        qk_norm=qk_norm, embed_scale=float(getattr(core.embed_tokens, "scalar_embed_scale", 1.0)),
        attn_softcap=float(getattr(config, "attn_logit_softcapping", None) or 0.0),
        final_softcap=float(getattr(config, "final_logit_softcapping", None) or 0.0),
        windows=windows, rope_tables=tables, long_from=long_from,
    ), ""


def computed_elsewhere(model: Any) -> str | None:
    """Why a step of our own would not compute what transformers' forward does, whatever
    the family: another attention kernel, split matrices (pretraining_tp) or hooks that
    a step skipping the modules' forward would skip too. Both decode steps ask."""
    config = model.config
    if getattr(config, "_attn_implementation", "sdpa") not in ("sdpa", "eager"):
        return f"attention {config._attn_implementation}"
    if getattr(config, "pretraining_tp", 1) > 1:
        return "pretraining_tp > 1"
    for module in model.modules():
        if module._forward_hooks or module._forward_pre_hooks or hasattr(module, "_hf_hook"):
            return "the model has forward hooks (offload or user hooks)"
    return None


def _windows(model: Any) -> tuple[tuple[int, ...], str]:
    config = model.config
    types = getattr(config, "layer_types", None)
    layers = model.model.layers
    if types is not None and any(t not in ("full_attention", "sliding_attention") for t in types):
        return (), f"layer types {sorted(set(types))}"
    windows = []
    for i, layer in enumerate(layers):
        attn = layer.self_attn
        if hasattr(attn, "sliding_window"):  # set per layer (None on full-attention layers)
            w = attn.sliding_window
        elif types is not None:
            w = config.sliding_window if types[i] == "sliding_attention" else None
        else:  # Mistral, Phi-3: one window for every layer, or none
            w = getattr(config, "sliding_window", None)
        windows.append(int(w or 0))
    return tuple(windows), ""


def _rope(model: Any) -> tuple[tuple[int, ...], int, str]:
    rotary = model.model.rotary_emb
    types = getattr(model.config, "layer_types", None)
    kinds = rotary.rope_type if isinstance(rotary.rope_type, dict) else {None: rotary.rope_type}
    long_from = -1
    for kind in kinds.values():
        if kind == "longrope" and len(kinds) == 1:
            long_from = int(model.config.rope_parameters["original_max_position_embeddings"])
        elif kind not in STATIC_ROPE:
            return (), -1, f"rope type {kind} (the step has {', '.join(sorted(STATIC_ROPE))}, longrope)"
    if isinstance(rotary.rope_type, dict):  # Gemma 3: a table per layer type
        return tuple(1 if t == "sliding_attention" else 0 for t in types), long_from, ""
    return tuple(0 for _ in model.model.layers), long_from, ""


def rope_tables(model: Any) -> list[tuple[Any, float]]:
    """(inv_freq float32, attention scaling) for table 0, 1 and the long factors (table 0's
    own where there are none), from the values built at init: transformers rewrites
    ``inv_freq`` in place for longrope, so the original copy is read."""
    import torch

    rotary = model.model.rotary_emb

    def table(prefix: str) -> tuple[Any, float]:
        inv = getattr(rotary, f"{prefix}original_inv_freq", None)
        if inv is None:
            inv = getattr(rotary, f"{prefix}inv_freq")
        return inv.float().contiguous().clone(), float(getattr(rotary, f"{prefix}attention_scaling"))

    if isinstance(rotary.rope_type, dict):  # only the layer types the model has
        present = [t for t in ("full_attention", "sliding_attention") if t in rotary.rope_type]
        full, local = (table(f"{t}_") for t in (present[0], present[-1]))
        return [full, local, full]
    base = table("")
    if rotary.rope_type == "longrope":
        from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

        start = int(model.config.rope_parameters["original_max_position_embeddings"])
        long_inv, _ = ROPE_INIT_FUNCTIONS["longrope"](model.config, None, seq_len=start + 1)
        return [base, base, (long_inv.to(torch.float32).contiguous(), base[1])]
    return [base, base, base]


def norm_weight(norm: Any, gemma: bool) -> Any:
    """The weight the step multiplies by: Gemma's RMSNorm computes x·(1 + w) in float32,
    the same sum done once here."""
    return (1.0 + norm.weight.float()).contiguous() if gemma else norm.weight
