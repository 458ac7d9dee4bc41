import pytest

from playground.core.metrics import (
    TokenTimeline,
    bandwidth_bound,
    percentile,
    summarize,
    turn_metrics,
)


def test_turn_metrics_hand_computed():
    # Request at t=10; prefill logits at 10.2 for 50 prompt tokens; tokens at 10.25, 10.35,
    # 10.40, 10.55.
    tl = TokenTimeline(t_request=10.0, prompt_tokens=50, t_first_logits=10.2,
                       token_times=[10.25, 10.35, 10.40, 10.55])
    m = turn_metrics(tl, weights_mb=500.0, bandwidth_gb_s=25.0, peak_rss_mb=900.0)
    assert m.new_tokens == 4
    assert m.ttft_ms == pytest.approx(250.0)
    assert m.prefill_tok_s == pytest.approx(50 / 0.2)
    assert m.itl_ms == pytest.approx([100.0, 50.0, 150.0])
    assert m.itl_p50_ms == pytest.approx(100.0)
    assert m.e2e_s == pytest.approx(0.55)
    assert m.tpot_ms == pytest.approx(100.0)  # (0.55 - 0.25) / 3
    assert m.decode_tok_s == pytest.approx(10.0)
    assert m.e2e_tok_s == pytest.approx(4 / 0.55)
    assert m.bandwidth_bound_tok_s == pytest.approx(50.0)  # 25 GB/s / 500 MB
    assert m.pct_of_bound == pytest.approx(20.0)


def test_single_token_and_empty_turns():
    one = turn_metrics(TokenTimeline(t_request=0.0, token_times=[0.3]))
    assert one.ttft_ms == pytest.approx(300.0)
    assert one.decode_tok_s is None and one.tpot_ms is None and one.itl_ms == []
    empty = turn_metrics(TokenTimeline(t_request=0.0))
    assert empty.ttft_ms is None and empty.e2e_s == 0.0 and empty.e2e_tok_s is None


def test_percentiles_match_numpy_linear():
    values = [5.0, 1.0, 3.0, 2.0, 4.0]
    assert percentile(values, 50) == 3.0
    assert percentile(values, 90) == pytest.approx(4.6)
    assert percentile(values, 99) == pytest.approx(4.96)
    assert percentile([], 50) is None
    s = summarize([1.0, None, 3.0])
    assert s["mean"] == 2.0 and s["p50"] == 2.0
    assert summarize([None])["mean"] is None


def test_bandwidth_bound_needs_both():
    assert bandwidth_bound(None, 100.0) is None
    assert bandwidth_bound(10.0, 1000.0) == pytest.approx(10.0)


def test_quality_verdict_comes_from_the_measured_figures():
    from playground.core.quality import disagreement

    assert "differs from the reference's 7%" in disagreement(0.0043, 0.93)
    assert "60%" in disagreement(1.5, 0.40) and "KL 1.50" in disagreement(1.5, 0.40)


def test_tokens_arriving_together_are_one_arrival_for_itl_but_count_for_tpot():
    """Speculative decoding stamps an accepted run of tokens with one time: ITL is over
    arrivals (no 0 ms gaps), TPOT and decode speed over tokens."""
    from playground.core.metrics import TokenTimeline, turn_metrics

    tl = TokenTimeline(t_request=0.0, prompt_tokens=4, t_first_logits=0.1,
                       token_times=[0.1, 0.3, 0.3, 0.3, 0.5])
    m = turn_metrics(tl)
    assert m.itl_ms == pytest.approx([200.0, 200.0])
    assert m.tpot_ms == pytest.approx(100.0) and m.decode_tok_s == pytest.approx(10.0)
