"""Chats survive a restart: every turn is saved under its chat, the last chat is back in
the window at start, File → Saved chats lists them and opens one, and a turn sent after
opening it joins that chat."""

from test_main_window import WAIT_MS, make_window, send  # noqa: F401 (a fixture)

from playground.core.config import RunConfig
from playground.core.history import History


def test_the_last_chat_comes_back_and_saved_chats_reopen(qtbot, open_window, tiny_dir):
    config = RunConfig(model=str(tiny_dir), max_new_tokens=3)
    first = open_window(config)
    first.worker.engine.eos_ids = set()
    send(qtbot, first, "What is a lighthouse?")
    reply = first.chat.turns[-1].reply
    first.new_chat()
    send(qtbot, first, "Name a colour")
    first.close()
    qtbot.waitUntil(first.thread.isFinished, timeout=WAIT_MS)

    again = open_window(config)  # the same user folder: a restart
    assert [t.user for t in again.chat.turns] == ["Name a colour"]
    assert "saved" in again.chat.turns[0].metrics_line
    dialog = None

    def opened():
        nonlocal dialog
        from PySide6.QtWidgets import QApplication

        dialog = QApplication.activeModalWidget()
        return dialog is not None

    again.show_saved_chats()
    qtbot.waitUntil(opened, timeout=WAIT_MS)
    assert dialog.table.rowCount() == 2
    assert dialog.table.item(1, 0).text() == "What is a lighthouse?"
    dialog.table.selectRow(1)
    dialog.open_button.click()
    assert [(t.user, t.reply) for t in again.chat.turns] == [("What is a lighthouse?", reply)]
    again.worker.engine.eos_ids = set()
    send(qtbot, again, "And its light?")
    assert len(again.chat.messages()) == 4  # the reopened turn is the context
    history = History()
    try:
        assert [t.prompt for t in history.chat(again.chat.chat_id)] == [
            "What is a lighthouse?", "And its light?"]
    finally:
        history.close()


def test_opening_a_saved_chat_mid_reply_waits_for_the_reply_to_end(qtbot, make_window):  # noqa: F811
    """The reply that streams ends in its own chat; then the saved chat opens, its turns
    as saved (a late piece of the other reply never lands in it)."""
    window = make_window("max_new_tokens=400")
    send(qtbot, window, "First chat")
    first_id, first_turns = window.chat.chat_id, [(t.user, t.reply) for t in window.chat.turns]
    window.new_chat()
    send(qtbot, window, "Second chat", wait=False)
    qtbot.waitUntil(lambda: window.chat.streaming and bool(window.chat.turns[-1].reply),
                    timeout=WAIT_MS)
    with qtbot.waitSignal(window.turn_shown, timeout=WAIT_MS):
        window.open_chat(first_id)
    assert window.chat.chat_id == first_id
    assert [(t.user, t.reply) for t in window.chat.turns] == first_turns
    second = window.chat.earlier[-1]
    assert second[-1].user == "Second chat" and second[-1].stopped


def test_reply_images_and_links_never_read_local_files(qtbot, tmp_path):
    from PySide6.QtCore import QUrl

    from playground.gui.chat_view import ChatView

    view = ChatView()
    qtbot.addWidget(view)
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the transcript")
    assert view.transcript.loadResource(2, QUrl.fromLocalFile(str(secret))) is None
    assert not view.transcript.openLinks()


def test_regenerate_replaces_the_last_turn_here_and_in_the_history(qtbot, make_window):  # noqa: F811
    """The last turn asked again: one turn for it in the window and in the history (the
    regenerated reply), the earlier turns as they were."""
    window = make_window("max_new_tokens=4")
    window.worker.engine.eos_ids = set()
    send(qtbot, window, "Tell me about lighthouses")
    send(qtbot, window, "And ships?")
    with qtbot.waitSignal(window.turn_shown, timeout=WAIT_MS):
        window.chat.again.click()
    assert [t.user for t in window.chat.turns] == ["Tell me about lighthouses", "And ships?"]
    assert window.chat.turns[-1].reply and window.chat.turns[-1].metrics_line
    history = History()
    try:
        saved = history.chat(window.chat.chat_id)
        assert [t.prompt for t in saved] == ["Tell me about lighthouses", "And ships?"]
        assert saved[-1].reply == window.chat.turns[-1].reply
    finally:
        history.close()


