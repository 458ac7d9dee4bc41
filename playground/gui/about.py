"""Help → About and Help → Keyboard shortcuts: what this app runs on, and its keys."""

from __future__ import annotations

import platform
import sys

SHORTCUTS = (
    ("Ctrl+Enter", "send the message (in the message box)"),
    ("Enter", "load / apply the settings (in the Model field)"),
    ("Ctrl+O", "the models on this machine: pick one to load"),
    ("Ctrl+Q", "quit (settings and the last working config are saved)"),
)


def versions() -> list[tuple[str, str]]:
    """The packages and the kernels' instruction set this app runs with."""
    from importlib import metadata

    import PySide6
    from PySide6.QtCore import qVersion

    def dist(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    rows = [("Latency Playground", dist("latency-playground")),
            ("Python", platform.python_version()),
            ("torch", dist("torch")), ("transformers", dist("transformers")),
            ("PySide6 / Qt", f"{PySide6.__version__} / {qVersion()}"),
            ("Native kernels", _kernels())]
    return rows


def _kernels() -> str:
    from playground.core import native

    if not native._load.cache_info().currsize:  # loading them may compile: not from here
        return "not loaded yet (they load with the first model that uses them)"
    isa = native.isa()
    return f"{isa} (chosen at run time for this CPU)" if isa else f"unavailable: {native.unavailable()}"


def about_html() -> str:
    rows = "".join(f"<tr><td><b>{k}</b></td><td>{v}</td></tr>" for k, v in versions())
    return (f"<p>The LLM Latency Playground: what each optimization does to speed, memory "
            f"and quality, measured on this machine.</p><table>{rows}</table>"
            f"<p>{platform.system()} {platform.machine()}, {sys.platform}</p>")


def shortcuts_html() -> str:
    rows = "".join(f"<tr><td><b>{k}</b></td><td>{v}</td></tr>" for k, v in SHORTCUTS)
    return f"<table>{rows}</table>"
