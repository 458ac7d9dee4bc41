"""Continuous batching (``serve --batching on``): many requests share each decode pass.

Every pass of the worker thread takes one row per running request (its last token)
plus up to ``prefill_chunk`` prompt tokens of requests still being prefilled, and runs
them together through the engine's batched rows (the native step's, playground/core/
native/step.py, or the float models', playground/core/decode/lean_rows.py): each weight matrix
is read once for the whole pass instead of once per request, which is where a CPU
decode step spends its time. A request joins between passes and leaves
the pass after its last token; its prompt goes in as chunks, so a long prompt stalls
the others for one chunk per pass, not for its whole prefill. A row's arithmetic does
not depend on the other rows, so a greedy reply is the same alone or batched.

A config without batched rows (int8-dynamic, bnb, ONNX Runtime) still gets the
scheduling (requests interleave pass by pass, each its own forward), but no shared
matrix reads; ``describe()`` says which, and the server prints it at start.
"""

from __future__ import annotations

import queue
import time
from dataclasses import dataclass, field
from typing import Any

from playground.core.engine import Detokenizer, TurnResult, _sample
from playground.core.metrics import TokenTimeline, turn_metrics
from playground.core.optimize.device import WIDE_ROWS
from playground.core.serve import logprobs
from playground.core.serve.metrics import ServerMetrics
from playground.core.serve.prefix_store import PrefixStore
from playground.core.serve.scheduler import END, Job, Scheduler
from playground.core.serve.thread_choice import ThreadChoice, Way


@dataclass
class _Seq:
    job: Job
    ids: list[int]  # the prompt
    cache: Any
    config: Any  # the engine's config with this request's sampling
    generator: Any
    timeline: TokenTimeline
    pieces: Detokenizer
    fed: int = 0  # prompt tokens already in the cache
    new: list[int] = field(default_factory=list)
    finish: str | None = None
    emitted: int = 0  # characters of the pieces given so far
    # another choice of the same request (n > 1) whose prompt is being computed: this one
    # waits, then takes the prompt from the prefix store instead of computing it again
    follows: Any = None

    @property
    def prefilling(self) -> bool:
        return self.fed < len(self.ids)


