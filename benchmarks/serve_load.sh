#!/usr/bin/env bash
# playground serve (batching off) and llama.cpp's server, same prompts and steps, 2 threads
set -u
cd "$(dirname "$0")/.."
OUT=benchmarks/out; mkdir -p $OUT
.venv/bin/playground serve --config quant=gguf-native,threads=2,max_new_tokens=64 --port 8011 --batching off > /tmp/playground-serve.log 2>&1 &
SP=$!
GGUF=$(.venv/bin/python -c "from playground.core.models import default_gguf_path as d; print(d())")
benchmarks/out/llamacpp/bin/llama-server -m "$GGUF" -t 2 -np 8 -c 8192 --port 8012 > /tmp/llama-server.log 2>&1 &
LP=$!
for i in $(seq 60); do curl -sf localhost:8011/health >/dev/null && curl -sf localhost:8012/health >/dev/null && break; sleep 1; done
for target in playground:8011 llamacpp:8012; do
  name=${target%%:*}; port=${target##*:}
  .venv/bin/playground load --endpoint http://127.0.0.1:$port/v1 --concurrency 1,2,4,8 --requests 16 \
     --max-tokens 64 --goodput ttft_ms:1000,tpot_ms:50 --json $OUT/load-$name.json --csv $OUT/load-$name.csv
done
kill $SP $LP; wait
