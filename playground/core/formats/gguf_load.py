"""quant=gguf-native straight from the file: no float32 model first.

transformers loads a GGUF by de-quantizing every tensor into a float32 model (a 669 MB
Q4_K_M file of a 1B model went through 7.2 GB of memory), and gguf-native then threw
those floats away for the file's own blocks. Here the model is built with empty
parameters (accelerate's ``init_empty_weights``: buffers such as the rotary frequencies
stay real), and each tensor is read from the memory-mapped file once: matrices of a
native block type go straight to the kernels' layout, the input embedding stays in its
blocks (gguf_embedding.py), every other tensor (norms, biases, types without a kernel)
is de-quantized with gguf's own
code and processed exactly as transformers' loader does (its name map and its per-family
processors, e.g. Llama's q/k row order), so the model holds the same values either way.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

from playground.core import memory, models
from playground.core.formats import gguf_file, gguf_meta, gguf_model
from playground.core.quant import gguf_blocks, gguf_embedding, weight_quant

Progress = models.Progress


def available() -> str | None:
    """Why the direct load cannot run here (it needs the native kernels), or None."""
    if weight_quant.backend() != "native":
        return "the native kernels are unavailable"
    return None


def load(source: models.ModelSource, gguf: Path, progress: Progress,
         needs_transformers: str | None = None) -> models.LoadedModel:
    """The model with its Linear layers on the file's blocks and its other tensors as
    transformers would load them; ``model.gguf_report`` = (kept, not native) counts.
    On gguf_model's skeleton where the file allows and nothing ``needs_transformers``
    (the reason: another option runs transformers' forward), else on transformers' own
    classes; ``model.gguf_model_code`` says which and why."""
    import torch

    from playground.core.optimize.quant_weight import replace_linears

    models.quiet_libraries()
    started = time.perf_counter()
    progress(f"Reading {gguf.name}…")
    folder = source.path if source.kind == "default" else None
    try:
        file = gguf_file.read(gguf)
        meta = gguf_meta.from_file(file)
        why = needs_transformers or gguf_model.why_not(file, folder is not None)
        if why is None:
            tokenizer = gguf_model.tokenizer(gguf, folder)
            config = gguf_model.config(file)
            model = gguf_model.skeleton(config, {t.name for t in file.tensors})
        else:
            tokenizer, config, model = _transformers_model(gguf, folder, meta)
        del file
    except Exception as exc:  # a file from outside: one line
        raise models.ModelError(f"model: could not read {gguf.name}: {type(exc).__name__}: "
                                f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
                                ) from exc
    model.gguf_model_code = (
        "the playground's own skeleton (transformers' modeling code not imported)"
        if why is None else f"transformers' classes ({why})")
    model.eval()
    tensors = gguf_blocks.read_blocks(gguf, model, keep_readers=True)
    linears = {f"{n}.weight" for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    tied = bool(getattr(config, "tie_word_embeddings", False))
    head = "model.embed_tokens.weight" if tied else "lm_head.weight"
    used: Counter[str] = Counter()
    kept: Counter[str] = Counter()
    progress(f"Loading {source.name} from its blocks…")
    embed_name = _embedding_name(model)
    for i, (name, tensor) in enumerate(tensors.items()):  # all but the Linears, float32
        if i % 16 == 0:
            progress(f"Loading {source.name}: tensor {i + 1} of {len(tensors)}…")
        if name == embed_name and tensor.type_name in gguf_embedding.KEEP:
            continue  # kept in its blocks (below)
        if name not in linears:
            _assign(model, name, gguf_blocks.to_float(tensor))
    missing = sorted(n for n, p in model.named_parameters() if p.device.type == "meta"
                     and n not in tensors and not (tied and n == "lm_head.weight"))
    if missing:
        raise models.ModelError(f"model: {gguf.name} has no tensor for {missing[0]} "
                                f"({len(missing)} missing)")
    if tied:
        model.tie_weights()

    done = [0]
    total = len(linears)

    def quantize(name: str, linear: Any) -> Any:
        # read a layer's blocks only when its turn comes: holding every layer's unpacked
        # codes at once took 6.4 GB for a 669 MB file
        key = head if linear is model.get_output_embeddings() else f"{name}.weight"
        tensor = tensors[key]
        done[0] += 1
        if done[0] % 4 == 0:  # a stage the loader reports, and where Stop takes effect
            progress(f"Loading {source.name} from its blocks: {done[0]} of {total} matrices…")
        if done[0] % 8 == 0:  # freed temporaries go back
            memory.release()
        native = gguf_blocks.kernel_weight(tensor, kept)
        gguf_blocks.drop_pages(tensor.raw)  # its file pages, read once, go back now
        memory.trim()  # and the unpacking's temporaries
        if key != head or not tied:
            tensor.raw = None  # packed now: its row copy (q/k permuted) can go
        if native is None:
            # a float layer after all: its values, as transformers has them (a tied head
            # whose table stays in blocks gets a float copy of its own)
            _assign(model, key if key in linears else f"{name}.weight",
                    gguf_blocks.to_float(tensor))
            return None
        used[tensor.type_name] += 1
        return native

    replace_linears(model, quantize)
    table = tensors.get(embed_name)
    out = model.get_output_embeddings()
    half = None if table is None else table.type_name.lower()
    head_codes = out.codes if (tied and half in weight_quant.HALF
                               and getattr(out, "kind", None) == half) else None
    embedding = None if table is None else gguf_embedding.from_tensor(
        table, model.get_input_embeddings(), head_codes, gguf)
    if embedding is not None:
        model.set_input_embeddings(embedding)
    first = next(iter(tensors.values()), None)
    if first is not None and first.source is not None:
        gguf_blocks.drop_pages(first.source.data)
    model.gguf_report = (dict(used), dict(kept))
    model.gguf_rope_note = gguf_meta.apply_rope_freqs(model, meta)
    # parameters as the float model counts them (the blocks are buffers, fused views once)
    model.gguf_params = sum(p.numel() for p in model.parameters()) + sum(
        m.in_features * m.out_features for m in model.modules()
        if hasattr(m, "kernel") and not (tied and m is out)) + (  # a tied head is the table
        0 if embedding is None else embedding.num_embeddings * embedding.embedding_dim)
    tensors.clear()  # the readers and their mappings go with it
    if why is None:
        try:
            model.native_rows()
        except RuntimeError as exc:  # a file the skeleton took but the step refuses
            del model, tensors
            memory.release()
            return load(source, gguf, progress, needs_transformers=str(exc))
    if tokenizer.pad_token_id is None and tokenizer.eos_token_id is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return models.LoadedModel(model, tokenizer, source, time.perf_counter() - started)


def _transformers_model(gguf: Path, folder: Path | None,
                        meta: gguf_meta.FileMeta) -> tuple[Any, Any, Any]:
    """Tokenizer, config and an empty model as transformers makes them for the file."""
    import torch
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(
        folder or gguf.parent, gguf_file=None if folder is not None else gguf.name)
    config = AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name)
    gguf_meta.fix_config(config, meta)  # before the model is shaped
    with init_empty_weights():
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    return tokenizer, config, model


def _embedding_name(model: Any) -> str:
    module = model.get_input_embeddings()
    return next(f"{n}.weight" for n, m in model.named_modules() if m is module)


def _assign(model: Any, name: str, value: Any) -> None:
    import torch

    module_name, _, attr = name.rpartition(".")
    module = model.get_submodule(module_name)
    old = getattr(module, attr)
    if tuple(old.shape) != tuple(value.shape):
        raise models.ModelError(f"model: {name} is {tuple(value.shape)} in the file, "
                                f"{tuple(old.shape)} in its config")
    module._parameters[attr] = torch.nn.Parameter(value, requires_grad=False)
