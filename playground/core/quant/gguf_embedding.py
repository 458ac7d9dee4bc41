"""The input embedding kept as the GGUF's own blocks, rows de-quantized as they are looked up.

A lookup reads one row per token, so a float32 copy of the whole table only costs
memory: 0.40 GB for a Llama-3.2-1B-shaped file with a 49k vocabulary, 1.05 GB with
Llama 3's real 128k one, beside a 0.7 GB file. Here the table stays in the file's
blocks (a Q6_K table is 0.82 bytes a weight) and each looked-up row goes through gguf's
own de-quantization, the function transformers' loader runs over the whole table, so
the values are the same bits as before. The native step takes the rows it needs from
``lookup``; transformers' forward calls the module as its embedding (Gemma's scale
applied there, as its own module does).

Loaded from a file (gguf_load.py), the table is not even copied: it is a private
(copy-on-write) memory map of the file's own bytes, as llama.cpp maps its weights, and
the rows looked up are read from the file itself (pread), so the table never becomes
resident (a 49k-row Q6_K table of a 3B model: 124 MB that a copy held for good). The
file must stay as it is while the model is loaded, as with llama.cpp.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import Any

# keep blocks for these; a float32 table stays as it is (nothing to save)
KEEP = {"F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K",
        "Q6_K"}


@cache
def block_embedding_class() -> type:
    import numpy as np
    import torch
    from gguf import GGMLQuantizationType, quants

    class BlockEmbedding(torch.nn.Module):
        def __init__(self, raw: Any, type_name: str, rows: int, dim: int,
                     scale: float | None, copy: bool = True) -> None:
            super().__init__()
            # [rows, bytes a row]: a copy of a reader's bytes, or, not copied, the bytes of
            # a tied head that holds the same table or the file's own, memory-mapped
            self.raw = np.array(raw, copy=True) if copy else raw
            self.mapped = isinstance(raw, np.memmap)
            # a mapped table's rows are read with pread, never through the map: a fault in
            # the map brings 64 KB around it into RSS (the kernel's fault-around, about a
            # hundred rows of a Q8_0 table; MADV_RANDOM does not stop it)
            self._fd = (os.open(raw.filename, os.O_RDONLY)
                        if self.mapped and hasattr(os, "pread") else None)
            self._at = int(raw.offset) if self.mapped else 0
            # a buffer view of the same bytes, so memory accounting counts the table
            self.register_buffer("blocks", torch.from_numpy(self.raw), persistent=False)
            self.type_name, self.qtype = type_name, GGMLQuantizationType[type_name]
            self.num_embeddings, self.embedding_dim = rows, dim
            if scale is not None:  # Gemma: the embedding is scaled by sqrt(hidden)
                self.scalar_embed_scale = scale

        def lookup(self, ids: Any) -> Any:
            """float32 [len(ids), dim] rows, unscaled (the native step scales them)."""
            index = np.asarray(ids, dtype=np.int64).reshape(-1)
            if index.size and (index.min() < 0 or index.max() >= self.num_embeddings):
                bad = int(index[(index < 0) | (index >= self.num_embeddings)][0])
                raise ValueError(f"token id {bad} is outside the embedding table "
                                 f"(0 to {self.num_embeddings - 1})")
            values = quants.dequantize(self._rows(index), self.qtype)
            return torch.from_numpy(np.require(values, np.float32, ["C", "W", "O"]))

        def _rows(self, index: Any) -> Any:
            if self._fd is None:
                return self.raw[index]
            width = self.raw.shape[1]
            out = np.empty((index.size, width), np.uint8)
            for i, row in enumerate(index.tolist()):
                out[i] = np.frombuffer(os.pread(self._fd, width, self._at + row * width),
                                       np.uint8)
            return out

        def __del__(self) -> None:
            if getattr(self, "_fd", None) is not None:
                os.close(self._fd)
                self._fd = None

        def forward(self, input_ids: Any) -> Any:
            out = self.lookup(input_ids.cpu().numpy()).view(*input_ids.shape, self.embedding_dim)
            scale = getattr(self, "scalar_embed_scale", None)
            if scale is not None:  # as Gemma's module: times a float32 scalar
                out = out * torch.tensor(scale, dtype=torch.float32)
            return out

        def extra_repr(self) -> str:
            mapped = ", mapped from the file" if self.mapped else ""
            return f"{self.num_embeddings}, {self.embedding_dim}, blocks={self.type_name}{mapped}"

    return BlockEmbedding


def is_block_embedding(module: Any) -> bool:
    return type(module).__name__ == "BlockEmbedding"


def from_tensor(tensor: Any, old: Any, head_codes: Any = None,
                path: Path | None = None) -> Any | None:
    """A BlockEmbedding of a GGUF tensor (gguf_blocks.GgufTensor with its reader) in place
    of ``old`` (the model's embedding module), or None where the table is float32.
    ``head_codes``: a tied F16/BF16 head's codes, the table's own bytes: the lookup reads
    them instead of a second copy (a 1B model's 49k-row table: 201 MB). ``path``: the
    file the tensor is in: the table is a fresh map of its bytes there (none touched yet)
    instead of a copy."""
    import numpy as np

    if tensor.type_name not in KEEP:
        return None
    raw = np.ascontiguousarray(tensor.source.data).view(np.uint8)
    rows, dim = old.num_embeddings, old.embedding_dim
    raw = raw.reshape(rows, -1)
    shared = None if head_codes is None else head_codes.numpy().view(np.uint8)
    if shared is not None and (shared.shape != raw.shape or not np.array_equal(shared, raw)):
        shared = None  # not the same bytes after all: a copy of the file's
    if shared is None and path is not None:
        # mode "c": private pages, so nothing written here could reach the file (and torch
        # gets a writable array); the reader's own map, whose pages the load touched, closes
        shared = np.memmap(path, dtype=np.uint8, mode="c", offset=int(tensor.source.data_offset),
                           shape=raw.shape)
    return block_embedding_class()(raw if shared is None else shared, tensor.type_name, rows,
                                   dim, getattr(old, "scalar_embed_scale", None),
                                   copy=shared is None)
