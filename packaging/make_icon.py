"""Draws assets/icon.png (a speedometer over a token bar) so the icon has a source."""

import os
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
from PySide6.QtCore import QPointF, QRectF, Qt  # noqa: E402
from PySide6.QtGui import QColor, QGuiApplication, QImage, QPainter, QPen  # noqa: E402


def main() -> int:
    QGuiApplication(sys.argv[:1])
    size = 256
    img = QImage(size, size, QImage.Format.Format_ARGB32)
    img.fill(Qt.GlobalColor.transparent)
    p = QPainter(img)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    p.setBrush(QColor("#0d47a1"))
    p.setPen(Qt.PenStyle.NoPen)
    p.drawRoundedRect(QRectF(8, 8, 240, 240), 48, 48)
    pen = QPen(QColor("#ffffff"), 18, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap)
    p.setPen(pen)
    p.drawArc(QRectF(48, 60, 160, 160), 20 * 16, 140 * 16)
    p.setPen(QPen(QColor("#ffca28"), 14, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap))
    p.drawLine(QPointF(128, 140), QPointF(182, 92))
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(QColor("#ffffff"))
    p.drawEllipse(QPointF(128, 140), 14, 14)
    for i, h in enumerate((22, 34, 28, 40, 30)):
        p.setBrush(QColor("#64b5f6"))
        p.drawRoundedRect(QRectF(62 + i * 28, 212 - h, 20, h), 4, 4)
    p.end()
    out = Path(__file__).resolve().parents[1] / "assets" / "icon.png"
    img.save(str(out))
    print("saved", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
