"""A finished reply's Markdown as HTML for the transcript (Qt's own CommonMark reader,
GitHub's tables, lists and strikethrough; HTML in the reply is shown as text, never
run). A reply that is streaming stays plain text until it ends."""

from __future__ import annotations

import re

from PySide6.QtGui import QTextDocument

_BODY = re.compile(r"<body[^>]*>(.*)</body>", re.DOTALL)


def reply_html(text: str) -> str:
    """The body of Qt's HTML for ``text`` read as Markdown (no document head, so it fits
    inside the transcript's own HTML)."""
    doc = QTextDocument()
    features = (QTextDocument.MarkdownFeature.MarkdownDialectGitHub
                | QTextDocument.MarkdownFeature.MarkdownNoHTML)
    doc.setMarkdown(text, features)
    found = _BODY.search(doc.toHtml())
    return found.group(1).strip() if found else ""
