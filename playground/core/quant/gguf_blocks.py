"""A GGUF file's quantized blocks as they are, mapped onto a transformers model's names.

transformers loads a GGUF by de-quantizing every tensor to float; this reads the
same file's raw blocks instead, so a model can compute with exactly the integers and
scales the file holds (quant=gguf-native). Block layouts (ggml, 32 weights a block):

- Q4_0: fp16 d, 16 bytes of nibbles; w = d·(q − 8)
- Q4_1: fp16 d, fp16 m, 16 bytes of nibbles; w = d·q + m
- Q8_0: fp16 d, 32 int8; w = d·q
- Q5_0 / Q5_1: Q4_0 / Q4_1 with a fifth bit per weight from a 32-bit qh:
  w = d·(q − 16) / w = d·q + m; computed as int8 codes (llama-quantize falls back to
  them where a row is not a multiple of 256, e.g. Qwen2.5-0.5B's 896)

A block's element j < 16 is the low nibble of byte j, element j + 16 its high nibble.
Q4_0 and Q4_1 are the int4 kernel's own layout (groups of 32 along the input, one
scale and one zero each: zero = m + 8·d). The names and the Llama q/k row permutation
come from transformers' own GGUF loader, applied to the raw rows.

K-quants (super-blocks of 256 weights), as ggml de-quantizes them:

- Q4_K: fp16 d and dmin, eight 6-bit sub-scales sc and mins m, 4-bit q:
  w = (d·sc)·q − dmin·m per 32 weights
- Q5_K: the same with 5-bit q (a fifth bit from qh)
- Q6_K: 6-bit q − 32, an int8 sub-scale per 16 weights, fp16 d: w = (d·sc)·q

d·sc needs up to 17 significant bits, more than fp16 holds: the kernels read the file's
own sub-scales (Q4_K's and Q5_K's at their 6 bits, FMT_SC6; Q6_K's int8) and fp16 d per
super-block and form d·sc in float32, where it is exact (qblocks.c's FMT_SUPER): a
matrix takes the file's bytes. Q4_K's codes go to the
int4 kernel; Q5_K's and Q6_K's to the int8 one (Q5_K with offsets, Q6_K in groups of 16).
F16 and BF16 matrices stay in their two bytes a weight (kinds "f16"/"bf16": qhalf.c widens
each weight to float32 as it reads it). Every other type (Q2_K, Q3_K, IQ*, ...) is named
by ``not_native``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from playground.core import memory
from playground.core.quant import weight_quant
from playground.core.quant.weight_quant import QWeight

BLOCK = 32
QK_K = 256
NATIVE = ("Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q4_K", "Q5_K", "Q6_K")
HALF = ("F16", "BF16")  # matrices computed from their half-precision values as stored
FLOAT = ("F32", "F16", "BF16", "F64")
FLOAT_CHUNK_ROWS = 4096
CHUNK_ROWS = 8192  # rows unpacked at a time into a tall matrix's kernel form, at most
CHUNK_WEIGHTS = 1 << 22  # and weights: a 2,048 x 8,192 Q6_K matrix unpacked whole was 80 MB
# of temporaries at the load's peak


@dataclass
class GgufTensor:
    hf_name: str  # the transformers parameter it becomes, e.g. model.layers.0.mlp.up_proj.weight
    type_name: str  # ggml block type: Q4_1, Q8_0, F32, ...
    raw: Any  # numpy uint8 [rows, bytes per row] for block types, else None
    source: Any = None  # the reader's tensor (memory-mapped) and the family's processor,
    processor: Any = None  # kept where float values are read too (gguf_load)
    # the family's row order (Llama's q/k permutation), applied to ``raw`` when the
    # blocks are unpacked: applied while reading, every layer's q and k were copied at
    # once (a 3B model: 200 MB, and their file pages read, before the first layer packed)
    reorder: Any = None

    def rows(self) -> Any:
        """``raw`` in the model's row order."""
        return self.raw if self.reorder is None else self.reorder(self.raw)


