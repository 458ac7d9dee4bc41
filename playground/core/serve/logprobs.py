"""OpenAI's ``logprobs`` for a chat reply: per generated token, its log-probability under
the model's own next-token distribution (the raw logits' log-softmax, before temperature
and top-p, as vLLM reports them by default) and the ``top_logprobs`` most likely tokens.
Computed in the scheduler's thread from the logits the batch pass already has. A token's
``bytes`` are its own (a byte-level tokenizer's token may hold part of a character, whose
text alone is U+FFFD), as OpenAI gives them."""

from __future__ import annotations

from typing import Any

MAX_TOP = 20  # OpenAI's limit for top_logprobs


def entry(logits: Any, token: int, top: int, tokenizer: Any) -> dict[str, Any]:
    """``{token, logprob, bytes, top_logprobs: [{token, logprob, bytes}]}`` for ``token``."""
    import torch

    logp = torch.log_softmax(logits.float(), dim=-1)

    def item(t: int) -> dict[str, Any]:
        raw = token_bytes(tokenizer, t)
        return {"token": raw.decode("utf-8", errors="replace"), "logprob": float(logp[t]),
                "bytes": list(raw)}

    out = item(token)
    if top:
        _values, ids = torch.topk(logp, top)
        out["top_logprobs"] = [item(int(i)) for i in ids]
    else:
        out["top_logprobs"] = []
    return out


def token_bytes(tokenizer: Any, token: int) -> bytes:
    """The bytes ``token`` stands for: a byte-level BPE token's characters mapped back to
    bytes (GPT-2's table), a SentencePiece byte-fallback token <0xNN> as that byte, '▁' as
    a space; otherwise its decoded text."""
    piece = tokenizer.convert_ids_to_tokens(int(token))
    if isinstance(piece, str):
        table = _byte_decoder(tokenizer)
        if table is not None and all(ch in table for ch in piece):
            return bytes(table[ch] for ch in piece)
        if len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
            try:
                return bytes([int(piece[3:5], 16)])
            except ValueError:
                pass
    return tokenizer.decode([int(token)]).encode("utf-8")


def _byte_decoder(tokenizer: Any) -> dict[str, int] | None:
    """GPT-2's character-to-byte table where the tokenizer decodes bytes that way."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    decoder = getattr(backend, "decoder", None)
    if decoder is None or "ByteLevel" not in type(decoder).__name__ + repr(decoder):
        return None
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    return {ch: b for b, ch in bytes_to_unicode().items()}
