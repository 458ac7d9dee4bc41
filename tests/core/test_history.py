import sqlite3
import threading

import pytest

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


def test_newer_schema_is_left_alone_with_a_message(tmp_path):
    path = tmp_path / "h.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    h = History(path)
    assert h.notice and "newer version of the app" in h.notice and "left as it is" in h.notice
    h.add("chat", "x")
    h.close()
    assert path.read_bytes() == before and not list(tmp_path.glob("h.db.corrupt-*"))


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


def _read_only_main(monkeypatch, main):
    """Opens ``main`` read-only (root ignores file modes, so chmod cannot make one)."""
    connect = sqlite3.connect

    def read_only(path, *args, **kwargs):
        if str(path) == str(main):
            return connect(f"file:{path}?mode=ro", *args, uri=True, **kwargs)
        return connect(path, *args, **kwargs)

    monkeypatch.setattr(history_module.sqlite3, "connect", read_only)


def test_a_read_only_database_sends_turns_to_a_side_file_merged_back_later(tmp_path, monkeypatch):
    path = tmp_path / "h.db"
    History(path).close()
    _read_only_main(monkeypatch, path)
    h = History(path)
    assert "cannot be written" in h.notice and h.path != path
    assert h.add("bench", "quant=none", metrics={"ttft_ms": 1.0}) is not None
    h.close()
    monkeypatch.undo()
    h = History(path)
    assert h.path == path and h.merged == 1 and "merged 1" in h.notice
    assert [t.config for t in h.recent()] == ["quant=none"]
    assert not list(tmp_path.glob("h.side-*.db"))
    h.close()


def test_a_directory_in_place_of_the_database_is_a_notice_not_a_crash(tmp_path):
    path = tmp_path / "h.db"
    path.mkdir()
    h = History(path)
    assert "cannot be written" in h.notice
    assert h.add("chat", "x") is not None and len(h.recent()) == 1
    h.close()
    assert path.is_dir()


def test_a_foreign_turns_table_is_left_alone(tmp_path):
    path = tmp_path / "h.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE turns (a, b)")
    conn.commit()
    conn.close()
    h = History(path)
    assert "did not make" in h.notice and h.path != path
    h.add("chat", "x")
    h.close()
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT sql FROM sqlite_master").fetchall() == [("CREATE TABLE turns (a, b)",)]
    conn.close()


def test_a_lock_taken_mid_session_keeps_turns_and_writes_them_later(tmp_path, monkeypatch):
    monkeypatch.setattr(history_module, "LOCK_TIMEOUT_S", 0.2)
    path = tmp_path / "h.db"
    h = History(path)
    h.conn.execute("PRAGMA busy_timeout = 200")
    holder = sqlite3.connect(path)
    holder.execute("BEGIN EXCLUSIVE")
    assert h.add("chat", "first") is None and len(h.pending) == 1
    assert "kept" in h.notice
    holder.rollback()
    assert h.add("chat", "second") is not None and not h.pending
    assert [t.config for t in h.recent()] == ["second", "first"]
    # Still locked when the session ends: a side file, merged by the next session.
    holder.execute("BEGIN EXCLUSIVE")
    h.add("chat", "third")
    h.close()
    holder.rollback()
    holder.close()
    assert len(list(tmp_path.glob("h.side-*.db"))) == 1
    h = History(path)
    assert [t.config for t in h.recent()] == ["third", "second", "first"]
    h.close()


def test_add_many_is_all_or_nothing_and_complete_round_trips(tmp_path):
    h = History(tmp_path / "h.db")
    rows = [history_module.row("compare", f"c{i}", session="s", complete=False) for i in range(2)]
    h.add_many(rows)
    with pytest.raises(sqlite3.ProgrammingError):  # a bad row: none of the batch is written
        h.add_many([history_module.row("bench", "ok"), ("bad",)])
    assert [(t.config, t.complete) for t in h.recent()] == [("c1", False), ("c0", False)]
    h.close()


def test_a_version_1_database_gains_the_complete_column(tmp_path):
    path = tmp_path / "h.db"
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE turns (id INTEGER PRIMARY KEY AUTOINCREMENT, created REAL NOT NULL,"
        " kind TEXT NOT NULL, session TEXT, config TEXT NOT NULL, hardware TEXT, metrics TEXT,"
        " prompt TEXT, reply TEXT);"
        "INSERT INTO turns (created, kind, config) VALUES (1, 'chat', 'old');"
        "PRAGMA user_version = 1;")
    conn.close()
    h = History(path)
    assert h.notice is None
    assert [(t.config, t.complete) for t in h.recent()] == [("old", True)]
    h.close()


def test_chats_are_renamed_deleted_and_lose_a_regenerated_turn(tmp_path):
    from contextlib import closing

    with closing(History(tmp_path / "h.db")) as h:
        for session, prompt in (("a", "first"), ("a", "second"), ("b", "other")):
            h.add("chat", "quant=none", session=session, prompt=prompt, reply="r")
        h.add("bench", "quant=none", session="a")
        assert h.rename_chat("a", "  My   chat ")
        assert {c.session: c.title for c in h.chats()} == {"a": "My chat", "b": None}
        assert h.drop_last_turn("a")
        assert [t.prompt for t in h.chat("a")] == ["first"]
        assert h.delete_chat("a") and [c.session for c in h.chats()] == ["b"]
        assert len(h.recent(kind="bench")) == 1  # only the chat's turns go
        assert h.rename_chat("b", "x") and h.rename_chat("b", "") and h.chats()[0].title is None
    with closing(History(tmp_path / "h.db")) as again:  # and it stays so after a restart
        assert [(c.session, c.turns) for c in again.chats()] == [("b", 1)]
