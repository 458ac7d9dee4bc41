import pytest

from playground.core.config import RunConfig
from playground.core.optimize import PIPELINE, OptimizationError
from playground.core.optimize import device as device_module
from playground.core.optimize.prune_structured import _head_plan
from playground.core.pipeline import build_engine, check

HELLO = [{"role": "user", "content": "Hello, how are you today?"}]


def test_every_module_has_the_same_shape():
    names = [opt.name for opt in PIPELINE]
    assert len(names) == len(set(names))
    for opt in PIPELINE:
        assert opt.stage in ("model", "engine")
        # each module decides for itself whether it runs and how (not the base class's
        # defaults); load_kwargs and model_override are optional hooks
        cls = type(opt)
        assert "wanted" in vars(cls) and "apply" in vars(cls), cls.__name__
        assert opt.backends and set(opt.backends) <= {"torch", "onnxruntime"}


def test_absent_device_lists_present_ones():
    with pytest.raises(OptimizationError) as err:
        check(RunConfig(device="cuda:3"))
    assert "cuda:3" in str(err.value) and "present: cpu" in str(err.value)


def test_auto_device_resolves_to_something_present():
    assert check(RunConfig(device="auto")) in device_module.available_devices() + ["cuda:0"]


@pytest.mark.parametrize(
    ("spec", "device", "words"),
    [
        ("quant=bnb-4bit-nf4", "mps", ["bnb-4bit-nf4", "mps"]),
        ("quant=int8-dynamic", "cuda:0", ["int8-dynamic", "cpu only"]),
        ("compile=on,quant=int8-dynamic", "cpu", ["compile"]),
        ("compile=on,prefix_cache=on", "cpu", ["compile", "prefix_cache"]),
        ("variant=distilled", "cpu", ["variant", "student"]),
        ("draft=distilled", "cpu", ["draft", "student"]),
    ],
)
def test_impossible_combinations_fail_before_loading(monkeypatch, spec, device, words):
    monkeypatch.setattr(device_module, "available_devices", lambda: ["cpu", "cuda", "cuda:0", "mps"])
    cfg = RunConfig.parse(spec, base=RunConfig(model="/does/not/exist", device=device))
    with pytest.raises(OptimizationError) as err:
        build_engine(cfg)  # the model path is never touched: checks come first
    for word in words:
        assert word in str(err.value)


def test_structured_pruning_shrinks_llama_respecting_gqa(tiny_engine):
    engine = tiny_engine("prune=0.5,prune_method=structured")
    base = tiny_engine()
    cfg = engine.model.config
    assert cfg.intermediate_size == 128  # 256 * 0.5, a multiple of 64
    # 4 heads in 2 KV groups, keep 2: one query head in each group beats one whole group.
    assert (cfg.num_attention_heads, cfg.num_key_value_heads) == (2, 2)
    layer = engine.model.model.layers[0]
    assert tuple(layer.mlp.gate_proj.weight.shape) == (128, 64)
    assert tuple(layer.mlp.down_proj.weight.shape) == (64, 128)
    assert tuple(layer.self_attn.q_proj.weight.shape) == (2 * 16, 64)
    assert tuple(layer.self_attn.k_proj.weight.shape) == (2 * 16, 64)
    assert tuple(layer.self_attn.o_proj.weight.shape) == (64, 2 * 16)
    assert engine.weights_mb < base.weights_mb
    # the panel's parameter count is the pruned model's, not the loaded one's
    assert engine.info["params"] == sum(p.numel() for p in engine.model.parameters())
    assert engine.info["params"] < base.info["params"]
    assert engine.chat(HELLO).metrics.new_tokens > 0  # still a working model


def test_structured_pruning_gpt2(tiny_gpt2_dir):
    engine = build_engine(RunConfig(model=str(tiny_gpt2_dir), prune=0.5,
                                    prune_method="structured", max_new_tokens=5))
    block = engine.model.transformer.h[0]
    assert tuple(block.mlp.c_fc.weight.shape) == (64, 128)  # Conv1D: (in, out)
    assert tuple(block.attn.c_attn.weight.shape) == (64, 3 * 2 * 16)
    assert engine.chat(HELLO).metrics.new_tokens > 0


