import json

import pytest

from playground.core import registry
from playground.core.config import RunConfig
from playground.core.decode.decoders import AssistedDecoder
from playground.core.distill import DistillSettings, distill, keep_layers, lr_at, pick_layers
from playground.core.models import load
from playground.core.optimize import OptimizationError
from playground.core.pipeline import build_engine

HELLO = [{"role": "user", "content": "Hello, how are you today?"}]


def settings(teacher, tmp_path, **overrides):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(["Hello there.", "What is the capital of France?",
                                  "Numbers: 1 2 3", "How are you today?", "Thank you!",
                                  "The quick brown fox."]))
    base = dict(teacher=str(teacher), layers=2, steps=6, seq_len=32, batch=2, reply_tokens=24,
                gen_batch=3, checkpoint_every=2, prompts=str(prompts), openings="",
                out=str(tmp_path / "s"),
                lr=1e-3, lr_min=1e-4)
    base.update(overrides)
    return DistillSettings(**base)


@pytest.fixture(scope="module")
def built(tiny4_dir, tmp_path_factory):
    """One distillation shared by the tests that only read its result."""
    tmp = tmp_path_factory.mktemp("distilled")
    home = tmp / "home"
    mp = pytest.MonkeyPatch()
    mp.setenv("PLAYGROUND_HOME", str(home))
    report = distill(settings(tiny4_dir, tmp, steps=12))
    mp.undo()
    return report, home


def test_keep_layers_gives_a_loadable_smaller_model(tiny4_dir, tmp_path):
    loaded = load(str(tiny4_dir))
    model = keep_layers(loaded.model, [0, 3])
    assert model.config.num_hidden_layers == 2 and len(model.model.layers) == 2
    assert [layer.self_attn.layer_idx for layer in model.model.layers] == [0, 1]
    model.save_pretrained(tmp_path / "small")
    loaded.tokenizer.save_pretrained(tmp_path / "small")
    engine = build_engine(RunConfig(model=str(tmp_path / "small"), max_new_tokens=5))
    assert len(engine.model.model.layers) == 2
    # the KV cache works with renumbered layers: cached decoding equals full recomputation
    engine.eos_ids = set()
    plain = build_engine(RunConfig(model=str(tmp_path / "small"), max_new_tokens=5, kv_cache=False))
    plain.eos_ids = set()
    cached = engine.chat(HELLO)
    assert len(cached.token_ids) == 5 and cached.token_ids == plain.chat(HELLO).token_ids


def test_pick_layers_by_importance_keeps_order():
    assert pick_layers([5.0, 0.1, 0.3, 9.0], 2) == [0, 3]
    assert lr_at(0, 10, 3e-4, 3e-5) == pytest.approx(3e-4)
    assert lr_at(9, 10, 3e-4, 3e-5) == pytest.approx(3e-5)


def test_distillation_reports_size_and_quality(built):
    from pathlib import Path

    report, _ = built
    assert report.steps == 12 and len(report.kept_layers) == 2
    assert len(report.layer_kl) == 4 and all(kl >= 0 for kl in report.layer_kl)
    assert report.params < report.teacher_params
    assert report.weights_mb < report.teacher_weights_mb
    assert report.kl_before > 0 and report.kl_after >= 0
    saved = json.loads((Path(report.out) / "distill_report.json").read_text())
    assert saved["steps"] == 12 and saved["kept_layers"] == report.kept_layers


def test_losses_go_down(tiny4_dir, tmp_path):
    import torch

    openings = tmp_path / "openings.txt"
    openings.write_text("The quick brown fox\nNumbers: 1 2\n")
    report = distill(settings(tiny4_dir, tmp_path, steps=16, openings=str(openings)))
    corpus = torch.load(tmp_path / "s" / "corpus.pt", weights_only=True)
    assert len(corpus) == 6 + 2  # chat replies and plain-text continuations
    losses = torch.load(tmp_path / "s" / "checkpoint.pt", weights_only=False)["losses"]
    assert len(losses) == 16
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4
    assert report.loss_last == losses[-1]


def test_resume_continues_from_the_checkpoint(tiny4_dir, tmp_path):
    distill(settings(tiny4_dir, tmp_path, steps=4))
    corpus = tmp_path / "s" / "corpus.pt"
    stamp = corpus.stat().st_mtime_ns
    report = distill(settings(tiny4_dir, tmp_path, steps=8, resume=True))
    assert report.steps == 8
    assert corpus.stat().st_mtime_ns == stamp  # the teacher's replies were not regenerated
    import torch

    assert len(torch.load(tmp_path / "s" / "checkpoint.pt", weights_only=False)["losses"]) == 8


def test_missing_student_errors_name_the_model_and_the_fix(tiny_dir, monkeypatch):
    with pytest.raises(OptimizationError) as err:
        build_engine(RunConfig(model=str(tiny_dir), variant="distilled"))
    assert "playground distill" in str(err.value) and str(tiny_dir) in str(err.value)
    with pytest.raises(OptimizationError) as err:
        build_engine(RunConfig(model="HuggingFaceTB/SmolLM2-360M-Instruct", variant="distilled"))
    assert "HuggingFaceTB/SmolLM2-135M-Instruct" in str(err.value)
    assert "hf download" in str(err.value)


def test_user_toml_registers_a_pair(tiny_dir, tiny4_dir):
    registry.user_path().write_text(f'[students]\n"{tiny4_dir}" = "{tiny_dir}"\n')
    assert registry.registered_student(str(tiny4_dir)) == str(tiny_dir)
    engine = build_engine(RunConfig(model=str(tiny4_dir), variant="distilled", max_new_tokens=3))
    assert len(engine.model.model.layers) == 2
    registry.user_path().write_text("[students\n")
    with pytest.raises(Exception, match="students.toml"):
        registry.registered_student(str(tiny4_dir))


