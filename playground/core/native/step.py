"""The whole one-token decode step in C (qstep.c), for the families in decode/family.py
on qgemv layers.

The Python lean step spends most of a token in ~1,000 small torch calls (measured on
the default model: 14.4 ms a token, of which the int4 matrix products are about 6);
qstep.c does a token in one call. Its keys and values live in ``BufferLayer``s: a
transformers cache layer over a preallocated buffer, so prefill (transformers'
forward, which calls ``update``) and the native step write the same memory, and the
engine's prefix cache (``crop``) keeps working.
"""

from __future__ import annotations

import ctypes
import itertools
from typing import Any

from playground.core import native
from playground.core.decode import family
from playground.core.quant import gguf_embedding

INITIAL_CAPACITY = 256


class QMat(ctypes.Structure):
    _fields_ = [("kind", ctypes.c_int64), ("codes", ctypes.c_void_p), ("d", ctypes.c_void_p),
                ("m", ctypes.c_void_p), ("N", ctypes.c_int64), ("K", ctypes.c_int64),
                ("G", ctypes.c_int64), ("fmt", ctypes.c_int64), ("dsup", ctypes.c_void_p),
                ("msup", ctypes.c_void_p), ("bias", ctypes.c_void_p)]


class QLayer(ctypes.Structure):
    _fields_ = [("norm1", ctypes.c_void_p), ("norm2", ctypes.c_void_p), ("qkv", QMat),
                ("o", QMat), ("gate_up", QMat), ("down", QMat), ("q", QMat), ("k", QMat),
                ("v", QMat), ("gate", QMat), ("up", QMat), ("q_norm", ctypes.c_void_p),
                ("k_norm", ctypes.c_void_p), ("post_attn", ctypes.c_void_p),
                ("post_ffn", ctypes.c_void_p), ("window", ctypes.c_int64),
                ("rope", ctypes.c_int64)]


class QModel(ctypes.Structure):
    _fields_ = [("n_layers", ctypes.c_int64), ("hidden", ctypes.c_int64),
                ("heads", ctypes.c_int64), ("kv_heads", ctypes.c_int64),
                ("head_dim", ctypes.c_int64), ("inter", ctypes.c_int64),
                ("eps", ctypes.c_float), ("attn_scale", ctypes.c_float),
                ("rope_scale", ctypes.c_float), ("pad", ctypes.c_float),
                ("embed", ctypes.c_void_p), ("final_norm", ctypes.c_void_p),
                ("inv_freq", ctypes.c_void_p), ("head", QMat),
                ("layers", ctypes.POINTER(QLayer)), ("act", ctypes.c_int64),
                ("rot_dim", ctypes.c_int64), ("long_from", ctypes.c_int64),
                ("embed_scale", ctypes.c_float), ("attn_softcap", ctypes.c_float),
                ("final_softcap", ctypes.c_float), ("rope_scale_alt", ctypes.c_float),
                ("inv_freq_alt", ctypes.c_void_p), ("inv_freq_long", ctypes.c_void_p),
                ("embed_rows", ctypes.c_int64)]


def _qmat(layer: Any) -> QMat | None:
    import torch

    if type(layer).__name__ != "NativeWeightLinear":
        return None
    if layer.bias is not None and (layer.bias.dtype != torch.float32
                                   or not layer.bias.is_contiguous()):
        return None
    if layer.kind in ("f16", "bf16"):
        kind = 16 if layer.kind == "f16" else 17  # see qstep.c
    else:
        kind = (4 if layer.kind == "int4" else 8) + (10 if layer.blocked else 0)

    def ptr(t: Any) -> int | None:
        return None if t is None else t.data_ptr()

    return QMat(kind, layer.codes.data_ptr(), ptr(layer.scales), ptr(layer.offsets),
                layer.out_features, layer.in_features, layer.group, layer.fmt,
                ptr(layer.scale_super), ptr(layer.offset_super), ptr(layer.bias))


