"""The OpenAI-compatible HTTP front of one engine (FastAPI; no Qt).

``POST /v1/chat/completions`` and ``POST /v1/completions`` (plain text, no chat
template; both streamed as server-sent events, with ``stream_options.include_usage``,
or whole), ``GET /v1/models``, ``GET /health``,
``GET /metrics``. Bad input is an OpenAI-style JSON error (400 malformed or too
long, 401 key, 404 model, 422 fields, 429 queue full with Retry-After), never a 500:
the server keeps serving after each.
"""

# No `from __future__ import annotations` here: FastAPI reads the route functions'
# annotations (Request is imported inside create_app) and needs them as objects.
import asyncio
import json
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


def parse_request(body: Any, engine: Any, model_name: str, kind: str = "chat") -> dict[str, Any]:
    """Validate a chat (``messages``) or completions (``prompt``) request; the ApiError
    says which field and what is allowed."""
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    model = body.get("model")
    if model not in (None, model_name):
        raise ApiError(404, f"model '{model}' is not served here; served: {model_name}",
                       param="model", code="model_not_found")
    prompt = _messages(body) if kind == "chat" else _prompt(body)
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens",
                                                             engine.config.max_new_tokens))
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or not 1 <= max_tokens <= 8192:
        raise ApiError(422, "max_tokens: a whole number from 1 to 8192", param="max_tokens")
    temperature = body.get("temperature", 0.0)
    if temperature is None:
        temperature = 0.0
    if not isinstance(temperature, (int, float)) or not 0 <= temperature <= 5:
        raise ApiError(422, "temperature: a number from 0 (greedy) to 5", param="temperature")
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
            "stream": stream, "include_usage": bool(isinstance(options, dict)
                                                    and options.get("include_usage"))}


def _messages(body: dict[str, Any]) -> list[dict[str, str]]:
    try:
        return check_messages(body.get("messages"))
    except MessageError as exc:
        raise ApiError(422, str(exc), param=exc.where) from None


def _prompt(body: dict[str, Any]) -> str:
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str) or not prompt:
        raise ApiError(422, "prompt: one non-empty string is required (lists of several "
                       "prompts and token ids are not served)", param="prompt")
    try:
        check_text(prompt, "prompt")
    except MessageError as exc:
        raise ApiError(422, str(exc), param="prompt") from None
    if body.get("n", 1) != 1 or body.get("best_of", 1) != 1 or body.get("echo"):
        raise ApiError(422, "n, best_of and echo: only the defaults (1, 1, false) are served",
                       param="n")
    return prompt


def create_app(engine: Any, *, api_key: str | None = None, max_queue: int = 64,
               model_name: str | None = None, batching: bool = True, max_batch: int = 8,
               prefill_chunk: int = 32, batch_wait_ms: float = 0.0,
               prefix_cache: bool = True) -> Any:
    from fastapi import FastAPI, Request
    from fastapi.responses import PlainTextResponse, StreamingResponse

    name = model_name or str(engine.info.get("model_name") or "playground")
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

    app = FastAPI(title="LLM Latency Playground", lifespan=lifespan)

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

    def check_key(request: Request) -> None:
        if api_key and request.headers.get("authorization") != f"Bearer {api_key}":
            raise ApiError(401, "a valid API key is required (Authorization: Bearer KEY)",
                           kind="authentication_error", code="invalid_api_key")

    @app.get("/health")
    async def health() -> Any:
        from fastapi.responses import JSONResponse

        if app.state.draining:  # load balancers stop sending here
            return JSONResponse({"status": "draining"}, status_code=503)
        return {"status": "ok"}

    @app.get("/metrics")
    async def prometheus() -> Any:
        return PlainTextResponse(metrics.prometheus(), media_type="text/plain; version=0.0.4")

    @app.get("/v1/models")
    async def list_models(request: Request) -> dict[str, Any]:
        check_key(request)
        return {"object": "list", "data": [{"id": name, "object": "model", "created": 0,
                                            "owned_by": "latency-playground"}]}

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
        try:
            body = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError):
            raise ApiError(400, "the request body is not valid JSON") from None
        req = parse_request(body, engine, name, kind)
        job = Job(req["prompt"], req["max_tokens"], req["temperature"], asyncio.get_running_loop())
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
                        yield chunk(item)
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
        try:
            while await job.pieces.get() is not END:
                pass
        finally:
            job.cancelled = True
        if job.error or job.result is None:
            raise ApiError(500, f"generation failed: {job.error}", kind="server_error")
        finish = FINISH.get(job.result.finish_reason, "stop")
        if chat:
            choice = {"index": 0, "message": {"role": "assistant", "content": job.result.reply},
                      "finish_reason": finish}
        else:
            choice = {"index": 0, "text": job.result.reply, "logprobs": None,
                      "finish_reason": finish}
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