class BatchScheduler(Scheduler):
    def __init__(self, engine: Any, metrics: ServerMetrics, max_queue: int = 64,
                 max_batch: int = 8, prefill_chunk: int = 32, batch_wait_ms: float = 0.0,
                 prefix_cache: bool = True, prefix_cache_mb: float = 512,
                 wide_threads: int = 0) -> None:
        """``wide_threads``: compute threads for a pass of WIDE_ROWS rows or more (0: the
        engine's own for every pass; device.wide_pass_threads)."""
        if max_batch < 1 or prefill_chunk < 1 or batch_wait_ms < 0:
            raise ValueError("max_batch and prefill_chunk must be at least 1, batch_wait_ms >= 0")
        self.max_batch, self.prefill_chunk = max_batch, prefill_chunk
        self.batch_wait_s = batch_wait_ms / 1000.0
        self.rows = batched_rows(engine)
        self.wide_threads = wide_threads
        self.narrow_threads = int(engine.info.get("threads") or 0)
        # a wide pass on every core, on the narrow count or in parts a thread each,
        # whichever its passes time fastest; only where the rows give the same bits each
        # way (the native step's: torch's float rows differ in the last bits, and a
        # reply's logprobs must not depend on the pass)
        ways = [Way(wide_threads)]
        if getattr(self.rows, "thread_invariant", False):
            ways.append(Way(self.narrow_threads))
            if getattr(self.rows, "parts", None) and wide_threads > 1:
                ways.append(Way(wide_threads, wide_threads))
        self.wide_choice = ThreadChoice(tuple(w for w in ways if w.threads) or (Way(1),))
        metrics.wide_choice = self.wide_choice
        self.prefixes = (PrefixStore(max_bytes=int(prefix_cache_mb * 2**20))
                         if prefix_cache else None)
        metrics.prefix_store = self.prefixes
        self._closing = False
        super().__init__(engine, metrics, max_queue)

    # -- the worker ----------------------------------------------------------------
    def _run(self) -> None:
        import torch

        active: list[_Seq] = []
        with torch.inference_mode():
            while True:
                if not self._admit(active):
                    return
                if not active:
                    continue
                try:
                    self._pass(active)
                except Exception as exc:  # one failed pass must not stop the server
                    message = _first_line(exc)
                    for seq in (s for s in active if s.finish is None):  # others were answered
                        seq.job.error = f"generation failed: {message}"
                        self.metrics.failed += 1
                        seq.job.emit(END)
                    active.clear()
                active[:] = [s for s in active if s.finish is None]
                self.metrics.set_running(len(active))

    def _admit(self, active: list[_Seq]) -> bool:
        """Take waiting requests into free slots; block while there is nothing to run.
        False once closed and drained."""
        while len(active) < self.max_batch:
            try:
                if active or self._closing:
                    job = self._jobs.get_nowait()
                else:
                    job = self._jobs.get()
                    if job is not None and self.batch_wait_s:
                        time.sleep(self.batch_wait_s)  # let a burst arrive together
            except queue.Empty:
                break
            if job is None:
                self._closing = True
                continue
            self.metrics.queued -= 1
            if job.cancelled:
                job.emit(END)
                continue
            try:
                seq = self._start(job)
                if (self.prefixes is not None and PrefixStore.usable(seq.cache)
                        and len(seq.ids) > self.prefixes.min_tokens):
                    seq.follows = next((a for a in active if a.follows is None and a.prefilling
                                        and a.ids == seq.ids), None)
                active.append(seq)
            except Exception as exc:  # one request that cannot start fails alone
                job.error = f"could not start: {_first_line(exc)}"
                self.metrics.failed += 1
                job.emit(END)
        self.metrics.set_running(len(active))
        return bool(active) or not self._closing

    def _start(self, job: Job) -> _Seq:
        import torch

        job.started_at = time.perf_counter()
        engine = self.engine
        config = job.config(engine.config)
        generator = None
        if not config.greedy:
            generator = torch.Generator(device=engine.device).manual_seed(config.seed)
        ids = engine.prompt_ids(job.messages)
        cache = engine.make_cache()
        reused = 0
        if self.prefixes is not None and PrefixStore.usable(cache):
            reused = self.prefixes.seed(ids, cache)
        timeline = TokenTimeline(t_request=job.arrived, prompt_tokens=len(ids))
        timeline.prefilled_tokens = len(ids) - reused
        return _Seq(job, ids, cache, config, generator, timeline,
                    Detokenizer(engine.tokenizer), fed=reused)

    def _pass(self, active: list[_Seq]) -> None:
        tokens, positions, seqs, out, owners = [], [], [], [], []
        budget = self.prefill_chunk
        for s, seq in enumerate(active):
            if seq.job.cancelled:
                continue
            if seq.follows is not None:
                leader = seq.follows
                if leader.timeline.t_first_logits is None and leader.finish is None:
                    continue  # the same prompt is being computed (and stored after): wait
                seq.follows = None
                if seq.fed:  # seeded with a shorter prefix at its start: seed afresh
                    seq.cache = self.engine.make_cache()
                seq.fed = self.prefixes.seed(seq.ids, seq.cache)
                seq.timeline.prefilled_tokens = len(seq.ids) - seq.fed
            if seq.prefilling:
                if budget == 0:
                    continue
                take = min(budget, len(seq.ids) - seq.fed)
                budget -= take
                tokens += seq.ids[seq.fed: seq.fed + take]
                positions += range(seq.fed, seq.fed + take)
                seqs += [s] * take
                seq.fed += take
                if seq.prefilling:
                    continue
            else:
                tokens.append(seq.new[-1])
                positions.append(len(seq.ids) + len(seq.new) - 1)
                seqs.append(s)
            out.append(len(tokens) - 1)
            owners.append(seq)
        started = time.perf_counter()
        logits = (self._compute(tokens, positions, seqs, [s.cache for s in active], out)
                  if tokens else None)
        now = time.perf_counter()
        if tokens:
            prompt_rows = budget < self.prefill_chunk
            (self.metrics.pass_prefill if prompt_rows else self.metrics.pass_decode).observe(
                now - started)
        for i, seq in enumerate(owners):
            if seq.timeline.t_first_logits is None:
                seq.timeline.t_first_logits = now
                if self.prefixes is not None and PrefixStore.usable(seq.cache):
                    self.prefixes.store(seq.ids, seq.cache)  # before its first new token
            self._advance(seq, logits[i])
        for seq in active:
            if seq.job.cancelled and seq.finish is None:
                self._finish(seq, "cancelled")  # frees the slot in this pass

    def _compute(self, tokens: list[int], positions: list[int], seqs: list[int],
                 caches: list[Any], out: list[int]) -> Any:
        import torch

        wide = (self.wide_threads and self.narrow_threads and self.rows is not None
                and len(tokens) >= WIDE_ROWS)
        way = Way(self.narrow_threads)
        if self.wide_threads and self.narrow_threads:
            if wide:  # rows that do not divide into parts (one long prompt chunk) take another way
                way = self.wide_choice.pick(tuple(
                    w for w in self.wide_choice.ways
                    if not w.parts or self.rows.parts(seqs, out, w.parts) is not None))
            # the kernels read torch's thread count in this (the worker's) thread at each call
            if torch.get_num_threads() != way.threads:
                torch.set_num_threads(way.threads)
        if self.rows is not None:
            started = time.perf_counter()
            if way.parts:
                logits = self.rows(tokens, positions, seqs, caches, out, split=way.parts)
            else:
                logits = self.rows(tokens, positions, seqs, caches, out)
            if wide:
                self.wide_choice.record(way, time.perf_counter() - started, len(tokens))
            return logits

        # no batched step: each sequence's rows through the engine's own step, in turn
        wanted, result, start = set(out), [], 0
        for end in range(1, len(tokens) + 1):
            if end == len(tokens) or seqs[end] != seqs[start]:
                logits = self.engine.decoder.logits(tokens[start:end], caches[seqs[start]])
                if end - 1 in wanted:
                    result.append(logits)
                start = end
        return torch.stack(result) if result else None  # a pass of prompt chunks only

    def _advance(self, seq: _Seq, logits: Any) -> None:
        token = _sample(logits, seq.config, seq.generator)
        if token in self.engine.eos_ids:
            self._finish(seq, "eos")
            return
        seq.new.append(token)
        if seq.job.top_logprobs is not None:  # where its text starts, then the entry
            seq.job.logprob_starts.append(seq.emitted)
            seq.job.logprobs.append(logprobs.entry(logits, token, seq.job.top_logprobs,
                                                   self.engine.tokenizer))
        seq.job.count_token()
        piece = seq.pieces.piece(seq.new)
        seq.timeline.token_times.append(time.perf_counter())
        if piece:
            seq.emitted += len(piece)
            seq.job.emit(piece)
        if len(seq.new) >= seq.config.max_new_tokens:
            self._finish(seq, "length")
        elif seq.job.cancelled:
            self._finish(seq, "cancelled")

    def _finish(self, seq: _Seq, reason: str) -> None:
        seq.finish = reason
        engine = self.engine
        metrics = turn_metrics(seq.timeline, weights_mb=getattr(engine, "weights_mb", None),
                               read_mb=getattr(engine, "read_mb", None))
        reply = engine.tokenizer.decode(seq.new, skip_special_tokens=True)
        seq.job.result = TurnResult(reply, seq.new, seq.timeline, metrics, reason, seq.config)
        self.metrics.record(seq.job.result, seq.job)
        seq.cache = None
        seq.job.emit(END)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def describe(engine: Any, batching: bool = True, max_batch: int = 8,
             prefill_chunk: int = 32) -> str:
    """How this server handles concurrent requests, in words (printed at start)."""
    if not batching:
        return ("batching off: one request at a time, in arrival order (the batch "
                "scheduler with one slot)")
    if batched_rows(engine) is not None:
        return (f"batching on: up to {max_batch} requests share each pass "
                f"(prompts in chunks of {prefill_chunk} tokens, shared prefixes reused)")
    return ("batching on, interleaved only: this config has no batched step (torch "
            "float models and int8-weight, int4-weight, gguf-native have one; "
            "int8-dynamic's per-matrix activation scale would make a reply depend on "
            "the batch; ONNX Runtime and bitsandbytes run their own kernels), so "
            "requests take turns pass by pass without sharing weight reads")


def batched_rows(engine: Any) -> Any:
    """The engine's batched step (rows of many sequences in one pass), or None: the native
    step's rows, else the float rows (playground/core/decode/lean_rows.py) where they apply."""
    from playground.core.decode.decoders import LeanDecoder

    decoder = getattr(engine, "decoder", None)
    if not isinstance(decoder, LeanDecoder):
        return None  # no lean step for this model, or compile=on replaced it
    step = decoder.step
    if not hasattr(step, "rows"):
        from playground.core.decode import lean_rows

        step.rows = lean_rows.build(engine.model)  # once: the scheduler and explain() ask
    return step.rows
