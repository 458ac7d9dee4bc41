"""Weight-only int8/int4 and gguf-native: the properties each claims, on tiny models."""

import numpy as np
import pytest
import torch

from playground.core import quality
from playground.core.config import ConfigError, RunConfig
from playground.core.quant import gguf_blocks, weight_quant

HELLO = [{"role": "user", "content": "Hello, how are you today?"}]


@pytest.fixture(params=["native", "torch"])
def backend(request, monkeypatch):
    """Each test runs on our C kernels and on torch's (the fallback without a compiler)."""
    if request.param == "native" and weight_quant.backend() != "native":
        pytest.skip("native kernels unavailable here")
    monkeypatch.setattr(weight_quant, "backend", lambda: request.param)
    return request.param


def test_int8_rounding_error_is_at_most_half_a_step(backend):
    torch.manual_seed(0)
    w = torch.randn(48, 64)
    qw = weight_quant.quantize_int8(w)
    err = (qw.dequantize() - w).abs()
    assert qw.q.dtype == torch.int8 and qw.scale.shape == (48,)
    assert bool((err <= qw.scale.float()[:, None] * 0.5 + 1e-6).all())


@pytest.mark.parametrize("group", [32, 64])
def test_int4_rounding_error_is_at_most_half_a_step(group, backend):
    torch.manual_seed(0)
    w = torch.randn(32, 128)
    qw = weight_quant.quantize_int4(w, group)
    assert int(qw.q.min()) >= 0 and int(qw.q.max()) <= 15
    step = qw.scale.float().repeat_interleave(group, dim=1)
    # half a step, plus what rounding scale and zero to bf16 adds at the ends of the range
    assert bool(((qw.dequantize() - w).abs() <= step * 0.5 + w.abs() * 2 ** -7).all())


@pytest.mark.parametrize("kind", ["int8", "int4"])
def test_kernel_layer_computes_x_times_the_dequantized_weights(kind, backend):
    torch.manual_seed(1)
    w, x = torch.randn(64, 96), torch.randn(3, 96)
    qw = weight_quant.quantize_int8(w) if kind == "int8" else weight_quant.quantize_int4(w, 32)
    layer = weight_quant.pack([qw])
    x = x.bfloat16().float() if backend == "torch" else x
    expected = x @ qw.dequantize().t()
    got = layer(x).float()
    assert got.shape == (3, 64)
    # torch: bf16 activations and accumulation, within 1% of the largest output; native:
    # int16 activations per run of 32, within 0.01%
    tol = 0.01 if backend == "torch" else 1e-4
    assert float((got - expected).abs().max()) <= tol * float(expected.abs().max())


def _quantize(kind: str, w):
    if kind == "int8":
        return weight_quant.quantize_int8(w)
    if kind == "q8_0":  # GGUF's int8 with a scale per 32 inputs
        return weight_quant.QWeight("q8_0", *_q8_0(w), None, 32)
    return weight_quant.quantize_int4(w, 32)


def _q8_0(w):
    runs = w.reshape(w.shape[0], -1, 32)
    scale = (runs.abs().amax(-1) / 127).clamp_min(1e-6).half().float()
    q = torch.round(runs / scale[..., None]).clamp(-127, 127).reshape(w.shape)
    return q.to(torch.int8), scale


@pytest.mark.parametrize("kind", ["int8", "int4", "q8_0"])
@pytest.mark.parametrize("rows,blocked", [(64, True), (60, False)])
def test_both_native_layouts_give_a_row_the_same_bits_alone_or_in_a_tile(kind, rows, blocked):
    """Rows in whole blocks of 8 use qblocks.c's layout, others qgemv.c's rows; either way
    a row's output is x times the stored weights, and the same bits in any batch."""
    if weight_quant.backend() != "native":
        pytest.skip("native kernels unavailable here")
    torch.manual_seed(3)
    qw = _quantize(kind, torch.randn(rows, 96))
    layer = weight_quant.pack([qw])
    assert layer.blocked is blocked
    fn, args = layer.kernel()
    x = torch.randn(11, 96)
    together = fn(x, *args)
    expected = x @ qw.dequantize().float().t()
    assert float((together - expected).abs().max()) <= 1e-4 * float(expected.abs().max())
    for m in range(1, 10):  # tiles of 4, the last of 1 to 3
        batch = fn(x[:m], *args)
        assert torch.equal(batch, torch.cat([fn(x[i : i + 1], *args) for i in range(m)])), m
        assert torch.equal(batch, together[:m]), m