def _parts(module: Any, fused_name: str, names: tuple[str, ...]) -> tuple[QMat, list[QMat]] | None:
    """The fused matrix and empty parts, or an empty fused matrix and its parts one by one
    (a file's q, k and v of different block types cannot be one matrix), or None. A
    family whose checkpoint stores the fused matrix (Phi-3's qkv_proj) names one part."""
    fused = module.__dict__.get(fused_name) if len(names) > 1 else getattr(module, names[0])
    whole = None if fused is None else _qmat(fused)
    if whole is not None:
        return whole, [QMat() for _ in range(3)]
    if len(names) == 1:
        return None
    parts = [_qmat(getattr(module, n)) for n in names]
    if any(p is None for p in parts):
        return None
    return QMat(), parts + [QMat()] * (3 - len(parts))


def _eps(norm: Any) -> float:
    return float(getattr(norm, "variance_epsilon", getattr(norm, "eps", 0.0)))


def _norms(layer: Any, fam: family.Family) -> tuple[Any, ...]:
    """input, pre-MLP, q, k, post-attention, post-MLP norm modules (None: absent)."""
    attn = layer.self_attn
    q_norm = attn.q_norm if fam.qk_norm else None
    k_norm = attn.k_norm if fam.qk_norm else None
    if fam.gemma_norms:
        return (layer.input_layernorm, layer.pre_feedforward_layernorm, q_norm, k_norm,
                layer.post_attention_layernorm, layer.post_feedforward_layernorm)
    return (layer.input_layernorm, layer.post_attention_layernorm, q_norm, k_norm, None, None)


def _why_not(model: Any, fam: family.Family) -> str | None:
    import torch

    core = model.model
    blocks = gguf_embedding.is_block_embedding(core.embed_tokens)
    if not blocks and core.embed_tokens.weight.dtype != torch.float32:
        return "the model's float weights are not float32"
    eps = {_eps(core.norm)}
    for layer in core.layers:
        attn, mlp = layer.self_attn, layer.mlp
        eps |= {_eps(n) for n in _norms(layer, fam) if n is not None}
        if (_parts(attn, "fused_qkv", fam.qkv) is None
                or _parts(mlp, "fused_gate_up", fam.gate_up) is None):
            return "q/k/v or gate/up are not native layers"
        if _qmat(attn.o_proj) is None or _qmat(mlp.down_proj) is None:
            return "o_proj or down_proj is not a native layer"
    if _qmat(model.lm_head) is None:
        return "the LM head is not a native layer"
    if len(eps) > 1:
        return "the norms' epsilons differ"
    return None


def _shape(model: Any, layers: Any) -> tuple[int, int, int, int] | str:
    """heads, kv heads, head dim, intermediate size, the same in every layer, or why not."""
    config, attn0 = model.config, model.model.layers[0].self_attn
    hd = attn0.head_dim
    if hasattr(attn0, "q_proj"):  # counted from the matrices: structured pruning drops heads
        heads, kv_heads = attn0.q_proj.out_features // hd, attn0.k_proj.out_features // hd
    else:
        heads = config.num_attention_heads
        kv_heads = getattr(config, "num_key_value_heads", None) or heads
    inter = layers[0].down.K
    for ly in layers:
        qkv = ly.qkv.N if ly.qkv.codes else ly.q.N + ly.k.N + ly.v.N
        if (qkv != (heads + 2 * kv_heads) * hd or (not ly.qkv.codes and ly.q.N != heads * hd)
                or ly.o.K != heads * hd or ly.down.K != inter
                or (ly.gate_up.N if ly.gate_up.codes else ly.gate.N + ly.up.N) != 2 * inter):
            return "layers differ in shape (pruned unevenly)"
    return heads, kv_heads, hd, inter


