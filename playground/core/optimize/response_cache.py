"""response_cache=on: an exact-match LRU of (config, conversation) to reply.

Only deterministic turns are cached: greedy, or sampling with the config's fixed
seed (the seed is part of the key, so a different seed is a miss).
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

NAME = "response_cache"


class ResponseCache:
    def __init__(self, capacity: int = 256) -> None:
        self.capacity = capacity
        self._items: OrderedDict[str, tuple[str, list[int]]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(config: Any, messages: Sequence[dict[str, str]] | str) -> str:
        # The whole config is in the key: sampling settings, model and every optimization.
        prompt = messages if isinstance(messages, str) else list(messages)
        blob = json.dumps({"config": config.format(), "messages": prompt}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def get(self, key: str) -> tuple[str, list[int]] | None:
        item = self._items.get(key)
        if item is None:
            self.misses += 1
            return None
        self._items.move_to_end(key)
        self.hits += 1
        return item

    def put(self, key: str, reply: str, token_ids: list[int]) -> None:
        self._items[key] = (reply, list(token_ids))
        self._items.move_to_end(key)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)
