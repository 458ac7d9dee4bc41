"""Memory measurement: a background RSS sampler, CUDA peaks, weights bytes, bandwidth.

RSS is sampled at 50 Hz in a daemon thread during a turn (psutil), and on Linux the
kernel's own peak counter (VmHWM) is reset at the start and read at the end, so a
spike between two samples still counts; the CUDA peak
comes from ``torch.cuda.max_memory_allocated``. Memory bandwidth is measured once
per machine with a short copy test and cached.
"""

from __future__ import annotations

import json
import platform
import threading
import time
from typing import Any

import psutil

from playground.core import paths

MB = 1e6


def rss_mb() -> float:
    return psutil.Process().memory_info().rss / MB


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) to the current RSS; False where the
    kernel has none to reset (not Linux, or older than 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return kernel_peak_rss_mb() is not None
    except OSError:
        return False


def kernel_peak_rss_mb() -> float | None:
    """The kernel's peak RSS of this process since start or the last reset (VmHWM)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024 / MB
    except (OSError, ValueError, IndexError):
        return None
    return None


class RssSampler:
    """Context manager for this process's peak RSS until exit (``peak_mb``): the
    kernel's counter, reset on entry, where there is one; samples at ``hz`` always (a
    nested sampler's reset cannot then hide an outer one's peak)."""

    def __init__(self, hz: float = 50.0) -> None:
        self.interval = 1.0 / hz
        self.peak_mb = 0.0
        self.samples = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._proc = psutil.Process()

    def _sample(self) -> None:
        rss = self._proc.memory_info().rss / MB
        self.samples += 1
        if rss > self.peak_mb:
            self.peak_mb = rss

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> RssSampler:
        self.kernel_counter = reset_peak_rss()
        self._sample()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()
        self.sampled_peak_mb = self.peak_mb  # what the samples alone saw (benchmarks)
        kernel = kernel_peak_rss_mb() if self.kernel_counter else None
        if kernel is not None and kernel > self.peak_mb:
            self.peak_mb = kernel


def cuda_reset_peak(device: Any) -> None:
    import torch

    if torch.cuda.is_available() and str(device).startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(device)


def cuda_peak_mb(device: Any) -> float | None:
    import torch

    if torch.cuda.is_available() and str(device).startswith("cuda"):
        return torch.cuda.max_memory_allocated(device) / MB
    return None


def weights_mb(model: Any) -> float:
    """Bytes of parameters and buffers as stored (quantized storage counts as stored).

    Counted per storage, so tied embeddings and row views of one packed matrix (fused
    q/k/v in weight-only quantization) count once."""
    total = 0
    seen: set[int] = set()
    for tensor in list(model.parameters()) + list(model.buffers()):
        storage = tensor.untyped_storage()
        if storage.data_ptr() in seen:
            continue
        seen.add(storage.data_ptr())
        total += storage.nbytes()
    total += _packed_bytes(model)
    return total / MB


def read_mb_per_token(model: Any) -> float:
    """Weight bytes a decoded token reads: everything but the input embedding table, of
    which a token reads one row, unless the LM head computes with that same table (tied
    float weights). A quantized head has its own copy, so the float table is not read."""
    total = weights_mb(model) * MB
    embeddings = model.get_input_embeddings()
    table = getattr(embeddings, "weight", None)
    if table is None:
        return total / MB
    head_weight = getattr(model.get_output_embeddings(), "weight", None)
    storage = table.untyped_storage()
    if head_weight is None or head_weight.untyped_storage().data_ptr() != storage.data_ptr():
        total -= storage.nbytes() - table.shape[-1] * table.element_size()
    return total / MB


def _packed_bytes(model: Any) -> int:
    # int8 weights of dynamic-quantized layers live in packed params that are neither
    # parameters nor buffers: torch.ao's LinearPackedParams, or our direct-kernel layers.
    total = 0
    for module in model.modules():
        if not (getattr(module, "packed_int8", False)
                or type(module).__name__ == "LinearPackedParams"):
            continue
        weight, bias = module._weight_bias()
        total += weight.numel() * weight.element_size()
        if bias is not None:
            total += bias.numel() * bias.element_size()
    return total


def measure_bandwidth_gb_s(threads: int, size_mb: int = 256, rounds: int = 5) -> float:
    """Read bandwidth with ``threads`` threads, the way decoding uses memory: a sum over
    a buffer far larger than the caches reads every byte once and writes nothing (a
    copy would also write, and all cores would set a ceiling a 1-thread run never
    reaches). Bytes read per second, best of ``rounds``."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(max(1, threads))
    try:
        src = torch.ones(int(size_mb * MB // 4), dtype=torch.float32)
        best = float("inf")
        for _ in range(rounds):
            start = time.perf_counter()
            src.sum()
            best = min(best, time.perf_counter() - start)
    finally:
        torch.set_num_threads(previous)
    return src.numel() * 4 / best / 1e9


def bandwidth_gb_s(threads: int | None = None) -> float:
    """Measured read bandwidth at ``threads`` (default: torch's current count), cached
    per machine and thread count in the cache folder."""
    import torch

    threads = threads or torch.get_num_threads()
    key = f"v3|{platform.node()}|{platform.processor() or platform.machine()}|" \
          f"{psutil.cpu_count()}|{threads}"
    cache = paths.cache_dir() / "bandwidth.json"
    try:
        data = json.loads(cache.read_text())
    except (OSError, ValueError):
        data = {}
    if not isinstance(data, dict) or "measured" not in data:
        data = {"measured": {}}
    if key in data["measured"]:
        return float(data["measured"][key])
    value = measure_bandwidth_gb_s(threads)
    data["measured"][key] = value
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(data))
    except OSError:
        pass  # measured again next time
    return value


_TRIM: list[Any] = []


def trim() -> None:
    """Return glibc's freed heap pages to the system now (no collection: cheap enough to
    call after every matrix a load unpacks). glibc keeps freed memory below the top of its
    heap until asked: a 1B model's unpacking temporaries were 150 MB of the load's RSS."""
    if not _TRIM:
        try:
            import ctypes

            _TRIM.append(ctypes.CDLL("libc.so.6").malloc_trim)
        except (OSError, AttributeError):
            _TRIM.append(None)  # not glibc (macOS, Windows, musl): nothing to trim
    if _TRIM[0] is not None:
        _TRIM[0](0)


def release() -> None:
    """Hand a dropped model's memory back before the next one loads: collect, return
    glibc's freed arenas to the system, empty CUDA's cache. Without it the next
    config's peak (and steady) RSS carries the previous model and conversion leftovers."""
    import gc

    gc.collect()
    trim()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:
        pass


def touch(model: Any) -> None:
    """Fault in every page of the model's tensors (one element per 4 KB page): weights
    read from a memory-mapped file are otherwise resident only once a token has used
    them, so a float model would look smaller right after loading than it is. Not a
    table mapped on purpose (gguf_embedding): only the rows looked up are ever read."""
    import torch

    if not isinstance(model, torch.nn.Module):
        return
    skip = {id(t) for m in model.modules() if getattr(m, "mapped", False)
            for t in [*m.parameters(recurse=False), *m.buffers(recurse=False)]}
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            if tensor.numel() and tensor.device.type == "cpu" and id(tensor) not in skip:
                step = max(1, 4096 // tensor.element_size())
                tensor.detach().reshape(-1)[::step].float().sum()


def own_memory(model: Any) -> int:
    """Copy the CPU parameters and buffers that still view a memory-mapped file (see
    build_engine) into their own memory; how many. Only those: a tensor that views
    another tensor (the quantizers' q/k/v over a fused q/k/v) must stay a view."""
    import torch

    if not isinstance(model, torch.nn.Module):
        return 0
    ranges = []
    for region in psutil.Process().memory_maps(grouped=False):
        if region.path.endswith((".safetensors", ".bin", ".gguf", ".pt")):
            start, _, end = region.addr.partition("-")
            ranges.append((int(start, 16), int(end, 16)))
    if not ranges:
        return 0

    def mapped(tensor: Any) -> bool:
        address = tensor.untyped_storage().data_ptr()
        return any(start <= address < end for start, end in ranges)

    copied = 0
    with torch.no_grad():
        for module in model.modules():
            if getattr(module, "mapped", False):
                continue  # maps its file on purpose (gguf_embedding: rows read as looked up)
            for param in module.parameters(recurse=False):
                if param.device.type == "cpu" and mapped(param):
                    param.data = param.data.clone()
                    copied += 1
            for name, buffer in list(module.named_buffers(recurse=False)):
                if buffer is not None and buffer.device.type == "cpu" and mapped(buffer):
                    module._buffers[name] = buffer.clone()
                    copied += 1
    return copied
