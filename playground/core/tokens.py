"""A token's own bytes, whatever its tokenizer: the pieces OpenAI's logprobs report and
the unit the endpoint scorer walks a reply in (a byte-level BPE token may hold part of a
character, whose text alone is U+FFFD; SentencePiece writes a space as '\u2581')."""

from __future__ import annotations

from typing import Any


def token_bytes(tokenizer: Any, token: int) -> bytes:
    """The bytes ``token`` stands for: a byte-level BPE token's characters mapped back to
    bytes (GPT-2's table), a SentencePiece byte-fallback token <0xNN> as that byte, '▁' as
    a space; a special token as its text; otherwise its decoded text."""
    token = int(token)
    piece = tokenizer.convert_ids_to_tokens(token)
    if isinstance(piece, str):
        table, specials = _tables(tokenizer)
        if token in specials:
            return piece.encode("utf-8")
        if table is not None:
            if all(ch in table for ch in piece):
                return bytes(table[ch] for ch in piece)
        elif len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
            try:
                return bytes([int(piece[3:5], 16)])
            except ValueError:
                pass
        elif "\u2581" in piece:  # SentencePiece's word boundary: a space
            return piece.replace("\u2581", " ").encode("utf-8")
    return tokenizer.decode([token]).encode("utf-8")


def byte_token(tokenizer: Any, byte: int) -> int | None:
    """The token that stands for one byte alone (byte-level BPE and SentencePiece's byte
    fallback have one for every byte), or None."""
    table, _specials = _tables(tokenizer)
    if table is not None:
        piece = next(ch for ch, b in table.items() if b == byte)
    else:
        piece = f"<0x{byte:02X}>"
    token = tokenizer.convert_tokens_to_ids(piece)
    unknown = getattr(tokenizer, "unk_token_id", None)
    return None if token is None or token == unknown else int(token)


def _tables(tokenizer: Any) -> tuple[dict[str, int] | None, frozenset[int]]:
    """GPT-2's character-to-byte table where the tokenizer decodes bytes that way, and
    its special tokens' ids (looked up once a tokenizer: they serve every entry of every
    token)."""
    cached = getattr(tokenizer, "_playground_token_tables", None)
    if cached is not None:
        return cached
    backend = getattr(tokenizer, "backend_tokenizer", None)
    decoder = getattr(backend, "decoder", None)
    table = None
    if decoder is not None and "ByteLevel" in type(decoder).__name__ + repr(decoder):
        from transformers.convert_slow_tokenizer import bytes_to_unicode

        table = {ch: b for b, ch in bytes_to_unicode().items()}
    tables = (table, frozenset(getattr(tokenizer, "all_special_ids", ()) or ()))
    try:
        tokenizer._playground_token_tables = tables
    except AttributeError:
        pass  # a tokenizer that takes no attributes: looked up each time
    return tables
