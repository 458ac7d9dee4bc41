"""Compact names of configs for chart annotations and tables."""

from __future__ import annotations

from playground.core.config import RunConfig

# Keys that do not change what is measured as an optimization: left out of chart labels.
QUIET_KEYS = ("model", "threads", "max_new_tokens", "temperature", "top_p", "seed")


def short_label(config: RunConfig) -> str:
    """The optimizations of a config, compactly, for chart annotations."""
    parts = []
    for item in config.format(only_changed=True).split(","):
        key, _, value = item.partition("=")
        if not item or key in QUIET_KEYS or key == "prune_method":
            continue
        if key == "quant":
            parts.append(value)
        elif key == "prune":
            parts.append(f"prune {value} {config.prune_method}")
        else:
            parts.append(item)
    return ", ".join(parts) or "baseline"


def model_name(config: RunConfig) -> str:
    """The model a config runs, short: a file's or folder's name, or where it is served."""
    from pathlib import PurePath

    if config.endpoint:
        return config.endpoint_model or config.endpoint
    if config.model == "default":
        return "default model"
    return PurePath(config.model.rstrip("/\\")).name or config.model


def chart_label(config: RunConfig) -> str:
    """The model and its optimizations: two models with the same settings never share a
    key in the charts."""
    return f"{model_name(config)} · {short_label(config)}"
