#!/usr/bin/env bash
# Prefill of the ladder's 512-token prompt on one file, the kernels' instruction sets
# alternating in one run: PLAYGROUND_NATIVE_ISA=vnni (AVX-512 VNNI alone) against auto
# (AMX-INT8 tiles for passes of 16 rows or more, where the CPU has them), same bits.
# Usage: bash benchmarks/prefill_isa.sh [GGUF] [ROUNDS]   (after ladder.py make)
set -eu
cd "$(dirname "$0")/.."
F=${1:-benchmarks/out/ladder/llama-3.2-1b/Q4_K_M.gguf}
ROUNDS=${2:-2}
OUT=$(mktemp)
grep -m1 "model name" /proc/cpuinfo
for r in $(seq "$ROUNDS"); do
  for isa in vnni auto; do
    PLAYGROUND_NATIVE_ISA=$isa .venv/bin/playground bench \
      --config "model=$F,quant=gguf-native,threads=2,max_new_tokens=1" \
      --prompts benchmarks/out/ladder/prompt512.txt --warmup 1 --repeats 1 --ignore-eos \
      --json "$OUT" > /dev/null 2>&1
    .venv/bin/python -c "import json,sys; d=json.load(open(sys.argv[1]))['results'][0]; \
print(f\"round $r, isa $isa: prefill {d['summary']['prefill_tok_s']['p50']:.1f} tok/s, \
{d['runs'][0]['prompt_tokens']} prompt tokens\")" "$OUT"
  done
done
rm -f "$OUT"
