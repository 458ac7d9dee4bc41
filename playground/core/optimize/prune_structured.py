"""prune_method=structured: remove MLP neurons and attention heads, shrinking the matrices.

Importance is measured, not guessed: a short calibration pass records each neuron's
mean absolute activation and each head's mean output norm, times the norm of the
weights that read them (Wanda-style), on the shipped calibration text
(assets/calibration/), never the evaluation text that then scores the pruned model.
The lowest-scoring ones go. Grouped-query attention is respected: every kept KV
head keeps the same number of query heads, so the pruned model is a valid model of
the same architecture with a smaller config (the tied embedding stays as it is).
Supported: the Llama family (Llama, Mistral, Qwen2, SmolLM...) and GPT-2.
"""

from __future__ import annotations

from typing import Any

from playground.core.config import RunConfig
from playground.core.optimize.base import Build, Optimization, OptimizationError

CALIBRATION_TOKENS = 256
MLP_MULTIPLE = 64


class PruneStructured(Optimization):
    name = "prune-structured"

    def wanted(self, cfg: RunConfig) -> bool:
        return cfg.prune > 0 and cfg.prune_method == "structured"

    def apply(self, ctx: Build) -> str | None:
        model = ctx.model
        keep = 1.0 - ctx.config.prune
        heads = shrink(model, ctx.tokenizer, mlp_keep=keep, head_keep=keep)
        ctx.info["structured"] = heads
        # the model panel shows the model that runs: the smaller matrices' count
        ctx.info["params"] = sum(p.numel() for p in model.parameters())
        return (
            f"structured pruning: MLP {heads['mlp_before']}→{heads['mlp_after']} neurons, "
            f"heads {heads['heads_before']}→{heads['heads_after']} "
            f"(KV {heads['kv_before']}→{heads['kv_after']}) per layer"
        )


def shrink(model: Any, tokenizer: Any, *, mlp_keep: float, head_keep: float) -> dict[str, int]:
    """Keep the given shares of MLP neurons and attention heads, by measured importance."""
    family = _family(model)
    stats = _calibrate(model, tokenizer, family)
    prune = _prune_llama if family == "llama" else _prune_gpt2
    return prune(model, mlp_keep, head_keep, stats)


def _family(model: Any) -> str:
    inner = getattr(model, "model", None)
    layers = getattr(inner, "layers", None)
    if layers is not None and len(layers):
        layer = layers[0]
        mlp, attn = getattr(layer, "mlp", None), getattr(layer, "self_attn", None)
        if all(hasattr(mlp, n) for n in ("gate_proj", "up_proj", "down_proj")) and all(
            hasattr(attn, n) for n in ("q_proj", "k_proj", "v_proj", "o_proj")
        ):
            return "llama"
    if getattr(model.config, "model_type", None) == "gpt2":
        return "gpt2"
    arch = (getattr(model.config, "architectures", None) or [type(model).__name__])[0]
    raise OptimizationError(
        f"prune_method: structured is not supported for {arch}; supported: the Llama family "
        "and GPT-2 (magnitude pruning works for any model)"
    )


def _blocks(model: Any, family: str) -> list[tuple[Any, Any, Any]]:
    """(block, module read by the MLP's input hook, module read by the attention hook)."""
    if family == "llama":
        return [(b, b.mlp.down_proj, b.self_attn.o_proj) for b in model.model.layers]
    return [(b, b.mlp.c_proj, b.attn.c_proj) for b in model.transformer.h]


def _calibrate(model: Any, tokenizer: Any, family: str) -> list[dict[str, Any]]:
    """Per block: summed |activation| of each MLP neuron and the attention output."""
    import torch

    from playground.core.quality import calibration_text

    # never the evaluation text: the pruned model is scored on that
    ids = tokenizer(calibration_text(), add_special_tokens=False)["input_ids"][:CALIBRATION_TOKENS]
    stats: list[dict[str, Any]] = []
    hooks = []
    for _, mlp_out, attn_out in _blocks(model, family):
        entry: dict[str, Any] = {}
        stats.append(entry)

        hooks.append(mlp_out.register_forward_pre_hook(_recorder(entry, "mlp")))
        hooks.append(attn_out.register_forward_pre_hook(_recorder(entry, "attn")))
    try:
        with torch.inference_mode():
            model(input_ids=torch.tensor([ids], device=model.device), use_cache=False)
    finally:
        for h in hooks:
            h.remove()
    return stats


