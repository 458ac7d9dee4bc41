"""The blocked kernels of two (or more) git revisions, A/B on one GGUF's matrices, in one
process, rounds alternating: every matrix of the chosen layers as the decode step (one
row of x) or a prompt (many rows) multiplies it, and whether each revision gives the
same bits. Each revision's qgemv.c/qblocks.c/qstep.c are compiled from git into a
temporary folder with the app's own flags. A revision written ``REV:sc8`` runs on
matrices packed with the K-quants' sub-scales a byte each (weight_quant.SIX_BIT_SCALES
off), so the 6-bit form can be timed against it in one build; ``.`` is the working tree.
Every revision runs on matrices packed by the working tree's weight_quant, so it must
read the same layout: revisions before the K-quant scales went to the file's widths
(fp16 super-block scales, FMT_SC6; 3787f52) are refused.

    .venv/bin/python benchmarks/kernel_ab.py benchmarks/out/ladder/llama-3.2-1b/Q4_K_M.gguf \\
        --revs 3787f52,HEAD --rows 1,4 --rounds 41
    .venv/bin/python benchmarks/kernel_ab.py ... --revs .:sc8,. --rows 1,512
"""

from __future__ import annotations

import argparse
import ctypes
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NATIVE = "playground/core/native"


def build(rev: str, folder: Path, flags: list[str] | None = None) -> ctypes.CDLL:
    from playground.core import native

    src = folder / (rev.replace("/", "_") if rev != "." else "worktree")
    src.mkdir()
    sources = []
    for name in ("qgemv.c", "qblocks.c", "qhalf.c", "qstep.c", "qblocks_impl.h", "qblocks_amx.h"):
        if rev == ".":  # the working tree's
            path = ROOT / NATIVE / name
            (src / name).write_bytes(path.read_bytes())
            if name.endswith(".c"):
                sources.append(str(src / name))
            continue
        shown = subprocess.run(["git", "show", f"{rev}:{NATIVE}/{name}"], cwd=ROOT,
                               capture_output=True)
        if shown.returncode != 0 and name in ("qhalf.c", "qblocks_amx.h"):
            continue  # a revision before the half-precision kernel, or the AMX one
        shown.check_returncode()
        if name == "qblocks.c" and b"FMT_SC6" not in shown.stdout:
            sys.exit(f"{rev}: its kernels read the K-quant scales before 3787f52's layout "
                     "(float32 super-block scales), not the one the working tree packs")
        (src / name).write_bytes(shown.stdout)
        if name.endswith(".c"):
            sources.append(str(src / name))
    out = src / "kernels.so"
    subprocess.run(["cc", *(flags or native.FLAGS), *sources, "-lm", "-o", str(out)], check=True)
    lib = ctypes.CDLL(str(out))
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    for fn in (lib.q4_blocks_matmul, lib.q8_blocks_matmul):
        fn.argtypes = [ptr] * 8 + [i64] * 4 + [ctypes.c_int] * 2
        fn.restype = None
    return lib


def matrices(path: Path, layers: set[int], six_bit: bool = True) -> list:
    import numpy as np
    from gguf import GGUFReader

    from playground.core.quant import gguf_blocks, weight_quant

    weight_quant.SIX_BIT_SCALES = six_bit
    out = []
    for t in GGUFReader(str(path)).tensors:
        parts = t.name.split(".")
        if parts[0] != "blk" or int(parts[1]) not in layers or t.tensor_type.name == "F32":
            continue
        raw = np.ascontiguousarray(t.data).view(np.uint8)
        out.append(weight_quant.pack([gguf_blocks.to_qweight(
            gguf_blocks.GgufTensor(t.name, t.tensor_type.name, raw))]))
    return out


def main() -> None:
    import torch

    from playground.core import native

    parser = argparse.ArgumentParser()
    parser.add_argument("gguf", type=Path)
    parser.add_argument("--revs", default="HEAD~1,HEAD")
    parser.add_argument("--layers", help="e.g. 0,1 (default: all)")
    parser.add_argument("--rows", default="1,4")
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--isa", type=int, default=0,
                        help="0: the CPU's best, 1: AVX2 (built with the packaged app's "
                        "portable flags, as an AVX2-only CPU runs it), 2: AVX-512 VNNI "
                        "without AMX")
    args = parser.parse_args()
    native.library()  # torch's OpenMP first, as the app loads it
    with tempfile.TemporaryDirectory() as tmp:
        revs = args.revs.split(",")
        built = {rev.split(":")[0] for rev in revs}
        # -march=native would let GCC give the AVX2 bodies AVX-512's 32 registers
        flags = native.PORTABLE_FLAGS if args.isa == 1 else None
        libs_by_rev = {rev: build(rev, Path(tmp), flags) for rev in sorted(built)}
        libs = {rev: libs_by_rev[rev.split(":")[0]] for rev in revs}
        for lib in libs_by_rev.values():
            print("isa", lib.qblocks_set_isa(args.isa))
        layers = set(map(int, args.layers.split(","))) if args.layers else set(range(1000))
        forms = {six: matrices(args.gguf, layers, six) for six in {not r.endswith(":sc8") for r in revs}}
        packed = {rev: forms[not rev.endswith(":sc8")] for rev in revs}
        mats = next(iter(packed.values()))
        weights = sum(m.out_features * m.in_features for m in mats)
        print(f"{len(mats)} matrices, {weights / 1e6:.0f} M weights, {args.threads} threads")
        for rows in map(int, args.rows.split(",")):
            xs = {m.in_features: torch.randn(rows, m.in_features) for m in mats}
            times: dict[str, list[float]] = {rev: [] for rev in libs}
            outs: dict[str, list] = {}
            for _ in range(args.rounds):
                for rev, lib in libs.items():
                    ys, t0 = [], time.perf_counter()
                    for m in packed[rev]:
                        ys.append(_call(lib, m, xs[m.in_features], args.threads))
                    times[rev].append(time.perf_counter() - t0)
                    outs[rev] = ys
            first = next(iter(outs.values()))
            same = all(all(torch.equal(a, b) for a, b in zip(first, ys, strict=True))
                       for ys in outs.values())
            cells = "  ".join(f"{rev}: {statistics.median(v) * 1e3:.2f} ms (min {min(v) * 1e3:.2f})"
                              for rev, v in times.items())
            print(f"rows={rows}  {cells}  {'same bits' if same else 'DIFFERENT BITS'}")


def _call(lib, m, x, threads: int):
    import torch

    n, k, g = m.out_features, m.in_features, m.group
    y = torch.empty(x.shape[0], n)
    scratch = torch.empty(x.shape[0] * (k // g + k // 32 + k // 2) + 16)
    ptr = lambda t: None if t is None else t.data_ptr()  # noqa: E731
    fn = lib.q4_blocks_matmul if m.kind == "int4" else lib.q8_blocks_matmul
    fn(x.data_ptr(), m.codes.data_ptr(), m.scales.data_ptr(), ptr(m.offsets),
       ptr(m.scale_super), ptr(m.offset_super), y.data_ptr(), scratch.data_ptr(),
       x.shape[0], n, k, g, threads, m.fmt)
    return y


if __name__ == "__main__":
    main()
