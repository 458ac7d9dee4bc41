"""The load tester: many streaming requests against any OpenAI-compatible endpoint.

Definitions follow vLLM's bench and GenAI-Perf, from the client's clock: TTFT is the
time to the first chunk with content; ITL the gaps between content chunks, a chunk
that carries k tokens having its gap split into k equal parts (k estimated from the
chunk's share of the text when the server's ``usage`` counts more tokens than chunks);
TPOT = (e2e − TTFT) / (tokens − 1). Per step (one concurrency or one arrival rate):
p50/p90/p99, request and output-token throughput over the step's wall time, errors,
and goodput, the share of requests that met every SLO. Metric functions are pure;
``run_load`` drives httpx's asyncio client.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from playground.core.metrics import percentile

SLO_KEYS = ("ttft_ms", "tpot_ms", "e2e_s")


@dataclass
class RequestResult:
    ok: bool
    error: str | None = None
    ttft_s: float | None = None
    itl_s: list[float] = field(default_factory=list)
    e2e_s: float | None = None
    output_tokens: int = 0
    prompt_tokens: int | None = None
    cached_tokens: int | None = None  # None: the server did not say

    @property
    def tpot_s(self) -> float | None:
        if not self.ok or self.output_tokens < 2 or self.ttft_s is None or self.e2e_s is None:
            return None
        return (self.e2e_s - self.ttft_s) / (self.output_tokens - 1)


@dataclass
class LoadSettings:
    endpoint: str  # base URL, e.g. http://127.0.0.1:8000/v1
    prompts: list[list[dict[str, str]]]
    requests: int
    max_tokens: int = 64
    model: str | None = None
    api_key: str | None = None
    concurrency: list[int] = field(default_factory=lambda: [1])
    rates: list[float] | None = None  # requests/s; when given, steps over rates instead
    arrivals: str = "poisson"
    slo: dict[str, float] = field(default_factory=dict)
    timeout_s: float = 120.0  # per request
    step_timeout_s: float = 900.0  # per step: requests not done by then count as errors
    seed: int = 0
    # a fresh tag opening each request's system message, so no two share a prefix: the
    # step measures computing prompts, not a server's prefix cache
    unique_prefix: bool = False


# -- pure metric functions ----------------------------------------------------------
def tokens_per_chunk(chunk_texts: Sequence[str], total_tokens: int | None) -> list[int]:
    """How many tokens each content chunk carried: one each when the server's count
    matches the chunk count (or is missing), else shared out by the chunks' text length."""
    n = len(chunk_texts)
    if not n or total_tokens is None or total_tokens <= n:
        return [1] * n
    chars = [max(1, len(t)) for t in chunk_texts]
    extra = total_tokens - n
    share = [c * extra / sum(chars) for c in chars]
    counts = [1 + int(s) for s in share]
    # hand the rounding remainder to the chunks with the largest fractional parts
    rest = total_tokens - sum(counts)
    for i in sorted(range(n), key=lambda i: share[i] - int(share[i]), reverse=True)[:rest]:
        counts[i] += 1
    return counts


def chunk_itls(times: Sequence[float], counts: Sequence[int]) -> list[float]:
    """Gaps between content chunks, each split across the tokens its chunk carried."""
    itl: list[float] = []
    for i in range(1, len(times)):
        gap, k = times[i] - times[i - 1], max(1, counts[i])
        itl.extend([gap / k] * k)
    return itl


def meets_slo(result: RequestResult, slo: dict[str, float]) -> bool:
    """A failed request misses every SLO; a one-token reply has no TPOT to miss."""
    if not result.ok:
        return False
    values = {"ttft_ms": None if result.ttft_s is None else result.ttft_s * 1000,
              "tpot_ms": None if result.tpot_s is None else result.tpot_s * 1000,
              "e2e_s": result.e2e_s}
    return all(values[key] is None or values[key] <= limit for key, limit in slo.items())


def _pcts(values: list[float], scale: float = 1.0) -> dict[str, float | None]:
    return {f"p{q}": (None if not values else percentile(values, q) * scale) for q in (50, 90, 99)}


