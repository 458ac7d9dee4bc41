"""RunConfig: every knob of a run in one frozen dataclass, and its spec-string form.

The spec string (``key=value,key=value``) is what the command line, the result
files and the GUI share; ``RunConfig.parse`` and ``RunConfig.format`` round-trip.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Any


class ConfigError(ValueError):
    """A bad spec string: the message names the key and what is allowed."""


TORCH_QUANTS = (
    "none", "fp16", "bf16", "int8-dynamic", "int8-weight", "int4-weight", "gguf-native",
    "bnb-8bit", "bnb-4bit-nf4", "bnb-4bit-fp4",
)
# backend=llamacpp: the file's own blocks (none), or the file re-quantized once by
# llama.cpp's own quantizer into one of its types
LLAMACPP_QUANTS = ("none", "q8_0", "q4_0", "q4_k_m", "q5_k_m", "q6_k")
QUANTS = TORCH_QUANTS + LLAMACPP_QUANTS[1:]
QUANT_GROUPS = (32, 64, 128)
# quant values that quantization-aware training (`playground qat`) can train for
QAT_QUANTS = ("int8-dynamic", "int8-weight", "int4-weight")
VARIANTS = ("base", "distilled")
BACKENDS = ("torch", "onnxruntime", "llamacpp")
KV_TYPES = ("f16", "q8_0", "q4_0")  # llama.cpp's KV cache precision
# quant values ONNX Runtime GenAI's model builder can produce (none: fp32)
ONNX_QUANTS = ("none", "int8-weight", "int4-weight")
PRUNE_METHODS = ("magnitude", "structured")
DRAFTS = ("none", "distilled")
DEVICE_WORDS = ("cpu", "cuda", "mps", "auto")
ON_OFF = ("on", "off")
MAX_PRUNE = 0.9
MAX_SEED = 2**32 - 1  # what every sampler here takes (torch, ONNX Runtime, servers)


@dataclass(frozen=True)
class RunConfig:
    model: str = "default"
    variant: str = "base"
    quant: str = "none"
    quant_group: int = 32  # int4-weight: inputs per scale/zero group
    qat: bool = False  # use weights trained for ``quant`` by `playground qat`
    backend: str = "torch"  # or "onnxruntime" (ORT GenAI), "llamacpp" (llama-cpp-python)
    prune: float = 0.0
    prune_method: str = "magnitude"
    device: str = "cpu"
    threads: int = 0  # 0: let the engine choose (all cores)
    kv_cache: bool = True
    prefix_cache: bool = False
    response_cache: bool = False
    compile: bool = False
    draft: str = "none"
    max_new_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    # Opt-ins for code paths that can run arbitrary code from a checkpoint.
    allow_pickle: bool = False
    trust_remote_code: bool = False
    # A remote OpenAI-compatible server instead of a local model (empty: local). The key
    # is read from the environment variable named here, never written into the spec.
    endpoint: str = ""
    endpoint_model: str = ""
    api_key_env: str = "OPENAI_API_KEY"
    # backend=llamacpp only: the KV cache's precision, flash attention, layers offloaded
    # to a GPU (-1: all; spec "all"), the prompt's batch size
    kv_type: str = "f16"
    flash_attn: bool = False
    gpu_layers: int = 0
    batch: int = 512

    def __post_init__(self) -> None:
        _validate(self)

    @classmethod
    def parse(cls, spec: str | None, base: RunConfig | None = None) -> RunConfig:
        """Parse ``key=value,...`` on top of ``base`` (defaults when omitted)."""
        changes: dict[str, Any] = {}
        for part in _split(spec or ""):
            if "=" not in part:
                raise ConfigError(f"'{part}': expected key=value; keys: {', '.join(KEYS)}")
            key, value = (s.strip() for s in part.split("=", 1))
            if key not in KEYS:
                raise ConfigError(f"unknown key '{key}'; allowed keys: {', '.join(KEYS)}")
            if key in changes:
                raise ConfigError(f"{key}: given twice")
            changes[key] = _convert(key, value)
        return dataclasses.replace(base or cls(), **changes)

    def format(self, only_changed: bool = False) -> str:
        """The spec string; with ``only_changed`` just the keys that differ from defaults."""
        keys = self.changed_keys() if only_changed else KEYS
        return ",".join(f"{key}={_show(getattr(self, key), key)}" for key in keys)

    def changed_keys(self, other: RunConfig | None = None) -> list[str]:
        """The keys whose values differ from ``other``'s (the defaults'), in field order."""
        other = other if other is not None else RunConfig()
        return [f.name for f in fields(self) if getattr(self, f.name) != getattr(other, f.name)]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: numbers stay numbers, switches are "on"/"off" as in the spec string."""
        return {
            f.name: _show(v, f.name) if isinstance(v, bool) or f.name == "gpu_layers" else v
            for f in fields(self)
            for v in [getattr(self, f.name)]
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        return cls.parse(",".join(f"{k}={v}" for k, v in data.items()))

    def replace(self, **changes: Any) -> RunConfig:
        return dataclasses.replace(self, **changes)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


KEYS = tuple(f.name for f in fields(RunConfig))
_BOOL_KEYS = {f.name for f in fields(RunConfig) if f.type in ("bool", bool)}


def spec_keys(spec: str) -> list[str]:
    """The keys a spec string sets, as ``parse`` splits it (values unchecked)."""
    return [part.split("=", 1)[0].strip() for part in _split(spec) if "=" in part]


def _split(spec: str) -> list[str]:
    # Model paths may contain commas only in odd cases; a comma always separates pairs
    # unless the next piece has no '=' (then it belongs to the previous value).
    parts: list[str] = []
    for piece in spec.split(","):
        if not piece.strip():
            continue
        if parts and "=" not in piece and parts[-1].startswith("model="):
            parts[-1] += "," + piece
        else:
            parts.append(piece.strip())
    return parts


def _show(value: Any, key: str = "") -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if key == "gpu_layers" and value == -1:
        return "all"
    return str(value)


def _convert(key: str, value: str) -> Any:
    if key in _BOOL_KEYS:
        lowered = value.lower()
        if lowered in ("on", "true", "1", "yes"):
            return True
        if lowered in ("off", "false", "0", "no"):
            return False
        raise ConfigError(f"{key}: '{value}' is not allowed; allowed: on, off")
    if key in ("prune", "temperature", "top_p"):
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{key}: '{value}' is not a number") from None
    if key == "threads" and value == "auto":
        return 0  # what the app and the server show as "auto"
    if key == "gpu_layers" and value == "all":
        return -1
    if key in ("threads", "max_new_tokens", "seed", "quant_group", "gpu_layers", "batch"):
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"{key}: '{value}' is not a whole number") from None
    return value