def test_built_student_is_registered_and_drafts_identically(built, tiny4_dir, monkeypatch):
    report, home = built
    monkeypatch.setenv("PLAYGROUND_HOME", str(home))
    student = build_engine(RunConfig(model=str(tiny4_dir), variant="distilled",
                                     max_new_tokens=8))
    assert len(student.model.model.layers) == 2
    teacher = build_engine(RunConfig(model=str(tiny4_dir), max_new_tokens=16))
    drafted = build_engine(RunConfig(model=str(tiny4_dir), draft="distilled", max_new_tokens=16))
    assert isinstance(drafted.decoder, AssistedDecoder)
    assert drafted.info["decode_step"].startswith("transformers generate() (speculative")
    prompts = [HELLO, [{"role": "user", "content": "What is the capital of France?"}],
               [{"role": "user", "content": "Numbers: 1 2 3"}]]
    for messages in prompts:
        alone, assisted = teacher.chat(messages), drafted.chat(messages)
        assert assisted.token_ids == alone.token_ids  # greedy output is the teacher's own
        rate = assisted.metrics.draft_acceptance
        assert rate is not None and 0.0 <= rate <= 1.0  # drafted tokens were counted
        assert assisted.extra["drafted"] > 0
        assert len(assisted.timeline.token_times) == assisted.metrics.new_tokens


def test_draft_with_a_different_tokenizer_is_refused(tiny_dir, tmp_path):
    from conftest import save_tiny

    other = save_tiny(tmp_path / "other", vocab=300)
    registry.user_path().write_text(f'[students]\n"{tiny_dir}" = "{other}"\n')
    with pytest.raises(OptimizationError, match="same tokenizer"):
        build_engine(RunConfig(model=str(tiny_dir), draft="distilled"))


def test_random_windows_are_slices_of_the_stream():
    import torch

    from playground.core.distill import random_windows, token_stream

    stream = token_stream([[1, 2, 3], list(range(10, 40))], seq_len=8)
    assert stream.tolist()[:4] == [1, 2, 3, 10]
    windows = random_windows(stream, 8, 16, torch.Generator().manual_seed(0))
    assert windows.shape == (16, 8)
    starts = set()
    for row in windows.tolist():
        start = stream.tolist().index(row[0])
        assert row == stream.tolist()[start : start + 8]
        starts.add(start)
    assert len(starts) > 1  # not one fixed row
    with pytest.raises(ValueError, match="fewer than one"):
        token_stream([[1, 2]], seq_len=8)


def test_teacher_corpus_samples_unless_told_greedy(tiny_dir):
    import torch

    from playground.core.distill import teacher_corpus

    loaded = load(str(tiny_dir))
    prompts = ["Hello there.", "The quick brown fox."]

    def corpus(top_p, seed):
        torch.manual_seed(seed)
        return teacher_corpus(loaded.model, loaded.tokenizer, prompts, max_new_tokens=16,
                              batch=2, progress=lambda _e: None, top_p=top_p)

    assert corpus(None, 0) == corpus(None, 1)  # greedy ignores the seed
    assert corpus(0.95, 0) == corpus(0.95, 0)  # seeded sampling is reproducible
    assert corpus(0.95, 0) != corpus(0.95, 1)


def test_every_known_pair_can_match_a_model_value():
    """A teacher id the model field refuses (no owner/ prefix) could never match: each
    known teacher and student resolves as a hub id, and looks itself up."""
    from playground.core import models

    for teacher, student in registry.KNOWN.items():
        for name in (teacher, student):  # read as hub ids (cached or not: said so)
            try:
                assert models.resolve(name).kind == "hub"
            except models.ModelError as exc:
                assert f"hub id '{name}'" in str(exc)
        assert registry.registered_student(teacher) == student


def test_layers_are_picked_on_the_calibration_text_not_the_evaluation_text(tiny4_dir, tmp_path,
                                                                          monkeypatch):
    import torch

    from playground.core import distill as distill_module
    from playground.core import quality

    seen = []
    real = distill_module.layer_importance

    def recording(model, windows, reference, should_stop=None):
        seen.append(windows)
        return real(model, windows, reference, should_stop)

    monkeypatch.setattr(distill_module, "layer_importance", recording)
    distill(settings(tiny4_dir, tmp_path, steps=1))
    tokenizer = load(str(tiny4_dir)).tokenizer
    assert torch.equal(seen[0], quality.calibration_windows(tokenizer)[:2])
    assert not torch.equal(seen[0], quality.eval_windows(tokenizer)[:2])


@pytest.mark.parametrize("native", [False, True])
def test_training_uses_bf16_only_where_it_pays(tiny4_dir, tmp_path, monkeypatch, native):
    """Emulated bf16 was 21× slower a step than float32 on an AVX2 CPU: autocast only
    where the measurement says it pays, and the report says which."""
    import torch

    from playground.core import distill as distill_module

    monkeypatch.setattr(distill_module, "bf16_pays", lambda: native)
    seen: list[bool] = []
    real = torch.autocast

    def recording(device, dtype=None, enabled=True, **kwargs):
        seen.append(enabled)
        return real(device, dtype=dtype, enabled=enabled, **kwargs)

    monkeypatch.setattr(torch, "autocast", recording)
    report = distill(settings(tiny4_dir, tmp_path, steps=2))
    assert seen == [native, native]
    assert ("bf16 autocast" in report.notes) is native
