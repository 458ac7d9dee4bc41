"""The models on this machine, found before loading any: GGUF files and model folders in
the places users keep them (LM Studio's, GPT4All's, Ollama's blobs, the Hugging Face
cache, Downloads, ~/models and the folders of models used before), each with its size,
format, parameter count, whether the fast path (gguf-native, the one-call native step)
applies and why not, and whether it fits in the RAM free now. Read from headers only:
a GGUF's metadata and tensor table, a folder's config.json and safetensors headers.
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from playground.core.quant.gguf_blocks import HALF, NATIVE

# GGUF architectures whose files run the one-call step (decode/family.py's families;
# Mistral's files say "llama")
FAST_ARCHS = ("llama", "qwen2", "qwen3", "gemma2", "gemma3", "phi3")
FAST_MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3", "gemma2", "gemma3_text", "phi3")
BASE_MB = 550  # the process before any weight: Python, torch, transformers, a tokenizer
MAX_DEPTH = 5
MAX_ENTRIES = 20000  # directory entries looked at per root: a home folder can be huge
# a header from outside is data, not instructions: counts past these are a damaged file
MAX_TENSORS = MAX_FIELDS = 2**20
MAX_DIMS = 8
MAX_HEADER_BYTES = 256 * 2**20  # the vocabulary of a 256k-token model is ~5 MB
MAX_CONFIG_BYTES = 16 * 2**20


@dataclass
class FoundModel:
    path: Path
    kind: str  # "gguf" or "folder"
    name: str
    size_mb: float
    arch: str = "?"
    fmt: str = "?"  # a GGUF's file type (Q4_K_M, ...), a folder's dtype
    params: int | None = None
    fast: str | None = None  # None: the fast path applies; else why not
    need_mb: float | None = None  # RAM it takes loaded (estimate, before the KV cache)
    types: Counter = field(default_factory=Counter)  # a GGUF's matrices by block type
    problem: str | None = None  # unreadable: why

    def fits(self, free_mb: float) -> bool | None:
        return None if self.need_mb is None else self.need_mb <= free_mb

    def spec(self) -> str:
        """The RunConfig spec that loads it the fastest faithful way."""
        quant = ",quant=gguf-native" if self.kind == "gguf" and self.fast is None else ""
        return f"model={self.path}{quant}"


def default_roots() -> list[Path]:
    home = Path.home()
    roots = [home / "models", home / "Downloads",
             home / ".lmstudio" / "models", home / ".cache" / "lm-studio" / "models",
             home / ".local" / "share" / "nomic.ai" / "GPT4All",
             home / ".ollama" / "models" / "blobs",
             Path(os.environ.get("HF_HUB_CACHE", home / ".cache" / "huggingface" / "hub"))]
    from playground.core import paths

    roots.append(paths.cache_dir() / "models")
    seen, out = set(), []
    for root in roots:
        try:
            key = str(root.expanduser().resolve()) if root.exists() else None
        except OSError:  # a folder that cannot be searched: left out
            key = None
        if key and key not in seen:
            seen.add(key)
            out.append(root)
    return out


def scan(roots: list[Path] | None = None) -> list[FoundModel]:
    """Every GGUF file and model folder under ``roots`` (default_roots()), largest first."""
    found: dict[str, FoundModel] = {}
    for root in roots if roots is not None else default_roots():
        for path in _walk(Path(root).expanduser()):
            key = str(path.resolve())
            if key not in found:
                found[key] = describe(path)
    return sorted(found.values(), key=lambda m: -m.size_mb)


def _walk(root: Path):
    try:
        if root.is_file():
            if _is_gguf(root):
                yield root
            return
    except OSError:
        return
    stack, looked = [(root, 0)], 0
    while stack:
        folder, depth = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        names = {e.name for e in entries}
        if "config.json" in names and any(n.endswith(".safetensors") for n in names):
            yield folder
        for entry in entries:
            looked += 1
            if looked > MAX_ENTRIES:
                return
            try:
                if entry.is_dir(follow_symlinks=False) and depth < MAX_DEPTH \
                        and not entry.name.startswith("."):
                    stack.append((Path(entry.path), depth + 1))
                elif entry.is_file() and _is_gguf(Path(entry.path)):
                    yield Path(entry.path)
            except OSError:
                continue


def _is_gguf(path: Path) -> bool:
    # by name first: a stat only for the candidates, not for every file in Downloads
    gguf = path.suffix.lower() == ".gguf"
    blob = path.name.startswith("sha256") and not path.name.endswith("-partial")
    if not (gguf or blob) or not _regular(path):  # FIFOs and devices are never read
        return False
    if gguf:
        return True
    # Ollama keeps GGUFs as sha256-named blobs: the magic says which are models
    try:
        with path.open("rb") as f:
            return f.read(4) == b"GGUF"
    except OSError:
        return False


def describe(path: Path) -> FoundModel:
    """One file's or folder's entry; unreadable ones say why (never raise)."""
    try:
        return _gguf(path) if path.is_file() else _folder(path)
    except Exception as exc:  # a damaged file is a row that says so, not a failed scan
        try:
            size = path.stat().st_size / 1e6 if path.is_file() else 0.0
        except OSError:
            size = 0.0
        return FoundModel(path, "gguf" if path.is_file() else "folder", path.name, size,
                          problem=f"unreadable: {type(exc).__name__}: {exc}".splitlines()[0])


# GGUF's value types: struct formats of the scalars, 8 a string, 9 an array
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q",
            12: "d"}


class _Header:
    """A GGUF's metadata scalars and tensor table, read straight from the header: the
    gguf package's reader turns every vocabulary entry into an array first (2 s for a
    3B file, each time the picker opens)."""

    def __init__(self, path: Path) -> None:
        self.fields: dict[str, object] = {}
        self.tensors: list[tuple[str, tuple[int, ...], int]] = []  # name, shape, ggml type
        self.size = path.stat().st_size
        with path.open("rb") as f:
            self.f = f
            if f.read(4) != b"GGUF":
                raise ValueError("not a GGUF file (no GGUF magic)")
            version, n_tensors, n_fields = self._read("<IQQ")
            if version < 2:
                raise ValueError(f"GGUF version {version} is too old")
            if n_tensors > MAX_TENSORS or n_fields > MAX_FIELDS:
                raise ValueError(f"a header of {n_tensors} tensors and {n_fields} fields")
            for _ in range(n_fields):
                key = self._string()
                (kind,) = self._read("<I")
                value = self._value(kind)
                if value is not None:
                    self.fields[key] = value
            for _ in range(n_tensors):
                name = self._string()
                (dims,) = self._read("<I")
                if dims > MAX_DIMS:
                    raise ValueError(f"tensor {name!r} has {dims} dimensions")
                shape = self._read(f"<{dims}Q")
                kind, _offset = self._read("<IQ")
                self.tensors.append((name, tuple(shape), kind))

    def _read(self, fmt: str) -> tuple:
        size = struct.calcsize(fmt)
        if self.f.tell() + size > min(self.size, MAX_HEADER_BYTES):
            raise ValueError("the header runs past the file (or past 256 MB)")
        data = self.f.read(size)
        if len(data) != size:
            raise ValueError("the header ends early (a truncated file)")
        return struct.unpack(fmt, data)

    def _skip(self, n: int) -> None:
        if self.f.tell() + n > min(self.size, MAX_HEADER_BYTES):
            raise ValueError("the header runs past the file (or past 256 MB)")
        self.f.seek(n, 1)

    def _string(self) -> str:
        (n,) = self._read("<Q")
        if n > 2**24:
            raise ValueError(f"a header string of {n} bytes")
        return self.f.read(n).decode("utf-8", errors="replace")

    def _value(self, kind: int, depth: int = 0):
        if kind in _SCALARS:
            return self._read("<" + _SCALARS[kind])[0]
        if kind == 8:
            return self._string()
        if kind == 9:  # arrays (the vocabulary, merges, ...): skipped, not kept
            item, count = self._read("<IQ")
            # every item takes a byte or more: a count the file cannot hold is damage
            if depth > 1 or count > self.size - self.f.tell():
                raise ValueError(f"an array of {count} items (nested {depth + 1} deep)")
            if item in _SCALARS:
                self._skip(struct.calcsize(_SCALARS[item]) * count)
            elif item == 8:
                for _ in range(count):
                    (n,) = self._read("<Q")
                    self._skip(n)
            else:
                for _ in range(count):
                    self._value(item, depth + 1)
            return None
        raise ValueError(f"unknown GGUF value type {kind}")


def header_fields(path: Path) -> dict[str, object]:
    """A GGUF's metadata scalars (arrays left out), from its header alone."""
    return dict(_Header(path).fields)


