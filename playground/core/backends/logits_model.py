"""What stands in for a torch model where another backend computes the logits: quality
scoring calls ``model(input_ids=...).logits`` for every position, and the engine reads
the end tokens from ``generation_config`` as a transformers model carries them."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any


class LogitsModel:
    def __init__(self, eos_token_id: Any) -> None:
        self.generation_config = SimpleNamespace(eos_token_id=eos_token_id)

    def parameters(self) -> Any:  # no torch weights: scoring runs where the backend is
        return iter(())

    def __call__(self, input_ids: Any, **_ignored: Any) -> Any:
        import torch

        return SimpleNamespace(logits=torch.stack([self.row_logits([int(t) for t in row])
                                                   for row in input_ids]))

    def row_logits(self, ids: list[int]) -> Any:
        """float32 [len(ids), vocab]: every position's logits for one window."""
        raise NotImplementedError
