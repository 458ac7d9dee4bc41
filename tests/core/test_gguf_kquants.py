"""A user's own GGUF: K-quant blocks (Q4_K, Q5_K, Q6_K) kept exactly as the file holds
them, computed by the native kernels, and every other block type named, never silent."""

import numpy as np
import pytest
import torch

from playground.core import memory, native
from playground.core.config import RunConfig
from playground.core.quant import gguf_blocks, weight_quant
from tests.gguf_files import Q4_K_M, random_blocks, write_tiny_gguf

K_TYPES = ["Q4_K", "Q5_K", "Q6_K", "Q5_0", "Q5_1"]
HELLO = [{"role": "user", "content": "Hello, how are you today?"}]


def _needs_native():
    if weight_quant.backend() != "native":
        pytest.skip("native kernels unavailable here")


@pytest.mark.parametrize("type_name", K_TYPES)
def test_k_quant_blocks_decode_bit_exactly(type_name):
    """Codes, float32 scales and offsets stand for exactly gguf's own de-quantization."""
    from gguf import GGMLQuantizationType, quants

    raw = random_blocks(type_name, 24, 768, np.random.default_rng(3))
    tensor = gguf_blocks.GgufTensor("x.weight", type_name, raw)
    ours = gguf_blocks.to_qweight(tensor).dequantize().numpy()
    theirs = quants.dequantize(raw, GGMLQuantizationType[type_name]).reshape(24, 768)
    assert ours.dtype == theirs.dtype == np.float32
    assert np.array_equal(ours, theirs)


@pytest.mark.parametrize("type_name", [*K_TYPES, "Q4_0", "Q4_1", "Q8_0"])
def test_a_tall_matrix_unpacked_in_slices_is_the_same(type_name, monkeypatch):
    """Slices of rows (as a big head is read) give the same tensors as the whole."""
    raw = random_blocks(type_name, 21, 512, np.random.default_rng(4))
    tensor = gguf_blocks.GgufTensor("x.weight", type_name, raw)
    whole = gguf_blocks.to_qweight(tensor)
    monkeypatch.setattr(gguf_blocks, "CHUNK_ROWS", 8)
    sliced = gguf_blocks.to_qweight(tensor)
    assert (sliced.kind, sliced.group) == (whole.kind, whole.group)
    for a, b in [(whole.q, sliced.q), (whole.scale, sliced.scale), (whole.zero, sliced.zero),
                 (whole.offset, sliced.offset),
                 *zip(whole.two_level or (), sliced.two_level or (), strict=True)]:
        assert (a is None and b is None) or (a.dtype == b.dtype and torch.equal(a, b))


def _isa(want: int) -> None:
    native.library().qblocks_set_isa(want)


@pytest.fixture
def each_isa():
    """Runs the body on AVX2 and, where the CPU has it, on AVX-512 VNNI; restores auto."""
    _needs_native()
    yield
    _isa(0)


@pytest.mark.parametrize("type_name", K_TYPES)
def test_k_quant_kernels_multiply_by_the_files_weights(type_name, each_isa):
    """x · Wᵀ against the de-quantized weights, 1–9 rows, a row's bits the same alone or in
    a tile, and the same bits with AVX2 and AVX-512 VNNI (exact integer sums on each; a
    CPU without VNNI runs AVX2 twice)."""
    qw = gguf_blocks.to_qweight(gguf_blocks.GgufTensor(
        "x", type_name, random_blocks(type_name, 64, 768, np.random.default_rng(4))))
    layer = weight_quant.pack([qw])
    want = weight_quant.FMT_SUPER if type_name.endswith("_K") else weight_quant.FMT_FP16
    want |= {"Q6_K": weight_quant.FMT_Q6, "Q5_0": weight_quant.FMT_Q5, "Q4_K": weight_quant.FMT_SC6,
             "Q5_K": weight_quant.FMT_SC6}.get(type_name, 0)
    assert layer.blocked and layer.fmt == want
    w = qw.dequantize().double()
    gen = torch.Generator().manual_seed(0)
    for rows in (1, 2, 3, 4, 5, 9):
        x = torch.randn(rows, 768, generator=gen)
        outs = []
        for want in (1, 2):
            _isa(want)
            y = layer(x)
            ref = (x.double() @ w.T).float()
            assert float((y - ref).abs().max()) <= 1e-4 * float(ref.abs().max())
            alone = torch.cat([layer(x[i:i + 1]) for i in range(rows)])
            assert torch.equal(alone, y)
            outs.append(y)
        assert torch.equal(outs[0], outs[1])


