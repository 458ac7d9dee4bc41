"""File → Export: the charts as PNG, the session's turns as CSV or JSON."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any


def export_charts(charts: Any, path: str) -> None:
    charts.redraw()
    if not charts.grab().save(path):
        raise OSError(f"could not write {path}")


def export_turns(turns: list[Any], path: str) -> None:
    """One row a measured turn; ``.json`` or CSV by the file's name."""
    rows = [
        {"turn": i + 1, "time": t.finished_at, "stopped": t.stopped, "config": t.config,
         "prompt": t.user, "reply": t.reply,
         **{k: v for k, v in t.metrics.items() if k != "itl_ms"}}
        for i, t in enumerate(turns) if t.metrics
    ]
    if path.endswith(".json"):
        Path(path).write_text(json.dumps(rows, indent=1))
        return
    with open(path, "w", newline="", encoding="utf-8") as fh:
        fields = list(dict.fromkeys(k for row in rows for k in row)) or ["turn"]
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
