"""Which distillation recipe halves the student's KL: short runs of one student.

The same 14-layer student of the default model (layers picked by importance in the
default run) trains for ``--minutes`` on one corpus kind with one setting; the KL to
the teacher on the evaluation text before and after is appended to
``benchmarks/out/distill_recipe.jsonl``. Corpora are built once and kept in
``benchmarks/out/corpora/``. The table in BENCHMARKS.md came from these runs:

    .venv/bin/python benchmarks/distill_recipe.py --corpus greedy --rows
    .venv/bin/python benchmarks/distill_recipe.py --corpus sampled --rows
    .venv/bin/python benchmarks/distill_recipe.py --corpus sampled+pydoc
    .venv/bin/python benchmarks/distill_recipe.py --corpus sampled
    .venv/bin/python benchmarks/distill_recipe.py --corpus sampled --T 1
    .venv/bin/python benchmarks/distill_recipe.py --corpus sampled --T 1 --lr 6e-4
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import torch
from common import OUT

from playground.core import distill as D
from playground.core import quality
from playground.core.models import load

KEPT = "0,1,2,6,8,9,10,11,21,22,24,27,28,29"


def corpus(kind: str, teacher, tokenizer, folder: Path) -> list[list[int]]:
    if kind == "pydoc":  # real English text every Python has (PSF licence), not shipped
        import pydoc_data.topics as topics

        return [tokenizer(v, add_special_tokens=False)["input_ids"]
                for v in topics.topics.values()]
    cached = folder / f"{kind}.pt"
    if cached.exists():
        return torch.load(cached, weights_only=True)
    settings = D.DistillSettings(sample_top_p={"greedy": None, "sampled": 0.95}[kind])
    started = time.perf_counter()
    seqs = D.build_corpus(teacher, tokenizer, settings, progress=lambda _e: None)
    print(f"{kind} corpus: {sum(map(len, seqs))} tokens in "
          f"{time.perf_counter() - started:.0f} s", flush=True)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(seqs, cached)
    return seqs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--corpus", required=True, help="greedy, sampled, pydoc, joined by +")
    parser.add_argument("--minutes", type=float, default=4.0)
    parser.add_argument("--T", type=float, default=2.0)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--rows", action="store_true", help="fixed rows, not random windows")
    parser.add_argument("--layers", default=KEPT)
    args = parser.parse_args()
    torch.manual_seed(0)
    loaded = load("default")
    teacher, tokenizer = loaded.model, loaded.tokenizer
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    ref = quality.reference(teacher, tokenizer)
    student = D.keep_layers(copy.deepcopy(teacher), [int(x) for x in args.layers.split(",")])
    before = quality.compare_to(ref, student)

    seqs = []
    for kind in args.corpus.split("+"):
        seqs += corpus(kind, teacher, tokenizer, OUT / "corpora")
    seq_len, batch_size = 256, 4
    stream = D.token_stream(seqs, seq_len)
    rows = stream[: len(stream) // seq_len * seq_len].reshape(-1, seq_len)
    settings = D.DistillSettings(temperature=args.T, lr=args.lr, lr_min=args.lr / 10)
    params = D.trainable(student)
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    budget, train_s, step = args.minutes * 60, 0.0, 0
    generator = torch.Generator().manual_seed(0)
    student.train()
    while train_s < budget:
        tick = time.perf_counter()
        if args.rows:
            batch = rows[torch.randint(0, rows.shape[0], (batch_size,), generator=generator)]
        else:
            batch = D.random_windows(stream, seq_len, batch_size, generator)
        horizon = D.time_horizon(step, train_s, budget)
        for group in optimizer.param_groups:
            group["lr"] = D.lr_at(step, horizon, settings.lr, settings.lr_min)
        D.kd_step(teacher, student, batch, optimizer, params, settings)
        step += 1
        train_s += time.perf_counter() - tick
    student.eval()
    after = quality.compare_to(ref, student)
    result = dict(vars(args), corpus_tokens=len(stream), steps=step,
                  kl_before=before["kl_mean"], kl_after=after["kl_mean"],
                  ratio=after["kl_mean"] / before["kl_mean"], top1=after["top1_agreement"])
    print(json.dumps(result), flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    with open(OUT / "distill_recipe.jsonl", "a") as f:
        f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
