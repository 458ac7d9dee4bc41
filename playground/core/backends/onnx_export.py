"""Export a Hugging Face folder to ONNX Runtime GenAI's format, once per machine.

ONNX Runtime GenAI's own model builder writes the ONNX graph (fused q/k/v, grouped
query attention, weight-only int4/int8 ``MatMulNBits`` with ``block_size``) and its
``genai_config.json``. It runs in this process (the packaged app has no Python
interpreter to spawn) and offline: the input is the local folder that the torch
backend loads. The result goes to the user cache under a key of the folder's files,
the precision, the block size and the builder's version, so a later load takes
seconds and a changed model or builder exports again.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from playground.core import paths

PRECISION = {"none": "fp32", "int8-weight": "int8", "int4-weight": "int4"}


class ExportError(RuntimeError):
    """The builder failed; the message carries its last line."""


def _version() -> str:
    import onnxruntime_genai

    return onnxruntime_genai.__version__


def _builder():
    """The model builder imports its helpers as top-level modules (``quantization``,
    ``builders``...) from its own folder, which it appends to sys.path: any module of
    the same name earlier on the path wins (a script's own quantization.py did). Put
    its folder first while it imports."""
    import importlib.util
    import sys

    spec = importlib.util.find_spec("onnxruntime_genai")
    here = str(Path(spec.origin).parent / "models") if spec and spec.origin else ""
    for name in ("quantization", "builder_config", "builders", "loaders"):
        module = sys.modules.get(name)
        if module is not None and not str(getattr(module, "__file__", "")).startswith(here):
            del sys.modules[name]  # someone else's module of that name
    sys.path.insert(0, here)
    try:
        from onnxruntime_genai.models import builder
    finally:
        sys.path.remove(here)
    return builder


def _fingerprint(folder: Path) -> str:
    """Names, sizes and times of the folder's files: a changed model exports again."""
    parts = []
    for f in sorted(folder.iterdir()):
        if f.is_file():
            st = f.stat()
            parts.append(f"{f.name}:{st.st_size}:{int(st.st_mtime)}")
    return "|".join(parts)


def export_dir(folder: Path, quant: str, block: int) -> Path:
    precision = PRECISION[quant]
    key = json.dumps([str(folder.resolve()), _fingerprint(folder), precision,
                      block if precision != "fp32" else None, _version()])
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    tag = f"-g{block}" if precision != "fp32" else ""
    return paths.cache_dir() / "onnx" / f"{folder.name}-{precision}{tag}-{digest}"


def exported_mb(out: Path) -> float:
    return sum(f.stat().st_size for f in out.glob("model.onnx*")) / 1e6


def export(folder: Path, quant: str, block: int, device: str = "cpu",
           progress: Callable[[str], None] = lambda _msg: None) -> tuple[Path, float | None]:
    """The exported folder for (folder, quant, block), and the export's seconds when it
    ran now (None: it was already in the cache)."""
    out = export_dir(folder, quant, block)
    if (out / "genai_config.json").is_file():
        return out, None
    precision = PRECISION[quant]
    progress(f"Exporting {folder.name} to ONNX ({precision}; once, then cached)…")
    started = time.perf_counter()  # importing the builder counts: it is part of the wait
    root = logging.getLogger()
    root_state = (root.level, list(root.handlers))
    builder = _builder()
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    options = [] if precision == "fp32" else [f"block_size={block}"]
    provider = "cuda" if device.startswith("cuda") else "cpu"
    log = io.StringIO()
    quiet = logging.getLogger("onnxruntime")  # the int4/int8 quantizer logs every MatMul
    level = quiet.level
    quiet.setLevel(logging.WARNING)
    try:
        # The builder prints a line per tensor; keep it for the error message only.
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            extra = builder.parse_extra_options(None, str(folder), str(tmp), precision, provider,
                                                str(tmp / "hf_cache"), options)
            builder.create_model(None, str(folder), str(tmp), precision, provider,
                                 str(tmp / "hf_cache"), **extra)
    except Exception as exc:  # the builder raises bare Exceptions for unsupported models
        shutil.rmtree(tmp, ignore_errors=True)
        tail = [line for line in log.getvalue().splitlines() if line.strip()][-1:]
        raise ExportError(f"backend: the ONNX export of {folder.name} failed: "
                          f"{str(exc).strip() or type(exc).__name__}"
                          + (f" ({tail[0].strip()[:200]})" if tail else "")) from exc
    finally:
        quiet.setLevel(level)
        # onnxruntime's quantizer calls logging.basicConfig(level=INFO) on import: undo it
        root.setLevel(root_state[0])
        root.handlers[:] = root_state[1]
    shutil.rmtree(tmp / "hf_cache", ignore_errors=True)
    seconds = time.perf_counter() - started
    (tmp / "playground_export.json").write_text(json.dumps(
        {"source": str(folder), "precision": precision, "block_size": block,
         "builder": _version(), "seconds": round(seconds, 2)}))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    progress(f"Exported in {seconds:.0f} s ({exported_mb(out):.0f} MB)")
    return out, seconds
