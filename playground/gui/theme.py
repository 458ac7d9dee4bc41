"""Light or dark: as the system says (Qt's colour scheme, followed while the app runs) or
as View → Theme picks. The window takes Fusion's palette for it; the charts, which
pyqtgraph draws itself, take their background, axes and labels from that palette."""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication, QWidget

THEMES = ("system", "light", "dark")


def dark_palette() -> QPalette:
    p = QPalette()
    base, window, text = QColor(30, 30, 30), QColor(45, 45, 45), QColor(225, 225, 225)
    for role, color in ((QPalette.ColorRole.Window, window), (QPalette.ColorRole.WindowText, text),
                        (QPalette.ColorRole.Base, base),
                        (QPalette.ColorRole.AlternateBase, window),
                        (QPalette.ColorRole.ToolTipBase, window),
                        (QPalette.ColorRole.ToolTipText, text), (QPalette.ColorRole.Text, text),
                        (QPalette.ColorRole.Button, window),
                        (QPalette.ColorRole.ButtonText, text),
                        (QPalette.ColorRole.Link, QColor(110, 170, 255)),
                        (QPalette.ColorRole.Highlight, QColor(60, 120, 200)),
                        (QPalette.ColorRole.HighlightedText, QColor(255, 255, 255)),
                        (QPalette.ColorRole.PlaceholderText, QColor(150, 150, 150))):
        p.setColor(role, color)
    for role in (QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText,
                 QPalette.ColorRole.WindowText):
        p.setColor(QPalette.ColorGroup.Disabled, role, QColor(120, 120, 120))
    return p


def system_is_dark() -> bool:
    return QGuiApplication.styleHints().colorScheme() == Qt.ColorScheme.Dark


def is_dark(choice: str) -> bool:
    return choice == "dark" or (choice == "system" and system_is_dark())


def apply(choice: str, window: QWidget | None = None) -> None:
    """The app's palette for ``choice`` (one of THEMES), then every chart in ``window``."""
    app = QApplication.instance()
    if app is None:
        return
    if choice not in THEMES:
        choice = "system"
    app.setStyle("Fusion")  # the same look on every desktop, and a palette it follows
    app.setPalette(dark_palette() if is_dark(choice) else app.style().standardPalette())
    if window is not None:
        restyle_charts(window)


def chart_colors() -> tuple[QColor, QColor]:
    """The charts' background and ink, from the window's palette."""
    palette = QApplication.palette()
    return palette.color(QPalette.ColorRole.Base), palette.color(QPalette.ColorRole.WindowText)


def style_chart(widget: pg.GraphicsView) -> None:
    """A chart's background, axes, labels and title in the palette's colours."""
    background, ink = chart_colors()
    widget.setBackground(background)
    items = [widget.getPlotItem()] if isinstance(widget, pg.PlotWidget) else [
        item for item in widget.ci.items if isinstance(item, pg.PlotItem)]
    for plot in items:
        for name in ("left", "bottom", "right", "top"):
            axis = plot.getAxis(name)
            axis.setPen(ink)
            axis.setTextPen(ink)
        if plot.titleLabel is not None and plot.titleLabel.text:
            plot.titleLabel.setText(plot.titleLabel.text, color=ink.name())


def restyle_charts(window: QWidget) -> None:
    for widget in window.findChildren(pg.GraphicsView):
        if isinstance(widget, (pg.PlotWidget, pg.GraphicsLayoutWidget)):
            style_chart(widget)
