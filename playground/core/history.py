"""SQLite store of every chat turn and benchmark run (stdlib sqlite3).

The database lives in the user data dir (``PLAYGROUND_HOME`` overrides it). The
schema is versioned with ``PRAGMA user_version``. A corrupt file is moved aside
(never deleted) and a fresh one started; a file locked by another process for
longer than the timeout is left alone and this session writes to a side file.
Either way ``History.notice`` says what happened so the caller can show it.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from playground.core import paths

SCHEMA_VERSION = 1
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
    reply TEXT
);
CREATE INDEX IF NOT EXISTS turns_created ON turns(created);
"""


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


def default_path() -> Path:
    return paths.data_dir() / "history.db"


class History:
    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path else default_path()
        self.notice: str | None = None
        self.conn = self._open()

    def _open(self) -> sqlite3.Connection:
        try:
            return self._connect(self.path)
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            side = self.path.with_name(f"{self.path.stem}.side-{int(time.time())}.db")
            self.notice = (
                f"history database {self.path} is locked by another program; "
                f"this session's history goes to {side}"
            )
            self.path = side
            return self._connect(side)
        except sqlite3.DatabaseError as exc:
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            self.path.rename(aside)
            self.notice = (
                f"history database was unreadable ({exc}); moved aside to {aside} "
                "and a new one started"
            )
            return self._connect(self.path)

    def _connect(self, path: Path) -> sqlite3.Connection:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, timeout=LOCK_TIMEOUT_S, check_same_thread=False)
        try:
            row = conn.execute("PRAGMA quick_check").fetchone()
            if row is None or row[0] != "ok":
                raise sqlite3.DatabaseError(f"integrity check failed: {row}")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise sqlite3.DatabaseError(
                    f"schema version {version} is newer than this app's {SCHEMA_VERSION}"
                )
            with conn:
                conn.executescript(_SCHEMA)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except sqlite3.Error:
            conn.close()
            raise
        return conn

    def add(
        self,
        kind: str,
        config: str,
        *,
        metrics: dict[str, Any] | None = None,
        hardware: dict[str, Any] | None = None,
        prompt: str | None = None,
        reply: str | None = None,
        session: str | None = None,
    ) -> int:
        with self.conn:
            cur = self.conn.execute(
                "INSERT INTO turns (created, kind, session, config, hardware, metrics, prompt, reply)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    time.time(),
                    kind,
                    session,
                    config,
                    json.dumps(hardware) if hardware is not None else None,
                    json.dumps(metrics) if metrics is not None else None,
                    prompt,
                    reply,
                ),
            )
        return int(cur.lastrowid)

    def recent(self, limit: int = 100, kind: str | None = None) -> list[Turn]:
        query = "SELECT * FROM turns"
        args: tuple[Any, ...] = ()
        if kind:
            query += " WHERE kind = ?"
            args = (kind,)
        query += " ORDER BY id DESC LIMIT ?"
        rows = self.conn.execute(query, (*args, limit)).fetchall()
        return [_turn(row) for row in rows]

    def close(self) -> None:
        self.conn.close()


def _turn(row: tuple[Any, ...]) -> Turn:
    id_, created, kind, session, config, hardware, metrics, prompt, reply = row
    return Turn(
        id_, created, kind, session, config,
        json.loads(hardware) if hardware else None,
        json.loads(metrics) if metrics else None,
        prompt, reply,
    )
