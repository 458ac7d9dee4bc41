"""Saved chats: every chat's turns are in the history database (one session a chat), so
a chat survives a restart. The window reopens the last one at start; the chat pane's
Chat list opens any of the latest 50 in one click; View → Saved chats… lists them all
(its name or how it began, its turns, when), opens the one picked, renames it or
deletes it."""

from __future__ import annotations

from contextlib import closing
from datetime import datetime

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QInputDialog,
    QMessageBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from playground.core.history import History, recent_chats
from playground.gui.chat_view import ChatTurn, saved_turn


def _turns(history: History, session: str) -> list[ChatTurn]:
    return [saved_turn(t.prompt or "", t.reply or "", t.metrics, t.config, t.created)
            for t in history.chat(session)]


def names(chat) -> tuple[str, str]:
    """A chat's name (the one given it, or how it began, cut) and its whole beginning."""
    first = " ".join(chat.first_prompt.split())
    return chat.title or (first[:120] + ("…" if len(first) > 120 else "")), first


def chat_list(limit: int = 50) -> list[tuple[str, str, str]]:
    """(session, label, tooltip) of the latest chats, for the chat pane's list."""
    out = []
    chats = recent_chats(limit)
    for c in chats:
        name, first = names(c)
        when = datetime.fromtimestamp(c.last).strftime("%Y-%m-%d %H:%M")
        label = (name[:48] + "…" if len(name) > 48 else name) + f" · {c.turns}"
        out.append((c.session, label, f"{name}\n{c.turns} turns, last {when}"
                    + (f"\nbegan with: {first[:300]}" if c.title else "")))
    return out


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
    deleted = Signal(str)  # a chat's session, its turns gone from the history
    changed = Signal()  # a chat renamed or deleted
    error = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Saved chats")
        self.resize(760, 400)
        layout = QVBoxLayout(self)
        self.table = QTableWidget(0, 3)
        self.table.setHorizontalHeaderLabels(("Name, or how it began", "Turns", "Last turn"))
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.table.cellDoubleClicked.connect(lambda _r, _c: self._open())
        layout.addWidget(self.table, 1)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.open_button = buttons.addButton("Open", QDialogButtonBox.ButtonRole.AcceptRole)
        self.rename_button = buttons.addButton("Rename…", QDialogButtonBox.ButtonRole.ActionRole)
        self.delete_button = buttons.addButton("Delete", QDialogButtonBox.ButtonRole.ActionRole)
        buttons.accepted.connect(self._open)
        buttons.rejected.connect(self.reject)
        self.rename_button.clicked.connect(lambda: self.rename())
        self.delete_button.clicked.connect(lambda: self.delete())
        layout.addWidget(buttons)
        self.refresh()

    def refresh(self) -> None:
        with closing(History()) as history:
            self.chats = history.chats(limit=200)
        self.table.setRowCount(len(self.chats))
        for row, c in enumerate(self.chats):
            name, first = names(c)
            cells = (name, str(c.turns), datetime.fromtimestamp(c.last).strftime("%Y-%m-%d %H:%M"))
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if col == 0 and c.title:
                    item.setToolTip(f"began with: {first[:300]}")
                self.table.setItem(row, col, item)

    def _picked(self) -> int | None:
        rows = {i.row() for i in self.table.selectedItems()}
        return rows.pop() if rows else None

    def _open(self) -> None:
        row = self._picked()
        if row is not None:
            self.chosen.emit(self.chats[row].session)
            self.accept()

    def rename(self, title: str | None = None) -> None:
        """Name the picked chat (asks for the name unless given)."""
        row = self._picked()
        if row is None:
            return
        chat = self.chats[row]
        if title is None:
            title, ok = QInputDialog.getText(self, "Rename chat", "Name (empty: how it began):",
                                             text=chat.title or "")
            if not ok:
                return
        self._edit(lambda history: history.rename_chat(chat.session, title))

    def delete(self, confirm: bool = True) -> None:
        """Delete the picked chat's turns from the history, after asking."""
        row = self._picked()
        if row is None:
            return
        chat = self.chats[row]
        if confirm and QMessageBox.question(
                self, "Delete chat", f"Delete this chat's {chat.turns} turns from the "
                "history? Its benchmarks and comparisons stay.") != QMessageBox.StandardButton.Yes:
            return
        if self._edit(lambda history: history.delete_chat(chat.session)):
            self.deleted.emit(chat.session)

    def _edit(self, change) -> bool:
        with closing(History()) as history:
            done = change(history)
            notice = history.notice
        if not done:
            self.error.emit(notice or "the history could not be changed")
        self.refresh()
        if done:
            self.changed.emit()
        return bool(done)
