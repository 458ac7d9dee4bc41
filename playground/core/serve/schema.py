"""The server's OpenAPI description: what a request may hold and what each answer looks
like, as pydantic models (FastAPI's own). ``requests.parse_request`` is what checks a
body; these models say the same rules to clients and to schemathesis, which tests the
live server against them. Fields beyond these are accepted where OpenAI's are and
refused by name (``requests.REFUSED``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from playground.core.serve.logprobs import MAX_TOP
from playground.core.serve.requests import MAX_N, MAX_STOPS


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class TextPart(_Open):
    type: Literal["text"]
    text: str


class Message(_Open):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]


class StreamOptions(_Open):
    include_usage: bool | None = None


Stop = str | list[str]


class _Sampling(_Open):
    model: str | None = Field(None, description="the served model's id (GET /v1/models)")
    max_tokens: int | None = Field(None, ge=1, description="at most the server's "
                                   "--max-tokens-limit; absent or null: its default")
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=5, description="0 is greedy")
    top_p: float | None = Field(None, gt=0, le=1)
    seed: int | None = Field(None, ge=0, le=2**63 - 1, description="absent: a random one")
    stop: Stop | None = Field(None, description=f"a string or up to {MAX_STOPS}")
    n: int | None = Field(None, ge=1, le=MAX_N)
    stream: bool | None = None
    stream_options: StreamOptions | None = None


class ChatRequest(_Sampling):
    messages: list[Message] = Field(min_length=1)
    logprobs: bool | None = Field(None, description="each token's log-probability under "
                                  "the model's own distribution (before temperature)")
    top_logprobs: int | None = Field(None, ge=0, le=MAX_TOP, description="needs logprobs")


class CompletionRequest(_Sampling):
    prompt: str | list[str] = Field(description="one non-empty string (or a list of one)")


class PromptDetails(_Open):
    cached_tokens: int = Field(description="prompt tokens taken from the prefix cache")


class Usage(_Open):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptDetails | None = None


class ChatMessage(_Open):
    role: Literal["assistant"]
    content: str


class TopLogprob(_Open):
    token: str
    logprob: float = Field(le=0)
    bytes: list[int]


class TokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob]


class Logprobs(_Open):
    content: list[TokenLogprob]


class ChatChoice(_Open):
    index: int
    message: ChatMessage
    logprobs: Logprobs | None = None
    finish_reason: Literal["stop", "length"]


class ChatCompletion(_Open):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage


class CompletionChoice(_Open):
    index: int
    text: str
    logprobs: None = None
    finish_reason: Literal["stop", "length"]


class Completion(_Open):
    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage


class ErrorDetail(_Open):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorBody(_Open):
    error: ErrorDetail


class ModelCard(_Open):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class ModelList(_Open):
    object: Literal["list"]
    data: list[ModelCard]


class Health(_Open):
    status: Literal["ok", "draining"]


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    what = {400: "a field out of range, malformed JSON, or a prompt too long",
            401: "a missing or wrong API key", 404: "no such model", 413: "body over 2 MB",
            415: "a body that is not application/json", 429: "the waiting line is full",
            500: "generation failed", 503: "the server is shutting down"}
    return {c: {"model": ErrorBody, "description": what[c]} for c in codes}


REF = "#/components/schemas/{model}"
# one server-sent event of a stream: its data is a JSON chunk, an error, or [DONE]
SSE_EVENT = {"type": "object", "required": ["data"],
             "properties": {"data": {"type": "string"}, "event": {"type": "string"}}}


def completion_route(request: type[BaseModel], answer: type[BaseModel]) -> dict[str, Any]:
    """FastAPI route keywords: the request body's schema (read by hand, so a body over
    the limit is refused before it is parsed) and every answer it can get."""
    return {
        "response_model": None,
        "openapi_extra": {"requestBody": {"required": True, "content": {"application/json": {
            "schema": {"$ref": REF.format(model=request.__name__)}}}}},
        "responses": {200: {"model": answer, "description": "the completion; with stream: "
                            "server-sent events", "content": {"text/event-stream": {
                                "schema": SSE_EVENT}}},
                      **_errors(400, 401, 404, 413, 415, 429, 500, 503)},
    }


def add_request_schemas(openapi: dict[str, Any], max_tokens_limit: int) -> dict[str, Any]:
    """The request models (and the models they use) into the document's components;
    FastAPI's 422 dropped (a bad field is a 400 here, as OpenAI's)."""
    for path in openapi.get("paths", {}).values():
        for operation in path.values():
            operation.get("responses", {}).pop("422", None)
    schemas = openapi.setdefault("components", {}).setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    for model in (ChatRequest, CompletionRequest):
        doc = model.model_json_schema(ref_template=REF)
        for key in ("max_tokens", "max_completion_tokens"):  # this server's own limit
            for option in doc["properties"][key].get("anyOf", []):
                if option.get("type") == "integer":
                    option["maximum"] = max_tokens_limit
        schemas.update(doc.pop("$defs", {}))
        schemas[model.__name__] = doc
    return openapi


MODEL_ROUTE = {"response_model": None, "responses": {200: {"model": ModelCard}, **_errors(401, 404)}}
MODELS_ROUTE = {"response_model": None, "responses": {200: {"model": ModelList}, **_errors(401)}}
HEALTH_ROUTE = {"response_model": None, "responses": {200: {"model": Health},
                              503: {"model": Health, "description": "draining"}}}
PROMETHEUS_TEXT = {"content": {"text/plain": {"schema": {"type": "string"}}},
                   "description": "Prometheus text"}
METRICS_ROUTE = {"response_model": None, "responses": {200: PROMETHEUS_TEXT, **_errors(401)}}
