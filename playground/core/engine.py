"""Streaming generation with a per-token timeline, cooperative cancel and KV reuse.

The decode loop is our own (not ``generate()``) so that every token is timed where
it becomes text, the KV cache can be carried across chat turns, and cancel is checked
between tokens. What computes the tokens is the engine's ``Decoder``
(playground/core/decode/decoders.py), chosen once at build: the loop here is the same for all.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from playground.core import memory
from playground.core.config import RunConfig
from playground.core.decode import decoders, lean_decode
from playground.core.decode.decoders import Decoder
from playground.core.jobs import ShouldStop
from playground.core.metrics import TokenTimeline, TurnMetrics, turn_metrics
from playground.core.optimize.response_cache import ResponseCache

Message = dict[str, str]
OnToken = Callable[[str], None]


class GenerationError(RuntimeError):
    """Generation failed (out of memory, a model error); the message is readable."""


@dataclass
class TurnResult:
    reply: str
    token_ids: list[int]
    timeline: TokenTimeline
    metrics: TurnMetrics
    finish_reason: str  # "eos", "length", "cancelled", "cache"
    config: RunConfig
    prefix_reused: int = 0  # prompt tokens whose KV came from the previous turn
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def cancelled(self) -> bool:
        return self.finish_reason == "cancelled"


@dataclass
class _PrefixState:
    ids: list[int]  # the tokens whose keys/values are in ``cache``
    cache: Any


def common_prefix_len(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


class Engine:
    """One loaded, optimized model plus its tokenizer, ready to answer chat turns."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        config: RunConfig,
        *,
        device: str = "cpu",
        info: dict[str, Any] | None = None,
        bandwidth_gb_s: float | None = None,
    ) -> None:
        self._init_loop(model, tokenizer, config, device, info, bandwidth_gb_s)
        self.weights_mb = memory.weights_mb(model)
        self.read_mb = memory.read_mb_per_token(model)  # what the bandwidth bound counts
        step, note = lean_decode.build(model)
        self._full_cache = bool(getattr(step, "full_cache", False))
        self.decoder: Decoder = decoders.choose(model, config, device, self._dynamic_cache,
                                                step, note)

    def _init_loop(self, model: Any, tokenizer: Any, config: RunConfig, device: str,
                   info: dict[str, Any] | None, bandwidth_gb_s: float | None) -> None:
        """The state the chat loop keeps, whatever computes the logits (other backends
        call this, then set weights_mb, read_mb and decoder)."""
        self.model = model
        self.tokenizer = tokenizer
        self.config = config
        self.device = device
        self.info = info if info is not None else {}  # shared: later stages add to it
        self.bandwidth_gb_s = bandwidth_gb_s
        self.eos_ids = _eos_ids(model, tokenizer)
        self._prefix: _PrefixState | None = None
        self.response_cache = ResponseCache() if config.response_cache else None

    # -- public ---------------------------------------------------------------
    def chat(
        self,
        messages: Sequence[Message] | str,
        on_token: OnToken | None = None,
        should_stop: ShouldStop | None = None,
    ) -> TurnResult:
        """Answer the last user message of ``messages`` (or continue plain text: a
        completion); stream pieces to ``on_token``."""
        timeline = TokenTimeline(t_request=time.perf_counter())
        on_token = on_token or (lambda _piece: None)
        should_stop = should_stop or (lambda: False)
        key = None
        if self.response_cache is not None:
            key = self.response_cache.key(self.config, messages)
            hit = self.response_cache.get(key)
            if hit is not None:
                return self._replay(hit, timeline, on_token)
        memory.cuda_reset_peak(self.device)
        with memory.RssSampler() as rss:
            try:
                result = self._generate(messages, timeline, on_token, should_stop)
            except GenerationError:
                raise
            except RuntimeError as exc:
                self._prefix = None
                raise GenerationError(_explain(exc)) from exc
        result.metrics = self._metrics(timeline, rss.peak_mb, cache_hit=False)
        result.metrics.draft_acceptance = result.extra.get("draft_acceptance")
        if key is not None and result.finish_reason != "cancelled":
            self.response_cache.put(key, result.reply, result.token_ids)
        return result

    def reset(self) -> None:
        """Forget the conversation's KV cache (New chat)."""
        self._prefix = None

    def decode_path(self) -> str:
        """What produces each new token, in words (read after every optimization is
        applied: compile and draft replace the decoder)."""
        return self.decoder.name

    def make_cache(self) -> Any:
        """A fresh cache of this engine's decoder (the server keeps one per request)."""
        return self.decoder.new_cache()

    def context_length(self) -> int | None:
        """Tokens the model can attend over (prompt plus reply), when it says."""
        value = getattr(self, "context", None) or getattr(
            getattr(self.model, "config", None), "max_position_embeddings", None)
        return int(value) if value else None

    def check_context(self, prompt_tokens: int) -> None:
        """Refuse, before any prefill, a prompt that cannot fit with its reply: a model
        run past its context answers garbage after minutes of work."""
        context = self.context_length()
        wanted = self.config.max_new_tokens
        if context and prompt_tokens + wanted > context:
            self._prefix = None
            raise GenerationError(
                f"the conversation ({prompt_tokens:,} tokens) plus max_new_tokens={wanted} "
                f"exceeds the model's context of {context:,} tokens: nothing was run; "
                "shorten the prompt, start a new chat or lower max_new_tokens")

    # -- internals ------------------------------------------------------------
    def prompt_ids(self, messages: Sequence[Message] | str) -> list[int]:
        """The prompt's tokens: a chat through the model's chat template, or plain text
        (a completion) as it is. A model without a chat template (the GPT-2 family) gets
        the chat's text, one message a line, to continue."""
        if isinstance(messages, str):
            return list(self.tokenizer(messages)["input_ids"])
        if not getattr(self.tokenizer, "chat_template", None):
            return self.prompt_ids("\n".join(m["content"] for m in messages))
        text = self.tokenizer.apply_chat_template(
            list(messages), add_generation_prompt=True, tokenize=False
        )
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _dynamic_cache(self) -> Any:
        from transformers import DynamicCache

        if getattr(self, "_full_cache", False):
            # the native step windows its attention itself over every key kept; sliding
            # cache layers would drop keys it reads. transformers' masks still window the
            # prompt's forward over these plain layers
            return DynamicCache()
        return DynamicCache(config=self.model.config)

    def _generate(
        self,
        messages: Sequence[Message] | str,
        timeline: TokenTimeline,
        on_token: OnToken,
        should_stop: ShouldStop,
    ) -> TurnResult:
        """The one token loop: the decoder computes, this times and stops. A chunk's
        tokens (speculative decoding accepts several at once) share its timestamp."""
        import torch

        cfg, decoder = self.config, self.decoder
        ids = self.prompt_ids(messages)
        timeline.prompt_tokens = len(ids)
        self.check_context(len(ids))
        sample = sampler(cfg, self.device)
        new: list[int] = []
        extra: dict[str, Any] = {}
        pieces = Detokenizer(self.tokenizer)
        finish: str | None = None
        cache, start = self._cache_for(ids) if decoder.uses_cache else (decoder.new_cache(), 0)
        timeline.prefilled_tokens = len(ids) - start
        with torch.inference_mode():
            chunks = decoder.tokens(ids[start:], cache, cfg, sample, should_stop, extra)
            try:
                for chunk in chunks:
                    texts: list[str] = []
                    for token in chunk:
                        if token in self.eos_ids:
                            finish = "eos"
                            break
                        new.append(token)
                        texts.append(pieces.piece(new))
                        if len(new) >= cfg.max_new_tokens:
                            finish = "length"
                            break
                    # sample() read the token on the host: on CUDA that waited for the device
                    now = time.perf_counter()
                    if timeline.t_first_logits is None:
                        timeline.t_first_logits = now
                    for text in texts:
                        timeline.token_times.append(now)
                        on_token(text)
                    if finish is None and should_stop():
                        finish = "cancelled"
                    if finish is not None:
                        break
            finally:
                chunks.close()
        if finish is None:
            # the decoder ended by itself: generate() reached its limit, or a stop (during
            # the prompt, or one generate() saw)
            finish = "length" if new and not should_stop() else "cancelled"
        if decoder.uses_cache and cfg.prefix_cache and timeline.t_first_logits is not None:
            # The cache holds the prompt and every new token that was fed back; the last
            # one is not fed back when the turn ended on length or cancel.
            fed = new if finish == "eos" else new[:-1]
            self._prefix = _PrefixState(ids + fed, cache)
        reply = self.tokenizer.decode(new, skip_special_tokens=True)
        return TurnResult(reply, new, timeline, None, finish, cfg,  # type: ignore[arg-type]
                          prefix_reused=start, extra=extra)

    def _cache_for(self, ids: list[int]) -> tuple[Any, int]:
        """A KV cache for ``ids`` and how many of them it already holds."""
        prefix = self._prefix
        self._prefix = None
        if self.config.prefix_cache and prefix is not None:
            # Keep at least one prompt token to prefill: it yields the first logits.
            keep = min(common_prefix_len(prefix.ids, ids), len(ids) - 1)
            if keep > 0:
                if keep < len(prefix.ids):
                    prefix.cache.crop(keep - len(prefix.ids))  # negative: tokens to drop
                return prefix.cache, keep
        return self.decoder.new_cache(), 0

    def _metrics(self, timeline: TokenTimeline, peak_rss: float, cache_hit: bool) -> TurnMetrics:
        return turn_metrics(
            timeline,
            peak_rss_mb=peak_rss,
            cuda_peak_mb=memory.cuda_peak_mb(self.device),
            weights_mb=self.weights_mb,
            read_mb=self.read_mb,
            bandwidth_gb_s=self.bandwidth_gb_s,
            cache_hit=cache_hit,
        )

    def _replay(self, hit: tuple[str, list[int]], timeline: TokenTimeline, on_token: OnToken):
        reply, token_ids = hit
        pieces = Detokenizer(self.tokenizer)
        for i in range(len(token_ids)):
            piece = pieces.piece(token_ids[: i + 1])
            timeline.token_times.append(time.perf_counter())
            on_token(piece)
        metrics = self._metrics(timeline, memory.rss_mb(), cache_hit=True)
        return TurnResult(reply, list(token_ids), timeline, metrics, "cache", self.config)


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    ids: set[int] = set()
    for source in (getattr(model, "generation_config", None), tokenizer):
        value = getattr(source, "eos_token_id", None)
        if isinstance(value, int):
            ids.add(value)
        elif value:
            ids.update(int(v) for v in value)
    return ids


