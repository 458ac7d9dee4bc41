import time

from playground.core.config import RunConfig
from playground.core.engine import Engine, common_prefix_len
from playground.core.models import load
from playground.core.pipeline import build_engine

HELLO = [{"role": "user", "content": "Hello, how are you today?"}]


def test_streaming_pieces_make_the_reply_and_timeline_matches(tiny_engine):
    engine = tiny_engine()
    engine.eos_ids = set()  # a random model: run to max_new_tokens
    pieces: list[str] = []
    result = engine.chat(HELLO, on_token=pieces.append)
    assert "".join(pieces) == result.reply
    assert len(result.timeline.token_times) == result.metrics.new_tokens == 12
    assert len(result.token_ids) == 12
    assert result.finish_reason == "length"
    times = result.timeline.token_times
    assert all(b >= a for a, b in zip(times, times[1:], strict=False))
    m = result.metrics
    assert m.ttft_ms > 0 and m.decode_tok_s > 0 and m.prefill_tok_s > 0
    assert m.peak_rss_mb > 0 and m.weights_mb > 0
    assert m.prompt_tokens == len(engine.prompt_ids(HELLO))


def test_ttft_and_e2e_agree_with_an_independent_stopwatch(tiny_engine):
    """TTFT against a clock read in the first on_token callback, e2e against one after
    chat returns: both bracket what the engine reports (a few ms of bookkeeping)."""
    engine = tiny_engine()
    engine.eos_ids = set()
    seen: list[float] = []
    start = time.perf_counter()
    result = engine.chat(HELLO, on_token=lambda piece: seen.append(time.perf_counter()))
    stopwatch = time.perf_counter() - start
    m = result.metrics
    first_seen = seen[0] - start
    assert 0 < m.ttft_ms / 1000 <= first_seen < m.ttft_ms / 1000 + 0.02
    last_seen = seen[-1] - start
    assert m.e2e_s <= last_seen < m.e2e_s + 0.02
    assert 0 < m.e2e_s <= stopwatch and stopwatch - m.e2e_s < 0.05
    assert m.new_tokens == len(seen) == engine.config.max_new_tokens


def test_cancel_mid_turn(tiny_engine):
    engine = tiny_engine("max_new_tokens=200")
    engine.eos_ids = set()
    seen: list[str] = []
    result = engine.chat(HELLO, on_token=seen.append, should_stop=lambda: len(seen) >= 3)
    assert result.cancelled and result.finish_reason == "cancelled"
    assert result.metrics.new_tokens == 3


def test_multi_turn_conversation_grows_the_prompt(tiny_engine):
    engine = tiny_engine()
    first = engine.chat(HELLO)
    convo = HELLO + [{"role": "assistant", "content": first.reply},
                     {"role": "user", "content": "And what is the capital of France?"}]
    second = engine.chat(convo)
    assert second.metrics.prompt_tokens > first.metrics.prompt_tokens


def test_greedy_matches_plain_transformers_generate(tiny_dir):
    """The pipeline with quant=none,prune=0 must not change greedy output."""
    import torch

    engine = build_engine(RunConfig.parse(f"model={tiny_dir},max_new_tokens=16"))
    engine.eos_ids = set()
    ours = engine.chat(HELLO).token_ids
    plain = load(str(tiny_dir))
    ids = torch.tensor([engine.prompt_ids(HELLO)])
    out = plain.model.generate(ids, max_new_tokens=16, min_new_tokens=16, do_sample=False)
    assert ours == out[0, ids.shape[1]:].tolist()


def test_seeded_sampling_is_reproducible_and_differs_from_greedy(tiny_engine):
    a = tiny_engine("temperature=1.5,top_p=0.95,seed=7")
    a.eos_ids = set()
    first, second = a.chat(HELLO).token_ids, a.chat(HELLO).token_ids
    assert first == second
    greedy = tiny_engine()
    greedy.eos_ids = set()
    assert greedy.chat(HELLO).token_ids != first


def test_engine_works_on_an_already_loaded_model(tiny_dir):
    loaded = load(str(tiny_dir))
    engine = Engine(loaded.model, loaded.tokenizer, RunConfig(max_new_tokens=4))
    engine.eos_ids = set()
    result = engine.chat(HELLO)
    assert result.metrics.new_tokens == 4 and result.finish_reason == "length"


