"""Tiny Llama GGUF files written in the test, with the block types a user's file has.

The blocks are random bytes with small finite fp16 scales: what matters is that every
path reads the same file, so the float model transformers de-quantizes and the blocks
gguf-native keeps stand for the same weights. Shapes are multiples of 256 where a
K-quant needs them (a super-block is 256 weights).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

HIDDEN, INTER, HEADS, KV_HEADS, LAYERS = 256, 512, 4, 2, 2
HEAD_DIM = HIDDEN // HEADS
BLOCK_BYTES = {"Q4_0": (32, 18), "Q4_1": (32, 20), "Q5_0": (32, 22), "Q5_1": (32, 24),
               "Q8_0": (32, 34), "Q4_K": (256, 144),
               "Q5_K": (256, 176), "Q6_K": (256, 210), "Q2_K": (256, 84)}
# where each fp16 scale of a block sits, and the magnitude that keeps activations sane
SCALE_AT = {"Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2], "Q8_0": [0],
            "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208], "Q2_K": [80, 82]}
SCALE_SIZE = {"Q4_0": 2e-3, "Q4_1": 2e-3, "Q5_0": 1e-3, "Q5_1": 1e-3, "Q8_0": 2e-4,
              "Q4_K": 1e-4, "Q5_K": 5e-5, "Q6_K": 2e-5, "Q2_K": 2e-4}
# a Q4_K_M-like mix: v and down in Q6_K in some layers, so q/k/v cannot be one matrix
Q4_K_M = {"attn_q": "Q4_K", "attn_k": "Q4_K", "attn_v": "Q6_K", "attn_output": "Q5_K",
          "ffn_gate": "Q4_K", "ffn_up": "Q4_K", "ffn_down": "Q6_K", "token_embd": "Q6_K"}


def random_blocks(type_name: str, rows: int, cols: int, rng: np.random.Generator) -> np.ndarray:
    per, size = BLOCK_BYTES[type_name]
    blocks = rng.integers(0, 256, (rows, cols // per, size), dtype=np.uint8)
    for at in SCALE_AT[type_name]:
        d = rng.uniform(0.2, 1.0, blocks.shape[:2]) * SCALE_SIZE[type_name]
        if type_name in ("Q4_1", "Q5_1") and at == 2:
            d = -d * 8  # the offset m
        blocks[..., at:at + 2] = d.astype(np.float16)[..., None].view(np.uint8)
    return blocks.reshape(rows, -1)


def write_tiny_gguf(path: Path, types: dict[str, str], seed: int = 0,
                    skip: tuple[str, ...] = (), arch: str = "llama",
                    rope_freqs: np.ndarray | None = None) -> Path:
    """A two-layer model of ``arch`` (llama, qwen2, qwen3, gemma3, phi3: the tensors and keys
    llama.cpp's converter writes for it) with the tiny test tokenizer; ``types`` maps a
    tensor's short name (attn_q, ffn_down, token_embd, ...) to its block type (default
    Q4_K); tensors named in ``skip`` are left out (a broken file); ``rope_freqs``: Llama
    3's rope scaling as the converter stores it (a divisor per rotary frequency)."""
    import gguf

    from tests.conftest import CHAT_TEMPLATE, make_tokenizer

    tokenizer = make_tokenizer(320)
    vocab = len(tokenizer)
    rng = np.random.default_rng(seed)
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_name("tiny-k-quants")
    writer.add_context_length(1024)
    writer.add_embedding_length(HIDDEN)
    writer.add_block_count(LAYERS)
    writer.add_feed_forward_length(INTER)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_rope_dimension_count(HEAD_DIM)
    if arch in ("qwen3", "gemma3"):
        writer.add_key_length(HEAD_DIM)
        writer.add_value_length(HEAD_DIM)
    if arch == "gemma3":
        writer.add_sliding_window(8)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(vocab)
    writer.add_tokenizer_model("gpt2")
    by_id = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
    writer.add_token_list([t for t, _ in by_id])
    special = set(tokenizer.all_special_tokens)
    writer.add_token_types([3 if t in special else 1 for t, _ in by_id])
    import json

    merges = json.loads(tokenizer.backend_tokenizer.to_str())["model"]["merges"]
    writer.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in merges])
    writer.add_bos_token_id(tokenizer.bos_token_id)
    writer.add_eos_token_id(tokenizer.eos_token_id)
    writer.add_pad_token_id(tokenizer.pad_token_id)
    writer.add_chat_template(CHAT_TEMPLATE)

    def add(name: str, short: str, rows: int, cols: int) -> None:
        type_name = types.get(short, "Q4_K")
        if type_name in ("F32", "F16"):
            data = (rng.standard_normal((rows, cols)) * 0.02).astype(
                np.float32 if type_name == "F32" else np.float16)
            writer.add_tensor(name, data)
            return
        if type_name == "BF16":  # numpy has no bfloat16: the top halves of float32s
            values = (rng.standard_normal((rows, cols)) * 0.02).astype(np.float32)
            bits = (values.view(np.uint32) >> 16).astype(np.uint16)
            writer.add_tensor(name, bits.view(np.uint8).reshape(rows, cols * 2),
                              raw_dtype=gguf.GGMLQuantizationType.BF16)
            return
        raw = random_blocks(type_name, rows, cols, rng)
        writer.add_tensor(name, raw, raw_dtype=gguf.GGMLQuantizationType[type_name])

    add("token_embd.weight", "token_embd", vocab, HIDDEN)
    def norm(name: str, size: int = HIDDEN) -> None:
        if name not in skip:  # Gemma's converter stores 1 + w too: values near 1 either way
            writer.add_tensor(name, (1 + 0.1 * rng.standard_normal(size)).astype(np.float32))

    norm("output_norm.weight")
    if rope_freqs is not None:
        writer.add_tensor("rope_freqs.weight", rope_freqs.astype(np.float32))
    for i in range(LAYERS):
        norm(f"blk.{i}.attn_norm.weight")
        norm(f"blk.{i}.ffn_norm.weight")
        if arch in ("qwen3", "gemma3"):
            norm(f"blk.{i}.attn_q_norm.weight", HEAD_DIM)
            norm(f"blk.{i}.attn_k_norm.weight", HEAD_DIM)
        if arch == "gemma3":
            norm(f"blk.{i}.post_attention_norm.weight")
            norm(f"blk.{i}.post_ffw_norm.weight")
        if arch == "phi3":  # the converter keeps Phi-3's fused matrices
            add(f"blk.{i}.attn_qkv.weight", "attn_qkv", (HEADS + 2 * KV_HEADS) * HEAD_DIM, HIDDEN)
            add(f"blk.{i}.ffn_up.weight", "ffn_up", 2 * INTER, HIDDEN)
        else:
            add(f"blk.{i}.attn_q.weight", "attn_q", HEADS * HEAD_DIM, HIDDEN)
            add(f"blk.{i}.attn_k.weight", "attn_k", KV_HEADS * HEAD_DIM, HIDDEN)
            add(f"blk.{i}.attn_v.weight", "attn_v", KV_HEADS * HEAD_DIM, HIDDEN)
            if arch == "qwen2":  # Qwen2's q/k/v biases
                for short, rows in (("q", HEADS), ("k", KV_HEADS), ("v", KV_HEADS)):
                    writer.add_tensor(f"blk.{i}.attn_{short}.bias", (
                        0.1 * rng.standard_normal(rows * HEAD_DIM)).astype(np.float32))
            add(f"blk.{i}.ffn_gate.weight", "ffn_gate", INTER, HIDDEN)
            add(f"blk.{i}.ffn_up.weight", "ffn_up", INTER, HIDDEN)
        add(f"blk.{i}.attn_output.weight", "attn_output", HIDDEN, HEADS * HEAD_DIM)
        add(f"blk.{i}.ffn_down.weight", "ffn_down", HIDDEN, INTER)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def resident_kb(address: int) -> tuple[int, int]:
    """(resident, size) in kB of this process's mapping that holds ``address`` (psutil's
    regions, as memory.own_memory reads them)."""
    import psutil

    for region in psutil.Process().memory_maps(grouped=False):
        start, _, end = region.addr.partition("-")
        if int(start, 16) <= address < int(end, 16):
            return region.rss // 1024, region.size // 1024
    raise AssertionError("no mapping holds the table")
