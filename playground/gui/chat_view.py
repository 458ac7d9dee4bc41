"""The chat pane: streamed replies, per-reply metrics kept under each reply, controls."""

from __future__ import annotations

import html
import uuid
from dataclasses import dataclass, field, fields
from datetime import datetime
from types import SimpleNamespace

from PySide6.QtCore import QEvent, Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QGuiApplication, QTextCursor
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from playground.core.config import ConfigError, RunConfig
from playground.core.metrics import TurnMetrics
from playground.gui.markdown import reply_html


@dataclass
class ChatTurn:
    user: str
    reply: str = ""
    metrics_line: str = ""
    config: str = ""
    metrics: dict = field(default_factory=dict)
    finished_at: str = ""  # local time the reply ended (ISO 8601, seconds)
    stopped: bool = False


def metrics_line(m, config_label: str, prefix_reused: int | None = None) -> str:
    """TTFT, decode tok/s, tokens, peak memory, the response cache's hit or miss and,
    with the prefix cache, how many prompt tokens came from it: shown under each reply."""
    def f(v, digits=1):
        return "–" if v is None else f"{v:.{digits}f}"

    parts = [f"TTFT {f(m.ttft_ms)} ms", f"{f(m.decode_tok_s)} tok/s", f"{m.new_tokens} tokens",
             f"peak {f(m.peak_rss_mb, 0)} MB"]
    if m.cuda_peak_mb is not None:
        parts.append(f"CUDA {f(m.cuda_peak_mb, 0)} MB")
    parts.append("response cache: hit" if m.cache_hit else "response cache: miss")
    if prefix_reused is not None and not m.cache_hit:
        parts.append(f"prefix: {prefix_reused} of {m.prompt_tokens} prompt tokens reused")
    return " · ".join(parts) + f" · [{config_label}]"


def saved_turn(prompt: str, reply: str, metrics: dict | None, config: str, created: float
               ) -> ChatTurn:
    """A turn read back from the history, its line (metrics_line's) from the figures
    recorded then, and when."""
    m = metrics or {}
    figures = {f.name: m.get(f.name) for f in fields(TurnMetrics)}
    figures["new_tokens"] = m.get("new_tokens", "–")
    try:  # the live line names only the changed keys: so does this one
        label = RunConfig.parse(config).format(only_changed=True) or "defaults"
    except ConfigError:  # a spec an older version wrote: as it was stored
        label = config
    when = datetime.fromtimestamp(created).isoformat(timespec="seconds")
    line = f"{metrics_line(SimpleNamespace(**figures), label)} · saved {when.replace('T', ' ')}"
    return ChatTurn(user=prompt, reply=reply, metrics_line=line, config=config, metrics=m,
                    finished_at=when)


SEND_TIP = "Send the message (Ctrl+Enter)"


class Transcript(QTextBrowser):
    """The chat's text. A reply is the model's (or a remote server's) text: its Markdown
    images and links must not make the app read files (a QTextBrowser loads any local
    path it is pointed at, on the GUI thread: /dev/zero, a FIFO) or replace the
    transcript with one. Images load nothing; only http(s) links open, in the browser."""

    def __init__(self) -> None:
        super().__init__()
        self.setOpenLinks(False)
        self.anchorClicked.connect(self._open)

    def loadResource(self, kind: int, name: QUrl) -> object:  # noqa: N802 (Qt's name)
        return None

    @staticmethod
    def _open(url: QUrl) -> None:
        if url.scheme() in ("http", "https"):
            QDesktopServices.openUrl(url)


