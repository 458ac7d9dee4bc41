import sqlite3
import threading

from playground.core import history as history_module
from playground.core.history import SCHEMA_VERSION, History


def test_round_trip(tmp_path):
    h = History(tmp_path / "h.db")
    assert h.notice is None
    first = h.add("chat", "quant=bf16", metrics={"ttft_ms": 12.5}, prompt="hi", reply="hello",
                  hardware={"cores": 2}, session="s1")
    h.add("bench", "quant=none", metrics={"ttft_ms": 20.0})
    turns = h.recent()
    assert [t.kind for t in turns] == ["bench", "chat"]
    chat = h.recent(kind="chat")[0]
    assert chat.id == first and chat.metrics == {"ttft_ms": 12.5} and chat.reply == "hello"
    assert chat.hardware == {"cores": 2} and chat.config == "quant=bf16"
    h.close()
    version = sqlite3.connect(tmp_path / "h.db").execute("PRAGMA user_version").fetchone()[0]
    assert version == SCHEMA_VERSION


def test_default_path_follows_playground_home(tmp_path, monkeypatch):
    monkeypatch.setenv("PLAYGROUND_HOME", str(tmp_path / "elsewhere"))
    h = History()
    assert h.path == tmp_path / "elsewhere" / "history.db"
    h.close()


def test_corrupt_file_is_moved_aside_not_lost(tmp_path):
    path = tmp_path / "h.db"
    garbage = b"this is not a database" * 100
    path.write_bytes(garbage)
    h = History(path)
    assert h.notice and "moved aside" in h.notice
    aside = list(tmp_path.glob("h.db.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == garbage
    h.add("chat", "quant=none")
    assert len(h.recent()) == 1


def test_newer_schema_is_moved_aside(tmp_path):
    path = tmp_path / "h.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    h = History(path)
    assert h.notice and "newer" in h.notice


def test_locked_file_is_reported_and_left_alone(tmp_path, monkeypatch):
    monkeypatch.setattr(history_module, "LOCK_TIMEOUT_S", 0.2)
    path = tmp_path / "h.db"
    History(path).close()
    holder = sqlite3.connect(path)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        h = History(path)
        assert h.notice and "locked" in h.notice
        assert h.path != path
        h.add("chat", "quant=none")
    finally:
        holder.rollback()
        holder.close()
    assert path.exists()


def test_usable_from_another_thread(tmp_path):
    h = History(tmp_path / "h.db")
    t = threading.Thread(target=lambda: h.add("chat", "x"))
    t.start()
    t.join()
    assert len(h.recent()) == 1
