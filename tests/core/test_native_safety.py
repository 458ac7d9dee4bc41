"""The native kernels against what would make them write past a buffer, hide a NaN, read
outside the embedding table, pick a wrong scale, or fail to build without saying why."""

import ctypes
import subprocess

import pytest
import torch

from playground.core import native
from playground.core.config import RunConfig
from playground.core.quant import weight_quant

HELLO = [{"role": "user", "content": "Hello, how are you today?"}]


def _needs_native():
    if weight_quant.backend() != "native":
        pytest.skip("native kernels unavailable here")


@pytest.fixture
def wide_heads(tmp_path):
    """heads × head_dim (4 × 128 = 512) wider than hidden (64) and intermediate (256): o_proj's
    input is the widest of the model."""
    from tests.conftest import save_tiny

    return save_tiny(tmp_path / "wide-heads", head_dim=128)


@pytest.mark.parametrize("quant", ["int8-weight", "int4-weight"])
def test_scratch_covers_o_projs_input_when_heads_are_wide(wide_heads, quant):
    """The C step's scratch was sized from max(hidden, intermediate) while o_proj reads
    heads × head_dim: the kernel wrote past it (malloc(): invalid size, or a segfault)."""
    _needs_native()
    from playground.core.pipeline import build_engine

    engine = build_engine(RunConfig.parse(f"model={wide_heads},quant={quant},max_new_tokens=8"))
    assert "one native call" in engine.info["decode_step"]
    spec = engine.decoder.step.keep[0]
    widest = 4 * 128
    rows, cap = 3, 64
    # what qstep_rows lays out before the matrix scratch, and what the widest product needs
    hd, nh, nkv, hidden, inter = 128, 4, 2, 64, 256
    qkv = (nh + 2 * nkv) * hd
    before = rows * (hidden + widest + qkv + nh * hd + 2 * inter + 2 * hd + nh * cap
                     + max(qkv, 2 * inter))
    matmul = rows * (widest // 16 + widest // 32 + widest // 2)  # qblocks.c, groups >= 16
    assert native.library().qrows_scratch_floats(ctypes.byref(spec), rows, cap) >= before + matmul
    with torch.inference_mode():  # and it runs, matching transformers' forward
        prompt = engine.prompt_ids(HELLO)
        caches = [engine.make_cache(), engine.make_cache()]
        for cache in caches:
            engine.model(input_ids=torch.tensor([prompt]), cache=cache, use_cache=True)
        for token in (5, 17, 42):
            ref = engine.model(input_ids=torch.tensor([[token]]), cache=caches[0],
                               use_cache=True).logits[0, -1]
            got = engine.decoder.step(token, caches[1])
            assert float((got - ref).abs().max()) <= 1e-3 * max(1.0, float(ref.abs().max()))


@pytest.mark.parametrize("kind", ["int8", "q8_0", "int4"])
def test_a_nan_activation_comes_out_nan(kind):
    """max() dropped a NaN and the int16 conversion saturated it: a NaN input came out of
    the int8 and Q8_0 layers as finite numbers, hiding a broken model."""
    _needs_native()
    w = torch.randn(64, 96)
    if kind == "int8":
        qw = weight_quant.quantize_int8(w)
    elif kind == "int4":
        qw = weight_quant.quantize_int4(w, 32)
    else:
        scale = (w.reshape(64, 3, 32).abs().amax(-1) / 127).to(torch.float16).float()
        q = torch.round(w.reshape(64, 3, 32) / scale[..., None]).clamp(-127, 127)
        qw = weight_quant.QWeight("q8_0", q.to(torch.int8).reshape(64, 96), scale, group=32)
    layer = weight_quant.pack([qw])
    for poison in (float("nan"), float("inf")):
        x = torch.randn(3, 96)
        x[1, 40] = poison
        y = layer(x)
        assert torch.isfinite(y[0]).all() and torch.isfinite(y[2]).all()
        assert not torch.isfinite(y[1]).any()


def test_token_ids_outside_the_table_are_refused(tiny_engine):
    _needs_native()
    engine = tiny_engine("quant=int8-weight")
    vocab = engine.model.model.embed_tokens.weight.shape[0]
    cache = engine.make_cache()
    with torch.inference_mode():
        engine.model(input_ids=torch.tensor([[1, 2, 3]]), cache=cache, use_cache=True)
        for bad in (vocab, vocab + 1000, -1):
            with pytest.raises(ValueError, match="outside the embedding table"):
                engine.decoder.step(bad, cache)
        with pytest.raises(ValueError, match="outside the embedding table"):
            engine.decoder.step.rows([5, vocab], [3, 4], [0, 0], [cache], [1])


@pytest.mark.parametrize("quant", ["int8-weight", "int4-weight"])
def test_a_pass_gives_the_same_bits_on_one_thread_on_two_and_in_parts(tiny_engine, quant):
    """The server picks how a wide pass runs by speed (serve/thread_choice.py) only
    because the native rows do not depend on it: a prompt of 12 rows and a batch of 3
    sequences (then 2 more rows of each), on 1 and on 2 threads and in 2 parts of whole
    sequences a thread each, bit for bit, logits and caches."""
    _needs_native()
    engine = tiny_engine(f"quant={quant}")
    rows = engine.decoder.step.rows
    assert getattr(rows, "thread_invariant", False)
    assert rows.parts([1, 1, 2, 0], [1, 2, 3], 2) == [0, 2, 4]
    before = torch.get_num_threads()
    out = []
    try:
        for threads, split in ((1, 0), (2, 0), (2, 2)):
            torch.set_num_threads(threads)
            amx_before = native.library().qblocks_amx_calls()
            caches = [engine.make_cache() for _ in range(3)]
            with torch.inference_mode():
                prompt = rows(list(range(3, 15)), list(range(12)), [0] * 12, caches[:1], [11],
                              split=split)  # one sequence: not in parts
                batch = rows([7, 8, 9, 10], [0, 1, 0, 12], [1, 1, 2, 0], caches, [1, 2, 3],
                             split=split)
                more = rows([4, 5, 6, 7, 8, 9], [13, 14, 2, 3, 1, 2], [0, 0, 1, 1, 2, 2],
                            caches, [1, 3, 5], split=split)
                # two prompts of 16 rows in one pass: parts wide enough for AMX tiles
                fresh = [engine.make_cache() for _ in range(2)]
                wide = rows(list(range(3, 35)), list(range(16)) * 2, [0] * 16 + [1] * 16,
                            fresh, [15, 31], split=split)
            kept = [t.clone() for c in caches for layer in c.layers
                    for t in (layer.keys, layer.values)]
            if threads == 1:
                assert native.library().qblocks_amx_calls() > amx_before or \
                    native.library().qblocks_isa() != 3  # where there are tiles, they ran
            kept += [t.clone() for c in fresh for layer in c.layers
                     for t in (layer.keys, layer.values)]
            out.append((prompt, batch, more, wide, *kept))
    finally:
        torch.set_num_threads(before)
    for other in out[1:]:
        assert all(torch.equal(a, b) for a, b in zip(out[0], other, strict=True))


@pytest.mark.parametrize("seqs,out,n,want", [
    ([0, 1, 2, 3], [0, 1, 2, 3], 2, [0, 2, 4]),
    ([0, 1, 2, 3, 4, 5, 6], list(range(7)), 2, [0, 3, 7]),
    ([0] * 6 + [1, 2], [5, 6, 7], 2, [0, 6, 8]),  # 6 of 8 rows: an even share is 4, 6 <= 1.5x
    ([0] * 32 + [1, 2, 3], [31, 32, 33, 34], 2, None),  # a long prompt chunk: no parts
    ([0, 0, 0, 0], [3], 2, None),  # one sequence
    ([0, 1, 0, 1], [0, 1, 2, 3], 2, None),  # a sequence's rows apart
    ([0, 1, 2, 3], [1, 0, 2, 3], 2, None),  # out not ascending
    ([0, 1, 2, 3, 4, 5], list(range(6)), 3, [0, 2, 4, 6]),
    ([0, 1], [0, 1], 1, None),
])
def test_rows_divide_in_parts_of_whole_sequences(seqs, out, n, want):
    from playground.core.native.step import row_parts

    assert row_parts(seqs, out, n) == want


@pytest.mark.parametrize("int_act", [True, False])
@pytest.mark.parametrize("group,cols", [(32, 96), (32, 384), (64, 384), (128, 384)])
@pytest.mark.parametrize("rows", [56, 60, 64, 1000])
def test_int4_and_int8_against_an_independent_reference(monkeypatch, int_act, group, cols, rows):
    """De-quantize by hand (codes × the group's own scale + offset), multiply in float64,
    and compare: a wrong scale index for groups of 64/128 shows here."""
    _needs_native()
    monkeypatch.setattr(weight_quant, "INT_ACT", int_act)
    gen = torch.Generator().manual_seed(rows + cols + group)
    w = torch.randn(rows, cols, generator=gen)
    # scales that differ a lot from group to group, so a neighbour's scale is visibly wrong
    w *= torch.logspace(-1, 1, cols // group).repeat_interleave(group)[None, :]
    q4 = weight_quant.quantize_int4(w, group)
    q8 = weight_quant.quantize_int8(w)
    ref4 = ((q4.q.double() - 8).reshape(rows, -1, group) * q4.scale.double()[..., None]
            + q4.zero.double()[..., None]).reshape(rows, cols)
    ref8 = q8.q.double() * q8.scale.double()[:, None]
    layer4, layer8 = weight_quant.pack([q4]), weight_quant.pack([q8])
    for m in range(1, 10):
        x = torch.randn(m, cols, generator=gen)
        for layer, ref in ((layer4, ref4), (layer8, ref8)):
            want = x.double() @ ref.T
            got = layer(x).double()
            assert float((got - want).abs().max()) <= 2e-4 * float(want.abs().max()), (m, layer)


def test_a_compiler_that_hangs_is_one_reason_not_an_exception(monkeypatch, tmp_path):
    def hang(*args, **kwargs):
        raise subprocess.TimeoutExpired(args[0], native.COMPILE_TIMEOUT_S)

    monkeypatch.setattr(native.subprocess, "run", hang)
    monkeypatch.setattr(native.paths, "cache_dir", lambda: tmp_path)
    with pytest.raises(OSError, match="took over"):
        native.build()
    assert not list((tmp_path / "native").glob("*.failed"))  # a slow machine may try again


def test_a_failed_compile_is_remembered_not_retried_every_start(monkeypatch, tmp_path):
    calls = []

    def fail(cmd, **kwargs):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 1, "", "qgemv.c:1: error: broken\n")

    monkeypatch.setattr(native.subprocess, "run", fail)
    monkeypatch.setattr(native.paths, "cache_dir", lambda: tmp_path)
    for _ in range(3):
        with pytest.raises(OSError, match="error: broken"):
            native.build()
    assert len(calls) == 1


def test_off_linux_the_reason_is_not_a_missing_avx2(monkeypatch):
    monkeypatch.setattr(native.platform, "system", lambda: "Darwin")
    monkeypatch.setattr(native.platform, "machine", lambda: "x86_64")
    monkeypatch.delenv(native.PREBUILT_ENV, raising=False)
    native._load.cache_clear()
    try:
        lib, why = native._load()
        assert lib is None and "Linux only" in why and "AVX2" not in why
    finally:
        native._load.cache_clear()


@pytest.mark.parametrize("quant", ["int8-weight", "int4-weight"])
def test_qwen2_biases_run_in_the_one_call_step(tmp_path, quant):
    """q/k/v biases (Qwen2, Qwen2.5) are added inside the C step instead of sending the
    model to the slower Python step; logits match transformers' forward step by step, and
    the batched step gives a row the same bits alone or beside others."""
    _needs_native()
    from playground.core.pipeline import build_engine
    from tests.conftest import save_tiny
    from tests.core.test_batched_step import PROMPTS, _run

    folder = save_tiny(tmp_path / "qwen2", arch="qwen2")
    engine = build_engine(RunConfig.parse(f"model={folder},quant={quant},max_new_tokens=8"))
    assert "one native call" in engine.info["decode_step"]
    with torch.inference_mode():
        prompt = engine.prompt_ids(HELLO)
        caches = [engine.make_cache(), engine.make_cache()]
        for cache in caches:
            engine.model(input_ids=torch.tensor([prompt]), cache=cache, use_cache=True)
        for token in (5, 17, 42, 99, 7) * 6:
            ref = engine.model(input_ids=torch.tensor([[token]]), cache=caches[0],
                               use_cache=True).logits[0, -1]
            got = engine.decoder.step(token, caches[1])
            assert float((got - ref).abs().max()) <= 1e-3 * max(1.0, float(ref.abs().max()))
    together, _, _ = _run(engine, PROMPTS, steps=8, chunk=5)
    for i, prompt in enumerate(PROMPTS):
        alone, _, _ = _run(engine, [prompt], steps=8, chunk=64)
        assert alone[0] == together[i]
