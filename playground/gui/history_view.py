"""A simple History dialog: the most recent turns and benchmark runs from the database."""

from __future__ import annotations

import time

from PySide6.QtWidgets import QDialog, QLabel, QTableWidget, QTableWidgetItem, QVBoxLayout

# the figures first, the long spec last (elided, whole in its tooltip)
COLUMNS = ("when", "kind", "TTFT ms", "decode tok/s", "tokens", "ended", "prompt", "config")
CONFIG_CHARS = 60


class HistoryDialog(QDialog):
    def __init__(self, parent=None, limit: int = 200) -> None:
        super().__init__(parent)
        from playground.core.history import History

        self.setWindowTitle("History")
        self.resize(1000, 500)
        layout = QVBoxLayout(self)
        history = History()
        turns = history.recent(limit)
        history.close()
        if history.notice:
            layout.addWidget(QLabel(history.notice))
        self.table = QTableWidget(len(turns), len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        for row, turn in enumerate(turns):
            m = turn.metrics or {}
            ended = {"cancelled": "stopped", "eos": "done", "length": "max tokens",
                     "cache": "cached"}.get(m.get("finish_reason"), "")
            if not turn.complete:  # its comparison stopped or failed part-way
                ended = f"{ended}, incomplete" if ended else "incomplete session"
            config = turn.config or ""
            values = (
                time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(turn.created)),
                turn.kind,
                _num(m.get("ttft_ms")),
                _num(m.get("decode_tok_s")),
                str(m.get("new_tokens", "")),
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
        layout.addWidget(self.table)


def _num(value) -> str:
    return "" if value is None else f"{value:.1f}"
