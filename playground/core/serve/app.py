"""The OpenAI-compatible HTTP front of one engine (FastAPI; no Qt).

``POST /v1/chat/completions`` and ``POST /v1/completions`` (plain text, no chat
template; both streamed as server-sent events, with ``stream_options.include_usage``,
or whole), ``GET /v1/models``, ``GET /health``,
``GET /metrics``. Bad input is an OpenAI-style JSON error (400 malformed, too long or
a field out of range, 401 key, 404 model or path, 415 not JSON, 429 queue full with
Retry-After), never a 500: the server keeps serving after each. Every request field is
honoured (model, messages/prompt, max_tokens, temperature, top_p, seed, stop, stream,
stream_options) or refused by name (n > 1, logprobs, tools, response formats other
than text, penalties, logit_bias): a client never gets a 200 that ignored what it asked.
"""

# No `from __future__ import annotations` here: FastAPI reads the route functions'
# annotations (Request is imported inside create_app) and needs them as objects.
import asyncio
import hmac
import json
import random
import time
import uuid
from contextlib import asynccontextmanager
from typing import Any

from playground.core.messages import MessageError, check_messages, check_text
from playground.core.serve.batching import BatchScheduler
from playground.core.serve.metrics import ServerMetrics
from playground.core.serve.scheduler import END, Job, QueueFull, SequentialScheduler

FINISH = {"eos": "stop", "length": "length", "cancelled": "stop", "cache": "stop"}