def test_structured_pruning_unsupported_architecture_is_named():
    from playground.core.optimize.base import Build
    from playground.core.optimize.prune_structured import PruneStructured

    class Odd:
        config = type("C", (), {"architectures": ["OddForCausalLM"], "model_type": "odd"})()

    with pytest.raises(OptimizationError, match="not supported for OddForCausalLM"):
        PruneStructured().apply(Build(RunConfig(prune=0.5, prune_method="structured"), "cpu",
                                      model=Odd()))


def test_head_plan_closest_to_target():
    assert _head_plan(9, 3, 0.5) == (2, 2)  # SmolLM2: 4 of 9 heads, 2 of 3 KV groups
    assert _head_plan(9, 3, 0.7) == (3, 2)
    assert _head_plan(4, 4, 0.5) == (2, 1)
    assert _head_plan(8, 2, 1.0) == (2, 4)


def test_magnitude_pruning_reaches_the_sparsity(tiny_engine):
    engine = tiny_engine("prune=0.4,prune_method=magnitude")
    assert engine.info["sparsity"] == pytest.approx(0.4, abs=0.01)
    layer = engine.model.model.layers[0].mlp.up_proj
    assert float((layer.weight == 0).float().mean()) == pytest.approx(0.4, abs=0.01)
    assert any("40.0%" in note for note in engine.info["notes"])


# Largest logit error over the largest logit, on the tiny model: measured (bf16 0.003,
# fp16 0.0004, int8-dynamic 0.012, bnb-8bit 0.004, nf4 0.050, fp4 0.076), bound ~2-3x.
QUANT_TOLERANCE = {"bf16": 0.01, "fp16": 0.002, "int8-dynamic": 0.04, "bnb-8bit": 0.015,
                   "bnb-4bit-nf4": 0.15, "bnb-4bit-fp4": 0.2}


@pytest.mark.parametrize("quant", list(QUANT_TOLERANCE))
def test_quantizations_keep_the_logits_and_shrink_the_weights(tiny_engine, quant):
    """Each quantization changes the logits (it ran) but stays within its stated
    tolerance of float32 (it kept the model), with smaller weights."""
    import torch

    base = tiny_engine()
    engine = tiny_engine(f"quant={quant}")
    assert engine.weights_mb < base.weights_mb
    ids = torch.tensor([base.prompt_ids(HELLO)])
    with torch.inference_mode():
        want = base.model(input_ids=ids).logits.float()
        got = engine.model(input_ids=ids).logits.float()
    error = float((got - want).abs().max() / want.abs().max())
    assert 1e-5 < error < QUANT_TOLERANCE[quant], error
    assert engine.chat(HELLO).metrics.new_tokens > 0


def test_prune_then_bnb_quantizes_the_pruned_model(tiny_engine):
    engine = tiny_engine("prune=0.5,prune_method=structured,quant=bnb-4bit-nf4")
    assert engine.model.config.intermediate_size == 128
    assert engine.chat(HELLO).metrics.new_tokens > 0


def test_kv_cache_off_gives_the_same_greedy_tokens(tiny_engine):
    on, off = tiny_engine(), tiny_engine("kv_cache=off")
    on.eos_ids = off.eos_ids = set()
    assert on.chat(HELLO).token_ids == off.chat(HELLO).token_ids


def _conversation(engine, turns):
    messages, results = [], []
    for text in turns:
        messages = messages + [{"role": "user", "content": text}]
        result = engine.chat(messages)
        messages = messages + [{"role": "assistant", "content": result.reply}]
        results.append(result)
    return messages, results


def test_prefix_cache_reuses_the_conversation_and_matches_no_cache(tiny_engine):
    turns = ["Hello there.", "What is the capital of France?", "Thank you!"]
    cached, plain = tiny_engine("prefix_cache=on"), tiny_engine()
    cached.eos_ids = plain.eos_ids = set()
    _, with_cache = _conversation(cached, turns)
    _, without = _conversation(plain, turns)
    assert [r.token_ids for r in with_cache] == [r.token_ids for r in without]
    assert with_cache[0].prefix_reused == 0
    for r in with_cache[1:]:
        # Only the new message (plus template glue) is prefilled.
        assert r.prefix_reused > r.metrics.prompt_tokens // 2
        # prefill tok/s counts the tokens that were prefilled, not the reused ones
        prefill_s = r.timeline.t_first_logits - r.timeline.t_request
        prefilled = r.metrics.prompt_tokens - r.prefix_reused
        assert r.metrics.prefill_tok_s == pytest.approx(prefilled / prefill_s)


