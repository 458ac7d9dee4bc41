"""playground serve (batching on and off) and playground load, on loopback with the tiny model."""

import json
import threading
import time

import pytest
from conftest import free_port

from playground.core import load
from playground.core.config import RunConfig
from playground.core.pipeline import build_engine

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

HELLO = [{"role": "user", "content": "Hello there"}]


@pytest.mark.parametrize("batching", [True, False])
def test_openai_client_streams_the_engines_greedy_reply(server, tiny_dir, batching):
    openai = pytest.importorskip("openai")
    url, engine = server(batching=batching, chunk=4)  # prompts over several passes
    alone = build_engine(RunConfig(model=str(tiny_dir), max_new_tokens=8))
    alone.eos_ids = set()
    expected = alone.chat(HELLO)
    client = openai.OpenAI(base_url=url + "/v1", api_key="none")
    stream = client.chat.completions.create(model="tiny", messages=HELLO, stream=True,
                                            max_tokens=8, temperature=0,
                                            stream_options={"include_usage": True})
    text, usage = "", None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
        if chunk.usage:
            usage = chunk.usage
    assert text == expected.reply
    assert usage.completion_tokens == len(expected.token_ids) == 8
    whole = client.chat.completions.create(model="tiny", messages=HELLO, max_tokens=8)
    assert whole.choices[0].message.content == expected.reply
    assert whole.choices[0].finish_reason == "length"
    assert [m.id for m in client.models.list().data] == ["tiny"]
    # /v1/completions: plain text, no chat template, streamed and whole
    plain = alone.chat("Once upon a time")
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model="tiny", prompt="Once upon a time", max_tokens=8, stream=True) if c.choices)
    assert streamed == plain.reply != expected.reply
    whole = client.completions.create(model="tiny", prompt=["Once upon a time"], max_tokens=8)
    assert whole.choices[0].text == plain.reply and whole.usage.completion_tokens == 8
    assert whole.usage.prompt_tokens == len(alone.prompt_ids("Once upon a time"))


def test_bad_input_gets_openai_errors_and_the_server_keeps_serving(server):
    url, engine = server(api_key="secret")
    auth = {"Authorization": "Bearer secret"}
    post = lambda body, headers=auth: httpx.post(url + "/v1/chat/completions",  # noqa: E731
                                                 content=body, headers=headers, timeout=30)
    cases = [
        (post("{not json"), 400, None),
        (post(json.dumps({"model": "tiny"})), 400, "messages"),
        (post(json.dumps({"messages": [{"role": "robot", "content": "x"}]})), 400, "messages[0]"),
        (post(json.dumps({"messages": HELLO, "max_tokens": 0})), 400, "max_tokens"),
        (post(json.dumps({"model": "gpt-9", "messages": HELLO})), 404, "model"),
        (post(json.dumps({"messages": [{"role": "user", "content": "word " * 1100}]})), 400,
         "messages"),
        (post(json.dumps({"messages": HELLO}), headers={}), 401, None),
        (httpx.post(url + "/v1/completions", json={"prompt": ["a", "b"]}, headers=auth), 400,
         "prompt"),
        (httpx.post(url + "/v1/completions", json={"prompt": "a", "n": 9}, headers=auth), 400,
         "n"),
    ]
    for response, status, param in cases:
        assert response.status_code == status, response.text
        error = response.json()["error"]
        assert error["message"] and error["param"] == param
    assert "context_length_exceeded" in cases[5][0].text
    good = post(json.dumps({"messages": HELLO, "max_tokens": 3}))
    assert good.status_code == 200 and good.json()["usage"]["completion_tokens"] == 3
    assert httpx.get(url + "/health").json() == {"status": "ok"}
    metrics = httpx.get(url + "/metrics", headers=auth).text
    assert "playground_requests_total 1" in metrics and "playground_ttft_seconds_bucket" in metrics
    server.apps[-1].state.draining = True  # what the first Ctrl+C sets: new work is refused
    late = post(json.dumps({"messages": HELLO}))
    assert late.status_code == 503 and late.headers["retry-after"] == "5"
    assert httpx.get(url + "/health").json() == {"status": "draining"}


@pytest.mark.parametrize("batching", [True, False])
def test_a_client_that_disconnects_frees_the_engine_and_a_full_queue_says_429(server, batching):
    # batching on with one slot: the second request waits in the queue as with batching off
    url, engine = server(max_queue=1, batching=batching, max_batch=1)
    body = {"messages": HELLO, "max_tokens": 1000, "stream": True}
    with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=30) as r:
        assert r.status_code == 200, r.read()
        lines = (line for line in r.iter_lines() if line)
        assert next(lines).startswith("data:") and next(lines).startswith("data:")
        # the engine is busy with this request; one more waits, the next is refused
        waiting = threading.Thread(target=lambda: httpx.post(
            url + "/v1/chat/completions", json={"messages": HELLO, "max_tokens": 2}, timeout=60))
        waiting.start()
        for _ in range(100):
            if "playground_queue_depth 1" in httpx.get(url + "/metrics").text:
                break
            time.sleep(0.02)
        refused = httpx.post(url + "/v1/chat/completions", json={"messages": HELLO}, timeout=30)
        assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
    started = time.perf_counter()  # the client left mid-stream: its 1000 tokens stop now
    waiting.join(timeout=30)
    assert not waiting.is_alive() and time.perf_counter() - started < 10
    done = httpx.post(url + "/v1/chat/completions", json={"messages": HELLO, "max_tokens": 2},
                      timeout=30)
    assert done.status_code == 200


