"""backend=onnxruntime: the Engine's chat loop over an ONNX Runtime GenAI generator.

The torch engine's loop (sampling, the token timeline, cancel between tokens, the
prefix and response caches) stays as it is; only what produces logits changes. An
``og.Generator`` holds the KV cache: ``append_tokens`` prefills or decodes and
``get_logits`` returns the last position's logits, so TTFT and ITL mean exactly what
they mean for torch. The prefix cache keeps the generator across turns and
``rewind_to`` drops the tokens that differ. Quality is scored through the same ONNX
model: a fresh generator per evaluation window, all positions' logits.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from playground.core import memory, models
from playground.core.backends import onnx_export
from playground.core.backends.logits_model import LogitsModel
from playground.core.config import RunConfig
from playground.core.decode.decoders import Decoder
from playground.core.engine import Engine
from playground.core.optimize.device import default_threads

MIN_CAPACITY = 1024  # KV slots of a new generator; it grows by doubling (re-prefilled)


class GeneratorCache:
    """The engine's cache object for ONNX Runtime: one generator and its capacity."""

    def __init__(self, og_model: Any, capacity: int) -> None:
        import onnxruntime_genai as og

        params = og.GeneratorParams(og_model)
        params.set_search_options(max_length=capacity)
        self.generator = og.Generator(og_model, params)
        self.capacity = capacity

    def crop(self, n: int) -> None:
        """As DynamicCache.crop: a negative n drops that many tokens from the end."""
        count = self.generator.token_count()
        self.generator.rewind_to(count + n if n < 0 else n)

    def append(self, ids: list[int]) -> Any:
        import numpy as np
        import torch

        self.generator.append_tokens(np.asarray(ids, dtype=np.int32))
        return torch.from_numpy(np.array(self.generator.get_logits(), dtype=np.float32).reshape(-1))


class OnnxLogits(LogitsModel):
    """Every position's logits for quality scoring, computed by the ONNX model."""

    def __init__(self, og_model: Any, eos_token_id: Any) -> None:
        super().__init__(eos_token_id)
        self.og_model = og_model

    def row_logits(self, ids: list[int]) -> Any:
        import numpy as np
        import torch

        cache = GeneratorCache(self.og_model, len(ids))
        cache.generator.append_tokens(np.asarray(ids, dtype=np.int32))
        logits = np.array(cache.generator.get_output("logits"), dtype=np.float32)[0]
        return torch.from_numpy(logits)


class OnnxDecoder(Decoder):
    name = "ONNX Runtime GenAI generator (append_tokens)"

    def __init__(self, new_cache: Any) -> None:
        self._new_cache = new_cache

    def new_cache(self) -> GeneratorCache:
        return self._new_cache()

    def logits(self, ids: list[int], cache: GeneratorCache) -> Any:
        return cache.append(ids)


class OnnxEngine(Engine):
    def __init__(self, og_model: Any, tokenizer: Any, config: RunConfig, *, device: str,
                 info: dict[str, Any], folder: Path, bandwidth_gb_s: float | None) -> None:
        genai = json.loads((folder / "genai_config.json").read_text())["model"]
        self.og_model = og_model
        self.context = int(genai["context_length"])
        self._capacity = MIN_CAPACITY
        self._init_loop(OnnxLogits(og_model, genai.get("eos_token_id")), tokenizer, config,
                        device, info, bandwidth_gb_s)
        self.weights_mb = onnx_export.exported_mb(folder)
        self.read_mb = self.weights_mb - _embedding_mb(folder)
        self.decoder = OnnxDecoder(lambda: GeneratorCache(self.og_model, self._capacity))

    def _cache_for(self, ids: list[int]) -> tuple[Any, int]:
        need = len(ids) + self.config.max_new_tokens
        self.check_context(len(ids))
        capacity = MIN_CAPACITY
        while capacity < need:
            capacity *= 2
        self._capacity = min(capacity, self.context)
        if self._prefix is not None and self._prefix.cache.capacity < need:
            self._prefix = None  # a bigger generator: this turn prefills everything
        return super()._cache_for(ids)