def read_blocks(path: Path, model: Any, keep_readers: bool = False) -> dict[str, GgufTensor]:
    """Every tensor of the file under its transformers name, raw rows for block types
    (with ``keep_readers``, each also keeps what ``to_float`` needs)."""
    import numpy as np
    from transformers.modeling_gguf_pytorch_utils import (
        TENSOR_PROCESSORS,
        TensorProcessor,
        get_gguf_hf_weights_map,
    )

    from playground.core.formats import gguf_file

    half_kernels = weight_quant.backend() == "native"
    file = gguf_file.read(path)  # not gguf's GGUFReader: 160 MB of objects for a vocabulary
    processor = TENSOR_PROCESSORS.get(file.architecture, TensorProcessor)(
        config=model.config.to_dict())
    names = get_gguf_hf_weights_map(model, processor)
    out: dict[str, GgufTensor] = {}
    for tensor in file.tensors:
        hf_name = names.get(tensor.name)
        if hf_name is None:
            continue
        type_name = tensor.tensor_type.name
        raw = reorder = None
        if type_name in NATIVE:
            raw = np.ascontiguousarray(tensor.data).view(np.uint8)
            # Only the row order changes (Llama's q/k permutation): blocks stay whole.
            reorder = partial(_reorder, processor, tensor.name)
        elif type_name in HALF and len(tensor.shape) == 2 and half_kernels:
            # whole values (uint16), so a family's processor that reshapes or transposes
            # (Bloom's fused qkv, GPT-2's Conv1D) moves values, not bytes; one it cannot
            # apply leaves the tensor to the float path
            try:
                values = np.ascontiguousarray(tensor.data).view(np.uint16)
                processed = processor.process(weights=values, name=tensor.name).weights
                raw = np.ascontiguousarray(processed).view(np.uint8)
            except (ValueError, KeyError, TypeError):
                raw = None
        out[hf_name] = GgufTensor(hf_name, type_name, raw, tensor if keep_readers else None,
                                  processor if keep_readers else None, reorder)
    return out


def _reorder(processor: Any, name: str, rows: Any) -> Any:
    return processor.process(weights=rows, name=name).weights


def to_float(tensor: GgufTensor) -> Any:
    """The tensor as transformers' loader makes it: gguf's own de-quantization to float32,
    then the family's processor (Llama's q/k row order, ...). A torch tensor of its own."""
    import numpy as np
    import torch
    from gguf import quants

    source = tensor.source
    data = source.data
    if data.ndim == 2 and data.shape[0] > FLOAT_CHUNK_ROWS:
        # in slices of rows: gguf's de-quantization makes several float32 temporaries of
        # its input's size (a 1B model's embedding: 400 MB each)
        first = quants.dequantize(data[:1], source.tensor_type)
        values = np.empty((data.shape[0], first.shape[-1]), np.float32)
        for start in range(0, data.shape[0], FLOAT_CHUNK_ROWS):
            stop = start + FLOAT_CHUNK_ROWS
            values[start:stop] = quants.dequantize(data[start:stop], source.tensor_type)
    else:
        values = quants.dequantize(data, source.tensor_type)
    values = tensor.processor.process(weights=values, name=source.name).weights
    return torch.from_numpy(np.require(values, np.float32, ["C", "W", "O"]))


