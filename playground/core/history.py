"""SQLite store of every chat turn and benchmark run (stdlib sqlite3).

The database lives in the user data dir (``PLAYGROUND_HOME`` overrides it). The
schema is versioned with ``PRAGMA user_version``. Nothing here raises after the
constructor, and the constructor only raises on a bug: a history problem must never
cost a finished measurement or crash a chat. A corrupt file is moved aside (never
deleted) and a fresh one started; a file that is locked, read-only, from a newer
version of the app or not ours is left alone and this session writes to a side file
next to it (or in the temp folder, or in memory), which the next session that can
write the database merges back. A write that fails mid-session (another program
holds a lock) keeps the turns in memory, retries with each later write and at
``close``, and goes to a side file if it still cannot. ``notice`` says what happened.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from playground.core import paths

SCHEMA_VERSION = 2
LOCK_TIMEOUT_S = 2.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS turns (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,
    kind TEXT NOT NULL,            -- 'chat', 'bench' or 'compare'
    session TEXT,
    config TEXT NOT NULL,          -- spec string
    hardware TEXT,                 -- JSON
    metrics TEXT,                  -- JSON (TurnMetrics)
    prompt TEXT,
    reply TEXT,
    complete INTEGER NOT NULL DEFAULT 1  -- 0: its session stopped or failed part-way
);
CREATE INDEX IF NOT EXISTS turns_created ON turns(created);
CREATE TABLE IF NOT EXISTS chat_titles (session TEXT PRIMARY KEY, title TEXT NOT NULL);
"""
_COLUMNS = ("created", "kind", "session", "config", "hardware", "metrics", "prompt", "reply",
            "complete")
_INSERT = f"INSERT INTO turns ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"


@dataclass
class ChatSummary:
    session: str
    first_prompt: str
    turns: int
    last: float  # time.time() of its last turn
    title: str | None = None  # the name the user gave it, if any


class _LeaveAlone(sqlite3.DatabaseError):
    """A readable database this app must not change (newer schema, a foreign table)."""


@dataclass
class Turn:
    id: int
    created: float
    kind: str
    session: str | None
    config: str
    hardware: dict[str, Any] | None
    metrics: dict[str, Any] | None
    prompt: str | None
    reply: str | None
    complete: bool = True


def default_path() -> Path:
    return paths.data_dir(create=False) / "history.db"  # made (or not) by _connect


_CHATS = ("SELECT c.session, first.prompt, c.turns, c.last, t.title FROM ("
          "  SELECT session, COUNT(*) AS turns, MAX(created) AS last, MIN(id) AS first_id,"
          "  MAX(id) AS last_id FROM turns WHERE kind = 'chat' AND session IS NOT NULL"
          "  GROUP BY session) AS c JOIN turns AS first ON first.id = c.first_id "
          "LEFT JOIN chat_titles AS t ON t.session = c.session "
          "ORDER BY c.last_id DESC LIMIT ?")


def _chat_rows(conn: sqlite3.Connection, limit: int) -> list[ChatSummary]:
    return [ChatSummary(session, prompt or "", int(turns), float(last), title)
            for session, prompt, turns, last, title in conn.execute(_CHATS, (limit,))]


def recent_chats(limit: int = 50, path: Path | None = None) -> list[ChatSummary]:
    """The latest chats, read-only and cheap (no integrity check, no schema work, no side
    files: what a list refreshed after every turn needs); [] when there is no readable
    database yet."""
    where = Path(path) if path else default_path()
    if not where.is_file():
        return []
    try:
        conn = sqlite3.connect(f"{where.resolve().as_uri()}?mode=ro", uri=True, timeout=0.5)
    except sqlite3.Error:
        return []
    try:
        return _chat_rows(conn, limit)
    except sqlite3.Error:  # locked, or a database an older version wrote: no list now
        return []
    finally:
        conn.close()


def row(kind: str, config: str, *, metrics: dict[str, Any] | None = None,
        hardware: dict[str, Any] | None = None, prompt: str | None = None,
        reply: str | None = None, session: str | None = None,
        complete: bool = True) -> tuple[Any, ...]:
    """One turn as ``add_many`` takes it (time stamped now)."""
    return (time.time(), kind, session, config,
            json.dumps(hardware) if hardware is not None else None,
            json.dumps(metrics) if metrics is not None else None,
            prompt, reply, int(complete))