@pytest.mark.parametrize("type_name,bits", [("Q6_K", 6), ("Q5_0", 5)])
@pytest.mark.parametrize("rows_w", [24, 64])
def test_q6_k_and_q5_0_at_their_bits_give_the_int8_forms_bits(type_name, bits, rows_w,
                                                              each_isa, monkeypatch):
    """Q6_K's and Q5_0's codes kept at 6 and 5 bits a weight (the file's size, not 8): they
    unpack to the int8 form's codes, and give the same products, bit for bit, on AVX2,
    AVX-512 VNNI and (where the CPU has them, 16 rows of x or more) AMX tiles, through the
    8- and 16-row blocks (24 rows: one of each), tiles of 1-4 rows of x and a view of whole
    blocks."""
    tensor = gguf_blocks.GgufTensor(
        "x", type_name, random_blocks(type_name, rows_w, 768, np.random.default_rng(6)))
    small = gguf_blocks.to_qweight(tensor)
    monkeypatch.setattr(weight_quant, "PACKED", False)
    wide = gguf_blocks.to_qweight(tensor)
    assert (small.bits, wide.bits) == (bits, 8) and small.cols == wide.cols == 768
    assert small.q.numel() * 8 == wide.q.numel() * bits
    assert torch.equal(weight_quant.unpack_codes(small.q, bits), wide.q)
    assert torch.equal(small.dequantize(), wide.dequantize())
    packed, eight = weight_quant.pack([small]), weight_quant.pack([wide])
    flag = weight_quant.FMT_Q6 if bits == 6 else weight_quant.FMT_Q5
    assert packed.fmt == eight.fmt | flag
    _same_bits_on_each_isa(packed, eight, seed=1)


@pytest.mark.parametrize("type_name", ["Q4_K", "Q5_K"])
@pytest.mark.parametrize("rows_w", [24, 64])
def test_six_bit_sub_scales_give_the_byte_a_value_forms_bits(type_name, rows_w, each_isa,
                                                             monkeypatch):
    """Q4_K's and Q5_K's sub-scales and mins kept at 6 bits as the file holds them (FMT_SC6)
    give the same products, bit for bit, as the byte-a-value form, on AVX2, AVX-512 VNNI and
    AMX, through 8- and 16-row blocks (24 rows: one of each), 1-33 rows of x and a view."""
    tensor = gguf_blocks.GgufTensor(
        "x", type_name, random_blocks(type_name, rows_w, 768, np.random.default_rng(7)))
    six = weight_quant.pack([gguf_blocks.to_qweight(tensor)])
    monkeypatch.setattr(weight_quant, "SIX_BIT_SCALES", False)
    eight = weight_quant.pack([gguf_blocks.to_qweight(tensor)])
    assert six.fmt == eight.fmt | weight_quant.FMT_SC6
    assert six.scales.numel() * 4 == eight.scales.numel() * 3
    assert six.offsets.numel() * 4 == eight.offsets.numel() * 3
    _same_bits_on_each_isa(six, eight, seed=2)


def _same_bits_on_each_isa(layer, reference, seed: int) -> None:
    """``layer`` gives ``reference``'s bits on AVX2, AVX-512 VNNI and AMX where the CPU has
    them, for 1-33 rows of x, and so does its view of rows 8:24 (whole blocks: a matrix
    in the same layout)."""
    gen = torch.Generator().manual_seed(seed)
    for want in (1, 2, 3):
        if want == 3 and native.library().qblocks_set_isa(3) != 3:
            continue  # no AMX here
        _isa(want)
        for rows in (1, 2, 3, 4, 5, 9, 17, 33):
            x = torch.randn(rows, 768, generator=gen) * torch.logspace(-2, 2, 768)[None, :]
            assert torch.equal(layer(x), reference(x)), (want, rows)
    assert torch.equal(layer.rows_view(8, 24)(x), reference(x)[:, 8:24])


