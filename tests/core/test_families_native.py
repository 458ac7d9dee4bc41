"""The families of decode/family.py on the one-call native step: exact against
transformers' own forward (with its own sliding-window cache), greedy the same, the
same bits alone and in a batch, and never a silent drop to a slower path."""

from __future__ import annotations

import pytest
import torch

from playground.core.config import RunConfig
from playground.core.decode import family
from playground.core.quant import weight_quant
from tests.families import FAMILIES, save_family

PROMPT = [{"role": "user", "content": "Hello, how are you today? Tell me more about it"}]
MODEL_TYPES = {"qwen3": "qwen3", "mistral": "mistral", "qwen2-sliding": "qwen2",
               "gemma2": "gemma2", "gemma3": "gemma3_text", "phi3": "phi3",
               "phi3-longrope": "phi3", "llama-yarn": "llama"}


@pytest.fixture(autouse=True)
def _native_only(monkeypatch):
    if weight_quant.backend() != "native":
        pytest.skip("native kernels unavailable here")
    from playground.core.native import step

    monkeypatch.setattr(step, "INITIAL_CAPACITY", 16)  # buffers grow inside the test


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    return {kind: save_family(root / kind, kind) for kind in FAMILIES}


def _engine(folder, quant):
    from playground.core.pipeline import build_engine

    return build_engine(RunConfig.parse(f"model={folder},quant={quant},max_new_tokens=12"))


def test_every_listed_family_is_tested():
    assert set(family.FAMILIES) - {"llama"} <= set(MODEL_TYPES.values())


@pytest.mark.parametrize("quant", ["int8-weight", "int4-weight"])
@pytest.mark.parametrize("kind", FAMILIES)
def test_one_call_step_matches_transformers(folders, kind, quant):
    """Prompt (longer than the windows and longrope's original context) + 30 steps: the
    step's logits against transformers' forward over its own cache (sliding layers
    included), greedy identical."""
    engine = _engine(folders[kind], quant)
    assert f"({MODEL_TYPES[kind]}, one native call a token)" in engine.info["decode_step"]
    prompt = engine.prompt_ids(PROMPT)
    assert len(prompt) > 24
    _follow(engine, prompt, steps=30)


def _follow(engine, prompt, steps):
    """Prefill, then ``steps`` greedy steps: the native step against transformers'
    forward over its own cache (DynamicCache with the config: sliding layers included)."""
    from transformers import DynamicCache

    with torch.inference_mode():
        ref_cache, cache = DynamicCache(config=engine.model.config), engine.make_cache()
        ref = engine.model(input_ids=torch.tensor([prompt]), cache=ref_cache).logits[0, -1]
        engine.model(input_ids=torch.tensor([prompt]), cache=cache)
        token = int(ref.argmax())
        for _ in range(steps):
            ref = engine.model(input_ids=torch.tensor([[token]]), cache=ref_cache).logits[0, -1]
            got = engine.decoder.step(token, cache)
            assert float((got - ref).abs().max()) <= 1e-3 * max(1.0, float(ref.abs().max()))
            assert int(got.argmax()) == int(ref.argmax())
            token = int(got.argmax())


@pytest.mark.parametrize("kind", ["mistral", "gemma2", "gemma3", "phi3-longrope", "qwen3"])
def test_batched_rows_give_the_same_bits_alone_or_together(folders, kind):
    """The server's batched pass (qstep_rows): prompts in chunks beside others' decode
    rows, windows and rotary tables per row, the same replies as each alone."""
    from tests.core.test_batched_step import PROMPTS, _run

    engine = _engine(folders[kind], "int8-weight")
    prompts = [*PROMPTS[:2], PROMPT]
    together, _, _ = _run(engine, prompts, steps=10, chunk=5)
    for i, prompt in enumerate(prompts):
        alone, _, _ = _run(engine, [prompt], steps=10, chunk=64)
        assert alone[0] == together[i]


def test_engine_reply_equals_transformers_generate(folders):
    """End to end on a sliding-window model: the engine's greedy reply (transformers'
    prefill into a plain cache, then the native step) equals generate()'s, which keeps
    transformers' own sliding cache."""
    engine = _engine(folders["mistral"], "int8-weight")
    turn = engine.chat(PROMPT)
    prompt = engine.prompt_ids(PROMPT)
    with torch.inference_mode():
        out = engine.model.generate(torch.tensor([prompt]), max_new_tokens=12, do_sample=False,
                                    eos_token_id=None, pad_token_id=0)
    expected = out[0, len(prompt):].tolist()
    assert turn.token_ids == expected[: len(turn.token_ids)] and len(turn.token_ids) >= 8


def test_a_refused_family_says_which_path_ran_and_why(folders, tmp_path):
    """dynamic rope is recomputed per call: the one-call step refuses it by name and the
    model runs transformers' forward, which the note says."""
    import json

    folder = save_family(tmp_path / "dyn", "llama-yarn")
    config = json.loads((folder / "config.json").read_text())
    config["rope_parameters"] = {"rope_type": "dynamic", "rope_theta": 10000.0, "factor": 2.0}
    (folder / "config.json").write_text(json.dumps(config))
    note = _engine(folder, "int8-weight").info["decode_step"]
    assert "transformers forward" in note and "not the one-call native step: rope type dynamic" in note


@pytest.mark.parametrize("arch", ["qwen3", "gemma3", "phi3"])
def test_a_families_gguf_runs_the_one_call_step_on_its_blocks(tmp_path, arch):
    """A Q4_K_M-like file of each family as llama.cpp's converter lays it out (Qwen3's
    q/k norms and key_length, Gemma 3's stored 1 + w norms and window, Phi-3's fused
    matrices): gguf-native keeps every block, the one-call step runs, and its logits
    follow transformers' forward over the same loaded model."""
    from playground.core.pipeline import build_engine
    from tests.gguf_files import Q4_K_M, write_tiny_gguf

    path = write_tiny_gguf(tmp_path / f"{arch}.gguf", Q4_K_M, arch=arch)
    engine = build_engine(RunConfig.parse(f"model={path},quant=gguf-native,max_new_tokens=8"))
    assert "one native call a token" in engine.info["decode_step"]
    assert not engine.info.get("gguf_not_native")
    _follow(engine, engine.prompt_ids("Hello there, how are you doing today my friend?"), 20)


@pytest.mark.parametrize("kind", ["mistral", "llama-yarn"])
def test_a_one_token_prompt_starts_the_step_on_a_fresh_cache(folders, kind):
    """A prompt of one token goes straight to the step, on a cache nothing has filled."""
    engine = _engine(folders[kind], "int8-weight")
    with torch.inference_mode():
        ref = engine.model(input_ids=torch.tensor([[7]])).logits[0, -1]
        got = engine.decoder.step(7, engine.make_cache())
    assert float((got - ref).abs().max()) <= 1e-3 * max(1.0, float(ref.abs().max()))
