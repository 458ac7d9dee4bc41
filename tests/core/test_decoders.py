"""The decode paths behind one interface: one loop, the same greedy tokens, and a loop
that stops never computes past its last token."""

import copy
import threading

from playground.core.decode.decoders import (
    AssistedDecoder,
    ForwardDecoder,
    LeanDecoder,
    NoCacheDecoder,
)

HELLO = [{"role": "user", "content": "Hello, how are you today?"}]


def test_every_decode_path_gives_the_same_greedy_reply(tiny_engine):
    engine = tiny_engine("max_new_tokens=16,prefix_cache=off")
    engine.eos_ids = set()  # all 16 tokens, whatever the random model says
    assert isinstance(engine.decoder, LeanDecoder)
    lean = engine.chat(HELLO).token_ids
    engine.decoder = ForwardDecoder(engine.model, engine._dynamic_cache, "cpu", "forward")
    forward = engine.chat(HELLO).token_ids
    engine.decoder = NoCacheDecoder(engine.model, "cpu")
    no_cache = engine.chat(HELLO).token_ids
    engine.decoder = AssistedDecoder(engine.model, copy.deepcopy(engine.model),
                                     engine.tokenizer.pad_token_id, "cpu")
    assisted = engine.chat(HELLO)
    assert len(lean) == 16
    assert lean == forward == no_cache == assisted.token_ids
    # the same model as its own draft: every drafted token is accepted
    assert assisted.extra["draft_acceptance"] == 1.0
    assert len(set(assisted.timeline.token_times)) < 16  # accepted runs share a stamp


def test_the_loop_never_steps_past_the_last_token(tiny_engine):
    """max_new_tokens=5: one prefill and four one-token steps; the fifth token is never
    fed back (the prefix cache knows it is not in the cache)."""
    engine = tiny_engine("max_new_tokens=5,prefix_cache=on")
    engine.eos_ids = set()
    calls: list[int] = []
    logits = engine.decoder.logits
    engine.decoder.logits = lambda ids, cache: calls.append(len(ids)) or logits(ids, cache)
    result = engine.chat(HELLO)
    assert result.finish_reason == "length" and len(result.token_ids) == 5
    assert calls[1:] == [1, 1, 1, 1]
    assert engine._prefix.cache.get_seq_length() == len(engine._prefix.ids)


def test_a_stopped_assisted_turn_ends_its_generate_thread(tiny_engine):
    engine = tiny_engine("max_new_tokens=200")
    engine.eos_ids = set()
    engine.decoder = AssistedDecoder(engine.model, copy.deepcopy(engine.model),
                                     engine.tokenizer.pad_token_id, "cpu")
    seen: list[str] = []
    result = engine.chat(HELLO, on_token=seen.append, should_stop=lambda: len(seen) >= 3)
    assert result.cancelled and 3 <= len(result.token_ids) < 200
    assert not [t for t in threading.enumerate() if t.name == "assisted-generate"]