def test_a_row_view_must_not_split_a_block():
    if weight_quant.backend() != "native":
        pytest.skip("native kernels unavailable here")
    layer = weight_quant.pack([weight_quant.quantize_int4(torch.randn(64, 64), 32)])
    assert layer.rows_view(8, 24).out_features == 16
    with pytest.raises(ValueError, match="splits a block of 8 rows"):
        layer.rows_view(4, 24)


@pytest.mark.parametrize("sizes", [(128, 64, 64), (36, 20, 20)])
@pytest.mark.parametrize("kind", ["int8", "int4"])
def test_fused_rows_equal_separate_layers(kind, sizes, backend):
    if backend == "torch" and kind == "int4" and sizes[0] % 16:
        pytest.skip("torch's int4 kernel takes rows in sixteens only")
    torch.manual_seed(2)
    parts = [_quantize(kind, torch.randn(n, 64)) for n in sizes]  # in blocks of 8 rows, or not
    fused, views = weight_quant.pack_fused(parts, [None, None, None])
    x = torch.randn(1, 64).bfloat16()
    assert fused is not None
    whole = fused(x)
    start = 0
    for part, view in zip(parts, views, strict=True):
        alone = weight_quant.pack([part])(x)
        assert torch.equal(view(x), alone)
        assert torch.equal(whole[:, start:start + part.rows], alone)
        start += part.rows
    codes = [next(layer.buffers()).untyped_storage().data_ptr() for layer in (view, fused)]
    assert codes[0] == codes[1]  # the view computes from the fused layer's storage


@pytest.mark.parametrize("spec,max_kl,min_top1", [
    ("quant=int8-weight", 1e-5, 0.99),
    ("quant=int4-weight", 1e-3, 0.97),
    ("quant=int4-weight,quant_group=64", 1.5e-3, 0.97),
])
def test_quantized_logits_stay_close_to_the_float_model(tiny_engine, spec, max_kl, min_top1, backend):
    """On random windows of the tiny model: KL to float32 and top-1 agreement bounds, about
    5x what was measured (int8 1.3e-6, int4 g32 1.7e-4, g64 2.3e-4)."""
    base, cand = tiny_engine(""), tiny_engine(spec)
    windows = torch.randint(3, len(base.tokenizer), (4, 48), generator=torch.Generator().manual_seed(0))
    ref = quality.score(base.model, windows)
    got = quality.score(cand.model, windows)
    kl = float(quality.kl_divergence(ref, got).mean())
    assert kl <= max_kl, kl
    assert quality.top1_agreement(ref, got) >= min_top1
    assert cand.info["decode_step"].startswith("lean decode step")
    if backend == "native":
        assert "one native call a token" in cand.info["decode_step"]


def test_weights_mb_counts_each_stored_byte_once(tiny_engine, backend):
    """int8-weight: one byte per Linear weight (head included, fused rows counted once)
    plus the float embedding and norms (float32 with the native kernels, bf16 with
    torch's) and the 2-byte scales; int4: half a byte plus 4 bytes a group."""
    fp32 = tiny_engine("")
    linear = sum(m.weight.numel() for m in fp32.model.modules()
                 if isinstance(m, torch.nn.Linear))
    other = sum(p.numel() for n, p in fp32.model.named_parameters() if "proj" not in n)
    float_bytes = 4 if weight_quant.backend() == "native" else 2
    int8 = tiny_engine("quant=int8-weight").weights_mb * 1e6
    int4 = tiny_engine("quant=int4-weight").weights_mb * 1e6
    rows = linear / fp32.model.config.hidden_size  # about: output rows of all layers
    assert int8 == pytest.approx(linear + float_bytes * other + 2 * rows, rel=0.05)
    assert int4 == pytest.approx(linear / 2 + float_bytes * other + 4 * linear / 32, rel=0.05)


