"""Chat messages and prompt text checked before anything loads: one rule for prompt
files, the terminal chat, the app and the server, so bad input is one line naming
what is wrong (never a template or tokenizer traceback after a minute of loading)."""

from __future__ import annotations

from typing import Any

ROLES = ("system", "user", "assistant")


class MessageError(ValueError):
    """``where`` names the field (``messages[2]``, ``--system``); the text says what is
    wrong and what is allowed."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where}: {problem}")
        self.where = where


def check_text(text: str, where: str) -> str:
    """Refuse text holding bytes that were not UTF-8 (Python keeps them as lone
    surrogates: from the command line, a pipe or a JSON escape)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        code = ord(text[exc.start])
        what = (f"byte 0x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF
                else f"lone surrogate U+{code:04X}")
        raise MessageError(where, f"is not valid UTF-8 text ({what} at character "
                                  f"{exc.start}); UTF-8 text only") from None
    return text


def check_messages(messages: Any, where: str = "messages") -> list[dict[str, str]]:
    """A non-empty list of {role: system|user|assistant, content: str}, returned as
    plain dicts with only those two keys."""
    if not isinstance(messages, list) or not messages:
        raise MessageError(where, "a non-empty list of {role, content} is required")
    checked = []
    for i, m in enumerate(messages):
        if not (isinstance(m, dict) and m.get("role") in ROLES
                and isinstance(m.get("content"), str)):
            raise MessageError(f"{where}[{i}]", "needs role system|user|assistant and a "
                                                "string content")
        checked.append({"role": m["role"],
                        "content": check_text(m["content"], f"{where}[{i}].content")})
    return checked
