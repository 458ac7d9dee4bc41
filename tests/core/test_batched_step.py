"""Batched rows (continuous batching): with the native step each row gets the same bits
whatever else is in the pass; with float models (lean_rows) the same logits within
float rounding; and a prompt fed as rows equals transformers' prefill."""

import pytest
import torch

from playground.core.quant import weight_quant

HELLO = [{"role": "user", "content": "Hello there"}]
PROMPTS = [HELLO, [{"role": "user", "content": "Name a colour, please, and then another"}],
           [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Why?"}]]
SPECS = ["quant=int8-weight", "quant=int4-weight,quant_group=64"]


@pytest.fixture(autouse=True)
def _native_only(request, monkeypatch):
    spec = getattr(request.node, "callspec", None)
    if spec is not None and spec.params.get("spec") == "":
        return  # the float rows need no native kernels
    if weight_quant.backend() != "native":
        pytest.skip("native kernels unavailable here")
    from playground.core.native import step

    monkeypatch.setattr(step, "INITIAL_CAPACITY", 16)  # buffers grow inside the test


@pytest.mark.parametrize("spec", SPECS)
def test_matrix_kernels_give_a_row_the_same_bits_alone_or_in_a_tile(tiny_engine, spec):
    engine = tiny_engine(spec)
    layer = engine.model.model.layers[0]
    for module in (layer.self_attn.__dict__["fused_qkv"], layer.mlp.down_proj):
        fn, args = module.kernel()
        for rows in range(2, 9):  # tiles of 4, 3 and 2 and single rows
            x = torch.randn(rows, module.in_features)
            together = fn(x, *args)
            alone = torch.cat([fn(x[i : i + 1], *args) for i in range(rows)])
            assert torch.equal(together, alone), (module, rows)


def _run(engine, prompts, steps, chunk):
    """Greedy decode of ``prompts`` together through rows(): prompts in chunks of ``chunk``
    rows per pass beside the others' decode rows, as the batch scheduler feeds them."""
    from playground.core.serve.batching import batched_rows

    rows = batched_rows(engine)
    ids = [engine.prompt_ids(p) for p in prompts]
    caches = [engine.make_cache() for _ in prompts]
    fed, new, logits_seen = [0] * len(ids), [[] for _ in ids], [[] for _ in ids]
    with torch.inference_mode():
        while any(len(n) < steps for n in new):
            tokens, positions, seqs, out, owners = [], [], [], [], []
            for s, prompt in enumerate(ids):
                if fed[s] < len(prompt):
                    take = prompt[fed[s] : fed[s] + chunk]
                    tokens += take
                    positions += range(fed[s], fed[s] + len(take))
                    seqs += [s] * len(take)
                    fed[s] += len(take)
                    if fed[s] < len(prompt):
                        continue
                elif len(new[s]) < steps:
                    tokens.append(new[s][-1])
                    positions.append(len(prompt) + len(new[s]) - 1)
                    seqs.append(s)
                else:
                    continue
                out.append(len(tokens) - 1)
                owners.append(s)
            logits = rows(tokens, positions, seqs, caches, out)
            for i, s in enumerate(owners):
                logits_seen[s].append(logits[i].clone())
                new[s].append(int(logits[i].argmax()))
    return new, logits_seen, caches


@pytest.mark.parametrize("spec", SPECS + [""])
def test_a_sequence_gets_the_same_logits_alone_or_batched(tiny_engine, spec):
    engine = tiny_engine(spec)
    together, logits_together, _ = _run(engine, PROMPTS, steps=20, chunk=5)
    for s, prompt in enumerate(PROMPTS):
        alone, logits_alone, _ = _run(engine, [prompt], steps=20, chunk=64)
        assert alone[0] == together[s]
        for a, b in zip(logits_alone[0], logits_together[s], strict=True):
            if spec:  # the native step: bit for bit
                assert torch.equal(a, b)
            else:  # float32 matrix products pick their kernel by row count
                assert torch.allclose(a, b, atol=1e-5, rtol=0)


@pytest.mark.parametrize("spec", [SPECS[0], ""])
def test_prompt_rows_attend_causally_like_transformers_prefill(tiny_engine, spec):
    """A prompt fed as rows in chunks leaves the same keys/values and last logits as
    transformers' forward over the prompt (which is what the single-stream engine runs)."""
    engine = tiny_engine(spec)
    prompt = engine.prompt_ids(PROMPTS[1])
    _new, logits, caches = _run(engine, [PROMPTS[1]], steps=1, chunk=7)
    with torch.inference_mode():
        reference = engine.make_cache()
        hf = engine.model(input_ids=torch.tensor([prompt]), cache=reference,
                          use_cache=True).logits[0, -1]
    assert float((logits[0][0] - hf).abs().max()) <= 1e-4 * max(1.0, float(hf.abs().max()))
    for mine, theirs in zip(caches[0].layers, reference.layers, strict=True):
        assert tuple(mine.keys.shape) == tuple(theirs.keys.shape) == (1, 2, len(prompt), 16)
        assert torch.allclose(mine.keys, theirs.keys, atol=1e-4)
        assert torch.allclose(mine.values, theirs.values, atol=1e-4)


def test_64_wide_heads_attend_like_transformers_and_alike_alone_or_batched(tmp_path):
    """Heads of 64 (the default model's) take the attention's register path in qstep.c;
    the tiny model's heads are 16 wide, so this one is built with head_dim 64."""
    from conftest import save_tiny

    from playground.core.config import RunConfig
    from playground.core.pipeline import build_engine

    folder = save_tiny(tmp_path / "hd64", head_dim=64)
    engine = build_engine(RunConfig.parse(SPECS[0], base=RunConfig(model=str(folder))))
    together, logits_together, caches = _run(engine, PROMPTS, steps=12, chunk=5)
    assert tuple(caches[0].layers[0].keys.shape)[-1] == 64
    for s, prompt in enumerate(PROMPTS):
        alone, logits_alone, _ = _run(engine, [prompt], steps=12, chunk=64)
        assert alone[0] == together[s]
        assert all(torch.equal(a, b) for a, b in zip(logits_alone[0], logits_together[s], strict=True))
    prompt = engine.prompt_ids(PROMPTS[1])
    with torch.inference_mode():
        hf = engine.model(input_ids=torch.tensor([prompt]), cache=engine.make_cache(),
                          use_cache=True).logits[0, -1]
    _new, logits, _ = _run(engine, [PROMPTS[1]], steps=1, chunk=7)
    assert float((logits[0][0] - hf).abs().max()) <= 1e-4 * max(1.0, float(hf.abs().max()))


def test_a_reused_prefix_gives_the_bits_a_recomputed_one_does(tiny_engine):
    from playground.core.serve.prefix_store import PrefixStore

    engine = tiny_engine(SPECS[1])
    rows = engine.decoder.step.rows
    store = PrefixStore(max_entries=2)
    first = engine.prompt_ids(PROMPTS[1])
    second = engine.prompt_ids(PROMPTS[1] + [{"role": "assistant", "content": "Red."},
                                             {"role": "user", "content": "And?"}])
    with torch.inference_mode():
        cache = engine.make_cache()
        rows(first, list(range(len(first))), [0] * len(first), [cache], [len(first) - 1])
        store.store(first, cache)
        seeded, fresh = engine.make_cache(), engine.make_cache()
        n = store.seed(second, seeded)
        assert n == common(first, second) and 0 < n < len(second)
        a = rows(second[n:], list(range(n, len(second))), [0] * (len(second) - n), [seeded],
                 [len(second) - n - 1])
        b = rows(second, list(range(len(second))), [0] * len(second), [fresh],
                 [len(second) - 1])
    assert torch.equal(a, b)
    assert store.seed(first, engine.make_cache()) == len(first) - 1  # one left to prefill
    assert store.seed([9999, 1, 2], engine.make_cache()) == 0
    store.store([1, 2, 3, 4, 5], fresh)
    store.store([6, 7, 8, 9, 10], fresh)  # two entries kept: the oldest (first) went
    assert store.seed(first, engine.make_cache()) == 0 and store.hits == 2


def common(a, b):
    from playground.core.engine import common_prefix_len

    return common_prefix_len(a, b)


def test_int8_dynamic_interleaves_instead_of_batching(tiny_engine):
    """Its activations share one scale per matrix, so a batch would change a reply."""
    from playground.core.serve.batching import batched_rows, describe

    engine = tiny_engine("quant=int8-dynamic")
    assert batched_rows(engine) is None
    assert "interleaved only" in describe(engine)
    assert batched_rows(tiny_engine("")) is not None
