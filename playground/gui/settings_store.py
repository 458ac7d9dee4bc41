"""The window's saved settings: the last config that loaded, geometry, panel layout,
the Compare tab's configs, warmup and rounds, the Serve tab's server and sweep settings.

Stored as an INI file in the config folder. What cannot be read is dropped (only that
key) with one line in the status bar; a scripted run (``persist=False``, self-test)
neither restores the layout nor writes anything.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, QSettings
from PySide6.QtGui import QGuiApplication

from playground.core import paths
from playground.core.config import ConfigError, RunConfig

WINDOW_KEYS = ("config", "geometry", "splitter")
TAB_KEYS = ("compare", "serve")  # each a JSON of the tab's state(), a key of its own


def first_size(window: Any) -> tuple[int, int]:
    """1500 x 900, or the screen's free area less the frame where that is smaller: at
    1024 x 700 a fixed 1500 x 900 put the status bar, Load / apply and two thirds of the
    charts off-screen."""
    screen = window.screen() or QGuiApplication.primaryScreen()
    if screen is None:
        return 1500, 900
    area = screen.availableGeometry()
    return min(1500, area.width() - 16), min(900, area.height() - 40)


def fit_screen(window: Any) -> None:
    width, height = first_size(window)
    if window.width() > width or window.height() > height:
        window.resize(min(window.width(), width), min(window.height(), height))


def settings_path() -> Path:
    return paths.config_dir() / "settings.ini"


class SettingsStore:
    def __init__(self, persist: bool) -> None:
        self.persist = persist
        self.settings = QSettings(str(settings_path()), QSettings.Format.IniFormat)

    def restore(self, window: Any) -> tuple[RunConfig | None, str | None]:
        """Apply the saved geometry and layout to ``window``; the saved config and a
        notice when something was unreadable."""
        saved, notice = None, None
        try:
            spec = self.settings.value("config", None)
            if spec is not None and not isinstance(spec, str):
                raise ConfigError(f"stored config is a {type(spec).__name__}, not a spec string")
            saved = RunConfig.parse(spec) if spec else None
            geometry = self.settings.value("geometry", None) if self.persist else None
            if geometry is not None:
                if not isinstance(geometry, QByteArray) or not window.restoreGeometry(geometry):
                    raise ValueError("window geometry is unreadable")
                fit_screen(window)  # saved on a larger screen: clamped to this one
            sizes = self.settings.value("splitter", None) if self.persist else None
            if sizes is not None and (not isinstance(sizes, QByteArray)
                                      or not window.splitter.restoreState(sizes)):
                raise ValueError("panel layout is unreadable")
        except (ConfigError, ValueError, TypeError) as exc:
            notice = f"Settings were unreadable ({exc}); using defaults."
            if self.persist:  # drop what was unreadable; a scripted run touches nothing
                for key in WINDOW_KEYS:
                    self.settings.remove(key)
        for key in TAB_KEYS:
            view = getattr(window, key)
            saved_tab = self.settings.value(key, None) if self.persist else None
            if saved_tab is None:
                continue
            try:  # each tab its own key: an unreadable one costs only itself
                left_out = view.restore_state(json.loads(str(saved_tab)))
            except (ValueError, TypeError) as exc:  # JSONDecodeError is a ValueError
                left_out = f"The {key.capitalize()} tab's saved settings were unreadable ({exc}); dropped."
                self.settings.remove(key)
            if left_out:
                notice = f"{notice} {left_out}" if notice else left_out
        if self.settings.status() != QSettings.Status.NoError:
            notice = "Settings file could not be read; using defaults."
        return saved, notice

    def save(self, window: Any, good_config: RunConfig | None) -> None:
        if not self.persist:
            return
        if good_config is not None:  # never a model that failed to load
            self.settings.setValue("config", good_config.format(only_changed=True))
        self.settings.setValue("geometry", window.saveGeometry())
        self.settings.setValue("splitter", window.splitter.saveState())
        for key in TAB_KEYS:
            self.settings.setValue(key, json.dumps(getattr(window, key).state()))
        self.settings.sync()
