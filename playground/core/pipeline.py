"""Build an Engine from a RunConfig: check everything, load, optimize in a fixed order.

Every optimization's ``check`` runs before any weights are read, so an impossible
combination fails in milliseconds with a one-line reason and nothing half-loads.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from playground.core import jobs, memory, models
from playground.core.config import RunConfig
from playground.core.engine import Engine
from playground.core.jobs import ShouldStop
from playground.core.optimize import PIPELINE, Build, OptimizationError
from playground.core.optimize.device import resolve_device

Progress = Callable[[str], None]


def check(config: RunConfig) -> str:
    """Resolve the device and run every wanted optimization's check; return the device."""
    if config.endpoint:
        return "remote"
    try:
        device = resolve_device(config.device)
    except ValueError as exc:
        raise OptimizationError(str(exc)) from None
    for opt in _wanted(config):
        reason = opt.check(config, device)
        if reason:
            raise OptimizationError(reason)
    if config.backend == "onnxruntime":
        from playground.core.backends import onnx_engine

        reason = onnx_engine.check(config, device)
        if reason:
            raise OptimizationError(reason)
    if config.backend == "llamacpp":
        from playground.core.backends import llamacpp_engine

        reason = llamacpp_engine.check(config, device)
        if reason:
            raise OptimizationError(reason)
    return device


def _wanted(config: RunConfig) -> list[Any]:
    """The optimizations this config asks for, on its backend (ONNX Runtime takes only
    those that choose weights: the student, QAT weights; it quantizes at export)."""
    return [opt for opt in PIPELINE
            if opt.wanted(config) and config.backend in opt.backends]


def preflight(config: RunConfig) -> str:
    """Everything that can be checked without loading weights: device, combinations, model path."""
    device = check(config)
    if not config.endpoint:
        models.resolve(model_to_load(config))
    return device


def model_to_load(config: RunConfig) -> str:
    for opt in PIPELINE:
        if opt.wanted(config):
            override = opt.model_override(config)
            if override:
                return override
    return config.model


def build_engine(
    config: RunConfig,
    progress: Progress = lambda _msg: None,
    loaded: models.LoadedModel | None = None,
    should_stop: ShouldStop | None = None,
) -> Engine:
    """Load ``config.model`` (or use ``loaded``), apply the optimizations, return an Engine.
    Its info has ``load_peak_rss_mb`` (the process's peak while loading and converting)
    and ``rss_mb`` (steady, after the conversions' leftovers are handed back): a model
    made smaller never shows a bigger figure because of how it was made. A stop ends
    the load at its next stage with ``jobs.Cancelled`` (each stage reports progress)."""
    progress = jobs.checked(progress, should_stop, "loading")
    with memory.RssSampler() as sampler:
        engine = _build(config, progress, loaded)
    memory.release()
    if not config.endpoint:  # a remote server's memory is not ours to report
        memory.touch(engine.model)
        steady = memory.rss_mb()
        engine.info["load_peak_rss_mb"] = round(max(sampler.peak_mb, steady), 1)
        engine.info["rss_mb"] = round(steady, 1)
    return engine