def _quantize_blocks(data: np.ndarray, qtype) -> np.ndarray:
    from gguf import quants

    return quants.quantize(data, qtype)


@pytest.mark.parametrize("type_name", ["Q4_0", "Q4_1", "Q8_0"])
def test_gguf_blocks_decode_bit_exactly(type_name):
    """Our decoding of each block type equals gguf's own de-quantization, bit for bit."""
    from gguf import GGMLQuantizationType, quants

    qtype = GGMLQuantizationType[type_name]
    rng = np.random.default_rng(0)
    data = rng.standard_normal((32, 128)).astype(np.float32)
    raw = _quantize_blocks(data, qtype)
    tensor = gguf_blocks.GgufTensor("x.weight", type_name, raw)
    ours = gguf_blocks.to_qweight(tensor).dequantize().numpy()
    theirs = quants.dequantize(raw, qtype).reshape(32, 128)
    assert ours.dtype == theirs.dtype == np.float32
    assert np.array_equal(ours, theirs)


@pytest.mark.parametrize("type_name", ["Q8_0", "Q6_K"])
def test_a_consumed_tall_matrix_packs_to_the_same_layer(type_name, monkeypatch):
    """replace_linears lets pack reorder a part's int8 codes in their own memory, slab by
    slab (the load's peak); a matrix taller than a slab must give the same bits as a copy.
    (Q6_K as int8 codes: at its 6 bits it is packed slice by slice as it is read.)"""
    if weight_quant.backend() != "native":
        pytest.skip("native kernels unavailable here")
    monkeypatch.setattr(weight_quant, "PACKED", False)
    from tests.gguf_files import random_blocks

    rows = weight_quant.SLAB_ROWS + 3 * weight_quant.BLOCK_ROWS  # two slabs, one partial
    raw = random_blocks(type_name, rows, 256, np.random.default_rng(1))
    copied = weight_quant.pack([gguf_blocks.to_qweight(gguf_blocks.GgufTensor("x", type_name, raw))])
    part = gguf_blocks.to_qweight(gguf_blocks.GgufTensor("x", type_name, raw))
    before = part.q.clone()
    consumed = weight_quant.pack([part], consume=True)
    assert not torch.equal(part.q, before)  # reordered where it was, not copied
    x = torch.randn(3, 256)
    assert torch.equal(copied(x), consumed(x))


def test_gguf_read_blocks_from_a_written_file(tmp_path, tiny_engine):
    """A GGUF written here: names map onto the model, Llama's q/k rows are un-permuted
    exactly as transformers does, the rest keep their order."""
    import gguf
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

    model = tiny_engine("").model
    rng = np.random.default_rng(1)
    q = rng.standard_normal((64, 64)).astype(np.float32)
    up = rng.standard_normal((256, 64)).astype(np.float32)
    path = tmp_path / "tiny.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    q_raw = _quantize_blocks(q, gguf.GGMLQuantizationType.Q4_1)
    up_raw = _quantize_blocks(up, gguf.GGMLQuantizationType.Q4_1)
    writer.add_tensor("blk.0.attn_q.weight", q_raw, raw_dtype=gguf.GGMLQuantizationType.Q4_1)
    writer.add_tensor("blk.0.ffn_up.weight", up_raw, raw_dtype=gguf.GGMLQuantizationType.Q4_1)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    tensors = gguf_blocks.read_blocks(path, model)
    got_q = gguf_blocks.to_qweight(tensors["model.layers.0.self_attn.q_proj.weight"]).dequantize()
    got_up = gguf_blocks.to_qweight(tensors["model.layers.0.mlp.up_proj.weight"]).dequantize()
    deq_q = gguf.quants.dequantize(q_raw, gguf.GGMLQuantizationType.Q4_1).reshape(64, 64)
    expected_q = LlamaTensorProcessor(config=model.config.to_dict())._reverse_permute_weights(
        deq_q, model.config.num_attention_heads, model.config.num_attention_heads)
    assert np.array_equal(got_q.numpy(), expected_q)
    assert np.array_equal(got_up.numpy(),
                          gguf.quants.dequantize(up_raw, gguf.GGMLQuantizationType.Q4_1).reshape(256, 64))


