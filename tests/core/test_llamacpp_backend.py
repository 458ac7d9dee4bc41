"""backend=llamacpp: a tiny GGUF written in the test, decoded through llama-cpp-python by
the engine's own loop, against llama.cpp's own generate; the config's one-line errors."""

from __future__ import annotations

import sys

import pytest

from playground.core.config import ConfigError, RunConfig
from tests.gguf_files import write_tiny_gguf

HELLO = [{"role": "user", "content": "Hello, how are you today?"}]
TYPES = dict.fromkeys(("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up",
                       "ffn_down", "token_embd"), "Q8_0")


def _needs_llamacpp():
    from playground.core.backends import llamacpp_engine

    why = llamacpp_engine.available()
    if why:
        pytest.skip(why)


@pytest.mark.parametrize("spec,words", [
    ("kv_type=q8_0", "needs backend=llamacpp"),
    ("batch=64", "needs backend=llamacpp"),
    ("backend=llamacpp,kv_type=q8_0", "needs flash_attn=on"),
    ("backend=llamacpp,kv_type=q5_1", "allowed: f16, q8_0, q4_0"),
    ("backend=llamacpp,quant=int4-weight", "the file's own blocks"),
    ("backend=llamacpp,model=/some/folder", "runs a GGUF file"),
    ("backend=llamacpp,gpu_layers=all", "needs device=cuda or mps"),
    ("backend=llamacpp,batch=0", "allowed: 1 to 8192"),
    ("quant=q4_k_m", "needs backend=llamacpp"),
    ("backend=llamacpp,prune=0.3", "not on backend=llamacpp"),
])
def test_config_errors_are_one_line(spec, words):
    with pytest.raises(ConfigError, match=words) as err:
        RunConfig.parse(spec)
    assert "\n" not in str(err.value)


def test_the_spec_round_trips_gpu_layers_all():
    cfg = RunConfig.parse("backend=llamacpp,device=cuda,gpu_layers=all,flash_attn=on,kv_type=q4_0")
    assert cfg.gpu_layers == -1 and "gpu_layers=all" in cfg.format()
    assert RunConfig.parse(cfg.format()) == cfg == RunConfig.from_dict(cfg.to_dict())


def test_without_the_extra_the_backend_names_the_command(monkeypatch):
    from playground.core.optimize.base import OptimizationError
    from playground.core.pipeline import build_engine

    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # as if not installed
    with pytest.raises(OptimizationError, match="make llamacpp"):
        build_engine(RunConfig.parse("backend=llamacpp"))


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    return write_tiny_gguf(tmp_path_factory.mktemp("llamacpp") / "tiny-q8_0.gguf", TYPES)


def _engine(path, spec=""):
    from playground.core.pipeline import build_engine

    engine = build_engine(RunConfig.parse(
        f"model={path},backend=llamacpp,threads=2,max_new_tokens=12,{spec}".rstrip(",")))
    engine.eos_ids = set()  # random weights: every reply runs to max_new_tokens
    return engine


def test_greedy_tokens_are_llamacpps_own(tiny_gguf):
    """The engine's loop (eval a token, read its logits, argmax) gives the tokens
    llama.cpp's own generate gives from the same prompt ids."""
    _needs_llamacpp()
    import llama_cpp

    engine = _engine(tiny_gguf)
    result = engine.chat(HELLO)
    assert len(result.token_ids) == 12 and result.metrics.ttft_ms > 0
    assert "llama.cpp" in engine.decode_path() and engine.info["llama_cpp_version"]
    assert engine.info["architecture"] == "GGUF llama"
    ids = engine.prompt_ids(HELLO)
    own = llama_cpp.Llama(str(tiny_gguf), n_ctx=512, n_threads=2, verbose=False)
    expected = []
    for token in own.generate(ids, temp=0.0, top_k=1, reset=True):
        expected.append(int(token))
        if len(expected) == 12:
            break
    assert result.token_ids == expected


def test_prefix_cache_reuses_the_conversation_and_answers_the_same(tiny_gguf):
    _needs_llamacpp()
    cached, fresh = _engine(tiny_gguf, "prefix_cache=on"), _engine(tiny_gguf)
    first = cached.chat(HELLO)
    turn = HELLO + [{"role": "assistant", "content": first.reply},
                    {"role": "user", "content": "And tomorrow?"}]
    second = cached.chat(turn)
    assert second.timeline.prefilled_tokens < second.metrics.prompt_tokens / 2
    assert second.token_ids == fresh.chat(turn).token_ids


