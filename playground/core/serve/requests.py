"""An OpenAI request, checked: every field honoured or refused by name (the server's
half that needs no web framework). ``parse_request`` turns a JSON body into what the
scheduler runs; ``StopText`` ends a reply at a stop string, piece by piece.
"""

from __future__ import annotations

import json
import random
from typing import Any

from playground.core.messages import MessageError, check_messages, check_text
from playground.core.serve.logprobs import MAX_TOP


class ApiError(Exception):
    def __init__(self, status: int, message: str, kind: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.param, self.code = (
            status, message, kind, param, code)


def context_length(engine: Any) -> int | None:
    return engine.context_length() if hasattr(engine, "context_length") else None


# fields a client may send that change what it gets back: honoured below, or refused here
# unless at their defaults (OpenAI's and vLLM's 400 on a field they cannot serve)
REFUSED = {"tools": (None, []),
           "tool_choice": (None, "none"), "functions": (None, []), "function_call": (None, "none"),
           "frequency_penalty": (None, 0, 0.0), "presence_penalty": (None, 0, 0.0),
           "logit_bias": (None, {}), "best_of": (None, 1), "echo": (None, False),
           "suffix": (None, "")}
MAX_STOPS = 4
MAX_N = 8  # choices a request: each is a sequence in the batch
# No token is longer than this many characters in practice: a longer prompt than the
# context times this is refused without tokenizing it (a 10 MB prompt's tokenization
# held the event loop, so every client, for 7.6 s)
CHARS_PER_TOKEN = 32


def parse_request(body: Any, engine: Any, model_name: str, kind: str = "chat",
                  default_max_tokens: int | None = None,
                  max_tokens_limit: int = 8192) -> dict[str, Any]:
    """Validate a chat (``messages``) or completions (``prompt``) request; the ApiError
    says which field and what is allowed. ``default_max_tokens`` is the server's, read
    once at start (the engine's config is swapped per request while one runs)."""
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    model = body.get("model")
    if model not in (None, model_name):
        raise ApiError(404, f"model '{model}' is not served here; served: {model_name}",
                       param="model", code="model_not_found")
    _refuse_unserved(body)
    prompt = _messages(body) if kind == "chat" else _prompt(body)
    default = default_max_tokens or engine.config.max_new_tokens
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is None:
        max_tokens = default
    if (not isinstance(max_tokens, int) or isinstance(max_tokens, bool)
            or not 1 <= max_tokens <= max_tokens_limit):
        raise ApiError(400, f"max_tokens: a whole number from 1 to {max_tokens_limit} "
                       "(this server's limit)", param="max_tokens")
    temperature = _number(body, "temperature", 0.0, 0.0, 5.0, "from 0 (greedy) to 5")
    top_p = _number(body, "top_p", 1.0, 0.0, 1.0, "above 0, up to 1")
    if top_p == 0:
        raise ApiError(400, "top_p: above 0, up to 1", param="top_p")
    seed = body.get("seed")
    if seed is None:
        seed = random.randrange(2**31)  # OpenAI's: unseeded requests differ
    elif not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**63:
        raise ApiError(400, "seed: a whole number from 0 to 2^63 - 1", param="seed")
    top_logprobs = _logprobs(body, kind)
    n = body.get("n")
    if n is None:
        n = 1
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_N:
        raise ApiError(400, f"n: a whole number from 1 to {MAX_N}", param="n")
    stream = bool(body.get("stream", False))
    options = body.get("stream_options") or {}
    context = context_length(engine)
    if context:
        chars = len(prompt) if isinstance(prompt, str) else sum(len(m["content"]) for m in prompt)
        if chars > context * CHARS_PER_TOKEN:  # cannot fit: refused before tokenizing it
            raise ApiError(400, f"the prompt ({chars} characters) cannot fit the model's "
                           f"context of {context} tokens", code="context_length_exceeded",
                           param="messages" if kind == "chat" else "prompt")
        length = len(engine.prompt_ids(prompt))
        if length + max_tokens > context:
            raise ApiError(400, f"the prompt ({length} tokens) plus max_tokens ({max_tokens}) "
                           f"exceeds the model's context of {context} tokens",
                           param="messages" if kind == "chat" else "prompt",
                           code="context_length_exceeded")
    return {"prompt": prompt, "max_tokens": max_tokens, "temperature": float(temperature),
            "top_p": float(top_p), "seed": seed, "stop": _stops(body), "n": n,
            "top_logprobs": top_logprobs,
            "stream": stream, "include_usage": bool(isinstance(options, dict)
                                                    and options.get("include_usage"))}


def _refuse_unserved(body: dict[str, Any]) -> None:
    for key, defaults in REFUSED.items():
        if key in body and body[key] not in defaults:
            raise ApiError(400, f"{key}: not served here (only the default, "
                           f"{json.dumps(defaults[-1])}, is accepted)", param=key)
    fmt = body.get("response_format")
    if fmt not in (None, {"type": "text"}):
        raise ApiError(400, "response_format: only {\"type\": \"text\"} is served",
                       param="response_format")


def _logprobs(body: dict[str, Any], kind: str) -> int | None:
    """None (no logprobs), or how many alternatives each token lists."""
    asked, top = body.get("logprobs"), body.get("top_logprobs")
    if kind != "chat":
        for key, value in (("logprobs", asked), ("top_logprobs", top)):
            if value is not None and value is not False:
                raise ApiError(400, f"{key}: served on /v1/chat/completions only", param=key)
        return None
    if asked not in (None, True, False):
        raise ApiError(400, "logprobs: true or false", param="logprobs")
    if top is not None and (not isinstance(top, int) or isinstance(top, bool)
                            or not 0 <= top <= MAX_TOP):
        raise ApiError(400, f"top_logprobs: a whole number from 0 to {MAX_TOP}",
                       param="top_logprobs")
    if top and not asked:
        raise ApiError(400, "top_logprobs: needs logprobs: true", param="top_logprobs")
    return (top or 0) if asked else None


def _number(body: dict[str, Any], key: str, default: float, low: float, high: float,
            allowed: str) -> float:
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not low <= value <= high:
        raise ApiError(400, f"{key}: a number {allowed}", param=key)
    return float(value)


def _stops(body: dict[str, Any]) -> list[str]:
    stop = body.get("stop")
    if stop is None:
        return []
    stops = [stop] if isinstance(stop, str) else stop
    if (not isinstance(stops, list) or not 1 <= len(stops) <= MAX_STOPS
            or not all(isinstance(x, str) and x for x in stops)):
        raise ApiError(400, f"stop: a non-empty string or a list of 1 to {MAX_STOPS} of them",
                       param="stop")
    return stops


class StopText:
    """Text streamed up to the first stop string: a piece that may begin one is held
    back until the next piece says whether it does."""

    def __init__(self, stops: list[str]) -> None:
        self.stops, self.held, self.hit = stops, "", False

    def feed(self, piece: str) -> str:
        text = self.held + piece
        found = [i for i in (text.find(s) for s in self.stops) if i >= 0]
        if found:
            self.hit, self.held = True, ""
            return text[: min(found)]
        keep = max((k for s in self.stops for k in range(1, len(s)) if text.endswith(s[:k])),
                   default=0)
        self.held = text[len(text) - keep:]
        return text[: len(text) - keep]

    def flush(self) -> str:
        held, self.held = self.held, ""
        return held


def _messages(body: dict[str, Any]) -> list[dict[str, str]]:
    messages = body.get("messages")
    if isinstance(messages, list):  # OpenAI's newer forms, as the plain ones
        messages = [_plain_message(m) for m in messages]
    try:
        return check_messages(messages)
    except MessageError as exc:
        raise ApiError(400, str(exc), param=exc.where) from None


def _plain_message(m: Any) -> Any:
    """``developer`` is the system role's newer name; content as a list of text parts is
    their concatenation (other part types are refused by the check that follows)."""
    if not isinstance(m, dict):
        return m
    m = dict(m)
    if m.get("role") == "developer":
        m["role"] = "system"
    parts = m.get("content")
    if isinstance(parts, list) and all(isinstance(p, dict) and p.get("type") == "text"
                                       and isinstance(p.get("text"), str) for p in parts):
        m["content"] = "".join(p["text"] for p in parts)
    return m


def _prompt(body: dict[str, Any]) -> str:
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str) or not prompt:
        raise ApiError(400, "prompt: one non-empty string is required (lists of several "
                       "prompts and token ids are not served)", param="prompt")
    try:
        check_text(prompt, "prompt")
    except MessageError as exc:
        raise ApiError(400, str(exc), param="prompt") from None
    return prompt
