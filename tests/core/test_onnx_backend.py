"""backend=onnxruntime: a tiny random Llama exported in the test runs the same chat loop
and scores the same as the torch model it came from."""

import pytest

from playground.core.config import ConfigError, RunConfig
from playground.core.engine import GenerationError
from playground.core.optimize import OptimizationError
from playground.core.pipeline import build_engine, check

pytest.importorskip("onnxruntime_genai")


@pytest.fixture
def onnx_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PLAYGROUND_CACHE", str(tmp_path / "cache"))  # exports stay in the test
    return tmp_path / "cache"


def _pair(tiny_dir, spec=""):
    base = f"model={tiny_dir},max_new_tokens=12,{spec}"
    return build_engine(RunConfig.parse(base)), build_engine(RunConfig.parse(base + ",backend=onnxruntime"))


def test_fp32_export_matches_torch_logits_and_greedy_replies(tiny_dir, onnx_cache):
    """fp32 ONNX logits within 1e-4 of the largest torch logit; the same greedy tokens
    over two turns, the second reusing the first's KV (prefix cache, rewind)."""
    import torch

    from playground.core import quality

    torch_engine, onnx_engine = _pair(tiny_dir, "prefix_cache=on")
    assert onnx_engine.info["backend"] == "onnxruntime"
    assert "CPUExecutionProvider" in onnx_engine.info["notes"][-1]
    ids = torch.tensor([torch_engine.prompt_ids([{"role": "user", "content": "Hello there"}])])
    with torch.inference_mode():
        want = torch_engine.model(input_ids=ids).logits
    got = onnx_engine.model(input_ids=ids).logits
    assert got.shape == want.shape
    assert float((got - want).abs().max()) <= 1e-4 * float(want.abs().max())
    ref = quality.reference(torch_engine.model, torch_engine.tokenizer)
    scored = quality.compare_to(ref, onnx_engine.model)
    assert scored["kl_mean"] < 1e-5 and scored["top1_agreement"] == 1.0

    msgs = [{"role": "user", "content": "Name a colour."}]
    for turn in range(2):
        a, b = torch_engine.chat(msgs), onnx_engine.chat(msgs)
        assert a.token_ids == b.token_ids and len(b.token_ids) > 0
        assert b.metrics.ttft_ms > 0 and b.metrics.new_tokens == len(b.token_ids)
        if turn:
            assert b.prefix_reused == a.prefix_reused > 0
        msgs = msgs + [{"role": "assistant", "content": b.reply}, {"role": "user", "content": "More"}]
    # a turn that rewrites history (edited earlier message) rewinds and still agrees
    edited = [{"role": "user", "content": "Name a fruit."}]
    assert torch_engine.chat(edited).token_ids == onnx_engine.chat(edited).token_ids


def test_int4_export_is_smaller_stops_between_tokens_and_refuses_overflow(tiny_dir, onnx_cache):
    fp32 = build_engine(RunConfig.parse(f"model={tiny_dir},backend=onnxruntime"))
    int4 = build_engine(RunConfig.parse(
        f"model={tiny_dir},backend=onnxruntime,quant=int4-weight,quant_group=32,max_new_tokens=50"))
    assert int4.weights_mb < 0.6 * fp32.weights_mb
    assert "int4, block 32" in int4.info["notes"][-1]
    seen = []
    result = int4.chat([{"role": "user", "content": "Hi"}], on_token=seen.append,
                       should_stop=lambda: len(seen) >= 3)
    assert result.finish_reason == "cancelled" and len(result.token_ids) == 3
    # a second build of the same config reuses the export
    again = build_engine(RunConfig.parse(f"model={tiny_dir},backend=onnxruntime"))
    assert again.info["export_s"] is None and fp32.info["export_s"] is not None
    huge = build_engine(RunConfig.parse(f"model={tiny_dir},backend=onnxruntime,max_new_tokens=1020"))
    with pytest.raises(GenerationError, match="exceeds the model's context of 1,024"):
        huge.chat([{"role": "user", "content": "Hello there, how are you today?"}])


@pytest.mark.parametrize("spec, says", [
    ("quant=int8-dynamic", "onnxruntime runs quant=none"),
    ("quant=bnb-4bit-nf4", "onnxruntime runs quant=none"),
    ("prune=0.3", "torch-only"),
    ("compile=on", "torch-only"),
    ("kv_cache=off", "torch-only"),
    ("draft=distilled", "torch-only"),
    ("backend=tensorrt", "allowed: torch, onnxruntime"),
])
def test_unsupported_combinations_are_one_line_errors(spec, says):
    full = spec if spec.startswith("backend=") else "backend=onnxruntime," + spec
    with pytest.raises(ConfigError, match=says) as err:
        RunConfig.parse(full)
    assert "\n" not in str(err.value)


def test_gguf_and_missing_cuda_are_refused_before_loading(tmp_path):
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    with pytest.raises(OptimizationError, match="not a .gguf"):
        check(RunConfig.parse(f"model={gguf},backend=onnxruntime"))


def test_compare_and_response_cache_work_unchanged(tiny_dir, onnx_cache):
    """compare scores the ONNX config against the torch baseline (fp32: no loss, same
    greedy replies); the response cache replays an exact repeat."""
    from playground.core.compare import run_compare

    base = RunConfig(model=str(tiny_dir), max_new_tokens=8)
    out = run_compare([base, base.replace(backend="onnxruntime")],
                      [[{"role": "user", "content": "Hello"}]], warmup=0, repeats=1)
    onnx = out.results[1]
    assert onnx.quality["kl_mean"] < 1e-5 and onnx.quality["greedy_match"] == 1.0
    engine = build_engine(base.replace(backend="onnxruntime", response_cache=True))
    msgs = [{"role": "user", "content": "Hello"}]
    first, again = engine.chat(msgs), engine.chat(msgs)
    assert first.finish_reason != "cache" and again.finish_reason == "cache"
    assert again.token_ids == first.token_ids
