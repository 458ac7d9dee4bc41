"""Hostile input from outside, through the command line: each case is one line and
an exit status, never a traceback, and a finished measurement is never lost."""

import json
import os
import subprocess
import sys

import pytest

from playground.cli import main
from playground.core import history as history_module
from playground.core.history import History


def _bench(tiny_dir, tmp_path, *extra):
    prompts = tmp_path / "p.txt"
    prompts.write_text("Hello there.\n")
    return main(["bench", "--config", f"model={tiny_dir},max_new_tokens=3", "--prompts",
                 str(prompts), "--warmup", "0", "--repeats", "1", *extra])


@pytest.fixture
def no_model_load(monkeypatch):
    """Fails the test if a model starts loading: these errors must come first."""
    from playground.core import pipeline

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the input was checked")

    monkeypatch.setattr(pipeline, "build_engine", refuse)


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("line, words", [
    ('{"messages":[{"role":"user"}]}', "messages[0]: needs role"),
    ('{"messages":"hi"}', "messages: a non-empty list"),
    ('{"messages":[]}', "messages: a non-empty list"),
    ('[1, 2]', 'expected {"messages"'),
    ('{"messages":[{"role":"user","content":"hi"}', "not JSON"),
])
def test_malformed_jsonl_is_one_line_naming_the_line_before_loading(
        tmp_path, capsys, no_model_load, line, words):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"messages":[{"role":"user","content":"fine"}]}\n' + line + "\n")
    assert main(["bench", "--prompts", str(prompts)]) == 2
    err = _one_line(capsys)
    assert f"{prompts}:2:" in err and words in err


def test_a_non_utf8_prompt_file_names_the_file(tmp_path, capsys, no_model_load):
    prompts = tmp_path / "p.txt"
    prompts.write_bytes(b"hi \xff\xfe\n")
    assert main(["bench", "--prompts", str(prompts)]) == 2
    err = _one_line(capsys)
    assert str(prompts) in err and "not UTF-8" in err and "0xff" in err


def test_a_non_utf8_system_prompt_is_refused_before_loading(tmp_path, capsys, no_model_load):
    # What Python makes of the argument bytes \xff\xfe (surrogate escapes).
    assert main(["bench", "--system", "\udcff\udcfe"]) == 2
    assert "--system: is not valid UTF-8 text (byte 0xff" in _one_line(capsys)
    assert main(["chat", "--system", "\udcff\udcfe"]) == 2
    assert "--system" in _one_line(capsys)


@pytest.mark.parametrize("flag, target, words", [
    ("--json", "missing/r.json", "does not exist"),
    ("--csv", ".", "is a folder"),
])
def test_output_paths_are_checked_before_the_run(tmp_path, capsys, no_model_load,
                                                  flag, target, words):
    assert main(["bench", flag, str(tmp_path / target)]) == 2
    assert words in _one_line(capsys)
    assert main(["compare", "--config", "quant=none", "--config", "quant=int8-dynamic",
                 "--plot", str(tmp_path)]) == 2
    assert "is a folder" in _one_line(capsys)


def test_an_output_that_fails_while_writing_keeps_the_result(tiny_dir, tmp_path, capsys):
    out = tmp_path / "r.json"
    code = _bench(tiny_dir, tmp_path, "--json", str(out), "--csv", "/dev/full")
    assert code == 1 and json.loads(out.read_text())["results"]
    err = capsys.readouterr().err
    assert "Traceback" not in err and "could not write --csv /dev/full" in err
    kept = list((tmp_path / "home" / "results").glob("bench-*.json"))
    assert len(kept) == 1 and json.loads(kept[0].read_text())["results"][0]["runs"]
    assert len(History().recent(kind="bench")) == 1  # the history has it too


def test_an_unwritable_history_never_costs_the_run(tiny_dir, tmp_path, capsys):
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "history.db").mkdir()  # a folder where the database should be
    out = tmp_path / "r.json"
    assert _bench(tiny_dir, tmp_path, "--json", str(out)) == 0
    assert json.loads(out.read_text())["results"][0]["runs"]
    err = capsys.readouterr().err
    assert "Traceback" not in err and "cannot be written" in err
    sides = list((tmp_path / "home").glob("history.side-*.db"))
    assert len(sides) == 1  # the runs are there, merged once the database is writable


def test_a_history_nobody_can_write_keeps_a_result_file(tiny_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(History, "_side_candidates", lambda self: [])
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "history.db").mkdir()
    assert _bench(tiny_dir, tmp_path) == 0  # no --json asked for: the copy is all there is
    err = capsys.readouterr().err
    assert "kept in memory only" in err and "the history did not take the result" in err
    kept = list((tmp_path / "home" / "results").glob("bench-*.json"))
    assert len(kept) == 1 and json.loads(kept[0].read_text())["results"][0]["runs"]


def test_all_runs_of_a_bench_are_one_complete_session(tiny_dir, tmp_path):
    assert _bench(tiny_dir, tmp_path, "--repeats", "3") == 0
    turns = History().recent(kind="bench")
    assert len(turns) == 3 and len({t.session for t in turns}) == 1
    assert all(t.complete for t in turns)


