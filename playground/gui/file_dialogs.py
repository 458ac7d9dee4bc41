"""File dialogs that open where the user was last (or in their documents folder), never
in the process's working directory (the source checkout when started from it)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSettings, QStandardPaths
from PySide6.QtWidgets import QFileDialog, QWidget

from playground.core import paths

KEY = "last_folder"


def _settings() -> QSettings:
    return QSettings(str(paths.config_dir() / "settings.ini"), QSettings.Format.IniFormat)


def start_folder() -> str:
    last = _settings().value(KEY, "")
    if isinstance(last, str) and last and Path(last).is_dir():
        return last
    docs = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.DocumentsLocation)
    return docs if docs and Path(docs).is_dir() else str(Path.home())


def remember(path: str) -> None:
    folder = path if Path(path).is_dir() else str(Path(path).parent)
    settings = _settings()
    settings.setValue(KEY, folder)
    settings.sync()


def open_file(parent: QWidget, title: str, filter_: str) -> str:
    path, _ = QFileDialog.getOpenFileName(parent, title, start_folder(), filter_)
    if path:
        remember(path)
    return path


def open_folder(parent: QWidget, title: str) -> str:
    folder = QFileDialog.getExistingDirectory(parent, title, start_folder())
    if folder:
        remember(folder)
    return folder


def save_file(parent: QWidget, title: str, name: str, filter_: str) -> str:
    path, _ = QFileDialog.getSaveFileName(parent, title, str(Path(start_folder()) / name),
                                          filter_)
    if path:
        remember(path)
    return path