def _embedding_mb(folder: Path) -> float:
    """The float input embedding is read one row a token, not whole: leave it out of
    the bytes the bandwidth bound counts (when the builder kept it as its own table)."""
    import math

    import onnx

    graph = onnx.load(str(folder / "model.onnx"), load_external_data=False).graph
    for init in graph.initializer:
        if "embed_tokens" in init.name:
            itemsize = onnx.helper.tensor_dtype_to_np_dtype(init.data_type).itemsize
            return math.prod(init.dims) * itemsize / 1e6
    return 0.0


def check(cfg: RunConfig, device: str) -> str | None:
    try:
        import onnxruntime_genai as og
    except ImportError as exc:
        return (f"backend: onnxruntime needs the onnxruntime-genai package (make setup installs "
                f"it): {str(exc).splitlines()[0] if str(exc) else exc!r}")
    if device == "mps":
        return "backend: onnxruntime runs on cpu or cuda here, not mps"
    if device.startswith("cuda") and not og.is_cuda_available():
        return ("backend: onnxruntime on cuda needs the CUDA build of onnxruntime-genai "
                "(onnxruntime-genai-cuda); this one runs on cpu only")
    if cfg.model.endswith(".gguf"):
        return ("backend: onnxruntime exports a model folder; give model=default, a folder or "
                "a cached hub id (not a .gguf file)")
    return None


def build(cfg: RunConfig, folder: Path, device: str, info: dict[str, Any],
          progress: Callable[[str], None]) -> OnnxEngine:
    """Export (once) and load ``folder`` for ``cfg``; ``info`` is the engine's info dict."""
    import onnxruntime_genai as og
    from transformers import AutoTokenizer

    started = time.perf_counter()
    out, export_s = onnx_export.export(folder, cfg.quant, cfg.quant_group, device, progress)
    progress(f"Loading {out.name} in ONNX Runtime…")
    threads = cfg.threads or default_threads()
    og_config = og.Config(str(out))
    og_config.overlay(json.dumps({"model": {"decoder": {"session_options": {
        "intra_op_num_threads": threads, "inter_op_num_threads": 1}}}}))
    provider = "CPUExecutionProvider"
    if device.startswith("cuda"):
        og_config.clear_providers()
        og_config.append_provider("cuda")
        provider = "CUDAExecutionProvider"
    try:
        og_model = og.Model(og_config)
    except Exception as exc:  # onnxruntime_genai raises RuntimeError/OrtException
        raise models.ModelError(f"backend: ONNX Runtime could not load {out}: "
                                f"{str(exc).splitlines()[0] if str(exc) else exc}") from exc
    tokenizer = AutoTokenizer.from_pretrained(folder)
    if tokenizer.pad_token_id is None and tokenizer.eos_token_id is not None:
        tokenizer.pad_token = tokenizer.eos_token
    precision = onnx_export.PRECISION[cfg.quant]
    block = f", block {cfg.quant_group}" if precision != "fp32" else ""
    notes = info.setdefault("notes", [])
    notes.append(f"ONNX Runtime GenAI {og.__version__}, {provider}, {precision}{block} "
                 f"({out.name}; " + (f"exported now in {export_s:.0f} s)" if export_s is not None
                                     else "export cached)"))
    info.update(backend="onnxruntime", provider=provider, threads=threads, device=device,
                onnx_dir=str(out), export_s=export_s, load_s=time.perf_counter() - started)
    bandwidth = memory.bandwidth_gb_s(threads) if device == "cpu" else None
    engine = OnnxEngine(og_model, tokenizer, cfg, device=device, info=info, folder=out,
                        bandwidth_gb_s=bandwidth)
    info["weights_mb_loaded"] = engine.weights_mb
    info["decode_step"] = engine.decode_path()
    return engine