class ChatView(QWidget):
    send_requested = Signal(str)
    stop_requested = Signal()
    new_chat_requested = Signal()
    regenerate_requested = Signal(str)  # the chat whose last turn is asked again
    chat_picked = Signal(str)  # a saved chat's session, picked in the Chat list

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        # the saved chats one click away, as a list above the chat: a sidebar would take
        # a fourth column that a 1024-pixel window does not have
        top = QHBoxLayout()
        top.addWidget(QLabel("Chat:"))
        self.chats = QComboBox()
        self.chats.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.chats.setMinimumContentsLength(10)
        self.chats.setToolTip("your chats, latest first: pick one to open it "
                              "(View → Saved chats… renames and deletes them)")
        self.chats.activated.connect(self._chat_activated)
        # a closed combo box takes the wheel and the arrow keys as picks: scrolling the
        # pane over it would open chat after chat
        self.chats.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.chats.installEventFilter(self)
        top.addWidget(self.chats, 1)
        layout.addLayout(top)
        self.system = QLineEdit()
        self.system.setPlaceholderText("System prompt (optional)")
        layout.addWidget(self.system)
        self.transcript = Transcript()
        layout.addWidget(self.transcript, 1)
        self.input = QPlainTextEdit()
        self.input.setPlaceholderText("Type a message and press Send (Ctrl+Enter)")
        self.input.setMaximumHeight(80)
        layout.addWidget(self.input)
        row = QHBoxLayout()
        self.send = QPushButton("Send")
        self.stop = QPushButton("Stop")
        self.new_chat = QPushButton("New")
        self.new_chat.setToolTip("start a new chat (this one stays in View → Saved chats…)")
        self.copy = QPushButton("Copy")
        self.copy.setToolTip("copy the last reply to the clipboard")
        self.again = QPushButton("Retry")
        self.again.setToolTip("regenerate: ask the last message again with the current "
                              "settings; the new reply replaces the last one, here and in "
                              "the history")
        for button in (self.send, self.stop, self.new_chat, self.copy, self.again):
            # five buttons must not widen the chat past the charts at 1024 px: each may
            # shrink below its label's natural width (the labels are short)
            button.setMinimumWidth(48)
            row.addWidget(button)
        layout.addLayout(row)
        self.stop.setEnabled(False)
        self.send.clicked.connect(self._send)
        self.stop.clicked.connect(self.stop_requested)
        self.new_chat.clicked.connect(self.new_chat_requested)
        self.copy.clicked.connect(self.copy_last_reply)
        self.again.clicked.connect(self.regenerate)
        self.turns: list[ChatTurn] = []
        self.earlier: list[list[ChatTurn]] = []  # chats before the last New chat
        self.streaming = False
        self.held: str | None = None  # why Send is off (a model loading), or None
        self.send.setToolTip(SEND_TIP)
        self.markdown = True  # finished replies read as Markdown (View menu)
        self.chat_id = uuid.uuid4().hex  # this chat's turns in the history (its session)

    def set_chats(self, chats: list[tuple[str, str, str]]) -> None:
        """The Chat list: (session, label, tooltip) of the saved chats, latest first; the
        open chat selected ("New chat" while it has no saved turn)."""
        self.chats.blockSignals(True)
        self.chats.clear()
        if self.chat_id not in {session for session, _l, _t in chats}:
            # no saved turn yet, or older than the list's latest chats
            self.chats.addItem("This chat" if self.turns else "New chat", self.chat_id)
        for session, label, tip in chats:
            self.chats.addItem(label, session)
            self.chats.setItemData(self.chats.count() - 1, tip, Qt.ItemDataRole.ToolTipRole)
        self.chats.setCurrentIndex(max(0, self.chats.findData(self.chat_id)))
        self.chats.blockSignals(False)

    def eventFilter(self, watched, event) -> bool:  # noqa: N802 (Qt's name)
        if watched is self.chats and event.type() == QEvent.Type.Wheel:
            return True  # the list opens by a click; the wheel scrolls nothing here
        return super().eventFilter(watched, event)

    def _chat_activated(self, index: int) -> None:
        session = self.chats.itemData(index)
        if session and session != self.chat_id:
            self.chat_picked.emit(session)

    def keyPressEvent(self, event) -> None:  # Ctrl+Enter sends
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and (
            event.modifiers() & Qt.KeyboardModifier.ControlModifier
        ):
            self._send()
            return
        super().keyPressEvent(event)

    # -- conversation -----------------------------------------------------------
    def messages(self) -> list[dict[str, str]]:
        """The conversation as chat messages, the pending user message last."""
        out = []
        if self.system.text().strip():
            out.append({"role": "system", "content": self.system.text().strip()})
        for turn in self.turns:
            out.append({"role": "user", "content": turn.user})
            if turn.reply or turn.metrics_line:
                out.append({"role": "assistant", "content": turn.reply})
        return out

    def hold(self, reason: str | None) -> None:
        """Send off while nothing could answer (a model loading, a comparison running),
        the reason in its tooltip; the typed text stays."""
        self.held = reason
        if not self.streaming:
            self.send.setEnabled(reason is None)
        self.send.setToolTip(f"Send waits: {reason}" if reason else SEND_TIP)

    def _send(self) -> None:
        text = self.input.toPlainText().strip()
        if not text or self.streaming or self.held:
            return
        self.input.clear()
        self.turns.append(ChatTurn(user=text))
        self.render()
        self.send_requested.emit(text)

    def regenerate(self) -> None:
        """The last message asked again: its turn goes (here, and from the history by the
        window), and the same text is sent as it was."""
        if not self.turns or self.streaming or self.held or not self.turns[-1].metrics_line:
            return
        last = self.turns.pop()
        self.regenerate_requested.emit(self.chat_id)
        self.turns.append(ChatTurn(user=last.user))
        self.render()
        self.send_requested.emit(last.user)

    def begin_reply(self) -> None:
        self.streaming = True
        self.send.setEnabled(False)
        self.stop.setEnabled(True)
        self.chats.setEnabled(False)  # the reply ends in its own chat first

    def append_piece(self, piece: str) -> None:
        if not self.turns or not piece:
            return
        self.turns[-1].reply += piece
        cursor = self.transcript.textCursor()
        cursor.movePosition(QTextCursor.MoveOperation.End)
        cursor.insertText(piece)

    def end_reply(self, reply: str | None, line: str, config_label: str, metrics: dict) -> None:
        self.streaming = False
        self.chats.setEnabled(True)
        self.send.setEnabled(self.held is None)
        self.stop.setEnabled(False)
        if self.turns:
            turn = self.turns[-1]
            if reply is not None:
                turn.reply = reply
            turn.metrics_line, turn.config, turn.metrics = line, config_label, metrics
            turn.finished_at = datetime.now().isoformat(timespec="seconds")
            turn.stopped = line.endswith("(stopped)")
        self.render()

    def fail_reply(self, message: str) -> None:
        """The turn failed: keep the user's text in the box, drop the unanswered turn."""
        self.streaming = False
        self.chats.setEnabled(True)
        self.send.setEnabled(self.held is None)
        self.stop.setEnabled(False)
        if self.turns and not self.turns[-1].metrics_line:
            pending = self.turns.pop()
            if not self.input.toPlainText().strip():
                self.input.setPlainText(pending.user)
        self.render()

    def clear(self) -> None:
        if self.turns:  # the session keeps them (File → Export writes every chat)
            self.earlier.append(self.turns)
        self.turns = []
        self.chat_id = uuid.uuid4().hex
        self.render()

    def restore(self, chat_id: str, turns: list[ChatTurn]) -> None:
        """A saved chat back in the window: its turns shown, later turns added to it."""
        if self.turns and chat_id != self.chat_id:  # the open chat again: not twice
            self.earlier.append(self.turns)
        self.turns, self.chat_id = list(turns), chat_id
        self.render()

    def session(self) -> list[list[ChatTurn]]:
        """Every chat of this session, the current one last."""
        return [*self.earlier, self.turns]

    def set_markdown(self, on: bool) -> None:
        self.markdown = on
        if not self.streaming:
            self.render()

    def copy_last_reply(self) -> None:
        replies = [t.reply for t in self.turns if t.reply]
        if replies:
            QGuiApplication.clipboard().setText(replies[-1])

    def render(self) -> None:
        parts = []
        for i, turn in enumerate(self.turns):
            parts.append(f"<p><b>You:</b> {html.escape(turn.user)}</p>")
            plain = html.escape(turn.reply).replace("\n", "<br>")
            if i == len(self.turns) - 1 and not turn.metrics_line:  # plain until it ends
                parts.append(f"<p><b>Model:</b> {plain}")
                continue
            body = reply_html(turn.reply) if self.markdown else f"<p>{plain}</p>"
            parts.append(f"<p><b>Model:</b></p>{body}")
            if turn.metrics_line:
                parts.append(f"<p><span style='color:#666; font-size:small'>"
                             f"{html.escape(turn.metrics_line)}</span></p>")
        # A streaming reply's paragraph stays open so its pieces land inside it.
        self.transcript.setHtml("".join(parts))
        self.transcript.moveCursor(QTextCursor.MoveOperation.End)