def to_qweight(tensor: GgufTensor) -> QWeight:
    """The blocks as a QWeight, scales in float32 exactly as stored: int4 groups of 32
    (Q4_0, Q4_1) or kind "q8_0" (int8 with one scale per block of 32). A tall matrix is
    unpacked in slices of rows into its final tensors: whole, a 49k-row Q6_K head's
    temporaries took 570 MB beside a 130 MB result."""
    import numpy as np

    raw = np.asarray(tensor.rows())
    # Q6_K and Q5_0 kept at 6 and 5 bits: each slice packed as it is unpacked (whole, a 3B
    # model's tied head held its 151 MB of int8 codes beside the packed 113 MB)
    rows, cols = _matrix_shape(tensor.type_name, raw)
    bits = weight_quant.packed_bits(tensor.type_name, rows, cols)
    chunk = max(8, min(CHUNK_ROWS, CHUNK_WEIGHTS // max(cols, 1)) // 8 * 8)
    if rows <= chunk:
        return _packed(_rows_qweight(tensor.type_name, raw), bits)
    out: list[Any] = []
    first = None
    for start in range(0, rows, chunk):
        part = _packed(_rows_qweight(tensor.type_name, raw[start : start + chunk]), bits)
        fields = [part.q, part.scale, part.zero, part.offset, *(part.two_level or ())]
        if first is None:
            first = part
            out = [None if t is None else t.new_empty((raw.shape[0], *t.shape[1:]))
                   for t in fields]
        for whole, t in zip(out, fields, strict=True):
            if whole is not None:
                whole[start : start + t.shape[0]] = t
        # the slice's file pages are read once: mapped, they counted in RSS until the
        # matrix was done (a 1B model's 106 MB Q8_0 head: 100 MB more at the load's peak)
        drop_pages(tensor.raw)
        memory.trim()  # and the slice's temporaries
    return QWeight(first.kind, out[0], out[1], out[2], first.group, out[3],
                   None if first.two_level is None else tuple(out[4:]), first.bits)


def _matrix_shape(type_name: str, raw: Any) -> tuple[int, int]:
    """(rows, weights a row) of a matrix's raw rows"""
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    block, size = GGML_QUANT_SIZES[GGMLQuantizationType[type_name]]
    return int(raw.shape[0]), int(raw.shape[1]) // size * block


def _packed(part: QWeight, bits: int) -> QWeight:
    from dataclasses import replace

    return part if bits == 8 else replace(part, q=weight_quant.packed_codes(part.q, bits),
                                          bits=bits)


def drop_pages(array: Any) -> None:
    """Let the kernel take back the pages of the memory-mapped file that ``array`` (a view
    of it) lies in: they count in RSS while mapped, and each is read once; a later read
    finds them in the page cache. Nothing for an array that is not a file's map."""
    import mmap

    while array is not None and getattr(array, "_mmap", None) is None:
        array = getattr(array, "base", None)
    if array is not None and hasattr(mmap, "MADV_DONTNEED"):
        try:
            array._mmap.madvise(mmap.MADV_DONTNEED)
        except (OSError, ValueError):
            pass  # not on this platform: the pages stay until the file is closed


def _rows_qweight(type_name: str, raw: Any) -> QWeight:
    import numpy as np
    import torch

    rows = raw.shape[0]
    if type_name in HALF:  # the bits as they are; the kernel widens them
        bits = np.ascontiguousarray(raw).view(np.int16).reshape(rows, -1)
        return QWeight(type_name.lower(), torch.from_numpy(bits.copy()), None)
    if type_name == "Q4_1":
        blocks = raw.reshape(rows, -1, 20)
        d = blocks[..., 0:2].copy().view(np.float16)[..., 0].astype(np.float32)
        m = blocks[..., 2:4].copy().view(np.float16)[..., 0].astype(np.float32)
        q = _nibbles(blocks[..., 4:20])
        zero = m + 8 * d
    elif type_name == "Q4_0":
        blocks = raw.reshape(rows, -1, 18)
        d = blocks[..., 0:2].copy().view(np.float16)[..., 0].astype(np.float32)
        q = _nibbles(blocks[..., 2:18])
        zero = np.zeros_like(d)
    elif type_name == "Q8_0":
        blocks = raw.reshape(rows, -1, 34)
        d = blocks[..., 0:2].copy().view(np.float16)[..., 0].astype(np.float32)
        q = blocks[..., 2:34].copy().view(np.int8).reshape(rows, -1)
        return QWeight("q8_0", torch.from_numpy(q), torch.from_numpy(d), group=BLOCK)
    elif type_name in ("Q5_0", "Q5_1"):
        return _q5(type_name, raw)
    elif type_name in ("Q4_K", "Q5_K", "Q6_K"):
        return _k_quant(type_name, raw)
    else:
        raise ValueError(f"gguf: block type {type_name} has no native kernel here")
    # codes as bytes (0..15): as int32 a 3B model's gate/up pair was 200 MB of temporaries
    return QWeight("int4", torch.from_numpy(q.astype(np.uint8)), torch.from_numpy(d),
                   torch.from_numpy(zero), BLOCK)


def _nibbles(qs: Any) -> Any:
    import numpy as np

    low, high = qs & 0x0F, qs >> 4
    return np.concatenate([low, high], axis=-1).reshape(qs.shape[0], -1)



def _q5(type_name: str, raw: Any) -> QWeight:
    """Q5_0 as int8 codes q − 16 with fp16 scales (the Q8_0 kernels as they are); Q5_1 as
    codes 0..31 with its offsets m."""
    import numpy as np
    import torch

    rows = raw.shape[0]
    size = 22 if type_name == "Q5_0" else 24
    blocks = raw.reshape(rows, -1, size)
    d = blocks[..., 0:2].copy().view(np.float16)[..., 0].astype(np.float32)
    at = 2 if type_name == "Q5_0" else 4
    qh = blocks[..., at:at + 4].copy().view(np.uint32)  # [rows, blocks, 1]
    bit = ((qh >> np.arange(32, dtype=np.uint32)) & 1).astype(np.uint8)
    ql = _nibbles(blocks[..., at + 4:at + 20].reshape(-1, 16)).reshape(bit.shape)
    q = (ql | (bit << 4)).astype(np.int8)
    if type_name == "Q5_0":
        codes = torch.from_numpy((q - np.int8(16)).reshape(rows, -1))
        return QWeight("q8_0", codes, torch.from_numpy(d), group=BLOCK)
    m = blocks[..., 2:4].copy().view(np.float16)[..., 0].astype(np.float32)
    return QWeight("q8_0", torch.from_numpy(q.reshape(rows, -1)), torch.from_numpy(d),
                   group=BLOCK, offset=torch.from_numpy(m))


def _k_quant(type_name: str, raw: Any) -> QWeight:
    """A K-quant's codes and exact float32 scales (and offsets), per ggml's layout."""
    import numpy as np
    import torch
    from gguf.quants import Q4_K

    rows = raw.shape[0]
    size = {"Q4_K": 144, "Q5_K": 176, "Q6_K": 210}[type_name]
    blocks = raw.reshape(rows, -1, size)
    nsb = blocks.shape[1]
    if type_name == "Q6_K":
        ql, qh = blocks[..., :128], blocks[..., 128:192]
        sc = blocks[..., 192:208].copy().view(np.int8).astype(np.float32)
        d = blocks[..., 208:210].copy().view(np.float16).astype(np.float32)  # [rows, nsb, 1]
        # each half of 128: ql's 64 bytes give elements 0-63 (low nibbles) and 64-127
        # (high), qh's 32 bytes the two top bits of four runs of 32
        nibble = np.array([0, 4], np.uint8).reshape(1, 1, 1, 2, 1)
        pair = np.array([0, 2, 4, 6], np.uint8).reshape(1, 1, 1, 4, 1)
        low = (ql.reshape(rows, nsb, 2, 1, 64) >> nibble) & 0x0F
        top = (qh.reshape(rows, nsb, 2, 1, 32) >> pair) & 0x03
        q = (low.reshape(rows, nsb, 2, 4, 32) | (top << 4)).astype(np.int8) - np.int8(32)
        scale = (d * sc).reshape(rows, nsb * 16)
        two_level = (torch.from_numpy(d.reshape(rows, nsb).copy()),
                     torch.from_numpy(sc.reshape(rows, nsb * 16).astype(np.int8)), None, None)
        return QWeight("q8_0", torch.from_numpy(q.reshape(rows, nsb * QK_K).copy()),
                       torch.from_numpy(scale.copy()), group=16, two_level=two_level)
    d = blocks[..., 0:2].copy().view(np.float16).astype(np.float32)
    dmin = blocks[..., 2:4].copy().view(np.float16).astype(np.float32)
    sc, mins = Q4_K.get_scale_min(blocks[..., 4:16].reshape(rows * nsb, 12).copy())
    sc = sc.reshape(rows, nsb, 8).astype(np.float32)
    mins = mins.reshape(rows, nsb, 8).astype(np.float32)
    scale = (d * sc).reshape(rows, nsb * 8)
    offset = -(dmin * mins).reshape(rows, nsb * 8)
    two_level = (torch.from_numpy(d.reshape(rows, nsb).copy()),
                 torch.from_numpy(sc.reshape(rows, -1).astype(np.int8)),
                 torch.from_numpy(-dmin.reshape(rows, nsb)),
                 torch.from_numpy(mins.reshape(rows, -1).astype(np.int8)))
    qs = blocks[..., -128:]
    # 32 bytes a pair of sub-blocks: low nibbles are sub-block 2j, high ones 2j + 1
    q = (qs.reshape(rows, nsb, 4, 1, 32) >> np.array([0, 4], np.uint8).reshape(1, 1, 1, 2, 1)) & 0x0F
    q = q.reshape(rows, nsb, 8, 32)
    if type_name == "Q4_K":
        return QWeight("int4", torch.from_numpy(q.reshape(rows, -1).astype(np.uint8)),
                       torch.from_numpy(scale.copy()), group=BLOCK,
                       offset=torch.from_numpy(offset.copy()), two_level=two_level)
    qh = blocks[..., 16:48]
    bit = (qh.reshape(rows, nsb, 1, 32) >> np.arange(8, dtype=np.uint8).reshape(1, 1, 8, 1)) & 1
    q5 = (q | (bit << 4)).astype(np.int8)
    return QWeight("q8_0", torch.from_numpy(q5.reshape(rows, -1).copy()),
                   torch.from_numpy(scale.copy()), group=BLOCK,
                   offset=torch.from_numpy(offset.copy()), two_level=two_level)


def not_native(type_name: str) -> str:
    """What happens to a tensor of a type with no native kernel, in words."""
    if type_name in HALF:
        return (f"{type_name}: computed from a float32 copy (the half-precision kernel needs "
                "the native kernels)")
    if type_name in FLOAT:
        return f"{type_name}: float32 as stored"
    return (f"{type_name}: de-quantized to float32 by transformers' loader (no native kernel "
            "for this block type: slower and larger, values still the file's)")


def kernel_weight(tensor: GgufTensor, kept: Any) -> QWeight | None:
    """The tensor's blocks as the kernels here take them, or None: a type with no kernel
    (counted in ``kept`` with what happens to it) or blocks the kernels here cannot take
    (torch's fallback, f32 activations: counted with why)."""
    if tensor.raw is None or (tensor.type_name in HALF and weight_quant.backend() != "native"):
        kept[not_native(tensor.type_name)] += 1
        return None
    blocks = to_qweight(tensor)
    if weight_quant.blocked_only(blocks):
        why = weight_quant.blocks_refused([blocks])
        if why:
            kept[f"{tensor.type_name}: de-quantized ({why})"] += 1
            return None
    if blocks.kind == "int4" and not weight_quant.int4_fits(blocks.rows, blocks.cols, blocks.group):
        return weight_quant.quantize_int8(blocks.dequantize())
    return blocks
