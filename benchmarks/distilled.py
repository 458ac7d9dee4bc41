"""The default model's distilled student: speed, quality, and speculative decoding.

Needs the student (`make distill-default`). Alternating rounds over the default
prompts: teacher alone, student alone, teacher with the student as draft. Reports
decode tok/s ratios, the draft acceptance rate, and whether every greedy reply of
teacher+draft is token-for-token the teacher's own.

    .venv/bin/python benchmarks/distilled.py [--rounds 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from common import engines, prompts, save

from playground.core import registry


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    args = parser.parse_args()
    common = f"threads={args.threads},max_new_tokens={args.max_new_tokens}"
    built = engines({"teacher": common, "student": f"variant=distilled,{common}",
                     "teacher+draft": f"draft=distilled,{common}"})
    convs = prompts()
    for engine in built.values():
        engine.chat(convs[0])
    decode: dict[str, list[float]] = {k: [] for k in built}
    accept: list[float] = []
    identical, total = 0, 0
    for r in range(args.rounds):
        for name, engine in built.items():
            rates = []
            for messages in convs:
                result = engine.chat(messages)
                if result.metrics.decode_tok_s:
                    rates.append(result.metrics.decode_tok_s)
                if name == "teacher+draft":
                    if result.metrics.draft_acceptance is not None:
                        accept.append(result.metrics.draft_acceptance)
                    if r == 0:
                        alone = built["teacher"].chat(messages)
                        identical += alone.token_ids == result.token_ids
                        total += 1
            decode[name].append(statistics.mean(rates))
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(
            f"{k} {v[-1]:.1f}" for k, v in decode.items()), flush=True)
    med = {k: statistics.median(v) for k, v in decode.items()}
    report = json.loads((Path(registry.student_for("default")) / "distill_report.json").read_text())
    out = {
        "decode_tok_s": med,
        "student_speedup": med["student"] / med["teacher"],
        "draft_speedup": med["teacher+draft"] / med["teacher"],
        "draft_acceptance_mean": statistics.mean(accept) if accept else None,
        "greedy_identical": f"{identical}/{total}",
        "student": {k: report[k] for k in ("kept_layers", "params", "weights_mb", "steps",
                                            "train_s", "kl_before", "kl_after", "top1_before",
                                            "top1_after")},
        "teacher_weights_mb": report["teacher_weights_mb"],
    }
    print(json.dumps(out, indent=1))
    save("distilled", out)


if __name__ == "__main__":
    main()
