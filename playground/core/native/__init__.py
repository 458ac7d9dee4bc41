"""The native weight-only kernels (qgemv.c, qblocks.c, qstep.c), compiled once per machine
and loaded with ctypes.

Why our own: on an AVX2 CPU without AVX-512 (the AMD EPYC machines here) torch's
int4 kernel decodes slower than a dense float32 matmul at one token, and both of
torch's weight-only kernels are fast only with bfloat16 activations. qgemv.c reads
int4/int8 codes with fp16 scales (GGUF's own block formats) and multiplies float32
activations, so weights are exactly the stored ones. It compiles in about a second
with the system C compiler into the user cache; the packaged app ships a prebuilt
copy. Without a compiler, or on a CPU without AVX2, ``library()`` is None and the
quantizers use torch's kernels instead (the result's notes say which ran).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
from functools import cache
from pathlib import Path

from playground.core import paths

SOURCES = [Path(__file__).with_name(name) for name in ("qgemv.c", "qblocks.c", "qhalf.c", "qstep.c")]
# included by qblocks.c, hashed too
HEADERS = [Path(__file__).with_name(n) for n in ("qblocks_impl.h", "qblocks_amx.h")]
FLAGS = ["-O3", "-march=native", "-fopenmp", "-shared", "-fPIC", "-std=c11"]
PORTABLE_FLAGS = ["-O3", "-mavx2", "-mfma", "-mf16c", "-fopenmp", "-shared", "-fPIC", "-std=c11"]
COMPILE_TIMEOUT_S = 120
PREBUILT_ENV = "PLAYGROUND_QGEMV"  # the packaged app points this at its bundled copy


def _cpu_key() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
        lines = [ln for ln in text.splitlines() if ln.startswith(("model name", "flags"))]
        return "\n".join(sorted(set(lines)))
    except OSError:
        return platform.processor() or platform.machine()


def _cpu_has_avx2() -> bool:
    return " avx2" in _cpu_key() and " fma" in _cpu_key() and " f16c" in _cpu_key()


def _failed_marker(target: Path) -> Path:
    return target.with_suffix(".failed")


def build(target: Path | None = None, flags: list[str] | None = None) -> Path:
    """Compile the kernels into ``target`` (default: the cache, keyed by source and CPU)."""
    source = b"".join(path.read_bytes() for path in SOURCES + HEADERS)
    flags = flags or FLAGS
    cached = target is None
    if target is None:
        key = hashlib.sha256(source + _cpu_key().encode() + " ".join(flags).encode()).hexdigest()
        target = paths.cache_dir() / "native" / f"qgemv-{key[:16]}.so"
    if target.is_file():
        return target
    failed = _failed_marker(target)
    if cached and failed.is_file():  # the same sources failed on this machine: say why again
        raise OSError(failed.read_text(errors="replace").strip() + " (earlier attempt; "
                      f"delete {failed} to retry)")
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise OSError("no C compiler (cc or gcc) on PATH")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(f".tmp{os.getpid()}")
    try:
        result = subprocess.run([compiler, *flags, *map(str, SOURCES), "-lm", "-o", str(tmp)],
                                capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        tmp.unlink(missing_ok=True)
        # not remembered: a busy machine may compile in time on the next start
        raise OSError(f"{compiler} took over {COMPILE_TIMEOUT_S} s") from None
    if result.returncode != 0:
        tmp.unlink(missing_ok=True)
        why = f"{compiler} failed: {' '.join(result.stderr.strip().splitlines()[-1:])}"
        if cached:
            failed.write_text(why + "\n")
        raise OSError(why)
    tmp.replace(target)
    return target


@cache
def library() -> ctypes.CDLL | None:
    """The loaded kernels, or None (see ``unavailable()`` for why)."""
    return _load()[0]


@cache
def _load() -> tuple[ctypes.CDLL | None, str | None]:
    if os.environ.get("PLAYGROUND_NATIVE", "1") == "0":
        return None, "switched off (PLAYGROUND_NATIVE=0)"
    if platform.machine() not in ("x86_64", "AMD64"):
        return None, f"needs an x86-64 CPU with AVX2 (this is {platform.machine() or 'unknown'})"
    if platform.system() != "Linux" and not os.environ.get(PREBUILT_ENV):
        # the CPU's flags are read from /proc/cpuinfo and the build uses gcc's OpenMP
        return None, f"built on Linux only so far (this is {platform.system()})"
    if platform.system() == "Linux" and not _cpu_has_avx2():
        return None, "needs an x86-64 CPU with AVX2, FMA and F16C"
    import torch  # noqa: F401  (loads torch's libgomp first, so ours shares its threads)

    try:
        prebuilt = os.environ.get(PREBUILT_ENV)
        lib = ctypes.CDLL(prebuilt if prebuilt else str(build()))
    except OSError as exc:
        return None, f"not built: {exc}"
    if not lib.qgemv_has_avx2():
        return None, "compiled without AVX2"
    missing = [name for name in ("half_matmul", "qstep", "qstep_rows", "qstep_rows_split", "qblocks_isa")
               if not hasattr(lib, name)]
    if missing:  # a prebuilt copy older than these sources
        return None, f"the prebuilt kernels lack {', '.join(missing)} (rebuild them)"
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    lib.q4_matmul.argtypes = [ptr] * 6 + [i64] * 4 + [ctypes.c_int] * 2
    lib.q4_matmul.restype = None
    lib.q8_matmul.argtypes = [ptr] * 5 + [i64] * 4 + [ctypes.c_int] * 2
    lib.q8_matmul.restype = None
    lib.q4_blocks_matmul.argtypes = [ptr] * 8 + [i64] * 4 + [ctypes.c_int] * 2
    lib.q4_blocks_matmul.restype = None
    lib.q8_blocks_matmul.argtypes = [ptr] * 8 + [i64] * 4 + [ctypes.c_int] * 2
    lib.q8_blocks_matmul.restype = None
    lib.half_matmul.argtypes = [ptr] * 3 + [i64] * 3 + [ctypes.c_int] * 2
    lib.half_matmul.restype = None
    lib.qblocks_set_isa.argtypes = [ctypes.c_int]
    lib.qblocks_set_isa.restype = ctypes.c_int
    lib.qblocks_isa.restype = ctypes.c_int
    forced = {"avx2": 1, "vnni": 2}.get(os.environ.get("PLAYGROUND_NATIVE_ISA", ""))
    lib.qblocks_set_isa(forced or 0)  # decided here, once, not by the first product's threads
    if hasattr(lib, "qblocks_amx_calls"):
        lib.qblocks_amx_calls.restype = i64
    lib.qstep.argtypes = [ptr, i64, i64, ptr, ptr, i64, ptr, ptr, ctypes.c_int, ctypes.c_int]
    lib.qstep.restype = None
    lib.qstep_rows.argtypes = [ptr, i64, ptr, ptr, ptr, ptr, ptr, ptr, ptr, i64, ptr, ptr,
                               ctypes.c_int, ctypes.c_int]
    lib.qstep_rows.restype = None
    lib.qstep_rows_split.argtypes = [ptr, i64, ptr, ptr, ptr, ptr, ptr, ptr, ptr, i64, ptr, ptr,
                                     ptr, ctypes.c_int, ctypes.c_int]
    lib.qstep_rows_split.restype = None
    lib.qrows_scratch_floats.argtypes = [ptr, i64, i64]
    lib.qrows_scratch_floats.restype = i64
    lib.qstep_scratch_floats.argtypes = [ptr, i64]
    lib.qstep_scratch_floats.restype = i64
    return lib, None


def unavailable() -> str | None:
    """Why the native kernels are not used, or None when they are."""
    return _load()[1]


ISA_NAMES = {1: "AVX2", 2: "AVX-512 VNNI", 3: "AVX-512 VNNI, AMX-INT8 for many rows"}


def isa() -> str | None:
    """The instruction set the blocked kernels run with here (chosen at run time from the
    CPU; PLAYGROUND_NATIVE_ISA=avx2 forces AVX2, =vnni AVX-512 VNNI without AMX), or None
    without the kernels."""
    lib = library()
    return None if lib is None else ISA_NAMES.get(lib.qblocks_isa())
