"""Where the playground keeps its data (history) and its caches (converted models).

``PLAYGROUND_HOME`` moves the data (history database, settings); ``PLAYGROUND_CACHE``
moves the caches (converted default model, bandwidth figure). Both default to the
platform's user folders (platformdirs).
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP = "latency-playground"


def _folder(env: str, default: str, create: bool = True) -> Path:
    override = os.environ.get(env)
    path = Path(override) if override else Path(default)
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def data_dir(create: bool = True) -> Path:
    """``create=False`` for a caller that handles a folder it cannot make (the history)."""
    return _folder("PLAYGROUND_HOME", platformdirs.user_data_dir(APP), create)


def fallback_dir() -> Path:
    """Where a result or history goes when the data folder cannot take it (not created
    here: the caller tries it after the data folder)."""
    import tempfile

    return Path(tempfile.gettempdir()) / APP


def cache_dir() -> Path:
    return _folder("PLAYGROUND_CACHE", platformdirs.user_cache_dir(APP))


def config_dir() -> Path:
    # Settings and students.toml live with the data when PLAYGROUND_HOME is set.
    return _folder("PLAYGROUND_HOME", platformdirs.user_config_dir(APP))


def assets_dir() -> Path:
    """The shipped assets: beside the package in a checkout, inside the bundle when frozen."""
    import sys

    env = os.environ.get("PLAYGROUND_ASSETS")
    if env:
        return Path(env)
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle:
        return Path(bundle) / "assets"
    return Path(__file__).resolve().parents[2] / "assets"
