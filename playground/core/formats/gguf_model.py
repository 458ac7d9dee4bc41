"""A GGUF's model without transformers' modeling code, for gguf-native on the families the
one-call native step runs (Llama, Qwen2, Qwen3).

Importing transformers' model and config classes costs about 90 MB of RSS (its config
classes pull in torch.distributed.tensor, sympy and torch._dynamo): measured on a 2-core
Xeon, a process with torch at 219 MB grew to 333 MB once ``modeling_llama`` was imported,
more than the issue's steady target leaves beside torch (file + 300 MB). Here the model
is a skeleton (gguf_skeleton) with transformers' module names and the attributes the
loader, the native step and the engine read, so they see no difference; every matrix on
the native kernels; a forward that is transformers' arithmetic for these families
written out (prompts), and the native step for one token at a time, as on transformers'
classes. The config is a plain ``PretrainedConfig`` filled from the file's own metadata,
the tokenizer transformers' fast tokenizer built from the file (or the default model's
folder).

``why_not`` names what sends a file to transformers' classes instead: another family, a
tokenizer that is not byte-level BPE, rope scaling or a sliding window in the metadata,
a matrix without native blocks.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from playground.core.formats import gguf_file
from playground.core.quant import gguf_blocks

FAMILIES = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM",
            "qwen3": "Qwen3ForCausalLM"}
MATRICES = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")


def why_not(file: gguf_file.GgufFile, folder_tokenizer: bool) -> str | None:
    """Why this file loads through transformers' classes, or None."""
    meta, arch = file.metadata, file.architecture
    if arch not in FAMILIES:
        return f"{arch or 'no'} architecture (the skeleton has {', '.join(FAMILIES)})"
    if "mistral" in str(meta.get("general.name", "")).lower():
        return "a Mistral file (transformers gives it Mistral's sliding window)"
    if not folder_tokenizer and meta.get("tokenizer.ggml.model") != "gpt2":
        return f"tokenizer {meta.get('tokenizer.ggml.model')} (the skeleton reads byte-level BPE)"
    scaling = meta.get(f"{arch}.rope.scaling.type")
    if scaling not in (None, "none"):
        return f"rope scaling {scaling}"
    if meta.get(f"{arch}.attention.sliding_window"):
        return "a sliding window"
    if meta.get(f"{arch}.rope.freq_base") is None:
        return "no rope.freq_base in the metadata"
    rotary = meta.get(f"{arch}.rope.dimension_count")
    if rotary is not None and int(rotary) != _head_dim(file):
        return "partial rotary dimensions"
    # every matrix computes on the native kernels (the loader runs only where they are
    # built), the LM head included: the embedding table where the file ties them
    names = {t.name for t in file.tensors}
    head = "output.weight" if "output.weight" in names else "token_embd.weight"
    for tensor in file.tensors:
        short = tensor.name.split(".")[-2] if tensor.name.startswith("blk.") else ""
        matrix = short in MATRICES and tensor.name.endswith(".weight")
        if (matrix or tensor.name == head) and tensor.tensor_type.name not in (
                *gguf_blocks.NATIVE, *gguf_blocks.HALF):
            return f"{tensor.name} is {tensor.tensor_type.name} (no native kernel)"
    return None


def config(file: gguf_file.GgufFile) -> Any:
    """transformers' config for the file, from its metadata: the values transformers' own
    GGUF reader maps (and the head size it leaves out, gguf_meta)."""
    from transformers import PretrainedConfig

    meta, arch = file.metadata, file.architecture
    names = {t.name for t in file.tensors}
    embed = next(t for t in file.tensors if t.name == "token_embd.weight")

    def key(name: str, default: Any = None) -> Any:
        value = meta.get(f"{arch}.{name}", default)
        return value.item() if hasattr(value, "item") else value

    heads = int(key("attention.head_count"))
    cfg = PretrainedConfig(
        architectures=[FAMILIES[arch]],
        hidden_size=int(key("embedding_length")),
        intermediate_size=int(key("feed_forward_length")),
        num_hidden_layers=int(key("block_count")),
        num_attention_heads=heads,
        num_key_value_heads=int(key("attention.head_count_kv", heads)),
        head_dim=_head_dim(file),
        rms_norm_eps=float(key("attention.layer_norm_rms_epsilon")),
        rope_theta=float(key("rope.freq_base")),
        max_position_embeddings=int(key("context_length", 2048)),
        vocab_size=int(embed.shape[0]),
        hidden_act="silu",
        tie_word_embeddings="output.weight" not in names,
        attention_bias="blk.0.attn_q.bias" in names,
        eos_token_id=meta.get("tokenizer.ggml.eos_token_id"),
        bos_token_id=meta.get("tokenizer.ggml.bos_token_id"),
    )
    cfg.model_type = arch
    cfg._attn_implementation = "sdpa"  # what the native step's attention computes
    return cfg


def _head_dim(file: gguf_file.GgufFile) -> int:
    meta, arch = file.metadata, file.architecture
    length = meta.get(f"{arch}.attention.key_length")
    if length is not None:
        return int(length)
    return int(meta[f"{arch}.embedding_length"]) // int(meta[f"{arch}.attention.head_count"])


def tokenizer(gguf: Path, folder: Path | None) -> Any:
    """The fast tokenizer from the default model's folder or from the file, without
    AutoTokenizer (which imports the family's config class to pick one)."""
    from transformers.tokenization_utils_tokenizers import PreTrainedTokenizerFast

    if folder is not None:
        return PreTrainedTokenizerFast.from_pretrained(folder)
    return PreTrainedTokenizerFast.from_pretrained(gguf.parent, gguf_file=gguf.name)


def skeleton(cfg: Any, names: set[str]) -> Any:
    """The model's modules with transformers' names, parameters on the meta device (the
    loader fills them), real rotary frequencies."""
    from playground.core.formats import gguf_skeleton

    model = gguf_skeleton.CausalLM(cfg, qk_norm="blk.0.attn_q_norm.weight" in names)
    model.generation_config = SimpleNamespace(eos_token_id=cfg.eos_token_id,
                                              bos_token_id=cfg.bos_token_id)
    return model