@pytest.mark.parametrize("type_name", ["Q4_K", "Q6_K"])
def test_k_quant_matrices_take_the_files_bytes(type_name):
    """A Q4_K or Q6_K matrix in the kernels' form is as big as in the file: codes at the
    file's bits, 6-bit (Q4_K) or int8 (Q6_K) sub-scales, fp16 super-block scales (float32
    ones and a byte a 6-bit value made a 3B Q4_K_M model 76 MB bigger than its file)."""
    _needs_native()
    raw = random_blocks(type_name, 64, 1024, np.random.default_rng(8))
    layer = weight_quant.pack([gguf_blocks.to_qweight(gguf_blocks.GgufTensor("x", type_name, raw))])
    held = sum(t.numel() * t.element_size() for t in (
        layer.codes, layer.scales, layer.offsets, layer.scale_super, layer.offset_super)
        if t is not None)
    assert held == raw.nbytes


@pytest.mark.parametrize("type_name", [*K_TYPES, "Q4_0", "Q4_1", "Q8_0", "int4-64", "int4-128",
                                       "int8"])
def test_many_rows_on_amx_tiles_give_the_vnni_kernels_bits(type_name, each_isa):
    """Where the CPU has AMX-INT8, passes of 16 rows or more run on its tiles (x's int16
    split into a high and a low byte, qblocks_amx.h): the same bits as the AVX-512 VNNI
    kernels, row by row, for 16-48 rows, a part-filled last tile and groups of 32-128."""
    if native.library().qblocks_set_isa(3) != 3:
        pytest.skip("no AMX-INT8 here (or Linux did not grant its tile state)")
    gen = torch.Generator().manual_seed(5)
    if type_name.startswith("int"):
        w = torch.randn(48, 768, generator=gen)
        qw = (weight_quant.quantize_int8(w) if type_name == "int8"
              else weight_quant.quantize_int4(w, int(type_name.split("-")[1])))
    else:
        qw = gguf_blocks.to_qweight(gguf_blocks.GgufTensor(
            "x", type_name, random_blocks(type_name, 48, 768, np.random.default_rng(5))))
    layer = weight_quant.pack([qw])
    w = qw.dequantize().double()
    lib = native.library()
    for rows in (16, 17, 31, 48):
        x = torch.randn(rows, 768, generator=gen) * torch.logspace(-2, 2, 768)[None, :]
        outs = []
        for want in (2, 3):
            _isa(want)
            before = lib.qblocks_amx_calls()
            outs.append(layer(x))
            ran = lib.qblocks_amx_calls() - before
            # every type ran on the tiles (Q6_K's groups of 16 in two halves a run)
            assert ran == (want == 3), (want, ran)
        ref = (x.double() @ w.T).float()
        assert float((outs[1] - ref).abs().max()) <= 1e-4 * float(ref.abs().max())
        assert torch.equal(outs[0], outs[1])


# where rows are not multiples of 256, llama-quantize falls back to Q5_0/Q5_1/Q8_0
FALLBACKS = {"attn_q": "Q5_0", "attn_k": "Q5_1", "attn_v": "Q8_0", "attn_output": "Q4_K",
             "ffn_gate": "Q5_1", "ffn_up": "Q5_1", "ffn_down": "Q5_0", "token_embd": "Q8_0"}


HALF_MIX = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down",
            "token_embd")  # every matrix


@pytest.fixture
def q4_k_m_file(tmp_path):
    return write_tiny_gguf(tmp_path / "tiny-q4_k_m.gguf", Q4_K_M)


def _engine(path, spec=""):
    from playground.core.pipeline import build_engine

    return build_engine(RunConfig.parse(f"model={path},max_new_tokens=12,{spec}".rstrip(",")))


