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

    def build(config, progress):
        gc.collect()
        seen_alive_at_build.append(sum(1 for ref in alive if ref() is not None))
        engine = build_engine(config, progress)
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