def _build(config: RunConfig, progress: Progress, loaded: models.LoadedModel | None) -> Engine:
    device = check(config)
    if config.endpoint:
        from playground.core.backends import remote

        return remote.build(config, progress)  # type: ignore[return-value]
    if config.backend == "onnxruntime":
        return _build_onnx(config, device, progress)
    if config.backend == "llamacpp":
        return _build_llamacpp(config, device, progress)
    wanted = _wanted(config)
    load_kwargs: dict[str, Any] = {}
    for opt in wanted:
        load_kwargs.update(opt.load_kwargs(config, device))
    started = time.perf_counter()
    if loaded is None:
        loaded = _load_gguf_blocks(config, progress)
    if loaded is None:
        loaded = models.load(
            model_to_load(config),
            allow_pickle=config.allow_pickle,
            trust_remote_code=config.trust_remote_code,
            load_kwargs=load_kwargs,
            progress=progress,
        )
    ctx = Build(config, device, loaded.model, loaded.tokenizer, source=loaded.source)
    ctx.info.update(
        model_name=loaded.source.name,
        architecture=loaded.architecture,
        load_s=loaded.load_s,
        params=getattr(loaded.model, "gguf_params", None)
        or sum(p.numel() for p in loaded.model.parameters()),
        weights_mb_loaded=memory.weights_mb(loaded.model),
    )
    if getattr(loaded.model, "gguf_rope_note", None):
        ctx.notes.append(loaded.model.gguf_rope_note)
    if getattr(loaded.model, "gguf_model_code", None):
        ctx.info["model_code"] = loaded.model.gguf_model_code
    if loaded.source.kind == "gguf" and config.quant != "gguf-native":
        file_mb = (loaded.source.path / loaded.source.gguf_file).stat().st_size / 1e6
        ctx.notes.append(
            f"WARNING: this GGUF's blocks were de-quantized to float32 by transformers "
            f"({ctx.info['weights_mb_loaded']:.0f} MB of weights from a {file_mb:.0f} MB "
            f"file){'' if config.quant == 'none' else ', then quantized again as ' + config.quant}"
            "; quant=gguf-native keeps the file's own blocks (its exact weights, smaller, faster)")
    for opt in (o for o in wanted if o.stage == "model"):
        progress(f"Applying {opt.name}…")
        note = opt.apply(ctx)
        if note:
            ctx.notes.append(note)
    if config.quant != "none" or config.prune > 0:
        # The float tensors the quantizer or the pruner left (embeddings, norms) may still
        # be views of the memory-mapped checkpoint, which keeps the whole file resident
        # (538 MB for the default model beside 248 MB of int8 weights, or beside the
        # smaller matrices structured pruning made); own copies let it go.
        memory.own_memory(ctx.model)
    if ctx.info.get("model_code"):  # a GGUF on gguf-native: whose model code, and why
        ctx.notes.append(f"model code: {ctx.info['model_code']}")
    progress("Measuring memory bandwidth…")
    # at the thread count this run decodes with (the device step set it)
    bandwidth = memory.bandwidth_gb_s(ctx.info.get("threads")) if device == "cpu" else None
    ctx.info["device"] = device
    ctx.info["notes"] = ctx.notes
    ctx.engine = Engine(
        ctx.model, ctx.tokenizer, config, device=device, info=ctx.info, bandwidth_gb_s=bandwidth
    )
    for opt in (o for o in wanted if o.stage == "engine"):
        progress(f"Applying {opt.name}…")
        note = opt.apply(ctx)
        if note:
            ctx.notes.append(note)
    ctx.info["decode_step"] = ctx.engine.decode_path()
    ctx.info["build_s"] = time.perf_counter() - started
    progress("Ready")
    return ctx.engine


def _load_gguf_blocks(config: RunConfig, progress: Progress) -> models.LoadedModel | None:
    """gguf-native on a GGUF: the model built from the file's blocks directly, never as a
    float32 model first (see gguf_load); None where that path does not apply."""
    from playground.core.formats import gguf_load

    if config.quant != "gguf-native" or config.backend != "torch" or gguf_load.available():
        return None
    source = models.resolve(model_to_load(config))
    needs = _needs_transformers(config)
    if source.kind == "default":
        source.path = models.ensure_default_model(progress)
        return gguf_load.load(source, models.default_gguf_path(), progress, needs)
    if source.kind == "gguf" and source.gguf_file:
        return gguf_load.load(source, source.path / source.gguf_file, progress, needs)
    return None


def _build_onnx(config: RunConfig, device: str, progress: Progress) -> Engine:
    from playground.core.backends import onnx_engine

    started = time.perf_counter()
    source = models.resolve(model_to_load(config))
    if source.kind == "default":
        source.path = models.ensure_default_model(progress)
    info: dict[str, Any] = {"model_name": source.name, "notes": []}
    for opt in _wanted(config):  # the student or QAT weights: notes only, nothing to apply
        info["notes"].append(f"{opt.name}: {source.name}")
    engine = onnx_engine.build(config, source.path, device, info, progress)
    info["architecture"] = _architecture(source.path)
    info["build_s"] = time.perf_counter() - started
    progress("Ready")
    return engine


def _build_llamacpp(config: RunConfig, device: str, progress: Progress) -> Engine:
    from playground.core.backends import llamacpp_engine

    started = time.perf_counter()
    info: dict[str, Any] = {"notes": []}
    engine = llamacpp_engine.build(config, device, info, progress)
    info["build_s"] = time.perf_counter() - started
    progress("Ready")
    return engine


def _architecture(folder: Any) -> str:
    from playground.core.models import ModelError, read_config

    try:
        archs = read_config(folder).get("architectures") or ["?"]
        return str(archs[0])
    except (OSError, ModelError):
        return "?"


def _needs_transformers(config: RunConfig) -> str | None:
    """An option that needs transformers' own classes (its compile, generate or modules),
    so a GGUF cannot load on the skeleton of formats/gguf_model."""
    if config.compile:
        return "compile=on compiles transformers' forward"
    if config.draft != "none":
        return "a draft model runs transformers' assisted generation"
    if config.prune > 0:
        return "pruning edits transformers' modules"
    if config.device != "cpu":
        return f"device={config.device}"
    return None