def build(model: Any, int_act: bool) -> tuple[Any, str]:
    """A step(token, cache) -> logits running qstep.c, or None and why not."""
    import torch

    lib = native.library()
    if lib is None:
        return None, f"native kernels unavailable: {native.unavailable()}"
    fam, why = family.describe(model)
    if fam is None:
        return None, why
    why = _why_not(model, fam)
    if why:
        return None, why
    core = model.model
    keep: list[Any] = []  # float32 copies (Gemma's 1 + w, rotary tables) the step points at

    def ptr(t: Any) -> int | None:
        if t is None:
            return None
        keep.append(t)
        return t.data_ptr()

    def norm(n: Any) -> int | None:
        return None if n is None else ptr(family.norm_weight(n, fam.gemma_norms))

    layers = (QLayer * len(core.layers))()
    for i, layer in enumerate(core.layers):
        attn, mlp = layer.self_attn, layer.mlp
        qkv, (q, k, v) = _parts(attn, "fused_qkv", fam.qkv)
        gate_up, (gate, up, _) = _parts(mlp, "fused_gate_up", fam.gate_up)
        n1, n2, qn, kn, post_attn, post_ffn = _norms(layer, fam)
        layers[i] = QLayer(norm(n1), norm(n2), qkv, _qmat(attn.o_proj), gate_up,
                           _qmat(mlp.down_proj), q, k, v, gate, up, norm(qn), norm(kn),
                           norm(post_attn), norm(post_ffn), fam.windows[i], fam.rope_tables[i])
    shape = _shape(model, layers)
    if isinstance(shape, str):
        return None, shape
    heads, kv_heads, head_dim, inter = shape
    (inv0, scale0), (inv1, scale1), (inv_long, _) = family.rope_tables(model)
    attn0 = core.layers[0].self_attn
    table = core.embed_tokens
    lookup = table.lookup if gguf_embedding.is_block_embedding(table) else None
    spec = QModel(len(core.layers), model.config.hidden_size, heads, kv_heads, head_dim,
                  inter, _eps(core.norm), attn0.scaling, scale0, 0.0,
                  None if lookup else table.weight.data_ptr(), norm(core.norm), ptr(inv0),
                  _qmat(model.lm_head), layers, fam.act, 2 * inv0.numel(), fam.long_from,
                  fam.embed_scale, fam.attn_softcap, fam.final_softcap, scale1, ptr(inv1),
                  ptr(inv_long), int(lookup is not None))
    vocab, n_layers = model.lm_head.out_features, len(core.layers)
    kv_shape = (kv_heads, head_dim)
    state: dict[str, Any] = {"scratch": None, "cap": 0}
    threads = torch.get_num_threads
    qstep, empty = lib.qstep, torch.empty

    table_rows = table.num_embeddings

    def embed(tokens: Any) -> Any:
        """A table kept in blocks: this call's rows, de-quantized (kept alive by the
        caller until the C call returns)."""
        if lookup is None:
            return None
        rows_ = lookup(tokens)
        spec.embed = rows_.data_ptr()
        return rows_

    def check_tokens(tokens: Any) -> None:
        # qstep.c copies the token's embedding row without a check of its own
        for t in tokens:
            if not 0 <= int(t) < table_rows:
                raise ValueError(f"token id {int(t)} is outside the embedding table "
                                 f"(0 to {table_rows - 1})")

    def step(token: int, cache: Any) -> Any:
        check_tokens((token,))
        buffers = _buffers(cache, n_layers)
        pos = buffers[0].length
        if pos + 1 > buffers[0].capacity:
            for b in buffers:  # a fresh cache (a one-token prompt) gets its buffers here
                b.reserve(pos + 1, kv_shape)
        cap = buffers[0].capacity
        if state["cap"] != cap:
            state["scratch"] = empty(lib.qstep_scratch_floats(ctypes.byref(spec), cap))
            state["cap"] = cap
        # Keyed by the buffers' addresses, not the capacity: a reset or an assignment by
        # transformers can reallocate a buffer at the same capacity.
        keys = tuple(b.key_buffer.data_ptr() for b in buffers)
        values = tuple(b.value_buffer.data_ptr() for b in buffers)
        held = cache.__dict__.get("_native_ptrs")
        if held is None or held[0] != keys or held[1] != values:
            held = (keys, values, (ctypes.c_void_p * len(keys))(*keys),
                    (ctypes.c_void_p * len(values))(*values))
            cache._native_ptrs = held
        kp, vp = held[2], held[3]
        logits = empty(vocab)
        _rows = embed((token,))  # noqa: F841 (alive through the call)
        qstep(ctypes.byref(spec), token, pos, kp, vp, cap, logits.data_ptr(),
              state["scratch"].data_ptr(), threads(), int(int_act))
        for b in buffers:
            b.length = pos + 1
        return logits

    row_scratch: dict[str, Any] = {"buf": None}
    qrows, c_i64 = lib.qstep_rows, ctypes.c_int64

    def rows(tokens: list[int], positions: list[int], seqs: list[int], caches: list[Any],
             out: list[int], split: int = 0) -> Any:
        """Rows of many sequences in one pass (see qstep_rows in qstep.c): row i feeds
        tokens[i] at positions[i] of caches[seqs[i]]; a sequence's rows are consecutive
        positions in order, starting at its cache's length. Returns logits [len(out), vocab]
        for the rows listed in ``out``. ``split`` > 1: the rows in that many parts of whole
        sequences, one thread each (qstep_rows_split), where they divide evenly enough
        (row_parts); otherwise one pass on torch's thread count. Same bits either way."""
        check_tokens(tokens)
        n, layers_n = len(tokens), len(core.layers)
        ends = [0] * len(caches)
        for p, s in zip(positions, seqs, strict=True):
            ends[s] = max(ends[s], p + 1)
        kp = (ctypes.c_void_p * (len(caches) * layers_n))()
        vp = (ctypes.c_void_p * (len(caches) * layers_n))()
        caps = (c_i64 * len(caches))()
        for s, cache in enumerate(caches):
            buffers = _buffers(cache, n_layers)
            for b in buffers:
                b.reserve(ends[s], kv_shape)
            caps[s] = buffers[0].capacity
            for j, b in enumerate(buffers):
                kp[s * layers_n + j] = b.key_buffer.data_ptr()
                vp[s * layers_n + j] = b.value_buffer.data_ptr()
        parts = row_parts(seqs, out, split) if split > 1 else None
        widest = max(caps)
        need = (lib.qrows_scratch_floats(ctypes.byref(spec), n, widest) if parts is None else
                sum(lib.qrows_scratch_floats(ctypes.byref(spec), b - a, widest)
                    for a, b in itertools.pairwise(parts)))
        if row_scratch["buf"] is None or row_scratch["buf"].numel() < need:
            row_scratch["buf"] = empty(need)
        logits = empty(len(out), vocab)
        _rows = embed(tokens)  # noqa: F841 (alive through the call)
        args = (ctypes.byref(spec), n, (c_i64 * n)(*tokens), (c_i64 * n)(*positions),
                (c_i64 * n)(*seqs), kp, vp, caps, (c_i64 * len(out))(*out), len(out),
                logits.data_ptr(), row_scratch["buf"].data_ptr())
        if parts is None:
            qrows(*args, threads(), int(int_act))
        else:
            lib.qstep_rows_split(*args, (c_i64 * len(parts))(*parts), len(parts) - 1,
                                 int(int_act))
        for s, cache in enumerate(caches):
            for b in cache.layers:
                b.length = max(b.length, ends[s])
        return logits

    # each output of a pass is summed by one thread in a fixed order, whatever the count:
    # the same bits on 1 or 2 threads, so a server may pick the count by speed
    rows.thread_invariant = True  # type: ignore[attr-defined]
    rows.parts = row_parts  # type: ignore[attr-defined]  (where split= takes effect)
    step.rows = rows  # type: ignore[attr-defined]
    step.keep = (spec, layers, keep)  # type: ignore[attr-defined]
    # a sliding window needs every key kept (transformers' sliding cache layers drop the
    # old ones, so positions would not line up): the engine makes plain caches for it
    step.full_cache = fam.sliding  # type: ignore[attr-defined]
    step.family = fam  # type: ignore[attr-defined]
    return step, f"native decode step ({fam.kind}, one C call a token)"