@pytest.mark.parametrize("spec,words", [
    ("quant_group=48", "quant_group: 48 is not allowed; allowed: 32, 64, 128"),
    ("qat=on,quant=bf16", "qat: 'on' needs quant one of int8-dynamic"),
    ("quant=gguf-native,model=/tmp", "gguf-native keeps a GGUF file's own blocks"),
    ("quant=gguf-native,prune=0.3", "cannot be combined with prune"),
])
def test_bad_combinations_are_one_line_errors(spec, words):
    with pytest.raises(ConfigError) as err:
        RunConfig.parse(spec)
    assert words in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("quant", ["int8-weight", "int4-weight", "gguf-native"])
def test_weight_only_kernels_refuse_other_devices(monkeypatch, quant):
    from playground.core.optimize import OptimizationError
    from playground.core.optimize import device as device_module
    from playground.core.pipeline import check

    monkeypatch.setattr(device_module, "available_devices", lambda: ["cpu", "cuda", "cuda:0"])
    with pytest.raises(OptimizationError) as err:
        check(RunConfig(quant=quant, device="cuda"))
    assert f"quant: {quant} runs on cpu only" in str(err.value)


def test_missing_kernel_is_named(monkeypatch):
    monkeypatch.setattr(weight_quant, "backend", lambda: "torch")
    monkeypatch.delattr(torch, "_weight_int4pack_mm_for_cpu")
    assert "_weight_int4pack_mm_for_cpu" in weight_quant.kernels_available()


@pytest.mark.parametrize("spec", ["quant=int8-weight", "quant=int4-weight,quant_group=64"])
def test_native_step_matches_the_transformers_forward(tiny_engine, spec, monkeypatch):
    """The whole-token C step and transformers' forward over the same native layers give
    the same logits, step after step, while the key/value buffers grow."""
    if weight_quant.backend() != "native":
        pytest.skip("native kernels unavailable here")
    from playground.core.native import step

    monkeypatch.setattr(step, "INITIAL_CAPACITY", 16)
    engine = tiny_engine(spec)
    assert "one native call" in engine.info["decode_step"]
    prompt = engine.prompt_ids(HELLO)
    with torch.inference_mode():
        caches = [engine.make_cache(), engine.make_cache()]
        for cache in caches:
            engine.model(input_ids=torch.tensor([prompt]), cache=cache, use_cache=True)
        for token in (5, 17, 42, 99, 7, 3) * 3:
            hf = engine.model(input_ids=torch.tensor([[token]]), cache=caches[0],
                              use_cache=True).logits[0, -1]
            native = engine.decoder.step(token, caches[1])
            assert float((native - hf).abs().max()) <= 1e-4 * max(1.0, float(hf.abs().max()))
        assert caches[1].get_seq_length() == caches[0].get_seq_length() == len(prompt) + 18
        # a reset cache reallocates its buffers (same capacity): the step follows them
        for cache in caches:
            cache.reset()
            engine.model(input_ids=torch.tensor([prompt]), cache=cache, use_cache=True)
        hf = engine.model(input_ids=torch.tensor([[5]]), cache=caches[0], use_cache=True).logits[0, -1]
        native = engine.decoder.step(5, caches[1])
        assert float((native - hf).abs().max()) <= 1e-4 * max(1.0, float(hf.abs().max()))


