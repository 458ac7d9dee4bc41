"""OpenAI's ``logprobs`` for a chat reply: per generated token, its log-probability under
the model's own next-token distribution (the raw logits' log-softmax, before temperature
and top-p, as vLLM reports them by default) and the ``top_logprobs`` most likely tokens.
Computed in the scheduler's thread from the logits the batch pass already has. A token's
``bytes`` are its own (a byte-level tokenizer's token may hold part of a character, whose
text alone is U+FFFD), as OpenAI gives them."""

from __future__ import annotations

from typing import Any

from playground.core.tokens import token_bytes

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
