"""Which quantization-aware weights were trained for (model, quant, group), and where.

Kept apart from the training (qat.py, which builds engines through the pipeline) so the
qat=on optimization can look weights up without importing the pipeline it is part of.
"""

from __future__ import annotations

import json
from pathlib import Path

from playground.core import paths, registry
from playground.core.config import RunConfig
from playground.core.models import ModelError


class QatMissing(ModelError):
    """No trained weights for this model and quant: the message names the command."""


def _key(cfg: RunConfig) -> str:
    group = f"/g{cfg.quant_group}" if cfg.quant == "int4-weight" else ""
    return f"{registry.teacher_key(cfg.model)}|{cfg.quant}{group}"


def _table_path() -> Path:
    return paths.data_dir() / "qat.json"


def _table() -> dict[str, str]:
    try:
        return dict(json.loads(_table_path().read_text()))
    except (OSError, ValueError):
        return {}


def register(cfg: RunConfig, folder: Path) -> None:
    table = _table()
    table[_key(cfg)] = str(Path(folder).resolve())
    _table_path().write_text(json.dumps(table, indent=1))


def trained_for(cfg: RunConfig) -> str:
    """The folder of QAT weights for this config's model and quant, or QatMissing."""
    folder = _table().get(_key(cfg))
    if folder and (Path(folder) / "config.json").is_file():
        return folder
    group = f",quant_group={cfg.quant_group}" if cfg.quant == "int4-weight" else ""
    raise QatMissing(
        f"qat: no quantization-aware weights for model={cfg.model} and quant={cfg.quant}"
        f"{group}; build them with `playground qat --config model={cfg.model},"
        f"quant={cfg.quant}{group}`")


def available(cfg: RunConfig) -> bool:
    try:
        trained_for(cfg)
        return True
    except QatMissing:
        return False
