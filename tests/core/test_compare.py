import csv
import gc
import json
import weakref

import pytest

from playground.cli import main
from playground.core.compare import ratio_rows, run_compare
from playground.core.config import RunConfig
from playground.core.pipeline import build_engine

PROMPTS = [[{"role": "user", "content": "Hello there."}],
           [{"role": "user", "content": "What is the capital of France?"}]]


def configs(tiny_dir, *specs):
    base = RunConfig(model=str(tiny_dir), max_new_tokens=5)
    return [RunConfig.parse(spec, base=base) for spec in specs]


def test_compare_reports_speed_memory_and_quality(tiny_dir):
    out = run_compare(configs(tiny_dir, "", "quant=int8-dynamic", "prune=0.5,prune_method=structured"),
                      PROMPTS, warmup=0, repeats=1)
    assert not out.cancelled and len(out.results) == 3
    base, int8, pruned = out.results
    assert base.quality["kl_mean"] == 0.0 and base.quality["top1_agreement"] == 1.0
    assert base.quality["greedy_match"] == 1.0
    assert int8.quality["kl_mean"] > 0 and pruned.quality["kl_mean"] > int8.quality["kl_mean"]
    assert base.quality["ppl"] == pytest.approx(base.quality["ppl_baseline"])
    rows = ratio_rows(out.results)
    assert rows[0]["decode_x"] == 1.0 and rows[0]["weights_x"] == 1.0
    assert rows[1]["weights_x"] < 1.0


def test_models_are_released_between_configs(tiny_dir):
    """Peak memory stays that of the largest config: the previous model is gone first."""
    alive: list[weakref.ref] = []
    seen_alive_at_build: list[int] = []

    def build(config, progress, should_stop=None):
        gc.collect()
        seen_alive_at_build.append(sum(1 for ref in alive if ref() is not None))
        engine = build_engine(config, progress, should_stop=should_stop)
        alive.append(weakref.ref(engine.model))
        return engine

    run_compare(configs(tiny_dir, "", "quant=bf16", "quant=int8-dynamic"), PROMPTS,
                warmup=0, repeats=1, build=build)
    assert seen_alive_at_build == [0, 0, 0]


def test_cancel_stops_between_configs_and_keeps_finished_results(tiny_dir):
    finished = []

    out = run_compare(configs(tiny_dir, "", "quant=bf16", "quant=int8-dynamic"), PROMPTS,
                      warmup=0, repeats=1, on_result=finished.append,
                      should_stop=lambda: len(finished) >= 1)
    assert out.cancelled
    assert len(out.results) == 1 and out.results[0].quality["kl_mean"] == 0.0


def test_a_bad_config_fails_before_any_work(tiny_dir):
    from playground.core.optimize import OptimizationError

    with pytest.raises(OptimizationError):
        run_compare(configs(tiny_dir, "", "device=cuda:7"), PROMPTS, warmup=0, repeats=1)


def test_cli_compare_writes_json_csv_and_plot(tiny_dir, tmp_path, capsys):
    out = tmp_path / "c"
    code = main(["compare", "--config", f"model={tiny_dir},max_new_tokens=4",
                 "--config", f"model={tiny_dir},max_new_tokens=4,quant=int8-dynamic",
                 "--warmup", "0", "--repeats", "1", "--json", f"{out}.json",
                 "--csv", f"{out}.csv", "--plot", f"{out}.png"])
    assert code == 0
    data = json.loads((tmp_path / "c.json").read_text())
    assert data["schema"] == 1 and len(data["results"]) == 2
    assert data["results"][0]["quality"]["kl_mean"] == 0.0
    assert data["results"][1]["quality"]["kl_mean"] > 0
    rows = list(csv.DictReader((tmp_path / "c.csv").open()))
    assert [r["quality_kl_mean"] != "" for r in rows] == [True, True]
    assert (tmp_path / "c.png").stat().st_size > 5000
    table = capsys.readouterr().out
    assert "×1.00" in table and "KL nats" in table


