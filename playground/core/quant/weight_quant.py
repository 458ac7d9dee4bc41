"""Weight-only quantized Linear layers (int8 per channel, int4 groups, GGUF's Q8_0 blocks).

A layer is quantized in two steps: a pure function turns float weights (or a GGUF
file's blocks) into a ``QWeight`` (integers plus scales and zeros, unpacked), then
``pack`` lays rows of one or more QWeights out for the kernel as one module.
Packing q/k/v (and gate/up) together gives one kernel call instead of three (two)
at one token per step; the separate projections stay as row views of the same
storage, so transformers' own forward still finds q_proj, k_proj and v_proj.

Two kernel backends, the same QWeights:
- "native" (preferred): our qgemv.c (playground/core/native), fp16 scales (GGUF's own
  formats, so a GGUF's blocks go in unchanged), activations rounded to int16 per 32
  inputs (``INT_ACT``) or kept float32;
- "torch": ``torch._weight_int8pack_mm`` and ``torch._weight_int4pack_mm_for_cpu``
  (w = (q − 8)·scale + zero), which are fast only with bfloat16 activations (with
  float32 they are 8–12× slower than a dense float32 matmul), so the model then runs
  in bfloat16 with bf16 scales. Used where the native kernels cannot be built.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache
from typing import Any

INT4_ROW_MULTIPLE = 16  # the int4 packing works on blocks of 16 output rows
FUSE_ROW_MULTIPLE = 64  # row views of a packed int4 matrix must start on a 64-row block
# Native kernels: activations as int16 per run of 32 (fast, KL 0.0000 measured), or
# PLAYGROUND_NATIVE_ACT=f32 for plain float32 (exact up to summation order, ~30% slower).
INT_ACT = os.environ.get("PLAYGROUND_NATIVE_ACT", "int16") != "f32"
BLOCK_ROWS = 8  # qblocks.c's blocks of output rows
SLAB_ROWS = 4096  # rows reordered at a time in place (_q8_codes): a multiple of BLOCK_ROWS
FMT_FP16, FMT_F32, FMT_SUPER, FMT_MINUS8D = 0, 1, 2, 4  # qblocks.c's scale formats
FMT_Q6 = 8  # qblocks.c's flag: Q6_K's int8 codes kept at 6 bits (groups of 16)
FMT_Q5 = 16  # and Q5_0's, at 5 bits (groups of 32, fp16 scales)
FMT_SC6 = 32  # with FMT_SUPER: Q4_K's and Q5_K's 6-bit sub-scales and mins, 48 bytes per 64
PACKED = True  # Q6_K and Q5_0 at their 6 and 5 bits (False: int8 codes, the form tests compare)
SIX_BIT_SCALES = True  # Q4_K's and Q5_K's sub-scales at 6 bits (False: a byte each; kernel_ab)
HALF = ("f16", "bf16")  # half-precision weights as stored (qhalf.c): q holds their bits


@dataclass
class QWeight:
    """One layer's quantized weight, unpacked: ``q`` int8 [N, K] (int8) or 0..15 [N, K]
    (int4: int32 from our quantizer, uint8 from a file's blocks); ``scale`` [N] (int8) or
    [N, K/group] (int4); ``zero`` like scale (int4).

    ``offset`` (float32, like scale) replaces ``zero`` where the weights are w = scale·q +
    offset exactly as a file stores them (GGUF's K-quants: scale = d·sub-scale and offset =
    −dmin·sub-min, products that fp16 cannot hold); q is then 0..15 (int4) or the file's
    own codes as int8 (Q5_K: 0..31, Q6_K: −32..31 in groups of 16)."""

    kind: str  # "int8", "int4", "q8_0" (int8 in groups of 16 or 32: a GGUF's blocks),
    # or "f16"/"bf16": q is int16 [N, K] holding the half-precision bits, no scale
    q: Any
    scale: Any
    zero: Any = None
    group: int = 0
    offset: Any = None
    # K-quants as stored: (d [N, K/256] float32, sc [N, K/group] int, −dmin or None, m or
    # None), scale = d·sc and offset = −dmin·m exactly; the kernels read this form
    two_level: Any = None
    # 6 or 5: the codes already in qblocks.c's blocks at that many bits a weight (Q6_K's and
    # Q5_0's: q is uint8 [N, K·bits/8], packed_codes), packed slice by slice as a file is
    # read, so a tall head never holds its int8 codes whole; 8: q as described above
    bits: int = 8

    @property
    def rows(self) -> int:
        return int(self.q.shape[0])

    @property
    def cols(self) -> int:
        return int(self.q.shape[1]) * 8 // self.bits

    def dequantize(self) -> Any:
        """The float32 weights these integers and scales stand for."""
        import torch

        if self.kind in HALF:
            return self.q.view(torch.float16 if self.kind == "f16" else torch.bfloat16).float()
        if self.kind == "int8":
            return self.q.float() * self.scale.float()[:, None]
        q = unpack_codes(self.q, self.bits) if self.bits < 8 else self.q
        n, k = q.shape
        if self.offset is not None:  # s·q + o, rounded as ggml's own de-quantization
            grouped = q.float().reshape(n, k // self.group, self.group)
            w = grouped * self.scale.float()[..., None] + self.offset.float()[..., None]
            return w.reshape(n, k)
        if self.kind == "q8_0":
            grouped = q.float().reshape(n, k // self.group, self.group)
            return (grouped * self.scale.float()[..., None]).reshape(n, k)
        grouped = (q.float().reshape(n, k // self.group, self.group) - 8)
        w = grouped * self.scale.float()[..., None] + self.zero.float()[..., None]
        return w.reshape(n, k)


# -- quantization (pure functions of float weights) --------------------------------
def backend() -> str:
    """"native" where qgemv.c is built and runs here, else "torch"."""
    from playground.core import native

    return "native" if native.library() is not None else "torch"


def _scale_dtype() -> Any:
    import torch

    return torch.float16 if backend() == "native" else torch.bfloat16


def quantize_int8(weight: Any) -> QWeight:
    """Symmetric int8 with one scale per output channel (row). The scale is rounded to the
    kernel's format (fp16 native, bf16 torch) before the integers are chosen for it."""
    import torch

    w = weight.detach().float()
    scale = (w.abs().amax(dim=1) / 127).clamp_min(1e-6).to(_scale_dtype()).float()
    q = torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8)
    return QWeight("int8", q, scale)


