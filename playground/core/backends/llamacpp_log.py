"""llama.cpp's own log, read while it loads a model or quantizes one.

llama.cpp reports what it allocated only in its log ("CPU_REPACK model buffer size =
336.00 MiB", "CPU KV buffer size = ...", "CPU compute buffer size = ..."), and its
quantizer reports each tensor as it goes ("[ 12/ 147] blk.1.attn_k.weight ..."). The
binding routes that log to one process-wide callback; ``captured`` swaps in ours for the
length of a load or a quantization and puts the binding's back after.
"""

from __future__ import annotations

import contextlib
import ctypes
import re
import threading
from collections.abc import Callable, Iterable, Iterator

BUFFER = re.compile(r"(\S+)\s+(model|KV|output|compute) buffer size =\s*([\d.]+) MiB")
TENSOR = re.compile(r"^\s*\[\s*(\d+)/\s*(\d+)\]")
_LOCK = threading.Lock()  # one capture at a time: the callback is the process's


@contextlib.contextmanager
def captured(sink: Callable[[str], None]) -> Iterator[None]:
    """Every line llama.cpp logs while the block runs goes to ``sink`` (any thread)."""
    import llama_cpp
    from llama_cpp import _logger

    @llama_cpp.llama_log_callback
    def callback(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        try:
            sink(text.decode("utf-8", "replace"))
        except Exception:  # an exception cannot cross back into C
            pass

    with _LOCK:
        llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))
        try:
            yield
        finally:
            llama_cpp.llama_log_set(_logger.llama_log_callback, ctypes.c_void_p(0))


def buffers(lines: Iterable[str]) -> dict[str, dict[str, float]]:
    """llama.cpp's buffers by kind ("model", "kv", "output", "compute"), each by the
    buffer's name (CPU_Mapped, CPU_REPACK, CUDA0...), in MB (10^6 bytes)."""
    found: dict[str, dict[str, float]] = {}
    for line in lines:
        for name, kind, mib in BUFFER.findall(line):
            by_name = found.setdefault(kind.lower(), {})
            by_name[name] = by_name.get(name, 0.0) + float(mib) * 1.048576
    return found


def describe(found: dict[str, dict[str, float]]) -> str:
    """One line: 'model 636 MB (CPU_Mapped 300, CPU_REPACK 336), KV 134 MB, ...'."""
    parts = []
    for kind in ("model", "kv", "compute", "output"):
        by_name = found.get(kind)
        if not by_name:
            continue
        detail = (" (" + ", ".join(f"{n} {mb:.0f}" for n, mb in by_name.items()) + ")"
                  if len(by_name) > 1 else f" ({next(iter(by_name))})")
        parts.append(f"{'KV' if kind == 'kv' else kind} {sum(by_name.values()):.0f} MB{detail}")
    return ", ".join(parts)


def tensor_progress(line: str) -> tuple[int, int] | None:
    """(tensor, of) from a quantizer's '[ 12/ 147] name ...' line, else None."""
    match = TENSOR.match(line)
    if not match or int(match.group(2)) == 0:
        return None
    return int(match.group(1)), int(match.group(2))
