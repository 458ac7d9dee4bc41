import csv
import json

from playground.cli import main
from playground.core.history import History


def test_bench_writes_valid_result_files_and_history(tiny_dir, tmp_path, capsys):
    prompts = tmp_path / "p.txt"
    prompts.write_text("# comment\nHello there.\n\nWhat is the capital of France?\n")
    out_json, out_csv = tmp_path / "r.json", tmp_path / "r.csv"
    code = main(["bench", "--config", f"model={tiny_dir},max_new_tokens=6", "--prompts",
                 str(prompts), "--warmup", "1", "--repeats", "2", "--json", str(out_json),
                 "--csv", str(out_csv)])
    assert code == 0
    data = json.loads(out_json.read_text())
    assert data["schema"] == 1
    assert set(data["hardware"]) >= {"cpu", "cores", "gpu", "torch", "transformers"}
    (result,) = data["results"]
    assert result["config"]["max_new_tokens"] == 6 and result["config"]["kv_cache"] == "on"
    summary = result["summary"]
    for key in ("ttft_ms", "decode_tok_s", "prefill_tok_s", "itl_ms", "e2e_s"):
        assert set(summary[key]) == {"mean", "p50", "p90", "p99"}
    assert summary["weights_mb"] > 0 and summary["peak_rss_mb"] > 0
    assert len(result["runs"]) == 4  # 2 prompts x 2 repeats, warmup excluded
    run = result["runs"][0]
    assert {"prompt_tokens", "new_tokens", "ttft_ms", "itl_ms", "e2e_s", "decode_tok_s",
            "peak_rss_mb", "cache_hit", "reply"} <= set(run)
    rows = list(csv.DictReader(out_csv.open()))
    assert len(rows) == 1 and float(rows[0]["ttft_ms_mean"]) > 0
    out = capsys.readouterr().out
    assert "TTFT ms" in out
    assert "    decode: " in out  # which decode path ran, named in the table's notes
    assert len(History().recent(kind="bench")) == 4


def test_bench_chat_mode_numbers_turns(tiny_dir, tmp_path):
    turns = tmp_path / "chat.txt"
    turns.write_text("Hello.\nHow are you?\nThanks!\n")
    out = tmp_path / "r.json"
    assert main(["bench", "--config", f"model={tiny_dir},max_new_tokens=4,prefix_cache=on",
                 "--chat", str(turns), "--warmup", "0", "--repeats", "1", "--json", str(out)]) == 0
    runs = json.loads(out.read_text())["results"][0]["runs"]
    assert [r["turn"] for r in runs] == [1, 2, 3]
    assert runs[0]["prompt_tokens"] < runs[2]["prompt_tokens"]
    assert runs[2]["prefix_reused"] > 0


def test_jsonl_prompts(tiny_dir, tmp_path):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"messages": [{"role": "user", "content": "Hi"}]}) + "\n")
    out = tmp_path / "r.json"
    assert main(["bench", "--config", f"model={tiny_dir},max_new_tokens=3", "--prompts",
                 str(prompts), "--warmup", "0", "--repeats", "1", "--json", str(out)]) == 0
    assert len(json.loads(out.read_text())["results"][0]["runs"]) == 1


def test_bad_config_is_one_clear_line(capsys):
    assert main(["bench", "--config", "quant=int3"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "quant" in err and "int8-dynamic" in err


def test_missing_model_is_one_clear_line(capsys):
    assert main(["bench", "--config", "model=/nope/model"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_models_lists_the_default(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "default" in out and "SmolLM2-135M-Instruct" in out


def test_models_lists_the_files_in_a_folder_with_the_fast_paths_verdict(tmp_path, capsys):
    from gguf_files import write_tiny_gguf

    fast = write_tiny_gguf(tmp_path / "mine.gguf", {})
    write_tiny_gguf(tmp_path / "q2.gguf", {"ffn_down": "Q2_K"})
    assert main(["models", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    mine = next(line for line in lines if line.startswith("mine.gguf"))
    slow = next(line for line in lines if line.startswith("q2.gguf"))
    assert "fast path: yes" in mine and f"model={fast},quant=gguf-native" in mine
    assert "fast path: no" in slow and "Q2_K" in slow


def test_distill_command_builds_registers_and_reports(tiny4_dir, tmp_path, capsys):
    """The whole command on the shipped prompt set, a tiny teacher and a few steps."""
    from playground.core import registry

    out = tmp_path / "student"
    code = main(["distill", "--teacher", f"model={tiny4_dir}", "--layers", "2", "--steps", "3",
                 "--seq-len", "32", "--batch", "2", "--out", str(out), "--greedy-replies"])
    assert code == 0
    report = json.loads((out / "distill_report.json").read_text())
    assert report["steps"] == 3 and len(report["kept_layers"]) == 2
    assert report["kl_before"] > 0 and report["corpus_tokens"] > 1000
    assert (out / "config.json").exists()
    assert registry.student_for(str(tiny4_dir)) == str(out)
    printed = capsys.readouterr().out
    assert "KL to teacher" in printed and "registered" in printed


def test_app_options_without_the_gui_subcommand_start_the_app(monkeypatch):
    """`latency-playground --self-test --screenshot x.png` (the packaged app, no
    subcommand) means the gui command, not a parse error."""
    from playground import cli
    from playground.gui import app

    seen = []
    monkeypatch.setattr(app, "run_gui", lambda args: seen.append(args) or 0)
    assert cli.main(["--self-test", "--screenshot", "x.png"]) == 0
    assert seen[0].self_test and seen[0].screenshot == "x.png"
    assert cli.main([]) == 0 and len(seen) == 2  # no arguments at all: the app too


def test_bench_ignore_eos_decodes_every_token(tiny_dir, tmp_path):
    """A model whose first greedy token is its end-of-text stops at once; --ignore-eos
    decodes max_new_tokens all the same (what llama-bench's tg measures)."""
    import shutil

    from playground.core.config import RunConfig
    from playground.core.pipeline import build_engine

    first = build_engine(RunConfig(model=str(tiny_dir), max_new_tokens=1)).chat(
        [{"role": "user", "content": "Hello there."}]).token_ids[0]
    model = tmp_path / "stops-at-once"
    shutil.copytree(tiny_dir, model)
    for name in ("config.json", "generation_config.json"):
        path = model / name
        if path.is_file():
            data = json.loads(path.read_text())
            data["eos_token_id"] = first
            path.write_text(json.dumps(data))
    prompts = tmp_path / "p.txt"
    prompts.write_text("Hello there.\n")
    counts = {}
    for flag in ([], ["--ignore-eos"]):
        out = tmp_path / f"r{len(flag)}.json"
        assert main(["bench", "--config", f"model={model},max_new_tokens=9", "--prompts",
                     str(prompts), "--warmup", "0", "--repeats", "1", "--json", str(out),
                     *flag]) == 0
        counts[bool(flag)] = json.loads(out.read_text())["results"][0]["runs"][0]["new_tokens"]
    assert counts[False] <= 1 and counts[True] == 9