def quantize_int4(weight: Any, group: int) -> QWeight:
    """Asymmetric int4 per group of ``group`` inputs, round to nearest: w ≈ (q − 8)·scale +
    zero. Scale and zero are rounded to the kernel's format first, then the integers are
    chosen for them."""
    import torch

    w = weight.detach().float()
    n, k = w.shape
    dtype = _scale_dtype()
    grouped = w.reshape(n, k // group, group)
    low, high = grouped.amin(-1), grouped.amax(-1)
    scale = ((high - low) / 15).clamp_min(1e-6).to(dtype).float()
    if backend() == "native":  # stores the offset m = zero − 8·scale (GGUF Q4_1's form)
        zero = low.to(dtype).float() + 8 * scale
    else:  # stores the zero itself
        zero = (low + 8 * scale).to(dtype).float()
    q = torch.round((grouped - zero[..., None]) / scale[..., None]) + 8
    q = q.clamp(0, 15).to(torch.int32).reshape(n, k)
    return QWeight("int4", q, scale, zero, group)


def activations() -> str:
    """What the weight-only layers multiply with and on which instruction set, in words
    (for notes and reports: a result says which kernels ran, e.g. AVX2 or AMX)."""
    from playground.core import native

    if backend() == "torch":
        return "bf16 activations (torch's kernels)"
    kernels = f"native kernels, {native.isa()}" if INT_ACT else "native kernels"
    if INT_ACT:
        return f"activations as int16 per 32 inputs ({kernels})"
    return f"float32 activations ({kernels})"


def group_for(cols: int, group: int) -> int | None:
    """The int4 group to use for ``cols`` inputs: ``group`` if it divides them, else the
    largest halving of it that does (a multiple of 32), else None (no int4 fits)."""
    g = group
    while g >= 32:
        if cols % g == 0:
            return g
        g //= 2
    return None


def int4_fits(rows: int, cols: int, group: int) -> bool:
    if backend() == "native":
        return cols % group == 0 and group % 32 == 0
    return rows % INT4_ROW_MULTIPLE == 0 and cols % group == 0


def fake_quantize(weight: Any, quant: str, group: int = 32) -> Any:
    """The weight as the kernel will see it, with a straight-through gradient (QAT)."""
    if quant == "int8-weight":
        deq = quantize_int8(weight).dequantize()
    elif quant == "int4-weight":
        deq = quantize_int4(weight, group).dequantize()
    else:
        raise ValueError(f"fake_quantize: {quant} is not a weight-only quantization")
    deq = deq.to(weight.dtype)
    return weight + (deq - weight).detach()


# -- kernels --------------------------------------------------------------------------
def kernels_available() -> str | None:
    """None when weight-only kernels run here (native, else torch's), else why not."""
    import torch

    if backend() == "native":
        return None
    for name in ("_weight_int8pack_mm", "_weight_int4pack_mm_for_cpu",
                 "_convert_weight_to_int4pack_for_cpu"):
        if not hasattr(torch, name):
            return f"this torch build has no torch.{name}"
    try:
        _torch_pack([quantize_int4(torch.ones(16, 32), 32)], None)(
            torch.ones(1, 32, dtype=torch.bfloat16))
    except RuntimeError as exc:
        return f"torch's int4 CPU kernel failed: {str(exc).splitlines()[0]}"
    return None


def pack(parts: list[QWeight], biases: list[Any] | None = None, consume: bool = False) -> Any:
    """One layer computing the rows of every part, in order, on this machine's backend.
    ``consume``: the parts are not used after (their codes may be reordered in place)."""
    import torch

    kinds = {(p.kind, p.group, p.cols) for p in parts}
    if len(kinds) > 1:
        raise ValueError("pack: parts differ in kind, group or input size")
    if len({p.bits for p in parts}) > 1:  # one matrix in one form
        parts = [QWeight(**{**vars(p), "q": unpack_codes(p.q, p.bits), "bits": 8})
                 if p.bits < 8 else p for p in parts]
    bias = None
    if biases and any(b is not None for b in biases):
        bias = torch.cat([(b if b is not None else torch.zeros(p.rows)).detach().float()
                          for p, b in zip(parts, biases, strict=True)])
    if parts[0].kind in HALF:
        if backend() != "native":
            raise ValueError(f"pack: {parts[0].kind} weights need the native kernels")
        q = torch.cat([p.q for p in parts]) if len(parts) > 1 else parts[0].q
        return _native_class()(parts[0].kind, q.contiguous(), None, None, 0, int(q.shape[0]),
                               parts[0].cols, bias)
    if any(blocked_only(p) for p in parts):
        why = blocks_refused(parts)
        if why:
            raise ValueError(f"pack: {why}")
        return _native_pack(parts, bias, consume)
    if backend() == "native" and (parts[0].kind != "int8" or parts[0].cols % 32 == 0):
        return _native_pack(parts, bias, consume)
    if parts[0].kind == "q8_0":  # torch has no grouped int8 kernel: one scale per row
        parts = [quantize_int8(p.dequantize()) for p in parts]
    return _torch_pack(parts, None if bias is None else bias.to(torch.bfloat16))


def _fp16_exact(t: Any) -> bool:
    import torch

    return t is None or bool(torch.equal(t.float().to(torch.float16).float(), t.float()))


def blocked_only(part: QWeight) -> bool:
    """Whether only qblocks.c's layout takes this weight: a file's exact offsets or float32
    grouped scales, or groups of 16 (GGUF's K-quants); the row kernels take fp16 scales."""
    return (part.group == 16 or part.offset is not None
            or (part.kind == "q8_0" and not _fp16_exact(part.scale)))


def blocks_refused(parts: list[QWeight]) -> str | None:
    """Why these parts cannot be packed in qblocks.c's layout here, or None."""
    if backend() != "native":
        return "torch's kernels have no K-quant layout (no native kernels here)"
    if not INT_ACT:
        return "K-quant blocks need int16 activations (PLAYGROUND_NATIVE_ACT=f32 is set)"
    cols = parts[0].cols
    if cols % 32 or any(p.rows % BLOCK_ROWS for p in parts):
        return f"rows not a multiple of {BLOCK_ROWS} or inputs of 32"
    return None


def pack_fused(parts: list[QWeight], biases: list[Any]) -> tuple[Any, list[Any]]:
    """Pack parts as one layer (for the lean step) and return a row view per part
    (for transformers' forward); (None, separate layers) where rows cannot be split."""
    splittable = (backend() == "native" or parts[0].kind == "int8"
                  or all(p.rows % FUSE_ROW_MULTIPLE == 0 for p in parts))
    if len(parts) == 1 or not splittable:
        return None, [pack([p], [b]) for p, b in zip(parts, biases, strict=True)]
    fused = pack(parts, biases)
    views, start = [], 0
    for p in parts:
        views.append(fused.rows_view(start, start + p.rows))
        start += p.rows
    return fused, views


def _layer_base() -> type:
    import torch

    class WeightOnlyLinear(torch.nn.Module):
        """y = x·Wᵀ (+ b) with W stored quantized; ``kernel()`` is (fn, args) such that
        fn(x2d, *args) computes the layer without bias (the lean step calls it)."""

        act_dtype = torch.float32

        def __init__(self, kind: str, group: int, rows: int, cols: int, bias: Any) -> None:
            super().__init__()
            self.kind, self.group = kind, group
            self.in_features, self.out_features = cols, rows
            self.register_buffer("bias", bias)

        def kernel(self) -> tuple[Any, tuple[Any, ...]]:
            raise NotImplementedError

        def forward(self, x: Any) -> Any:
            shape = x.shape
            x2 = x.reshape(-1, shape[-1])
            if x2.dtype != self.act_dtype:
                x2 = x2.to(self.act_dtype)
            fn, args = self.kernel()
            y = fn(x2.contiguous(), *args).view(*shape[:-1], self.out_features)
            if self.bias is not None:
                y = y + self.bias
            return y.to(x.dtype)

        def extra_repr(self) -> str:
            group = f", group={self.group}" if self.kind != "int8" else ""
            return f"{type(self).__name__}: {self.kind}, in={self.in_features}, " \
                   f"out={self.out_features}{group}"

    return WeightOnlyLinear


@cache
def weight_only_class() -> type:
    return _layer_base()


@cache
def _torch_class() -> type:
    import torch

    int8_mm = torch._weight_int8pack_mm
    int4_mm = torch._weight_int4pack_mm_for_cpu

    class TorchWeightLinear(weight_only_class()):
        """torch's kernels: int8 rows + bf16 scales, or packed int4 + [K/g, N, 2] bf16."""

        act_dtype = torch.bfloat16

        def __init__(self, kind: str, weight: Any, scales: Any, group: int, rows: int,
                     cols: int, bias: Any = None) -> None:
            super().__init__(kind, group, rows, cols, bias)
            self.register_buffer("qweight", weight)
            self.register_buffer("scales", scales)

        def kernel(self) -> tuple[Any, tuple[Any, ...]]:
            if self.kind == "int8":
                return int8_mm, (self.qweight, self.scales)
            return int4_mm, (self.qweight, self.group, self.scales)

        def rows_view(self, start: int, stop: int) -> Any:
            bias = None if self.bias is None else self.bias[start:stop]
            if self.kind == "int8":
                scales = self.scales[start:stop]
            else:  # [K/group, N, 2]: a column slice is not contiguous, copy it (small)
                scales = self.scales[:, start:stop].contiguous()
            return type(self)(self.kind, self.qweight[start:stop], scales, self.group,
                              stop - start, self.in_features, bias)

    return TorchWeightLinear


def _torch_pack(parts: list[QWeight], bias: Any) -> Any:
    import torch

    kind, group, cols = parts[0].kind, parts[0].group, parts[0].cols
    q = torch.cat([p.q for p in parts]) if len(parts) > 1 else parts[0].q
    rows = int(q.shape[0])
    if kind == "int8":
        scale = torch.cat([p.scale for p in parts]).to(torch.bfloat16).contiguous()
        return _torch_class()("int8", q.contiguous(), scale, 0, rows, cols, bias)
    scale = torch.cat([p.scale for p in parts]).float()
    zero = torch.cat([p.zero for p in parts]).float()
    packed = torch._convert_weight_to_int4pack_for_cpu(q.to(torch.int32).contiguous(), 1)
    scales_zeros = torch.stack([scale.t(), zero.t()], dim=-1).to(torch.bfloat16).contiguous()
    return _torch_class()("int4", packed, scales_zeros, group, rows, cols, bias)


@cache
def _native_class() -> type:
    import torch

    from playground.core import native

    lib = native.library()
    empty, threads = torch.empty, torch.get_num_threads

    def q4(x: Any, codes: Any, d: Any, m: Any, n: int, k: int, g: int, int_act: int) -> Any:
        rows = x.shape[0]
        y, scratch = empty(rows, n), empty(rows * (k // g + k // 32 + k // 2))
        lib.q4_matmul(x.data_ptr(), codes.data_ptr(), d.data_ptr(), m.data_ptr(), y.data_ptr(),
                      scratch.data_ptr(), rows, n, k, g, threads(), int_act)
        return y

    def q8(x: Any, codes: Any, d: Any, n: int, k: int, g: int, int_act: int) -> Any:
        rows = x.shape[0]
        y, scratch = empty(rows, n), empty(rows * (k // 32 + k // 2))
        lib.q8_matmul(x.data_ptr(), codes.data_ptr(), d.data_ptr(), y.data_ptr(),
                      scratch.data_ptr(), rows, n, k, g, threads(), int_act)
        return y

    def half(x: Any, codes: Any, n: int, k: int, bf16: int) -> Any:
        y = empty(x.shape[0], n)
        lib.half_matmul(x.data_ptr(), codes.data_ptr(), y.data_ptr(), x.shape[0], n, k,
                        threads(), bf16)
        return y

    def q4_blocks(x: Any, codes: Any, d: Any, m: Any, dsup: Any, msup: Any, n: int, k: int,
                  g: int, fmt: int) -> Any:
        rows = x.shape[0]
        y, scratch = empty(rows, n), empty(rows * (k // g + k // 32 + k // 2) + 16)
        lib.q4_blocks_matmul(x.data_ptr(), codes.data_ptr(), d.data_ptr(), _ptr(m), _ptr(dsup),
                             _ptr(msup), y.data_ptr(), scratch.data_ptr(), rows, n, k, g,
                             threads(), fmt)
        return y

    def q8_blocks(x: Any, codes: Any, d: Any, m: Any, dsup: Any, msup: Any, n: int, k: int,
                  g: int, fmt: int) -> Any:
        rows = x.shape[0]
        y, scratch = empty(rows, n), empty(rows * (k // g + k // 32 + k // 2) + 16)
        lib.q8_blocks_matmul(x.data_ptr(), codes.data_ptr(), d.data_ptr(), _ptr(m), _ptr(dsup),
                             _ptr(msup), y.data_ptr(), scratch.data_ptr(), rows, n, k, g,
                             threads(), fmt)
        return y

    class NativeWeightLinear(weight_only_class()):
        """qgemv.c: int4 codes two per byte + fp16 scale and offset per group (w = d·q + m),
        or int8 codes + fp16 scale per group; float32 activations. ``blocked``: the codes,
        scales and offsets are in qblocks.c's blocks of 8 rows (the same bytes, reordered
        within each block), multiplied with int16 activations; there the scales may also be
        float32 or a K-quant's sub-scales (6-bit or int8) with fp16 per super-block (``fmt``,
        qblocks.c's FMT_*), and Q4_0's offsets are computed from d instead of stored.
        Kinds "f16"/"bf16" (qhalf.c): ``codes`` are a file's half-precision weights as
        stored (int16 bits), with no scales; float32 activations."""

        def __init__(self, kind: str, codes: Any, scales: Any, offsets: Any, group: int,
                     rows: int, cols: int, bias: Any = None, blocked: bool = False,
                     fmt: int = FMT_FP16, scale_super: Any = None,
                     offset_super: Any = None) -> None:
            super().__init__(kind, group, rows, cols, bias)
            self.blocked, self.fmt = blocked, fmt
            self.register_buffer("codes", codes)
            self.register_buffer("scales", scales)
            self.register_buffer("offsets", offsets)
            self.register_buffer("scale_super", scale_super)
            self.register_buffer("offset_super", offset_super)

        def kernel(self) -> tuple[Any, tuple[Any, ...]]:
            n, k, g, a = self.out_features, self.in_features, self.group, int(INT_ACT)
            if self.kind in HALF:
                return half, (self.codes, n, k, int(self.kind == "bf16"))
            if self.blocked:
                args = (self.codes, self.scales, self.offsets, self.scale_super,
                        self.offset_super, n, k, g, self.fmt)
                return (q4_blocks if self.kind == "int4" else q8_blocks), args
            if self.kind == "int4":
                return q4, (self.codes, self.scales, self.offsets, n, k, g, a)
            return q8, (self.codes, self.scales, n, k, g, a)

        def rows_view(self, start: int, stop: int) -> Any:
            if self.blocked and (start % BLOCK_ROWS or stop % BLOCK_ROWS):
                raise ValueError(f"rows_view: {start}:{stop} splits a block of {BLOCK_ROWS} rows")

            def rows(t: Any) -> Any:
                return None if t is None else t[start:stop]

            return type(self)(self.kind, self.codes[start:stop], rows(self.scales),
                              rows(self.offsets), self.group, stop - start, self.in_features,
                              rows(self.bias), self.blocked, self.fmt, rows(self.scale_super),
                              rows(self.offset_super))

    return NativeWeightLinear


def _ptr(t: Any) -> int | None:
    return None if t is None else t.data_ptr()


def _native_pack(parts: list[QWeight], bias: Any, consume: bool = False) -> Any:
    import torch

    kind, group, cols = parts[0].kind, parts[0].group, parts[0].cols
    q = torch.cat([p.q for p in parts]) if len(parts) > 1 else parts[0].q
    own = consume or len(parts) > 1  # q is ours to reorder in place
    rows = int(q.shape[0])
    # every part whole blocks, so each part's row view is a matrix in the same layout
    blocked = INT_ACT and cols % 32 == 0 and all(p.rows % BLOCK_ROWS == 0 for p in parts)
    if blocked and all(p.two_level is not None for p in parts) and cols % 256 == 0:
        return _native_pack_super(parts, q, bias, own)
    # float32 where a part's scales or offsets are products fp16 cannot hold (K-quants)
    wide = any(not _fp16_exact(p.scale) or not _fp16_exact(p.offset) for p in parts)
    dtype = torch.float32 if wide else torch.float16
    fmt = FMT_F32 if wide else FMT_FP16
    scale = torch.cat([p.scale.reshape(p.rows, -1).float() for p in parts])
    offset = None  # w = scale·q + offset: int4 always, int8 codes where a file has offsets
    if kind == "int4" or any(p.offset is not None for p in parts):
        offset = torch.cat([_offset(p, dtype).reshape(p.rows, -1) for p in parts])
    if kind in ("int8", "q8_0"):
        group = cols if kind == "int8" else group  # one scale per row: a single group
        offsets = None if offset is None else _block_scales(offset.to(dtype), blocked)
        if parts[0].bits == 5:  # Q5_0 at 5 bits a weight, as the file holds it
            if not blocked:
                raise ValueError("pack: 5-bit codes outside qblocks.c's blocks")
            codes, fmt = q, fmt | FMT_Q5
        elif parts[0].bits != 8:  # 6-bit codes take the K-quant form above, never this one
            raise ValueError(f"pack: {parts[0].bits}-bit codes without their K-quant scales")
        else:
            codes = _q8_codes(q, blocked, own)
        return _native_class()("q8", codes, _block_scales(scale.to(dtype), blocked),
                               offsets, group, rows, cols, bias, blocked, fmt)
    scale, offset = scale.to(dtype), offset.to(dtype)
    offsets = _block_scales(offset, blocked)
    if blocked and torch.equal(offset.float(), -8 * scale.float()):
        fmt, offsets = fmt | FMT_MINUS8D, None  # Q4_0: read m = -8d from d, store nothing
    return _native_class()("int4", _q4_codes(q, blocked), _block_scales(scale, blocked),
                           offsets, group, rows, cols, bias, blocked, fmt)


def _offset(part: QWeight, dtype: Any) -> Any:
    """A part's w = scale·q + offset form: its own offsets, none (int8 codes: zeros), or
    from its zero (int4: (q − 8)·scale + zero = scale·q + zero − 8·scale, GGUF Q4_1's d
    and m), with the scale rounded to the kernel's ``dtype`` first."""
    import torch

    if part.offset is not None:
        return part.offset.float()
    if part.zero is None:
        return torch.zeros_like(part.scale, dtype=torch.float32)
    return part.zero.float() - 8 * part.scale.to(dtype).float()


def _native_pack_super(parts: list[QWeight], q: Any, bias: Any, own: bool = False) -> Any:
    """K-quants as the file holds their scales: 6-bit (Q4_K, Q5_K) or int8 (Q6_K) sub-scales
    per group and fp16 per super-block of 256 (d·sc is exact in float32, where the kernel
    forms it): the file's own bytes, where float32 products took three times as many."""
    import torch

    kind, group, cols, rows = parts[0].kind, parts[0].group, parts[0].cols, int(q.shape[0])
    d_sup = torch.cat([p.two_level[0] for p in parts])
    d_sub = torch.cat([p.two_level[1] for p in parts])
    offsets = offset_super = None
    if any(p.two_level[2] is not None for p in parts):
        if not all(p.two_level[2] is not None for p in parts):
            raise ValueError("pack: K-quant parts differ in having offsets")
        offset_super = _super_scales(torch.cat([p.two_level[2] for p in parts]))
        offsets = _block_scales(torch.cat([p.two_level[3] for p in parts]).to(torch.int8), True)
    fmt = FMT_SUPER
    scales = _block_scales(d_sub.to(torch.int8), True)
    if SIX_BIT_SCALES and group == 32 and _six_bits(d_sub) and (offsets is None or _six_bits(offsets)):
        # Q4_K's and Q5_K's: at 6 bits, as the file holds them (a byte each: 5% of the weights)
        fmt |= FMT_SC6
        scales = _six_bit_scales(scales)
        offsets = None if offsets is None else _six_bit_scales(offsets)
    if kind == "int4":
        codes = _q4_codes(q, True)
    elif parts[0].bits == 6:
        codes, fmt = q, fmt | FMT_Q6  # Q6_K at 6 bits a weight, as the file holds it
    else:
        codes = _q8_codes(q, True, own)
    return _native_class()("int4" if kind == "int4" else "q8", codes, scales, offsets, group,
                           rows, cols, bias, True, fmt, _super_scales(d_sup), offset_super)


def _super_scales(s: Any) -> Any:
    """A K-quant's per-super-block d or −dmin in fp16, the file's own width (exact: they
    come from the file's fp16 values); blocked."""
    import torch

    half = s.to(torch.float16)
    same = (half.float() == s.float()) | (torch.isnan(half) & torch.isnan(s))  # a file's NaN
    if not bool(same.all()):
        raise ValueError("pack: super-block scales that fp16 cannot hold (not a file's K-quant)")
    return _block_scales(half, True)


def _six_bits(s: Any) -> bool:
    return bool(s.numel()) and s.shape[-1] % 8 == 0 and int(s.min()) >= 0 and int(s.max()) <= 63


def _six_bit_scales(s: Any) -> Any:
    """Blocked 6-bit sub-scales [rows, groups] as qblocks.c's FMT_SC6 reads them: per block
    of 8 rows and super-block, its 64 values v (memory order) in 48 bytes: 32 of low
    nibbles (v[k] and v[k + 32]), then 16 of top bit pairs (v[k + 16f] in field f)."""
    import torch

    rows = s.shape[0]
    v = s.reshape(-1, 64).to(torch.uint8)
    low = (v[:, :32] & 15) | ((v[:, 32:] & 15) << 4)
    top = v >> 4
    high = top[:, :16] | (top[:, 16:32] << 2) | (top[:, 32:48] << 4) | (top[:, 48:] << 6)
    return torch.cat([low, high], 1).reshape(rows, -1)


def _q8_codes(q: Any, blocked: bool, in_place: bool = False) -> Any:
    import torch

    rows, cols = q.shape
    codes = q.to(torch.int8)
    if not blocked:
        return codes.contiguous()
    if (in_place or codes.data_ptr() != q.data_ptr()) and codes.is_contiguous():
        # slab by slab in the codes' own memory (a block of 8 rows keeps its place): a
        # tied 3B head's blocked copy beside its codes was 151 MB more at the load's peak
        for start in range(0, rows, SLAB_ROWS):
            slab = codes[start: start + SLAB_ROWS]
            slab.copy_(_blocked_rows(slab))
        return codes
    return _blocked_rows(codes)


def packed_codes(q: Any, bits: int) -> Any:
    """int8 codes (Q6_K's q - 32, Q5_0's q - 16) in qblocks.c's 6- or 5-bit blocks: per
    block of 8 rows and run of 32 inputs, the low nibbles in _q4_codes' blocked order (128
    bytes), then the top bits: Q6_K's two a pair in 8 pairs a 16-bit lane (64 bytes),
    Q5_0's one in 16 pairs a lane (32 bytes). In slabs of ~2M codes, in bytes: whole, a
    2,048 x 8,192 matrix's temporaries were 200 MB at the load's peak."""
    import torch

    rows, cols = q.shape
    runs, top_bits, shift = cols // 32, bits - 4, 1 << (bits - 1)
    per_lane = 16 // top_bits  # pairs a 16-bit lane holds
    out = torch.empty(rows, cols * bits // 8, dtype=torch.uint8)
    slab = max(BLOCK_ROWS, (1 << 21) // cols // BLOCK_ROWS * BLOCK_ROWS)
    for start in range(0, rows, slab):
        u = (q[start: start + slab].to(torch.int16) + shift).to(torch.uint8)
        n, blocks = u.shape[0], u.shape[0] // BLOCK_ROWS
        # [block, row c, run, vector j, nibble s, e] -> [block, run, j, c, e, s]
        nib = (u & 15).reshape(blocks, BLOCK_ROWS, runs, 4, 4, 2).permute(0, 2, 3, 1, 5, 4)
        low = torch.stack([nib[..., 0] | (nib[..., 1] << 4), nib[..., 2] | (nib[..., 3] << 4)], -1)
        # the top bits: [block, row c, run, vector h, field k, e] -> [block, run, h, c, e, k]
        top = (u >> 4).reshape(blocks, BLOCK_ROWS, runs, 16 // per_lane, per_lane, 2)
        top = top.permute(0, 2, 3, 1, 5, 4)
        half = per_lane // 2  # fields a byte of the lane holds
        top_bytes = torch.stack([
            sum(top[..., b * half + k] << (top_bits * k) for k in range(half)) for b in (0, 1)], -1)
        out[start: start + n] = torch.cat(
            [low.reshape(blocks, runs, 128), top_bytes.reshape(blocks, runs, 32 * top_bits)],
            -1).reshape(n, cols * bits // 8)
    return out


def unpack_codes(codes: Any, bits: int) -> Any:
    """packed_codes undone: int8 [N, K] codes."""
    import torch

    rows, cols = codes.shape[0], codes.shape[1] * 8 // bits
    blocks, runs, top_bits = rows // BLOCK_ROWS, cols // 32, bits - 4
    per_lane = 16 // top_bits
    packed = codes.reshape(blocks, runs, 128 + 32 * top_bits)
    low = packed[..., :128].reshape(blocks, runs, 4, BLOCK_ROWS, 2, 2)
    nib = torch.stack([low[..., 0] & 15, low[..., 0] >> 4, low[..., 1] & 15, low[..., 1] >> 4], -1)
    top = packed[..., 128:].reshape(blocks, runs, 16 // per_lane, BLOCK_ROWS, 2, 2).to(torch.int32)
    lane = top[..., 0] | (top[..., 1] << 8)
    fields = torch.stack([(lane >> (top_bits * k)) & ((1 << top_bits) - 1)
                          for k in range(per_lane)], -1)
    # [block, run, j, c, e, s] -> [block, c, run, j, s, e]; the top bits' fields likewise
    u = (nib.permute(0, 3, 1, 2, 5, 4).reshape(rows, cols).to(torch.int16)
         | (fields.permute(0, 3, 1, 2, 5, 4).reshape(rows, cols).to(torch.int16) << 4))
    return (u - (1 << (bits - 1))).to(torch.int8)


def packed_bits(type_name: str, rows: int, cols: int) -> int:
    """The bits a weight a file's matrix of this type and shape is kept at in the kernels:
    6 for Q6_K (qblocks.c's FMT_Q6), 5 for Q5_0 (FMT_Q5), else 8 (int8 codes)."""
    bits = {"Q6_K": 6, "Q5_0": 5}.get(type_name, 8)
    fits = INT_ACT and rows % BLOCK_ROWS == 0 and cols % (256 if bits == 6 else 32) == 0
    return bits if bits < 8 and PACKED and fits and backend() == "native" else 8


def _blocked_rows(codes: Any) -> Any:
    """int8 codes [rows, cols] in qblocks.c's order, a new tensor:
    [block, row c, run, pair p, e] -> [block, run, p, c, e]."""
    rows, cols = codes.shape
    return (codes.reshape(rows // BLOCK_ROWS, BLOCK_ROWS, cols // 32, 16, 2).permute(0, 2, 3, 1, 4)
            .reshape(rows, cols).contiguous())


def _q4_codes(q: Any, blocked: bool) -> Any:
    import torch

    rows, cols = q.shape
    q = q.to(torch.uint8)
    if blocked:  # [block, row c, run, vector j, nibble s, e] -> [block, run, j, c, e, s]
        nib = q.reshape(rows // BLOCK_ROWS, BLOCK_ROWS, cols // 32, 4, 4, 2).permute(0, 2, 3, 1, 5, 4)
        # a 16-bit lane's low byte holds nibbles 0 and 1, its high byte 2 and 3
        codes = torch.stack([nib[..., 0] | (nib[..., 1] << 4), nib[..., 2] | (nib[..., 3] << 4)], -1)
    else:  # GGUF's order: byte j of a run holds inputs j (low nibble) and j + 16
        runs = q.reshape(rows, cols // 32, 2, 16)
        codes = runs[:, :, 0] | (runs[:, :, 1] << 4)
    return codes.reshape(rows, cols // 2).contiguous()


def _block_scales(s: Any, blocked: bool) -> Any:
    """[rows, groups] as qblocks.c reads them: per block of rows, group by group."""
    if not blocked:
        return s.contiguous()
    rows, groups = s.shape
    return (s.reshape(rows // BLOCK_ROWS, BLOCK_ROWS, groups).transpose(1, 2).contiguous()
            .reshape(rows, groups))
