"""End-to-end on the real default model (SmolLM2-135M-Instruct from the shipped GGUF)."""

import pytest

from playground.core.config import RunConfig
from playground.core.pipeline import build_engine

pytestmark = pytest.mark.real_model


@pytest.fixture(scope="module")
def engine():
    return build_engine(RunConfig(max_new_tokens=24))


def test_short_greedy_reply_with_positive_metrics(engine):
    result = engine.chat([{"role": "user", "content": "What is the capital of France?"}])
    assert "Paris" in result.reply
    m = result.metrics
    assert m.new_tokens > 2
    for value in (m.ttft_ms, m.decode_tok_s, m.prefill_tok_s, m.e2e_s, m.peak_rss_mb,
                  m.weights_mb, m.bandwidth_bound_tok_s, m.pct_of_bound):
        assert value is not None and value > 0
    assert 500 < m.weights_mb < 600  # 135M float32 parameters, tied embedding counted once


def test_matches_loading_the_gguf_directly(engine):
    """quant=none is exactly the GGUF's de-quantized weights: same greedy text."""
    import torch
    from transformers import AutoModelForCausalLM

    from playground.core.models import default_gguf_path

    gguf = default_gguf_path()
    direct = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                                  dtype=torch.float32)
    messages = [{"role": "user", "content": "Name three colours."}]
    ids = torch.tensor([engine.prompt_ids(messages)])
    out = direct.generate(ids, max_new_tokens=24, do_sample=False)
    ours = engine.chat(messages)
    expected = out[0, ids.shape[1]:].tolist()
    expected = [t for t in expected if t not in engine.eos_ids]
    assert ours.token_ids == expected[: len(ours.token_ids)]
    assert len(ours.token_ids) == len(expected)


def test_gguf_native_computes_with_the_files_exact_weights(engine):
    """The default model's float32 folder is the GGUF de-quantized by transformers; the
    blocks gguf-native keeps de-quantize to exactly those floats (q/k rows un-permuted
    as transformers does, the Q8_0 embedding included), and its replies match fp32."""
    import torch

    from playground.core import quality
    from playground.core.models import default_gguf_path
    from playground.core.quant import gguf_blocks

    float_model = engine.model
    tensors = gguf_blocks.read_blocks(default_gguf_path(), float_model)
    params = dict(float_model.named_parameters())
    for name in ("model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.k_proj.weight",
                 "model.layers.7.mlp.down_proj.weight", "model.embed_tokens.weight"):
        exact = gguf_blocks.to_qweight(tensors[name]).dequantize()
        assert torch.equal(exact, params[name].detach()), name
    native = build_engine(RunConfig(quant="gguf-native", max_new_tokens=24))
    ref = quality.reference(float_model, engine.tokenizer)
    scores = quality.compare_to(ref, native.model)
    assert scores["kl_mean"] < 1e-3 and scores["top1_agreement"] > 0.99
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    assert native.chat(messages).token_ids == engine.chat(messages).token_ids
    # its Q8_0 embedding table (29 MB) is a map of the file: after a chat only the rows it
    # looked up are resident, not the table (the load and the memory figures leave it be)
    from tests.gguf_files import resident_kb

    table = native.model.get_input_embeddings()
    resident, size = resident_kb(table.blocks.data_ptr())
    assert table.mapped and size * 1024 >= table.blocks.numel() > 20e6
    assert resident < size / 4, (resident, size)
    assert "input embedding's Q8_0 blocks read from the file a row at a time (30 MB" in \
        " ".join(native.info["notes"])


def test_onnx_runtime_fp32_answers_as_torch_and_int4_says_what_it_costs(engine):
    """backend=onnxruntime on the real model: the fp32 export scores KL < 1e-3 against
    torch fp32 on an evaluation window and gives the same greedy reply (measured KL
    0.0000 on the whole text); int4 is smaller and its KL is measurably non-zero."""
    pytest.importorskip("onnxruntime_genai")
    from playground.core import quality

    onnx = build_engine(RunConfig(max_new_tokens=24, backend="onnxruntime"))
    windows = quality.eval_windows(engine.tokenizer)[:1]
    want = quality.score(engine.model, windows)
    got = quality.score(onnx.model, windows)
    assert float(quality.kl_divergence(want, got).mean()) < 1e-3
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    assert onnx.chat(messages).token_ids == engine.chat(messages).token_ids
    int4 = build_engine(RunConfig(max_new_tokens=24, backend="onnxruntime", quant="int4-weight"))
    assert int4.weights_mb < 0.25 * onnx.weights_mb
    kl = float(quality.kl_divergence(want, quality.score(int4.model, windows)).mean())
    assert 1e-3 < kl < 2.0
    assert "Paris" in int4.chat(messages).reply


def test_an_endpoint_replying_as_the_baseline_scores_top1_of_one(engine):
    """The baseline's own greedy replies, scored as an endpoint's: every step agrees,
    although re-reading a reply's text gives other tokens than the model chose (the old
    teacher-forced re-tokenization scored such replies below 100%)."""
    from playground.core import quality

    conversations = [[{"role": "user", "content": c}] for c in (
        "Write a haiku about the sea.", "List three uses of a paperclip.",
        "What is 17 times 23? Show your work.", "Translate 'good morning' into French.")]
    replies, counts, resplit = [], [], 0
    for messages in conversations:
        result = engine.chat(messages)
        replies.append(result.reply)
        counts.append(len(result.token_ids))
        again = engine.tokenizer(result.reply, add_special_tokens=False)["input_ids"]
        resplit += list(again) != list(result.token_ids)
    top1, note = quality.top1_on_replies(engine, conversations, replies, counts)
    assert top1 == 1.0, note
    assert resplit  # the case the old scoring got wrong is among these prompts