def test_pareto_front_keeps_only_configs_nothing_beats():
    from playground.core.compare import pareto_front

    rows = [
        {"kl_mean": 0.0, "decode_x": 1.0},  # baseline: the most faithful
        {"kl_mean": 1.5, "decode_x": 2.1},  # fast, lossy: on the front (nothing is faster)
        {"kl_mean": 0.004, "decode_x": 1.9},  # faithful and fast: on the front
        {"kl_mean": 0.3, "decode_x": 1.2},  # beaten by the one above on both
        {"kl_mean": None, "decode_x": 3.0},  # no quality measured: not placed
        {"kl_mean": 0.004, "decode_x": 1.5},  # as faithful, slower: beaten
    ]
    assert pareto_front(rows) == [0, 2, 1]


def test_faithful_preset_uses_the_gguf_blocks_where_the_model_has_them(tiny_dir):
    from playground.core.presets import FAITHFUL, preset

    assert preset(FAITHFUL).quant == "gguf-native"
    assert preset(FAITHFUL, RunConfig(model=str(tiny_dir))).quant == "int8-weight"


def test_compare_plot_svg_needs_no_qt(tmp_path):
    """Run in a fresh interpreter where importing PySide6 fails: the SVG is still drawn."""
    import subprocess
    import sys

    code = """
import sys, builtins
real = builtins.__import__
def guard(name, *a, **k):
    if name.startswith(("PySide6", "pyqtgraph", "playground.gui")):
        raise ImportError("no Qt here: " + name)
    return real(name, *a, **k)
builtins.__import__ = guard
from pathlib import Path
from playground.core import compare_plot
rows = [dict(config="quant=none", ttft_ms=150.0, decode_tok_s=18.0, weights_mb=538.0,
             kl_mean=0.0, decode_x=1.0),
        dict(config="quant=int8-weight", ttft_ms=90.0, decode_tok_s=110.0, weights_mb=248.0,
             kl_mean=0.004, decode_x=6.1),
        dict(config="endpoint=http://x/v1", ttft_ms=40.0, decode_tok_s=120.0, weights_mb=None,
             kl_mean=None, decode_x=6.6)]
compare_plot.write(Path(sys.argv[1]), rows)
"""
    out = tmp_path / "c.svg"
    subprocess.run([sys.executable, "-c", code, str(out)], check=True, timeout=120)
    svg = out.read_text()
    assert svg.startswith("<svg") and "B: quant=int8-weight" in svg and "n/a" in svg
    assert "B ×6.10" in svg and "Pareto" in svg


def test_configs_alternate_round_by_round_with_each_rounds_spread(tiny_dir):
    order: list[str] = []

    def build(config, progress, should_stop=None):
        order.append(config.quant)
        return build_engine(config, progress, should_stop=should_stop)

    out = run_compare(configs(tiny_dir, "", "quant=int8-dynamic"), PROMPTS, warmup=1,
                      repeats=3, build=build)
    assert order == ["none", "int8-dynamic"] * 3
    for result in out.results:
        assert result.info["rounds"] == 3 and len(result.runs) == 3 * len(PROMPTS)
        spread = result.summary["spread"]["decode_tok_s"]
        assert len(spread["rounds"]) == 3
        assert spread["min"] <= spread["p50"] <= spread["max"]
    rows = ratio_rows(out.results)
    assert rows[0]["decode_x"] == 1.0 and rows[0]["decode_tok_s"] == \
        out.results[0].summary["spread"]["decode_tok_s"]["p50"]
    assert out.results[1].quality["kl_mean"] > 0  # scored in the last round


def test_a_wide_spread_is_flagged_noisy():
    from playground.core.bench import ConfigResult
    from playground.core.compare import noisy_note, round_spread

    def one_round(ttft, decode):
        summary = {"ttft_ms": {"mean": ttft}, "decode_tok_s": {"mean": decode}}
        return ConfigResult({}, summary, [])

    quiet = round_spread([one_round(100, 20.0), one_round(104, 19.5), one_round(98, 20.3)])
    busy = round_spread([one_round(100, 20.0), one_round(250, 9.0), one_round(101, 19.8)])
    assert not quiet["ttft_ms"]["noisy"] and not quiet["decode_tok_s"]["noisy"]
    assert busy["ttft_ms"]["noisy"] and busy["decode_tok_s"]["noisy"]
    assert busy["ttft_ms"]["p50"] == 101  # the median round, not the mean the busy one drags
    assert "noisy: TTFT and decode speed" in noisy_note({"noisy": ["ttft_ms", "decode_tok_s"]})