def _recorder(store: dict[str, Any], key: str):
    """A pre-hook storing the module's input: per-neuron mean |x| for the MLP, raw for heads."""

    def hook(_module: Any, args: tuple[Any, ...]) -> None:
        x = args[0].detach().float().reshape(-1, args[0].shape[-1])
        store[key] = x.abs().mean(0) if key == "mlp" else x

    return hook


def _keep_count(total: int, keep: float, multiple: int = 1) -> int:
    # MLP widths are rounded to a multiple of 64: quantized kernels (bitsandbytes on CPU)
    # need block-aligned sizes, and dense kernels run faster on them too.
    count = round(total * keep / multiple) * multiple if total >= 2 * multiple else total * keep
    return max(1, min(total, round(count)))


def _top(scores: Any, k: int) -> Any:
    import torch

    return torch.sort(torch.topk(scores, k).indices).values


def _head_plan(n_heads: int, n_kv: int, keep: float) -> tuple[int, int]:
    """(kept KV heads, query heads per kept KV head) closest to keep × heads."""
    per_group = n_heads // n_kv
    target = n_heads * keep
    options = [(kv, q) for kv in range(1, n_kv + 1) for q in range(1, per_group + 1)]
    # Closest head count; on a tie prefer more KV heads (less damage to attention).
    return min(options, key=lambda o: (abs(o[0] * o[1] - target), -o[0], -o[1]))


def _head_scores(attn_in: Any, weight_out: Any, n_heads: int, head_dim: int) -> Any:
    """Mean output norm of each head times the norm of the columns that read it."""
    per_head = attn_in.reshape(attn_in.shape[0], n_heads, head_dim).norm(dim=-1).mean(0)
    w = weight_out.detach().float().reshape(weight_out.shape[0], n_heads, head_dim)
    return per_head * w.norm(dim=(0, 2))


def _slice_linear(linear: Any, index: Any, dim: int) -> None:
    import torch

    with torch.no_grad():
        linear.weight = torch.nn.Parameter(linear.weight.index_select(dim, index).contiguous())
        if dim == 0 and linear.bias is not None:
            linear.bias = torch.nn.Parameter(linear.bias.index_select(0, index).contiguous())
    if dim == 0:
        linear.out_features = linear.weight.shape[0]
    else:
        linear.in_features = linear.weight.shape[1]