def matrix_types(path: Path) -> set[int]:
    """The ggml type ids of a GGUF's tensors of two or more dimensions (its header alone)."""
    return {kind for _name, shape, kind in _Header(path).tensors if len(shape) >= 2}


def _gguf(path: Path) -> FoundModel:
    from gguf import GGMLQuantizationType, LlamaFileType

    header = _Header(path)

    def field_value(key: str):
        return header.fields.get(key)

    def type_name(kind: int) -> str:
        try:
            return GGMLQuantizationType(kind).name
        except ValueError:
            return f"type {kind}"

    arch = str(field_value("general.architecture") or "?")
    # the file's name is what users know it by (converters often write "Hf" or the
    # folder's name as general.name); Ollama's blobs have only the metadata's
    name = path.name if not path.name.startswith("sha256") else str(
        field_value("general.name") or path.name)
    ftype = field_value("general.file_type")
    try:
        fmt = LlamaFileType(int(ftype)).name.removeprefix("MOSTLY_") if ftype is not None else "?"
    except ValueError:
        fmt = f"type {ftype}"
    sizes = [(type_name(kind), math.prod(shape), len(shape)) for _n, shape, kind in header.tensors]
    params = sum(n for _t, n, _d in sizes)
    types = Counter(t for t, _n, dims in sizes if dims >= 2)
    size_mb = path.stat().st_size / 1e6
    # a matrix the kernels take: a native block type, or F16/BF16 in two dimensions (a
    # 3-D stack of experts is not a Linear here)
    slow_counts = Counter(t for t, _n, dims in sizes if dims >= 2 and t != "F32" and not (
        t in NATIVE or (t in HALF and dims == 2)))
    slow = sorted(slow_counts)
    if arch not in FAST_ARCHS:
        fast = f"architecture {arch}: not on the one-call step (transformers' forward)"
    elif slow:
        fast = ("no native kernel for " + ", ".join(f"{slow_counts[t]} {t}" for t in slow)
                + ": those run from float32 copies")
    else:
        fast = None
    floats = sum(n for t, n, dims in sizes if t in slow and not (t in HALF and dims == 2))
    # kept in blocks: about the file; a matrix without a kernel becomes float32 (4 bytes)
    need = BASE_MB + size_mb + floats * 4 / 1e6
    return FoundModel(path, "gguf", name, size_mb, arch, fmt, params, fast, need, types)