def test_saved_chats_are_renamed_and_deleted(qtbot, make_window):  # noqa: F811
    """Rename names a chat in the list (and after a restart: it is in the history);
    Delete takes its turns away, and deleting the open chat starts a new one."""
    window = make_window("max_new_tokens=2")
    send(qtbot, window, "Kept chat")
    window.new_chat()
    send(qtbot, window, "Doomed chat")
    doomed = window.chat.chat_id
    window.show_saved_chats()
    dialog = window.saved_chats_dialog
    assert dialog.table.rowCount() == 2
    dialog.table.selectRow(1)
    dialog.rename("Lighthouse notes")
    assert dialog.table.item(1, 0).text() == "Lighthouse notes"
    dialog.table.selectRow(0)
    assert dialog.table.item(0, 0).text() == "Doomed chat"
    dialog.delete(confirm=False)
    assert dialog.table.rowCount() == 1 and dialog.table.item(0, 0).text() == "Lighthouse notes"
    assert window.chat.chat_id != doomed and window.chat.turns == []
    history = History()
    try:
        assert history.chat(doomed) == [] and history.chats()[0].title == "Lighthouse notes"
    finally:
        history.close()
    dialog.reject()


def test_the_chat_list_opens_a_chat_and_its_turns_return_to_the_charts(
        qtbot, open_window, tiny_dir):
    """After a restart the charts hold the reopened chat's turns, from their records
    (TTFT, tokens at their recorded gaps); the Chat list above the chat names every
    saved chat, the open one selected, and picking one opens it with its turns charted."""
    config = RunConfig(model=str(tiny_dir), max_new_tokens=4)
    first = open_window(config)
    first.worker.engine.eos_ids = set()
    send(qtbot, first, "What is a lighthouse?")
    send(qtbot, first, "And its light?")
    first.new_chat()
    assert first.chat.chats.currentText() == "New chat" and first.chat.chats.count() == 2
    send(qtbot, first, "Name a colour")
    saved = [t.metrics for t in first.chat.earlier[-1]]
    first.close()
    qtbot.waitUntil(first.thread.isFinished, timeout=WAIT_MS)

    again = open_window(config)
    charts = again.charts
    assert charts.turns == 1 and charts.ttft_turn == [1]  # "Name a colour", as recorded
    assert charts.tokens_total == again.chat.turns[0].metrics["new_tokens"] == 4
    combo = again.chat.chats
    assert [combo.itemText(i).split(" · ")[0] for i in range(combo.count())] == [
        "Name a colour", "What is a lighthouse?"]
    assert combo.currentIndex() == 0
    from PySide6.QtCore import QPoint, QPointF, Qt
    from PySide6.QtGui import QWheelEvent
    from PySide6.QtWidgets import QApplication

    wheel = QWheelEvent(QPointF(5, 5), QPointF(combo.mapToGlobal(QPoint(5, 5))), QPoint(0, 0),
                        QPoint(0, -120), Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier,
                        Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(combo, wheel)  # scrolling over the list opens nothing
    assert combo.currentIndex() == 0 and again.chat.turns[0].user == "Name a colour"
    combo.setCurrentIndex(1)
    combo.activated.emit(1)
    assert [t.user for t in again.chat.turns] == ["What is a lighthouse?", "And its light?"]
    assert charts.turns == 3
    assert charts.ttft_ms[1:] == [m["ttft_ms"] for m in saved]
    assert combo.itemData(combo.currentIndex()) == again.chat.chat_id