def _ask(base, prompt, results, i, temperature=0.0):
    """A streamed reply of 24 tokens into results[i] (greedy unless told)."""
    body = {"messages": [{"role": "user", "content": prompt}], "max_tokens": 24,
            "temperature": temperature, "seed": 42 + i, "stream": True}
    text = ""
    with httpx.stream("POST", base + "/v1/chat/completions", json=body, timeout=60) as r:
        for line in r.iter_lines():
            if line.startswith("data: {"):
                for choice in json.loads(line[6:])["choices"]:
                    text += choice["delta"].get("content") or ""
    results[i] = text


def _all_at_once(base, prompts, temperature=0.0):
    together = {}
    threads = [threading.Thread(target=_ask, args=(base, p, together, i, temperature))
               for i, p in enumerate(prompts)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return together


def test_batching_off_is_one_slot_of_the_same_scheduler(server):
    """Requests at once on --batching off: one runs at a time, each with its own
    sampling, the replies those of the batched server, the engine's config untouched."""
    url, engine = server(batching=False)
    before = engine.config
    prompts = ["Hello there", "Name a colour", "Count to three"]
    together = _all_at_once(url, prompts, temperature=0.0)
    assert len(together) == 3
    metrics = httpx.get(url + "/metrics", timeout=10).text
    assert "\nplayground_running_batch_size_max 1\n" in metrics
    assert engine.config is before  # never swapped per request
    again = _chat(url, messages=[{"role": "user", "content": "Hello there"}], max_tokens=2)
    # the batch scheduler's prefix store serves batching off too (one code path)
    assert again.json()["usage"]["prompt_tokens_details"]["cached_tokens"] > 0
    batched_url, _ = server(batching=True)
    assert _all_at_once(batched_url, prompts) == together


def test_a_qwen2_model_replies_alike_alone_and_in_a_batch_of_8(server, tmp_path):
    """q/k/v biases inside the batched C pass: eight requests at once on a Qwen2 model get
    the replies each gets alone, greedy and sampled (each request samples from its own
    generator, seeded by the request; sampling also makes the tiny random model's replies differ, so a
    row answered with another row's logits would show)."""
    import torch
    from safetensors.torch import load_file, save_file

    from playground.core.quant import weight_quant
    from tests.conftest import save_tiny

    if weight_quant.backend() != "native":
        pytest.skip("native kernels unavailable here")
    folder = save_tiny(tmp_path / "qwen2", arch="qwen2")
    weights = load_file(folder / "model.safetensors")
    generator = torch.Generator().manual_seed(1)
    for name, t in weights.items():
        if name.endswith("proj.bias"):  # small enough that the prompt still matters
            weights[name] = torch.randn(t.shape, generator=generator) * 0.05
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    url, engine = server(spec="quant=int8-weight", chunk=6, model=folder, prefix_cache=False)
    assert "qwen2, one native call" in engine.info["decode_step"]
    prompts = [f"Question {i}: {w} and the sea?" for i, w in enumerate(
        ("why", "how", "when", "where", "who", "what", "which", "whose"))]
    for temperature in (0.0, 1.0):
        alone = {}
        for i, prompt in enumerate(prompts):
            _ask(url, prompt, alone, i, temperature)
        assert _all_at_once(url, prompts, temperature) == alone
    assert len(set(alone.values())) > 1


def test_batched_requests_get_the_replies_they_get_alone(server):
    """Batching on with the native step: four different prompts at once, their prompts fed
    in chunks beside the others' decoding and their shared beginnings copied from earlier
    requests, reply exactly as each does alone on a server that reuses nothing."""
    from playground.core.quant import weight_quant

    if weight_quant.backend() != "native":
        pytest.skip("native kernels unavailable here")
    url, engine = server(spec="quant=int8-weight", chunk=6)
    plain_url, _ = server(spec="quant=int8-weight", chunk=6, prefix_cache=False)
    prompts = ["Hello there", "Name a colour and then another one, please",
               "Why is the sky blue?", "One more question about the sea and the wind"]

    alone = {}
    for i, prompt in enumerate(prompts):
        _ask(plain_url, prompt, alone, i)
    _ask(url, prompts[0], {}, 0)  # the store now holds the template's beginning and prompt 0
    together = _all_at_once(url, prompts)
    assert together == alone and all(alone.values())
    metrics = httpx.get(url + "/metrics").text
    peak = int(metrics.split("\nplayground_running_batch_size_max ")[1].split()[0])
    assert peak >= 2  # they did share passes
    hits = int(metrics.split("\nplayground_prefix_cache_hits_total ")[1].split()[0])
    assert hits >= 4


def test_wide_passes_in_parts_a_thread_each_give_the_replies_of_one_thread(server, monkeypatch):
    """threads auto with the native step: a wide pass may run its rows in parts of whole
    sequences, one thread a part (thread_choice.Way(2, 2)); four prompts at once get the
    replies each gets alone from a server on one thread, and some passes did run in parts."""
    from playground.core.quant import weight_quant
    from playground.core.serve import batching

    if weight_quant.backend() != "native":
        pytest.skip("native kernels unavailable here")
    split_passes = []
    real = batching.batched_rows

    def recording(engine):
        rows = real(engine)

        def rows_(tokens, positions, seqs, caches, out, split=0):
            if split and rows.parts(seqs, out, split):
                split_passes.append(len(tokens))
            return rows(tokens, positions, seqs, caches, out, split=split)
        rows_.thread_invariant, rows_.parts = True, rows.parts
        return rows_

    monkeypatch.setattr(batching, "batched_rows", recording)
    plain_url, _ = server(spec="quant=int8-weight,threads=1", chunk=6, prefix_cache=False)
    url, _ = server(spec="quant=int8-weight,threads=1", chunk=6, prefix_cache=False,
                    wide_threads=2)
    prompts = ["Hello there", "Name a colour", "Why is the sky blue?", "One more question"]
    alone = {}
    for i, prompt in enumerate(prompts):
        _ask(plain_url, prompt, alone, i)
    split_passes.clear()
    for _ in range(3):
        assert _all_at_once(url, prompts) == alone
    assert split_passes and min(split_passes) >= 4
    assert "playground_wide_pass_parts " in httpx.get(url + "/metrics").text


def test_load_against_the_local_server_gives_plausible_steps(server, tmp_path):
    from playground import cli

    url, _engine = server()
    out = tmp_path / "load.json"
    prompts = tmp_path / "p.txt"
    prompts.write_text("Hello there\nName a colour\n")
    code = cli.main(["load", "--endpoint", url + "/v1", "--concurrency", "1,2", "--requests", "4",
                     "--prompts", str(prompts), "--max-tokens", "6", "--goodput", "ttft_ms:60000",
                     "--json", str(out), "--csv", str(tmp_path / "load.csv"), "--label", "tiny"])
    assert code == 0
    code = cli.main(["load", "--endpoint", url + "/v1", "--concurrency", "2", "--requests", "2",
                     "--prompts", str(prompts), "--max-tokens", "4", "--plot",
                     str(tmp_path / "p.svg"), "--compare-with", str(out)])
    svg = (tmp_path / "p.svg").read_text()
    assert code == 0 and svg.startswith("<svg") and ">tiny</text>" in svg and ">c2</text>" in svg
    steps = json.loads(out.read_text())["load"]["steps"]
    assert [s["concurrency"] for s in steps] == [1, 2]
    for s in steps:
        assert s["requests"] == 4 and s["errors"] == 0 and s["goodput"] == 1.0
        assert 0 < s["ttft_ms"]["p50"] <= s["ttft_ms"]["p99"] and s["output_tok_s"] > 0
        assert s["itl_ms"]["p50"] > 0 and s["e2e_s"]["p50"] * 1000 > s["ttft_ms"]["p50"]
    assert len((tmp_path / "load.csv").read_text().splitlines()) == 3


def test_ctrl_c_lets_running_streams_finish_then_stops(tiny_dir):
    import os
    import signal
    import subprocess
    import sys

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "playground", "serve", "--config",
                               f"model={tiny_dir}", "--port", str(port)],
                              stderr=subprocess.PIPE, text=True, env={**os.environ})
    try:
        for _ in range(600):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        body = {"messages": HELLO, "max_tokens": 300, "stream": True}
        lines = []
        try:
            with httpx.stream("POST", f"http://127.0.0.1:{port}/v1/chat/completions", json=body,
                              timeout=60) as r:
                for line in r.iter_lines():
                    if not line:
                        continue  # (a blank separator must not send a second Ctrl+C:
                    lines.append(line)  # that one means "stop now" and cuts the stream)
                    if len(lines) == 3:
                        server.send_signal(signal.SIGINT)  # mid-stream, once
        except httpx.HTTPError as exc:
            server.kill()
            raise AssertionError(f"{exc}: {server.stderr.read()[-500:]}") from exc
        assert server.wait(timeout=60) == 0
    finally:
        server.kill()
    assert lines[-1] == "data: [DONE]"
    assert '"finish_reason": "length"' in lines[-2]  # all 300 tokens came, not cut off
    assert "stopped: 1 requests served" in server.stderr.read()