def sampler(cfg: RunConfig, device: str) -> Callable[[Any], int]:
    """The next token from logits: greedy, or seeded sampling (one generator a turn)."""
    import torch

    generator = None
    if not cfg.greedy:
        generator = torch.Generator(device=device).manual_seed(cfg.seed)
    return lambda logits: _sample(logits, cfg, generator)


def _sample(logits: Any, cfg: RunConfig, generator: Any) -> int:
    import torch

    if cfg.greedy:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits / cfg.temperature, dim=-1)
    if cfg.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        cumulative = torch.cumsum(sorted_probs, dim=-1)
        # Keep the smallest set whose mass reaches top_p (always at least one token).
        drop = cumulative - sorted_probs > cfg.top_p
        sorted_probs[drop] = 0.0
        probs = torch.zeros_like(probs).scatter(0, order, sorted_probs)
    return int(torch.multinomial(probs, 1, generator=generator))


class Detokenizer:
    """Text pieces of a growing token list, decoding only a short window each token (the
    whole reply each time would be quadratic inside the timed loop): the text of
    tokens [prefix:] minus that of [prefix:read], as TGI and vLLM do. A piece is held
    back while it ends in a partial UTF-8 character. The final reply is decoded whole."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.prefix = self.read = 0

    def piece(self, new: list[int]) -> str:
        decode = self.tokenizer.decode
        before = decode(new[self.prefix : self.read], skip_special_tokens=True)
        after = decode(new[self.prefix :], skip_special_tokens=True)
        if len(after) <= len(before) or after.endswith("\ufffd"):
            return ""
        self.prefix, self.read = self.read, len(new)
        return after[len(before) :]


def _explain(exc: RuntimeError) -> str:
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if "out of memory" in message.lower():
        return f"out of memory during generation: {message}"
    return f"generation failed: {message}"