def _prune_llama(
    model: Any, keep: float, head_keep: float, stats: list[dict[str, Any]]
) -> dict[str, int]:
    config = model.config
    n_heads, n_kv = config.num_attention_heads, config.num_key_value_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // n_heads
    per_group = n_heads // n_kv
    kv_keep, q_keep = _head_plan(n_heads, n_kv, head_keep)
    inter = config.intermediate_size
    inter_keep = _keep_count(inter, keep, MLP_MULTIPLE)
    for (block, _, _), entry in zip(_blocks(model, "llama"), stats, strict=True):
        mlp, attn = block.mlp, block.self_attn
        # MLP neurons: activation magnitude times the norm of the down_proj column.
        neuron = entry["mlp"] * mlp.down_proj.weight.detach().float().norm(dim=0)
        idx = _top(neuron, inter_keep).to(mlp.down_proj.weight.device)
        _slice_linear(mlp.gate_proj, idx, 0)
        _slice_linear(mlp.up_proj, idx, 0)
        _slice_linear(mlp.down_proj, idx, 1)
        # Heads: score each query head, keep the best KV groups, then the best heads in them.
        scores = _head_scores(entry["attn"], attn.o_proj.weight, n_heads, head_dim)
        groups = scores.reshape(n_kv, per_group)
        kept_groups = _top(groups.sum(1), kv_keep)
        q_heads, kv_heads = [], []
        for g in kept_groups.tolist():
            kv_heads.append(g)
            q_heads += [g * per_group + h for h in _top(groups[g], q_keep).tolist()]
        dev = attn.q_proj.weight.device
        q_rows = _rows(q_heads, head_dim).to(dev)
        kv_rows = _rows(kv_heads, head_dim).to(dev)
        _slice_linear(attn.q_proj, q_rows, 0)
        _slice_linear(attn.k_proj, kv_rows, 0)
        _slice_linear(attn.v_proj, kv_rows, 0)
        _slice_linear(attn.o_proj, q_rows, 1)
        attn.num_key_value_groups = q_keep
        attn.head_dim = head_dim
    config.head_dim = head_dim  # no longer hidden_size // heads: keep it explicit
    config.num_attention_heads = kv_keep * q_keep
    config.num_key_value_heads = kv_keep
    config.intermediate_size = inter_keep
    return {
        "mlp_before": inter, "mlp_after": inter_keep,
        "heads_before": n_heads, "heads_after": kv_keep * q_keep,
        "kv_before": n_kv, "kv_after": kv_keep,
    }


def _rows(heads: list[int], head_dim: int) -> Any:
    import torch

    return torch.tensor([h * head_dim + i for h in heads for i in range(head_dim)])


def _prune_gpt2(
    model: Any, keep: float, head_keep: float, stats: list[dict[str, Any]]
) -> dict[str, int]:
    import torch

    config = model.config
    n_heads = config.n_head
    hidden = config.n_embd
    head_dim = hidden // n_heads
    inter = config.n_inner or 4 * hidden
    inter_keep = _keep_count(inter, keep, MLP_MULTIPLE)
    heads_keep = _keep_count(n_heads, head_keep)
    for (block, _, _), entry in zip(_blocks(model, "gpt2"), stats, strict=True):
        mlp, attn = block.mlp, block.attn
        # GPT-2's Conv1D stores weights as (in, out): the transpose of nn.Linear.
        neuron = entry["mlp"] * mlp.c_proj.weight.detach().float().norm(dim=1)
        idx = _top(neuron, inter_keep)
        with torch.no_grad():
            mlp.c_fc.weight = torch.nn.Parameter(mlp.c_fc.weight[:, idx].contiguous())
            mlp.c_fc.bias = torch.nn.Parameter(mlp.c_fc.bias[idx].contiguous())
            mlp.c_proj.weight = torch.nn.Parameter(mlp.c_proj.weight[idx, :].contiguous())
            mlp.c_fc.nf = inter_keep
            scores = _head_scores(entry["attn"], attn.c_proj.weight.t(), n_heads, head_dim)
            heads = _top(scores, heads_keep).tolist()
            rows = _rows(heads, head_dim)
            qkv = torch.cat([rows + part * hidden for part in range(3)])
            attn.c_attn.weight = torch.nn.Parameter(attn.c_attn.weight[:, qkv].contiguous())
            attn.c_attn.bias = torch.nn.Parameter(attn.c_attn.bias[qkv].contiguous())
            attn.c_attn.nf = len(qkv)
            attn.c_proj.weight = torch.nn.Parameter(attn.c_proj.weight[rows, :].contiguous())
        attn.num_heads = heads_keep
        attn.split_size = heads_keep * head_dim
    config.n_inner = inter_keep
    # GPT-2's config cannot express heads narrower than n_embd / n_head: the shrunken
    # attention lives in the modules only (it cannot be saved and reloaded).
    model.playground_unsaveable = True
    return {
        "mlp_before": inter, "mlp_after": inter_keep,
        "heads_before": n_heads, "heads_after": heads_keep,
        "kv_before": n_heads, "kv_after": heads_keep,
    }