def row_parts(seqs: list[int], out: list[int], n: int) -> list[int] | None:
    """Bounds of ``n`` parts of a pass's rows for qstep_rows_split, each part whole runs of
    one sequence and none over 1.5x an even share, or None where the rows do not divide so
    (fewer sequences than parts, one long prompt chunk) or ``out`` is not ascending."""
    if n < 2 or len(seqs) < n or any(b <= a for a, b in itertools.pairwise(out)):
        return None
    starts = [i for i in range(len(seqs)) if i == 0 or seqs[i] != seqs[i - 1]]
    if len(starts) < n or len(set(seqs)) != len(starts):  # a sequence's rows not together
        return None
    bounds = [0]
    for k in range(1, n):  # the run start nearest to an even cut, after the last bound
        want = len(seqs) * k / n
        options = [s for s in starts if s > bounds[-1]]
        if not options:
            return None
        bounds.append(min(options, key=lambda s: abs(s - want)))
    bounds.append(len(seqs))
    if any(b <= a for a, b in itertools.pairwise(bounds)):
        return None
    if max(b - a for a, b in itertools.pairwise(bounds)) > 1.5 * len(seqs) / n:
        return None
    return bounds


def _buffers(cache: Any, n_layers: int) -> list[Any]:
    layers = cache.layers
    if len(layers) < n_layers:  # a plain DynamicCache adds its layers as they are updated
        layers = cache.layers = [*layers, *(_buffer_class()() for _ in range(n_layers - len(layers)))]
    if type(layers[0]) is not _buffer_class():
        cache.layers = layers = [_buffer_class().from_layer(layer) for layer in layers]
    return layers


