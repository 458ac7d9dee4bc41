"""View → Theme: dark and light palettes for the window and its charts (pyqtgraph draws
its own background and axes), kept in the settings; System follows the desktop."""

from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QApplication


def _lightness(window):
    chart = window.charts.speed
    axis = chart.getPlotItem().getAxis("left")
    return (QApplication.palette().color(QPalette.ColorRole.Window).lightness(),
            chart.backgroundBrush().color().lightness(), axis.textPen().color().lightness())


def test_dark_and_light_reach_the_charts_and_are_kept(qtbot, open_window, tiny_dir):
    from playground.core.config import RunConfig

    window = open_window(RunConfig(model=str(tiny_dir), max_new_tokens=2))
    window.theme_actions["dark"].trigger()
    palette, background, ink = _lightness(window)
    assert palette < 100 and background < 100 and ink > 150
    assert window.store.settings.value("theme") == "dark"
    window.theme_actions["light"].trigger()
    palette, background, ink = _lightness(window)
    assert palette > 150 and background > 150 and ink < 100
    window.theme_actions["system"].trigger()
    assert window.store.settings.value("theme") == "system"