def summarize(results: list[RequestResult], wall_s: float, slo: dict[str, float],
              concurrency: int | None = None, rate: float | None = None) -> dict[str, Any]:
    """One step of the result file's ``load.steps[]`` (docs/ARCHITECTURE.md)."""
    ok = [r for r in results if r.ok]
    tokens = sum(r.output_tokens for r in ok)
    return {
        "concurrency": concurrency, "rate": rate, "requests": len(results),
        "errors": len(results) - len(ok),
        "ttft_ms": _pcts([r.ttft_s for r in ok if r.ttft_s is not None], 1000),
        "itl_ms": _pcts([x for r in ok for x in r.itl_s], 1000),
        "tpot_ms": _pcts([r.tpot_s for r in ok if r.tpot_s is not None], 1000),
        "e2e_s": _pcts([r.e2e_s for r in ok if r.e2e_s is not None]),
        "req_s": len(ok) / wall_s if wall_s > 0 else 0.0,
        "output_tok_s": tokens / wall_s if wall_s > 0 else 0.0,
        "goodput": (sum(meets_slo(r, slo) for r in results) / len(results)) if results else 0.0,
        "wall_s": wall_s,
        "error_samples": sorted({r.error for r in results if r.error})[:3],
        "prompt_tokens": sum(r.prompt_tokens or 0 for r in ok),
        # None when the server reports no cached tokens (its prefix reuse is then unknown)
        "cached_tokens": (sum(r.cached_tokens for r in ok if r.cached_tokens is not None)
                          if any(r.cached_tokens is not None for r in ok) else None),
    }


def cached_tokens(usage: dict[str, Any] | None) -> int | None:
    """OpenAI's ``usage.prompt_tokens_details.cached_tokens``; None where absent."""
    details = (usage or {}).get("prompt_tokens_details") or {}
    value = details.get("cached_tokens") if isinstance(details, dict) else None
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def parse_slo(text: str | None) -> dict[str, float]:
    """``ttft_ms:500,tpot_ms:100`` → {"ttft_ms": 500.0, "tpot_ms": 100.0}."""
    slo: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        key, _, value = part.partition(":")
        if key not in SLO_KEYS:
            raise ValueError(f"--goodput: '{key}' is not allowed; allowed: {', '.join(SLO_KEYS)}")
        try:
            slo[key] = float(value)
        except ValueError:
            raise ValueError(f"--goodput: '{part}' needs a number, e.g. {key}:500") from None
    return slo


@dataclass
class Event:
    """One server-sent event of an OpenAI-style stream."""

    pieces: list[str] = field(default_factory=list)  # content (chat delta or completion text)
    usage: dict[str, Any] | None = None
    finish: str | None = None
    done: bool = False


def parse_event(line: str) -> Event | None:
    """A ``data:`` line of a chat or completions stream; None for anything else (comments,
    keep-alives, blank lines). A server's error event raises ValueError with its message."""
    if not line.startswith("data:"):
        return None
    data = line[5:].strip()
    if data == "[DONE]":
        return Event(done=True)
    chunk = json.loads(data)
    if chunk.get("error"):
        error = chunk["error"]
        raise ValueError(error.get("message") if isinstance(error, dict) else str(error))
    event = Event(usage=chunk.get("usage"))
    for choice in chunk.get("choices") or []:
        content = (choice.get("delta") or {}).get("content") or choice.get("text")
        if content:
            event.pieces.append(content)
        event.finish = choice.get("finish_reason") or event.finish
    return event


