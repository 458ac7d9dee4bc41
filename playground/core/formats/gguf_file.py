"""A GGUF file's metadata and tensor table, read without gguf's ``GGUFReader``.

``GGUFReader`` makes numpy objects for every element of every metadata array: for the
default tokenizer's 49,152 tokens and 48,900 merges that is about 160 MB of Python
objects (measured: RSS 32 -> 191 MB for a 93 MB file), held for as long as the reader
lives; a loader that kept one open for its tensors carried them through its peak (and
Llama 3's 128k vocabulary triples them). Here the header is walked with ``struct``:
numbers and short arrays are read, string arrays are skipped unless asked for, and each
tensor is a view of one read-only map of the file (no page read until its data is).

The tensors look like ``GGUFReader``'s where the loaders use them: ``name``,
``tensor_type`` (gguf's enum), ``data`` (values for float and integer types, bytes
shaped ``[..., row bytes]`` for block types, as gguf's ``quants.dequantize`` takes them)
and ``data_offset`` (from the start of the file).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from math import prod
from pathlib import Path
from typing import Any

_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q",
            12: "d"}  # GGUF metadata value types of a fixed width
_STRING, _ARRAY = 8, 9
# tensor types whose data are values (numpy views of that type), not blocks of bytes
_VALUES = {"F32": "float32", "F16": "float16", "F64": "float64", "I8": "int8", "I16": "int16",
           "I32": "int32", "I64": "int64"}


@dataclass
class FileTensor:
    name: str
    tensor_type: Any  # gguf.GGMLQuantizationType
    shape: tuple[int, ...]  # numpy order (the input dimension last)
    data: Any  # a view of the file's map (see the module's docstring)
    data_offset: int


@dataclass
class GgufFile:
    path: Path
    metadata: dict[str, Any]  # arrays of numbers as numpy; a skipped string array: its length
    tensors: list[FileTensor] = field(default_factory=list)

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", ""))


def read(path: Path, string_arrays: tuple[str, ...] = ()) -> GgufFile:
    """The file's metadata and tensors; ``string_arrays``: keys whose strings to keep.
    A file that is not a GGUF v2/v3, or ends inside its header, raises ValueError."""
    import numpy as np
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, quant_shape_to_byte_shape

    path = Path(path)
    blob = np.memmap(path, mode="r", dtype=np.uint8)
    try:
        if bytes(blob[:4]) != b"GGUF":
            raise ValueError(f"{path.name} is not a GGUF file (no GGUF magic)")
        version, n_tensors, n_kv = struct.unpack_from("<IQQ", blob, 4)
        if version not in (2, 3):
            raise ValueError(f"{path.name} is GGUF version {version}; versions 2 and 3 are read")
        pos, metadata = 24, {}
        for _ in range(n_kv):
            key, pos = _string(blob, pos)
            (kind,) = struct.unpack_from("<I", blob, pos)
            metadata[key], pos = _value(blob, pos + 4, kind, key in string_arrays)
        entries = []
        for _ in range(n_tensors):
            name, pos = _string(blob, pos)
            (dims,) = struct.unpack_from("<I", blob, pos)
            shape = struct.unpack_from(f"<{dims}Q", blob, pos + 4)
            kind, offset = struct.unpack_from("<IQ", blob, pos + 4 + 8 * dims)
            pos += 4 + 8 * dims + 12
            entries.append((name, tuple(reversed(shape)), kind, offset))
    except struct.error as exc:
        raise ValueError(f"{path.name} ends inside its GGUF header ({exc})") from None
    alignment = int(metadata.get("general.alignment", 32))
    start = (pos + alignment - 1) // alignment * alignment
    file = GgufFile(path, metadata)
    for name, shape, kind, offset in entries:
        ggml_type = GGMLQuantizationType(kind)
        block, size = GGML_QUANT_SIZES[ggml_type]
        count = prod(shape)
        nbytes = count * size // block
        at = start + offset
        if at + nbytes > blob.size:
            raise ValueError(f"{path.name}: tensor {name} runs past the end of the file")
        raw = blob[at: at + nbytes]
        dtype = _VALUES.get(ggml_type.name)
        data = (raw.view(dtype).reshape(shape) if dtype else
                raw.reshape(quant_shape_to_byte_shape(shape, ggml_type)))
        file.tensors.append(FileTensor(name, ggml_type, shape, data, at))
    return file


def _string(blob: Any, pos: int) -> tuple[str, int]:
    (length,) = struct.unpack_from("<Q", blob, pos)
    pos += 8
    return bytes(blob[pos: pos + length]).decode("utf-8", errors="replace"), pos + length


def _value(blob: Any, pos: int, kind: int, keep: bool) -> tuple[Any, int]:
    if kind in _SCALARS:
        fmt = "<" + _SCALARS[kind]
        return struct.unpack_from(fmt, blob, pos)[0], pos + struct.calcsize(fmt)
    if kind == _STRING:
        return _string(blob, pos)
    if kind != _ARRAY:
        raise ValueError(f"unknown GGUF metadata value type {kind}")
    inner, count = struct.unpack_from("<IQ", blob, pos)
    pos += 12
    if inner in _SCALARS:  # one numpy array (a vocabulary's scores: 49k of them)
        import numpy as np

        dtype = np.dtype("<" + _SCALARS[inner])
        end = pos + count * dtype.itemsize
        return np.frombuffer(bytes(blob[pos:end]), dtype=dtype), end
    if inner != _STRING:
        raise ValueError(f"GGUF metadata array of type {inner} (arrays of arrays are not read)")
    values: list[str] = []
    for _ in range(count):  # variable length: walked even when not kept
        if keep:
            value, pos = _string(blob, pos)
            values.append(value)
        else:
            pos += 8 + struct.unpack_from("<Q", blob, pos)[0]
    return (values if keep else count), pos