def _check_choice(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}: '{value}' is not allowed; allowed: {', '.join(allowed)}")


def _validate(cfg: RunConfig) -> None:
    if not cfg.model:
        raise ConfigError("model: empty; allowed: default, a local folder, a cached hub id, a .gguf")
    _check_choice("variant", cfg.variant, VARIANTS)
    _check_choice("quant", cfg.quant, QUANTS)
    _check_choice("prune_method", cfg.prune_method, PRUNE_METHODS)
    if cfg.quant_group not in QUANT_GROUPS:
        raise ConfigError(
            f"quant_group: {cfg.quant_group} is not allowed; allowed: "
            + ", ".join(map(str, QUANT_GROUPS))
        )
    if cfg.qat and cfg.quant not in QAT_QUANTS:
        raise ConfigError(
            f"qat: 'on' needs quant one of {', '.join(QAT_QUANTS)} (trained with `playground qat`),"
            f" not {cfg.quant}"
        )
    if cfg.qat and cfg.variant != "base":
        raise ConfigError("qat: 'on' needs variant=base (the weights are trained for the model)")
    if cfg.quant == "gguf-native" and not (cfg.model == "default" or cfg.model.endswith(".gguf")):
        raise ConfigError(
            "quant: gguf-native keeps a GGUF file's own blocks; it needs model=default or a .gguf "
            "file (for other models use int8-weight or int4-weight)"
        )
    if cfg.quant == "gguf-native" and (cfg.prune > 0 or cfg.variant != "base"):
        raise ConfigError(
            "quant: gguf-native keeps the file's weights as they are; it cannot be combined with "
            "prune or variant=distilled"
        )
    _check_choice("draft", cfg.draft, DRAFTS)
    _check_choice("backend", cfg.backend, BACKENDS)
    if cfg.backend == "onnxruntime":
        _check_onnx(cfg)
    _check_llamacpp(cfg)
    if not 0.0 <= cfg.prune <= MAX_PRUNE:
        raise ConfigError(f"prune: {cfg.prune} is out of range; allowed: 0.0 to {MAX_PRUNE}")
    if not valid_device(cfg.device):
        raise ConfigError(
            f"device: '{cfg.device}' is not allowed; allowed: cpu, cuda, cuda:N, mps, auto"
        )
    if cfg.threads < 0:
        raise ConfigError(f"threads: {cfg.threads} is negative; allowed: 0 (auto) or a count")
    if not 1 <= cfg.max_new_tokens <= 8192:
        raise ConfigError(f"max_new_tokens: {cfg.max_new_tokens}; allowed: 1 to 8192")
    if not 0.0 <= cfg.temperature <= 5.0:
        raise ConfigError(f"temperature: {cfg.temperature}; allowed: 0 (greedy) to 5")
    if not 0.0 < cfg.top_p <= 1.0:
        raise ConfigError(f"top_p: {cfg.top_p}; allowed: above 0 up to 1")
    if not 0 <= cfg.seed <= MAX_SEED:
        raise ConfigError(f"seed: {cfg.seed} is out of range; allowed: 0 to {MAX_SEED}")
    if cfg.prefix_cache and not cfg.kv_cache:
        raise ConfigError("prefix_cache: 'on' needs kv_cache=on (it reuses the KV cache)")
    if cfg.draft != "none" and cfg.variant != "base":
        raise ConfigError("draft: a draft model needs variant=base (the student drafts for it)")
    if cfg.endpoint:
        _check_endpoint(cfg)
    elif cfg.endpoint_model:
        raise ConfigError("endpoint_model: needs endpoint=URL (the server that serves it)")


