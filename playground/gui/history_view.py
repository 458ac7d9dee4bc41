"""The History dialog: the most recent turns, benchmark runs and compared configs from the
database, each with its figures (a comparison's are its medians and its quality);
double-click a row for everything recorded with it."""

from __future__ import annotations

import html
import json
import time
from typing import Any

from PySide6.QtWidgets import (
    QDialog,
    QLabel,
    QMessageBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

# the figures first, the long spec last (elided, whole in its tooltip)
COLUMNS = ("when", "kind", "TTFT ms", "decode tok/s", "tokens", "peak MB", "KL", "top-1",
           "ended", "prompt", "config")
CONFIG_CHARS = 60


def figures(metrics: dict[str, Any] | None) -> dict[str, Any]:
    """A row's figures: a turn's or a run's own, a compared config's medians (p50 over
    its runs) and quality."""
    m = metrics or {}
    if "summary" in m:  # a compared config
        s, q = m.get("summary") or {}, m.get("quality") or {}

        def p50(key: str) -> Any:
            value = s.get(key)
            return value.get("p50") if isinstance(value, dict) else value

        return {"ttft": p50("ttft_ms"), "tok_s": p50("decode_tok_s"), "tokens": None,
                "peak": p50("peak_rss_mb"), "kl": q.get("kl_mean"),
                "top1": q.get("top1_agreement"), "finish": None}
    return {"ttft": m.get("ttft_ms"), "tok_s": m.get("decode_tok_s"),
            "tokens": m.get("new_tokens"), "peak": m.get("peak_rss_mb"), "kl": None,
            "top1": None, "finish": m.get("finish_reason")}


class HistoryDialog(QDialog):
    def __init__(self, parent=None, limit: int = 200) -> None:
        super().__init__(parent)
        from playground.core.history import History

        self.setWindowTitle("History")
        self.resize(1000, 500)
        layout = QVBoxLayout(self)
        history = History()
        self.turns = history.recent(limit)
        history.close()
        if history.notice:
            layout.addWidget(QLabel(history.notice))
        self.table = QTableWidget(len(self.turns), len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        for row, turn in enumerate(self.turns):
            f = figures(turn.metrics)
            ended = {"cancelled": "stopped", "eos": "done", "length": "max tokens",
                     "cache": "cached"}.get(f["finish"], "")
            if not turn.complete:  # its comparison stopped or failed part-way
                ended = f"{ended}, incomplete" if ended else "incomplete session"
            config = turn.config or ""
            values = (
                time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(turn.created)),
                turn.kind,
                _num(f["ttft"]),
                _num(f["tok_s"]),
                "" if f["tokens"] is None else str(f["tokens"]),
                _num(f["peak"], 0),
                "" if f["kl"] is None else f"{f['kl']:.2g}",
                "" if f["top1"] is None else f"{f['top1']:.1%}",
                ended,
                (turn.prompt or "")[:80],
                config if len(config) <= CONFIG_CHARS else config[: CONFIG_CHARS - 1] + "…",
            )
            for col, value in enumerate(values):
                item = QTableWidgetItem(value)
                if COLUMNS[col] == "config":
                    item.setToolTip(config)
                self.table.setItem(row, col, item)
        self.table.resizeColumnsToContents()
        self.table.cellDoubleClicked.connect(lambda row, _col: self.show_details(row))
        layout.addWidget(self.table)
        layout.addWidget(QLabel("Double-click a row for everything recorded with it."))

    def show_details(self, row: int) -> None:
        turn = self.turns[row]
        recorded = {"config": turn.config, "prompt": turn.prompt, "reply": turn.reply,
                    "metrics": turn.metrics, "hardware": turn.hardware}
        text = json.dumps({k: v for k, v in recorded.items() if v is not None}, indent=1)
        box = QMessageBox(QMessageBox.Icon.NoIcon, f"{turn.kind} · "
                          + time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(turn.created)),
                          "", QMessageBox.StandardButton.Close, self)
        box.setText(f"<pre>{html.escape(text[:20000])}</pre>")
        box.open()
        self.details = box


def _num(value, digits: int = 1) -> str:
    return "" if value is None else f"{value:.{digits}f}"
