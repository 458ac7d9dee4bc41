#!/usr/bin/env bash
# Passes of many rows on every core (threads auto) against every pass on one thread
# (threads=1, as auto was before): two servers of the default model, playground load at
# concurrency 1/2/4/8 against each in turn, rounds alternating (BENCHMARKS.md "Passes of
# many rows on every core"). Usage: bash benchmarks/serve_wide.sh [ROUNDS] [REQUESTS]
# (REQUESTS a step, 16 unless given: at concurrency 8 a step of 16 is two waves of
# requests, and the last ones ending one by one weigh in; 48 measures the steady state)
set -u
cd "$(dirname "$0")/.."
OUT=benchmarks/out; mkdir -p $OUT
ROUNDS=${1:-3}
REQUESTS=${2:-16}
CONFIG=quant=gguf-native,max_new_tokens=64
.venv/bin/playground serve --config $CONFIG,threads=1 --port 8021 > $OUT/serve-one-thread.log 2>&1 &
P1=$!
.venv/bin/playground serve --config $CONFIG --port 8022 > $OUT/serve-auto.log 2>&1 &
P2=$!
for i in $(seq 180); do
  curl -sf localhost:8021/health >/dev/null && curl -sf localhost:8022/health >/dev/null && break
  sleep 1
done
for r in $(seq $ROUNDS); do
  for s in one-thread:8021 auto:8022; do
    echo "== round $r: ${s%%:*}"
    .venv/bin/playground load --endpoint http://127.0.0.1:${s##*:}/v1 --concurrency 1,2,4,8 \
      --requests $REQUESTS --max-tokens 64 --label "${s%%:*}" \
      --json $OUT/load-wide-${s%%:*}-r$r.json | grep concurrency
  done
done
kill $P1 $P2; wait