class ApiError(Exception):
    def __init__(self, status: int, message: str, kind: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.param, self.code = (
            status, message, kind, param, code)


def _error_response(exc: ApiError, headers: dict[str, str] | None = None) -> Any:
    from fastapi.responses import JSONResponse

    body = {"error": {"message": exc.message, "type": exc.kind, "param": exc.param,
                      "code": exc.code}}
    return JSONResponse(body, status_code=exc.status, headers=headers)


def context_length(engine: Any) -> int | None:
    return engine.context_length() if hasattr(engine, "context_length") else None


# fields a client may send that change what it gets back: honoured below, or refused here
# unless at their defaults (OpenAI's and vLLM's 400 on a field they cannot serve)
REFUSED = {"logprobs": (None, False), "top_logprobs": (None, 0), "tools": (None, []),
           "tool_choice": (None, "none"), "functions": (None, []), "function_call": (None, "none"),
           "frequency_penalty": (None, 0, 0.0), "presence_penalty": (None, 0, 0.0),
           "logit_bias": (None, {}), "best_of": (None, 1), "echo": (None, False),
           "suffix": (None, "")}
MAX_STOPS = 4


def parse_request(body: Any, engine: Any, model_name: str, kind: str = "chat",
                  default_max_tokens: int | None = None) -> dict[str, Any]:
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
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or not 1 <= max_tokens <= 8192:
        raise ApiError(400, "max_tokens: a whole number from 1 to 8192", param="max_tokens")
    temperature = _number(body, "temperature", 0.0, 0.0, 5.0, "from 0 (greedy) to 5")
    top_p = _number(body, "top_p", 1.0, 0.0, 1.0, "above 0, up to 1")
    if top_p == 0:
        raise ApiError(400, "top_p: above 0, up to 1", param="top_p")
    seed = body.get("seed")
    if seed is None:
        seed = random.randrange(2**31)  # OpenAI's: unseeded requests differ
    elif not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**63:
        raise ApiError(400, "seed: a whole number from 0 to 2^63 - 1", param="seed")
    stream = bool(body.get("stream", False))
    options = body.get("stream_options") or {}
    context = context_length(engine)
    if context:
        length = len(engine.prompt_ids(prompt))
        if length + max_tokens > context:
            raise ApiError(400, f"the prompt ({length} tokens) plus max_tokens ({max_tokens}) "
                           f"exceeds the model's context of {context} tokens",
                           param="messages" if kind == "chat" else "prompt",
                           code="context_length_exceeded")
    return {"prompt": prompt, "max_tokens": max_tokens, "temperature": float(temperature),
            "top_p": float(top_p), "seed": seed % (2**63), "stop": _stops(body),
            "stream": stream, "include_usage": bool(isinstance(options, dict)
                                                    and options.get("include_usage"))}


def _refuse_unserved(body: dict[str, Any]) -> None:
    if body.get("n") not in (None, 1):
        raise ApiError(400, "n: only 1 choice a request is served", param="n")
    for key, defaults in REFUSED.items():
        if key in body and body[key] not in defaults:
            raise ApiError(400, f"{key}: not served here (only the default, "
                           f"{json.dumps(defaults[-1])}, is accepted)", param=key)
    fmt = body.get("response_format")
    if fmt not in (None, {"type": "text"}):
        raise ApiError(400, "response_format: only {\"type\": \"text\"} is served",
                       param="response_format")


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


def create_app(engine: Any, *, api_key: str | None = None, max_queue: int = 64,
               model_name: str | None = None, batching: bool = True, max_batch: int = 8,
               prefill_chunk: int = 32, batch_wait_ms: float = 0.0,
               prefix_cache: bool = True, trusted_hosts: list[str] | None = None) -> Any:
    """``trusted_hosts``: the Host headers accepted (a loopback server gets its loopback
    names, so a web page the user opens cannot reach it under another name: DNS
    rebinding); None accepts any."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import PlainTextResponse, StreamingResponse
    from starlette.exceptions import HTTPException

    name = model_name or str(engine.info.get("model_name") or "playground")
    default_max_tokens = engine.config.max_new_tokens  # before any request swaps it
    metrics = ServerMetrics()
    state: dict[str, Any] = {}

    def make_scheduler() -> Any:
        if batching:
            return BatchScheduler(engine, metrics, max_queue, max_batch, prefill_chunk,
                                  batch_wait_ms, prefix_cache)
        return SequentialScheduler(engine, metrics, max_queue)

    @asynccontextmanager
    async def lifespan(_app: Any):
        state["scheduler"] = make_scheduler()
        yield
        state["scheduler"].close()

    # with a key, the API's description is behind it too (route below)
    app = FastAPI(title="LLM Latency Playground", lifespan=lifespan,
                  docs_url=None if api_key else "/docs", redoc_url=None,
                  openapi_url=None if api_key else "/openapi.json")
    if trusted_hosts is not None:
        from starlette.middleware.trustedhost import TrustedHostMiddleware

        app.add_middleware(TrustedHostMiddleware, allowed_hosts=trusted_hosts)

    class CountedStream(StreamingResponse):
        """Counted out of ``in_flight`` once sent (or abandoned): a drain waits for it."""

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            try:
                await super().__call__(scope, receive, send)
            finally:
                app.state.in_flight -= 1

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, exc: ApiError) -> Any:
        return _error_response(exc)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Any:
        # 404 / 405 in OpenAI's error shape, not FastAPI's {"detail"}
        what = {404: f"no such path: {request.url.path}",
                405: f"{request.method} is not allowed on {request.url.path}"}
        return _error_response(ApiError(exc.status_code, what.get(exc.status_code, str(exc.detail)),
                                        code="not_found" if exc.status_code == 404 else None),
                               headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> Any:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()) if x != "body") or None
        return _error_response(ApiError(400, f"{where}: {first.get('msg', 'invalid')}",
                                        param=where))

    expected = f"Bearer {api_key}".encode() if api_key else b""

    def check_key(request: Request) -> None:
        given = request.headers.get("authorization", "").encode()
        # constant time: the comparison does not tell how much of a guess was right
        if api_key and not hmac.compare_digest(given, expected):
            raise ApiError(401, "a valid API key is required (Authorization: Bearer KEY)",
                           kind="authentication_error", code="invalid_api_key")

    if api_key:
        @app.get("/openapi.json", include_in_schema=False)
        async def openapi(request: Request) -> Any:
            check_key(request)
            return app.openapi()

    @app.get("/health")
    async def health() -> Any:
        from fastapi.responses import JSONResponse

        if app.state.draining:  # load balancers stop sending here
            return JSONResponse({"status": "draining"}, status_code=503)
        return {"status": "ok"}

    @app.get("/metrics")
    async def prometheus(request: Request) -> Any:
        check_key(request)
        return PlainTextResponse(metrics.prometheus(), media_type="text/plain; version=0.0.4")

    served = {"id": name, "object": "model", "created": 0, "owned_by": "latency-playground"}

    @app.get("/v1/models")
    async def list_models(request: Request) -> dict[str, Any]:
        check_key(request)
        return {"object": "list", "data": [served]}

    @app.get("/v1/models/{model_id:path}")
    async def one_model(model_id: str, request: Request) -> dict[str, Any]:
        check_key(request)
        if model_id != name:
            raise ApiError(404, f"model '{model_id}' is not served here; served: {name}",
                           param="model", code="model_not_found")
        return served

    async def serve(request: Request, kind: str) -> Any:
        if app.state.draining:
            return _error_response(ApiError(503, "the server is shutting down",
                                            kind="server_error", code="shutting_down"),
                                   headers={"Retry-After": "5"})
        app.state.in_flight += 1  # until answered; a stream until its last byte is sent
        try:
            response = await answer(request, kind)
        except BaseException:
            app.state.in_flight -= 1
            raise
        if not isinstance(response, CountedStream):
            app.state.in_flight -= 1
        return response

    async def answer(request: Request, kind: str) -> Any:
        check_key(request)
        media = request.headers.get("content-type", "application/json").split(";")[0].strip()
        if media.lower() != "application/json":
            # text/plain and form bodies are what a web page may send anywhere unasked
            raise ApiError(415, f"Content-Type {media} is not served; send application/json")
        try:
            body = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError):
            raise ApiError(400, "the request body is not valid JSON") from None
        req = parse_request(body, engine, name, kind, default_max_tokens)
        job = Job(req["prompt"], req["max_tokens"], req["temperature"], asyncio.get_running_loop(),
                  top_p=req["top_p"], seed=req["seed"])
        stop = StopText(req["stop"]) if req["stop"] else None
        try:
            state["scheduler"].submit(job)
        except QueueFull as exc:
            return _error_response(ApiError(429, str(exc), kind="rate_limit_error",
                                            code="queue_full"), headers={"Retry-After": "1"})
        chat = kind == "chat"
        rid = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:24]}"
        created = int(time.time())
        obj = "chat.completion" if chat else "text_completion"
        chunk_obj = obj + (".chunk" if chat else "")  # the object of a streamed event

        def chunk(text: str | None, finish: str | None = None, first: bool = False) -> str:
            if chat:
                delta = {"role": "assistant", "content": ""} if first else (
                    {} if text is None else {"content": text})
                choice = {"index": 0, "delta": delta, "finish_reason": finish}
            else:
                choice = {"index": 0, "text": text or "", "logprobs": None,
                          "finish_reason": finish}
            data = {"id": rid, "object": chunk_obj, "created": created, "model": name,
                    "choices": [choice]}
            return f"data: {json.dumps(data)}\n\n"

        def usage() -> dict[str, int]:
            m = job.result.metrics
            return {"prompt_tokens": m.prompt_tokens, "completion_tokens": m.new_tokens,
                    "total_tokens": m.prompt_tokens + m.new_tokens}

        if req["stream"]:
            async def events():
                try:
                    if chat:
                        yield chunk(None, first=True)
                    while (item := await job.pieces.get()) is not END:
                        if stop is None:
                            yield chunk(item)
                        elif not stop.hit:
                            text = stop.feed(item)
                            if stop.hit:
                                job.cancelled = True  # generation ends here
                            if text:
                                yield chunk(text)
                    if stop is not None and not stop.hit and (rest := stop.flush()):
                        yield chunk(rest)
                    if job.error or job.result is None:
                        error = {"message": job.error or "cancelled", "type": "server_error"}
                        yield f"data: {json.dumps({'error': error})}\n\n"
                    else:
                        yield chunk(None, FINISH.get(job.result.finish_reason, "stop"))
                        if req["include_usage"]:
                            data = {"id": rid, "object": chunk_obj, "created": created,
                                    "model": name, "choices": [], "usage": usage()}
                            yield f"data: {json.dumps(data)}\n\n"
                    yield "data: [DONE]\n\n"
                finally:
                    job.cancelled = True  # a client that left frees its slot at once

            return CountedStream(events(), media_type="text/event-stream")
        kept: list[str] = []
        try:
            while (item := await job.pieces.get()) is not END:
                if stop is not None and not stop.hit:
                    kept.append(stop.feed(item))
                    job.cancelled = stop.hit  # generation ends at the stop string
        finally:
            job.cancelled = True
        if job.error or job.result is None:
            raise ApiError(500, f"generation failed: {job.error}", kind="server_error")
        finish = FINISH.get(job.result.finish_reason, "stop")
        reply = job.result.reply
        if stop is not None:
            reply = "".join(kept) + ("" if stop.hit else stop.flush())
        if chat:
            choice = {"index": 0, "message": {"role": "assistant", "content": reply},
                      "finish_reason": finish}
        else:
            choice = {"index": 0, "text": reply, "logprobs": None, "finish_reason": finish}
        return {"id": rid, "object": obj, "created": created, "model": name,
                "choices": [choice], "usage": usage()}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Any:
        return await serve(request, "chat")

    @app.post("/v1/completions")
    async def completions(request: Request) -> Any:
        return await serve(request, "completions")

    app.state.metrics = metrics
    app.state.busy = lambda: app.state.in_flight > 0 or metrics.queued > 0 or metrics.running > 0
    app.state.draining = False  # set by the first Ctrl+C: new requests get 503
    app.state.in_flight = 0  # requests being answered (a stream until its last byte)
    return app