def _steps_match(base, native_, steps: int, tolerance: float) -> None:
    """After the same prefill, the one-call step's logits match transformers' forward of
    the float model step by step (relative to the largest logit), with the same argmax,
    and both chat the same greedy reply."""
    prompt = base.prompt_ids(HELLO)
    with torch.inference_mode():
        caches = [base.make_cache(), native_.make_cache()]
        base.model(input_ids=torch.tensor([prompt]), cache=caches[0], use_cache=True)
        native_.model(input_ids=torch.tensor([prompt]), cache=caches[1], use_cache=True)
        token = 7
        for _ in range(steps):
            ref = base.model(input_ids=torch.tensor([[token]]), cache=caches[0],
                             use_cache=True).logits[0, -1]
            got = native_.decoder.step(token, caches[1])
            assert float((got - ref).abs().max()) <= tolerance * max(1.0, float(ref.abs().max()))
            assert int(got.argmax()) == int(ref.argmax())
            token = int(ref.argmax()) if token != int(ref.argmax()) else (token * 31 + 5) % 300
    assert base.chat(HELLO).token_ids == native_.chat(HELLO).token_ids


@pytest.mark.parametrize("mix,kept", [
    (Q4_K_M, {"Q4_K": 8, "Q5_K": 2, "Q6_K": 5}),
    (FALLBACKS, {"Q5_0": 4, "Q5_1": 6, "Q8_0": 3, "Q4_K": 2}),
])
def test_a_users_file_runs_the_one_call_step_on_its_own_blocks(tmp_path, mix, kept):
    """Q4_K, Q5_K and Q6_K matrices (q/k/v of different types, so not one fused matrix), or
    the Q5_0/Q5_1/Q8_0 fallbacks, all stay blocks, the one-call C step runs, and its logits
    over a prefill and 30 steps match the float model transformers de-quantized from the
    same file."""
    _needs_native()
    path = write_tiny_gguf(tmp_path / "tiny.gguf", mix)
    base, native_ = _engine(path), _engine(path, "quant=gguf-native")
    assert native_.info["gguf_blocks"] == kept
    assert native_.info["gguf_not_native"] == {}
    assert "NOT native" not in native_.info["notes"][0]
    assert "one native call" in native_.info["decode_step"]
    _steps_match(base, native_, steps=30, tolerance=2e-3)


@pytest.mark.parametrize("mix", ["Q4_K_M", "F16"])
def test_k_quant_rows_get_the_same_bits_alone_or_batched(tmp_path, mix):
    """The batched step (serve --batching on) over K-quant blocks or F16 matrices: three
    sequences in one pass get the bits each gets alone."""
    _needs_native()
    from tests.core.test_batched_step import PROMPTS, _run

    types = Q4_K_M if mix == "Q4_K_M" else dict.fromkeys(HALF_MIX, "F16")
    engine = _engine(write_tiny_gguf(tmp_path / "rows.gguf", types), "quant=gguf-native")
    together, logits_together, _ = _run(engine, PROMPTS, steps=10, chunk=5)
    for i, prompt in enumerate(PROMPTS):
        alone, logits_alone, _ = _run(engine, [prompt], steps=10, chunk=64)
        assert alone[0] == together[i]
        for a, b in zip(logits_alone[0], logits_together[i], strict=True):
            assert torch.equal(a, b)


def test_other_block_types_are_named_with_what_happens_to_them(tmp_path):
    """A Q2_K tensor: the note says NOT native, names the type and what was done with it,
    the result's info counts it, and the decode path says why the one-call step was
    refused; an F16 matrix beside it stays in half precision."""
    _needs_native()
    path = write_tiny_gguf(tmp_path / "mixed.gguf", {**Q4_K_M, "ffn_down": "Q2_K",
                                                      "attn_output": "F16"})
    engine = _engine(path, "quant=gguf-native")
    note = engine.info["notes"][0]
    assert "NOT native" in note and "Q2_K" in note
    assert sum(engine.info["gguf_not_native"].values()) == 2  # 2 layers' ffn_down
    assert engine.info["gguf_blocks"]["F16"] == 2
    assert "not the one-call native step: o_proj or down_proj" in engine.info["decode_step"]
    assert engine.chat(HELLO).token_ids  # still runs, on the exact values


