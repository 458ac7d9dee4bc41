"""gguf-native on the playground's own skeleton (formats/gguf_model): no transformers
modeling code in the process, the same numbers as transformers' classes on the same
blocks, and transformers' classes wherever the skeleton does not apply, saying why."""

import subprocess
import sys

import pytest
import torch

from playground.core import models
from playground.core.config import RunConfig
from tests.gguf_files import Q4_K_M, write_tiny_gguf

TEXT = "Hello, how are you today?"
HELLO = [{"role": "user", "content": TEXT}]


def _needs_native():
    from playground.core import native

    if native.library() is None:
        pytest.skip(f"native kernels unavailable: {native.unavailable()}")


def _both(path):
    """The file loaded on the skeleton and on transformers' classes (same blocks)."""
    from playground.core.formats import gguf_load

    source = models.resolve(str(path))
    lean = gguf_load.load(source, path, lambda _m: None)
    full = gguf_load.load(source, path, lambda _m: None, needs_transformers="the test asks")
    return lean, full


def test_a_gguf_loads_without_transformers_modeling_code(tmp_path):
    """In a fresh process, a gguf-native load and a chat import none of transformers'
    model or config classes, nor what they pull in (sympy, torch._dynamo)."""
    _needs_native()
    path = write_tiny_gguf(tmp_path / "tiny.gguf", Q4_K_M)
    code = (
        "import sys\n"
        "from playground.core.config import RunConfig\n"
        "from playground.core.pipeline import build_engine\n"
        f"e = build_engine(RunConfig.parse('model={path},quant=gguf-native,max_new_tokens=4'))\n"
        "e.chat('Hello')\n"
        "print(e.info['model_code'])\n"
        "print(sorted(m for m in sys.modules if m in ('sympy', 'torch._dynamo',"
        " 'transformers.modeling_utils', 'transformers.models.llama.modeling_llama',"
        " 'transformers.models.llama.configuration_llama')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, check=True).stdout.strip().splitlines()
    assert out[-2].startswith("the playground's own skeleton")
    assert out[-1] == "[]"


@pytest.mark.parametrize("arch", ["llama", "qwen2", "qwen3"])
def test_the_skeleton_computes_what_transformers_classes_compute(tmp_path, arch):
    """Same parameters, rotary frequencies, tokenizer and chat template; every position's
    logits of a prompt within float rounding (the rows' C attention against torch's);
    the same greedy tokens, with and without a KV cache; scored windows alike."""
    _needs_native()
    from transformers import DynamicCache

    from playground.core import quality
    from playground.core.engine import Engine

    path = write_tiny_gguf(tmp_path / f"{arch}.gguf", Q4_K_M, arch=arch)
    lean, full = _both(path)
    assert "own skeleton" in lean.model.gguf_model_code
    assert "transformers' classes (the test asks)" == full.model.gguf_model_code
    assert type(lean.model).__module__.startswith("playground.")
    a, b = lean.model, full.model
    assert dict(a.named_parameters()).keys() == dict(b.named_parameters()).keys()
    for (name, p), q in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q), name
    assert torch.equal(a.model.rotary_emb.inv_freq, b.model.rotary_emb.inv_freq)
    assert lean.architecture == full.architecture
    for text in (TEXT, "  spaces\tand ünïcode 123 <|im_end|>"):
        assert lean.tokenizer(text).input_ids == full.tokenizer(text).input_ids
    assert lean.tokenizer.apply_chat_template(HELLO, tokenize=False, add_generation_prompt=True) \
        == full.tokenizer.apply_chat_template(HELLO, tokenize=False, add_generation_prompt=True)
    assert lean.tokenizer.eos_token_id == full.tokenizer.eos_token_id
    prompt = lean.tokenizer(TEXT * 3).input_ids
    with torch.inference_mode():
        got = a(input_ids=torch.tensor([prompt]), cache=DynamicCache()).logits[0]
        ref = b(input_ids=torch.tensor([prompt]), cache=DynamicCache(config=b.config)).logits[0]
    assert got.shape == ref.shape
    assert float((got - ref).abs().max()) <= 1e-3 * float(ref.abs().max())
    assert torch.equal(got.argmax(-1), ref.argmax(-1))
    windows = torch.tensor([prompt[:8], prompt[8:16]])
    assert torch.allclose(quality.score(a, windows), quality.score(b, windows), atol=1e-3)
    replies = []
    for loaded in (lean, full):
        for kv in (True, False):
            cfg = RunConfig(quant="gguf-native", max_new_tokens=10, kv_cache=kv)
            replies.append(Engine(loaded.model, loaded.tokenizer, cfg).chat(HELLO).token_ids)
    assert replies[0] == replies[1] == replies[2] == replies[3]


def test_what_the_skeleton_does_not_take_loads_on_transformers_classes(tmp_path):
    """A matrix without a native kernel (Q2_K), or an option that runs transformers'
    forward: transformers' classes, and the result says why."""
    _needs_native()
    from playground.core.pipeline import _needs_transformers, build_engine

    path = write_tiny_gguf(tmp_path / "q2k.gguf", {**Q4_K_M, "ffn_up": "Q2_K"})
    engine = build_engine(RunConfig.parse(f"model={path},quant=gguf-native,max_new_tokens=4"))
    assert engine.info["model_code"] == \
        "transformers' classes (blk.0.ffn_up.weight is Q2_K (no native kernel))"
    assert engine.chat("Hi").token_ids
    assert _needs_transformers(RunConfig(compile=True)) == \
        "compile=on compiles transformers' forward"
    assert _needs_transformers(RunConfig(quant="gguf-native")) is None