def test_chat_survives_a_database_locked_mid_session(tiny_dir, tmp_path, monkeypatch, capsys):
    import sqlite3

    monkeypatch.setattr(history_module, "LOCK_TIMEOUT_S", 0.2)
    path = tmp_path / "home" / "history.db"
    History(path).close()
    holder = sqlite3.connect(path)
    lines = iter(["Hello there.", "Second turn.", "Third turn."])

    def fake_input(prompt=""):
        line = next(lines, None)
        if line is None:
            raise EOFError
        if line == "Hello there.":
            holder.execute("BEGIN EXCLUSIVE")  # another program takes the database
        if line == "Third turn.":
            holder.rollback()  # and lets it go
        return line

    monkeypatch.setattr("builtins.input", fake_input)
    assert main(["chat", "--config", f"model={tiny_dir},max_new_tokens=3"]) == 0
    holder.close()
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and "history not written yet" in captured.err
    assert [t.prompt for t in History(path).recent()] == ["Third turn.", "Second turn.",
                                                          "Hello there."]


def test_chat_refuses_a_non_utf8_line_and_goes_on(tiny_dir):
    done = subprocess.run(
        [sys.executable, "-m", "playground", "chat", "--config",
         f"model={tiny_dir},max_new_tokens=3"],
        input=b"hi \xff\xfe\nHello there.\n", capture_output=True, timeout=120)
    out, err = done.stdout.decode(), done.stderr.decode()
    assert done.returncode == 0, err
    assert "Traceback" not in err and "not valid UTF-8 text" in out
    assert out.count("TTFT") == 1  # the good line was answered


def _broken_copy(tiny_dir, tmp_path, breaks):
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(tiny_dir, folder)
    breaks(folder)
    return folder


UNREADABLE = "model.safetensors is not a readable safetensors"


def _truncate(folder):
    path = folder / "model.safetensors"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _garbage_bin(folder):
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(bytes(range(256)) * 8)


@pytest.mark.parametrize("breaks, spec, words", [
    (lambda f: (f / "model.safetensors").write_bytes(b""), "", UNREADABLE),
    (lambda f: (f / "model.safetensors").write_bytes(bytes(range(256)) * 20), "", UNREADABLE),
    (_truncate, "", UNREADABLE),
    (_garbage_bin, ",allow_pickle=on", "pickle weights in"),
    (lambda f: (f / "config.json").write_text("[]"), "", "config.json must hold a JSON object"),
    (lambda f: (f / "config.json").write_text("{not json"), "", "config.json is not valid JSON"),
    (lambda f: (f / "config.json").write_bytes(b"\xff\xfe{}"), "", "config.json is not UTF-8"),
], ids=["empty", "random", "truncated", "garbage-bin", "config-list", "config-invalid",
        "config-not-utf8"])
def test_bad_model_files_are_one_line_naming_the_file(tiny_dir, tmp_path, capsys,
                                                      breaks, spec, words):
    folder = _broken_copy(tiny_dir, tmp_path, breaks)
    code = main(["bench", "--config", f"model={folder}{spec}", "--repeats", "1"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    last = err[-1]
    assert "Traceback" not in "\n".join(err) and last.startswith("playground: error: model:")
    assert words in last and str(folder) in last


def test_seed_out_of_range_is_refused_before_loading(capsys, no_model_load):
    assert main(["bench", "--config", "seed=99999999999999999999999"]) == 2
    assert "seed: 99999999999999999999999 is out of range; allowed: 0 to 4294967295" in \
        _one_line(capsys)


def test_more_threads_than_cores_is_said(tiny_engine):
    import os

    engine = tiny_engine(f"threads={(os.cpu_count() or 1) * 8}")
    assert any("more than this machine's" in note for note in engine.info["notes"])
    assert not any("more than" in note for note in tiny_engine("threads=1").info["notes"])


def test_distill_layers_zero_is_an_error_not_half(capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["distill", "--layers", "0"])
    assert stopped.value.code == 2
    assert "--layers: 0 is too small; allowed: 1 or more" in capsys.readouterr().err


def test_a_killed_conversion_leaves_no_folder_behind(tmp_path, monkeypatch):
    from playground.core import models

    target = tmp_path / "converted"
    monkeypatch.setattr(models, "default_model_dir", lambda: target)
    target.mkdir()
    (target / "config.json").write_text("{}")
    (target / "model.safetensors").write_bytes(b"x")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f"converted.tmp{dead.pid}"
    running = tmp_path / f"converted.tmp{os.getpid()}"  # a conversion in progress
    for folder in (stale, running):
        folder.mkdir()
        (folder / "part").write_bytes(b"x" * 100)
    assert models.ensure_default_model() == target
    assert not stale.exists() and running.exists()


def test_load_checks_its_output_paths_before_sending_anything(tmp_path, capsys):
    # Port 9 (discard) is never served here: a request would be an error, not rc 2.
    assert main(["load", "--endpoint", "http://127.0.0.1:9/v1", "--requests", "1",
                 "--json", str(tmp_path / "missing" / "r.json")]) == 2
    assert "does not exist" in _one_line(capsys)


def test_a_data_folder_that_cannot_be_made_still_keeps_the_run(tiny_dir, tmp_path, capsys,
                                                               monkeypatch):
    """PLAYGROUND_HOME under a file: the history cannot go there; it goes to the temp
    folder's playground folder, and the run ends well (it used to end in an error
    after the result file was written)."""
    from playground.core import paths

    (tmp_path / "file").write_text("")
    monkeypatch.setenv("PLAYGROUND_HOME", str(tmp_path / "file" / "home"))
    monkeypatch.setattr(paths, "fallback_dir", lambda: tmp_path / "fallback")
    out = tmp_path / "r.json"
    assert _bench(tiny_dir, tmp_path, "--json", str(out)) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err and "cannot be written" in err
    assert json.loads(out.read_text())["results"][0]["runs"]
    (side,) = (tmp_path / "fallback").glob("history.side-*.db")
    assert len(History(side).recent(kind="bench")) == 1
