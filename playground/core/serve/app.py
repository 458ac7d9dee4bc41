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
import time
import uuid
from contextlib import asynccontextmanager
from typing import Any

from playground.core.serve.batching import BatchScheduler
from playground.core.serve.metrics import ServerMetrics
from playground.core.serve.requests import ApiError, StopText, parse_request
from playground.core.serve.scheduler import END, Job, QueueFull, SequentialScheduler

FINISH = {"eos": "stop", "length": "length", "cancelled": "stop", "cache": "stop"}


def _error_response(exc: ApiError, headers: dict[str, str] | None = None) -> Any:
    from fastapi.responses import JSONResponse

    body = {"error": {"message": exc.message, "type": exc.kind, "param": exc.param,
                      "code": exc.code}}
    return JSONResponse(body, status_code=exc.status, headers=headers)


MAX_BODY = 2 * 2**20  # bytes of a request body


def create_app(engine: Any, *, api_key: str | None = None, max_queue: int = 64,
               model_name: str | None = None, batching: bool = True, max_batch: int = 8,
               prefill_chunk: int = 32, batch_wait_ms: float = 0.0,
               prefix_cache: bool = True, trusted_hosts: list[str] | None = None,
               max_tokens_limit: int = 8192) -> Any:
    """``trusted_hosts``: the Host headers accepted (a loopback server gets its loopback
    names, so a web page the user opens cannot reach it under another name: DNS
    rebinding); None accepts any."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import PlainTextResponse, StreamingResponse
    from starlette.exceptions import HTTPException
    from starlette.requests import ClientDisconnect

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

    async def read_body(request: Request) -> bytes:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_BODY:
            raise ApiError(413, f"the request body is {declared} bytes; at most {MAX_BODY}")
        chunks, size = [], 0
        async for part in request.stream():
            size += len(part)
            if size > MAX_BODY:
                raise ApiError(413, f"the request body is over {MAX_BODY} bytes")
            chunks.append(part)
        return b"".join(chunks)

    async def serve(request: Request, kind: str) -> Any:
        if app.state.draining:
            return _error_response(ApiError(503, "the server is shutting down",
                                            kind="server_error", code="shutting_down"),
                                   headers={"Retry-After": "5"})
        check_key(request)
        try:
            # read before counting the request in flight: a client that sends half a
            # body never holds a drain up
            raw = await read_body(request)
        except ClientDisconnect:
            return PlainTextResponse("", status_code=400)  # nobody is left to read it
        app.state.in_flight += 1  # until answered; a stream until its last byte is sent
        try:
            response = await answer(request, raw, kind)
        except BaseException:
            app.state.in_flight -= 1
            raise
        if not isinstance(response, CountedStream):
            app.state.in_flight -= 1
        return response

    async def answer(request: Request, raw: bytes, kind: str) -> Any:
        media = request.headers.get("content-type", "application/json").split(";")[0].strip()
        if media.lower() != "application/json":
            # text/plain and form bodies are what a web page may send anywhere unasked
            raise ApiError(415, f"Content-Type {media} is not served; send application/json")
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise ApiError(400, "the request body is not valid JSON") from None
        req = parse_request(body, engine, name, kind, default_max_tokens, max_tokens_limit)
        job = Job(req["prompt"], req["max_tokens"], req["temperature"], asyncio.get_running_loop(),
                  top_p=req["top_p"], seed=req["seed"])
        stop = StopText(req["stop"]) if req["stop"] else None

        def until_stop(piece: str) -> str:
            """The part of ``piece`` to send before any stop string; at one, generation
            ends (streamed and whole answers alike)."""
            text = stop.feed(piece)
            if stop.hit:
                job.cancelled = True
            return text
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
                        elif not stop.hit and (text := until_stop(item)):
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
        watcher = asyncio.create_task(watch(job, request))
        try:
            while (item := await job.pieces.get()) is not END:
                if stop is not None and not stop.hit:
                    kept.append(until_stop(item))
        finally:
            job.cancelled = True
            watcher.cancel()
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

    async def watch(job: Job, request: Request) -> None:
        """A whole (non-streamed) answer's client is checked twice a second: once it has
        gone, the request is cancelled, so its slot frees and its tokens stop."""
        while not job.cancelled:
            await asyncio.sleep(0.5)
            if await request.is_disconnected():
                job.cancelled = True

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
