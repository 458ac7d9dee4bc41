"""backend=llamacpp: the Engine's chat loop over llama.cpp, through llama-cpp-python.

As with ONNX Runtime, only what produces logits changes: the torch engine's loop keeps
the sampling, the token timeline, Stop between tokens, the prefix and response caches.
A ``Llama`` context holds the KV cache: ``eval`` feeds tokens (a prompt in batches of
``batch``, then one token a step) and the last position's logits are read with
``llama_get_logits_ith``, so TTFT and ITL mean what they mean for torch. The prefix
cache keeps the context across turns: cropping sets how many tokens it holds, and the
next ``eval`` drops the rest of the KV cache. Quality is scored by a second context
made for it, with every position's logits.

llama-cpp-python is an optional extra (PyPI ships it as source: it compiles llama.cpp,
about 8 minutes on 2 cores): ``make llamacpp``. Without it the backend is refused in
one line that names the command.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from playground.core import memory, models, paths
from playground.core.backends import llamacpp_log
from playground.core.backends.logits_model import LogitsModel
from playground.core.config import RunConfig
from playground.core.decode.decoders import Decoder
from playground.core.engine import Engine
from playground.core.formats import model_scan
from playground.core.optimize.device import default_threads

MAX_CONTEXT = 4096  # KV slots of the context: the model's own context, at most this
INSTALL = "make llamacpp (pip install -e '.[llamacpp]': compiles llama.cpp once, ~8 min)"
KV_GGML_TYPES = {"f16": 1, "q4_0": 2, "q8_0": 8}  # ggml's type ids (llama_cpp.GGML_TYPE_*)
# llama.cpp's file types (llama_cpp.LLAMA_FTYPE_MOSTLY_*) for quant=
FTYPES = {"q4_0": 2, "q8_0": 7, "q4_k_m": 15, "q5_k_m": 17, "q6_k": 18}
FLOAT_TENSORS = {0, 1, 30}  # ggml F32, F16, BF16: a source quantized without errors compounding


def check(cfg: RunConfig, device: str) -> str | None:
    """Why this config cannot run on llama.cpp here, in one line, or None."""
    try:
        import llama_cpp
    except ImportError:
        return f"backend: llamacpp needs llama-cpp-python, an optional extra: {INSTALL}"
    if device != "cpu" and not llama_cpp.llama_supports_gpu_offload():
        return (f"device: {device} needs a GPU build of llama-cpp-python; this one runs on cpu "
                "(rebuild it with CMAKE_ARGS=-DGGML_CUDA=on)")
    if amx_build(llama_cpp.llama_print_system_info().decode()):
        return ("backend: this llama-cpp-python was built with llama.cpp's AMX path, which "
                "segfaults at its first product on this CPU (llama.cpp issue #20824); rebuild "
                f"it without: make llamacpp (or {ALLOW_AMX}=1 to try it anyway)")
    return None


# llama.cpp's AMX kernels (Sapphire Rapids and later) crashed the process at the first
# product on a 2-vCPU Xeon here, in llama-bench and in the binding alike: a crash, not an
# error, so a build with them is refused (make llamacpp builds without them on such a CPU).
ALLOW_AMX = "PLAYGROUND_LLAMACPP_ALLOW_AMX"


def built_with(system_info: str) -> list[str]:
    """The features llama.cpp's system info says are on ("CPU : AVX2 = 1 | ..."), in its order."""
    return [part.split("=")[0].strip() for part in system_info.split("|")
            if part.strip().endswith("= 1")]


def amx_build(system_info: str) -> bool:
    """Whether llama.cpp's system info says its AMX kernels are in (and not allowed)."""
    import os

    return "AMX_INT8" in built_with(system_info) and os.environ.get(ALLOW_AMX) != "1"


def available() -> str | None:
    """Why the backend is not offered here (the GUI's tooltip), or None; cheap: the
    package is looked for, not loaded."""
    import importlib.util

    if importlib.util.find_spec("llama_cpp") is None:
        return f"llama-cpp-python is not installed: {INSTALL}"
    return None


class LlamaCache:
    """The engine's cache object: the tokens the context holds (one context a model)."""

    def __init__(self, llm: Any) -> None:
        self.llm = llm
        llm.reset()  # a new sequence: the next eval drops whatever the context held

    def crop(self, n: int) -> None:
        """As DynamicCache.crop: a negative n drops that many tokens from the end."""
        held = self.llm.n_tokens
        self.llm.n_tokens = held + n if n < 0 else min(n, held)

    def get_seq_length(self) -> int:
        return int(self.llm.n_tokens)

    def append(self, ids: list[int]) -> Any:
        import numpy as np
        import torch

        llm = self.llm
        if llm.n_tokens + len(ids) > llm.n_ctx():
            raise RuntimeError(f"the context holds {llm.n_ctx()} tokens; "
                               f"{llm.n_tokens + len(ids)} would not fit")
        llm.eval(ids)
        row = np.ctypeslib.as_array(llm._ctx.get_logits_ith(-1), shape=(llm.n_vocab(),))
        return torch.from_numpy(row.copy())