_BUFFER: type | None = None


def _buffer_class() -> type:
    global _BUFFER
    if _BUFFER is None:
        _BUFFER = _make_buffer_class()
    return _BUFFER


def _make_buffer_class() -> type:
    import torch
    from transformers.cache_utils import DynamicLayer

    class BufferLayer(DynamicLayer):
        """A DynamicLayer whose keys/values are views of a buffer with spare rows, so a
        step appends in place (qstep.c writes row ``length``) instead of concatenating."""

        def __init__(self) -> None:
            self.key_buffer = self.value_buffer = None
            self.length = 0
            super().__init__()

        @classmethod
        def from_layer(cls, layer: Any) -> BufferLayer:
            new = cls()
            if layer.is_initialized and layer.keys is not None and layer.keys.numel():
                new.update(layer.keys, layer.values)
            return new

        @property
        def capacity(self) -> int:
            return 0 if self.key_buffer is None else self.key_buffer.shape[2]

        @property
        def keys(self) -> Any:
            return None if self.key_buffer is None else self.key_buffer[:, :, : self.length]

        @keys.setter
        def keys(self, value: Any) -> None:
            self._assign("key_buffer", value)

        @property
        def values(self) -> Any:
            return None if self.value_buffer is None else self.value_buffer[:, :, : self.length]

        @values.setter
        def values(self, value: Any) -> None:
            self._assign("value_buffer", value)

        def _assign(self, name: str, value: Any) -> None:
            # transformers' own code assigns keys/values (reset, crop, offload): honour it
            if value is None or value.numel() == 0:
                setattr(self, name, None)
                self.length = 0
                return
            buffer = value.new_zeros(*value.shape[:2], max(INITIAL_CAPACITY, value.shape[2] * 2),
                                     value.shape[3])
            buffer[:, :, : value.shape[2]] = value
            setattr(self, name, buffer)
            self.length = value.shape[2]

        def lazy_initialization(self, key_states: Any, value_states: Any) -> None:
            self.device = key_states.device
            self.is_initialized = True

        def grow(self, needed: int) -> None:
            capacity = max(INITIAL_CAPACITY, self.capacity)
            while capacity < needed:
                capacity *= 2
            for name in ("key_buffer", "value_buffer"):
                old = getattr(self, name)
                new = old.new_zeros(*old.shape[:2], capacity, old.shape[3])
                new[:, :, : self.length] = old[:, :, : self.length]
                setattr(self, name, new)

        def reserve(self, needed: int, shape: tuple[int, int]) -> None:
            """Room for ``needed`` rows (a fresh layer gets float32 buffers of ``shape``:
            kv heads, head dim), for the native step to write into."""
            if self.key_buffer is None:
                size = (1, shape[0], max(INITIAL_CAPACITY, needed), shape[1])
                self.key_buffer = torch.zeros(size)
                self.value_buffer = torch.zeros(size)
                self.length = 0
                self.is_initialized = True
                self.device = self.key_buffer.device
            elif needed > self.capacity:
                self.grow(needed)

        def update(self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any):
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            n = key_states.shape[2]
            if self.key_buffer is None:
                shape = (*key_states.shape[:2], max(INITIAL_CAPACITY, 2 * n), key_states.shape[3])
                self.key_buffer = key_states.new_zeros(shape)
                self.value_buffer = value_states.new_zeros(shape)
            elif self.length + n > self.capacity:
                self.grow(self.length + n)
            self.key_buffer[:, :, self.length : self.length + n] = key_states
            self.value_buffer[:, :, self.length : self.length + n] = value_states
            self.length += n
            return self.keys, self.values

        def get_seq_length(self) -> int:
            return self.length

        def crop(self, tokens_to_remove: int) -> None:
            if tokens_to_remove > 0:
                raise ValueError("crop: pass a negative count of tokens to remove")
            self.length = max(0, self.length + tokens_to_remove)

    return BufferLayer
