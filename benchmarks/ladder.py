"""The ladder: playground gguf-native against llama.cpp's llama-bench on models of real
families' shapes, in the GGUF formats users download.

Each rung is a transformers config with the family's sizes from its model card, random
normal(0, 0.02) weights and the default model's tokenizer (vocab 49,152), saved as a
folder, converted with llama.cpp's own ``convert_hf_to_gguf.py --outtype f16`` (from the
source benchmarks/llamacpp_build.sh built llama-bench from; its extra dependency,
sentencepiece, goes into a throwaway folder, never the venv) and quantized with
``llama-quantize``. Per file, rounds alternating: ``llama-bench -p 512 -n 64`` and
``playground bench --ignore-eos`` (decode of exactly 64 tokens after a short prompt,
prefill of a 512-token prompt), same threads; plus the playground's time to ready, load
peak RSS and steady RSS. Never part of ``make test``.

    .venv/bin/python benchmarks/ladder.py make  [--rungs llama-1b] [--formats Q4_K_M,Q8_0]
    .venv/bin/python benchmarks/ladder.py run   [--rungs ...] [--formats ...] [--rounds 2]
        [--llama-repack 1]  # default 0,1: both, llama.cpp at its faster setting per figure
        [--isa avx2]  # both sides on AVX2 alone (after LLAMACPP_ISA=avx2 llamacpp_build.sh)
    .venv/bin/python benchmarks/ladder.py faithful   # the default model as a Q4_K_M file
    .venv/bin/python benchmarks/ladder.py side  --rungs qwen2.5-0.5b [--formats Q4_K_M]

``side``: one ``playground compare`` per rung and file, the backends side by side on the
same prompts, rounds alternating, KL against the rung's float32 folder: torch
gguf-native and llama.cpp (flash attention off and on) on the file, ONNX Runtime int4
on the folder (the builder quantizes the float weights, blocks of 32). Its table goes
to ``out/ladder/side-<rung>-<format>.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from common import OUT, cpu_name

LLAMA = OUT / "llamacpp"
BENCH = LLAMA / "bin" / "llama-bench"  # --isa avx2: out/llamacpp-avx2's
LADDER = OUT / "ladder"
VENV_PY = Path(sys.executable)
PLAYGROUND = VENV_PY.parent / "playground"
RUNGS = {  # model-card sizes; tied embeddings as the real small models
    "qwen2.5-0.5b": ("qwen2", dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                                   num_attention_heads=14, num_key_value_heads=2,
                                   rope_theta=1e6, rms_norm_eps=1e-6)),
    "qwen3-0.6b": ("qwen3", dict(hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
                                 num_attention_heads=16, num_key_value_heads=8, head_dim=128,
                                 rope_theta=1e6, rms_norm_eps=1e-6)),
    # 5 local (window 512, rope base 10,000) : 1 global layer (base 1e6), as the model card
    "gemma-3-1b": ("gemma3_text", dict(hidden_size=1152, intermediate_size=6912,
                                       num_hidden_layers=26, num_attention_heads=4,
                                       num_key_value_heads=1, head_dim=256, sliding_window=512,
                                       query_pre_attn_scalar=256, rms_norm_eps=1e-6)),
    "llama-3.2-1b": ("llama", dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                                   num_attention_heads=32, num_key_value_heads=8, head_dim=64)),
    "llama-3.2-3b": ("llama", dict(hidden_size=3072, intermediate_size=8192, num_hidden_layers=28,
                                   num_attention_heads=24, num_key_value_heads=8, head_dim=128)),
}
LLAMA3_ROPE = dict(rope_theta=500000.0, rms_norm_eps=1e-5, rope_scaling={
    "rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
    "original_max_position_embeddings": 8192})
FORMATS = {"Q4_K_M": ["Q4_K_M"],
           "Q4_0": ["--output-tensor-type", "q8_0", "--token-embedding-type", "q8_0", "Q4_0"],
           "Q8_0": ["Q8_0"]}


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    print("+", " ".join(map(str, cmd)), file=sys.stderr, flush=True)
    return subprocess.run(list(map(str, cmd)), check=True, **kw)


def make_folder(rung: str) -> Path:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from playground.core import models

    folder = LADDER / rung / "hf"
    if (folder / "config.json").is_file():
        return folder
    family, sizes = RUNGS[rung]
    extra = LLAMA3_ROPE if family == "llama" else {}
    config = AutoConfig.for_model(family, vocab_size=49152, tie_word_embeddings=True,
                                  max_position_embeddings=8192, bos_token_id=1, eos_token_id=2,
                                  **sizes, **extra)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() > 1:
                p.normal_(0, 0.02)
            elif "bias" in name:
                p.normal_(0, 0.02)
    model.save_pretrained(folder)
    tokenizer = models.ensure_default_model(lambda _msg: None)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        if (tokenizer / name).is_file():
            shutil.copy(tokenizer / name, folder / name)
    return folder


def convert(rung: str) -> Path:
    f16 = LADDER / rung / "F16.gguf"
    if f16.is_file():
        return f16
    folder = make_folder(rung)
    source = LLAMA / "source"
    deps = Path(tempfile.mkdtemp(prefix="convert-deps-"))
    try:
        run([VENV_PY, "-m", "pip", "install", "-q", "--target", deps, "sentencepiece"])
        # transformers picks a tokenizer class by the config's family (Qwen2Tokenizer for a
        # qwen2 folder, which re-splits the default tokenizer's text differently), and the
        # converter knows the default tokenizer's pre-tokenizer only as it is: load it as is
        (deps / "sitecustomize.py").write_text(
            "import transformers\n"
            "transformers.AutoTokenizer.from_pretrained = staticmethod(\n"
            "    lambda path, *a, **k: transformers.PreTrainedTokenizerFast.from_pretrained(path))\n")
        env = {**os.environ, "PYTHONPATH": f"{deps}:{source / 'gguf-py'}"}
        run([VENV_PY, source / "convert_hf_to_gguf.py", folder, "--outtype", "f16",
             "--outfile", f16], env=env)
    finally:
        shutil.rmtree(deps, ignore_errors=True)
    return f16


def quantize(rung: str, fmt: str) -> Path:
    out = LADDER / rung / f"{fmt}.gguf"
    if not out.is_file():
        args = FORMATS[fmt]
        run([LLAMA / "bin" / "llama-quantize", *args[:-1], convert(rung), out, args[-1], "2"])
    return out


def faithful(threads: int) -> Path:
    """The default model as users get such files: its float folder converted to an F16 GGUF
    and quantized to Q4_K_M by llama.cpp's tools (576 is not a multiple of 256, so most
    matrices fall back to Q5_0/Q5_1/Q8_0 as llama-quantize decides), then gguf-native
    against the same file de-quantized (quant=none) with ``playground compare``."""
    from playground.core import models

    rung = LADDER / "smollm2-135m"
    folder = rung / "hf"
    if not folder.is_dir():
        shutil.copytree(models.ensure_default_model(lambda _m: None), folder)
    RUNGS.setdefault("smollm2-135m", ("llama", {}))
    out = quantize("smollm2-135m", "Q4_K_M")
    result = LADDER / "faithful.json"
    run([PLAYGROUND, "compare", "--config", f"model={out},quant=none,threads={threads}",
         "--config", f"model={out},quant=gguf-native,threads={threads}", "--repeats", "1",
         "--json", result])
    return result


def side_by_side(rung: str, fmt: str, threads: int, rounds: int,
                 prompts: str | None = None) -> Path:
    folder, path = LADDER / rung / "hf", quantize(rung, fmt)
    common = f"threads={threads},max_new_tokens=64"
    specs = [f"model={folder},{common}", f"model={path},quant=gguf-native,{common}",
             f"model={folder},backend=onnxruntime,quant=int4-weight,{common}",
             f"model={path},backend=llamacpp,{common}",
             f"model={path},backend=llamacpp,flash_attn=on,{common}"]
    result = LADDER / f"side-{rung}-{fmt}.json"
    run([PLAYGROUND, "compare", *[a for s in specs for a in ("--config", s)],
         "--repeats", rounds, "--json", result, *(["--prompts", prompts] if prompts else [])])
    names = ["torch float32 (the folder: KL baseline)", f"torch gguf-native ({fmt})",
             "ONNX Runtime int4-weight (the folder)", f"llama.cpp ({fmt}, flash attention off)",
             f"llama.cpp ({fmt}, flash attention on)"]
    lines = ["| backend | decode tok/s | TTFT ms | prefill tok/s | weights MB | peak RSS MB "
             "| KL | top-1 |", "|---|---|---|---|---|---|---|---|"]
    for name, row in zip(names, json.loads(result.read_text())["results"], strict=True):
        s, q = row["summary"], row.get("quality") or {}

        def f(v, d=1):
            return "–" if v is None else f"{v:.{d}f}"
        lines.append(f"| {name} | {f(s['decode_tok_s']['p50'])} | {f(s['ttft_ms']['p50'], 0)} | "
                     f"{f(s['prefill_tok_s']['p50'], 0)} | {f(s['weights_mb'], 0)} | "
                     f"{f(s.get('peak_rss_mb'), 0)} | {f(q.get('kl_mean'), 4)} | "
                     f"{f(None if q.get('top1_agreement') is None else 100 * q['top1_agreement'], 0)}% |")
    table = LADDER / f"side-{rung}-{fmt}.md"
    table.write_text(f"{cpu_name()}, {threads} threads, {rounds} rounds, prompts: "
                     f"{prompts or 'the default 8'}\n\n" + "\n".join(lines) + "\n")
    return table


def llama_bench(path: Path, threads: int, spec: str, repack: str = "1") -> dict[str, float]:
    # llama-bench's flash attention is "auto" (on, on a CPU); against backend=llamacpp it
    # runs with the spec's own llama.cpp settings, so both sides run the same graph
    from playground.core.config import RunConfig

    cfg = RunConfig.parse(spec)
    fa = []
    if cfg.backend == "llamacpp":
        fa = ["-fa", "1" if cfg.flash_attn else "0", "-ctk", cfg.kv_type, "-ctv", cfg.kv_type,
              "-b", str(cfg.batch), "-ub", str(cfg.batch)]
    out = run([BENCH, "-m", path, "-p", "512", "-n", "64", "-t", threads,
               *fa, "--repack", repack, "-r", "1", "-o", "json"],
              capture_output=True, text=True, timeout=1800).stdout
    result: dict[str, float] = {}
    for r in json.loads(out):
        # with --repack 0,1 llama.cpp's faster setting is the yardstick, each figure apart
        # (on an Intel Xeon its repacked Q4_K prefilled at two thirds of the plain one's
        # speed while decoding 1.4-1.5x faster)
        key = "prefill" if r["n_prompt"] else "decode"
        result[f"{key} repack={int(r.get('repack', 1))}"] = float(r["avg_ts"])
        result[key] = max(result.get(key, 0.0), float(r["avg_ts"]))
    return result


def avx2_sides() -> None:
    """Both sides on AVX2 alone: llama.cpp's AVX2 build, and the playground's kernels built
    with the packaged app's portable flags (no -march=native, so no AVX-512 encodings in
    the AVX2 bodies) and held to them (PLAYGROUND_NATIVE_ISA=avx2), through the
    environment the ``playground bench`` runs inherit."""
    global BENCH
    from playground.core import native

    BENCH = OUT / "llamacpp-avx2" / "bin" / "llama-bench"
    if not BENCH.is_file():
        sys.exit(f"{BENCH} is not built: LLAMACPP_ISA=avx2 bash benchmarks/llamacpp_build.sh")
    portable = OUT / "qgemv-avx2.so"
    portable.unlink(missing_ok=True)  # built from the sources as they are now
    native.build(portable, native.PORTABLE_FLAGS)
    os.environ.update(PLAYGROUND_QGEMV=str(portable), PLAYGROUND_NATIVE_ISA="avx2")


def long_prompt(tokens: int = 512) -> Path:
    """A prompt of about ``tokens`` tokens with the default tokenizer (chat template aside)."""
    from transformers import AutoTokenizer

    from playground.core import models

    path = LADDER / f"prompt{tokens}.txt"
    if not path.is_file():
        tok = AutoTokenizer.from_pretrained(models.ensure_default_model(lambda _m: None))
        words = (Path(__file__).parents[1] / "README.md").read_text().replace("#", "").split()
        ids = tok(" ".join(words))["input_ids"][: tokens - 20]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(tok.decode(ids).replace("\n", " ") + "\n")
    return path


def playground_bench(path: Path, threads: int, spec: str) -> dict[str, float]:
    short = LADDER / "short.txt"
    short.write_text("Write a short story about a lighthouse keeper.\n")
    result = {}
    for name, prompts, new in (("decode", short, 64), ("prefill", long_prompt(), 1)):
        out = LADDER / "pg.json"
        run([PLAYGROUND, "bench", "--config",
             f"model={path},{spec},threads={threads},max_new_tokens={new}", "--prompts", prompts,
             "--warmup", "1", "--repeats", "1", "--ignore-eos", "--json", out],
            stdout=subprocess.DEVNULL)
        data = json.loads(out.read_text())["results"][0]
        summary, info = data["summary"], data["info"]
        if name == "decode":
            result.update(decode=summary["decode_tok_s"]["p50"], ready_s=info.get("build_s"),
                          load_peak_mb=info.get("load_peak_rss_mb"), steady_mb=info.get("rss_mb"),
                          weights_mb=summary["weights_mb"], step=info.get("decode_step"),
                          note="; ".join(info.get("notes", [])))
        else:
            result["prefill"] = summary["prefill_tok_s"]["p50"]
            result["prompt_tokens"] = data["runs"][0]["prompt_tokens"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("action", choices=("make", "run", "faithful", "side"))
    parser.add_argument("--rungs", default=",".join(RUNGS))
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--spec", default="quant=gguf-native", help="the playground's config")
    parser.add_argument("--prompts", help="side: a prompt file for compare (default: its 8)")
    parser.add_argument("--llama-repack", default="0,1", choices=("1", "0", "0,1"),
                        help="llama-bench's --repack (0,1: both, its faster one counts)")
    parser.add_argument("--isa", choices=("native", "avx2"), default="native",
                        help="avx2: both sides as on an AVX2-only CPU: llama.cpp built for AVX2 "
                             "(LLAMACPP_ISA=avx2 llamacpp_build.sh), the playground's portable "
                             "build (the packaged app's flags) held to its AVX2 kernels")
    args = parser.parse_args()
    rungs, formats = args.rungs.split(","), args.formats.split(",")
    if args.isa == "avx2" and args.action == "run":
        avx2_sides()
    if args.action == "faithful":
        print(faithful(args.threads))
        return
    if args.action == "side":
        for rung in rungs:
            for fmt in (["Q4_K_M"] if args.formats == ",".join(FORMATS) else formats):
                print(side_by_side(rung, fmt, args.threads, args.rounds, args.prompts).read_text())
        return
    if args.action == "make":
        for rung in rungs:
            for fmt in formats:
                print(quantize(rung, fmt))
        return
    rows = []
    for rung in rungs:
        for fmt in formats:
            path = quantize(rung, fmt)
            rounds = {"llama.cpp": [], "playground": []}
            for _ in range(args.rounds):  # alternating, so a busy moment hits both
                rounds["llama.cpp"].append(llama_bench(path, args.threads, args.spec,
                                                       args.llama_repack))
                rounds["playground"].append(playground_bench(path, args.threads, args.spec))
            row = {"rung": rung, "format": fmt, "file_mb": round(path.stat().st_size / 1e6),
                   "llama_repack": args.llama_repack, "rounds": rounds}
            for side in rounds:
                for key in ("decode", "prefill"):
                    values = [r[key] for r in rounds[side]]
                    row[f"{side} {key}"] = [round(min(values), 1), round(statistics.median(values), 1),
                                            round(max(values), 1)]
            row["decode ratio"] = round(row["playground decode"][1] / row["llama.cpp decode"][1], 2)
            row["prefill ratio"] = round(row["playground prefill"][1] / row["llama.cpp prefill"][1], 2)
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "rounds"}), flush=True)
    # another backend's rows go to their own file (the gguf-native ladder stays as it is)
    out = OUT / ("ladder.json" if args.spec == "quant=gguf-native" else
                 f"ladder-{args.spec.replace('=', '-').replace(',', '_')}.json")
    if args.isa != "native":
        out = out.with_name(f"{out.stem}-{args.isa}.json")
    existing = json.loads(out.read_text()) if out.is_file() else {"rows": []}
    keep = [r for r in existing["rows"] if (r["rung"], r["format"]) not in
            {(r2["rung"], r2["format"]) for r2 in rows}]
    out.write_text(json.dumps({"cpu": cpu_name(), "isa": args.isa, "threads": args.threads,
                               "spec": args.spec,
                               "rows": keep + rows}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
