"""Shipped presets: named partial configs applied on top of the user's base config."""

from __future__ import annotations

from playground.core.config import RunConfig

FAITHFUL = "Faithful and fast"
LLAMACPP = "llama.cpp (file's own blocks)"
PRESETS: dict[str, str] = {
    "Baseline": "",
    # gguf-native where the model is a GGUF (the default is), else int8 weights: both
    # stay within KL 0.01 of the baseline at 2-6x its decode speed (BENCHMARKS.md)
    FAITHFUL: "quant=int8-weight,prefix_cache=on",
    "Int4 weights": "quant=int4-weight,quant_group=32",
    # ONNX Runtime GenAI's weight-only int4 (exported once into the cache)
    "ONNX Runtime int4": "backend=onnxruntime,quant=int4-weight,quant_group=32,prefix_cache=on",
    "CPU latency": "quant=int8-dynamic,prefix_cache=on",
    "Smallest memory": "quant=bnb-4bit-nf4",
    "Pruned 30%": "prune=0.3,prune_method=structured",
    "Distilled": "variant=distilled",
    "Teacher + draft": "draft=distilled",
    # llama.cpp on the same GGUF (make llamacpp): the file's own blocks, then its KV cache
    # in 8 bits (with flash attention, which that needs)
    LLAMACPP: "backend=llamacpp,prefix_cache=on",
    "llama.cpp q8_0 KV": "backend=llamacpp,kv_type=q8_0,flash_attn=on,prefix_cache=on",
}


def preset(name: str, base: RunConfig | None = None) -> RunConfig:
    """The preset applied to ``base``'s model, device, threads and sampling."""
    if name not in PRESETS:
        raise ValueError(f"preset: '{name}' is unknown; presets: {', '.join(PRESETS)}")
    base = base or RunConfig()
    neutral = RunConfig(
        model=base.model, device=base.device, threads=base.threads,
        max_new_tokens=base.max_new_tokens, temperature=base.temperature, top_p=base.top_p,
        seed=base.seed,
    )
    config = RunConfig.parse(PRESETS[name], base=neutral)
    if name == FAITHFUL and (config.model == "default" or config.model.endswith(".gguf")):
        config = config.replace(quant="gguf-native")
    if config.backend == "llamacpp":
        from playground.core.backends.llamacpp_engine import available

        why = available()
        if why:  # one line that names the command, before anything loads
            raise ValueError(f"preset: '{name}' runs on llama.cpp; {why}")
    if config.variant != "base" or config.draft != "none":
        from playground.core import registry

        key = "variant" if config.variant != "base" else "draft"
        registry.student_for(config.model, key)  # raises, saying what is missing and how
    return config