def test_stop_and_the_context_limit(tiny_gguf):
    from playground.core.engine import GenerationError

    _needs_llamacpp()
    engine = _engine(tiny_gguf)
    seen = []
    result = engine.chat(HELLO, on_token=seen.append, should_stop=lambda: len(seen) >= 3)
    assert 3 <= len(result.token_ids) < 12
    with pytest.raises(GenerationError, match="context"):
        engine.chat([{"role": "user", "content": "lighthouse " * 1200}])
    assert len(engine.chat(HELLO).token_ids) == 12  # and it still answers


def test_quality_against_torch_on_the_same_file(tiny_gguf):
    """The file's own blocks on llama.cpp against the same file de-quantized on torch
    (quant=none): llama.cpp rounds activations to 8 bits for Q8_0 products, so not 0."""
    _needs_llamacpp()
    from playground.core import quality
    from playground.core.pipeline import build_engine

    torch_engine = build_engine(RunConfig.parse(f"model={tiny_gguf},quant=none"))
    ref = quality.reference(torch_engine.model, torch_engine.tokenizer)
    scores = quality.compare_to(ref, _engine(tiny_gguf).model)
    print(scores)
    assert scores["kl_mean"] < 1e-2 and scores["top1_agreement"] > 0.9



def test_presets_put_llamacpp_beside_the_others(monkeypatch):
    import importlib.util

    from playground.core.presets import preset

    base = RunConfig.parse("model=/m/model-Q4_K_M.gguf,threads=2")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "llama_cpp" else real(name, *a))
    with pytest.raises(ValueError, match="make llamacpp"):
        preset("llama.cpp q8_0 KV", base)
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: object() if name == "llama_cpp" else real(name, *a))
    own = preset("llama.cpp (file's own blocks)", base)
    assert own.backend == "llamacpp" and own.model == base.model and own.quant == "none"
    kv = preset("llama.cpp q8_0 KV", base)
    assert (kv.kv_type, kv.flash_attn, kv.threads) == ("q8_0", True, 2)


def test_quant_requantizes_once_with_llamacpps_quantizer(tmp_path, monkeypatch):
    """quant=q8_0 on an F16 file: llama.cpp's quantizer writes it once into the cache
    (the file's type says Q8_0), the second load takes the cached file; from a file that
    is already quantized the note says the rounding errors add up."""
    _needs_llamacpp()
    from playground.core.formats import model_scan

    monkeypatch.setenv("PLAYGROUND_CACHE", str(tmp_path / "cache"))
    half = write_tiny_gguf(tmp_path / "tiny-f16.gguf", dict.fromkeys(TYPES, "F16"))
    first = _engine(half, "quant=q8_0")
    note = next(n for n in first.info["notes"] if "re-quantized" in n)
    assert "Q8_0" in note and "already quantized" not in note and "cached" not in note
    made = list((tmp_path / "cache" / "llamacpp").glob("*-q8_0.gguf"))
    assert len(made) == 1 and model_scan.header_fields(made[0])["general.file_type"] == 7
    again = _engine(half, "quant=q8_0")
    assert any("cached" in n for n in again.info["notes"])
    assert again.chat(HELLO).token_ids == first.chat(HELLO).token_ids
    from_q8 = _engine(write_tiny_gguf(tmp_path / "tiny-q8.gguf", TYPES), "quant=q4_0")
    assert any("already quantized" in n for n in from_q8.info["notes"])
    assert len(from_q8.chat(HELLO).token_ids) == 12


def test_llamacpps_own_buffer_report(tiny_gguf):
    """Memory as llama.cpp reports it: the KV buffer is the context's slots × layers ×
    K and V × kv heads × head size in the KV type, and a q8_0 KV is 34/64 of f16's."""
    _needs_llamacpp()
    from tests.gguf_files import HEAD_DIM, KV_HEADS, LAYERS

    engine = _engine(tiny_gguf)
    found = engine.info["llama_cpp_buffers_mb"]
    assert found["model"] > 0 and found["compute"] > 0
    f16 = 1024 * LAYERS * 2 * KV_HEADS * HEAD_DIM * 2 / 1e6
    assert found["kv"] == pytest.approx(f16, abs=0.06)  # the info rounds to 0.1 MB
    assert engine.weights_mb == pytest.approx(found["model"], abs=0.06)
    assert any(n.startswith("llama.cpp's buffers: model") for n in engine.info["notes"])
    q8 = _engine(tiny_gguf, "kv_type=q8_0,flash_attn=on").info["llama_cpp_buffers_mb"]
    assert q8["kv"] == pytest.approx(f16 * 34 / 64, abs=0.06)