def test_load_refuses_to_run_unbounded_or_to_plot_what_it_cannot(capsys):
    from playground import cli

    assert cli.main(["load", "--endpoint", "http://127.0.0.1:9/v1"]) == 2
    assert "--requests" in capsys.readouterr().err
    assert cli.main(["load", "--endpoint", "http://127.0.0.1:9/v1", "--requests", "1",
                     "--plot", "x.png"]) == 2
    assert "must end in .svg" in capsys.readouterr().err


def test_multi_token_chunks_split_their_gap_and_slos_count():
    assert load.tokens_per_chunk(["a", "bb", "c"], 3) == [1, 1, 1]
    assert load.tokens_per_chunk(["a", "bbbbbbb", "c"], 12) == [2, 8, 2]  # by text share
    assert sum(load.tokens_per_chunk(["ab", "cd", "e"], 7)) == 7
    assert load.chunk_itls([0.0, 0.1, 0.4], [1, 1, 3]) == pytest.approx([0.1, 0.1, 0.1, 0.1])
    ok = load.RequestResult(True, ttft_s=0.2, itl_s=[0.05], e2e_s=0.5, output_tokens=4)
    assert ok.tpot_s == pytest.approx(0.1)
    assert load.meets_slo(ok, {"ttft_ms": 250, "tpot_ms": 100})
    assert not load.meets_slo(ok, {"ttft_ms": 150})
    assert not load.meets_slo(load.RequestResult(False, "boom"), {})
    assert load.parse_slo("ttft_ms:500,tpot_ms:100") == {"ttft_ms": 500.0, "tpot_ms": 100.0}
    with pytest.raises(ValueError, match="allowed: ttft_ms"):
        load.parse_slo("latency:5")