@pytest.mark.parametrize("kind", ["f16", "bf16"])
def test_half_kernels_multiply_by_the_stored_weights(kind):
    """qhalf.c against float64 products of the same half-precision weights: every shape
    of tile (rows of W not a multiple of 4, inputs not a multiple of 8, 1-50 rows of x)."""
    _needs_native()
    dtype = torch.float16 if kind == "f16" else torch.bfloat16
    gen = torch.Generator().manual_seed(3)
    for n, k, m in ((64, 96, 1), (37, 100, 2), (300, 2048, 3), (8, 8, 4), (130, 264, 50)):
        w = (torch.randn(n, k, generator=gen) * 0.05).to(dtype)
        part = weight_quant.QWeight(kind, w.view(torch.int16).clone(), None)
        assert torch.equal(part.dequantize(), w.float())
        layer = weight_quant.pack([part], [None])
        x = torch.randn(m, k, generator=gen)
        ref = (x.double() @ w.double().t()).float()
        assert float((layer(x) - ref).abs().max()) <= 2e-6 * float(ref.abs().max()) * k ** 0.5


@pytest.mark.parametrize("type_name", ["F16", "BF16"])
def test_a_half_precision_file_runs_the_one_call_step_in_half_precision(tmp_path, type_name):
    """Every matrix of an F16 (BF16) file stays two bytes a weight, the one-call C step
    runs, and its logits over a prefill and 20 steps match the float model transformers
    de-quantized from the same file (the same weights, sums in another order)."""
    _needs_native()
    path = write_tiny_gguf(tmp_path / "half.gguf", dict.fromkeys(HALF_MIX, type_name))
    base, native_ = _engine(path), _engine(path, "quant=gguf-native")
    assert native_.info["gguf_blocks"] == {type_name: 15}  # 2 layers × 7, and the head
    assert native_.info["gguf_not_native"] == {}
    assert "one native call" in native_.info["decode_step"]
    assert memory.weights_mb(native_.model) < 0.6 * memory.weights_mb(base.model)
    table, head = native_.model.get_input_embeddings(), native_.model.get_output_embeddings()
    # the tied table is looked up from the head's own bytes: one copy, counted once
    assert table.blocks.data_ptr() == head.codes.data_ptr()
    assert memory.weights_mb(native_.model) == pytest.approx(
        2 * sum(m.codes.numel() for m in native_.model.modules() if hasattr(m, "codes")
                and m.codes.data_ptr() != head.codes.data_ptr()) / 1e6
        + 2 * head.codes.numel() / 1e6, rel=0.05)
    _steps_match(base, native_, steps=20, tolerance=1e-4)


def test_the_notes_name_the_kernels_instruction_set(q4_k_m_file):
    """A result says which kernels ran: AVX2, AVX-512 VNNI or AMX for many rows, as the
    CPU (or PLAYGROUND_NATIVE_ISA) chose; a ladder on one machine can then tell them apart."""
    _needs_native()
    note = _engine(q4_k_m_file, "quant=gguf-native").info["notes"][0]
    assert f"(native kernels, {native.isa()})" in note and native.isa() in native.ISA_NAMES.values()


def test_torch_kernels_say_the_k_quants_stay_de_quantized(q4_k_m_file, monkeypatch):
    monkeypatch.setattr(weight_quant, "backend", lambda: "torch")
    engine = _engine(q4_k_m_file, "quant=gguf-native")
    note = engine.info["notes"][0]
    assert "NOT native" in note and "Q4_K: de-quantized (torch's kernels" in note


@pytest.mark.parametrize("types,fmt", [
    (("Q4_0",), weight_quant.FMT_FP16 | weight_quant.FMT_MINUS8D),  # m = -8d, not stored
    (("Q4_K", "Q4_1"), weight_quant.FMT_F32),  # one matrix: products in float32
    (("Q4_K", "Q4_K"), weight_quant.FMT_SUPER | weight_quant.FMT_SC6),  # 6-bit sub-scales
    (("Q5_K", "Q5_K"), weight_quant.FMT_SUPER | weight_quant.FMT_SC6),
    (("Q6_K", "Q6_K"), weight_quant.FMT_SUPER | weight_quant.FMT_Q6),  # at 6 bits
    (("Q5_0", "Q5_0"), weight_quant.FMT_FP16 | weight_quant.FMT_Q5),  # at 5 bits
    (("Q8_0",), weight_quant.FMT_FP16),
    (("Q4_1", "Q4_1"), weight_quant.FMT_FP16),
])
def test_every_scale_format_multiplies_by_the_files_weights(types, fmt, each_isa):
    rng = np.random.default_rng(5)
    parts = [gguf_blocks.to_qweight(gguf_blocks.GgufTensor("x", t, random_blocks(t, 32, 512, rng)))
             for t in types]
    layer = weight_quant.pack(parts)
    assert layer.fmt == fmt
    w = torch.cat([p.dequantize() for p in parts]).double()
    x = torch.randn(5, 512, generator=torch.Generator().manual_seed(1))
    ref = (x.double() @ w.T).float()
    outs = []
    for want in (1, 2):  # the same bits on every instruction set
        _isa(want)
        outs.append(layer(x))
        assert float((outs[-1] - ref).abs().max()) <= 1e-4 * float(ref.abs().max())
    assert torch.equal(outs[0], outs[1])


