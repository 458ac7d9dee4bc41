#!/usr/bin/env bash
# playground serve with batching on and off, and llama.cpp's server: the same prompts and
# concurrency steps, 2 threads each, rounds alternating servers (the machine is shared and
# noisy). Writes benchmarks/out/load-<server>-r<round>.json and the pass-time metrics.
# Usage: bash benchmarks/serve_load.sh [CONFIG] [ROUNDS]
set -u
cd "$(dirname "$0")/.."
OUT=benchmarks/out; mkdir -p $OUT
CONFIG=${1:-quant=gguf-native,threads=2,max_new_tokens=64}
ROUNDS=${2:-2}
.venv/bin/playground serve --config "$CONFIG" --port 8013 --batching on > $OUT/serve-on.log 2>&1 &
ON=$!
.venv/bin/playground serve --config "$CONFIG" --port 8011 --batching off > $OUT/serve-off.log 2>&1 &
OFF=$!
SERVERS="on:8013 off:8011"
LLAMA=benchmarks/out/llamacpp/bin/llama-server
if [ -x $LLAMA ]; then
  GGUF=$(.venv/bin/python -c "from playground.core.models import default_gguf_path as d; print(d())")
  $LLAMA -m "$GGUF" -t 2 -np 8 -c 8192 --port 8012 > $OUT/llama-server.log 2>&1 &
  LP=$!
  SERVERS="$SERVERS llamacpp:8012"
fi
for i in $(seq 120); do
  ok=1; for s in $SERVERS; do curl -sf localhost:${s##*:}/health >/dev/null || ok=0; done
  [ $ok = 1 ] && break; sleep 1
done
for round in $(seq $ROUNDS); do
  for s in $SERVERS; do
    name=${s%%:*}; port=${s##*:}
    echo "== round $round: $name"
    .venv/bin/playground load --endpoint http://127.0.0.1:$port/v1 --concurrency 1,2,4,8 \
       --requests 16 --max-tokens 64 --goodput ttft_ms:1000,tpot_ms:50 \
       --json $OUT/load-$name-r$round.json --csv $OUT/load-$name-r$round.csv
  done
done
curl -s localhost:8013/metrics | grep pass_seconds > $OUT/serve-on-passes.txt
kill $ON $OFF ${LP:-}; wait