def _chat(url, headers=None, **body):
    body.setdefault("messages", HELLO)
    return httpx.post(url + "/v1/chat/completions", json=body, headers=headers, timeout=60)


@pytest.mark.parametrize("field,value", [
    ("n", 0), ("n", 9), ("n", 1.5), ("logprobs", "yes"), ("top_logprobs", 3),
    ("top_logprobs", 21),
    ("tools", [{"type": "function"}]),
    ("response_format", {"type": "json_object"}), ("frequency_penalty", 0.5),
    ("presence_penalty", 1), ("logit_bias", {"5": 10}), ("seed", -1), ("top_p", 0),
    ("stop", ["a", "b", "c", "d", "e"]), ("stop", [""]), ("temperature", "hot")])
def test_a_field_that_cannot_be_honoured_is_refused_by_name(server, field, value):
    url, _ = server()
    response = _chat(url, **{field: value})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == field


def test_sampling_fields_are_honoured(server):
    """seed: same seed same text, other seeds differ, no seed differs between requests;
    top_p near 0 is greedy; max_tokens null is the server's default; stop ends the reply
    before the stop string, streamed or whole."""
    url, engine = server(batching=False)
    engine.eos_ids = set()

    def text(**body):
        reply = _chat(url, max_tokens=16, **body)
        assert reply.status_code == 200, reply.text
        return reply.json()["choices"][0]["message"]["content"]

    same = {text(temperature=1.0, seed=7) for _ in range(2)}
    assert len(same) == 1
    assert len({text(temperature=1.0, seed=s) for s in (1, 2, 3)}) > 1
    assert len({text(temperature=1.0) for _ in range(3)}) > 1
    greedy = text(temperature=0)
    assert text(temperature=1.0, top_p=1e-9, seed=5) == greedy
    whole = _chat(url, max_tokens=None).json()
    assert whole["usage"]["completion_tokens"] == engine.config.max_new_tokens
    cut = greedy[len(greedy) // 2: len(greedy) // 2 + 2]
    assert cut and cut in greedy
    stopped = _chat(url, max_tokens=16, stop=cut).json()["choices"][0]
    assert stopped["message"]["content"] == greedy[: greedy.index(cut)]
    assert stopped["finish_reason"] == "stop"
    streamed = ""
    body = {"messages": HELLO, "max_tokens": 16, "stop": [cut, "zzzz"], "stream": True}
    with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=60) as r:
        for line in r.iter_lines():
            if line.startswith("data: {"):
                for choice in json.loads(line[6:])["choices"]:
                    streamed += choice["delta"].get("content") or ""
    assert streamed == greedy[: greedy.index(cut)]