def test_gguf_native_never_builds_a_float_model_first(q4_k_m_file, monkeypatch):
    """The direct load reads the file's blocks into the kernels' layout and every other
    tensor as transformers would make it: the same values, and no float32 model on the
    way (from_pretrained, which de-quantizes every tensor, is never called)."""
    _needs_native()
    import transformers

    float_model = _engine(q4_k_m_file).model
    calls = []
    original = transformers.AutoModelForCausalLM.from_pretrained
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained",
                        lambda *a, **k: calls.append(a) or original(*a, **k))
    engine = _engine(q4_k_m_file, "quant=gguf-native")
    assert calls == [] and "from the file's blocks" in engine.info["gguf_load"]
    model = engine.model
    assert not any(p.device.type == "meta" for p in model.parameters())
    floats = dict(float_model.named_parameters())
    for name, param in model.named_parameters():  # norms and the embedding: bit for bit
        assert torch.equal(param, floats[name]), name
    assert engine.info["params"] == sum(p.numel() for p in float_model.parameters())
    # the rotary frequencies are real buffers, as in the float model
    assert torch.equal(model.model.rotary_emb.inv_freq, float_model.model.rotary_emb.inv_freq)


def test_a_file_missing_a_tensor_is_one_line(tmp_path):
    _needs_native()
    from playground.core import models

    broken = write_tiny_gguf(tmp_path / "broken.gguf", Q4_K_M, skip=("blk.1.ffn_norm.weight",))
    with pytest.raises(models.ModelError) as err:
        _engine(broken, "quant=gguf-native")
    assert "no tensor for model.layers.1.post_attention_layernorm.weight" in str(err.value)
    assert "\n" not in str(err.value)


def _llama3_factors(head_dim: int, base: float = 10000.0) -> tuple:
    """rope_freqs as llama.cpp's converter computes it for Llama 3.x (factor 32, low 1,
    high 4, original 64 positions: small, so the tiny model's frequencies span all three
    cases), and the rope parameters transformers would compute from."""
    import math

    import numpy as np

    factor, low, high, old = 32.0, 1.0, 4.0, 64
    freqs = 1.0 / base ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    out = []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < old / high:
            out.append(1.0)
        elif wavelen > old / low:
            out.append(factor)
        else:
            smooth = (old / wavelen - low) / (high - low)
            out.append(1 / ((1 - smooth) / factor + smooth))
    params = {"rope_type": "llama3", "rope_theta": base, "factor": factor,
              "low_freq_factor": low, "high_freq_factor": high,
              "original_max_position_embeddings": old}
    return np.array(out, dtype=np.float32), params


@pytest.mark.parametrize("quant", ["none", "gguf-native"])
def test_llama3_rope_factors_in_the_file_are_applied(tmp_path, quant):
    """A Llama 3.x GGUF carries its rope scaling as rope_freqs (transformers' reader drops
    it): both loaders divide the frequencies by it, as llama.cpp does, which equals
    transformers' own llama3 rope on the original config; the note says so."""
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    from playground.core.pipeline import build_engine
    from tests.gguf_files import HEAD_DIM

    factors, params = _llama3_factors(HEAD_DIM)
    path = write_tiny_gguf(tmp_path / "llama3.gguf", Q4_K_M, rope_freqs=factors)
    engine = build_engine(RunConfig.parse(f"model={path},quant={quant}"))
    reference = LlamaRotaryEmbedding(LlamaConfig(hidden_size=256, num_attention_heads=4,
                                                 rope_parameters=params))
    got = engine.model.model.rotary_emb.inv_freq
    assert torch.allclose(got, reference.inv_freq, rtol=1e-5, atol=0)
    assert not torch.allclose(got, reference.inv_freq * torch.from_numpy(factors))  # it moved
    assert any("rope_freqs" in n for n in engine.info["notes"])