def test_native_step_keeps_the_prefix_cache_right(tiny_engine, monkeypatch):
    """Turn 2 (after an edited reply) reuses turn 1's keys and values cropped to the shared
    prefix and answers exactly as a fresh engine does, with buffers that grow."""
    if weight_quant.backend() != "native":
        pytest.skip("native kernels unavailable here")
    from playground.core.native import step

    monkeypatch.setattr(step, "INITIAL_CAPACITY", 16)
    spec = "quant=int8-weight,max_new_tokens=40"
    cached, fresh = tiny_engine(spec + ",prefix_cache=on"), tiny_engine(spec)
    for engine in (cached, fresh):
        engine.eos_ids = set()
    first = cached.chat(HELLO)
    edited = first.reply[: len(first.reply) // 2]  # the cache holds more than is shared
    turn2 = HELLO + [{"role": "assistant", "content": edited},
                     {"role": "user", "content": "And then? " * 10}]
    second = cached.chat(turn2)
    assert 0 < second.prefix_reused < len(cached.prompt_ids(HELLO)) + len(first.token_ids) - 1
    assert second.token_ids == fresh.chat(turn2).token_ids
    # what the cache holds equals one fresh prefill of the same tokens (a random tiny
    # model repeats itself, so equal replies alone would not show a stale entry)
    held = cached._prefix
    with torch.inference_mode():
        again = cached.make_cache()
        cached.model(input_ids=torch.tensor([held.ids]), cache=again, use_cache=True)
    for mine, theirs in zip(held.cache.layers, again.layers, strict=True):
        assert mine.keys.shape == theirs.keys.shape
        assert torch.allclose(mine.keys, theirs.keys, atol=1e-4)
        assert torch.allclose(mine.values, theirs.values, atol=1e-4)


def test_bandwidth_bound_counts_bytes_a_token_reads(tiny_engine):
    """Tied float weights: the head reads the embedding table, so all of it counts; with a
    quantized head the float table is read one row a token, so it does not."""
    fp32, int8 = tiny_engine(""), tiny_engine("quant=int8-weight")
    assert fp32.read_mb == pytest.approx(fp32.weights_mb)
    table = int8.model.get_input_embeddings().weight
    unread = (table.numel() - table.shape[1]) * table.element_size() / 1e6
    assert int8.read_mb == pytest.approx(int8.weights_mb - unread)
    m = int8.chat(HELLO).metrics
    assert m.bandwidth_bound_tok_s == pytest.approx(int8.bandwidth_gb_s * 1e3 / int8.read_mb)


def test_a_quantized_model_lets_go_of_the_mapped_checkpoint(tiny_engine):
    """Float tensors left by the quantizer are copied out of the memory-mapped file (which
    would otherwise stay resident beside the int8 weights); views of fused layers stay
    views; the engine reports its steady RSS and the load's peak."""
    import psutil

    engine = tiny_engine("quant=int8-weight")
    files = [r for r in psutil.Process().memory_maps(grouped=False)
             if r.path.endswith(".safetensors")]
    spans = [tuple(int(x, 16) for x in r.addr.split("-")) for r in files]
    for tensor in [*engine.model.parameters(), *engine.model.buffers()]:
        address = tensor.untyped_storage().data_ptr()
        assert not any(a <= address < b for a, b in spans)
    attn = engine.model.model.layers[0].self_attn
    fused = attn.__dict__.get("fused_qkv")
    if fused is not None and hasattr(fused, "codes"):
        assert attn.q_proj.codes.untyped_storage().data_ptr() == \
            fused.codes.untyped_storage().data_ptr()
    info = engine.info
    assert 0 < info["rss_mb"] <= info["load_peak_rss_mb"]
