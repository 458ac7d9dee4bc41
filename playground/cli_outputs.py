"""Where a finished run's figures go, for the command line: output paths checked
before the run starts, result files written first, then the history. A failure of
either is one line, and the result is never lost: when a file or the history could
not take it, the whole result file is kept in the data folder (or the temp folder)
and the line says where."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

Writer = tuple[str, str | None, Callable[[Path], None]]  # (flag, path or None, write)


def status(message: str) -> None:
    """One progress or warning line of the command line, on stderr."""
    print(f"· {message}", file=sys.stderr, flush=True)


def check_writable(outputs: dict[str, str | None]) -> None:
    """Refuse, before any work, an output path that cannot be written ({flag: path})."""
    for flag, value in outputs.items():
        if not value:
            continue
        path = Path(value)
        if path.is_dir():
            raise ValueError(f"{flag} {value}: is a folder; give a file name")
        parent = path.parent
        if not parent.is_dir():
            raise ValueError(f"{flag} {value}: the folder {parent} does not exist")
        target = path if path.exists() else parent
        if not os.access(target, os.W_OK):
            raise ValueError(f"{flag} {value}: not writable here")


def write_outputs(writers: list[Writer]) -> list[str]:
    """Write each requested file; the flags whose writing failed (each said in one line)."""
    failed = []
    for flag, value, write in writers:
        if not value:
            continue
        try:
            write(Path(value))
        except OSError as exc:
            failed.append(flag)
            status(f"could not write {flag} {value}: {exc.strerror or exc}")
            continue
        print(f"wrote {value}")
    return failed


def record_history(rows: list[tuple[Any, ...]]) -> bool:
    """The run's turns into the history in one transaction; True if they are on disk."""
    from playground.core.history import History

    history = History()
    history.add_many(rows)
    history.close()
    if history.notice:
        status(history.notice)
    return history.path is not None and not history.pending


def keep_result(data: dict[str, Any], kind: str) -> Path | None:
    """A copy of the result file where nothing was asked to go (a failed output or
    history must not lose a finished measurement)."""
    from playground.core import paths

    name = f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.json"
    for folder in (paths.data_dir(create=False) / "results", paths.fallback_dir()):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(json.dumps(data, indent=1))
        except OSError:
            continue
        return folder / name
    return None


def finish(kind: str, data: dict[str, Any], writers: list[Writer],
           history_rows: list[tuple[Any, ...]] | None) -> int:
    """Files first, then the history (None: this kind of run keeps none); keep a copy
    if either failed. The exit status: 1 when a file that was asked for could not be
    written, else 0."""
    failed = write_outputs(writers)
    saved = history_rows is None or record_history(history_rows)
    if failed or not saved:
        kept = keep_result(data, kind)
        where = f"kept in {kept}" if kept else "printed above only (no folder could take it)"
        lost = ", ".join(failed + ([] if saved else ["the history"]))
        status(f"{lost} did not take the result; it is {where}")
    return 1 if failed else 0