@pytest.mark.parametrize("embed_type", ["Q6_K", "Q8_0", "F16", "Q2_K"])
def test_the_input_embedding_stays_in_its_blocks(tmp_path, embed_type):
    """The table is not copied to float32: rows are de-quantized as they are looked up,
    the same bits transformers' loader makes of the whole table; the weights count the
    blocks; a tied head of a type without a kernel (Q2_K) gets a float copy of its own
    and the model still answers as the float model does."""
    from playground.core.pipeline import build_engine
    from playground.core.quant import gguf_blocks as blocks_
    from playground.core.quant.gguf_embedding import is_block_embedding

    _needs_native()
    path = write_tiny_gguf(tmp_path / "e.gguf", {**Q4_K_M, "token_embd": embed_type})
    base = build_engine(RunConfig.parse(f"model={path},quant=none,max_new_tokens=6"))
    engine = build_engine(RunConfig.parse(f"model={path},quant=gguf-native,max_new_tokens=6"))
    table = engine.model.get_input_embeddings()
    assert is_block_embedding(table) and table.type_name == embed_type
    # not a copy: a map of the file's bytes (test_real_model: only the rows a chat looks
    # up become resident); an F16 table is the tied head's own codes instead
    assert table.mapped == (embed_type != "F16")
    ids = [0, 5, 17, table.num_embeddings - 1]
    whole = base.model.get_input_embeddings().weight
    assert torch.equal(table(torch.tensor([ids]))[0], whole[ids])
    tensors = blocks_.read_blocks(path, base.model, keep_readers=True)
    assert torch.equal(blocks_.to_float(tensors["model.embed_tokens.weight"])[ids], whole[ids])
    assert engine.weights_mb < base.weights_mb - whole.numel() * 4 / 1e6 * 0.5
    if embed_type in blocks_.NATIVE + blocks_.HALF:  # F16: the head in half precision
        assert "one native call" in engine.info["decode_step"]
    else:  # the tied head has no kernel: the step is refused, with the reason
        assert "not the one-call native step: the LM head is not a native layer" in \
            engine.info["decode_step"]
    assert base.chat(HELLO).token_ids == engine.chat(HELLO).token_ids
    with pytest.raises(ValueError, match="outside the embedding table"):
        table(torch.tensor([[table.num_embeddings]]))


def test_stop_takes_effect_part_way_through_a_gguf_load(q4_k_m_file):
    """The loader reports every few tensors, and each report is where Stop takes
    effect: a stop asked during the matrices ends the load before the last of them."""
    from playground.core import jobs
    from playground.core.pipeline import build_engine

    seen: list[str] = []
    stopped = {"now": False}

    def progress(message: str) -> None:
        seen.append(message)
        if "4 of" in message and "matrices" in message:
            stopped["now"] = True  # as a click on Stop loading would, mid-way

    with pytest.raises(jobs.Cancelled):
        build_engine(RunConfig.parse(f"model={q4_k_m_file},quant=gguf-native"),
                     progress=progress, should_stop=lambda: stopped["now"])
    matrices = [m for m in seen if "matrices" in m]
    assert matrices and "4 of" in matrices[-1]  # nothing after the stop


def test_a_gguf_not_on_its_blocks_says_so_loudly(q4_k_m_file):
    """quant=none on a GGUF de-quantizes it to float32: the notes say so, with the
    memory it costs and what to pick instead."""
    from playground.core.pipeline import build_engine

    notes = build_engine(RunConfig.parse(f"model={q4_k_m_file},quant=none")).info["notes"]
    warning = next(n for n in notes if n.startswith("WARNING"))
    assert "de-quantized to float32" in warning and "MB file" in warning
    assert "quant=gguf-native" in warning
    native_notes = build_engine(RunConfig.parse(f"model={q4_k_m_file},quant=gguf-native")).info
    assert not any(n.startswith("WARNING") for n in native_notes["notes"])