@pytest.mark.parametrize("batching", [True, False])
def test_n_choices_through_the_official_client(server, batching):
    """n sequences, each its own seed (seed, seed + 1, ...): sampled choices differ and
    repeat with the same seed, greedy ones equal the single reply; streamed, every index
    gets its text and its finish; usage counts the prompt once and every choice's tokens."""
    openai = pytest.importorskip("openai")
    url, engine = server(batching=batching)
    engine.eos_ids = set()
    client = openai.OpenAI(base_url=url + "/v1", api_key="none")

    def ask(**kw):
        return client.chat.completions.create(model="tiny", messages=HELLO, max_tokens=8, **kw)

    sampled = ask(n=3, temperature=1.0, seed=11)
    assert [c.index for c in sampled.choices] == [0, 1, 2]
    texts = [c.message.content for c in sampled.choices]
    assert len(set(texts)) > 1
    assert [c.message.content for c in ask(n=3, temperature=1.0, seed=11).choices] == texts
    assert ask(temperature=1.0, seed=12).choices[0].message.content == texts[1]
    assert sampled.usage.completion_tokens == 24
    assert sampled.usage.prompt_tokens == ask().usage.prompt_tokens
    single = ask(temperature=0).choices[0].message.content
    assert [c.message.content for c in ask(n=2, temperature=0).choices] == [single, single]
    streamed, finishes = {}, {}
    for chunk in ask(n=3, temperature=1.0, seed=11, stream=True):
        for c in chunk.choices:
            streamed[c.index] = streamed.get(c.index, "") + (c.delta.content or "")
            if c.finish_reason:
                finishes[c.index] = c.finish_reason
    assert [streamed[i] for i in range(3)] == texts
    assert finishes == {0: "length", 1: "length", 2: "length"}


@pytest.mark.parametrize("batching", [True, False])
def test_logprobs_through_the_official_client(server, batching):
    """Each token's log-probability and its top alternatives, whole and streamed: greedy
    tokens are the most likely ones, one entry a token, the same whole and streamed;
    /v1/completions refuses logprobs by name."""
    openai = pytest.importorskip("openai")
    url, engine = server(batching=batching)
    engine.eos_ids = set()
    client = openai.OpenAI(base_url=url + "/v1", api_key="none")
    whole = client.chat.completions.create(model="tiny", messages=HELLO, max_tokens=6,
                                           temperature=0, logprobs=True, top_logprobs=3)
    content = whole.choices[0].logprobs.content
    assert len(content) == whole.usage.completion_tokens == 6
    for entry in content:
        assert len(entry.top_logprobs) == 3 and entry.logprob <= 0
        assert entry.top_logprobs[0].logprob == entry.logprob  # greedy: the top token
        assert [t.logprob for t in entry.top_logprobs] == sorted(
            (t.logprob for t in entry.top_logprobs), reverse=True)
        assert entry.bytes == list(entry.token.encode())
    plain = client.chat.completions.create(model="tiny", messages=HELLO, max_tokens=6)
    assert plain.choices[0].logprobs is None
    streamed = []
    for chunk in client.chat.completions.create(model="tiny", messages=HELLO, max_tokens=6,
                                                temperature=0, logprobs=True, top_logprobs=3,
                                                stream=True):
        for c in chunk.choices:
            streamed += (c.logprobs.content or []) if c.logprobs else []
    # the same tokens; the same log-probabilities up to float32's last bits: this float
    # model's later requests start from the prefix store, and torch's float matmuls over a
    # pass of another shape differed in the last bit on an AVX-512 Xeon (5e-7 in 5.04)
    assert [e.token for e in streamed] == [e.token for e in content]
    assert [e.logprob for e in streamed] == pytest.approx([e.logprob for e in content],
                                                          rel=1e-6, abs=1e-6)
    for field, value in (("logprobs", 2), ("logprobs", 0), ("top_logprobs", 1)):
        refused = httpx.post(url + "/v1/completions", json={"prompt": "a", field: value},
                             timeout=30)
        assert refused.status_code == 400 and refused.json()["error"]["param"] == field


def same_entries(a: list, b: list) -> bool:
    """Logprob entries of the same tokens: the tiny float model's rows may differ in their
    last bits between requests (the matrix library picks its kernel by the number of rows:
    a prompt in one chunk, or mostly from the prefix store; lean_rows.py), so logprobs
    are compared to 1e-5."""
    def flat(entries):
        return [(e["token"], e["bytes"], [t["token"] for t in e["top_logprobs"]]) for e in entries]

    def values(entries):
        return [v for e in entries for v in [e["logprob"], *(t["logprob"] for t in e["top_logprobs"])]]

    return flat(a) == flat(b) and values(a) == pytest.approx(values(b), rel=1e-5, abs=1e-6)