def _regular(path: Path, limit: int | None = None) -> bool:
    """A plain file (not a FIFO, a device or a link to one), within ``limit`` bytes."""
    import stat

    info = path.stat()
    return stat.S_ISREG(info.st_mode) and (limit is None or info.st_size <= limit)


def _folder(path: Path) -> FoundModel:
    if not _regular(path / "config.json", MAX_CONFIG_BYTES):
        raise ValueError("config.json is not a plain file of at most 16 MB")
    config = json.loads((path / "config.json").read_text())
    kind = str(config.get("model_type") or "?")
    files = [f for f in path.glob("*.safetensors") if _regular(f)]
    size_mb = sum(f.stat().st_size for f in files) / 1e6
    params, dtypes = 0, Counter()
    for f in files:
        for info in _safetensors_header(f).values():
            if isinstance(info, dict) and "shape" in info:
                n = 1
                for d in info["shape"]:
                    n *= int(d)
                params += n
                dtypes[info.get("dtype", "?")] += n
    fmt = dtypes.most_common(1)[0][0] if dtypes else "?"
    fast = None if kind in FAST_MODEL_TYPES else f"model type {kind}: not on the one-call step"
    # transformers loads a folder in float32: 4 bytes a parameter
    need = BASE_MB + params * 4 / 1e6 if params else None
    name = path.parent.parent.name.removeprefix("models--").replace("--", "/") \
        if path.parent.name == "snapshots" else path.name
    return FoundModel(path, "folder", name, size_mb, kind, fmt, params or None, fast, need)


def _safetensors_header(path: Path) -> dict:
    with path.open("rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        if length > 100 * 2**20:
            raise ValueError(f"{path.name}: a header of {length} bytes")
        return json.loads(f.read(length))


def free_mb() -> float:
    import psutil

    return psutil.virtual_memory().available / 1e6


def human_params(n: int | None) -> str:
    if not n:
        return "?"
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.0f}M"
