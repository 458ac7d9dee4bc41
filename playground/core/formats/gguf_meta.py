"""What a GGUF says that transformers' GGUF reader leaves out, read from the file itself.

- ``attention.key_length``: the head size. transformers keeps the config class's
  default for some families (Qwen3: 128), so a file with another head size would not
  load, or load wrong.
- ``rope_freqs.weight``: Llama 3.x's rope scaling, which llama.cpp's converter stores
  as one divisor per rotary frequency (the config's ``rope_scaling`` is not in the
  file). transformers drops the tensor and rotates with the unscaled frequencies;
  llama.cpp divides by it (measured on a Llama-3.2-1B-shaped Q8_0 file, 720-token
  prompt: top-1 agreement with llama.cpp 53%, KL 0.019 on its top 10, before; see
  benchmarks/family_agreement.py). Both loaders apply it here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class FileMeta:
    key_length: int | None  # the head size the file states
    rope_freqs: Any  # float32 array, one divisor per rotary frequency, or None


def read(path: Path) -> FileMeta:
    """What the file says of both, read once."""
    from playground.core.formats import gguf_file

    return from_file(gguf_file.read(path))


def from_file(file: Any) -> FileMeta:
    """The same from a file already read (gguf_file.GgufFile)."""
    import numpy as np

    key = file.metadata.get(f"{file.architecture}.attention.key_length")
    tensor = next((t for t in file.tensors if t.name == "rope_freqs.weight"), None)
    return FileMeta(int(key) if key is not None else None,
                    None if tensor is None else np.array(tensor.data, dtype=np.float32).reshape(-1))


def fix_config(config: Any, meta: FileMeta) -> None:
    """The file's head size wins over the config class's default."""
    if meta.key_length is not None and hasattr(config, "head_dim"):
        config.head_dim = meta.key_length


def apply_rope_freqs(model: Any, meta: FileMeta) -> str | None:
    """Divide the model's rotary frequencies by the file's ``rope_freqs`` as llama.cpp
    does; a note saying so, or None when the file has none."""
    import torch

    rotary = getattr(getattr(model, "model", None), "rotary_emb", None)
    if meta.rope_freqs is None or rotary is None or not hasattr(rotary, "inv_freq"):
        return None
    factors = torch.from_numpy(meta.rope_freqs)
    if factors.numel() != rotary.inv_freq.numel():
        raise ValueError(f"rope_freqs has {factors.numel()} factors for "
                         f"{rotary.inv_freq.numel()} rotary frequencies")
    with torch.no_grad():
        base = getattr(rotary, "original_inv_freq", rotary.inv_freq).float().clone()
        for name in ("inv_freq", "original_inv_freq"):
            if hasattr(rotary, name):
                getattr(rotary, name).copy_(base / factors)
    return "rotary frequencies divided by the file's rope_freqs (Llama 3 rope scaling), as llama.cpp does"
