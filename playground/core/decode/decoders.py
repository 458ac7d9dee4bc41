"""The engine's decode paths behind one small interface, chosen once at build.

A ``Decoder`` turns a prompt into a stream of new tokens, chunk by chunk; the engine
wraps timing, stop, end-of-text, detokenization and the prefix cache around that one
loop (gpt-fast's shape: the model step is one function, the loop is plain). The paths:

- ``ForwardDecoder``: transformers' forward with a KV cache (also the compiled forward
  with a static cache, compile=on) — one token per chunk;
- ``LeanDecoder``: the same, with one-token steps through the lean step
  (playground/core/decode/lean_decode.py; one C call a token on the native kernels);
- ``NoCacheDecoder``: kv_cache=off, the whole sequence every token (its "cache" is the
  token list, so the loop is the same);
- ``AssistedDecoder``: transformers' assisted generation with a draft model
  (speculative decoding); generate() owns that loop, so it runs in a helper thread and
  hands each accepted run over as one chunk.

ONNX Runtime's generator is one more (playground/core/backends/onnx_engine.py).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

from playground.core.config import RunConfig
from playground.core.jobs import ShouldStop

# Prompt tokens per prefill pass: Stop is checked between passes, so a long prompt
# can be stopped within about a second on a CPU.
PREFILL_CHUNK = 256

Sample = Callable[[Any], int]  # logits -> the next token


class Decoder:
    """Logits of the last position for ``ids`` fed into ``cache``; subclasses say how."""

    name = "decoder"
    uses_cache = True  # the engine keeps the cache across turns (the prefix cache)

    def new_cache(self) -> Any:
        raise NotImplementedError

    def logits(self, ids: list[int], cache: Any) -> Any:
        raise NotImplementedError

    def prefill(self, ids: list[int], cache: Any, should_stop: ShouldStop) -> Any:
        """The prompt's last logits, fed in chunks with Stop checked between them; None
        when stopped."""
        for begin in range(0, len(ids) - PREFILL_CHUNK, PREFILL_CHUNK):
            self.logits(ids[begin : begin + PREFILL_CHUNK], cache)
            if should_stop():
                return None
        last = (len(ids) - 1) // PREFILL_CHUNK * PREFILL_CHUNK
        return self.logits(ids[last:], cache)

    def tokens(self, ids: list[int], cache: Any, cfg: RunConfig, sample: Sample,
               should_stop: ShouldStop, extra: dict[str, Any]) -> Iterator[list[int]]:
        """New tokens, a chunk at a time: each is fed back only when the next is asked
        for, so the token the loop stops on is never computed past (the prefix cache
        then holds the prompt and every token that was fed)."""
        logits = self.prefill(ids, cache, should_stop)
        if logits is None:
            return
        while True:
            token = sample(logits)
            yield [token]
            logits = self.logits([token], cache)


class ForwardDecoder(Decoder):
    """transformers' forward (or a compiled one) over a DynamicCache or StaticCache."""

    def __init__(self, forward: Callable[..., Any], new_cache: Callable[[], Any], device: str,
                 name: str) -> None:
        self.forward, self._new_cache, self.device, self.name = forward, new_cache, device, name

    def new_cache(self) -> Any:
        return self._new_cache()

    def logits(self, ids: list[int], cache: Any) -> Any:
        import torch

        input_ids = torch.tensor([ids], device=self.device)
        out = self.forward(input_ids=input_ids, cache=cache, use_cache=True, logits_to_keep=1)
        return out.logits[0, -1].float()


class LeanDecoder(ForwardDecoder):
    """One-token steps through the lean step; prompts through the transformers forward
    (which writes the same cache)."""

    def __init__(self, step: Callable[[int, Any], Any], forward: Callable[..., Any],
                 new_cache: Callable[[], Any], device: str, name: str) -> None:
        super().__init__(forward, new_cache, device, name)
        self.step = step

    def logits(self, ids: list[int], cache: Any) -> Any:
        if len(ids) == 1:
            return self.step(ids[0], cache).float()
        return super().logits(ids, cache)