def test_common_prefix_len():
    assert common_prefix_len([1, 2, 3], [1, 2, 4]) == 2
    assert common_prefix_len([], [1]) == 0


def test_detokenizer_streams_exact_text_decoding_a_short_window_each_token(tiny_dir):
    """Pieces join to the whole decode, multi-byte characters held back until complete
    (the byte-level tokenizer splits them), and each step decodes a few tokens, not
    the whole reply (counted through the tokenizer)."""
    from transformers import AutoTokenizer

    from playground.core.engine import Detokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    text = "Grüße, naïve café — 東京 and more words " * 8
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    lengths = []
    decode = tokenizer.decode

    def counting(tokens, **kwargs):
        lengths.append(len(tokens))
        return decode(tokens, **kwargs)

    tokenizer.decode = counting
    pieces = Detokenizer(tokenizer)
    out = [pieces.piece(ids[: i + 1]) for i in range(len(ids))]
    assert "".join(out) == decode(ids, skip_special_tokens=True)
    assert all("\ufffd" not in p for p in out)
    assert max(lengths) <= 8 < len(ids)


def test_a_prompt_past_the_context_is_refused_before_any_prefill(tiny_engine):
    """The tiny model's context is 1024 tokens: a longer conversation is one clear
    error naming both counts, and no forward pass runs."""
    import pytest

    from playground.core.engine import GenerationError

    engine = tiny_engine("max_new_tokens=100")
    calls: list[int] = []
    step = engine.decoder.logits
    engine.decoder.logits = lambda ids, cache: calls.append(len(ids)) or step(ids, cache)
    long = [{"role": "user", "content": "fox " * 1000}]
    with pytest.raises(GenerationError) as caught:
        engine.chat(long)
    message = str(caught.value)
    assert message.startswith("the conversation (")
    assert "max_new_tokens=100" in message and "context of 1,024 tokens" in message
    assert calls == []
    fits = [{"role": "user", "content": "fox " * 200}]  # still runs after the refusal
    assert engine.chat(fits).metrics.new_tokens > 0


def test_a_long_prompt_is_prefilled_in_chunks_and_stop_works_between_them(tiny_engine):
    from playground.core.decode.decoders import PREFILL_CHUNK

    engine = tiny_engine("max_new_tokens=8,prefix_cache=off")
    engine.eos_ids = set()
    calls: list[int] = []
    step = engine.decoder.logits
    engine.decoder.logits = lambda ids, cache: calls.append(len(ids)) or step(ids, cache)
    prompt = [{"role": "user", "content": "fox " * 400}]
    n = len(engine.prompt_ids(prompt))
    assert n > 2 * PREFILL_CHUNK
    whole = engine.chat(prompt)
    assert calls[: n // PREFILL_CHUNK + 1] == [PREFILL_CHUNK] * (n // PREFILL_CHUNK) + [
        n % PREFILL_CHUNK or PREFILL_CHUNK]
    assert sum(calls[: n // PREFILL_CHUNK + 1]) == n
    # Same greedy reply as one unchunked pass (the plain forward, no chunks).
    calls.clear()
    stopped = engine.chat(prompt, should_stop=lambda: len(calls) >= 1)
    assert stopped.cancelled and stopped.token_ids == [] and calls == [PREFILL_CHUNK]
    assert engine.chat(prompt).token_ids == whole.token_ids


def test_bandwidth_is_read_bandwidth_at_the_runs_thread_count(tiny_engine, monkeypatch,
                                                               tmp_path):
    """The bound divides what one run's threads can read, not a copy (read + write)
    on every core; measured once per thread count."""
    from playground.core import memory, paths

    monkeypatch.setattr(paths, "cache_dir", lambda: tmp_path)
    asked: list[int] = []
    monkeypatch.setattr(memory, "measure_bandwidth_gb_s",
                        lambda threads: asked.append(threads) or 10.0 * threads)
    one = tiny_engine("threads=1")
    again = tiny_engine("threads=1")
    two = tiny_engine("threads=2")
    assert asked == [1, 2]
    assert one.bandwidth_gb_s == again.bandwidth_gb_s == 10.0 and two.bandwidth_gb_s == 20.0
