"""Saved chats: every chat's turns are in the history database (one session a chat), so
a chat survives a restart. The window reopens the last one at start; File → Saved
chats… lists them all (how each began, its turns, when) and opens the one picked."""

from __future__ import annotations

from contextlib import closing
from datetime import datetime

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from playground.core.history import History
from playground.gui.chat_view import ChatTurn, saved_turn


def _turns(history: History, session: str) -> list[ChatTurn]:
    return [saved_turn(t.prompt or "", t.reply or "", t.metrics, t.config, t.created)
            for t in history.chat(session)]


def load_chat(session: str) -> list[ChatTurn]:
    with closing(History()) as history:
        return _turns(history, session)


def last_chat() -> tuple[str, list[ChatTurn]] | None:
    """The latest chat's session and turns, or None (no chat saved yet): one opening of
    the history for both."""
    with closing(History()) as history:
        chats = history.chats(limit=1)
        return (chats[0].session, _turns(history, chats[0].session)) if chats else None


class SavedChats(QDialog):
    chosen = Signal(str)  # the chat's session

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Saved chats")
        self.resize(720, 380)
        layout = QVBoxLayout(self)
        with closing(History()) as history:
            self.chats = history.chats(limit=200)
        self.table = QTableWidget(len(self.chats), 3)
        self.table.setHorizontalHeaderLabels(("Began with", "Turns", "Last turn"))
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for row, c in enumerate(self.chats):
            first = " ".join(c.first_prompt.split())
            cells = (first[:120] + ("…" if len(first) > 120 else ""), str(c.turns),
                     datetime.fromtimestamp(c.last).strftime("%Y-%m-%d %H:%M"))
            for col, text in enumerate(cells):
                self.table.setItem(row, col, QTableWidgetItem(text))
        self.table.cellDoubleClicked.connect(lambda _r, _c: self._open())
        layout.addWidget(self.table, 1)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.open_button = buttons.addButton("Open", QDialogButtonBox.ButtonRole.AcceptRole)
        buttons.accepted.connect(self._open)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)

    def _open(self) -> None:
        rows = {i.row() for i in self.table.selectedItems()}
        if rows:
            self.chosen.emit(self.chats[rows.pop()].session)
            self.accept()
