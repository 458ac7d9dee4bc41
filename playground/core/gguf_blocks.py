"""A GGUF file's quantized blocks as they are, mapped onto a transformers model's names.

transformers loads a GGUF by de-quantizing every tensor to float; this reads the
same file's raw blocks instead, so a model can compute with exactly the integers and
scales the file holds (quant=gguf-native). Block layouts (ggml, 32 weights a block):

- Q4_0: fp16 d, 16 bytes of nibbles; w = d·(q − 8)
- Q4_1: fp16 d, fp16 m, 16 bytes of nibbles; w = d·q + m
- Q8_0: fp16 d, 32 int8; w = d·q

A block's element j < 16 is the low nibble of byte j, element j + 16 its high nibble.
Q4_0 and Q4_1 are the int4 kernel's own layout (groups of 32 along the input, one
scale and one zero each: zero = m + 8·d). The names and the Llama q/k row permutation
come from transformers' own GGUF loader, applied to the raw rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from playground.core.weight_quant import QWeight

BLOCK = 32
NATIVE = ("Q4_0", "Q4_1", "Q8_0")


@dataclass
class GgufTensor:
    hf_name: str  # the transformers parameter it becomes, e.g. model.layers.0.mlp.up_proj.weight
    type_name: str  # ggml block type: Q4_1, Q8_0, F32, ...
    raw: Any  # numpy uint8 [rows, bytes per row] for block types, else None


def read_blocks(path: Path, model: Any) -> dict[str, GgufTensor]:
    """Every tensor of the file under its transformers name, raw rows for block types."""
    import numpy as np
    from gguf import GGUFReader
    from transformers.modeling_gguf_pytorch_utils import (
        TENSOR_PROCESSORS,
        TensorProcessor,
        get_gguf_hf_weights_map,
        read_field,
    )

    reader = GGUFReader(str(path))
    arch = read_field(reader, "general.architecture")[0]
    processor = TENSOR_PROCESSORS.get(arch, TensorProcessor)(config=model.config.to_dict())
    names = get_gguf_hf_weights_map(model, processor)
    out: dict[str, GgufTensor] = {}
    for tensor in reader.tensors:
        hf_name = names.get(tensor.name)
        if hf_name is None:
            continue
        type_name = tensor.tensor_type.name
        raw = None
        if type_name in NATIVE:
            rows = np.ascontiguousarray(tensor.data).view(np.uint8)
            # Only the row order changes (Llama's q/k permutation): blocks stay whole.
            raw = processor.process(weights=rows, name=tensor.name).weights
        out[hf_name] = GgufTensor(hf_name, type_name, raw)
    return out


def to_qweight(tensor: GgufTensor) -> QWeight:
    """The blocks as a QWeight, scales in float32 exactly as stored: int4 groups of 32
    (Q4_0, Q4_1) or kind "q8_0" (int8 with one scale per block of 32)."""
    import numpy as np
    import torch

    raw = np.asarray(tensor.raw)
    rows = raw.shape[0]
    if tensor.type_name == "Q4_1":
        blocks = raw.reshape(rows, -1, 20)
        d = blocks[..., 0:2].copy().view(np.float16)[..., 0].astype(np.float32)
        m = blocks[..., 2:4].copy().view(np.float16)[..., 0].astype(np.float32)
        q = _nibbles(blocks[..., 4:20])
        zero = m + 8 * d
    elif tensor.type_name == "Q4_0":
        blocks = raw.reshape(rows, -1, 18)
        d = blocks[..., 0:2].copy().view(np.float16)[..., 0].astype(np.float32)
        q = _nibbles(blocks[..., 2:18])
        zero = np.zeros_like(d)
    elif tensor.type_name == "Q8_0":
        blocks = raw.reshape(rows, -1, 34)
        d = blocks[..., 0:2].copy().view(np.float16)[..., 0].astype(np.float32)
        q = blocks[..., 2:34].copy().view(np.int8).reshape(rows, -1)
        return QWeight("q8_0", torch.from_numpy(q), torch.from_numpy(d), group=BLOCK)
    else:
        raise ValueError(f"gguf: block type {tensor.type_name} has no native kernel here")
    return QWeight("int4", torch.from_numpy(q.astype(np.int32)), torch.from_numpy(d),
                   torch.from_numpy(zero), BLOCK)


def _nibbles(qs: Any) -> Any:
    import numpy as np

    low, high = qs & 0x0F, qs >> 4
    return np.concatenate([low, high], axis=-1).reshape(qs.shape[0], -1)

