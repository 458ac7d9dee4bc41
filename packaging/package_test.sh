#!/usr/bin/env bash
# Unpack the archive into a temporary folder and run it with an empty HOME and a bare
# PATH (no venv, no caches): the self-test (PNG checked) and a one-repeat benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."
ARCHIVE=$(ls -t dist/LatencyPlayground-*-linux-x86_64.tar.gz | head -n 1)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
tar -xzf "$ARCHIVE" -C "$tmp"
mkdir -p "$tmp/home"
app="$tmp/LatencyPlayground/latency-playground"
run() { env -i HOME="$tmp/home" PATH=/usr/bin:/bin QT_QPA_PLATFORM=offscreen "$app" "$@"; }

now() { date +%s.%N; }
start=$(now)
run gui --self-test --screenshot "$tmp/shot.png" --config max_new_tokens=32
first=$(now)
run --self-test --screenshot "$tmp/shot2.png" --config max_new_tokens=32  # no subcommand: the app
second=$(now)
head -c 8 "$tmp/shot.png" | od -An -tx1 | grep -q "89 50 4e 47 0d 0a 1a 0a" \
  || { echo "package-test: screenshot is not a PNG" >&2; exit 1; }
[ "$(stat -c %s "$tmp/shot.png")" -gt 20000 ] || { echo "package-test: PNG too small" >&2; exit 1; }
run bench --repeats 1 --warmup 0 --config max_new_tokens=16 --json "$tmp/bench.json"
grep -q '"schema": 1' "$tmp/bench.json"
# the bundled native kernels load (not a fallback to torch's): gguf-native decodes in C
run bench --repeats 1 --warmup 0 --config quant=gguf-native,max_new_tokens=8 --json "$tmp/native.json"
grep -q 'one native call a token' "$tmp/native.json" \
  || { echo "package-test: the bundled native kernels did not load" >&2; exit 1; }
# ONNX Runtime is bundled: the packaged app exports the default model (its own builder,
# offline) and decodes with it
run bench --repeats 1 --warmup 0 --config backend=onnxruntime,quant=int4-weight,max_new_tokens=8 \
  --json "$tmp/onnx.json"
grep -q 'ONNX Runtime GenAI' "$tmp/onnx.json" \
  || { echo "package-test: the bundled ONNX Runtime did not run" >&2; exit 1; }
# the server is bundled too: serve (batching on) answers a streamed chat request, then
# drains and stops on Ctrl+C (the client is the system python: curl may be absent)
port=18765
env -i HOME="$tmp/home" PATH=/usr/bin:/bin "$app" serve --config quant=gguf-native,max_new_tokens=8 \
  --port $port > "$tmp/serve.log" 2>&1 &
server=$!
python3 - "$port" <<'PY' || { cat "$tmp/serve.log" >&2; echo "package-test: serve failed" >&2; exit 1; }
import json, sys, time, urllib.request
base = f"http://127.0.0.1:{sys.argv[1]}"
for _ in range(240):
    try:
        urllib.request.urlopen(base + "/health", timeout=2)
        break
    except OSError:
        time.sleep(0.5)
body = json.dumps({"messages": [{"role": "user", "content": "Hi"}], "stream": True,
                   "max_tokens": 8}).encode()
request = urllib.request.Request(base + "/v1/chat/completions", body,
                                 {"Content-Type": "application/json"})
text = urllib.request.urlopen(request, timeout=120).read().decode()
assert text.rstrip().endswith("data: [DONE]"), text[-300:]
PY
kill -INT $server
wait $server || { cat "$tmp/serve.log" >&2; echo "package-test: serve did not stop cleanly" >&2; exit 1; }
mkdir -p build
cp "$tmp/shot.png" build/packaged-self-test.png
awk -v a="$start" -v b="$first" -v c="$second" 'BEGIN { printf "package-test: passed (self-test: first start %.1f s with conversion, later start %.1f s)\n", b - a, c - b }'
