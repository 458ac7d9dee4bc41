"""Knowledge distillation: build a smaller student from a teacher on the user's machine.

1. The student starts as the teacher with layers dropped, keeping the layers whose
   removal hurts most (measured: KL to the teacher on the evaluation text when that
   one layer is skipped), and optionally narrower MLPs (structured pruning).
2. The corpus is the teacher's own sampled replies to a shipped, varied prompt set and
   its continuations of prose openings (plus ``--corpus`` text if given). Sampled, not
   greedy: greedy text is repetitive and the student then overfits it (measured, 4-min
   runs at 14 layers: KL ratio 0.65 greedy vs 0.55 sampled; BENCHMARKS.md).
3. Training matches the teacher on random windows of that token stream: KL on
   temperature-softened logits × T² plus a little cross-entropy, AdamW with a cosine
   schedule, bf16 autocast where the CPU multiplies bf16 natively (else float32:
   emulated bf16 was 21× slower a step on an AVX2-only AMD EPYC), tied embeddings
   frozen. T=1 (the quality metric's own temperature) beat T=2 here. Checkpoints
   make it resumable.
4. The student is saved as a Hugging Face folder and registered as the teacher's
   distilled variant; its size, speed and KL before/after training are reported.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from playground.core import jobs, memory, paths, quality, registry
from playground.core.bench import read_lines
from playground.core.jobs import ShouldStop
from playground.core.models import load

Progress = Callable[[dict[str, Any]], None]
CHECKPOINT = "checkpoint.pt"
CORPUS = "corpus.pt"


@dataclass
class DistillSettings:
    teacher: str = "default"
    layers: int | None = None  # None: half of the teacher's layers
    width: float = 1.0  # share of MLP neurons kept
    steps: int | None = None  # None: as many as fit in ``minutes``
    minutes: float = 12.0
    seq_len: int = 256
    batch: int = 4
    corpus: str | None = None
    out: str | None = None
    resume: bool = False
    lr: float = 6e-4
    lr_min: float = 6e-5
    temperature: float = 1.0
    ce_weight: float = 0.1
    prompts: str | None = None  # default: assets/prompts/distill.txt
    openings: str | None = None  # default: assets/prompts/distill_text.txt ("" for none)
    reply_tokens: int = 160
    sample_top_p: float | None = 0.95  # None: greedy teacher replies
    gen_batch: int = 32
    checkpoint_every: int = 20
    seed: int = 0


@dataclass
class DistillReport:
    out: str
    teacher: str
    kept_layers: list[int]
    layer_kl: list[float]
    params: int
    teacher_params: int
    weights_mb: float
    teacher_weights_mb: float
    corpus_tokens: int
    steps: int
    train_s: float
    loss_first: float | None
    loss_last: float | None
    kl_before: float
    kl_after: float
    top1_before: float
    top1_after: float
    decode_tok_s: float | None = None
    teacher_decode_tok_s: float | None = None
    cancelled: bool = False  # stopped early: checkpoint kept, nothing saved or registered
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- structure ----------------------------------------------------------------------
def decoder_layers(model: Any) -> Any:
    inner = getattr(model, "model", None)
    if inner is not None and hasattr(inner, "layers"):
        return inner.layers
    if hasattr(model, "transformer") and hasattr(model.transformer, "h"):
        return model.transformer.h
    arch = (getattr(model.config, "architectures", None) or [type(model).__name__])[0]
    raise ValueError(f"distill: layer dropping is not supported for {arch}; supported: "
                     "the Llama family and GPT-2")


def keep_layers(model: Any, keep: list[int]) -> Any:
    """Keep only the decoder layers ``keep`` (in order), renumbered; a valid smaller model."""
    import torch

    layers = decoder_layers(model)
    kept = torch.nn.ModuleList([layers[i] for i in keep])
    for new_index, layer in enumerate(kept):
        for module in layer.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = new_index  # the KV cache is indexed by it
    if hasattr(model, "model") and hasattr(model.model, "layers"):
        model.model.layers = kept
    else:
        model.transformer.h = kept
    config = model.config
    types = getattr(config, "layer_types", None)
    if isinstance(types, list) and len(types) == len(layers):
        config.layer_types = [types[i] for i in keep]
    if hasattr(config, "num_hidden_layers"):
        config.num_hidden_layers = len(keep)
    if hasattr(config, "n_layer"):
        config.n_layer = len(keep)
    return model


def layer_importance(model: Any, windows: Any, reference: Any,
                     should_stop: ShouldStop | None = None) -> list[float]:
    """KL to the full model when each single layer is skipped (higher: more important)."""

    layers = decoder_layers(model)
    scores = []
    for i in range(len(layers)):
        jobs.check(should_stop, f"measuring layer importance ({i} of {len(layers)} layers done)")
        original = layers[i].forward

        def skip(hidden_states, *args, **kwargs):
            return hidden_states  # the residual stream passes through untouched

        layers[i].forward = skip
        try:
            cand = quality.score(model, windows)
        finally:
            layers[i].forward = original
        scores.append(float(quality.kl_divergence(reference, cand).mean()))
        del cand
    return scores


PRESET_FRACTION = {"speed": 1 / 3, "quality": 2 / 3}


def preset_layers(teacher: str, preset: str) -> int:
    """Layer count of a preset for this teacher, read from its config (no weights loaded)."""
    from playground.core.models import ensure_default_model, read_config, resolve

    source = resolve(teacher)
    folder = ensure_default_model() if source.kind == "default" else source.path
    config = read_config(Path(folder))
    total = config.get("num_hidden_layers") or config.get("n_layer")
    return max(1, round(total * PRESET_FRACTION[preset]))


def pick_layers(importance: list[float], count: int) -> list[int]:
    order = sorted(range(len(importance)), key=lambda i: importance[i], reverse=True)
    return sorted(order[:count])


# -- corpus -------------------------------------------------------------------------
def teacher_corpus(teacher: Any, tokenizer: Any, prompts: list[str], *, max_new_tokens: int,
                   batch: int, progress: Progress, chat: bool = True,
                   done_before: int = 0, total: int | None = None,
                   top_p: float | None = None,
                   should_stop: ShouldStop | None = None) -> list[list[int]]:
    """The teacher's replies (chat-templated), or its continuations of plain text
    openings (``chat=False``), as token sequences: sampled at temperature 1 with
    ``top_p``, or greedy when ``top_p`` is None."""
    import torch

    sampling = ({"do_sample": True, "temperature": 1.0, "top_p": top_p}
                if top_p else {"do_sample": False})
    sequences: list[list[int]] = []
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # batched generation continues from the right edge
    try:
        for start in range(0, len(prompts), batch):
            jobs.check(should_stop, f"the teacher's corpus ({done_before + start} of "
                                    f"{total or len(prompts)} replies written)")
            texts = [
                tokenizer.apply_chat_template([{"role": "user", "content": p}],
                                              add_generation_prompt=True, tokenize=False)
                if chat else p
                for p in prompts[start : start + batch]
            ]
            enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
            with torch.inference_mode():
                out = teacher.generate(**enc, max_new_tokens=max_new_tokens, **sampling,
                                       pad_token_id=tokenizer.pad_token_id)
            for row, mask in zip(out, enc["attention_mask"], strict=True):
                ids = row[int((mask == 0).sum()) :].tolist()  # drop left padding
                while ids and ids[-1] == tokenizer.pad_token_id:
                    ids.pop()
                sequences.append(ids)
            progress({"stage": "corpus", "done": done_before + min(start + batch, len(prompts)),
                      "total": total or len(prompts)})
    finally:
        tokenizer.padding_side = side
    return sequences


def token_stream(sequences: list[list[int]], seq_len: int) -> Any:
    """All sequences end to end, as one 1-D tensor with room for a ``seq_len`` window."""
    import torch

    stream = [t for seq in sequences for t in seq]
    if len(stream) <= seq_len:
        raise ValueError(f"distill: the corpus has {len(stream)} tokens, fewer than one "
                         f"sequence of {seq_len}; add prompts or --corpus text")
    return torch.tensor(stream)


def random_windows(stream: Any, seq_len: int, batch: int, generator: Any) -> Any:
    """``batch`` windows at random offsets: every epoch sees each token in new contexts,
    which overfits a small corpus less than fixed rows (measured, BENCHMARKS.md)."""
    import torch

    starts = torch.randint(0, len(stream) - seq_len + 1, (batch,), generator=generator)
    return torch.stack([stream[int(s) : int(s) + seq_len] for s in starts])


def build_corpus(teacher: Any, tokenizer: Any, settings: DistillSettings,
                 progress: Progress, should_stop: ShouldStop | None = None) -> list[list[int]]:
    """The teacher's replies to the prompt set, its continuations of the prose openings,
    and ``settings.corpus`` text if given."""
    prompts = read_lines(Path(settings.prompts) if settings.prompts
                         else paths.assets_dir() / "prompts" / "distill.txt")
    openings_file = (paths.assets_dir() / "prompts" / "distill_text.txt"
                     if settings.openings is None else settings.openings)
    openings = read_lines(Path(openings_file)) if openings_file else []
    total = len(prompts) + len(openings)
    progress({"stage": "corpus", "done": 0, "total": total})
    common = dict(top_p=settings.sample_top_p, max_new_tokens=settings.reply_tokens,
                  batch=settings.gen_batch, progress=progress, total=total,
                  should_stop=should_stop)
    sequences = teacher_corpus(teacher, tokenizer, prompts, **common)
    # Plain prose too, not only chat replies: the student should not forget how.
    sequences += teacher_corpus(teacher, tokenizer, openings, chat=False,
                                done_before=len(prompts), **common)
    if settings.corpus:
        text = Path(settings.corpus).read_text(encoding="utf-8")
        sequences.append(tokenizer(text, add_special_tokens=False)["input_ids"])
    return sequences


# -- training -----------------------------------------------------------------------
def kd_loss(student_logits: Any, teacher_logits: Any, targets: Any, temperature: float,
            ce_weight: float) -> Any:
    """KL(teacher_T ‖ student_T) · T² + ce_weight · CE(student, next tokens)."""
    import torch.nn.functional as F

    t = temperature
    s_log = F.log_softmax(student_logits.float() / t, dim=-1)
    t_log = F.log_softmax(teacher_logits.float() / t, dim=-1)
    kd = (t_log.exp() * (t_log - s_log)).sum(-1).mean() * t * t
    ce = F.cross_entropy(student_logits.float().reshape(-1, student_logits.shape[-1]),
                         targets.reshape(-1))
    return kd + ce_weight * ce


def lr_at(step: int, total: int, lr: float, lr_min: float) -> float:
    """Cosine from lr to lr_min over ``total`` steps."""
    if total <= 1:
        return lr
    progress = min(1.0, step / (total - 1))
    return lr_min + 0.5 * (lr - lr_min) * (1 + math.cos(math.pi * progress))


def time_horizon(step: int, train_s: float, budget_s: float) -> int:
    """Schedule length when training for a time budget: steps that fit at the pace so far."""
    return max(step + 1, int(budget_s / max(train_s / max(step, 1), 1e-3)))


def trainable(student: Any) -> list[Any]:
    """Freeze the (tied) embeddings, train the rest; the parameters the optimizer gets."""
    for name, p in student.named_parameters():
        p.requires_grad_("embed" not in name and "wte" not in name and "wpe" not in name)
    return [p for p in student.parameters() if p.requires_grad]


@functools.lru_cache(maxsize=1)
def bf16_pays() -> bool:
    """Whether bf16 autocast speeds training here: only where the CPU multiplies bf16
    natively (AVX-512 BF16, AMX). Elsewhere torch emulates it: one distillation step of
    the default model took 176 s with autocast against 8.4 s in float32 on a 2-core AMD
    EPYC (AVX2). Decided by timing one matrix product each way (well under a second)."""
    import torch

    def best_s(a: Any, b: Any) -> float:
        times = []
        for _ in range(3):
            started = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - started)
        return min(times)

    a, b = torch.randn(256, 256), torch.randn(256, 256)
    return best_s(a.bfloat16(), b.bfloat16()) <= best_s(a, b)


def kd_step(teacher: Any, student: Any, batch: Any, optimizer: Any, params: list[Any],
            settings: DistillSettings, autocast: bool = True) -> float:
    """One knowledge-distillation step on ``batch`` (bf16 autocast unless told: fake
    quantization needs the float32 it simulates); returns the loss."""
    import torch

    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        with torch.no_grad():
            t_logits = teacher(input_ids=batch, use_cache=False).logits[:, :-1]
        s_logits = student(input_ids=batch, use_cache=False).logits[:, :-1]
    loss = kd_loss(s_logits, t_logits, batch[:, 1:], settings.temperature, settings.ce_weight)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    optimizer.step()
    return float(loss.detach())


def default_out(settings: DistillSettings, layers: int) -> Path:
    name = Path(settings.teacher).name if settings.teacher != "default" else "default"
    width = f"-w{int(settings.width * 100)}" if settings.width < 1.0 else ""
    return paths.data_dir() / "students" / f"{name}-{layers}L{width}"


def distill(settings: DistillSettings, progress: Progress = lambda event: None,
            should_stop: Callable[[], bool] = lambda: False) -> DistillReport:
    import torch

    torch.manual_seed(settings.seed)
    started = time.perf_counter()
    progress({"stage": "load", "message": f"loading teacher {settings.teacher}"})
    loaded = load(settings.teacher)
    teacher, tokenizer = loaded.model, loaded.tokenizer
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    n_layers = len(decoder_layers(teacher))
    count = max(1, n_layers // 2) if settings.layers is None else settings.layers
    if not 1 <= count <= n_layers:
        raise ValueError(f"distill: --layers {count} is out of range; allowed: 1 to {n_layers}")
    if not 0.1 <= settings.width <= 1.0:
        raise ValueError(f"distill: --width {settings.width}; allowed: 0.1 to 1.0")
    out = Path(settings.out) if settings.out else default_out(settings, count)
    out.mkdir(parents=True, exist_ok=True)
    state_path = out / CHECKPOINT
    resume = settings.resume and state_path.exists()

    ref = quality.reference(teacher, tokenizer, should_stop)

    # Student structure: measured layer importance (on the calibration text, never on
    # the evaluation windows that score the student), then optional narrower MLPs.
    probe = quality.calibration_windows(tokenizer)[:2]
    if resume:
        meta = json.loads((out / "distill_meta.json").read_text())
        kept, importance = meta["kept_layers"], meta["layer_kl"]
    else:
        progress({"stage": "importance", "message": f"measuring {n_layers} layers"})
        importance = layer_importance(teacher, probe, quality.score(teacher, probe),
                                      should_stop)
        kept = pick_layers(importance, count)
        (out / "distill_meta.json").write_text(json.dumps(
            {"teacher": settings.teacher, "kept_layers": kept, "layer_kl": importance,
             "settings": asdict(settings)}, indent=1))
    student = keep_layers(copy.deepcopy(teacher), kept)
    notes = []
    if settings.width < 1.0:
        from playground.core.optimize.prune_structured import shrink

        shrink(student, tokenizer, mlp_keep=settings.width, head_keep=1.0)
        notes.append(f"MLP width kept: {settings.width:.0%}")
    before = quality.compare_to(ref, student, should_stop)

    # Corpus: the teacher's sampled replies (cached in the output folder for --resume).
    corpus_path = out / CORPUS
    if resume and corpus_path.exists():
        sequences = torch.load(corpus_path, weights_only=True)
    else:
        sequences = build_corpus(teacher, tokenizer, settings, progress, should_stop)
        torch.save(sequences, corpus_path)
    stream = token_stream(sequences, settings.seq_len)

    # Training.
    params = trainable(student)
    optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=0.0)
    step, losses, train_s = 0, [], 0.0
    if resume:
        state = torch.load(state_path, weights_only=True)  # our own file, still no pickle code
        student.load_state_dict(state["student"])
        optimizer.load_state_dict(state["optimizer"])
        step, losses, train_s = state["step"], state["losses"], state["train_s"]
        torch.set_rng_state(state["rng"])
    budget_s = settings.minutes * 60.0
    total = settings.steps
    autocast = bf16_pays()
    notes.append("bf16 autocast" if autocast else
                 "float32 training (bf16 is emulated on this CPU, slower than float32)")
    student.train()
    generator = torch.Generator().manual_seed(settings.seed + step)
    cancelled = False
    while True:
        if total is not None and step >= total:
            break
        if total is None and train_s >= budget_s:
            break
        if should_stop():
            cancelled = True
            break
        tick = time.perf_counter()
        batch = random_windows(stream, settings.seq_len, settings.batch, generator)
        horizon = total or time_horizon(step, train_s, budget_s)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, horizon, settings.lr, settings.lr_min)
        losses.append(kd_step(teacher, student, batch, optimizer, params, settings,
                              autocast=autocast))
        step += 1
        train_s += time.perf_counter() - tick
        remaining = ((total - step) * train_s / step) if total else max(0.0, budget_s - train_s)
        progress({"stage": "train", "step": step, "total": total or horizon,
                  "loss": losses[-1], "eta_s": remaining})
        if step % settings.checkpoint_every == 0:
            _checkpoint(state_path, student, optimizer, step, losses, train_s)
    _checkpoint(state_path, student, optimizer, step, losses, train_s)
    student.eval()
    for p in student.parameters():
        p.requires_grad_(False)
    after = quality.compare_to(ref, student)
    if not cancelled:
        progress({"stage": "save", "message": f"saving student to {out}"})
        student.save_pretrained(out, safe_serialization=True)
        tokenizer.save_pretrained(out)
        registry.register(settings.teacher, out)
    speed = {} if cancelled else decode_speeds(teacher, student, tokenizer, progress)
    report = DistillReport(
        out=str(out), teacher=settings.teacher, kept_layers=kept, layer_kl=importance,
        params=sum(p.numel() for p in student.parameters()),
        teacher_params=sum(p.numel() for p in teacher.parameters()),
        weights_mb=memory.weights_mb(student), teacher_weights_mb=memory.weights_mb(teacher),
        corpus_tokens=int(stream.numel()), steps=step, train_s=train_s,
        loss_first=losses[0] if losses else None, loss_last=losses[-1] if losses else None,
        kl_before=before["kl_mean"], kl_after=after["kl_mean"],
        top1_before=before["top1_agreement"], top1_after=after["top1_agreement"],
        decode_tok_s=speed.get("student"), teacher_decode_tok_s=speed.get("teacher"),
        cancelled=cancelled, notes=notes,
    )
    (out / "distill_report.json").write_text(json.dumps(report.to_dict(), indent=1))
    progress({"stage": "done", "message": f"done in {time.perf_counter() - started:.0f} s"})
    return report


SPEED_PROMPTS = ("Explain why the sky is blue.", "Write a short story about a lighthouse keeper.")


def decode_speeds(teacher: Any, student: Any, tokenizer: Any, progress: Progress) -> dict:
    """Greedy decode tok/s of teacher and student on two prompts, alternating."""
    from playground.core.config import RunConfig
    from playground.core.engine import Engine

    progress({"stage": "speed", "message": "measuring decode speed of teacher and student"})
    config = RunConfig(max_new_tokens=64)
    engines = {"teacher": Engine(teacher, tokenizer, config),
               "student": Engine(student, tokenizer, config)}
    rates: dict[str, list[float]] = {name: [] for name in engines}
    for _ in range(2):
        for name, engine in engines.items():
            engine.eos_ids = set()  # the same number of tokens for both
            for prompt in SPEED_PROMPTS:
                rate = engine.chat([{"role": "user", "content": prompt}]).metrics.decode_tok_s
                if rate:
                    rates[name].append(rate)
    return {name: sorted(r)[len(r) // 2] for name, r in rates.items() if r}


def _checkpoint(path: Path, student: Any, optimizer: Any, step: int, losses: list[float],
                train_s: float) -> None:
    import torch

    tmp = path.with_suffix(".tmp")
    torch.save({"student": student.state_dict(), "optimizer": optimizer.state_dict(),
                "step": step, "losses": losses, "train_s": train_s,
                "rng": torch.get_rng_state()}, tmp)
    tmp.replace(path)  # atomic: an interruption never leaves half a checkpoint