# -- the client ---------------------------------------------------------------------
async def one_request(client: Any, settings: LoadSettings, messages: list[dict[str, str]]
                      ) -> RequestResult:
    body: dict[str, Any] = {"messages": messages, "max_tokens": settings.max_tokens,
                            "temperature": 0, "stream": True,
                            "stream_options": {"include_usage": True}}
    if settings.model:
        body["model"] = settings.model
    headers = {"Authorization": f"Bearer {settings.api_key}"} if settings.api_key else {}
    url = settings.endpoint.rstrip("/") + "/chat/completions"
    start = time.perf_counter()
    times: list[float] = []
    texts: list[str] = []
    usage: dict[str, Any] = {}
    try:
        async with client.stream("POST", url, json=body, headers=headers,
                                 timeout=settings.timeout_s) as response:
            if response.status_code != 200:
                detail = (await response.aread()).decode(errors="replace")[:200]
                return RequestResult(False, f"HTTP {response.status_code}: {detail}")
            media = response.headers.get("content-type", "").split(";")[0].strip()
            if media != "text/event-stream":
                return RequestResult(False, f"the answer is {media or 'untyped'}, not a stream "
                                     "of server-sent events (text/event-stream)")
            async for line in response.aiter_lines():
                event = parse_event(line)
                if event is None:
                    continue
                if event.done:
                    break
                if event.usage:
                    usage = event.usage
                for content in event.pieces:
                    times.append(time.perf_counter())
                    texts.append(content)
    except Exception as exc:  # a network error is one failed request, not a failed run
        return RequestResult(False, f"{type(exc).__name__}: {str(exc)[:150]}")
    end = time.perf_counter()
    if not times:
        return RequestResult(False, "no content in the stream")
    counts = tokens_per_chunk(texts, usage.get("completion_tokens"))
    prompt = usage.get("prompt_tokens")
    return RequestResult(True, None, times[0] - start, chunk_itls(times, counts), end - start,
                         sum(counts), int(prompt) if isinstance(prompt, int) else None,
                         cached_tokens(usage))


async def _step(settings: LoadSettings, concurrency: int | None, rate: float | None,
                should_stop: Callable[[], bool]) -> dict[str, Any]:
    import httpx

    rng = random.Random(settings.seed)
    jobs = [settings.prompts[i % len(settings.prompts)] for i in range(settings.requests)]
    if settings.unique_prefix:
        # fresh for every request, step and run: no two share even the tag's first token
        jobs = [_unique(messages, os.urandom(8).hex()) for messages in jobs]
    results: list[RequestResult] = []
    limits = httpx.Limits(max_connections=max(concurrency or 0, 64))
    async with httpx.AsyncClient(limits=limits, timeout=settings.timeout_s) as client:
        start = time.perf_counter()
        if rate is None:
            queue = list(reversed(jobs))

            async def worker() -> None:
                while queue and not should_stop():
                    results.append(await one_request(client, settings, queue.pop()))

            tasks = [asyncio.create_task(worker()) for _ in range(concurrency or 1)]
        else:
            tasks = []
            for i, messages in enumerate(jobs):
                if should_stop():
                    break
                tasks.append(asyncio.create_task(one_request(client, settings, messages)))
                if i + 1 < len(jobs):  # the step ends with its requests, not a gap after them
                    gap = rng.expovariate(rate) if settings.arrivals == "poisson" else 1.0 / rate
                    await _arrival_gap(gap)
        done, pending = await asyncio.wait(tasks, timeout=settings.step_timeout_s)
        for task in pending:
            task.cancel()
        if rate is not None:
            results = [t.result() for t in done]
        results += [RequestResult(False, "step time limit") for _ in
                    range(settings.requests - len(results))] if not should_stop() else []
        wall = time.perf_counter() - start
    return summarize(results, wall, settings.slo, concurrency, rate)


async def _arrival_gap(seconds: float) -> None:
    await asyncio.sleep(seconds)


def _unique(messages: list[dict[str, str]], tag: str) -> list[dict[str, str]]:
    """The tag at the front of the system message (a chat template puts the system
    message first, its own default one when there is none): only the template's first
    few tokens stay shared."""
    if messages and messages[0]["role"] == "system":
        first = {"role": "system", "content": f"{tag} {messages[0]['content']}"}
        return [first, *messages[1:]]
    return [{"role": "system", "content": f"{tag} You are a helpful assistant."},
            *messages]


def run_load(settings: LoadSettings, progress: Callable[[dict[str, Any]], None] = lambda s: None,
             should_stop: Callable[[], bool] = lambda: False) -> list[dict[str, Any]]:
    """Every step in turn (concurrency steps, or rate steps when ``rates`` is given)."""
    if settings.requests < 1:
        raise ValueError("load: --requests must be at least 1")
    if not settings.prompts:
        raise ValueError("load: no prompts")
    steps = []
    plan = ([(None, r) for r in settings.rates] if settings.rates
            else [(c, None) for c in settings.concurrency])
    for concurrency, rate in plan:
        if should_stop():
            break
        step = asyncio.run(_step(settings, concurrency, rate, should_stop))
        steps.append(step)
        progress(step)
    return steps
