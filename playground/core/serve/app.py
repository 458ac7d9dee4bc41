"""The OpenAI-compatible HTTP front of one engine (FastAPI; no Qt).

``POST /v1/chat/completions`` and ``POST /v1/completions`` (plain text, no chat
template; both streamed as server-sent events, with ``stream_options.include_usage``,
or whole), ``GET /v1/models``, ``GET /health``,
``GET /metrics``. Bad input is an OpenAI-style JSON error (400 malformed, too long or
a field out of range, 401 key, 404 model or path, 415 not JSON, 429 queue full with
Retry-After), never a 500: the server keeps serving after each. Every request field is
honoured (model, messages/prompt, max_tokens, temperature, top_p, seed, stop, n, stream,
stream_options, logprobs and top_logprobs on chat) or refused by name (tools, response
formats other than text, penalties, logit_bias): a client never gets a 200 that ignored what it asked.
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

from playground.core.serve import schema
from playground.core.serve.batching import BatchScheduler
from playground.core.serve.metrics import ServerMetrics
from playground.core.serve.requests import ApiError, StopText, parse_request
from playground.core.serve.scheduler import END, Job, QueueFull

FINISH = {"eos": "stop", "length": "length", "cancelled": "stop", "cache": "stop"}


def _error_response(exc: ApiError, headers: dict[str, str] | None = None) -> Any:
    from fastapi.responses import JSONResponse

    body = {"error": {"message": exc.message, "type": exc.kind, "param": exc.param,
                      "code": exc.code}}
    return JSONResponse(body, status_code=exc.status, headers=headers)


class Choice:
    """One of a request's n sequences: its job, and its text up to a stop string (a
    piece that may begin one is held back; at one, its generation ends)."""

    def __init__(self, job: Job, stops: list[str]) -> None:
        self.job, self.stop, self.kept = job, StopText(stops) if stops else None, []
        self.streamed = ""  # the engine's pieces so far
        self.logprobs_sent = 0
        self.released_chars = 0  # characters of the text the client has been given

    def keep(self, piece: str) -> str:
        self.streamed += piece
        if self.stop is None:
            return piece
        if self.stop.hit:
            return ""
        text = self.stop.feed(piece)
        if self.stop.hit:
            self.job.cancelled = True
        return text

    def released(self, text: str) -> None:
        self.released_chars += len(text)

    def new_logprobs(self, final: bool = False) -> list:
        """The logprobs of the tokens whose text the client now has, not sent yet (the
        scheduler computes them ahead of the text, and a stop string's tokens are never
        given); at the end (``final``) without a stop, whatever is left."""
        entries, starts, out = self.job.logprobs, self.job.logprob_starts, []
        while self.logprobs_sent < len(entries):
            start = starts[self.logprobs_sent]  # appended before its entry
            if start >= self.released_chars and not (final and self.stop is None):
                break
            out.append(entries[self.logprobs_sent])
            self.logprobs_sent += 1
        return out

    def whole_logprobs(self, reply: str) -> list:
        """A whole answer's entries: the tokens of ``reply`` (a stop string's left out)."""
        self.released(reply)
        return self.new_logprobs(final=True)

    def rest(self) -> str:
        """After the last piece: what the whole reply has beyond the pieces (a character
        the detokenizer held back as incomplete UTF-8), then any held stop prefix."""
        reply = self.job.result.reply if self.job.result is not None else ""
        tail = reply[len(self.streamed):] if reply.startswith(self.streamed) else ""
        text = self.keep(tail) if tail else ""
        return text + ("" if self.stop is None or self.stop.hit else self.stop.flush())


async def pieces(choices: list[Choice]) -> Any:
    """(index, piece) as each choice's pieces arrive, (index, END) after a choice's last;
    one choice is read directly (no task between the engine and the socket)."""
    if len(choices) == 1:
        while (item := await choices[0].job.pieces.get()) is not END:
            yield 0, item
        yield 0, END
        return
    merged: asyncio.Queue = asyncio.Queue()

    async def pump(i: int, job: Job) -> None:
        while (item := await job.pieces.get()) is not END:
            merged.put_nowait((i, item))
        merged.put_nowait((i, END))

    tasks = [asyncio.create_task(pump(i, c.job)) for i, c in enumerate(choices)]
    try:
        left = len(choices)
        while left:
            i, item = await merged.get()
            left -= item is END
            yield i, item
    finally:
        for task in tasks:
            task.cancel()


MAX_BODY = 2 * 2**20  # bytes of a request body


def create_app(engine: Any, *, api_key: str | None = None, max_queue: int = 64,
               model_name: str | None = None, batching: bool = True, max_batch: int = 8,
               prefill_chunk: int = 32, batch_wait_ms: float = 0.0,
               prefix_cache: bool = True, prefix_cache_mb: float = 512,
               trusted_hosts: list[str] | None = None,
               max_tokens_limit: int = 8192, wide_threads: int = 0) -> Any:
    """``trusted_hosts``: the Host headers accepted (a loopback server gets its loopback
    names, so a web page the user opens cannot reach it under another name: DNS
    rebinding); None accepts any. ``wide_threads``: compute threads for passes of many
    rows (device.wide_pass_threads; 0: the engine's own)."""
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
        # --batching off is the same scheduler with one slot: one code path, each
        # request's own sampling, nothing shared swapped (the engine's config is never
        # replaced while the event loop reads it)
        return BatchScheduler(engine, metrics, max_queue, max_batch if batching else 1,
                              prefill_chunk, batch_wait_ms, prefix_cache, prefix_cache_mb,
                              wide_threads)

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

    plain_openapi = app.openapi

    def openapi_doc() -> dict[str, Any]:
        return schema.add_request_schemas(plain_openapi(), max_tokens_limit)

    app.openapi = openapi_doc

    @app.get("/health", **schema.HEALTH_ROUTE)
    async def health() -> Any:
        from fastapi.responses import JSONResponse

        if app.state.draining:  # load balancers stop sending here
            return JSONResponse({"status": "draining"}, status_code=503)
        return {"status": "ok"}

    @app.get("/metrics", response_class=PlainTextResponse, **schema.METRICS_ROUTE)
    async def prometheus(request: Request) -> Any:
        check_key(request)
        return PlainTextResponse(metrics.prometheus(), media_type="text/plain; version=0.0.4")

    served = {"id": name, "object": "model", "created": 0, "owned_by": "latency-playground"}

    @app.get("/v1/models", **schema.MODELS_ROUTE)
    async def list_models(request: Request) -> dict[str, Any]:
        check_key(request)
        return {"object": "list", "data": [served]}

    @app.get("/v1/models/{model_id:path}", **schema.MODEL_ROUTE)
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
        if req["n"] > max_queue:  # could never all wait: a 429 would be retried forever
            raise ApiError(400, f"n: at most {max_queue} (this server's --max-queue)",
                           param="n")
        # n choices are n requests through the batch, seeds seed, seed + 1, ... (greedy
        # ones are alike, as OpenAI's are; Job.config folds a seed into the engine's range)
        choices = [Choice(Job(req["prompt"], req["max_tokens"], req["temperature"],
                              asyncio.get_running_loop(), top_p=req["top_p"],
                              seed=req["seed"] + i, top_logprobs=req["top_logprobs"]),
                          req["stop"])
                   for i in range(req["n"])]
        submitted: list[Choice] = []
        try:
            for c in choices:
                state["scheduler"].submit(c.job)
                submitted.append(c)
        except QueueFull as exc:
            for c in submitted:
                c.job.cancelled = True
            return _error_response(ApiError(429, str(exc), kind="rate_limit_error",
                                            code="queue_full"), headers={"Retry-After": "1"})
        chat = kind == "chat"
        rid = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:24]}"
        created = int(time.time())
        obj = "chat.completion" if chat else "text_completion"
        chunk_obj = obj + (".chunk" if chat else "")  # the object of a streamed event

        def chunk(index: int, text: str | None, finish: str | None = None,
                  first: bool = False) -> str:
            if chat:
                delta = {"role": "assistant", "content": ""} if first else (
                    {} if text is None else {"content": text})
                choice = {"index": index, "delta": delta, "finish_reason": finish}
                if text:
                    choices[index].released(text)
                if not first and (entries := choices[index].new_logprobs(finish is not None)):
                    choice["logprobs"] = {"content": entries}
            else:
                choice = {"index": index, "text": text or "", "logprobs": None,
                          "finish_reason": finish}
            data = {"id": rid, "object": chunk_obj, "created": created, "model": name,
                    "choices": [choice]}
            return f"data: {json.dumps(data)}\n\n"

        def usage() -> dict[str, Any]:
            first = choices[0].job.result
            new = sum(c.job.result.metrics.new_tokens for c in choices)
            prompt = first.metrics.prompt_tokens
            prefilled = getattr(first.timeline, "prefilled_tokens", None)
            # the prompt is counted once (OpenAI's), each choice's tokens; the prompt's
            # tokens taken from the prefix cache rather than computed, as OpenAI reports them
            return {"prompt_tokens": prompt, "completion_tokens": new,
                    "total_tokens": prompt + new, "prompt_tokens_details": {
                        "cached_tokens": 0 if prefilled is None else prompt - prefilled}}

        def failed() -> str | None:
            return next((c.job.error or "cancelled" for c in choices
                         if c.job.error or c.job.result is None), None)

        if req["stream"]:
            async def events():
                try:
                    if chat:
                        for i in range(len(choices)):
                            yield chunk(i, None, first=True)
                    async for i, item in pieces(choices):
                        c = choices[i]
                        if item is not END:
                            if text := c.keep(item):
                                yield chunk(i, text)
                        elif c.job.result is not None and not c.job.error:
                            if rest := c.rest():
                                yield chunk(i, rest)
                            yield chunk(i, None, FINISH.get(c.job.result.finish_reason, "stop"))
                    if error := failed():
                        yield f"data: {json.dumps({'error': {'message': error, 'type': 'server_error'}})}\n\n"
                    elif req["include_usage"]:
                        data = {"id": rid, "object": chunk_obj, "created": created,
                                "model": name, "choices": [], "usage": usage()}
                        yield f"data: {json.dumps(data)}\n\n"
                    yield "data: [DONE]\n\n"
                finally:
                    for c in choices:  # a client that left frees its slots at once
                        c.job.cancelled = True

            return CountedStream(events(), media_type="text/event-stream")
        watcher = asyncio.create_task(watch([c.job for c in choices], request))
        try:
            async for i, item in pieces(choices):
                if item is not END:
                    choices[i].kept.append(choices[i].keep(item))
        finally:
            for c in choices:
                c.job.cancelled = True
            watcher.cancel()
        if error := failed():
            raise ApiError(500, f"generation failed: {error}", kind="server_error")
        out = []
        for i, c in enumerate(choices):
            finish = FINISH.get(c.job.result.finish_reason, "stop")
            reply = c.job.result.reply if c.stop is None else "".join(c.kept) + c.rest()
            out.append({"index": i, "message": {"role": "assistant", "content": reply},
                        "logprobs": None if c.job.top_logprobs is None else {
                            "content": c.whole_logprobs(reply)},
                        "finish_reason": finish} if chat else
                       {"index": i, "text": reply, "logprobs": None, "finish_reason": finish})
        return {"id": rid, "object": obj, "created": created, "model": name,
                "choices": out, "usage": usage()}

    async def watch(jobs: list[Job], request: Request) -> None:
        """A whole (non-streamed) answer's client is checked twice a second: once it has
        gone, the request is cancelled, so its slots free and its tokens stop."""
        while not all(job.cancelled for job in jobs):
            await asyncio.sleep(0.5)
            if await request.is_disconnected():
                for job in jobs:
                    job.cancelled = True

    @app.post("/v1/chat/completions",
              **schema.completion_route(schema.ChatRequest, schema.ChatCompletion))
    async def chat_completions(request: Request) -> Any:
        return await serve(request, "chat")

    @app.post("/v1/completions",
              **schema.completion_route(schema.CompletionRequest, schema.Completion))
    async def completions(request: Request) -> Any:
        return await serve(request, "completions")

    app.state.metrics = metrics
    app.state.busy = lambda: app.state.in_flight > 0 or metrics.queued > 0 or metrics.running > 0
    app.state.draining = False  # set by the first Ctrl+C: new requests get 503
    app.state.in_flight = 0  # requests being answered (a stream until its last byte)
    return app
