#!/usr/bin/env bash
# playground serve with batching on (prefix store on and off) and off, and llama.cpp's
# server where built: the same prompts and concurrency steps, 2 threads each, rounds
# alternating servers (the machine is shared and noisy).
# Usage: bash benchmarks/serve_load.sh [CONFIG] [ROUNDS] [NAME] [LOAD FLAGS...]
# (e.g. --unique-prefix as the last argument: a cold run, no prompt shares a prefix)
# Writes benchmarks/out/load-NAME-<server>-r<round>.json/.csv, the on-server's pass-time
# metrics, and load-NAME.svg (latency against throughput, last round).
set -u
cd "$(dirname "$0")/.."
OUT=benchmarks/out; mkdir -p $OUT
CONFIG=${1:-quant=gguf-native,threads=2,max_new_tokens=64}
ROUNDS=${2:-2}
NAME=${3:-gguf}
shift $(( $# < 3 ? $# : 3 ))
LOADFLAGS="$*"
PIDS=""
serve() {  # name port flags...
  local name=$1 port=$2; shift 2
  .venv/bin/playground serve --config "$CONFIG" --port $port "$@" > $OUT/serve-$NAME-$name.log 2>&1 &
  PIDS="$PIDS $!"; SERVERS="$SERVERS $name:$port"
}
SERVERS=""
serve on 8013 --batching on
serve on-noprefix 8014 --batching on --prefix-cache off
serve off 8011 --batching off
LLAMA=benchmarks/out/llamacpp/bin/llama-server
if [[ "$NAME" == gguf* ]] && [ -x $LLAMA ]; then
  GGUF=$(.venv/bin/python -c "from playground.core.models import default_gguf_path as d; print(d())")
  $LLAMA -m "$GGUF" -t 2 -np 8 -c 8192 --port 8012 > $OUT/llama-server.log 2>&1 &
  PIDS="$PIDS $!"; SERVERS="$SERVERS llamacpp:8012"
fi
for i in $(seq 180); do
  ok=1; for s in $SERVERS; do curl -sf localhost:${s##*:}/health >/dev/null || ok=0; done
  [ $ok = 1 ] && break; sleep 1
done
for round in $(seq $ROUNDS); do
  for s in $SERVERS; do
    name=${s%%:*}; port=${s##*:}
    echo "== round $round: $NAME $name"
    .venv/bin/playground load --endpoint http://127.0.0.1:$port/v1 --concurrency 1,2,4,8 \
       --requests 16 --max-tokens 64 --goodput ttft_ms:1000,tpot_ms:50 --label "$NAME $name" $LOADFLAGS \
       --json $OUT/load-$NAME-$name-r$round.json --csv $OUT/load-$NAME-$name-r$round.csv
  done
done
curl -s localhost:8013/metrics | grep -E "pass_seconds_(sum|count)|prefix_cache|wide_pass" > $OUT/serve-$NAME-on-metrics.txt
curl -s localhost:8014/metrics | grep -E "pass_seconds_(sum|count)" > $OUT/serve-$NAME-on-noprefix-metrics.txt
last=$OUT/load-$NAME-on-r$ROUNDS.json
others=""; for s in $SERVERS; do n=${s%%:*}; [ $n != on ] && others="$others $OUT/load-$NAME-$n-r$ROUNDS.json"; done
.venv/bin/python - "$last" "$OUT/load-$NAME.svg" $others <<'PY'
import json, sys
from pathlib import Path
from playground.core import load_plot
runs = [(d.get("label") or d["endpoint"], d["load"]["steps"])
        for d in (json.loads(Path(p).read_text()) for p in [sys.argv[1], *sys.argv[3:]])]
load_plot.write(Path(sys.argv[2]), runs, "Serving the default model, 2 threads: latency vs throughput")
PY
kill $PIDS; wait
