"""Finished replies read as Markdown (lists, emphasis, code, tables); a reply still
streaming stays plain text; HTML inside a reply is shown, never run; View can turn it off."""

from playground.gui.chat_view import ChatView

REPLY = ("Here is **bold** and `code`:\n\n- first\n- second\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n"
         "<b>not markup</b>")


def _finish(view, reply):
    view.turns[-1].reply = ""
    view.begin_reply()
    view.append_piece(reply)
    return view


def test_a_finished_reply_is_rendered_as_markdown(qtbot):
    view = ChatView()
    qtbot.addWidget(view)
    view.input.setPlainText("hi")
    view._send()
    _finish(view, REPLY)
    streaming = view.transcript.toPlainText()
    assert "**bold**" in streaming and "| a | b |" in streaming  # plain while it streams
    view.end_reply(REPLY, "TTFT 5 ms", "A", {})
    html = view.transcript.toHtml()
    text = view.transcript.toPlainText()
    assert "**" not in text and "bold" in text
    assert "font-weight" in html and "<li" in html and "<table" in html
    assert "<b>not markup</b>" in text  # the reply's own HTML is text, not markup
    assert "TTFT 5 ms" in text
    view.set_markdown(False)
    assert "**bold**" in view.transcript.toPlainText()
    assert view.turns[-1].reply == REPLY  # copy and export keep the Markdown source