def test_streamed_logprobs_come_with_their_text_and_a_stop_strings_tokens_go(server):
    """Each streamed chunk carries the entries of the tokens whose text it has sent, never
    one ahead of its text (the scheduler computes entries before the text); each entry's
    bytes are its token's own; with a stop string, the tokens from the stop on are not
    given, whole or streamed."""
    url, engine = server(batching=True)
    engine.eos_ids = set()
    body = {"messages": HELLO, "max_tokens": 16, "temperature": 1.0, "seed": 3,
            "logprobs": True, "top_logprobs": 1}  # seeded: varied text, the same each time
    whole = _chat(url, **body).json()["choices"][0]
    entries = whole["logprobs"]["content"]
    assert len(entries) == 16

    from transformers.convert_slow_tokenizer import bytes_to_unicode

    from playground.core.engine import Detokenizer

    table = bytes_to_unicode()

    def starts(entries):
        """Where each token's text begins, as the server's detokenizer gives its pieces
        (a partial character waits): the tokens read back from their bytes."""
        tokenizer, out, ids, chars = engine.tokenizer, [], [], 0
        pieces = Detokenizer(tokenizer)
        for e in entries:
            out.append(chars)
            ids.append(tokenizer.convert_tokens_to_ids("".join(table[b] for b in e["bytes"])))
            chars += len(pieces.piece(ids))
        return out

    def streamed(**extra):
        text, given = "", []
        with httpx.stream("POST", url + "/v1/chat/completions", timeout=60,
                          json={**body, **extra, "stream": True}) as r:
            for line in r.iter_lines():
                if line.startswith("data: {"):
                    for c in json.loads(line[6:])["choices"]:
                        text += c["delta"].get("content") or ""
                        given += (c.get("logprobs") or {}).get("content") or []
                        ahead = [s for s in starts(given) if s >= len(text)]
                        assert not ahead or c["finish_reason"], f"entries ahead: {ahead}"
        return text, given

    text, given = streamed()
    assert text == whole["message"]["content"]
    assert same_entries(given, entries)
    cut = text[8:10]
    assert cut.strip() and text.index(cut) == 8
    stopped = _chat(url, **body, stop=[cut]).json()["choices"][0]
    assert stopped["message"]["content"] == text[:8]
    kept = stopped["logprobs"]["content"]
    assert same_entries(kept, entries[: len(kept)]) and max(starts(kept)) < 8 <= starts(entries)[len(kept)]
    stopped_text, given = streamed(stop=[cut])
    assert stopped_text == text[:8] and same_entries(given, kept)


def test_n_choices_compute_their_prompt_once(server):
    """n = 3: the first choice computes the prompt, the other two wait for it and take it
    from the prefix store (each computes only its last token), and the sampled replies
    are what they were (each its own seed)."""
    url, _ = server(prefix_cache_mb=8)
    long = [{"role": "user", "content": "tell me about the lighthouse keeper " * 6}]

    def reused():
        text = httpx.get(url + "/metrics", timeout=10).text
        return int(text.split("\nplayground_prefix_cache_tokens_total ")[1].split()[0])

    before = reused()
    answer = _chat(url, messages=long, n=3, max_tokens=3, temperature=1.0, seed=5).json()
    prompt = answer["usage"]["prompt_tokens"]
    assert prompt > 40 and len(answer["choices"]) == 3
    assert reused() - before == 2 * (prompt - 1)
    alone = [_chat(url, messages=long, max_tokens=3, temperature=1.0, seed=5 + i).json()
             ["choices"][0]["message"]["content"] for i in range(3)]
    assert [c["message"]["content"] for c in answer["choices"]] == alone