# keys that still mean something when a remote server runs the model
ENDPOINT_KEYS = ("endpoint", "endpoint_model", "api_key_env", "max_new_tokens", "temperature",
                 "top_p", "seed")


def _check_endpoint(cfg: RunConfig) -> None:
    if not cfg.endpoint.startswith(("http://", "https://")) or " " in cfg.endpoint:
        raise ConfigError(f"endpoint: '{cfg.endpoint}' is not a URL; allowed: "
                          "http(s)://host:port/v1 (an OpenAI-compatible server)")
    if not cfg.api_key_env.replace("_", "").isalnum():
        raise ConfigError(f"api_key_env: '{cfg.api_key_env}' is not an environment variable "
                          "name (letters, digits, _); the key itself never goes in the spec")
    local = [key for key in cfg.changed_keys() if key not in ENDPOINT_KEYS]
    if local:
        raise ConfigError(f"{local[0]}: the endpoint runs its own model, so local settings do "
                          f"not apply; with endpoint= use only {', '.join(ENDPOINT_KEYS)}")


def _check_onnx(cfg: RunConfig) -> None:
    if cfg.quant not in ONNX_QUANTS:
        raise ConfigError(
            f"backend: onnxruntime runs quant=none (fp32), int8-weight or int4-weight "
            f"(the model builder's weight-only int8/int4, block = quant_group), not {cfg.quant}"
        )
    unsupported = [
        ("prune", cfg.prune > 0, "pruning"), ("compile", cfg.compile, "compile=on"),
        ("draft", cfg.draft != "none", "speculative decoding (draft)"),
        ("kv_cache", not cfg.kv_cache, "kv_cache=off (ONNX Runtime GenAI always keeps one)"),
    ]
    for key, bad, what in unsupported:
        if bad:
            raise ConfigError(
                f"{key}: {what} is a torch-only optimization; backend=onnxruntime supports "
                "quant (none, int8-weight, int4-weight), quant_group, variant, qat, threads, "
                "device, prefix_cache and response_cache"
            )


LLAMACPP_KEYS = ("kv_type", "flash_attn", "gpu_layers", "batch")


def _check_llamacpp(cfg: RunConfig) -> None:
    _check_choice("kv_type", cfg.kv_type, KV_TYPES)
    if cfg.gpu_layers < -1:
        raise ConfigError(f"gpu_layers: {cfg.gpu_layers}; allowed: 0 to the model's layers, or all")
    if not 1 <= cfg.batch <= 8192:
        raise ConfigError(f"batch: {cfg.batch}; allowed: 1 to 8192 (prompt tokens a pass)")
    if cfg.backend != "llamacpp":
        own = [f.name for f in fields(cfg) if f.name in LLAMACPP_KEYS
               and getattr(cfg, f.name) != f.default]
        if own:
            raise ConfigError(f"{own[0]}: a llama.cpp setting; it needs backend=llamacpp")
        if cfg.quant not in TORCH_QUANTS:
            raise ConfigError(f"quant: {cfg.quant} is llama.cpp's own quantizer's type; it "
                              f"needs backend=llamacpp (here: {', '.join(TORCH_QUANTS)})")
        return
    if not (cfg.model == "default" or cfg.model.endswith(".gguf")):
        raise ConfigError("backend: llamacpp runs a GGUF file; give model=default or a .gguf")
    if cfg.quant not in LLAMACPP_QUANTS:
        raise ConfigError(f"quant: backend=llamacpp runs the file's own blocks (none) or "
                          f"re-quantizes it to {', '.join(LLAMACPP_QUANTS[1:])}, "
                          f"not {cfg.quant}")
    if cfg.kv_type != "f16" and not cfg.flash_attn:
        raise ConfigError(f"kv_type: {cfg.kv_type} needs flash_attn=on (llama.cpp quantizes "
                          "the V cache only with flash attention)")
    if cfg.gpu_layers != 0 and not cfg.device.startswith(("cuda", "mps")):
        raise ConfigError("gpu_layers: offloading layers needs device=cuda or mps "
                          "(and a GPU build of llama-cpp-python)")
    unsupported = [("prune", cfg.prune > 0), ("compile", cfg.compile),
                   ("draft", cfg.draft != "none"), ("kv_cache", not cfg.kv_cache),
                   ("variant", cfg.variant != "base"), ("qat", cfg.qat)]
    for key, bad in unsupported:
        if bad:
            raise ConfigError(
                f"{key}: not on backend=llamacpp; it supports kv_type, flash_attn, gpu_layers, "
                "batch, threads, device, prefix_cache, response_cache and sampling")


def valid_device(device: str) -> bool:
    if device in DEVICE_WORDS:
        return True
    if device.startswith("cuda:"):
        return device[5:].isdigit()
    return False