class LlamaLogits(LogitsModel):
    """Every position's logits for quality scoring, from a context kept for it
    (logits_all), made on first use."""

    def __init__(self, path: Path, params: dict[str, Any], eos_token_id: Any) -> None:
        super().__init__(eos_token_id)
        self.path, self.params, self._llm = path, params, None

    def row_logits(self, ids: list[int]) -> Any:
        import torch
        from llama_cpp import Llama

        if self._llm is None or self._llm.n_ctx() < len(ids):
            self._llm = Llama(str(self.path), **{**self.params, "n_ctx": max(len(ids), 512),
                                                 "logits_all": True})
        self._llm.reset()
        self._llm.eval(ids)
        return torch.from_numpy(self._llm.scores[: len(ids)].copy())


class LlamaDecoder(Decoder):
    name = "llama.cpp (llama-cpp-python: eval a token, read its logits)"

    def __init__(self, llm: Any, batch: int) -> None:
        self.llm, self.batch = llm, batch

    def new_cache(self) -> LlamaCache:
        return LlamaCache(self.llm)

    def logits(self, ids: list[int], cache: LlamaCache) -> Any:
        return cache.append(ids)

    def prefill(self, ids: list[int], cache: LlamaCache, should_stop: Any) -> Any:
        """The prompt in batches of ``batch`` tokens (llama.cpp's own prompt batch), Stop
        checked between them."""
        logits = None
        for begin in range(0, len(ids), self.batch):
            logits = self.logits(ids[begin : begin + self.batch], cache)
            if begin + self.batch < len(ids) and should_stop():
                return None
        return logits


class LlamaEngine(Engine):
    def __init__(self, llm: Any, path: Path, params: dict[str, Any], tokenizer: Any,
                 config: RunConfig, *, device: str, info: dict[str, Any],
                 bandwidth_gb_s: float | None) -> None:
        self.llm = llm
        self.context = min(int(llm._model.n_ctx_train()), llm.n_ctx())
        eos = sorted({int(llm.token_eos())} | ({tokenizer.eos_token_id}
                                               if tokenizer.eos_token_id is not None else set()))
        self._init_loop(LlamaLogits(path, params, eos), tokenizer, config, device, info,
                        bandwidth_gb_s)
        self.weights_mb = path.stat().st_size / 1e6  # the file's blocks, memory-mapped
        self.read_mb = self.weights_mb
        self.decoder = LlamaDecoder(llm, config.batch)


def _gguf(cfg: RunConfig, progress: Callable[[str], None]) -> tuple[Any, Path]:
    source = models.resolve(cfg.model)
    if source.kind == "default":
        source.path = models.ensure_default_model(progress)
        return source, models.default_gguf_path()
    if source.kind != "gguf" or not source.gguf_file:
        raise models.ModelError("backend: llamacpp runs a GGUF file; give model=default or a .gguf")
    return source, source.path / source.gguf_file


