#!/usr/bin/env bash
# Build llama.cpp's llama-bench, llama-server and llama-quantize once, for benchmarks only (never part
# of `make test`): the source is the copy vendored in the llama-cpp-python sdist on
# PyPI, the one registry this machine reaches. About 15 minutes on 2 cores.
#
#   bash benchmarks/llamacpp_build.sh        # -> benchmarks/out/llamacpp/bin/llama-{bench,server,quantize}
#   LLAMACPP_ISA=avx2 bash benchmarks/llamacpp_build.sh   # -> out/llamacpp-avx2: AVX2, FMA, F16C
#       and nothing wider, whatever this CPU has (ladder.py run --isa avx2, beside
#       the playground's portable AVX2 build: both sides as an AVX2-only CPU runs them)
set -euo pipefail
cd "$(dirname "$0")"
ISA="${LLAMACPP_ISA:-native}"
OUT="$PWD/out/llamacpp"
[ "$ISA" = native ] || OUT="$PWD/out/llamacpp-$ISA"
VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
if [ -x "$OUT/bin/llama-bench" ] && [ -x "$OUT/bin/llama-server" ] && [ -x "$OUT/bin/llama-quantize" ]; then
  echo "already built: $OUT/bin"; exit 0
fi
mkdir -p "$OUT/src"
if [ -f "$PWD/out/llamacpp/src/llama_cpp_python-$VERSION.tar.gz" ] && [ "$ISA" != native ]; then
  cp "$PWD/out/llamacpp/src/llama_cpp_python-$VERSION.tar.gz" "$OUT/src/"
fi
[ -f "$OUT/src/llama_cpp_python-$VERSION.tar.gz" ] || python3 -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$OUT/src"
tar -xzf "$OUT/src/llama_cpp_python-$VERSION.tar.gz" -C "$OUT/src"
SRC="$OUT/src/llama_cpp_python-$VERSION/vendor/llama.cpp"
# Native CPU flags, no GPU backends, no curl (nothing is fetched at run time). On a CPU
# with AMX (Sapphire Rapids and later) llama.cpp's AMX path segfaults in
# ggml_backend_amx_mul_mat at the first product (seen here on a 2-vCPU Xeon with AMX,
# llama.cpp issue #20824, machine-dependent, unfixed), so it is left out there: the build is
# then llama.cpp's AVX-512 VNNI path with its own repacking, the fastest that runs. An
# explicit -mno-* wins over -march=native whatever the order.
NOAMX=""
if grep -qw amx_int8 /proc/cpuinfo 2>/dev/null; then NOAMX="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"; fi
CPU_FLAGS="-DGGML_NATIVE=ON"
if [ "$ISA" = avx2 ]; then
  CPU_FLAGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
  NOAMX=""
fi
cmake -S "$SRC" -B "$OUT/build" -DCMAKE_BUILD_TYPE=Release $CPU_FLAGS \
  -DCMAKE_C_FLAGS="$NOAMX" -DCMAKE_CXX_FLAGS="$NOAMX" \
  -DLLAMA_CURL=OFF -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
  -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON >"$OUT/cmake.log"
cmake --build "$OUT/build" -j "$(nproc)" --target llama-bench llama-server llama-quantize >"$OUT/build.log"
mkdir -p "$OUT/bin"
cp "$OUT/build/bin/llama-bench" "$OUT/build/bin/llama-server" "$OUT/build/bin/llama-quantize" "$OUT/bin/"
# convert_hf_to_gguf.py and its gguf-py, from the same source (benchmarks/ladder.py)
ln -sfn "$SRC" "$OUT/source"
echo "built: $OUT/bin ($(cat "$SRC/../../pyproject.toml" | grep -m1 '^version' || true))"
