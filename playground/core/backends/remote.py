"""A remote OpenAI-compatible endpoint as an engine (``endpoint=URL`` in the spec).

Chat, ``bench``, ``compare`` and the live charts drive it as they drive a local model:
``chat()`` streams ``POST {endpoint}/chat/completions`` and fills the same token
timeline, from the client's clock (so TTFT includes the network, as a user of that
server sees it). A chunk that carries several tokens has its gap split evenly across
them, counted from the stream's ``usage`` (the load tester's rule, playground/core/
load.py). The API key comes from the environment variable named by ``api_key_env``;
the key itself never enters the spec, the history or a result file.

There is no local model: weights, memory and bandwidth figures are not available, and
quality against a local baseline is computed from the replies (see compare.py).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

from playground.core.config import RunConfig
from playground.core.engine import GenerationError, Message, OnToken, ShouldStop, TurnResult
from playground.core.load import cached_tokens, parse_event, tokens_per_chunk
from playground.core.metrics import TokenTimeline, turn_metrics

CONNECT_TIMEOUT_S = 5.0


class EndpointError(RuntimeError):
    """The endpoint cannot be used (unreachable, refused the key, no such model)."""


class RemoteEngine:
    """The part of Engine's interface the app and the benchmarks use, over HTTP."""

    model = None
    tokenizer = None
    weights_mb = None
    read_mb = None
    bandwidth_gb_s = None
    device = "remote"

    def __init__(self, config: RunConfig, model_name: str, client: Any) -> None:
        self.config = config
        self.model_name = model_name
        self._client = client
        self.url = config.endpoint.rstrip("/")
        self.info: dict[str, Any] = {
            "model_name": model_name, "architecture": "remote endpoint", "device": "remote",
            "endpoint": self.url, "notes": [f"remote endpoint {self.url}"],
            "decode_step": f"remote endpoint {self.url} (model {model_name})",
        }

    def decode_path(self) -> str:
        return self.info["decode_step"]

    def reset(self) -> None:
        """Nothing to forget here: the server keeps no conversation state for us."""

    def chat(self, messages: Sequence[Message] | str, on_token: OnToken | None = None,
             should_stop: ShouldStop | None = None) -> TurnResult:
        on_token = on_token or (lambda _piece: None)
        should_stop = should_stop or (lambda: False)
        cfg = self.config
        chat = not isinstance(messages, str)
        body: dict[str, Any] = {
            "model": self.model_name, "max_tokens": cfg.max_new_tokens,
            "temperature": cfg.temperature, "top_p": cfg.top_p, "seed": cfg.seed,
            "stream": True, "stream_options": {"include_usage": True},
        }
        body.update({"messages": list(messages)} if chat else {"prompt": messages})
        path = "/chat/completions" if chat else "/completions"
        timeline = TokenTimeline(t_request=time.perf_counter())
        times: list[float] = []
        texts: list[str] = []
        usage: dict[str, Any] = {}
        finish = "length"
        try:
            with self._client.stream("POST", self.url + path, json=body,
                                     headers=_auth(cfg)) as response:
                if response.status_code != 200:
                    raise GenerationError(_http_error(response, self.url))
                for line in response.iter_lines():
                    event = parse_event(line)
                    if event is None:
                        continue
                    if event.done:
                        break
                    usage = event.usage or usage
                    if event.finish:
                        finish = "eos" if event.finish == "stop" else "length"
                    for piece in event.pieces:
                        now = time.perf_counter()
                        if timeline.t_first_logits is None:
                            timeline.t_first_logits = now
                        times.append(now)
                        texts.append(piece)
                        on_token(piece)
                    if event.pieces and should_stop():  # as the local loop: after a token
                        finish = "cancelled"
                        break  # leaving the stream closes the connection: the server stops
        except GenerationError:
            raise
        except Exception as exc:  # the network: one readable line
            raise GenerationError(f"endpoint {self.url}: {type(exc).__name__}: "
                                  f"{str(exc).splitlines()[0] if str(exc) else ''}") from exc
        counts = tokens_per_chunk(texts, usage.get("completion_tokens") if finish != "cancelled"
                                  else None)
        timeline.token_times = _spread(times, counts)
        timeline.prompt_tokens = int(usage.get("prompt_tokens") or 0)
        cached = cached_tokens(usage)
        # prefill speed only where the server says how much of the prompt it computed: a
        # server's prefix cache would otherwise read as an impossibly fast prefill
        timeline.prefilled_tokens = 0 if cached is None else timeline.prompt_tokens - cached
        metrics = turn_metrics(timeline)
        result = TurnResult("".join(texts), [], timeline, metrics, finish, cfg)
        result.extra["chunks"] = len(times)
        result.extra["cached_tokens"] = cached
        result.prefix_reused = cached or 0
        return result


def build(config: RunConfig, progress: Any = lambda _m: None) -> RemoteEngine:
    """Connect: ask the endpoint for its models (checks the URL and the key), pick the
    one named by ``endpoint_model`` (or its only/first one)."""
    import httpx

    url = config.endpoint.rstrip("/")
    progress(f"Connecting to {url}…")
    client = httpx.Client(timeout=httpx.Timeout(300.0, connect=CONNECT_TIMEOUT_S))
    try:
        response = client.get(url + "/models", headers=_auth(config))
    except httpx.HTTPError as exc:
        client.close()
        raise EndpointError(f"endpoint {url} cannot be reached: {type(exc).__name__}"
                            f"{': ' + str(exc) if str(exc) else ''}") from None
    if response.status_code != 200:
        client.close()
        raise EndpointError(_http_error(response, url))
    try:
        served = [m["id"] for m in response.json().get("data", [])]
    except (ValueError, KeyError, TypeError, AttributeError):
        served = []
    name = config.endpoint_model or (served[0] if served else "")
    if config.endpoint_model and served and name not in served:
        client.close()
        raise EndpointError(f"endpoint_model: '{name}' is not served by {url}; served: "
                            + ", ".join(served))
    if not name:
        client.close()
        raise EndpointError(f"endpoint {url} lists no models; name one with endpoint_model=")
    progress("Ready")
    return RemoteEngine(config, name, client)


def _auth(config: RunConfig) -> dict[str, str]:
    key = os.environ.get(config.api_key_env) if config.api_key_env else None
    return {"Authorization": f"Bearer {key}"} if key else {}


def _http_error(response: Any, url: str) -> str:
    try:
        response.read()
        detail = response.json().get("error", {}).get("message") or response.text
    except (ValueError, AttributeError):
        detail = getattr(response, "text", "")
    detail = " ".join(str(detail).split())[:200]
    if response.status_code == 401:
        return f"endpoint {url} refused the API key (HTTP 401): {detail}"
    return f"endpoint {url} answered HTTP {response.status_code}: {detail}"


def _spread(times: list[float], counts: list[int]) -> list[float]:
    """One timestamp per token: a chunk of k tokens arriving at t after the previous chunk
    at t0 gets t0 + (t − t0)·j/k for j = 1..k (the first chunk's tokens all at its time:
    its gap is TTFT, not ITL)."""
    out: list[float] = []
    previous = None
    for t, k in zip(times, counts, strict=True):
        if previous is None:
            out += [t] * k
        else:
            out += [previous + (t - previous) * j / k for j in range(1, k + 1)]
        previous = t
    return out

