"""Work without a token loop stops part-way too: a load at its next stage, quality
scoring at its next batch, a teacher's corpus at its next batch of replies."""

import pytest

from playground.core import quality
from playground.core.compare import run_compare
from playground.core.config import RunConfig
from playground.core.jobs import Cancelled, CancelToken, Job
from playground.core.pipeline import build_engine

PROMPTS = [[{"role": "user", "content": "Hello there."}]]


def test_each_job_has_its_own_token():
    first, second = Job("reply"), Job("reply")
    first.cancel()
    assert first.token() and not second.token() and first.id != second.id


def test_a_load_stops_at_its_next_stage(tiny_dir):
    token = CancelToken()
    stages: list[str] = []

    def progress(message: str) -> None:
        stages.append(message)
        if message.startswith("Applying"):
            token.cancel()  # a Stop while the quantizer runs

    config = RunConfig(model=str(tiny_dir), quant="int8-dynamic")
    with pytest.raises(Cancelled, match="loading stopped"):
        build_engine(config, progress=progress, should_stop=token)
    assert "Measuring memory bandwidth…" not in stages and "Ready" not in stages
    assert build_engine(config).model is not None  # nothing left half-built


class CountingModel:
    """The model's forward, counting batches."""

    def __init__(self, model):
        self.model, self.calls = model, 0

    def parameters(self):
        return self.model.parameters()

    def __call__(self, **kwargs):
        self.calls += 1
        return self.model(**kwargs)


def test_quality_scoring_stops_at_its_next_batch(tiny_engine):
    engine = tiny_engine()
    windows = quality.eval_windows(engine.tokenizer)
    assert windows.shape[0] > quality.BATCH  # more than one batch to stop between
    model = CountingModel(engine.model)
    with pytest.raises(Cancelled, match="quality scoring stopped"):
        quality.score(model, windows, should_stop=lambda: model.calls >= 1)
    assert model.calls == 1


def test_a_comparison_stopped_while_scoring_keeps_the_timed_rounds(tiny_dir):
    base = RunConfig(model=str(tiny_dir), max_new_tokens=4)
    statuses: list[str] = []
    token = CancelToken()

    def status(message: str) -> None:
        statuses.append(message)
        if "scoring quality" in message and "int8-dynamic" in message:
            token.cancel()

    out = run_compare([base, base.replace(quant="int8-dynamic")], PROMPTS, warmup=0,
                      repeats=1, status=status, should_stop=token)
    assert out.cancelled and not out.complete
    assert [r.config["quant"] for r in out.results] == ["none", "int8-dynamic"]
    assert out.results[0].quality["kl_mean"] == 0.0
    assert out.results[1].quality is None and out.results[1].runs  # timed, not scored
    assert out.results[1].info["incomplete"] == "timed, but stopped before its quality was scored"


def test_a_distillation_stops_while_the_teacher_writes_its_corpus(tiny4_dir, tmp_path):
    from playground.core.distill import DistillSettings, distill

    prompts = tmp_path / "p.txt"
    prompts.write_text("\n".join(f"Prompt number {i}." for i in range(12)))
    events: list[dict] = []

    def progress(event: dict) -> None:
        events.append(event)

    def stop() -> bool:  # after the first batch of replies
        return any(e.get("stage") == "corpus" and e.get("done") for e in events)

    settings = DistillSettings(teacher=str(tiny4_dir), layers=2, steps=5, seq_len=32, batch=2,
                               reply_tokens=8, gen_batch=3, prompts=str(prompts), openings="",
                               out=str(tmp_path / "s"))
    with pytest.raises(Cancelled, match=r"corpus \(3 of 12 replies written\) stopped"):
        distill(settings, progress=progress, should_stop=stop)
    assert not [e for e in events if e.get("stage") == "train"]
    assert not (tmp_path / "s" / "model.safetensors").exists()