def test_the_buffer_lines_parse():
    from playground.core.backends import llamacpp_log

    lines = ["load_tensors:   CPU_Mapped model buffer size =   300.00 MiB\n",
             "load_tensors:   CPU_REPACK model buffer size =   336.00 MiB\n",
             "llama_kv_cache:        CPU KV buffer size =   128.00 MiB\n",
             "llama_context:        CPU compute buffer size =   254.50 MiB\n", "other\n"]
    found = llamacpp_log.buffers(lines)
    assert found["model"] == {"CPU_Mapped": pytest.approx(314.57, abs=0.01),
                              "CPU_REPACK": pytest.approx(352.32, abs=0.01)}
    assert llamacpp_log.describe(found) == ("model 667 MB (CPU_Mapped 315, CPU_REPACK 352), "
                                            "KV 134 MB (CPU), compute 267 MB (CPU)")
    assert llamacpp_log.tensor_progress("[  12/ 147]   blk.1.attn_k.weight - [...]") == (12, 147)
    assert llamacpp_log.tensor_progress("general.name str = [1/2] model") is None
    assert llamacpp_log.tensor_progress("[ 0/ 0] nothing") is None


def test_quantizing_reports_progress_and_a_stop_waits_for_the_file(tmp_path, monkeypatch):
    """The quantizer's per-tensor log becomes progress; a Stop during it ends the load
    once the file is written, and the file is kept: the next load takes it cached."""
    _needs_llamacpp()
    from playground.core.jobs import Cancelled
    from playground.core.pipeline import build_engine

    monkeypatch.setenv("PLAYGROUND_CACHE", str(tmp_path / "cache"))
    half = write_tiny_gguf(tmp_path / "tiny-f16.gguf", dict.fromkeys(TYPES, "F16"))
    seen: list[str] = []
    cfg = RunConfig.parse(f"model={half},backend=llamacpp,threads=2,quant=q4_0")
    with pytest.raises(Cancelled):
        build_engine(cfg, progress=seen.append, should_stop=lambda: any("%" in m for m in seen))
    assert any("Quantizing" in m and "% (tensor" in m for m in seen), seen
    assert len(list((tmp_path / "cache" / "llamacpp").glob("*-q4_0.gguf"))) == 1
    assert not list((tmp_path / "cache" / "llamacpp").glob("*.tmp*"))
    again = build_engine(cfg)
    assert any("cached" in n for n in again.info["notes"])


def test_a_build_with_llamacpps_amx_kernels_is_refused_in_one_line(monkeypatch):
    """llama.cpp's AMX kernels segfaulted at the first product on a Xeon (issue #20824):
    a build that has them is named and refused before any load, unless allowed."""
    from playground.core.backends import llamacpp_engine as le

    amx = "CPU : SSE3 = 1 | AVX512_VNNI = 1 | AMX_INT8 = 1 | OPENMP = 1 | "
    monkeypatch.delenv(le.ALLOW_AMX, raising=False)
    assert le.amx_build(amx)
    assert not le.amx_build(amx.replace("AMX_INT8 = 1", "AMX_INT8 = 0"))
    assert not le.amx_build("CPU : SSE3 = 1 | AVX2 = 1 | ")
    monkeypatch.setenv(le.ALLOW_AMX, "1")
    assert not le.amx_build(amx)
    monkeypatch.delenv(le.ALLOW_AMX)
    fake = type(sys)("llama_cpp")
    fake.llama_supports_gpu_offload = lambda: False
    fake.llama_print_system_info = lambda: amx.encode()
    monkeypatch.setitem(sys.modules, "llama_cpp", fake)
    why = le.check(RunConfig.parse("backend=llamacpp"), "cpu")
    assert why and "AMX" in why and "make llamacpp" in why and "\n" not in why
