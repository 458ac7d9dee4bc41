"""Quality cost of an optimization, measured on token logits against a baseline.

On the shipped evaluation text (assets/eval/eval.txt): mean KL(baseline ‖ candidate)
of the next-token distributions, top-1 agreement, and each model's perplexity. The
text is scored in fixed windows in batches (teacher forcing), never by generating.
Pure functions work on tensors so they can be tested on hand-made logits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from playground.core import jobs, paths
from playground.core.jobs import ShouldStop

WINDOW = 256
BATCH = 4
MAX_TOKENS = 1536  # keeps the stored baseline distributions to ~300 MB for a 49k vocab


@dataclass
class Reference:
    """The baseline's log-probabilities over the evaluation windows (scored once).

    ``park`` moves them (about 300 MB for a 49k vocabulary) to a file, mapped back
    only while a candidate is scored: otherwise they would sit in every later
    config's measured memory."""

    logprobs: Any  # float32 [windows, WINDOW-1, vocab]; None while parked
    windows: Any  # long [windows, WINDOW]: the same tokens score every candidate
    parked: Any = None  # the file's path while parked

    @property
    def targets(self) -> Any:
        return self.windows[:, 1:]

    def park(self) -> None:
        import tempfile

        import numpy as np

        handle = tempfile.NamedTemporaryFile(prefix="playground-reference-", suffix=".npy",
                                             delete=False)
        with handle:
            np.save(handle, self.logprobs.numpy())
        self.parked, self.logprobs = handle.name, None

    def distributions(self) -> Any:
        """The log-probabilities, mapped from the file while parked (the caller drops
        them when done, and the mapping goes with them)."""
        if self.parked is None:
            return self.logprobs
        import warnings

        import numpy as np
        import torch

        with warnings.catch_warnings():  # a read-only mapping: nothing here writes to it
            warnings.simplefilter("ignore", UserWarning)
            return torch.from_numpy(np.load(self.parked, mmap_mode="r"))

    def discard(self) -> None:
        import os

        if self.parked is not None:
            os.unlink(self.parked)
            self.parked = None


def kl_divergence(base_logits: Any, cand_logits: Any) -> Any:
    """KL(P_base ‖ P_cand) per position, in nats, from logits or log-probs (last dim)."""
    import torch

    p_log = torch.log_softmax(base_logits.float(), dim=-1)
    q_log = torch.log_softmax(cand_logits.float(), dim=-1)
    return (p_log.exp() * (p_log - q_log)).sum(-1).clamp_min(0.0)


def top1_agreement(base_logits: Any, cand_logits: Any) -> float:
    return float((base_logits.argmax(-1) == cand_logits.argmax(-1)).float().mean())


def perplexity(logits: Any, targets: Any) -> float:
    import torch

    nll = torch.nn.functional.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1)
    )
    return float(torch.exp(nll))


def eval_text_path() -> Any:
    """Read only to score quality: nothing tunes on it (see calibration_text)."""
    return paths.assets_dir() / "eval" / "eval.txt"


def calibration_text() -> str:
    """Different text for what optimizations tune on (pruning statistics, the student's
    layer probe), so no config is scored on the text it was fitted to."""
    return (paths.assets_dir() / "calibration" / "calibration.txt").read_text(encoding="utf-8")


def calibration_windows(tokenizer: Any, max_tokens: int = 2 * WINDOW,
                        window: int = WINDOW) -> Any:
    return _windows(tokenizer, calibration_text(), max_tokens, window)


def eval_windows(tokenizer: Any, max_tokens: int = MAX_TOKENS, window: int = WINDOW) -> Any:
    """The evaluation text as [n, window] token windows (the remainder is dropped)."""
    return _windows(tokenizer, eval_text_path().read_text(encoding="utf-8"), max_tokens, window)


def _windows(tokenizer: Any, text: str, max_tokens: int, window: int) -> Any:
    import torch

    ids = tokenizer(text, add_special_tokens=False)["input_ids"][:max_tokens]
    n = len(ids) // window
    if n == 0:
        raise ValueError(f"evaluation text is shorter than one window of {window} tokens")
    return torch.tensor(ids[: n * window]).reshape(n, window)


def score(model: Any, windows: Any, batch: int = BATCH,
          should_stop: ShouldStop | None = None) -> Any:
    """Log-probabilities of every next token, [n, window-1, vocab], float32 on CPU
    (``jobs.Cancelled`` between batches once stopped)."""
    import torch

    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    out = []
    with torch.inference_mode():
        for start in range(0, windows.shape[0], batch):
            jobs.check(should_stop, "quality scoring")
            chunk = windows[start : start + batch].to(device)
            logits = model(input_ids=chunk, use_cache=False).logits[:, :-1]
            out.append(torch.log_softmax(logits.float(), dim=-1).cpu())
    return torch.cat(out)