def test_a_failure_on_the_third_config_keeps_the_first_two(tiny_dir):
    from playground.core.models import ModelError

    def build(config, progress, should_stop=None):
        if config.quant == "int8-dynamic":
            raise ModelError("model: simulated failure while loading")
        return build_engine(config, progress, should_stop=should_stop)

    out = run_compare(configs(tiny_dir, "", "quant=bf16", "quant=int8-dynamic"), PROMPTS,
                      warmup=0, repeats=2, build=build)
    assert out.error == "model: simulated failure while loading" and not out.complete
    assert [r.config["quant"] for r in out.results] == ["none", "bf16"]
    assert all(r.info["incomplete"] == "1 of 2 rounds" for r in out.results)


def test_the_baseline_reference_is_not_resident_while_others_are_measured(tiny_dir,
                                                                          monkeypatch):
    from playground.core import quality

    made: list[quality.Reference] = []
    original = quality.reference

    def reference(model, tokenizer, should_stop=None):
        made.append(original(model, tokenizer, should_stop))
        return made[-1]

    monkeypatch.setattr(quality, "reference", reference)
    seen: list[bool] = []

    def build(config, progress, should_stop=None):
        seen.append(bool(made) and made[0].logprobs is not None)
        return build_engine(config, progress, should_stop=should_stop)

    out = run_compare(configs(tiny_dir, "", "quant=int8-dynamic"), PROMPTS, warmup=0,
                      repeats=1, build=build)
    assert seen == [False, False]  # parked before the second config loaded
    assert made[0].parked is None  # and its file removed at the end
    assert out.results[1].quality["kl_mean"] > 0


def test_cli_compare_ctrl_c_keeps_finished_rounds(tiny_dir, tmp_path, monkeypatch, capsys):
    import os
    import signal

    from playground.core import compare

    calls = []
    real = compare.run_bench

    def bench_then_ctrl_c(*args, **kwargs):
        result = real(*args, **kwargs)
        calls.append(1)
        if len(calls) == 3:  # round 2 of config A done: the user presses Ctrl+C
            os.kill(os.getpid(), signal.SIGINT)
        return result

    monkeypatch.setattr(compare, "run_bench", bench_then_ctrl_c)
    out = tmp_path / "c.json"
    code = main(["compare", "--config", f"model={tiny_dir},max_new_tokens=4",
                 "--config", f"model={tiny_dir},max_new_tokens=4,quant=bf16",
                 "--warmup", "0", "--repeats", "3", "--no-quality", "--json", str(out)])
    assert code == 130
    results = json.loads(out.read_text())["results"]
    assert [r["info"]["incomplete"] for r in results] == ["2 of 3 rounds", "1 of 3 rounds"]
    assert "Traceback" not in capsys.readouterr().err


def test_rounds_in_which_the_machine_was_busy_are_set_aside_from_the_medians():
    """A CPU hog from half-way slows configs unequally (here fp32 1.5×, int8 2.5×): the
    rounds it disturbed are found across configs and left out of the p50s, so the
    ratio stays the quiet one; the spread still shows them and flags the configs."""
    from playground.core.bench import ConfigResult
    from playground.core.compare import disturbed_rounds, ratio_rows, round_spread

    def one_round(ttft, decode):
        return ConfigResult({}, {"ttft_ms": {"mean": ttft}, "decode_tok_s": {"mean": decode}}, [])

    fp32 = [one_round(155, 18.0), one_round(154, 17.9), one_round(230, 12.0), one_round(235, 11.8)]
    int8 = [one_round(80, 47.0), one_round(81, 46.8), one_round(200, 19.0), one_round(190, 18.5)]
    busy = disturbed_rounds([fp32, int8])
    assert busy == {2, 3}
    results = []
    for rounds_ in (fp32, int8):
        summary = {"ttft_ms": {"mean": 0}, "decode_tok_s": {"mean": 0}, "weights_mb": 1,
                   "peak_rss_mb": 1, "spread": round_spread(rounds_, busy)}
        results.append(ConfigResult(RunConfig().to_dict(), summary, [], {"rounds": 4}))
    rows = ratio_rows(results)
    assert rows[1]["decode_x"] == pytest.approx(46.9 / 17.95, rel=0.01)
    assert rows[1]["noisy"] and rows[1]["set_aside"] == [3, 4]
    assert disturbed_rounds([fp32[:2], int8[:2]]) == set()  # a quiet run sets none aside
