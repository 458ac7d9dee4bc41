"""The lean decode step computes what transformers' forward computes, or is not used."""

import pytest

from playground.core.decode import lean_decode

HELLO = [{"role": "user", "content": "Hello, how are you today?"}]


def _logits_both_ways(model, step, prompt: list[int], make_cache, tokens=(5, 17, 42, 99, 7, 3)):
    """Prefill two caches alike, then feed the same tokens through transformers' forward
    (one cache) and the lean step (the other); the logits of each step, side by side."""
    import torch

    pairs = []
    with torch.inference_mode():
        caches = [make_cache(), make_cache()]
        for cache in caches:
            model(input_ids=torch.tensor([prompt]), cache=cache, use_cache=True)
        for token in tokens:
            hf = model(input_ids=torch.tensor([[token]]), cache=caches[0],
                       use_cache=True, logits_to_keep=1).logits[0, -1].float()
            pairs.append((hf, step(token, caches[1]).float()))
    return pairs


@pytest.mark.parametrize("spec", [
    "", "quant=bf16", "quant=int8-dynamic", "prune=0.5,prune_method=structured",
    "quant=bnb-4bit-nf4",
])
def test_lean_step_matches_the_transformers_forward(tiny_engine, spec):
    engine = tiny_engine(spec)
    assert engine.decoder.step is not None, engine.info["decode_step"]
    tol = 2e-2 if "bf16" in spec else 1e-5
    pairs = _logits_both_ways(engine.model, engine.decoder.step, engine.prompt_ids(HELLO),
                              engine.make_cache)
    for hf, lean in pairs:
        assert lean.shape == hf.shape
        assert (lean - hf).abs().max() <= tol * max(1.0, float(hf.abs().max()))
        assert int(lean.argmax()) == int(hf.argmax())


def test_engine_uses_the_lean_step_for_decoding(tiny_engine):
    engine = tiny_engine()
    engine.eos_ids = set()
    calls = []
    step = engine.decoder.step
    engine.decoder.step = lambda token, cache: calls.append(token) or step(token, cache)
    result = engine.chat(HELLO)
    assert calls == result.token_ids[:-1]  # every token but the last is fed back


def test_result_info_names_the_path_that_actually_decodes(tiny_engine):
    assert tiny_engine().info["decode_step"].startswith("lean decode step")
    off = tiny_engine("kv_cache=off").info["decode_step"]
    assert off.startswith("transformers forward (kv_cache=off")


def test_gpt2_keeps_the_transformers_forward(tiny_gpt2_dir):
    from playground.core.models import load

    step, why = lean_decode.build(load(str(tiny_gpt2_dir)).model)
    assert step is None and "gpt2" in why


def test_hooked_model_keeps_the_transformers_forward(tiny_dir):
    from playground.core.models import load

    model = load(str(tiny_dir)).model
    model.model.layers[0].mlp.register_forward_hook(lambda *args: None)
    step, why = lean_decode.build(model)
    assert step is None and "hooks" in why


def test_lean_step_matches_qwen2_with_qkv_bias():
    """Qwen2 is the other family the step accepts: q/k/v carry biases."""
    import torch
    from transformers import DynamicCache, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=300, hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=256, tie_word_embeddings=True)
    model = Qwen2ForCausalLM(config).eval()
    with torch.no_grad():
        for layer in model.model.layers:  # random, non-zero biases so they matter
            layer.self_attn.q_proj.bias.normal_()
    step, why = lean_decode.build(model)
    assert step is not None, why
    pairs = _logits_both_ways(model, step, [1, 2, 3, 4, 5],
                              lambda: DynamicCache(config=config), tokens=(7, 8, 9))
    for hf, lean in pairs:
        assert torch.allclose(lean, hf, atol=1e-5)
