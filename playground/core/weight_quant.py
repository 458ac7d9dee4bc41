"""Weight-only quantized Linear layers on torch's CPU kernels (int8 per channel, int4 groups).

A layer is quantized in two steps: a pure function turns float weights (or a GGUF
file's blocks) into a ``QWeight`` (integers plus scales and zeros, unpacked), then
``pack`` lays rows of one or more QWeights out for the kernel as one module.
Packing q/k/v (and gate/up) together gives one kernel call instead of three (two)
at one token per step; the separate projections stay as row views of the same
storage, so transformers' own forward still finds q_proj, k_proj and v_proj.

Kernels: ``torch._weight_int8pack_mm`` (int8, one scale per output row) and
``torch._weight_int4pack_mm_for_cpu`` (int4, a scale and a zero per group of
``group`` inputs: w = (q − 8)·scale + zero). Measured on this CPU build: both are
fast only with bfloat16 activations (with float32 they are 8–12× slower than a dense
float32 matmul), so a model quantized here runs its activations in bfloat16 and the
scales are stored in bfloat16 (the kernels require the activations' dtype).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

INT4_ROW_MULTIPLE = 16  # the int4 packing works on blocks of 16 output rows
FUSE_ROW_MULTIPLE = 64  # row views of a packed int4 matrix must start on a 64-row block


@dataclass
class QWeight:
    """One layer's quantized weight, unpacked: ``q`` int8 [N, K] (int8) or int32 0..15
    [N, K] (int4); ``scale`` [N] (int8) or [N, K/group] (int4); ``zero`` like scale (int4)."""

    kind: str  # "int8", "int4", or "q8_0" (int8 in groups: a GGUF's blocks, not packable)
    q: Any
    scale: Any
    zero: Any = None
    group: int = 0

    @property
    def rows(self) -> int:
        return int(self.q.shape[0])

    @property
    def cols(self) -> int:
        return int(self.q.shape[1])

    def dequantize(self) -> Any:
        """The float32 weights these integers and scales stand for."""
        if self.kind == "int8":
            return self.q.float() * self.scale.float()[:, None]
        n, k = self.q.shape
        if self.kind == "q8_0":
            grouped = self.q.float().reshape(n, k // self.group, self.group)
            return (grouped * self.scale.float()[..., None]).reshape(n, k)
        grouped = (self.q.float().reshape(n, k // self.group, self.group) - 8)
        w = grouped * self.scale.float()[..., None] + self.zero.float()[..., None]
        return w.reshape(n, k)


# -- quantization (pure functions of float weights) --------------------------------
def quantize_int8(weight: Any) -> QWeight:
    """Symmetric int8 with one scale per output channel (row), scale rounded to bf16."""
    import torch

    w = weight.detach().float()
    scale = (w.abs().amax(dim=1) / 127).clamp_min(1e-12).to(torch.bfloat16).float()
    q = torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8)
    return QWeight("int8", q, scale.to(torch.bfloat16))


def quantize_int4(weight: Any, group: int) -> QWeight:
    """Asymmetric int4 per group of ``group`` inputs, round to nearest. Scale and zero are
    rounded to bf16 first (the kernel's format), then the integers are chosen for them."""
    import torch

    w = weight.detach().float()
    n, k = w.shape
    grouped = w.reshape(n, k // group, group)
    low, high = grouped.amin(-1), grouped.amax(-1)
    scale = ((high - low) / 15).clamp_min(1e-8).to(torch.bfloat16).float()
    zero = (low + 8 * scale).to(torch.bfloat16).float()
    q = torch.round((grouped - zero[..., None]) / scale[..., None]) + 8
    q = q.clamp(0, 15).to(torch.int32).reshape(n, k)
    return QWeight("int4", q, scale.to(torch.bfloat16), zero.to(torch.bfloat16), group)


def int4_fits(rows: int, cols: int, group: int) -> bool:
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
    """None when both CPU weight-only kernels run here, else why not."""
    import torch

    for name in ("_weight_int8pack_mm", "_weight_int4pack_mm_for_cpu",
                 "_convert_weight_to_int4pack_for_cpu"):
        if not hasattr(torch, name):
            return f"this torch build has no torch.{name}"
    try:
        qw = quantize_int4(torch.ones(16, 32), 32)
        layer = pack([qw])
        layer(torch.ones(1, 32, dtype=torch.bfloat16))
    except RuntimeError as exc:
        return f"torch's int4 CPU kernel failed: {str(exc).splitlines()[0]}"
    return None


def _weight_class() -> type:
    import torch

    int8_mm = torch._weight_int8pack_mm
    int4_mm = torch._weight_int4pack_mm_for_cpu
    bf16 = torch.bfloat16

    class WeightOnlyLinear(torch.nn.Module):
        """y = x·Wᵀ (+ b) with W stored as int8 rows or packed int4 groups; x in bf16."""

        def __init__(self, kind: str, weight: Any, scales: Any, group: int, rows: int,
                     cols: int, bias: Any = None) -> None:
            super().__init__()
            self.kind, self.group = kind, group
            self.in_features, self.out_features = cols, rows
            self.register_buffer("qweight", weight)
            self.register_buffer("scales", scales)
            self.register_buffer("bias", bias)

        def kernel(self) -> tuple[Any, tuple[Any, ...]]:
            """(fn, args): fn(x2d, *args) is the layer without bias, for the lean step."""
            if self.kind == "int8":
                return int8_mm, (self.qweight, self.scales)
            return int4_mm, (self.qweight, self.group, self.scales)

        def forward(self, x: Any) -> Any:
            shape = x.shape
            x2 = x.reshape(-1, shape[-1])
            if x2.dtype != bf16:
                x2 = x2.to(bf16)
            fn, args = self.kernel()
            y = fn(x2, *args).view(*shape[:-1], self.out_features)
            if self.bias is not None:
                y = y + self.bias
            return y.to(x.dtype)

        def rows_view(self, start: int, stop: int) -> Any:
            """A layer computing output rows start..stop with this layer's storage."""
            bias = None if self.bias is None else self.bias[start:stop]
            if self.kind == "int8":
                scales = self.scales[start:stop]
            else:  # [K/group, N, 2]: a column slice is not contiguous, copy it (small)
                scales = self.scales[:, start:stop].contiguous()
            return type(self)(self.kind, self.qweight[start:stop], scales, self.group,
                              stop - start, self.in_features, bias)

        def extra_repr(self) -> str:
            group = f", group={self.group}" if self.kind == "int4" else ""
            return f"{self.kind}, in={self.in_features}, out={self.out_features}{group}"

    return WeightOnlyLinear


_CLASS: type | None = None


def weight_only_class() -> type:
    global _CLASS
    if _CLASS is None:
        _CLASS = _weight_class()
    return _CLASS


def pack(parts: list[QWeight], biases: list[Any] | None = None) -> Any:
    """One WeightOnlyLinear computing the rows of every part, in order."""
    import torch

    kind, group, cols = parts[0].kind, parts[0].group, parts[0].cols
    if any(p.kind != kind or p.group != group or p.cols != cols for p in parts):
        raise ValueError("pack: parts differ in kind, group or input size")
    q = torch.cat([p.q for p in parts]) if len(parts) > 1 else parts[0].q
    rows = int(q.shape[0])
    bias = None
    if biases and any(b is not None for b in biases):
        bias = torch.cat([
            (b if b is not None else torch.zeros(p.rows)).detach().to(torch.bfloat16)
            for p, b in zip(parts, biases, strict=True)
        ])
    if kind == "int8":
        scale = torch.cat([p.scale for p in parts]).to(torch.bfloat16).contiguous()
        return weight_only_class()("int8", q.contiguous(), scale, 0, rows, cols, bias)
    scale = torch.cat([p.scale for p in parts]).float()
    zero = torch.cat([p.zero for p in parts]).float()
    packed = torch._convert_weight_to_int4pack_for_cpu(q.contiguous(), 1)
    scales_zeros = torch.stack([scale.t(), zero.t()], dim=-1).to(torch.bfloat16).contiguous()
    return weight_only_class()("int4", packed, scales_zeros, group, rows, cols, bias)


def pack_fused(parts: list[QWeight], biases: list[Any]) -> tuple[Any, list[Any]]:
    """Pack parts as one layer (for the lean step) and return a row view per part
    (for transformers' forward); (None, separate layers) where rows cannot be split."""
    splittable = parts[0].kind == "int8" or all(p.rows % FUSE_ROW_MULTIPLE == 0 for p in parts)
    if len(parts) == 1 or not splittable:
        return None, [pack([p], [b]) for p, b in zip(parts, biases, strict=True)]
    fused = pack(parts, biases)
    views, start = [], 0
    for p in parts:
        views.append(fused.rows_view(start, start + p.rows))
        start += p.rows
    return fused, views