def test_prefix_cache_invalidated_when_the_conversation_is_edited(tiny_engine):
    engine, plain = tiny_engine("prefix_cache=on"), tiny_engine()
    engine.eos_ids = plain.eos_ids = set()
    messages, _ = _conversation(engine, ["Hello there.", "What is the capital of France?"])
    edited = [{"role": "user", "content": "Numbers please."}] + messages[1:]
    result = engine.chat(edited)
    assert result.prefix_reused < 8  # only the shared template start survives
    assert result.token_ids == plain.chat(edited).token_ids


def test_new_chat_and_new_config_start_without_prefix(tiny_engine):
    engine = tiny_engine("prefix_cache=on")
    engine.chat(HELLO)
    engine.reset()
    assert engine.chat(HELLO).prefix_reused == 0
    other = tiny_engine("prefix_cache=on,quant=bf16")  # a config change builds a new engine
    assert other.chat(HELLO).prefix_reused == 0


def test_response_cache_hits_on_repeat_and_misses_on_change(tiny_engine):
    engine = tiny_engine("response_cache=on")
    first = engine.chat(HELLO)
    pieces: list[str] = []
    again = engine.chat(HELLO, on_token=pieces.append)
    assert not first.metrics.cache_hit and again.metrics.cache_hit
    assert again.reply == first.reply == "".join(pieces)
    assert again.metrics.ttft_ms < 5.0
    edited = engine.chat([{"role": "user", "content": "Hello, how are you today!"}])
    assert not edited.metrics.cache_hit
    key_a = engine.response_cache.key(engine.config, HELLO)
    key_b = engine.response_cache.key(engine.config.replace(temperature=0.7), HELLO)
    assert key_a != key_b


def test_response_cache_does_not_store_cancelled_replies(tiny_engine):
    engine = tiny_engine("response_cache=on")
    engine.eos_ids = set()
    engine.chat(HELLO, should_stop=lambda: True)
    assert not engine.chat(HELLO).metrics.cache_hit


def test_threads_are_applied(tiny_engine):
    import torch

    tiny_engine("threads=1")
    assert torch.get_num_threads() == 1
    tiny_engine("threads=2")
    assert torch.get_num_threads() == 2


def test_compile_keeps_greedy_output_and_reports_compile_time_separately(tiny_engine):
    compiled, eager = tiny_engine("compile=on"), tiny_engine()
    compiled.eos_ids = eager.eos_ids = set()
    assert compiled.info["compile_s"] > 0
    assert any("torch.compile" in note for note in compiled.info["notes"])
    assert compiled.info["decode_step"].startswith("compiled transformers forward")
    first = compiled.chat(HELLO)
    assert first.token_ids == eager.chat(HELLO).token_ids
    # Compilation happened in the warmup: a measured turn's TTFT does not contain it.
    assert first.metrics.ttft_ms / 1000 < compiled.info["compile_s"] / 2


def test_structured_pruning_calibrates_without_the_evaluation_text(tiny_dir, tmp_path,
                                                                   monkeypatch):
    """The pruned model is scored on assets/eval: its statistics must come from the
    calibration text (an assets folder without the evaluation text still prunes)."""
    import shutil

    from playground.core import paths
    from playground.core.config import RunConfig
    from playground.core.pipeline import build_engine

    assets = tmp_path / "assets"
    shutil.copytree(paths.assets_dir() / "calibration", assets / "calibration")
    monkeypatch.setenv("PLAYGROUND_ASSETS", str(assets))
    engine = build_engine(RunConfig(model=str(tiny_dir), prune=0.3, prune_method="structured"))
    assert engine.chat([{"role": "user", "content": "Hello"}]).metrics.new_tokens > 0