def requantized(path: Path, quant: str, threads: int,
                progress: Callable[[str], None]) -> tuple[Path, str]:
    """The file re-quantized to ``quant`` by llama.cpp's own quantizer, once: cached in
    the user cache under the source's name, size and time. (path, a note)."""
    import llama_cpp

    stat = path.stat()
    key = hashlib.sha256(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    out = paths.cache_dir() / "llamacpp" / f"{path.stem}-{key.hexdigest()[:12]}-{quant}.gguf"
    again = not model_scan.matrix_types(path) <= FLOAT_TENSORS
    note = (f"re-quantized to {quant.upper()} by llama.cpp's quantizer"
            + (" from an already quantized file (its rounding errors add up: compare it "
               "with the file's own blocks)" if again else "") + f" ({out.name})")
    if out.is_file():
        return out, note + ", cached"
    out.parent.mkdir(parents=True, exist_ok=True)
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype, params.nthread, params.allow_requantize = FTYPES[quant], threads, again
    tmp = out.with_suffix(f".tmp{os.getpid()}")
    started = time.perf_counter()
    code, last_words = _quantize_reporting(path, tmp, out, params, quant, progress)
    if code != 0 or not tmp.is_file():
        tmp.unlink(missing_ok=True)
        raise models.ModelError(f"quant: llama.cpp could not quantize {path.name} to "
                                f"{quant} (code {code}: {last_words[:200] or 'no reason logged'})")
    tmp.replace(out)
    return out, note + f", in {time.perf_counter() - started:.0f} s"


def _quantize_reporting(path: Path, tmp: Path, out: Path, params: Any, quant: str,
                        progress: Callable[[str], None]) -> tuple[int, str]:
    """llama.cpp's quantizer on a thread, its per-tensor log turned into progress every
    5%. It cannot be interrupted: a Stop (``progress`` raising) is held until the file is
    written (kept in the cache, so the next load takes it), then raised."""
    import llama_cpp

    lines: queue.Queue[str] = queue.Queue()
    result: dict[str, Any] = {}

    def work() -> None:
        try:
            result["code"] = llama_cpp.llama_model_quantize(str(path).encode(), str(tmp).encode(),
                                                            ctypes.byref(params))
        finally:
            lines.put("")  # wakes the reader

    stopped: BaseException | None = None
    shown = -5
    last_words = ""
    progress(f"Quantizing {path.name} to {quant.upper()} with llama.cpp (once)…")
    with llamacpp_log.captured(lines.put):
        thread = threading.Thread(target=work, name="llama.cpp quantize", daemon=True)
        thread.start()
        try:
            while thread.is_alive() or not lines.empty():
                try:
                    line = lines.get(timeout=0.5)
                except queue.Empty:
                    continue
                last_words = line.strip() or last_words
                done = llamacpp_log.tensor_progress(line)
                if done is None or stopped is not None or done[0] * 100 // done[1] < shown + 5:
                    continue
                shown = done[0] * 100 // done[1]
                try:
                    progress(f"Quantizing {path.name} to {quant.upper()} with llama.cpp: "
                             f"{shown}% (tensor {done[0]} of {done[1]}; a Stop waits for the file)")
                except Exception as exc:  # a Stop: llama.cpp's quantizer runs to its end
                    stopped = exc
        finally:  # the callback must outlive every call llama.cpp makes to it
            thread.join()
    if stopped is not None:
        if result.get("code") == 0 and tmp.is_file():
            tmp.replace(out)
        else:
            tmp.unlink(missing_ok=True)
        raise stopped
    return result.get("code", -1), last_words


def build(cfg: RunConfig, device: str, info: dict[str, Any],
          progress: Callable[[str], None]) -> LlamaEngine:
    """Load the config's GGUF into llama.cpp; ``info`` is the engine's info dict."""
    import llama_cpp
    from transformers import AutoTokenizer

    started = time.perf_counter()
    source, path = _gguf(cfg, progress)
    threads = cfg.threads or default_threads()
    quant_note = None
    original = path
    if cfg.quant != "none":
        path, quant_note = requantized(path, cfg.quant, threads, progress)
    params = dict(n_threads=threads, n_threads_batch=threads, n_batch=cfg.batch,
                  n_ubatch=cfg.batch, flash_attn=cfg.flash_attn, n_gpu_layers=cfg.gpu_layers,
                  type_k=KV_GGML_TYPES[cfg.kv_type], type_v=KV_GGML_TYPES[cfg.kv_type],
                  seed=cfg.seed, verbose=False)
    progress(f"Loading {path.name} in llama.cpp…")
    try:
        fields = model_scan.header_fields(path)
        trained = fields.get(f"{fields.get('general.architecture')}.context_length")
        n_ctx = min(MAX_CONTEXT, int(trained)) if isinstance(trained, int) else MAX_CONTEXT
        logged: list[str] = []
        with llamacpp_log.captured(logged.append):
            llm = llama_cpp.Llama(str(path), n_ctx=n_ctx, **params)
    except Exception as exc:  # llama-cpp-python raises ValueError/RuntimeError on a bad file
        raise models.ModelError(f"backend: llama.cpp could not load {path.name}: "
                                f"{str(exc).splitlines()[0] if str(exc) else exc!r}") from exc
    folder = source.path if source.kind == "default" else original.parent
    tokenizer = AutoTokenizer.from_pretrained(
        folder, gguf_file=None if source.kind == "default" else original.name)
    if tokenizer.pad_token_id is None and tokenizer.eos_token_id is not None:
        tokenizer.pad_token = tokenizer.eos_token
    isa = built_with(llama_cpp.llama_print_system_info().decode())
    notes = info.setdefault("notes", [])
    notes.append(f"llama.cpp through llama-cpp-python {llama_cpp.__version__} "
                 f"({', '.join(isa) or 'no SIMD flags reported'}); KV cache {cfg.kv_type}, "
                 f"flash attention {'on' if cfg.flash_attn else 'off'}, batch {cfg.batch}, "
                 f"{cfg.gpu_layers if cfg.gpu_layers >= 0 else 'all'} layers on the GPU")
    if quant_note:
        notes.append(quant_note)
    found = llamacpp_log.buffers(logged)
    if found:
        notes.append(f"llama.cpp's buffers: {llamacpp_log.describe(found)}")
    info.update(model_name=source.name, backend="llamacpp", threads=threads, device=device,
                architecture=f"GGUF {fields.get('general.architecture') or '?'}",
                llama_cpp_version=llama_cpp.__version__, llama_cpp_isa=isa,
                load_s=time.perf_counter() - started, params=int(llm._model.n_params()),
                llama_cpp_buffers_mb={kind: round(sum(v.values()), 1) for kind, v in found.items()})
    bandwidth = memory.bandwidth_gb_s(threads) if device == "cpu" else None
    engine = LlamaEngine(llm, path, params, tokenizer, cfg, device=device, info=info,
                         bandwidth_gb_s=bandwidth)
    if found.get("model"):  # what llama.cpp holds for the weights (mapped and repacked)
        engine.weights_mb = engine.read_mb = sum(found["model"].values())
    info["weights_mb_loaded"] = engine.weights_mb
    info["decode_step"] = engine.decode_path()
    return engine
