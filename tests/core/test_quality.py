import math

import pytest
import torch

from playground.core.quality import greedy_match, kl_divergence, perplexity, top1_agreement


def test_kl_of_identical_distributions_is_zero():
    logits = torch.randn(3, 5, 11)
    assert float(kl_divergence(logits, logits).abs().max()) < 1e-6


def test_kl_known_values():
    # P = (0.5, 0.5), Q = (0.25, 0.75): KL = 0.5 ln 2 + 0.5 ln(2/3)
    p = torch.log(torch.tensor([[0.5, 0.5]]))
    q = torch.log(torch.tensor([[0.25, 0.75]]))
    expected = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert float(kl_divergence(p, q)[0]) == pytest.approx(expected, abs=1e-6)
    # Not symmetric, and logits (unnormalised) give the same answer as log-probs.
    assert float(kl_divergence(q, p)[0]) != pytest.approx(expected, abs=1e-3)
    assert float(kl_divergence(p + 3.0, q - 1.0)[0]) == pytest.approx(expected, abs=1e-6)


def test_top1_agreement_and_perplexity():
    a = torch.tensor([[[0.0, 2.0, 1.0], [3.0, 0.0, 0.0]]])
    b = torch.tensor([[[0.0, 5.0, 1.0], [0.0, 0.0, 3.0]]])
    assert top1_agreement(a, b) == 0.5
    uniform = torch.zeros(1, 4, 8)
    assert perplexity(uniform, torch.zeros(1, 4, dtype=torch.long)) == pytest.approx(8.0)
    sure = torch.full((1, 2, 4), -30.0)
    sure[..., 2] = 30.0
    assert perplexity(sure, torch.full((1, 2), 2)) == pytest.approx(1.0)


def test_greedy_match():
    assert greedy_match(["a", "b", "c", "d"], ["a", "x", "c", "d"]) == 0.75
    assert greedy_match([], []) is None
