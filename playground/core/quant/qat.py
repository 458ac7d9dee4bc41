"""Quantization-aware training: fine-tune a model so that it survives its quantization.

The model is trained with the chosen ``quant`` simulated in its forward pass (fake
quantization, straight-through gradients) against the unquantized model's own
logits as soft targets, on the distillation corpus (the teacher's sampled replies
and prose continuations) with the distillation KD step. The trained float weights
are saved in the data folder and registered for (model, quant, quant_group); a
config with ``qat=on`` loads them and quantizes them as usual.

Simulated per quant value, matching what the runtime does:
- int8-dynamic: activations per tensor, asymmetric, 7-bit (torch's fbgemm dynamic
  quantization uses reduce_range), weights per tensor, symmetric int8; before training
  the student is smoothed (``smooth``: activation outliers folded into the weights, an
  exact float transform), which alone halves the KL;
- int8-weight / int4-weight: weights as ``weight_quant`` rounds them (activations
  stay float: the native kernels' int16 runs are far below the weights' error).
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from playground.core import distill, paths, quality, registry
from playground.core.config import QAT_QUANTS, RunConfig
from playground.core.models import load
from playground.core.quant import smooth, weight_quant
from playground.core.quant.qat_registry import QatMissing, available, register, trained_for

__all__ = ["QatMissing", "QatReport", "QatSettings", "available", "qat", "register",
           "trained_for"]

Progress = Callable[[dict[str, Any]], None]
SMOOTH_WINDOWS = 24  # calibration windows for SmoothQuant's activation ranges (6k tokens)


@dataclass
class QatSettings:
    config: str = "quant=int8-dynamic"  # the spec whose model and quant are trained
    minutes: float = 7.0  # with SmoothQuant, 7 min reach KL x0.30 (12 min: x0.29); BENCHMARKS.md
    steps: int | None = None  # None: as many as fit in ``minutes``
    seq_len: int = 256
    batch: int = 2
    lr: float = 1.5e-4  # measured on int8-dynamic: 1.5e-4 > 6e-5 > 2e-5 (BENCHMARKS.md)
    lr_min: float = 1.5e-5
    out: str | None = None
    seed: int = 0
    # the corpus, as for distillation (defaults: the shipped prompt set and openings)
    prompts: str | None = None
    openings: str | None = None
    reply_tokens: int = 160


@dataclass
class QatReport:
    out: str
    model: str
    quant: str
    quant_group: int
    steps: int
    train_s: float
    corpus_tokens: int
    before: dict[str, float]  # quality of the quantized model before training
    after: dict[str, float]
    loss_first: float | None
    loss_last: float | None
    cancelled: bool = False
    smoothed: dict[str, float] | None = None  # int8-dynamic: after SmoothQuant, before training


# -- fake quantization ------------------------------------------------------------
def _fake_linear_class() -> type:
    import torch
    import torch.nn.functional as F

    class FakeQuantLinear(torch.nn.Module):
        """A Linear whose forward sees its weights (and, for int8-dynamic, its inputs) as
        the quantized model will; gradients pass straight through the rounding."""

        def __init__(self, linear: Any, quant: str, group: int) -> None:
            super().__init__()
            self.weight, self.bias = linear.weight, linear.bias
            self.quant, self.group = quant, group

        def forward(self, x: Any) -> Any:
            if self.quant == "int8-dynamic":
                scale, zero = torch._choose_qparams_per_tensor(x.detach(), True)
                x = torch.fake_quantize_per_tensor_affine(x, scale, zero, 0, 127)
                amax = self.weight.detach().abs().max().clamp_min(1e-8)
                w = torch.fake_quantize_per_tensor_affine(self.weight, float(amax / 127.5), 0,
                                                          -128, 127)
            else:
                w = weight_quant.fake_quantize(self.weight, self.quant, self.group)
            return F.linear(x, w, self.bias)

    return FakeQuantLinear


def fake_quantize_model(model: Any, quant: str, group: int) -> int:
    """Swap every nn.Linear (LM head included) for its fake-quantized form, in place."""
    import torch

    fake = _fake_linear_class()
    count = 0
    for name, module in list(model.named_modules()):
        if type(module) is torch.nn.Linear:
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, fake(module, quant, group))
            count += 1
    return count


def unwrap(model: Any) -> None:
    """Back to plain nn.Linear layers holding the trained weights (for saving)."""
    import torch

    fake = _fake_linear_class()
    for name, module in list(model.named_modules()):
        if type(module).__name__ == fake.__name__:
            linear = torch.nn.Linear(module.weight.shape[1], module.weight.shape[0],
                                     bias=module.bias is not None)
            linear.weight, linear.bias = module.weight, module.bias
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name) if parent_name else model, child, linear)


# -- training ---------------------------------------------------------------------
def quantized_quality(cfg: RunConfig, ref: Any, model: Any, tokenizer: Any) -> dict[str, float]:
    """KL / top-1 / perplexity of ``model`` quantized as ``cfg`` says (the real kernels)."""
    from playground.core.models import LoadedModel, resolve
    from playground.core.pipeline import build_engine

    plain = RunConfig(model=cfg.model, quant=cfg.quant, quant_group=cfg.quant_group,
                      threads=cfg.threads)
    engine = build_engine(plain, loaded=LoadedModel(copy.deepcopy(model), tokenizer,
                                                    resolve(cfg.model), 0.0))
    return quality.compare_to(ref, engine.model)


def _corpus(cfg: RunConfig, settings: QatSettings, teacher: Any, tokenizer: Any,
            progress: Progress, should_stop: Callable[[], bool]) -> list[list[int]]:
    """The distillation corpus of the float model, generated once (minutes of CPU) and
    kept in the cache for the next QAT run of the same model and prompt set."""
    import hashlib

    import torch

    corpus = distill.DistillSettings(teacher=cfg.model, seq_len=settings.seq_len,
                                     prompts=settings.prompts, openings=settings.openings,
                                     reply_tokens=settings.reply_tokens, seed=settings.seed)
    key = json.dumps([registry.teacher_key(cfg.model), corpus.prompts, corpus.openings,
                      corpus.reply_tokens, corpus.sample_top_p, corpus.seed])
    path = paths.cache_dir() / "qat" / f"corpus-{hashlib.sha256(key.encode()).hexdigest()[:16]}.pt"
    if path.is_file():
        progress({"stage": "corpus", "message": f"reusing the corpus in {path}"})
        return torch.load(path, weights_only=True)
    sequences = distill.build_corpus(teacher, tokenizer, corpus, progress, should_stop)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(sequences, path)
    return sequences


def default_out(cfg: RunConfig) -> Path:
    name = Path(cfg.model).name if cfg.model != "default" else "default"
    group = f"-g{cfg.quant_group}" if cfg.quant == "int4-weight" else ""
    return paths.data_dir() / "qat" / f"{name}-{cfg.quant}{group}"


def qat(settings: QatSettings, progress: Progress = lambda event: None,
        should_stop: Callable[[], bool] = lambda: False) -> QatReport:
    import torch

    cfg = RunConfig.parse(settings.config)
    if cfg.quant not in QAT_QUANTS:
        raise ValueError(f"qat: quant={cfg.quant} cannot be trained; allowed: "
                         f"{', '.join(QAT_QUANTS)}")
    torch.manual_seed(settings.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    progress({"stage": "load", "message": f"loading {cfg.model}"})
    loaded = load(cfg.model)
    teacher, tokenizer = loaded.model.eval(), loaded.tokenizer
    for p in teacher.parameters():
        p.requires_grad_(False)
    ref = quality.reference(teacher, tokenizer, should_stop)
    progress({"stage": "quality", "message": f"scoring {cfg.quant} before training"})
    before = quantized_quality(cfg, ref, teacher, tokenizer)
    stream = distill.token_stream(
        _corpus(cfg, settings, teacher, tokenizer, progress, should_stop), settings.seq_len)
    student = copy.deepcopy(teacher)
    smoothed: dict[str, float] = {}
    if cfg.quant == "int8-dynamic" and smooth.supported(student):
        progress({"stage": "quality", "message": "moving activation outliers into the weights"})
        windows = [stream[i : i + settings.seq_len]
                   for i in range(0, len(stream) - settings.seq_len, settings.seq_len)]
        smooth.smooth(student, smooth.input_ranges(student, windows[:SMOOTH_WINDOWS]))
        smoothed = quantized_quality(cfg, ref, student, tokenizer)
    fake_quantize_model(student, cfg.quant, cfg.quant_group)
    params = distill.trainable(student)
    optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(settings.seed)
    kd = distill.DistillSettings(temperature=1.0, ce_weight=0.0)
    step, losses, train_s, budget_s = 0, [], 0.0, settings.minutes * 60.0
    total, cancelled = settings.steps, False
    student.train()
    while (step < total) if total is not None else (train_s < budget_s):
        if should_stop():
            cancelled = True
            break
        tick = time.perf_counter()
        batch = distill.random_windows(stream, settings.seq_len, settings.batch, generator)
        horizon = total or distill.time_horizon(step, train_s, budget_s)
        for group in optimizer.param_groups:
            group["lr"] = distill.lr_at(step, horizon, settings.lr, settings.lr_min)
        losses.append(distill.kd_step(teacher, student, batch, optimizer, params, kd,
                                      autocast=False))
        step += 1
        train_s += time.perf_counter() - tick
        remaining = ((total - step) * train_s / step) if total else max(0.0, budget_s - train_s)
        progress({"stage": "train", "step": step, "total": total or horizon,
                  "loss": losses[-1], "eta_s": remaining})
    student.eval()
    for p in student.parameters():
        p.requires_grad_(False)
    unwrap(student)
    out = Path(settings.out) if settings.out else default_out(cfg)
    after: dict[str, float] = {}
    if not cancelled:
        progress({"stage": "quality", "message": f"scoring {cfg.quant} after training"})
        after = quantized_quality(cfg, ref, student, tokenizer)
        out.mkdir(parents=True, exist_ok=True)
        student.save_pretrained(out, safe_serialization=True)
        tokenizer.save_pretrained(out)
        register(cfg, out)
    report = QatReport(str(out), cfg.model, cfg.quant, cfg.quant_group, step, train_s,
                       int(stream.numel()), before, after,
                       losses[0] if losses else None, losses[-1] if losses else None, cancelled,
                       smoothed)
    if not cancelled:
        (out / "qat_report.json").write_text(json.dumps(asdict(report), indent=1))
    progress({"stage": "done", "message": f"{step} steps in {train_s:.0f} s"})
    return report
