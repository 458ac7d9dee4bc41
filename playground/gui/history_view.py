"""A simple History dialog: the most recent turns and benchmark runs from the database."""

from __future__ import annotations

import time

from PySide6.QtWidgets import QDialog, QLabel, QTableWidget, QTableWidgetItem, QVBoxLayout

COLUMNS = ("when", "kind", "config", "TTFT ms", "decode tok/s", "tokens", "prompt")


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
            values = (
                time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(turn.created)),
                turn.kind,
                turn.config,
                _num(m.get("ttft_ms")),
                _num(m.get("decode_tok_s")),
                str(m.get("new_tokens", "")),
                (turn.prompt or "")[:80],
            )
            for col, value in enumerate(values):
                self.table.setItem(row, col, QTableWidgetItem(value))
        self.table.resizeColumnsToContents()
        layout.addWidget(self.table)


def _num(value) -> str:
    return "" if value is None else f"{value:.1f}"
