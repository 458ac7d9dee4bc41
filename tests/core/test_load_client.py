"""The load tester and the endpoint engine as clients: the server's cached prompt tokens
read and shown (never guessed), --unique-prefix keeps a step out of the prefix cache, a
non-stream answer and a refused request say why, a rate step ends at its last arrival."""

import asyncio
import json

import pytest

from playground.core import load

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

LONG = [[{"role": "user", "content": "tell me about the lighthouse keeper and the sea " * 4}]]


def _settings(url, **kw):
    return load.LoadSettings(endpoint=url + "/v1", prompts=LONG, requests=3, max_tokens=3, **kw)


def test_cached_tokens_are_read_and_unique_prefixes_stay_out_of_the_cache(server, capsys):
    from playground import cli

    url, _ = server()
    (warm,) = load.run_load(_settings(url))
    assert warm["errors"] == 0 and warm["prompt_tokens"] > 0
    assert 0 < warm["cached_tokens"] < warm["prompt_tokens"]  # the 2nd and 3rd reuse the 1st
    (cold,) = load.run_load(_settings(url, unique_prefix=True))
    # only the template's opening ("<|im_start|>system\n") is shared
    assert cold["errors"] == 0 and cold["cached_tokens"] <= warm["cached_tokens"] / 5
    assert cli.main(["load", "--endpoint", url + "/v1", "--requests", "2", "--max-tokens", "2",
                     "--unique-prefix", "--timeout", "30"]) == 0
    assert "from the server's cache:" in capsys.readouterr().out


def _mock(handler):
    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


def test_a_non_stream_answer_and_a_refusal_are_failures_that_say_why():
    settings = load.LoadSettings(endpoint="http://x/v1", prompts=LONG, requests=1)

    def whole(_request):
        return httpx.Response(200, json={"choices": [{"message": {"content": "hi"}}]})

    def refused(_request):
        return httpx.Response(400, json={"error": {"message": "max_tokens: too many"}})

    async def ask(handler):
        async with _mock(handler) as client:
            return await load.one_request(client, settings, LONG[0])

    result = asyncio.run(ask(whole))
    assert not result.ok and "not a stream" in result.error and "application/json" in result.error
    result = asyncio.run(ask(refused))
    assert not result.ok and "HTTP 400" in result.error and "max_tokens" in result.error
    step = load.summarize([result], 1.0, {})
    assert step["errors"] == 1 and "max_tokens" in step["error_samples"][0]


def test_a_server_that_does_not_report_cached_tokens_leaves_them_unknown():
    events = [{"choices": [{"delta": {"content": "a"}}]},
              {"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 1}}]
    body = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"

    def stream(_request):
        return httpx.Response(200, text=body, headers={"content-type": "text/event-stream"})

    async def ask():
        async with _mock(stream) as client:
            return await load.one_request(client, load.LoadSettings("http://x/v1", LONG, 1),
                                          LONG[0])

    result = asyncio.run(ask())
    assert result.ok and result.prompt_tokens == 9 and result.cached_tokens is None
    assert load.summarize([result], 1.0, {})["cached_tokens"] is None


def test_the_endpoint_engine_shows_prefill_only_where_the_server_says_what_it_computed(server):
    from playground.core.backends import remote
    from playground.core.config import RunConfig

    url, _ = server()
    engine = remote.build(RunConfig(endpoint=url + "/v1", max_new_tokens=3))
    first = engine.chat(LONG[0])
    again = engine.chat(LONG[0])
    assert first.extra["cached_tokens"] == 0 and first.metrics.prefill_tok_s > 0
    assert 0 < again.extra["cached_tokens"] == again.prefix_reused < again.metrics.prompt_tokens


def test_a_rate_step_ends_at_its_last_arrival(server, monkeypatch):
    url, _ = server()
    gaps = []

    async def gap(seconds):
        gaps.append(seconds)

    monkeypatch.setattr(load, "_arrival_gap", gap)
    (step,) = load.run_load(_settings(url, rates=[0.5], arrivals="constant"))
    assert step["requests"] == 3 and gaps == [2.0, 2.0]  # none after the last arrival