def reference(model: Any, tokenizer: Any, should_stop: ShouldStop | None = None) -> Reference:
    windows = eval_windows(tokenizer)
    return Reference(score(model, windows, should_stop=should_stop), windows)


def compare_to(ref: Reference, model: Any,
               should_stop: ShouldStop | None = None) -> dict[str, float]:
    """KL, top-1 agreement and perplexities of ``model`` against the reference."""
    cand = score(model, ref.windows, should_stop=should_stop)
    base = ref.distributions()
    if cand.shape != base.shape:
        raise ValueError(
            "quality: the candidate's vocabulary differs from the baseline's; "
            "KL needs the same tokenizer"
        )
    return {
        "kl_mean": float(kl_divergence(base, cand).mean()),
        "top1_agreement": top1_agreement(base, cand),
        "ppl": perplexity(cand, ref.targets),
        "ppl_baseline": perplexity(base, ref.targets),
    }


def greedy_match(baseline_replies: list[str], replies: list[str]) -> float | None:
    """Share of prompts whose greedy reply is identical to the baseline's."""
    pairs = list(zip(baseline_replies, replies, strict=False))
    if not pairs:
        return None
    return sum(a == b for a, b in pairs) / len(pairs)


def top1_on_replies(engine: Any, conversations: list[Any], replies: list[str],
                    reply_tokens: list[int | None],
                    should_stop: ShouldStop | None = None) -> tuple[float | None, str]:
    """For a remote endpoint (no local logits): how often the local baseline's top next
    token is the token the endpoint chose, along the endpoint's own greedy replies. The
    reply is walked as bytes: a step is a hit when the reply goes on with the baseline's
    top token's bytes, whatever tokens a re-read of the text would make (a model's greedy
    path is often not its tokenizer's split: re-tokenized, a byte-identical reply scored
    97.8%). Needs the same tokenizer on both sides: when the reply's token count is not
    the endpoint's, the figure is not available, and the reason says so."""
    hits = total = 0
    for messages, reply, counted in zip(conversations, replies, reply_tokens, strict=True):
        target = list(engine.tokenizer(reply, add_special_tokens=False)["input_ids"])
        if counted is not None and abs(len(target) - counted) > 1:  # an end token may count
            return None, (f"not available: the endpoint counted {counted} tokens where the "
                          f"baseline's tokenizer reads {len(target)} (another tokenizer)")
        if reply:
            got, steps = _walk(engine, engine.prompt_ids(messages), reply, target, should_stop)
            hits, total = hits + got, total + steps
    if not total:
        return None, "not available: the endpoint returned no reply text"
    return hits / total, "top-1 on the endpoint's own replies (no logits from a remote server)"


def _walk(engine: Any, prompt: list[int], reply: str, target: list[int],
          should_stop: ShouldStop | None) -> tuple[int, int]:
    """(hits, steps) along ``reply``'s bytes after ``prompt``: each step takes the
    baseline's top token where the reply's bytes go on with it (a hit), else the reply's
    own token starting there (``target``, the reply read by the tokenizer), else the
    token of the next byte alone; every step moves on, so it ends."""
    import torch
    from transformers import DynamicCache

    from playground.core.tokens import byte_token, token_bytes

    tokenizer, model = engine.tokenizer, engine.model
    data = reply.encode("utf-8")
    starts, at = {}, 0
    for token in target:  # the reply's own split, by where each token's bytes begin
        starts.setdefault(at, token)
        at += len(token_bytes(tokenizer, token))
    cache = DynamicCache(config=model.config)
    pos, hits, steps = 0, 0, 0
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([prompt]), past_key_values=cache,
                       use_cache=True).logits[0, -1]
        while pos < len(data):
            jobs.check(should_stop, "scoring the endpoint's replies")
            top = int(logits.argmax())
            raw = token_bytes(tokenizer, top)
            if pos == 0 and raw.startswith(b" ") and not data.startswith(b" "):
                raw = raw[1:]  # SentencePiece's dummy prefix: a reply's first space is dropped
            if raw and data.startswith(raw, pos):
                token, hits = top, hits + 1
            else:
                token = starts.get(pos)
                if token is None:
                    token = byte_token(tokenizer, data[pos])
                    if token is None:  # no token for a lone byte: score what was walked
                        break
                raw = token_bytes(tokenizer, token)
                if pos == 0 and raw.startswith(b" ") and not data.startswith(b" "):
                    raw = raw[1:]
                if not raw or not data.startswith(raw, pos):
                    break
            pos, steps = pos + len(raw), steps + 1
            logits = model(input_ids=torch.tensor([[token]]), past_key_values=cache,
                           use_cache=True).logits[0, -1]
    return hits, steps


def disagreement(kl: float, top1: float) -> str:
    """What a config's measured quality means, from its own figures (no fixed verdict)."""
    return (f"its top next token differs from the reference's {1 - top1:.0%} of the time on "
            f"the evaluation text (KL {kl:.2f} nats)")