def test_usage_says_which_prompt_tokens_came_from_the_prefix_cache(server):
    """usage.prompt_tokens_details.cached_tokens: 0 the first time, the shared prefix the
    second (and the same reply); /metrics shows the store's bytes and its budget."""
    url, _ = server(prefix_cache_mb=3)
    long = [{"role": "user", "content": "tell me about the lighthouse keeper " * 6}]
    first = _chat(url, messages=long, max_tokens=4).json()
    again = _chat(url, messages=long, max_tokens=4).json()
    assert first["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
    cached = again["usage"]["prompt_tokens_details"]["cached_tokens"]
    assert 0 < cached < again["usage"]["prompt_tokens"]
    assert again["choices"][0]["message"] == first["choices"][0]["message"]
    metrics = httpx.get(url + "/metrics", timeout=10).text
    assert f"playground_prefix_cache_budget_bytes {3 * 2**20}" in metrics
    stored = int(metrics.split("\nplayground_prefix_cache_bytes ")[1].split()[0])
    assert 0 < stored <= 3 * 2**20


def test_openai_message_forms_paths_and_content_types(server):
    """developer role and content-part arrays are served; unknown paths and methods get
    OpenAI's error shape; GET /v1/models/{id}; a text/plain body (what any web page can
    send) is refused; with a key, /metrics and the API description need it too."""
    url, _ = server(api_key="k")
    auth = {"Authorization": "Bearer k"}
    parts = [{"role": "developer", "content": "Be brief."},
             {"role": "user", "content": [{"type": "text", "text": "Hello, "},
                                          {"type": "text", "text": "there"}]}]
    assert _chat(url, auth, messages=parts, max_tokens=2).status_code == 200
    missing = httpx.get(url + "/v1/nothing", headers=auth)
    assert missing.status_code == 404 and "no such path" in missing.json()["error"]["message"]
    wrong = httpx.get(url + "/v1/chat/completions", headers=auth)
    assert wrong.status_code == 405 and wrong.json()["error"]["message"]
    assert httpx.get(url + "/v1/models/tiny", headers=auth).json()["id"] == "tiny"
    assert httpx.get(url + "/v1/models/other", headers=auth).status_code == 404
    plain = httpx.post(url + "/v1/chat/completions", headers={**auth, "Content-Type": "text/plain"},
                       content=json.dumps({"messages": HELLO}))
    assert plain.status_code == 415
    for path in ("/metrics", "/openapi.json", "/docs"):
        assert httpx.get(url + path).status_code in (401, 404), path
    assert httpx.get(url + "/openapi.json", headers=auth).json()["paths"]
    assert httpx.get(url + "/metrics", headers=auth).status_code == 200


def test_a_loopback_server_refuses_other_host_names(tiny_dir):
    """DNS rebinding: a page served from evil.example resolving to 127.0.0.1 sends
    Host: evil.example; the loopback server answers only its own names."""
    from fastapi.testclient import TestClient

    from playground.core.config import RunConfig
    from playground.core.pipeline import build_engine
    from playground.core.serve.app import create_app

    engine = build_engine(RunConfig(model=str(tiny_dir), max_new_tokens=2))
    app = create_app(engine, trusted_hosts=["127.0.0.1", "localhost"])
    with TestClient(app, base_url="http://127.0.0.1:8000") as client:
        assert client.get("/health").status_code == 200
        assert client.get("/health", headers={"Host": "evil.example"}).status_code == 400


def test_bodies_and_clients_that_would_pin_the_server(server, monkeypatch):
    """Too large a body is 413 before it is read; a prompt that cannot fit is refused
    without tokenizing it; a client that sends half a body is not counted in flight (a
    drain would wait on it); a whole answer whose client left stops generating."""
    import socket
    import time

    url, engine = server(batching=False)
    engine.eos_ids = set()
    app = server.apps[-1]
    big = httpx.post(url + "/v1/chat/completions", timeout=30,
                     content=b'{"messages": [' + b" " * (3 * 2**20) + b"]}",
                     headers={"Content-Type": "application/json"})
    assert big.status_code == 413
    calls = []
    monkeypatch.setattr(engine, "prompt_ids", lambda p: calls.append(p) or [1])
    huge = _chat(url, messages=[{"role": "user", "content": "x" * 1_500_000}])
    assert huge.status_code == 400 and "cannot fit" in huge.text and not calls
    monkeypatch.undo()
    host, port = url.split("//")[1].split(":")
    half = socket.create_connection((host, int(port)))
    half.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
    try:
        connections = server.servers[-1].server_state.connections

        def waiting_for_body() -> bool:  # the app is awaiting the rest of the body
            cycles = [getattr(c, "cycle", None) for c in list(connections)]
            return any(c is not None and c.message_event._waiters for c in cycles)

        deadline = time.monotonic() + 30
        while not waiting_for_body():
            assert time.monotonic() < deadline, "the app never started reading the body"
            time.sleep(0.01)  # polling the server's own state, not waiting a fixed time
        assert app.state.in_flight == 0 and not app.state.busy()
    finally:
        half.close()
    logits = engine.decoder.logits

    def slow(*args):  # 990 tokens now take 5 s or more: the client leaves long before
        time.sleep(0.005)
        return logits(*args)

    monkeypatch.setattr(engine.decoder, "logits", slow)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(url + "/v1/chat/completions", json={"messages": HELLO, "max_tokens": 990},
                   timeout=httpx.Timeout(30, read=0.1))
    assert _chat(url, max_tokens=2).status_code == 200  # one at a time: after the other
    left = next(j for j in app.state.metrics.recent if j.max_tokens == 990)
    assert left.result.finish_reason == "cancelled" and left.tokens < 990


def test_the_prefix_store_is_bounded_by_bytes():
    import torch

    from playground.core.serve.prefix_store import PrefixStore

    class Layer:
        def __init__(self, n):
            self.keys = self.values = torch.zeros(1, 2, n, 8)

    class Cache:
        def __init__(self, n):
            self.layers = [Layer(n), Layer(n)]

    per_token = 2 * 2 * (2 * 8 * 4)  # layers x (keys + values) x heads x dims x float32
    store = PrefixStore(max_bytes=100 * per_token)
    for start in range(5):
        ids = list(range(start * 100, start * 100 + 40))
        store.store(ids, Cache(40))
        assert store.bytes <= 100 * per_token
    assert len(store._entries) == 2 and store.bytes == 80 * per_token
    store.store(list(range(200)), Cache(200))  # larger than the whole budget: not kept
    assert len(store._entries) == 2


def test_a_server_on_auto_threads_leaves_a_core_for_its_event_loop(monkeypatch):
    from playground.core.config import RunConfig
    from playground.core.optimize.device import leave_a_core

    monkeypatch.setattr("os.cpu_count", lambda: 8)
    assert leave_a_core(RunConfig()).threads == 7
    assert leave_a_core(RunConfig(threads=3)).threads == 3
    monkeypatch.setattr("os.cpu_count", lambda: 1)
    assert leave_a_core(RunConfig()).threads == 1


def test_passes_of_many_rows_run_on_every_core_when_threads_is_auto(server, monkeypatch):
    """threads auto: a server's one-row passes keep cores − 1 compute threads, a pass of
    WIDE_ROWS rows or more (a prompt chunk, a batch) is timed on every core and on the
    narrow count, the first on every core (thread_choice.py); threads set by the user is
    kept for every pass. The reply is the one the narrow server gives."""
    import torch

    from playground.core.config import RunConfig
    from playground.core.optimize.device import WIDE_ROWS, wide_pass_threads
    from playground.core.serve import batching

    monkeypatch.setattr("os.cpu_count", lambda: 8)
    assert wide_pass_threads(RunConfig()) == 8
    assert wide_pass_threads(RunConfig(threads=3)) == 0
    monkeypatch.undo()

    seen: list[tuple[int, int]] = []
    real = batching.batched_rows

    def recording(engine):
        rows = real(engine)

        def rows_(tokens, *rest):
            seen.append((len(tokens), torch.get_num_threads()))
            return rows(tokens, *rest)
        return rows_

    monkeypatch.setattr(batching, "batched_rows", recording)
    long = [{"role": "user", "content": "count the boats in the harbour " * 3}]
    replies = []
    for wide in (0, 2):
        url, _ = server(spec="threads=1", wide_threads=wide)
        seen.clear()
        replies.append(_chat(url, messages=long, max_tokens=6).json()["choices"][0])
        assert any(n >= WIDE_ROWS for n, _ in seen) and any(n == 1 for n, _ in seen)
        assert all(t in ((wide, 1) if wide and n >= WIDE_ROWS else (1,)) for n, t in seen), seen
        assert next(t for n, t in seen if n >= WIDE_ROWS) == (wide or 1), seen
        metrics = httpx.get(url + "/metrics").text
        assert any(f"playground_wide_pass_threads {t}\n" in metrics for t in {wide or 1, 1})
    assert replies[0] == replies[1]


def test_the_largest_seed_is_served_and_the_server_serves_on(server):
    """OpenAI's seeds are int64: the largest one is served (folded into the generator's
    32 bits), and the next request is answered (a seed above 2^32 - 1 once killed the
    scheduler's thread: every later request hung)."""
    url, _ = server()
    for seed in (2**63 - 1, 2**32, 7):
        reply = _chat(url, max_tokens=2, temperature=1.0, seed=seed)
        assert reply.status_code == 200, reply.text
    assert _chat(url, max_tokens=2, temperature=1.0, seed=2**32 + 7).json()["choices"][0] == \
        _chat(url, max_tokens=2, temperature=1.0, seed=7).json()["choices"][0]


def test_serve_refuses_a_draft_config_before_loading_it(capsys):
    from playground import cli

    assert cli.main(["serve", "--config", "draft=distilled"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "draft=distilled" in err and "without draft=" in err


def test_n_above_the_queue_is_a_400_not_a_429_retried_forever(server):
    url, _ = server(max_queue=2)
    response = _chat(url, n=3, max_tokens=2)
    assert response.status_code == 400 and response.json()["error"]["param"] == "n"


def test_many_long_prompts_keep_the_process_under_the_prefix_budget(server, tmp_path):
    """64 distinct ~900-token prompts on a model whose KV is 8 KB a token: kept whole,
    the prefix store would hold ~460 MB. The process's RSS (measured, after a collect
    and a trim) grows by no more than the 16 MB budget plus the slots' working memory,
    and /metrics says the store is within its budget."""
    import random

    import psutil
    from conftest import save_tiny

    from playground.core import memory

    wide = save_tiny(tmp_path / "wide", head_dim=256)  # 2 layers x K,V x 2 heads x 256 x 4 B
    url, engine = server(model=wide, prefix_cache_mb=16, max_batch=2)
    words = [f"w{i}" for i in range(300)]

    def prompt(seed: int) -> list[dict[str, str]]:
        rng = random.Random(seed)
        return [{"role": "user", "content": " ".join(rng.choice(words) for _ in range(190))}]

    first = _chat(url, messages=prompt(0), max_tokens=1).json()
    assert "usage" in first, first
    tokens = first["usage"]["prompt_tokens"]
    assert 700 < tokens < 1000
    memory.release()
    before = psutil.Process().memory_info().rss
    for seed in range(1, 64):
        assert _chat(url, messages=prompt(seed), max_tokens=1).status_code == 200
    memory.release()
    grown_mb = (psutil.Process().memory_info().rss - before) / 2**20
    unbounded_mb = 64 * tokens * 8192 / 2**20
    assert unbounded_mb > 400 and grown_mb < 16 + 100, (grown_mb, unbounded_mb)
    metrics = httpx.get(url + "/metrics", timeout=10).text
    stored = int(metrics.split("\nplayground_prefix_cache_bytes ")[1].split()[0])
    assert 0 < stored <= 16 * 2**20
