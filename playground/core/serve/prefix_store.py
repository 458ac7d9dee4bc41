"""Keys and values of recent prompts, shared across requests (batching on).

Most requests to one server start the same way: the chat template's system prompt, a
client's fixed instructions, the earlier turns of a conversation. A new request whose
prompt shares a prefix with a stored one copies those keys and values into its own
cache and prefills only the rest, as llama.cpp's server (``cache_prompt``) and vLLM's
automatic prefix caching do. A position's keys and values depend only on the tokens up
to it and the step's per-row arithmetic, so a reused prefix gives the same bits as a
recomputed one (with the native step; tested). Entries are evicted least recently used,
by count and by bytes: a 2,000-token prompt's float32 keys and values are ~90 MB on a
135M model, so 32 of them would be 3 GB (and far more on a bigger model).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from playground.core.engine import common_prefix_len


class PrefixStore:
    def __init__(self, max_entries: int = 32, min_tokens: int = 4,
                 max_bytes: int = 512 * 2**20) -> None:
        self.max_entries, self.min_tokens, self.max_bytes = max_entries, min_tokens, max_bytes
        self._entries: OrderedDict[tuple[int, ...], list[tuple[Any, Any]]] = OrderedDict()
        self.bytes = 0
        self.hits = 0
        self.reused_tokens = 0

    @staticmethod
    def usable(cache: Any) -> bool:
        """Caches with transformers' per-layer keys/values (not ONNX Runtime's)."""
        return hasattr(cache, "layers")

    def seed(self, ids: list[int], cache: Any) -> int:
        """Copy the longest stored prefix of ``ids`` into the fresh ``cache``; how many
        tokens it holds now (at least one prompt token is left to prefill: it yields the
        first logits)."""
        best, best_len = None, 0
        for key in self._entries:
            n = common_prefix_len(key, ids)
            if n > best_len:
                best, best_len = key, n
        n = min(best_len, len(ids) - 1)
        if best is None or n < self.min_tokens:
            return 0
        self._entries.move_to_end(best)
        for layer, (keys, values) in zip(cache.layers, self._entries[best], strict=True):
            layer.update(keys[:, :, :n].clone(), values[:, :, :n].clone())
        self.hits += 1
        self.reused_tokens += n
        return n

    def store(self, ids: list[int], cache: Any) -> None:
        """Keep the keys and values of a prompt just prefilled (the cache holds exactly it)."""
        key = tuple(ids)
        if key in self._entries:
            self._entries.move_to_end(key)
            return
        entry = [(layer.keys[:, :, : len(ids)].clone(), layer.values[:, :, : len(ids)].clone())
                 for layer in cache.layers]
        size = _nbytes(entry)
        if size > self.max_bytes:
            return  # one prompt larger than the whole budget is not kept
        self._entries[key] = entry
        self.bytes += size
        while len(self._entries) > self.max_entries or self.bytes > self.max_bytes:
            _, old = self._entries.popitem(last=False)
            self.bytes -= _nbytes(old)


def _nbytes(entry: list[tuple[Any, Any]]) -> int:
    return sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in entry)
