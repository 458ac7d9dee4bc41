"""File → Export: the charts as PNG, the session's turns as CSV or JSON."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

SIZE = (1600, 960)  # the exported image, whatever the panel's size on screen


def export_charts(charts: Any, path: str) -> None:
    """The charts panel laid out at a readable size (2 x 2 and the config key) for the
    grab, then given back its size: a grab as it stood was as narrow as the window's
    column (266 px at 1024 wide)."""
    old = charts.size()
    try:
        charts.resize(*SIZE)  # a visible widget gets its resize event at once: 2 x 2
        charts.layout().activate()
        charts.redraw()
        image = charts.grab()
    finally:
        charts.resize(old)
        charts.layout().activate()
    if not image.save(path):
        raise OSError(f"could not write {path}")


def export_turns(chats: list[list[Any]], path: str) -> None:
    """One row a measured turn of every chat of the session (New chat starts the next),
    numbered through; ``.json`` or CSV by the file's name."""
    measured = [(c + 1, t) for c, turns in enumerate(chats) for t in turns if t.metrics]
    rows = [
        {"turn": i + 1, "time": t.finished_at, "stopped": t.stopped, "chat": chat,
         "config": t.config, "prompt": t.user, "reply": t.reply,
         **{k: v for k, v in t.metrics.items() if k != "itl_ms"}}
        for i, (chat, t) in enumerate(measured)
    ]
    if path.endswith(".json"):
        Path(path).write_text(json.dumps(rows, indent=1))
        return
    with open(path, "w", newline="", encoding="utf-8") as fh:
        fields = list(dict.fromkeys(k for row in rows for k in row)) or ["turn"]
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