class NoCacheDecoder(Decoder):
    """kv_cache=off: every token runs the whole sequence again (the comparison point)."""

    name = "transformers forward (kv_cache=off: the whole sequence every token)"
    uses_cache = False

    def __init__(self, forward: Callable[..., Any], device: str) -> None:
        self.forward, self.device = forward, device

    def new_cache(self) -> list[int]:
        return []  # the sequence so far

    def logits(self, ids: list[int], cache: list[int]) -> Any:
        import torch

        cache.extend(ids)
        input_ids = torch.tensor([cache], device=self.device)
        out = self.forward(input_ids=input_ids, use_cache=False, logits_to_keep=1)
        return out.logits[0, -1].float()

    def prefill(self, ids: list[int], cache: list[int], should_stop: ShouldStop) -> Any:
        return self.logits(ids, cache)  # chunks would each rerun what came before


class AssistedDecoder(Decoder):
    """transformers' assisted generation with ``draft`` proposing tokens; tokens arrive
    in chunks (each accepted run at once). ``extra`` gets drafted/accepted counts."""

    name = "transformers generate() (speculative decoding)"
    uses_cache = False  # generate() keeps its own

    def __init__(self, model: Any, draft: Any, pad_token_id: Any, device: str) -> None:
        self.model, self.draft, self.pad_token_id, self.device = model, draft, pad_token_id, device

    def new_cache(self) -> None:
        return None

    def tokens(self, ids: list[int], cache: Any, cfg: RunConfig, sample: Sample,
               should_stop: ShouldStop, extra: dict[str, Any]) -> Iterator[list[int]]:
        chunks: queue.Queue = queue.Queue()
        closed = threading.Event()  # the loop stopped asking: end generate() too
        thread = threading.Thread(target=self._generate, name="assisted-generate", daemon=True,
                                  args=(ids, cfg, chunks, lambda: closed.is_set() or should_stop(),
                                        extra))
        thread.start()
        try:
            while True:
                item = chunks.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            closed.set()
            thread.join()

    def _generate(self, ids: list[int], cfg: RunConfig, chunks: queue.Queue,
                  stop: ShouldStop, extra: dict[str, Any]) -> None:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList
        from transformers.generation.streamers import BaseStreamer

        state = {"prompt_seen": False}

        class Streamer(BaseStreamer):
            def put(self, value: Any) -> None:
                if not state["prompt_seen"]:  # generate() streams the prompt first
                    state["prompt_seen"] = True
                    return
                chunks.put(value.reshape(-1).tolist())

            def end(self) -> None:
                pass

        class Stop(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                return torch.full((input_ids.shape[0],), stop(), dtype=torch.bool,
                                  device=input_ids.device)

        stats = {"drafted": 0, "accepted": 0}
        original = self.model._get_candidate_generator

        def counting_generator(*args: Any, **kwargs: Any) -> Any:
            generator = original(*args, **kwargs)
            update = generator.update_candidate_strategy

            def record(input_ids: Any, scores: Any, num_matches: int) -> Any:
                stats["drafted"] += scores.shape[1] - 1
                stats["accepted"] += int(num_matches)
                return update(input_ids, scores, num_matches)

            generator.update_candidate_strategy = record
            return generator

        sampling: dict[str, Any] = {"do_sample": False}
        if not cfg.greedy:
            torch.manual_seed(cfg.seed)
            sampling = {"do_sample": True, "temperature": cfg.temperature, "top_p": cfg.top_p}
        input_ids = torch.tensor([ids], device=self.device)
        self.model._get_candidate_generator = counting_generator
        try:
            with torch.inference_mode():
                self.model.generate(
                    input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                    assistant_model=self.draft, max_new_tokens=cfg.max_new_tokens,
                    streamer=Streamer(), stopping_criteria=StoppingCriteriaList([Stop()]),
                    pad_token_id=self.pad_token_id, **sampling,
                )
        except BaseException as exc:  # raised again in the loop's thread
            chunks.put(exc)
        finally:
            del self.model._get_candidate_generator
            extra.update(stats, draft_acceptance=(
                stats["accepted"] / stats["drafted"] if stats["drafted"] else None))
            chunks.put(None)


def choose(model: Any, cfg: RunConfig, device: str, new_cache: Callable[[], Any],
           step: Callable[[int, Any], Any] | None, step_note: str) -> Decoder:
    """The decoder for a freshly built torch engine (compile and draft replace it when
    they apply)."""
    if not cfg.kv_cache:
        return NoCacheDecoder(model, device)
    if step is not None:
        return LeanDecoder(step, model, new_cache, device, step_note)
    return ForwardDecoder(model, new_cache, device, step_note)