class History:
    def __init__(self, path: Path | None = None) -> None:
        self.main_path = Path(path) if path else default_path()
        self.path: Path | None = self.main_path  # None: in memory only
        self.notice: str | None = None
        self.pending: list[tuple[Any, ...]] = []  # turns not written yet (a lock)
        self.merged = 0  # side-file turns merged back at open
        self.conn = self._open()

    # -- opening -----------------------------------------------------------------
    def _open(self) -> sqlite3.Connection:
        where = self.main_path
        try:
            conn = self._connect(where)
        except _LeaveAlone as exc:
            return self._side(f"history database {where} {exc}; it is left as it is")
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                return self._side(f"history database {where} is locked by another program")
            return self._side(f"history database {where} cannot be written ({exc})")
        except OSError as exc:  # its folder cannot be made
            return self._side(f"history database {where} cannot be written ({exc})")
        except sqlite3.DatabaseError as exc:
            aside = where.with_name(f"{where.name}.corrupt-{int(time.time())}")
            try:
                where.rename(aside)
                conn = self._connect(where)
            except (OSError, sqlite3.Error) as again:
                return self._side(f"history database {where} is unreadable ({exc}) and "
                                  f"could not be replaced ({again})")
            self.notice = (f"history database was unreadable ({exc}); moved aside to {aside} "
                           "and a new one started")
        self._merge_sides(conn)
        if self.merged:
            self.notice = f"merged {self.merged} turns from side files into {where}"
        return conn

    def _connect(self, path: Path | None) -> sqlite3.Connection:
        if path is None:
            conn = sqlite3.connect(":memory:", check_same_thread=False)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(path, timeout=LOCK_TIMEOUT_S, check_same_thread=False)
        try:
            check = conn.execute("PRAGMA quick_check").fetchone()
            if check is None or check[0] != "ok":
                raise sqlite3.DatabaseError(f"integrity check failed: {check}")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise _LeaveAlone(f"is from a newer version of the app (schema {version}, "
                                  f"this app reads {SCHEMA_VERSION})")
            have = {r[1] for r in conn.execute("PRAGMA table_info(turns)")}
            if version < 1 and have and not set(_COLUMNS) - {"complete"} <= have:
                raise _LeaveAlone("has a 'turns' table this app did not make "
                                  f"(columns: {', '.join(sorted(have))})")
            with conn:
                if version == 1:
                    conn.execute("ALTER TABLE turns ADD COLUMN complete INTEGER NOT NULL DEFAULT 1")
                conn.executescript(_SCHEMA)
                # Written every time: a file that cannot be written fails here, at
                # open, rather than at the first turn.
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except BaseException:
            conn.close()
            raise
        return conn

    def _side_candidates(self) -> list[Path]:
        name = f"{self.main_path.stem}.side-{int(time.time())}-{os.getpid()}.db"
        return [self.main_path.with_name(name), paths.fallback_dir() / name]

    def _side(self, reason: str) -> sqlite3.Connection:
        for side in self._side_candidates():
            try:
                conn = self._connect(side)
            except (OSError, sqlite3.Error):
                continue
            self.path = side
            self.notice = (f"{reason}; this session's history goes to {side} (merged into "
                           "the database once this app can write it)")
            self._merge_sides(conn)  # earlier sessions' side files: listed with this one
            return conn
        self.path = None
        self.notice = f"{reason}; this session's history is kept in memory only"
        return self._connect(None)

    def _merge_sides(self, conn: sqlite3.Connection) -> None:
        """Copy the turns of earlier sessions' side files in, then delete those files."""
        pattern = f"{self.main_path.stem}.side-*.db"
        for side in [*self.main_path.parent.glob(pattern), *paths.fallback_dir().glob(pattern)]:
            if side == self.path or _writer_alive(side):
                continue  # another running session is still writing it
            try:
                other = sqlite3.connect(f"file:{side}?mode=ro", uri=True, timeout=0.1)
                try:
                    rows = other.execute(f"SELECT {', '.join(_COLUMNS)} FROM turns").fetchall()
                finally:
                    other.close()
                with conn:
                    conn.executemany(_INSERT, rows)
                side.unlink()
                self.merged += len(rows)
            except (OSError, sqlite3.Error):
                continue  # in use by a running session, or not ours: left for later

    # -- writing -----------------------------------------------------------------
    def add(self, kind: str, config: str, **fields: Any) -> int | None:
        """Record one turn; its id, or None when it is kept to retry (see ``notice``)."""
        return self.add_many([row(kind, config, **fields)])

    def add_many(self, rows: list[tuple[Any, ...]]) -> int | None:
        """Record turns in one transaction (all or none: a session is never half
        written); the last one's id, or None when they are kept to retry."""
        todo = [*self.pending, *rows]
        try:
            with self.conn:
                cur = None
                for values in todo:
                    cur = self.conn.execute(_INSERT, values)
        except sqlite3.OperationalError as exc:  # locked, read-only, disk full: retry later
            self.pending = todo
            self.notice = (f"history not written yet ({exc}); {len(todo)} turns kept to "
                           "write with the next one")
            return None
        self.pending = []
        return int(cur.lastrowid) if cur is not None else None

    def recent(self, limit: int = 100, kind: str | None = None) -> list[Turn]:
        query = f"SELECT id, {', '.join(_COLUMNS)} FROM turns"
        args: tuple[Any, ...] = ()
        if kind:
            query += " WHERE kind = ?"
            args = (kind,)
        query += " ORDER BY id DESC LIMIT ?"
        rows = self.conn.execute(query, (*args, limit)).fetchall()
        return [_turn(r) for r in rows]

    def chats(self, limit: int = 50) -> list[ChatSummary]:
        """The saved chats (chat turns sharing a ``session``: one chat of the app), the
        latest first: their first prompt, turn count and when the last turn ended."""
        return _chat_rows(self.conn, limit)

    # -- editing chats (False, with ``notice``, when the database refuses) ------------
    def rename_chat(self, session: str, title: str) -> bool:
        """Give a chat a name (an empty one takes the name away)."""
        title = " ".join(title.split())[:200]
        if title:
            return self._write("INSERT OR REPLACE INTO chat_titles (session, title) "
                               "VALUES (?, ?)", (session, title))
        return self._write("DELETE FROM chat_titles WHERE session = ?", (session,))

    def delete_chat(self, session: str) -> bool:
        """A chat's turns and name, gone (its benchmarks and comparisons stay)."""
        return (self._write("DELETE FROM turns WHERE kind = 'chat' AND session = ?", (session,))
                and self._write("DELETE FROM chat_titles WHERE session = ?", (session,)))

    def drop_last_turn(self, session: str) -> bool:
        """The chat's last turn, gone (its reply is being regenerated)."""
        return self._write("DELETE FROM turns WHERE id = (SELECT MAX(id) FROM turns WHERE "
                           "kind = 'chat' AND session = ?)", (session,))

    def _write(self, sql: str, args: tuple[Any, ...]) -> bool:
        try:
            with self.conn:
                self.conn.execute(sql, args)
        except sqlite3.Error as exc:  # locked, read-only: said, never raised
            self.notice = f"history not changed ({exc})"
            return False
        return True

    def chat(self, session: str) -> list[Turn]:
        """One saved chat's turns, in order."""
        rows = self.conn.execute(
            f"SELECT id, {', '.join(_COLUMNS)} FROM turns WHERE kind = 'chat' AND session = ? "
            "ORDER BY id", (session,)).fetchall()
        return [_turn(r) for r in rows]

    def close(self) -> None:
        """Write what is pending (to a side file if the database still refuses)."""
        if self.pending and self.add_many([]) is None and self.pending:
            todo = self.pending
            self.conn.close()
            self.conn = self._side("history database stayed locked")
            self.pending = todo
            if self.add_many([]) is None or self.path is None:
                self.notice = f"{len(todo)} turns could not be saved to the history"
        self.conn.close()


def _writer_alive(side: Path) -> bool:
    try:
        pid = int(side.stem.rsplit("-", 1)[1])
        os.kill(pid, 0)
    except (ValueError, IndexError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return pid != os.getpid()


def _turn(values: tuple[Any, ...]) -> Turn:
    id_, created, kind, session, config, hardware, metrics, prompt, reply, complete = values
    return Turn(
        id_, created, kind, session, config,
        json.loads(hardware) if hardware else None,
        json.loads(metrics) if metrics else None,
        prompt, reply, bool(complete),
    )
